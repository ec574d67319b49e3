"""Every op of the registry, under every kernel-variant setting this CPU has,
against the numpy oracle (scikit-learn's test_common, over ``bnnrt.ops.OPS``).

Each op has an example builder ``(rng) -> Graph``: a one- or two-node graph
with random valid attributes and constants (odd channel counts, strides 2,
every padding mode, dilation, every output dtype, skip inputs). The graph runs
with the kernels and with ``resolver="reference"``; integer and bit outputs
must be equal, float outputs within 1e-4 (numerics.md). Batches hold 1 to 3
images, and the ops with compiled kernels run again on two threads. A new op
fails ``test_every_op_has_an_example`` until it gets a builder here. Where an
op's kernel is its reference function (most float and ``tfl_*`` ops) the
comparison checks what lies around it: argument order, constant operands,
output buffers.

The tests take ``global_random_seed`` (BNNRT_TESTS_SEED, see conftest.py) and
pass for every seed: integer constants are drawn where the integer math is
exact, and float inputs of the rounding ops stay off the rounding ties.
"""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest

import bnnrt
from bnnrt import ops
from bnnrt import reference as ref
from bnnrt._shapes import conv_geometry, packed_bytes, same_pads, symmetric_pads
from bnnrt.graph import GraphBuilder
from bnnrt.quant import quantize_multiplier, quantize_multipliers, tflite_multiplier

from conftest import random_seeds

#: How many graphs each (op, setting) case draws: the builders choose output
#: kinds, padding modes and skips at random, and one seed should see most.
DRAWS = 6
FLOAT_RTOL = 1e-4


# --------------------------------------------------------------------------
# random pieces


def _pick(rng, options):
    """One of ``options`` as the Python object itself (rng.choice returns numpy
    scalars, and the kernels take attributes as the JSON types a file holds)."""
    options = list(options)
    return options[int(rng.integers(len(options)))]


def _hw(rng):
    """Odd and even sizes, at least 5: a 3x3 window at dilation 2 still fits."""
    return int(rng.integers(5, 12)), int(rng.integers(5, 12))


def _channels(rng, lo=1, hi=40):
    """A channel count in [lo, hi): mostly odd (a bit tensor ends in a partial
    byte, a SIMD loop in a remainder), a quarter multiples of 8 (whole bytes,
    which some SIMD variants need)."""
    r = rng.random()
    if r < 0.25 and hi > 8 * max(1, -(-lo // 8)):
        return 8 * int(rng.integers(max(1, -(-lo // 8)), (hi - 1) // 8 + 1))
    c = int(rng.integers(lo, hi))
    return c | 1 if r < 0.8 and c | 1 < hi else c


def _window(rng, h, w, kh, kw, dilate=True):
    """strides, dilations and pads of a conv: valid, TensorFlow's "same" or
    PyTorch's symmetric padding, strides 1 or 2 and dilation 1 or 2 per axis."""
    sh, sw = (int(s) for s in rng.integers(1, 3, 2))
    dh = int(rng.integers(1, 3)) if dilate and kh <= 3 else 1
    dw = int(rng.integers(1, 3)) if dilate and kw <= 3 else 1
    mode = _pick(rng, ["valid", "same", "torch"])
    if mode == "valid":
        pads = (0, 0, 0, 0)
    elif mode == "same":
        pads = same_pads(h, kh, sh, dh) + same_pads(w, kw, sw, dw)
    else:
        pads = symmetric_pads(h, kh, sh, dh * (kh // 2), dh) + symmetric_pads(w, kw, sw, dw * (kw // 2), dw)
    return dict(strides=(sh, sw), dilations=(dh, dw), pads=pads)


def _shape(rng, lo=1, hi=40):
    """(H, W, C) of an input tensor."""
    return _hw(rng) + (_channels(rng, lo, hi),)


def _one_node(op, shape, dtype="float32", attrs=None, consts=None):
    """A graph of one ``op`` node on one input ``x``."""
    b = GraphBuilder()
    return b.build(b.add(op, [b.input("x", shape, dtype)], attrs, consts))


def _pool_window(rng):
    """kernel, strides, pads of a pooling window (each pad smaller than the window)."""
    kernel = tuple(int(k) for k in rng.integers(1, 4, 2))
    strides = tuple(int(s) for s in rng.integers(1, 3, 2))
    pads = tuple(int(rng.integers(0, k)) for k in (kernel[0], kernel[0], kernel[1], kernel[1]))
    return {"kernel": list(kernel), "strides": list(strides), "pads": list(pads)}


def _clamp(rng):
    if rng.random() < 0.5:
        return [-128, 127]
    lo, hi = sorted(int(v) for v in rng.integers(-128, 128, 2))
    return [lo, hi]


def _bits(rng, shape, channels):
    """Random packed bits; the unused high bits of each last byte stay 0."""
    return ref.pack_bits(rng.random(tuple(shape) + (channels,)) < 0.5)


def _signs(rng, n):
    return np.where(rng.random(n) < 0.5, -1.0, 1.0)


def _zero_point(rng):
    return int(rng.integers(-128, 128))


def _int8_requant(rng, cout, k):
    """Per-channel (multiplier, shift) of an int8 epilogue whose outputs cover
    the int8 range, some channels clipping: an accumulator of K random int8
    products has a spread near 5300 sqrt(K)."""
    return quantize_multipliers(_signs(rng, cout) * rng.uniform(20, 200, cout) / (5300 * np.sqrt(k)))


def _rescale(rng):
    """(multiplier, shift) of an int8 tensor's rescale by a factor in [-1.5, 1.5]
    (a skip input's, an add's operands')."""
    return quantize_multiplier(float(rng.uniform(-1.5, 1.5)))


# --------------------------------------------------------------------------
# one example builder per op


def _quantize(rng):
    b = GraphBuilder()
    x = b.input("x", _shape(rng))
    return b.build(b.quantize(x, scale=_pick(rng, [1 / 64, 1 / 8, 0.37, 2.0])))


def _dequantize(rng):
    b = GraphBuilder()
    dtype = _pick(rng, ["int8", "int32", "bits"])
    c = _channels(rng)
    x = b.input("x", _hw(rng) + (c,), dtype)
    scale = rng.uniform(-2, 2, c if rng.random() < 0.5 else 1)
    offset = rng.normal(0, 3, c if rng.random() < 0.5 else 1) if rng.random() < 0.5 else None
    return b.build(b.dequantize(x, scale=scale, offset=offset))


def _softmax(rng):
    return _one_node("softmax", _shape(rng, 2), attrs={"beta": _pick(rng, [1.0, 0.5, 2.5])})


def _flatten(rng):
    b = GraphBuilder()
    dtype = _pick(rng, ["int8", "int32", "float32", "bits"])
    # a bit tensor flattens whole bytes per pixel
    c = 8 * int(rng.integers(1, 4)) if dtype == "bits" else _channels(rng)
    return b.build(b.flatten(b.input("x", _hw(rng) + (c,), dtype)))


def _sign_bits(rng):
    b = GraphBuilder()
    # whole 16s of channels without an affine: the pixels' bits as one stream
    c = 16 * int(rng.integers(1, 5)) if rng.random() < 0.3 else _channels(rng, 1, 70)
    return b.build(b.sign_bits(b.input("x", _hw(rng) + (c,))))


def _binarize(rng):
    b = GraphBuilder()
    c = _channels(rng, 1, 140)     # > 64, not a multiple of 8: the pixel path's blocks
    x = b.input("x", _hw(rng) + (c,), "int8")
    t = rng.integers(-130, 131, c)
    t[::5] = _pick(rng, [-32768, 32767])        # thresholds outside int8: constant channels
    return b.build(b.binarize(x, thresholds=t, directions=_signs(rng, c)))


def _add_int8(rng):
    b = GraphBuilder()
    shape = _shape(rng)
    x, y = b.input("a", shape, "int8"), b.input("b", shape, "int8")
    (am, ash), (bm, bsh) = _rescale(rng), _rescale(rng)
    return b.build(b.add_int8(x, y, a_multiplier=am, a_shift=ash, b_multiplier=bm, b_shift=bsh,
                              clamp=_clamp(rng)))


def _bconv2d(rng):
    h, w = _hw(rng)
    cin, cout = _channels(rng, 1, 70), _channels(rng)
    k = _pick(rng, [1, 3, 3, 5])
    if rng.random() < 0.1:          # K = 9 cin > 32767: the int32 accumulator path
        cin, k = int(rng.integers(3641, 3800)), 3
    geo = _window(rng, h, w, k, k)
    oh, ow = conv_geometry((h, w), (k, k), geo["strides"], geo["dilations"], geo["pads"])
    big_k = k * k * cin
    output = _pick(rng, ["int32", "bits", "int8"])
    kw = dict(geo, cin=cin, pad_value=int(rng.integers(0, 2)), output=output)
    if output == "bits":
        # y is near 0 (spread sqrt(K)); some channels are constant (+1 or -1 everywhere)
        thr = np.rint(rng.normal(0, np.sqrt(big_k), cout)).astype(np.int64)
        thr[::4] = _pick(rng, [-(big_k + 1), big_k + 1])
        kw["thresholds"] = thr
    b = GraphBuilder()
    x = b.input("x", (h, w, cin), "bits")
    if output == "int8":
        m, s = quantize_multipliers(_signs(rng, cout) * rng.uniform(5, 60, cout) / np.sqrt(big_k))
        kw.update(bias=rng.integers(-big_k, big_k + 1, cout), multiplier=m, shift=s, clamp=_clamp(rng))
        if rng.random() < 0.6:
            kw["skip"] = b.input("skip", (oh, ow, cout), "int8")
            kw["skip_multiplier"], kw["skip_shift"] = _rescale(rng)
    return b.build(b.bconv2d(x, _bits(rng, (cout, k, k), cin), **kw))


def _conv2d_int8(rng):
    h, w = _hw(rng)
    cin, cout = _channels(rng, 1, 70), _channels(rng)
    kh, kw_ = (_pick(rng, [1, 3, 5]) for _ in range(2))
    geo = _window(rng, h, w, kh, kw_)
    oh, ow = conv_geometry((h, w), (kh, kw_), geo["strides"], geo["dilations"], geo["pads"])
    output = _pick(rng, ["int32", "int8"])
    b = GraphBuilder()
    x = b.input("x", (h, w, cin), "int8")
    # int32 outputs take any bias; int8 ones one of the accumulator's size, or they all clip
    kw = dict(geo, output=output, bias=rng.integers(-2 ** 20, 2 ** 20, cout) if output == "int32"
              else rng.integers(-20000, 20000, cout))
    if output == "int8":
        kw["multiplier"], kw["shift"] = _int8_requant(rng, cout, kh * kw_ * cin)
        kw["clamp"] = _clamp(rng)
        if rng.random() < 0.6:
            kw["skip"] = b.input("skip", (oh, ow, cout), "int8")
            kw["skip_multiplier"], kw["skip_shift"] = _rescale(rng)
    weights = rng.integers(-128, 128, (cout, kh, kw_, cin))
    return b.build(b.conv2d_int8(x, weights, **kw))


def _maxpool(rng):
    return _one_node("maxpool", _shape(rng, 1, 70), _pick(rng, ["int8", "bits"]), _pool_window(rng))


def _global_avgpool(rng):
    b = GraphBuilder()
    h, w = _hw(rng)
    x = b.input("x", (h, w, _channels(rng)), "int8")
    m, s = quantize_multiplier(float(rng.uniform(0.5, 3)) / (h * w))
    return b.build(b.global_avgpool(x, multiplier=m, shift=s, clamp=_clamp(rng)))


def _activation(rng):
    return _one_node("activation", _shape(rng), attrs={"kind": _pick(rng, sorted(ref.UNARY))})


def _conv2d_float(rng):
    h, w = _hw(rng)
    kh, kw_ = (_pick(rng, [1, 3, 5]) for _ in range(2))
    kind = _pick(rng, ["dense", "depthwise", "grouped"])
    if kind == "dense":
        groups, cin, cout = 1, _channels(rng), _channels(rng)
    elif kind == "depthwise":      # a channel multiplier of 1 or 2
        cin = _channels(rng)
        groups, cout = cin, cin * int(rng.integers(1, 3))
    else:
        groups = int(rng.integers(2, 4))
        cin, cout = groups * int(rng.integers(1, 4)), groups * int(rng.integers(1, 4))
    consts = {"weights": rng.standard_normal((cout, kh, kw_, cin // groups)).astype(np.float32)}
    if rng.random() < 0.7:
        consts["bias"] = rng.standard_normal(cout).astype(np.float32)
    attrs = {k: list(v) for k, v in _window(rng, h, w, kh, kw_).items()}
    attrs.update(groups=groups, activation=_pick(rng, sorted(ref.ACTIVATIONS)))
    return _one_node("conv2d_float", (h, w, cin), attrs=attrs, consts=consts)


def _bconv2d_float(rng):
    h, w = _hw(rng)
    cin, cout = _channels(rng, 1, 70), _channels(rng)
    k = _pick(rng, [1, 3])
    geo = _window(rng, h, w, k, k)
    oh, ow = conv_geometry((h, w), (k, k), geo["strides"], geo["dilations"], geo["pads"])
    attrs = {key: list(v) for key, v in geo.items()}
    attrs.update(cin=cin, pad_value=int(rng.integers(0, 2)),
                 activation=_pick(rng, ["none", "relu", "relu6", "relu_n1_to_1"]))
    clamp = [None, [0, 2 ** 31 - 1], [-1, 1], [0, 6], [-3, 40]][int(rng.integers(0, 5))]
    if clamp is not None:
        attrs["clamp"] = clamp
    consts = {"weights": _bits(rng, (cout, k, k), cin),
              "multiplier": rng.uniform(-2, 2, cout).astype(np.float32),
              "bias": rng.normal(0, 3, cout).astype(np.float32)}
    b = GraphBuilder()
    inputs = [b.input("x", (h, w, cin), "bits")]
    if rng.random() < 0.5:         # the residual add of imported models
        inputs.append(b.input("skip", (oh, ow, cout)))
    return b.build(b.add("bconv2d_float", inputs, attrs, consts))


def _elementwise(op):
    def build(rng):
        b = GraphBuilder()
        shape = _shape(rng)
        inputs = [b.input("a", shape)]
        consts = {}
        if rng.random() < 0.4:
            # a whole tensor, or one value per channel (a runtime per-channel scale)
            inputs.append(b.input("b", _pick(rng, [shape, (1, 1, shape[-1])])))
        else:
            operand_shape = [(1,), shape[-1:], shape][int(rng.integers(0, 3))]
            consts["operand"] = rng.normal(0, 2, operand_shape).astype(np.float32)
        return b.build(b.add(op, inputs, {"activation": _pick(rng, sorted(ref.ACTIVATIONS))}, consts))
    return build


def _pad_float(rng):
    attrs = {"pads": [int(p) for p in rng.integers(0, 4, 4)], "value": float(rng.normal(0, 2))}
    if rng.random() < 0.5:
        attrs["channel_pads"] = [int(p) for p in rng.integers(0, 4, 2)]
    return _one_node("pad_float", _shape(rng), attrs=attrs)


def _pool_float(op):
    return lambda rng: _one_node(op, _shape(rng, 1, 70), attrs=_pool_window(rng))


def _mean_float(rng):
    return _one_node("mean_float", _shape(rng))


def _prelu(rng):
    shape = _shape(rng)
    slope = rng.normal(0, 1, _pick(rng, [(1,), shape[-1:]])).astype(np.float32)
    return _one_node("prelu", shape, consts={"slope": slope})


def _reshape(rng):
    h, w, c = _shape(rng)
    shape = _pick(rng, [(1, 1, h * w * c), (w, h, c), (h * w, c, 1), (1, h, w * c)])
    return _one_node("reshape", (h, w, c), _pick(rng, ["float32", "int8", "int32"]), {"shape": list(shape)})


def _concat(rng):
    b = GraphBuilder()
    h, w = _hw(rng)
    dtype = _pick(rng, ["float32", "int8", "bits"])
    n = int(rng.integers(1, 4))
    # bit tensors join whole bytes: every input but the last has a multiple of 8 channels
    channels = [8 * int(rng.integers(1, 3)) if dtype == "bits" and i < n - 1 else _channels(rng)
                for i in range(n)]
    xs = [b.input(f"x{i}", (h, w, c), dtype) for i, c in enumerate(channels)]
    return b.build(b.add("concat", xs))


def _slice_channels(rng):
    b = GraphBuilder()
    dtype = _pick(rng, ["float32", "int8", "bits"])
    c = _channels(rng, 2, 40)
    x = b.input("x", _hw(rng) + (c,), dtype)
    # a bit tensor slices whole bytes: start is a multiple of 8
    start = 8 * int(rng.integers(0, packed_bytes(c))) if dtype == "bits" else int(rng.integers(0, c))
    stop = int(rng.integers(start + 1, c + 1))
    return b.build(b.add("slice_channels", [x], {"start": start, "stop": stop}))


def _transpose(rng):
    # up to 140 channels and 121 pixels: the 64-, 32- and 16-wide byte tiles
    # and the zero-padded edge tiles all run; (1, W, C) is a Mixer's token tensor
    h, w = _pick(rng, [_hw(rng), (1, int(rng.integers(1, 70)))])
    c = _pick(rng, [_channels(rng, 1, 40), int(rng.integers(40, 141))])
    return _one_node("transpose", (h, w, c), _pick(rng, ["int8", "bits"]))


def _tfl_scale(op, dtype):
    def build(rng):
        attrs = {"scale": float(rng.uniform(0.01, 0.1)), "zero_point": _zero_point(rng)}
        return _one_node(op, _shape(rng), dtype, attrs)
    return build


def _tfl_requantize(rng):
    m, s = tflite_multiplier(float(rng.uniform(0.1, 4)))
    attrs = {"multiplier": m, "shift": s, "in_zero_point": _zero_point(rng), "out_zero_point": _zero_point(rng)}
    return _one_node("tfl_requantize", _shape(rng), "int8", attrs)


def _tfl_conv2d(rng):
    h, w = _hw(rng)
    kh, kw_ = (_pick(rng, [1, 3]) for _ in range(2))
    if rng.random() < 0.7:
        groups, cin, cout = 1, _channels(rng, 1, 70), _channels(rng)
    else:                           # DEPTHWISE_CONV_2D, channel multiplier 1 or 2
        cin = _channels(rng)
        groups, cout = cin, cin * int(rng.integers(1, 3))
    cin_g = cin // groups
    reals = rng.uniform(20, 200, cout) / (9300 * np.sqrt(kh * kw_ * cin_g))
    pairs = [tflite_multiplier(float(r)) for r in reals]
    consts = {"weights": rng.integers(-127, 128, (cout, kh, kw_, cin_g)).astype(np.int8),   # symmetric
              "bias": rng.integers(-5000, 5000, cout).astype(np.int32),
              "multiplier": np.array([p[0] for p in pairs], np.int32),
              "shift": np.array([p[1] for p in pairs], np.int8)}
    attrs = {k: list(v) for k, v in _window(rng, h, w, kh, kw_).items()}
    attrs.update(groups=groups, in_zero_point=_zero_point(rng), out_zero_point=_zero_point(rng),
                 clamp=_clamp(rng), rounding=_pick(rng, ["double", "ruy", "single"]))
    return _one_node("tfl_conv2d", (h, w, cin), "int8", attrs, consts)


def _tfl_binary(op):
    """tfl_add / tfl_mul with TFLite's multipliers for random tensor scales
    (as the importer derives them)."""
    def build(rng):
        b = GraphBuilder()
        shape = _shape(rng)
        inputs = [b.input("a", shape, "int8")]
        consts = {}
        if rng.random() < 0.5:
            inputs.append(b.input("b", shape, "int8"))
        else:
            operand_shape = [(1,), shape[-1:], shape][int(rng.integers(0, 3))]
            consts["operand"] = rng.integers(-128, 128, operand_shape).astype(np.int8)
        sa, sb, so = (float(s) for s in rng.uniform(0.02, 0.1, 3))
        attrs = {"a_zero_point": _zero_point(rng), "b_zero_point": _zero_point(rng),
                 "out_zero_point": _zero_point(rng), "clamp": _clamp(rng)}
        if op == "tfl_add":
            twice_max = 2 * max(sa, sb)
            attrs["left_shift"] = 20
            for side, real in (("a", sa / twice_max), ("b", sb / twice_max), ("out", twice_max / (2 ** 20 * so))):
                attrs[f"{side}_multiplier"], attrs[f"{side}_shift"] = tflite_multiplier(real)
        else:
            attrs["multiplier"], attrs["shift"] = tflite_multiplier(sa * sb / so)
        return b.build(b.add(op, inputs, attrs, consts))
    return build


def _tfl_avgpool(rng):
    return _one_node("tfl_avgpool", _shape(rng), "int8", dict(_pool_window(rng), clamp=_clamp(rng)))


def _tfl_mean(rng):
    shape = _shape(rng)
    m, s = tflite_multiplier(float(rng.uniform(0.3, 3)) / (shape[0] * shape[1]))
    attrs = {"multiplier": m, "shift": s, "input_zero_point": _zero_point(rng),
             "output_zero_point": _zero_point(rng), "clamp": _clamp(rng)}
    return _one_node("tfl_mean", shape, "int8", attrs)


def _tfl_pad(rng):
    attrs = {"pads": [int(p) for p in rng.integers(0, 4, 4)], "value": _zero_point(rng)}
    return _one_node("tfl_pad", _shape(rng), "int8", attrs)


def _tfl_softmax(rng):
    in_scale = float(rng.uniform(0.02, 0.2))
    # TFLite's table: table[255 - d] = exp(-in_scale * beta * d), beta = 1
    table = np.exp(-in_scale * (255 - np.arange(256))).astype(np.float32)
    return _one_node("tfl_softmax", _shape(rng, 2), "int8", {"scale": 1 / 256, "zero_point": -128},
                     {"table": table})


#: op name -> example builder: every op of ``bnnrt.ops.OPS`` has one.
EXAMPLES = {
    "quantize": _quantize, "dequantize": _dequantize, "softmax": _softmax, "flatten": _flatten,
    "sign_bits": _sign_bits, "binarize": _binarize, "add_int8": _add_int8, "bconv2d": _bconv2d,
    "conv2d_int8": _conv2d_int8, "maxpool": _maxpool, "global_avgpool": _global_avgpool,
    "activation": _activation, "conv2d_float": _conv2d_float, "bconv2d_float": _bconv2d_float,
    "add_float": _elementwise("add_float"), "mul_float": _elementwise("mul_float"),
    "minimum_float": _elementwise("minimum_float"), "maximum_float": _elementwise("maximum_float"),
    "pad_float": _pad_float,
    "maxpool_float": _pool_float("maxpool_float"), "avgpool_float": _pool_float("avgpool_float"),
    "mean_float": _mean_float, "prelu": _prelu, "reshape": _reshape, "concat": _concat, "slice_channels": _slice_channels,
    "transpose": _transpose,
    "tfl_quantize": _tfl_scale("tfl_quantize", "float32"), "tfl_dequantize": _tfl_scale("tfl_dequantize", "int8"),
    "tfl_requantize": _tfl_requantize, "tfl_conv2d": _tfl_conv2d, "tfl_add": _tfl_binary("tfl_add"),
    "tfl_mul": _tfl_binary("tfl_mul"), "tfl_avgpool": _tfl_avgpool, "tfl_mean": _tfl_mean, "tfl_pad": _tfl_pad,
    "tfl_softmax": _tfl_softmax,
}

#: Ops whose kernels split work between threads (compiled kernels): run again
#: with two threads, on one image (rows split) and on five (images split).
THREADED = ["quantize", "sign_bits", "binarize", "add_int8", "bconv2d", "conv2d_int8", "maxpool",
            "global_avgpool", "conv2d_float", "bconv2d_float", "maxpool_float", "avgpool_float", "transpose"]


# --------------------------------------------------------------------------
# inputs


def _inputs(rng, graph, batch):
    """One random batch per graph input. Float inputs of a rounding op
    (quantize, tfl_quantize) lie at least 0.1 of a step away from every tie,
    so the test cannot depend on how a kernel divides."""
    rounding = {}
    for node in graph.nodes:
        if node.op in ("quantize", "tfl_quantize"):
            rounding[node.inputs[0]] = node.attrs["scale"]
    arrays = []
    for name, spec in graph.inputs.items():
        shape = (batch,) + spec.shape
        if spec.dtype == "bits":
            x = _bits(rng, shape[:-1], spec.channels)
        elif spec.dtype == "int8":
            x = rng.integers(-128, 128, shape, dtype=np.int8)
            x.flat[::11] = -128                     # the extremes, which int8 tricks miss
            x.flat[5::13] = 127
        elif spec.dtype == "int32":
            x = rng.integers(-2 ** 30, 2 ** 30, shape, dtype=np.int32)
        elif name in rounding:
            frac = rng.uniform(0.1, 0.4, shape) * _signs(rng, int(np.prod(shape))).reshape(shape)
            x = ((rng.integers(-140, 141, shape) + frac) * rounding[name]).astype(np.float32)
        else:
            x = (rng.standard_normal(shape) * 3).astype(np.float32)
            x.flat[::17] = 0.0                     # zero binarizes to +1
            x.flat[3::19] = -0.0
        arrays.append(x)
    return arrays


def _rng(seed, op, draw):
    # one stream per (seed, op, draw), independent of which cases run
    return np.random.default_rng([seed, zlib.crc32(op.encode()), draw])


def _check(model, xs, what):
    """``model`` (kernels) and the oracle on the same graph agree on ``xs``."""
    got = model.run(xs)
    oracle = bnnrt.Model(model.graph, resolver="reference")
    want = oracle.run(xs)
    got, want = (v if isinstance(v, list) else [v] for v in (got, want))
    for g, w, spec in zip(got, want, oracle.plan.output_specs):
        assert g.dtype == w.dtype and g.shape == w.shape, what
        if spec.dtype == "float32":
            # relative to the tensor's scale: a value that cancels to near 0 is
            # as accurate as its terms, not as its own magnitude
            scale = float(np.abs(w).max()) if w.size else 0.0
            np.testing.assert_allclose(g, w, rtol=FLOAT_RTOL, atol=FLOAT_RTOL * scale, err_msg=what)
        else:
            np.testing.assert_array_equal(g, w, err_msg=what)


def _describe(graph):
    """The drawn graph in a failure message (attributes and input shapes)."""
    ins = ", ".join(f"{k}: {s}" for k, s in graph.inputs.items())
    return "; ".join(f"{n.op} {n.attrs}" for n in graph.nodes) + f"; inputs {ins}"


# --------------------------------------------------------------------------
# kernel-variant settings


def simd_settings(info) -> list[str]:
    """BNNRT_DISABLE_SIMD values that reach every kernel variant of this CPU:
    "" (the best), each SIMD variant switched off alone, and "all" (scalar).
    ``info`` is ``bnnrt.cpu_info()``: its "variants" ({family: [variants that
    run here, best first, "scalar" last]}) where present, else the variant
    each family runs now ("kernels")."""
    if "variants" in info:
        names = {v for family in info["variants"].values() for v in family}
    else:
        names = set(info["kernels"].values())
    return [""] + sorted(names - {"scalar"}) + ["all"]


def _cpu_info_undisabled():
    # cpu_info reports the variants the current BNNRT_DISABLE_SIMD leaves;
    # the settings are this CPU's, whatever the shell running pytest has set
    saved = os.environ.pop("BNNRT_DISABLE_SIMD", None)
    try:
        return bnnrt.cpu_info()
    finally:
        if saved is not None:
            os.environ["BNNRT_DISABLE_SIMD"] = saved


SETTINGS = simd_settings(_cpu_info_undisabled())


def test_simd_settings():
    kernels = {"bconv2d": "avx512", "conv2d_int8": "avx512vnni", "binarize": "scalar", "pool_float": "avx2"}
    assert simd_settings({"kernels": kernels}) == ["", "avx2", "avx512", "avx512vnni", "all"]
    variants = {"bconv2d": ["avx512-w16", "avx512", "avx2", "scalar"], "quantize": ["scalar"]}
    assert simd_settings({"kernels": {}, "variants": variants}) == ["", "avx2", "avx512", "avx512-w16", "all"]


# --------------------------------------------------------------------------
# the tests


def test_seed_settings():
    assert random_seeds("7") == [7] and random_seeds(" 40-42") == [40, 41, 42]
    assert random_seeds("all") == list(range(100))
    for bad in ("", "x", "100", "42-40", "-1", "0-100"):
        with pytest.raises(ValueError, match="BNNRT_TESTS_SEED"):
            random_seeds(bad)


def test_every_op_has_an_example():
    missing, stale = sorted(set(ops.OPS) - set(EXAMPLES)), sorted(set(EXAMPLES) - set(ops.OPS))
    assert not missing, f"ops without an example builder in EXAMPLES: {missing}"
    assert not stale, f"examples of ops the registry no longer has: {stale}"
    assert set(THREADED) <= set(ops.OPS)


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s or "best")
@pytest.mark.parametrize("op", sorted(ops.OPS))
def test_op_matches_reference(op, setting, global_random_seed, monkeypatch):
    # the kernels read BNNRT_DISABLE_SIMD when they are made (and some at each
    # call): set for the whole case
    monkeypatch.setenv("BNNRT_DISABLE_SIMD", setting)
    for draw in range(DRAWS):
        rng = _rng(global_random_seed, op, draw)
        graph = EXAMPLES[op](rng)
        assert op in {n.op for n in graph.nodes}, f"the example of {op} does not use it"
        model = bnnrt.Model(graph, threads=1)
        # the setting took effect: no kernel runs a variant it switches off
        variants = model.plan.kernel_variants()
        if setting == "all":
            assert set(variants.values()) <= {"scalar", "numpy"}, variants
        elif setting:
            assert setting not in variants.values(), variants
        xs = _inputs(rng, graph, batch=int(rng.integers(1, 4)))
        _check(model, xs, f"{op}, BNNRT_DISABLE_SIMD={setting!r}, draw {draw}: {_describe(graph)}")


@pytest.mark.parametrize("op", THREADED)
def test_op_with_two_threads_matches_reference(op, global_random_seed, monkeypatch):
    monkeypatch.delenv("BNNRT_DISABLE_SIMD", raising=False)
    for draw in range(DRAWS):
        rng = _rng(global_random_seed, op, draw)
        graph = EXAMPLES[op](rng)
        model = bnnrt.Model(graph, threads=2)
        # one image: each layer's rows split between the threads; five: the
        # threads take parts of the batch (Plan.run)
        for batch in (1, 5):
            xs = _inputs(rng, graph, batch)
            _check(model, xs, f"{op}, 2 threads, batch {batch}, draw {draw}: {_describe(graph)}")
