"""Fixed-point helpers of the arithmetic contract (../shared/design/numerics.md).

``requantize`` is *the* definition of integer rescaling in bnnrt: the numpy
reference calls it and the C kernels implement the same formula.
"""

from __future__ import annotations

import math

import numpy as np

MAX_SHIFT = 62


def requantize(x, multiplier, shift):
    """round_half_up(x * multiplier / 2**shift), exactly, in 64-bit integers.

    ``x`` is an integer array (int32 range), ``multiplier`` int32 and ``shift``
    in [0, 62]; both broadcast against ``x`` (per tensor or per channel).
    The result is int64 and unclamped.
    """
    x = np.asarray(x, dtype=np.int64)
    m = np.asarray(multiplier, dtype=np.int64)
    s = np.asarray(shift, dtype=np.int64)
    prod = x * m
    half = np.where(s > 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)), 0)
    return np.right_shift(prod + half, s)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """(multiplier, shift) with multiplier / 2**shift as close to ``real`` as an
    int32 multiplier and a shift in [0, 62] allow. ``real`` may be negative."""
    if not math.isfinite(real):
        raise ValueError(f"cannot represent scale {real!r} as a fixed-point multiplier")
    if real == 0.0:
        return 0, 0
    mant, exp = math.frexp(abs(real))          # abs(real) = mant * 2**exp, mant in [0.5, 1)
    shift = 31 - exp                           # multiplier = mant * 2**31 in [2**30, 2**31)
    if shift > MAX_SHIFT:
        shift = MAX_SHIFT
    if shift < 0:
        raise ValueError(f"scale {real!r} is too large for a 32-bit multiplier")
    m = int(round(abs(real) * 2.0 ** shift))
    if m >= 2 ** 31:                           # rounding pushed the mantissa up to 2**31
        m //= 2
        shift -= 1
    return (m if real > 0 else -m), shift


def quantize_multipliers(reals) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel version of :func:`quantize_multiplier`: (int32[C], int8[C])."""
    pairs = [quantize_multiplier(float(r)) for r in np.asarray(reals, dtype=np.float64).ravel()]
    m = np.array([p[0] for p in pairs], dtype=np.int32)
    s = np.array([p[1] for p in pairs], dtype=np.int8)
    return m, s


def tflite_multiplier(real: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: (multiplier, shift) with real ~=
    multiplier * 2**(shift - 31), multiplier in [2**30, 2**31) rounded half
    away from zero, shift > 0 meaning a left shift (TFLite's sign, the
    opposite of :func:`quantize_multiplier`'s). Tiny values flush to (0, 0)."""
    if not math.isfinite(real) or real < 0:
        raise ValueError(f"cannot represent scale {real!r} as a TFLite multiplier")
    if real == 0.0:
        return 0, 0
    mant, shift = math.frexp(real)
    q = math.floor(mant * 2.0 ** 31 + 0.5)          # exact: mant * 2**31 < 2**31, half away from zero
    if q == 2 ** 31:
        q //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if shift > 30:
        raise ValueError(f"scale {real!r} is too large for a TFLite multiplier")
    return int(q), int(shift)
