"""The TFLite ops larq_zoo's MeliusNet22, RealToBinaryNet, XNORNet and
DoReFaNet need (issue 18), on tiny files written here with
tests/fuzz/tflite_model.py's flatbuffer writer. Each expected output is an
independent numpy implementation of TFLite's kernel semantics (not bnnrt's
reference): exact for the ops that only select or round values, within float
rounding where bnnrt and TFLite may sum or multiply in another order.
"""

import os
import sys

import numpy as np
import pytest

pytest.importorskip("tflite", reason="the .tflite importer needs the flatbuffer reader (bnnrt[tflite])")

import tflite  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "fuzz"))

import bnnrt  # noqa: E402
from bnnrt.convert import _tflite, from_tflite  # noqa: E402
from bnnrt.errors import GraphError, UnsupportedOpError  # noqa: E402
from tflite_model import write_model  # noqa: E402

OP = tflite.BuiltinOperator
OPTS = tflite.BuiltinOptions
FLOAT32, INT32 = 0, 2


class Net:
    """A one-subgraph TFLite model description (tflite_model.write_model's dict)."""

    def __init__(self, shape):
        self.desc = {"codes": [], "buffers": [b""], "tensors": [], "operators": [], "inputs": [], "outputs": []}
        self.input = self.tensor(shape)
        self.desc["inputs"] = [self.input]

    def tensor(self, shape, data=None, dtype=FLOAT32):
        buf = 0
        if data is not None:
            arr = np.asarray(data, dtype=np.float32 if dtype == FLOAT32 else np.int32).reshape(shape)
            self.desc["buffers"].append(arr.astype(arr.dtype.newbyteorder("<")).tobytes())
            buf = len(self.desc["buffers"]) - 1
        self.desc["tensors"].append({"name": f"t{len(self.desc['tensors'])}", "shape": list(shape),
                                     "type": dtype, "buffer": buf, "quant": None})
        return len(self.desc["tensors"]) - 1

    def const(self, data, dtype=FLOAT32):
        data = np.asarray(data)
        return self.tensor(data.shape, data, dtype)

    def op(self, code, inputs, out_shapes, options_type=0, options=None):
        codes = self.desc["codes"]
        entry = {"builtin": code, "deprecated": min(code, 127), "custom": None, "version": 1}
        if entry not in codes:
            codes.append(entry)
        outs = [self.tensor(s) for s in out_shapes]
        self.desc["operators"].append({"opcode": codes.index(entry), "inputs": list(inputs), "outputs": outs,
                                       "options_type": options_type, "options": options, "custom": None})
        return outs if len(outs) > 1 else outs[0]

    def custom(self, name, inputs, out_shape, out_type=FLOAT32):
        """An LCE op without options (LceQuantize, LceDequantize)."""
        entry = {"builtin": OP.CUSTOM, "deprecated": OP.CUSTOM, "custom": name, "version": 1}
        if entry not in self.desc["codes"]:
            self.desc["codes"].append(entry)
        out = self.tensor(out_shape, dtype=out_type)
        self.desc["operators"].append({"opcode": self.desc["codes"].index(entry), "inputs": list(inputs),
                                       "outputs": [out], "options_type": 0, "options": None, "custom": None})
        return out

    def model(self, *outputs):
        self.desc["outputs"] = list(outputs)
        return write_model(self.desc)


def run(data, x):
    model = from_tflite(data)
    out = model.run(x)
    # the numpy oracle agrees with the kernels bit for bit on these element-wise graphs
    oracle = bnnrt.Model(_tflite.to_graph(data), resolver="reference").run(x)
    for got, want in zip(out, oracle) if isinstance(out, (list, tuple)) else [(out, oracle)]:
        np.testing.assert_array_equal(got, want)
    return out


def tfl_round(x):
    """TFLite's RoundToNearest (reference/round.h): floor, then up when the
    fraction is above one half, or exactly one half with an odd floor."""
    out = np.empty_like(x)
    for i, v in enumerate(x.reshape(-1)):       # one value at a time, as the C loop
        fl = np.floor(v)
        diff = v - fl
        even = diff == 0.5 and int(fl) % 2 == 0      # a tie needs |x| < 2^23: int() is exact
        out.reshape(-1)[i] = fl if diff < 0.5 or even else fl + np.float32(1)
    return out


def test_dorefa_quantizer_round_floor_min_max_abs():
    """DoReFaNet's 2-bit activation: clip to [0, 1] with MINIMUM/MAXIMUM, scale,
    ROUND, scale back; FLOOR and ABS and a two-tensor MINIMUM alongside."""
    shape = [1, 3, 4, 6]
    n = Net(shape)
    lo = n.op(OP.MAXIMUM, [n.input, n.const(np.float32(0.0))], [shape])
    clipped = n.op(OP.MINIMUM, [lo, n.const([1.0])], [shape])
    scaled = n.op(OP.MUL, [clipped, n.const([3.0])], [shape], OPTS.MulOptions, {"FusedActivationFunction": 0})
    rounded = n.op(OP.ROUND, [scaled], [shape])
    q = n.op(OP.MUL, [rounded, n.const([np.float32(1 / 3)])], [shape], OPTS.MulOptions,
             {"FusedActivationFunction": 0})
    fl = n.op(OP.FLOOR, [n.input], [shape])
    ab = n.op(OP.ABS, [fl], [shape])
    both = n.op(OP.MINIMUM, [ab, q], [shape])
    per_channel = n.op(OP.MAXIMUM, [both, n.const(np.linspace(-1, 1, 6))], [shape])
    data = n.model(per_channel, rounded)

    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, (1, 3, 4, 6)).astype(np.float32)
    # exact halves after scaling by 3 (0.5 / 3 * 3 etc. are not exact; these are): ties of ROUND
    x[0, 0, :, :] = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 0.0], np.float32) / 3
    out, rounded_out = run(data, x)
    f32 = np.float32
    s = np.minimum(np.maximum(x, f32(0)), f32(1)) * f32(3)
    r = tfl_round(s)
    expect = np.maximum(np.minimum(np.abs(np.floor(x)), r * f32(1 / 3)),
                        np.linspace(-1, 1, 6).astype(np.float32))
    np.testing.assert_array_equal(rounded_out, r)
    np.testing.assert_array_equal(out, expect)
    # the ties: TFLite rounds half to even (0.5 -> 0, 1.5 -> 2, 2.5 -> 2), not away from zero
    # (TFLite 2.16's builtin ROUND gives these, and +0 for -0.5)
    assert rounded_out[0, 0, 0, :3].tolist() == [0.0, 2.0, 2.0]


def test_round_matches_tflite_bit_for_bit():
    """Signs of zeros included (-0.3, -0.5 -> +0; -0.0 stays -0.0), the largest
    tie of float32 (2^23 - 0.5) and values past 2^23 (integers already)."""
    x = np.array([-0.0, -0.3, -0.5, -1.5, -2.5, -3.5, 0.49999997, 2.5, 8388607.5, -8388607.5, 1e30, -3e38],
                 np.float32)
    n = Net([1, 1, 1, x.size])
    data = n.model(n.op(OP.ROUND, [n.input], [[1, 1, 1, x.size]]))
    out = run(data, x.reshape(1, 1, 1, -1)).reshape(-1)
    want = tfl_round(x)
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(np.signbit(out), np.signbit(want))
    assert out[:3].tolist() == [0.0, 0.0, 0.0] and np.signbit(out[:3]).tolist() == [True, False, False]


def test_split_and_split_v_on_channels():
    """MeliusNet's SPLIT of a block's channels, and SPLIT_V with a -1 size."""
    n = Net([1, 2, 3, 10])
    a, b = n.op(OP.SPLIT, [n.const(np.int32(3), INT32), n.input], [[1, 2, 3, 5]] * 2, OPTS.SplitOptions,
                {"NumSplits": 2})
    p, q, r = n.op(OP.SPLIT_V, [n.input, n.const([2, -1, 3], INT32), n.const(np.int32(-1), INT32)],
                   [[1, 2, 3, 2], [1, 2, 3, 5], [1, 2, 3, 3]], OPTS.SplitVOptions, {"NumSplits": 3})
    s = n.op(OP.ADD, [b, q], [[1, 2, 3, 5]], OPTS.AddOptions, {"FusedActivationFunction": 0})
    data = n.model(a, s, p, r)
    x = np.random.default_rng(1).standard_normal((2, 2, 3, 10)).astype(np.float32)
    outs = run(data, x)
    for got, want in zip(outs, (x[..., :5], x[..., 5:] + x[..., 2:7], x[..., :2], x[..., 7:])):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("axis", [1, 2, 0])
def test_split_on_another_axis_is_named_up_front(axis):
    n = Net([1, 4, 4, 4])
    a, b = n.op(OP.SPLIT, [n.const(np.int32(axis), INT32), n.input], [[1, 2, 4, 4]] * 2, OPTS.SplitOptions,
                {"NumSplits": 2})
    rnd = n.op(OP.SIGN, [a], [[1, 2, 4, 4]])           # also missing: one error names both
    with pytest.raises(UnsupportedOpError, match=rf"SIGN x1, SPLIT \(axis {axis} of rank 4\) x1"):
        from_tflite(n.model(rnd, b))


@pytest.mark.parametrize("alpha_shape", [(5,), (1, 1, 5), (1, 1, 1, 5), (1,)])
def test_prelu_broadcasts_alpha(alpha_shape):
    n = Net([1, 3, 2, 5])
    alpha = np.linspace(-0.5, 1.5, int(np.prod(alpha_shape))).astype(np.float32).reshape(alpha_shape)
    y = n.op(OP.PRELU, [n.input, n.const(alpha)], [[1, 3, 2, 5]])
    x = np.random.default_rng(2).standard_normal((1, 3, 2, 5)).astype(np.float32)
    x[0, 0, 0, 0] = 0.0
    out = from_tflite(n.model(y)).run(x)
    a = np.broadcast_to(alpha.reshape(-1), (5,))
    np.testing.assert_allclose(out, np.where(x >= 0, x, x * a), rtol=1e-6, atol=0)


def test_prelu_per_pixel_alpha_is_refused_clearly():
    n = Net([1, 3, 2, 5])
    y = n.op(OP.PRELU, [n.input, n.const(np.ones((3, 2, 5), np.float32))], [[1, 3, 2, 5]])
    with pytest.raises(GraphError, match=r"operator 0 \(PRELU\): alpha .*per-pixel slopes are not supported"):
        from_tflite(n.model(y))


def test_realtobinary_runtime_channel_scaling():
    """RealToBinaryNet's data-dependent scales: MEAN over H, W -> FULLY_CONNECTED
    -> a (1, C) runtime tensor that MULs the feature map (either operand order),
    and ADD of a runtime (1, 1, 1, C) tensor, then PRELU."""
    c = 6
    n = Net([1, 4, 5, c])
    rng = np.random.default_rng(3)
    w = rng.standard_normal((c, c)).astype(np.float32) * 0.3
    gap = n.op(OP.MEAN, [n.input, n.const([1, 2], INT32)], [[1, c]], OPTS.ReducerOptions, {"KeepDims": 0})
    fc = n.op(OP.FULLY_CONNECTED, [gap, n.const(w), -1], [[1, c]], OPTS.FullyConnectedOptions,
              {"FusedActivationFunction": 1})   # RELU
    scaled = n.op(OP.MUL, [fc, n.input], [[1, 4, 5, c]], OPTS.MulOptions, {"FusedActivationFunction": 0})
    gap4 = n.op(OP.MEAN, [scaled, n.const([1, 2], INT32)], [[1, 1, 1, c]], OPTS.ReducerOptions, {"KeepDims": 1})
    shifted = n.op(OP.ADD, [scaled, gap4], [[1, 4, 5, c]], OPTS.AddOptions, {"FusedActivationFunction": 0})
    y = n.op(OP.PRELU, [shifted, n.const(np.full((1, 1, c), 0.25, np.float32))], [[1, 4, 5, c]])
    data = n.model(y)
    x = rng.standard_normal((3, 4, 5, c)).astype(np.float32)
    out = run(data, x)
    m = x.mean(axis=(1, 2))
    s = np.maximum(m @ w.T, 0)[:, None, None, :] * x
    z = s + s.mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(out, np.where(z >= 0, z, 0.25 * z), rtol=1e-5, atol=1e-6)


def test_runtime_operands_that_do_not_broadcast_are_refused():
    n = Net([1, 4, 5, 6])
    half = n.op(OP.SPLIT, [n.const(np.int32(3), INT32), n.input], [[1, 4, 5, 3]] * 2, OPTS.SplitOptions,
                {"NumSplits": 2})[0]
    y = n.op(OP.MUL, [n.input, half], [[1, 4, 5, 6]], OPTS.MulOptions, {"FusedActivationFunction": 0})
    with pytest.raises(GraphError, match=r"operator 1 \(MUL\): operands .* do not broadcast"):
        from_tflite(n.model(y))


def test_channel_pad():
    """MeliusNet's x + pad(w): PAD of the channel axis (and H, W at once)."""
    n = Net([1, 3, 3, 4])
    pads = n.const(np.array([[0, 0], [1, 0], [0, 2], [3, 1]]), INT32)
    y = n.op(OP.PAD, [n.input, pads], [[1, 4, 5, 8]])
    x = np.random.default_rng(4).standard_normal((2, 3, 3, 4)).astype(np.float32)
    out = run(n.model(y), x)
    np.testing.assert_array_equal(out, np.pad(x, [(0, 0), (1, 0), (0, 2), (3, 1)]))


def test_batch_pad_is_named_up_front():
    n = Net([1, 3, 3, 4])
    y = n.op(OP.PAD, [n.input, n.const(np.array([[1, 0], [0, 0], [0, 0], [0, 0]]), INT32)], [[2, 3, 3, 4]])
    z = n.op(OP.TRANSPOSE, [y, n.const([0, 2, 1, 3], INT32)], [[2, 3, 3, 4]])
    with pytest.raises(UnsupportedOpError, match=r"2 op\(s\).*PAD \(batch axis\) x1, TRANSPOSE x1"):
        from_tflite(n.model(z))


def test_xnor_filter_computed_from_constants_is_folded():
    """XNORNet's dense layer: the float filter binarized in the graph
    (sign(sign(w) + 0.1) * mean|w| per output, transposed), feeding a
    FULLY_CONNECTED and a CONV_2D; the folder makes both filters constants."""
    rng = np.random.default_rng(5)
    c, k = 4, 3
    n = Net([1, 5, 5, c])
    w_hwio = rng.standard_normal((k, k, c, 7)).astype(np.float32)
    w_hwio[0, 0, 0, 0] = 0.0                               # sign(0) + 0.1 > 0: +1, as Larq's ste_sign
    wt = n.const(w_hwio)
    sign = n.op(OP.SIGN, [n.op(OP.ADD, [n.op(OP.SIGN, [wt], [[k, k, c, 7]]), n.const([0.1])], [[k, k, c, 7]],
                               OPTS.AddOptions, {"FusedActivationFunction": 0})], [[k, k, c, 7]])
    scale = n.op(OP.MEAN, [n.op(OP.ABS, [wt], [[k, k, c, 7]]), n.const([0, 1, 2], INT32)], [[1, 1, 1, 7]],
                 OPTS.ReducerOptions, {"KeepDims": 1})
    wq = n.op(OP.MUL, [sign, scale], [[k, k, c, 7]], OPTS.MulOptions, {"FusedActivationFunction": 0})
    ohwi = n.op(OP.TRANSPOSE, [wq, n.const([3, 0, 1, 2], INT32)], [[7, k, k, c]])
    conv = n.op(OP.CONV_2D, [n.input, ohwi, -1], [[1, 3, 3, 7]], OPTS.Conv2DOptions,
                {"Padding": 1, "StrideH": 1, "StrideW": 1, "DilationHFactor": 1, "DilationWFactor": 1,
                 "FusedActivationFunction": 0})
    flat_w = n.op(OP.RESHAPE, [n.op(OP.TRANSPOSE, [n.const(rng.standard_normal((63, 2))), n.const([1, 0], INT32)],
                                    [[2, 63]])], [[2, 63]])
    dense = n.op(OP.FULLY_CONNECTED, [conv, n.op(OP.DIV, [flat_w, n.const([2.0])], [[2, 63]], OPTS.DivOptions,
                                                   {"FusedActivationFunction": 0}), -1], [[1, 2]],
                 OPTS.FullyConnectedOptions, {"FusedActivationFunction": 0})
    data = n.model(dense)
    graph = _tflite.to_graph(data)
    assert [node.op for node in graph.nodes] == ["conv2d_float", "flatten", "conv2d_float"]
    x = np.sign(rng.standard_normal((2, 5, 5, c))).astype(np.float32)
    out = from_tflite(data).run(x)

    wb = np.where(w_hwio >= 0, 1.0, -1.0).astype(np.float32) * np.abs(w_hwio).mean(axis=(0, 1, 2))
    y = np.zeros((2, 3, 3, 7), np.float32)
    for i in range(3):
        for j in range(3):
            y[:, i, j] = np.einsum("nhwc,hwco->no", x[:, i:i + k, j:j + k], wb)
    f = _tflite._File(data, "x")
    _tflite.fold_constants(f)
    fc_w = f.folded[n.desc["operators"][-1]["inputs"][1]]
    np.testing.assert_allclose(out.reshape(2, 2), y.reshape(2, -1) @ fc_w.T, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", ["no broadcast", "huge broadcast", "bad perm", "wrong recorded shape"])
def test_fold_errors_name_the_operator(case):
    n = Net([1, 2, 2, 3])
    if case == "no broadcast":
        bad = n.op(OP.ADD, [n.const(np.ones((2, 3))), n.const(np.ones((4,)))], [[2, 3]], OPTS.AddOptions,
                   {"FusedActivationFunction": 0})
        op, match = "ADD", "cannot fold constants"
    elif case == "huge broadcast":      # a few bytes of file asking for 2^28 values
        bad = n.op(OP.MUL, [n.const(np.ones((1 << 14, 1))), n.const(np.ones((1 << 14,)))], [[1 << 14] * 2],
                   OPTS.MulOptions, {"FusedActivationFunction": 0})
        op, match = "MUL", "larger than"
    elif case == "bad perm":
        bad = n.op(OP.TRANSPOSE, [n.const(np.ones((2, 3))), n.const([0, 5], INT32)], [[3, 2]])
        op, match = "TRANSPOSE", "cannot fold constants"
    else:
        bad = n.op(OP.ABS, [n.const(np.ones((2, 3)))], [[3]])
        op, match = "ABS", "the file records"
    y = n.op(OP.MUL, [n.input, bad], [[1, 2, 2, 3]], OPTS.MulOptions, {"FusedActivationFunction": 0})
    with pytest.raises(GraphError, match=rf"operator 0 \({op}\): .*{match}"):
        from_tflite(n.model(y))


@pytest.mark.parametrize("padding", [1, 0])     # VALID, SAME
def test_xnor_lce_pattern_becomes_a_binary_conv(padding):
    """XNORNet as LCE 0.16 writes it: the float kernel clipped (RELU_N1_TO_1),
    its scale MEAN(ABS), its sign LceQuantize -> LceDequantize, MUL, TRANSPOSE
    to OHWI, then a float CONV_2D of LceDequantize'd activations. Folded, the
    filter is +-scale per output: the conv runs on bits (bconv2d_float)."""
    rng = np.random.default_rng(6)
    c, k, cout = 40, 3, 9
    n = Net([1, 5, 5, c])
    kernel = rng.normal(0, 0.8, (k, k, c, cout)).astype(np.float32)
    kern = n.const(kernel)
    clipped = n.op(OP.RELU_N1_TO_1, [kern], [[k, k, c, cout]])
    scale = n.op(OP.MEAN, [n.op(OP.ABS, [clipped], [[k, k, c, cout]]), n.const([0, 1, 2], INT32)],
                 [[1, 1, 1, cout]], OPTS.ReducerOptions, {"KeepDims": 1})
    signs = n.custom("LceDequantize", [n.custom("LceQuantize", [clipped], [k, k, c, 1], INT32)], [k, k, c, cout])
    w = n.op(OP.TRANSPOSE, [n.op(OP.MUL, [scale, signs], [[k, k, c, cout]], OPTS.MulOptions,
                                 {"FusedActivationFunction": 0}), n.const([3, 0, 1, 2], INT32)], [[cout, k, k, c]])
    xb = n.custom("LceDequantize", [n.custom("LceQuantize", [n.input], [1, 5, 5, 2], INT32)], [1, 5, 5, c])
    bias = rng.normal(0, 1, cout).astype(np.float32)
    o = 5 if padding == 0 else 3
    y = n.op(OP.CONV_2D, [xb, w, n.const(bias)], [[1, o, o, cout]], OPTS.Conv2DOptions,
             {"Padding": padding, "StrideH": 1, "StrideW": 1, "DilationHFactor": 1, "DilationWFactor": 1,
              "FusedActivationFunction": 1})
    data = n.model(y)
    ops = [node.op for node in _tflite.to_graph(data).nodes]
    assert "bconv2d_float" in ops and "conv2d_float" not in ops, ops

    x = rng.standard_normal((2, 5, 5, c)).astype(np.float32)
    out = from_tflite(data).run(x)
    cl = np.clip(kernel, -1, 1)
    wq = np.where(cl < 0, -1.0, 1.0) * np.abs(cl).mean(axis=(0, 1, 2))        # HWIO
    xs = np.where(x < 0, -1.0, 1.0)
    if padding == 0:
        xs = np.pad(xs, [(0, 0), (1, 1), (1, 1), (0, 0)])                        # SAME: zero taps
    want = np.zeros((2, o, o, cout))
    for i in range(o):
        for j in range(o):
            want[:, i, j] = np.einsum("nhwc,hwco->no", xs[:, i:i + k, j:j + k], wq)
    np.testing.assert_allclose(out, np.maximum(want + bias, 0), rtol=1e-5, atol=1e-5)


def test_new_ops_survive_save_and_load(tmp_path):
    """minimum_float, maximum_float, the new activation kinds, channel pads and
    a per-channel second input, written to a .bnn file and read back."""
    shape = [1, 3, 3, 4]
    n = Net(shape)
    gap = n.op(OP.MEAN, [n.input, n.const([1, 2], INT32)], [[1, 1, 1, 4]], OPTS.ReducerOptions, {"KeepDims": 1})
    y = n.op(OP.MAXIMUM, [n.op(OP.MINIMUM, [n.input, gap], [shape]), n.const([0.1])], [shape])
    r = n.op(OP.ROUND, [n.op(OP.ABS, [y], [shape])], [shape])
    p = n.op(OP.PAD, [r, n.const(np.array([[0, 0], [0, 0], [0, 0], [2, 0]]), INT32)], [[1, 3, 3, 6]])
    model = from_tflite(n.model(p))
    bnnrt.save(model, tmp_path / "m.bnn")
    x = np.random.default_rng(7).normal(0, 2, (2, 3, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(bnnrt.load(tmp_path / "m.bnn").run(x), model.run(x))
    want = np.pad(tfl_round(np.abs(np.maximum(np.minimum(x, x.mean(axis=(1, 2), keepdims=True)), np.float32(0.1)))),
                  [(0, 0), (0, 0), (0, 0), (2, 0)])
    np.testing.assert_array_equal(model.run(x), want)
