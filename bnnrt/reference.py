"""The numpy reference of every bnnrt op: the oracle the kernels are tested against.

Written to be read, not to be fast. Each function is the definition of its op
(see ../shared/design/numerics.md and docs/ops.md); the C kernels must agree
with it bit for bit on integer outputs.

Conventions
-----------
* Tensors are NHWC.
* A *bit tensor* holds binary values (+1/-1) packed LSB-first along channels
  into bytes: channel ``c`` of a pixel is bit ``c % 8`` of byte ``c // 8``; bit 0
  means +1, bit 1 means -1; unused high bits of the last byte are 0. Its numpy
  form is uint8 of shape (N, H, W, ceil(C / 8)); the channel count travels
  beside it (``channels=``/``cin=``).
* Binary weights use the same packing: uint8 (Cout, kh, kw, ceil(Cin / 8)).
* int8 tensors are symmetric (zero point 0); ``requantize`` is the only rescale.
* ``pads`` is always (top, bottom, left, right).
"""

from __future__ import annotations

import numpy as np

from ._shapes import conv_geometry, packed_bytes
from .quant import requantize

# --------------------------------------------------------------------------
# bits <-> signs


def pack_bits(negative: np.ndarray) -> np.ndarray:
    """Pack a boolean array (..., C), True meaning -1, into (..., ceil(C/8)) uint8."""
    negative = np.asarray(negative, dtype=bool)
    return np.packbits(negative, axis=-1, bitorder="little")


def unpack_bits(packed: np.ndarray, channels: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: (..., ceil(C/8)) uint8 -> bool (..., C), True = -1."""
    packed = np.asarray(packed, dtype=np.uint8)
    if packed.shape[-1] != packed_bytes(channels):
        raise ValueError(f"{packed.shape[-1]} bytes per pixel do not hold {channels} channels")
    return np.unpackbits(packed, axis=-1, count=channels, bitorder="little").astype(bool)


def to_signs(packed: np.ndarray, channels: int) -> np.ndarray:
    """Bit tensor -> int32 array of +1/-1."""
    return np.where(unpack_bits(packed, channels), -1, 1).astype(np.int32)


# --------------------------------------------------------------------------
# windows


def _pad(x: np.ndarray, pads, value) -> np.ndarray:
    top, bottom, left, right = pads
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def _windows(x, kernel_hw, strides, dilations, pads, pad_value):
    """Yield (ky, kx, tap) where tap is the (N, OH, OW, C) slice each output
    pixel sees at kernel offset (ky, kx)."""
    oh, ow = conv_geometry(x.shape[1:3], kernel_hw, strides, dilations, pads)
    xp = _pad(x, pads, pad_value)
    sh, sw = strides
    dh, dw = dilations
    for ky in range(kernel_hw[0]):
        for kx in range(kernel_hw[1]):
            y0, x0 = ky * dh, kx * dw
            yield ky, kx, xp[:, y0:y0 + sh * (oh - 1) + 1:sh, x0:x0 + sw * (ow - 1) + 1:sw, :]


def _conv(x, w, strides, dilations, pads, pad_value):
    """Integer convolution: x (N,H,W,C) int, w (O,kh,kw,C) int -> (N,OH,OW,O) int64."""
    acc = None
    for ky, kx, tap in _windows(x, w.shape[1:3], strides, dilations, pads, pad_value):
        term = np.tensordot(tap.astype(np.int64), w[:, ky, kx, :].astype(np.int64), axes=([3], [1]))
        acc = term if acc is None else acc + term
    return acc


def epilogue(y, ep, skip=None):
    """A convolution's output transform (``bnnrt.ops.epilogue.Epilogue``) of
    its integer accumulator ``y`` (N, OH, OW, Cout): the one definition of the
    epilogue arithmetic every convolution ends with.

    * ``int32``: ``y + bias`` (a bias only in int8 convs).
    * ``bits``: threshold BatchNorm, +1 iff ``y >= thresholds``.
    * ``int8``: ``clamp(requantize(y + bias, multiplier, shift) [+
      requantize(skip, skip_multiplier, skip_shift)], output_clamp)``.
    * ``float32``: ``float(clamp(y, y_clamp)) * float_multiplier + float_bias``
      (multiply, then add: two roundings) ``[+ skip]`` (the residual add, a
      third rounding), then the ``activation``.
    """
    y = np.asarray(y, dtype=np.int64)
    if ep.kind == "int32":
        return (y if ep.bias is None else y + np.asarray(ep.bias, dtype=np.int64)).astype(np.int32)
    if ep.kind == "bits":
        return pack_bits(y < np.asarray(ep.thresholds, dtype=np.int64))
    if ep.kind == "int8":
        out = requantize(y + np.asarray(ep.bias, dtype=np.int64), ep.multiplier, ep.shift)
        if skip is not None:
            out = out + requantize(skip, ep.skip_multiplier, ep.skip_shift)
        return np.clip(out, ep.output_clamp[0], ep.output_clamp[1]).astype(np.int8)
    if ep.y_clamp is not None:
        y = np.clip(y, ep.y_clamp[0], ep.y_clamp[1])
    out = (y.astype(np.float32) * np.asarray(ep.float_multiplier, dtype=np.float32)
           + np.asarray(ep.float_bias, dtype=np.float32)).astype(np.float32)
    if skip is not None:
        out = (out + np.asarray(skip, dtype=np.float32)).astype(np.float32)
    return ACTIVATIONS[ep.activation](out).astype(np.float32, copy=False)


#: the convolutions take the layer's Epilogue as an argument named ``epilogue``
_epilogue = epilogue


# --------------------------------------------------------------------------
# ops


def quantize(x, *, scale):
    """float32 -> int8: q = clamp(rint(x / scale), -128, 127) (float path)."""
    q = np.rint(np.asarray(x, dtype=np.float32) / np.float32(scale))
    return np.clip(q, -128, 127).astype(np.int8)


def dequantize(x, *, scale, offset=None, channels=None):
    """int8/int32 -> float32: x * scale[c] + offset[c] (scale, offset per channel
    or scalar). A bit tensor (``channels`` given) dequantizes its +1/-1 values."""
    if channels is not None:
        x = to_signs(x, channels)
    y = np.asarray(x).astype(np.float32) * np.asarray(scale, dtype=np.float32)
    if offset is not None:
        y = y + np.asarray(offset, dtype=np.float32)
    return y.astype(np.float32)


def sign_bits(x, *, channels, multiplier=None, bias=None):
    """float32 -> bits: -1 where x < 0, +1 where x >= 0 (and where x is NaN).
    With a per-channel ``multiplier`` and ``bias`` (float32 [C]), the sign of
    x * multiplier + bias, each operation rounded to float32 (mul_float then
    add_float: the BatchNorm before a binary layer, folded into its sign)."""
    x = np.asarray(x, dtype=np.float32)
    assert x.shape[-1] == channels
    if multiplier is not None:
        x = x * np.asarray(multiplier, np.float32) + np.asarray(bias, np.float32)
    return pack_bits(x < 0)


def binarize(x, *, thresholds, directions):
    """int8 -> bits, per channel: -1 iff q < t (direction +1) or q > t (direction -1).

    ``thresholds`` int16[C] folds the BatchNorm before the sign; a threshold out
    of the int8 range makes a constant channel."""
    q = np.asarray(x, dtype=np.int16)
    t = np.asarray(thresholds, dtype=np.int16)
    d = np.asarray(directions, dtype=np.int8)
    negative = np.where(d > 0, q < t, q > t)
    return pack_bits(negative)


def bconv2d(x, weights, *, cin, epilogue, strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0),
            pad_value=1, skip=None):
    """Binary convolution of a bit tensor with binary weights, then the
    layer's :func:`epilogue` (the int8 skip of the Blend add, or the float
    residual of imported models, is ``skip``).

    y[n, oy, ox, o] = sum over taps and channels of x * w, with x, w in {+1, -1};
    padded taps are ``pad_value`` (+1: "same-one", 0: "same-zero")."""
    if pad_value not in (0, 1):
        raise ValueError(f"binary convolution pads with +1 or 0, not {pad_value}")
    y = _conv(to_signs(x, cin), to_signs(weights, cin), strides, dilations, pads, pad_value)
    return _epilogue(y, epilogue, skip)


#: bconv2d_float is bconv2d with a float32 epilogue (LCE's): the op is its own
#: so that a file says which contract a layer follows.
bconv2d_float = bconv2d


def conv2d_int8(x, weights, *, epilogue, strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0), skip=None):
    """int8 convolution with zero padding, accumulated exactly, then the
    layer's :func:`epilogue` (int32 adds the bias; int8 requantizes, with the
    same optional skip add as :func:`bconv2d`)."""
    acc = _conv(np.asarray(x, dtype=np.int8), np.asarray(weights, dtype=np.int8), strides, dilations, pads, 0)
    return _epilogue(acc, epilogue, skip)


def add_int8(a, b, *, a_multiplier, a_shift, b_multiplier, b_shift, clamp=(-128, 127)):
    """The clipping add: clamp(requantize(a) + requantize(b))."""
    out = requantize(a, a_multiplier, a_shift) + requantize(b, b_multiplier, b_shift)
    return np.clip(out, clamp[0], clamp[1]).astype(np.int8)


def maxpool(x, *, kernel, strides, pads=(0, 0, 0, 0), channels=None):
    """Max pooling; padded taps are ignored.

    On int8 tensors the max of the values; on bit tensors (``channels`` given)
    the max of +1/-1, i.e. a pixel is -1 only where every valid tap is -1."""
    if channels is not None:
        signs = to_signs(x, channels)
        out = None  # pads are -1, the minimum, so they never win
        for _, _, tap in _windows(signs, kernel, strides, (1, 1), pads, -1):
            out = tap if out is None else np.maximum(out, tap)
        return pack_bits(out < 0)
    x = np.asarray(x, dtype=np.int8)
    out = None  # pads are -129, below every int8, so they never win
    for _, _, tap in _windows(x.astype(np.int16), kernel, strides, (1, 1), pads, -129):
        out = tap if out is None else np.maximum(out, tap)
    return out.astype(np.int8)


def global_avgpool(x, *, multiplier, shift, clamp=(-128, 127)):
    """int8 (N,H,W,C) -> int8 (N,1,1,C): clamp(requantize(sum over H and W))."""
    total = np.asarray(x, dtype=np.int64).sum(axis=(1, 2), keepdims=True)
    return np.clip(requantize(total, multiplier, shift), clamp[0], clamp[1]).astype(np.int8)


def flatten(x):
    """(N,H,W,C) -> (N,1,1,H*W*C), NHWC order (a dense layer is a 1x1 conv after it)."""
    x = np.asarray(x)
    return x.reshape(x.shape[0], 1, 1, -1)


def softmax(x, *, beta=1.0):
    """float32 softmax of ``beta * x`` over the last axis."""
    x = np.asarray(x, dtype=np.float32)
    e = np.exp((x - x.max(axis=-1, keepdims=True)) * np.float32(beta))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


# --------------------------------------------------------------------------
# float ops (the non-binary layers of imported models). Computed in float32
# like TFLite's kernels. The convolutions and pools also have C kernels, which
# agree with these within float rounding (numerics.md); the element-wise and
# layout ops run these functions themselves.


def _logistic(x):
    # exp(-x) overflows to inf for x < -88, and 1 / (1 + inf) is the right 0:
    # no warning for it (RealToBinaryNet's attention gates saturate so)
    with np.errstate(over="ignore"):
        return np.float32(1) / (np.float32(1) + np.exp(-x))


#: Fused activations of float ops, TFLite's set: name -> function.
ACTIVATIONS = {
    "none": lambda x: x,
    "relu": lambda x: np.maximum(x, np.float32(0)),
    "relu6": lambda x: np.clip(x, np.float32(0), np.float32(6)),
    "relu_n1_to_1": lambda x: np.clip(x, np.float32(-1), np.float32(1)),
    "tanh": np.tanh,
    "logistic": _logistic,
}


def tfl_round(x):
    """TFLite's ROUND (tensorflow/lite/kernels/internal/reference/round.h,
    RoundToNearest, as tf.round): half to even, computed as TFLite does, from
    the floor, so that the signs of zeros match too (-0.3 and -0.5 round to
    +0, where np.rint gives -0)."""
    x = np.asarray(x, dtype=np.float32)
    fl = np.floor(x)
    with np.errstate(invalid="ignore"):         # inf - inf: TFLite's comparisons are false too
        diff = x - fl
        keep = (diff < 0.5) | ((diff == 0.5) & (np.fmod(fl, 2) == 0))
    return np.where(keep, fl, fl + np.float32(1)).astype(np.float32, copy=False)


#: The ``activation`` op's kinds: the fused activations and the element-wise
#: functions TFLite has as separate ops (kept apart from ACTIVATIONS, which
#: lists what a conv or an add may fuse).
UNARY = dict(ACTIVATIONS, abs=np.abs, floor=np.floor, round=tfl_round)


def activation(x, *, kind):
    """float32 -> float32: one of :data:`UNARY`."""
    return UNARY[kind](np.asarray(x, dtype=np.float32)).astype(np.float32, copy=False)


def conv2d_float(x, weights, *, bias=None, strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0),
                 groups=1, activation="none"):
    """float32 convolution with zero padding; ``weights`` (Cout, kh, kw, Cin/groups).

    ``groups == Cin`` with one input channel per group is a depthwise conv
    (Cout = Cin * multiplier, output channel o reads input channel o // multiplier).
    Each group is one matrix product of the gathered windows (im2col) with the
    weights, so BLAS does the work."""
    x = np.asarray(x, dtype=np.float32)
    w = np.asarray(weights, dtype=np.float32)
    cout, kh, kw, cin_g = w.shape
    per_group = cout // groups
    taps = [tap for _, _, tap in _windows(x, (kh, kw), strides, dilations, pads, 0.0)]
    n, oh, ow = taps[0].shape[:3]
    if cin_g == 1 and groups > 1:           # depthwise: a multiply-add per tap
        acc = np.zeros((n, oh, ow, cout), np.float32)
        for (ky, kx), tap in zip(np.ndindex(kh, kw), taps):
            acc += (tap if per_group == 1 else np.repeat(tap, per_group, axis=-1)) * w[:, ky, kx, 0]
    else:
        outs = []
        for g in range(groups):
            cols = (np.ascontiguousarray(taps[0]) if len(taps) == 1 and groups == 1 else   # 1x1: no copy to make
                    np.concatenate([t[..., g * cin_g:(g + 1) * cin_g] for t in taps], axis=-1))
            wg = w[g * per_group:(g + 1) * per_group].reshape(per_group, kh * kw * cin_g)
            outs.append((cols.reshape(-1, kh * kw * cin_g) @ wg.T).reshape(n, oh, ow, per_group))
        acc = outs[0] if groups == 1 else np.concatenate(outs, axis=-1)
    if bias is not None:
        acc += np.asarray(bias, dtype=np.float32)
    return ACTIVATIONS[activation](acc).astype(np.float32, copy=False)


def _elementwise(op, a, b, activation):
    out = op(np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32))
    return ACTIVATIONS[activation](out.astype(np.float32, copy=False)).astype(np.float32, copy=False)


def add_float(a, b, *, activation="none"):
    """float32 a + b (b a constant broadcast per channel, or a second input of
    a's shape or of one value per channel, (1, 1, C)), then the activation."""
    return _elementwise(np.add, a, b, activation)


def mul_float(a, b, *, activation="none"):
    """float32 a * b (b broadcast as add_float's), then the activation."""
    return _elementwise(np.multiply, a, b, activation)


def minimum_float(a, b, *, activation="none"):
    """float32 min(a, b) element-wise (b broadcast as add_float's)."""
    return _elementwise(np.minimum, a, b, activation)


def maximum_float(a, b, *, activation="none"):
    """float32 max(a, b) element-wise (b broadcast as add_float's)."""
    return _elementwise(np.maximum, a, b, activation)


def prelu(x, *, slope):
    """float32 x where x >= 0, else slope * x (``slope`` one value or one per channel)."""
    x = np.asarray(x, dtype=np.float32)
    return np.where(x >= 0, x, x * np.asarray(slope, dtype=np.float32)).astype(np.float32, copy=False)


def pad_float(x, *, pads, value=0.0, channel_pads=(0, 0)):
    """Pad H and W with a constant, ``pads`` (top, bottom, left, right), and
    the channels, ``channel_pads`` (before, after): MeliusNet's ``x + pad(w)``."""
    top, bottom, left, right = pads
    return np.pad(np.asarray(x, dtype=np.float32), ((0, 0), (top, bottom), (left, right), tuple(channel_pads)),
                  constant_values=np.float32(value))


def maxpool_float(x, *, kernel, strides, pads=(0, 0, 0, 0)):
    """float32 max pooling; padded taps are ignored (they are -inf)."""
    out = None
    for _, _, tap in _windows(np.asarray(x, dtype=np.float32), kernel, strides, (1, 1), pads, -np.inf):
        out = tap if out is None else np.maximum(out, tap)
    return out.astype(np.float32)


def _window_sums(x, kernel, strides, pads):
    """Per window: the sum of its valid taps (in tap order) and their count,
    both in x's dtype (padded taps are neither summed nor counted)."""
    total = count = None
    ones = np.ones(x.shape[:3] + (1,), x.dtype)
    for (_, _, tap), (_, _, one) in zip(_windows(x, kernel, strides, (1, 1), pads, 0),
                                        _windows(ones, kernel, strides, (1, 1), pads, 0)):
        total = tap if total is None else total + tap
        count = one if count is None else count + one
    return total, count


def avgpool_float(x, *, kernel, strides, pads=(0, 0, 0, 0)):
    """float32 average pooling over the valid taps of each window (TFLite's
    rule: padded taps are neither summed nor counted)."""
    total, count = _window_sums(np.asarray(x, dtype=np.float32), kernel, strides, pads)
    return (total / count).astype(np.float32)


def mean_float(x):
    """float32 (N,H,W,C) -> (N,1,1,C): the mean over H and W (global average pooling)."""
    return np.asarray(x, dtype=np.float32).mean(axis=(1, 2), keepdims=True, dtype=np.float32)


def reshape(x, *, shape):
    """(N, ...) -> (N, *shape), row-major (NHWC) order."""
    x = np.asarray(x)
    return x.reshape((x.shape[0],) + tuple(shape))


def transpose(x, *, channels=None):
    """(N, H, W, C) -> (N, 1, C, H*W): pixel p = h*W + w of channel c becomes
    channel p of pixel c (the Mixers' token mixing). A bit tensor (``channels``
    given) is unpacked, transposed and packed again along the new channels."""
    x = np.asarray(x)
    n, h, w = x.shape[:3]
    if channels is None:
        return np.ascontiguousarray(x.reshape(n, h * w, -1).transpose(0, 2, 1)).reshape(n, 1, -1, h * w)
    negative = unpack_bits(x, channels).reshape(n, h * w, channels).transpose(0, 2, 1)
    return pack_bits(negative).reshape(n, 1, channels, -1)


def concat(*xs):
    """Concatenate along channels. Bit tensors concatenate their bytes: every
    input but the last has a multiple of 8 channels (the op checks)."""
    return np.concatenate([np.asarray(x) for x in xs], axis=-1)


def slice_channels(x, *, start, stop):
    """Channels ``[start, stop)``. On a bit tensor ``start`` is a multiple of 8
    and the slice is whole bytes; bits past ``stop`` in the last byte are cleared."""
    x = np.asarray(x)
    if x.dtype != np.uint8:
        return np.ascontiguousarray(x[..., start:stop])
    out = np.array(x[..., start // 8:packed_bytes(stop)])
    if (stop - start) % 8:
        out[..., -1] &= (1 << ((stop - start) % 8)) - 1
    return out


# --------------------------------------------------------------------------
# TFLite's integer arithmetic (int8 models imported from LCE / TFLite files).
#
# bnnrt's own int8 ops above are symmetric and round once; TFLite's int8
# tensors carry a zero point and its kernels round twice. These ``tfl_*``
# ops reproduce TFLite's integer kernels bit for bit (docs/ops.md):
#
# * ``tfl_multiply`` is TFLite's MultiplyByQuantizedMultiplier: an optional
#   left shift, a rounding doubling high multiply (saturating; its nudge makes
#   ties go up, toward +inf), then a rounding right shift (ties away from zero).
#   ``shift`` follows TFLite's sign (> 0: left, < 0: right).
# * ruy, the GEMM library TFLite's int8 CONV_2D and FULLY_CONNECTED call on
#   x86, rounds once instead: round_half_up(x * M / 2**(31 - shift)), bnnrt's
#   own :func:`bnnrt.quant.requantize`. The conv op names which one it uses.

INT32_MIN, INT32_MAX = -2**31, 2**31 - 1


def _round_half_away(x):
    """TfLiteRound / std::round on float arrays: halves go away from zero."""
    x = np.asarray(x)
    return np.sign(x) * np.floor(np.abs(x) + x.dtype.type(0.5))


def tfl_multiply(x, multiplier, shift):
    """TFLite's MultiplyByQuantizedMultiplier (double rounding), on int64
    arrays holding int32 values; ``multiplier`` and ``shift`` broadcast."""
    x = np.asarray(x, dtype=np.int64)
    m = np.asarray(multiplier, dtype=np.int64)
    s = np.asarray(shift, dtype=np.int64)
    # the left shift is an int32 product in TFLite; kernels keep it in range
    a = x * np.left_shift(np.int64(1), np.maximum(s, 0))
    prod = a * m
    nudge = np.where(prod >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    num = prod + nudge
    # C's int64 division by 2**31 truncates toward zero
    high = np.where(num >= 0, num >> 31, -((-num) >> 31))
    high = np.where((a == INT32_MIN) & (m == INT32_MIN), INT32_MAX, high)
    e = np.maximum(-s, 0)
    mask = np.left_shift(np.int64(1), e) - 1
    remainder = high & mask
    threshold = (mask >> 1) + (high < 0)
    return (high >> e) + (remainder > threshold)


def ruy_multiply(x, multiplier, shift):
    """The rescale of ruy's x86 kernels (TFLite's GEMM backend, which runs its
    int8 CONV_2D and FULLY_CONNECTED): like :func:`tfl_multiply`, a rounding
    high multiply then a rounding right shift, but both round halves up
    (toward +inf) where gemmlowp rounds them away from zero."""
    x = np.asarray(x, dtype=np.int64)
    m = np.asarray(multiplier, dtype=np.int64)
    s = np.asarray(shift, dtype=np.int64)
    a = x * np.left_shift(np.int64(1), np.maximum(s, 0))
    high = (a * m + (1 << 30)) >> 31
    e = np.maximum(-s, 0)
    return (high + (np.left_shift(np.int64(1), e) >> 1)) >> e


def _tfl_rescale(acc, multiplier, shift, rounding):
    if rounding == "double":
        return tfl_multiply(acc, multiplier, shift)
    if rounding == "ruy":
        return ruy_multiply(acc, multiplier, shift)
    return requantize(acc, multiplier, 31 - np.asarray(shift, dtype=np.int64))


def _clamp8(x, clamp):
    return np.clip(x, clamp[0], clamp[1]).astype(np.int8)


def tfl_quantize(x, *, scale, zero_point):
    """float32 -> int8, TFLite's QUANTIZE: round_half_away(x / scale) (a float32
    division) + zero_point, clamped."""
    q = _round_half_away((np.asarray(x, dtype=np.float32) / np.float32(scale)).astype(np.float32))
    return np.clip(q.astype(np.int64) + zero_point, -128, 127).astype(np.int8)


def tfl_dequantize(x, *, scale, zero_point):
    """int8 -> float32, TFLite's DEQUANTIZE: (q - zero_point) * scale, one
    rounding (q - zero_point is exact in float32)."""
    d = (np.asarray(x, dtype=np.int32) - zero_point).astype(np.float32)
    return (d * np.float32(scale)).astype(np.float32)


def tfl_requantize(x, *, multiplier, shift, in_zero_point, out_zero_point):
    """int8 -> int8 with another scale (QUANTIZE of an int8 tensor):
    tfl_multiply(q - in_zero_point) + out_zero_point, clamped."""
    y = tfl_multiply(np.asarray(x, dtype=np.int64) - in_zero_point, multiplier, shift) + out_zero_point
    return _clamp8(y, (-128, 127))


def tfl_conv2d(x, weights, *, bias, multiplier, shift, in_zero_point, out_zero_point,
               strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0), groups=1,
               clamp=(-128, 127), rounding="double"):
    """TFLite's int8 CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED with
    symmetric per-channel weights: acc = sum over valid taps of
    (q - in_zero_point) * w + bias (padded taps add nothing: they hold the
    real value 0), then rescale per output channel (``rounding``: "double",
    TFLite's reference kernels, "ruy", its GEMM backend's, or "single", one
    exact rounding), + out_zero_point, clamped.
    ``weights`` (Cout, kh, kw, Cin/groups) as :func:`conv2d_float`."""
    xs = np.asarray(x, dtype=np.int64) - in_zero_point
    w = np.asarray(weights, dtype=np.int64)
    cout, kh, kw, cin_g = w.shape
    per_group = cout // groups
    acc = None
    for ky, kx, tap in _windows(xs, (kh, kw), strides, dilations, pads, 0):
        parts = []
        for g in range(groups):
            xg = tap[..., g * cin_g:(g + 1) * cin_g]
            parts.append(np.tensordot(xg, w[g * per_group:(g + 1) * per_group, ky, kx, :], axes=([3], [1])))
        term = parts[0] if groups == 1 else np.concatenate(parts, axis=-1)
        acc = term if acc is None else acc + term
    acc = acc + np.asarray(bias, dtype=np.int64)
    out = _tfl_rescale(acc, multiplier, shift, rounding) + out_zero_point
    return _clamp8(out, clamp)


def tfl_add(a, b, *, a_zero_point, b_zero_point, out_zero_point, left_shift, a_multiplier, a_shift,
            b_multiplier, b_shift, out_multiplier, out_shift, clamp=(-128, 127)):
    """TFLite's int8 ADD: each input, less its zero point, is shifted left by
    ``left_shift`` (20) and rescaled to twice the larger input scale; the sum
    is rescaled to the output (all with :func:`tfl_multiply`), + zero point,
    clamped."""
    sa = tfl_multiply((np.asarray(a, dtype=np.int64) - a_zero_point) << left_shift, a_multiplier, a_shift)
    sb = tfl_multiply((np.asarray(b, dtype=np.int64) - b_zero_point) << left_shift, b_multiplier, b_shift)
    return _clamp8(tfl_multiply(sa + sb, out_multiplier, out_shift) + out_zero_point, clamp)


def tfl_mul(a, b, *, a_zero_point, b_zero_point, out_zero_point, multiplier, shift, clamp=(-128, 127)):
    """TFLite's int8 MUL: tfl_multiply((a - za) * (b - zb)) + out zero point, clamped."""
    prod = (np.asarray(a, dtype=np.int64) - a_zero_point) * (np.asarray(b, dtype=np.int64) - b_zero_point)
    return _clamp8(tfl_multiply(prod, multiplier, shift) + out_zero_point, clamp)


def tfl_avgpool(x, *, kernel, strides, pads=(0, 0, 0, 0), clamp=(-128, 127)):
    """TFLite's int8 AVERAGE_POOL_2D: the sum of the valid taps divided by
    their count, rounded half away from zero (input and output share scale
    and zero point), clamped."""
    total, count = _window_sums(np.asarray(x, dtype=np.int64), kernel, strides, pads)
    half = count // 2
    # C division truncates toward zero
    q = np.where(total > 0, (total + half) // count, -((-total + half) // count))
    return _clamp8(q, clamp)


def tfl_mean(x, *, multiplier, shift, input_zero_point, output_zero_point, clamp=(-128, 127)):
    """TFLite's int8 MEAN over H and W: tfl_multiply(sum of (q - input zero
    point)) + output zero point, clamped; the multiplier already holds the
    1 / (H * W) (the converter derives it as TFLite does)."""
    q = np.asarray(x, dtype=np.int64)
    total = q.sum(axis=(1, 2), keepdims=True) - input_zero_point * q.shape[1] * q.shape[2]
    return _clamp8(tfl_multiply(total, multiplier, shift) + output_zero_point, clamp)


def tfl_pad(x, *, pads, value):
    """Pad H and W of an int8 tensor with ``value`` (TFLite pads with the zero point)."""
    return _pad(np.asarray(x, dtype=np.int8), pads, np.int8(value))


def tfl_softmax(x, *, table, scale, zero_point):
    """TFLite's int8 SOFTMAX (the float lookup-table kernel x86 runs):
    e = table[255 - (max - q)] with table[255 - d] = exp(-in_scale * beta * d)
    (float32[256], made by the converter); the row's e summed in float32 in
    order; each e times 1 / (sum * out_scale), rounded half away from zero,
    + zero_point, clamped."""
    q = np.asarray(x, dtype=np.int64)
    t = np.asarray(table, dtype=np.float32)
    e = t[255 - (q.max(axis=-1, keepdims=True) - q)]
    total = np.cumsum(e, axis=-1, dtype=np.float32)[..., -1:]      # in order, as TFLite's loop
    inv = np.float32(1) / (total * np.float32(scale))
    prob = (e * inv).astype(np.float32)
    return _clamp8(_round_half_away(prob).astype(np.int64) + zero_point, (-128, 127))
