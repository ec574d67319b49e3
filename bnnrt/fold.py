"""Folding trained float parameters into the integer constants of numerics.md.

Used by ``BlendNet20.folded`` (``bnnrt.train``), which both the eval mode of
the training modules (so it runs exactly what the exported file runs) and the
PyTorch exporter (``bnnrt.convert.from_torch``) build on. The .tflite importer
does not use it: LCE files hold their thresholds and multipliers already
folded, and their int8 layers keep TFLite's own constants
(``bnnrt.quant.tflite_multiplier``). Pure numpy, float64 throughout; the
kernels never see a float.

A BatchNorm in inference form is an affine map per channel,
``z = g * x + b`` with ``g = gamma / sqrt(var + eps)`` and ``b = beta - g * mean``;
every function here takes that (g, b) pair.
"""

from __future__ import annotations

import numpy as np

from .quant import quantize_multipliers

INT8_WEIGHT_MAX = 127
#: Bias values stay well inside int32 so that acc + bias cannot overflow.
BIAS_LIMIT = 2 ** 30


def bn_affine(gamma, beta, mean, var, eps):
    """(g, b) of an inference BatchNorm: z = g * x + b, per channel, float64."""
    gamma, beta, mean, var = (np.asarray(a, dtype=np.float64) for a in (gamma, beta, mean, var))
    g = gamma / np.sqrt(var + float(eps))
    return g, beta - g * mean


def int8_weight_scale(w):
    """Per-output-channel scale of symmetric int8 weights: max|w| / 127 (1 for an all-zero channel)."""
    w = np.asarray(w, dtype=np.float64)
    amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
    return np.where(amax > 0, amax / INT8_WEIGHT_MAX, 1.0)


def int8_weights(w):
    """Float weights (O, ...) -> (int8 weights, float64 scale[O]) with w ~ q * scale."""
    w = np.asarray(w, dtype=np.float64)
    scale = int8_weight_scale(w)
    q = np.rint(w / scale.reshape((-1,) + (1,) * (w.ndim - 1)))
    return np.clip(q, -INT8_WEIGHT_MAX, INT8_WEIGHT_MAX).astype(np.int8), scale


def binarize_thresholds(g, b, scale):
    """BN then sign on an int8 tensor (real = scale * q) -> the ``binarize`` op's
    (thresholds int16[C], directions int8[C]).

    The bit is -1 iff g * scale * q + b < 0. For g > 0 that is q < -b / (g * scale),
    i.e. q < ceil(t) for integer q; for g < 0 it is q > floor(t). A channel with
    g == 0 is constant: -1 everywhere iff b < 0."""
    g, b = np.asarray(g, np.float64), np.asarray(b, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = -b / (g * float(scale))
    t = np.where(g != 0, t, 0.0)
    t = np.clip(t, -200.0, 200.0)                         # outside int8, the channel is constant
    thresholds = np.where(g > 0, np.ceil(t), np.floor(t))
    directions = np.where(g < 0, -1, 1)
    const = g == 0
    thresholds = np.where(const, np.where(b < 0, 200, -200), thresholds)
    directions = np.where(const, 1, directions)
    return thresholds.astype(np.int16), directions.astype(np.int8)


def sign_thresholds(g, b, k):
    """BN then sign on a binary dot product y in [-k, k] -> the ``bits`` epilogue.

    Returns (thresholds int32[O], flip bool[O]): output +1 iff y' >= threshold,
    where y' is y computed with that channel's weights negated when ``flip``
    (as LCE does), because the kernel only compares one way. +1 iff
    g * y + b >= 0: for g > 0, y >= ceil(-b / g); for g < 0, y <= floor(-b / g),
    i.e. -y >= -floor(-b / g)."""
    g, b = np.asarray(g, np.float64), np.asarray(b, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = -b / g
    tau = np.clip(np.where(g != 0, tau, 0.0), -k - 1, k + 1)
    thresholds = np.where(g > 0, np.ceil(tau), -np.floor(tau))
    const = g == 0
    thresholds = np.where(const, np.where(b >= 0, -k, k + 1), thresholds)
    return thresholds.astype(np.int32), g < 0


def requant_from_affine(g, b, in_scale, out_scale):
    """int32 accumulator (real = acc * in_scale[c]) -> BN (g, b) -> int8 at ``out_scale``.

    Returns (multiplier int32[C], shift int8[C], bias int32[C]) for
    q = requantize(acc + bias, multiplier, shift):
    (g * in_scale * acc + b) / out_scale = (acc + b / (g * in_scale)) * g * in_scale / out_scale.
    A channel with g == 0 outputs 0 (its constant b is dropped)."""
    g, b = np.asarray(g, np.float64), np.asarray(b, np.float64)
    in_scale = np.broadcast_to(np.asarray(in_scale, np.float64), g.shape)
    gain = g * in_scale
    with np.errstate(divide="ignore", invalid="ignore"):
        bias = np.where(gain != 0, b / gain, 0.0)
    bias = np.clip(np.rint(bias), -BIAS_LIMIT, BIAS_LIMIT).astype(np.int32)
    multiplier, shift = quantize_multipliers(gain / float(out_scale))
    return multiplier, shift, bias


def pack_signs(signs, axis=-1):
    """+1/-1 (or >= 0 / < 0) array -> packed bits along ``axis`` (bit 1 = -1)."""
    return np.packbits(np.asarray(signs) < 0, axis=axis, bitorder="little")
