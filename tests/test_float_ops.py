"""The float ops of imported models: the reference against a plain loop
definition, and the planned kernels against the reference."""

import itertools

import numpy as np
import pytest

import bnnrt
from bnnrt import reference as ref
from bnnrt._shapes import conv_geometry, same_pads
from bnnrt.errors import GraphError
from bnnrt.graph import GraphBuilder


def loop_conv(x, w, bias, strides, dilations, pads, groups):
    """float64 convolution by its definition, one output value at a time."""
    n, h, wd, cin = x.shape
    cout, kh, kw, cin_g = w.shape
    oh, ow = conv_geometry((h, wd), (kh, kw), strides, dilations, pads)
    per_group = cout // groups
    out = np.zeros((n, oh, ow, cout))
    for b, oy, ox, o in itertools.product(range(n), range(oh), range(ow), range(cout)):
        g = o // per_group
        acc = float(bias[o])
        for ky, kx, c in itertools.product(range(kh), range(kw), range(cin_g)):
            iy = oy * strides[0] - pads[0] + ky * dilations[0]
            ix = ox * strides[1] - pads[2] + kx * dilations[1]
            if 0 <= iy < h and 0 <= ix < wd:
                acc += float(x[b, iy, ix, g * cin_g + c]) * float(w[o, ky, kx, c])
        out[b, oy, ox, o] = acc
    return out


@pytest.mark.parametrize("cin,cout,k,s,d,groups", [
    (3, 4, 3, 2, 1, 1), (2, 3, 1, 1, 1, 1), (4, 8, 3, 1, 2, 4), (6, 6, 3, 2, 1, 6), (4, 6, 2, 1, 1, 2),
])
def test_conv2d_float_reference_is_a_convolution(cin, cout, k, s, d, groups):
    rng = np.random.default_rng(cin + 10 * cout + 100 * groups)
    x = rng.standard_normal((2, 7, 6, cin)).astype(np.float32)
    w = rng.standard_normal((cout, k, k, cin // groups)).astype(np.float32)
    bias = rng.standard_normal(cout).astype(np.float32)
    pads = same_pads(7, k, s, d) + same_pads(6, k, s, d)
    got = ref.conv2d_float(x, w, bias=bias, strides=(s, s), dilations=(d, d), pads=pads, groups=groups)
    np.testing.assert_allclose(got, loop_conv(x, w, bias, (s, s), (d, d), pads, groups), rtol=1e-5, atol=1e-5)


def test_avgpool_counts_only_valid_taps():
    x = np.ones((1, 3, 3, 1), np.float32)
    x[0, 0, 0, 0] = 4
    out = ref.avgpool_float(x, kernel=(2, 2), strides=(2, 2), pads=(1, 0, 1, 0))
    # the corner window holds one valid tap: its mean is that value, not 4 / 4
    assert out[0, 0, 0, 0] == 4 and out[0, 1, 1, 0] == 1


def _graph(op, shape, attrs=None, consts=None, n_inputs=1):
    b = GraphBuilder()
    xs = [b.input(f"x{i}", shape) for i in range(n_inputs)]
    return b.build(b.add(op, xs, attrs or {}, consts or {}))


CASES = [
    ("maxpool_float", {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 0, 1]}, {}, 1),
    ("maxpool_float", {"kernel": [2, 2], "strides": [2, 2], "pads": [0, 0, 0, 0]}, {}, 1),
    ("avgpool_float", {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, {}, 1),
    ("avgpool_float", {"kernel": [3, 3], "strides": [1, 1], "pads": [0, 2, 2, 0]}, {}, 1),
    ("add_float", {"activation": "relu"}, {}, 2),
    ("add_float", {}, {"operand": np.arange(5, dtype=np.float32)}, 1),
    ("mul_float", {"activation": "relu6"}, {"operand": np.float32([0.5])}, 1),
    ("pad_float", {"pads": [1, 0, 2, 3], "value": -1.5}, {}, 1),
    ("mean_float", {}, {}, 1),
    ("activation", {"kind": "tanh"}, {}, 1),
    ("activation", {"kind": "logistic"}, {}, 1),
    ("activation", {"kind": "relu_n1_to_1"}, {}, 1),
    ("reshape", {"shape": [1, 1, 315]}, {}, 1),
    ("reshape", {"shape": [5, 9, 7]}, {}, 1),
    ("concat", {}, {}, 3),
    ("softmax", {"beta": 0.5}, {}, 1),
    ("prelu", {}, {"slope": np.float32([-0.5, 0.0, 0.25, 1.0, 2.0])}, 1),
    ("prelu", {}, {"slope": np.float32([0.1])}, 1),
    ("prelu", {}, {"slope": np.float32([0.0, 0.25, 0.5, 1.0, 0.75])}, 1),    # the max(x, slope x) path
]


def test_prelu_scales_the_negative_values_per_channel():
    g = _graph("prelu", (1, 2, 2), consts={"slope": np.float32([0.25, -1.0])})
    x = np.float32([[[[-2.0, -3.0], [4.0, 0.0]]]])
    np.testing.assert_array_equal(bnnrt.Model(g).run(x), [[[[-0.5, 3.0], [4.0, 0.0]]]])


@pytest.mark.parametrize("op,attrs,consts,n_inputs", CASES, ids=[c[0] for c in CASES])
def test_kernels_equal_reference(op, attrs, consts, n_inputs):
    g = _graph(op, (9, 7, 5), attrs, consts, n_inputs)
    rng = np.random.default_rng(len(op))
    xs = [rng.standard_normal((3, 9, 7, 5)).astype(np.float32) for _ in range(n_inputs)]
    got = bnnrt.Model(g).run(xs)
    want = bnnrt.Model(g, resolver="reference").run(xs)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("cin,weights_shape,groups,activation,direct", [
    (5, (16, 3, 3, 5), 1, "relu", True),          # dense: the direct FMA kernel
    (5, (10, 3, 3, 1), 5, "none", True),          # depthwise, multiplier 2
    (4, (4, 3, 3, 2), 2, "none", False),          # grouped (not depthwise): numpy
    (5, (16, 3, 3, 5), 1, "tanh", False),         # an activation that is no clamp: numpy
    (5, (1100, 3, 3, 5), 1, "none", True),        # 198 KB of weights
    (5, (24000, 3, 3, 5), 1, "none", False),      # 4.3 MB: past the cache, BLAS
])
def test_conv2d_float_kernel_choice(cin, weights_shape, groups, activation, direct):
    rng = np.random.default_rng(0)
    shape = (6, 5, cin)
    consts = {"weights": rng.standard_normal(weights_shape).astype(np.float32)}
    g = _graph("conv2d_float", shape, {"groups": groups, "activation": activation, "pads": [1, 1, 1, 1]}, consts)
    model = bnnrt.Model(g)
    assert (model.layers()[0]["kernel"] != "numpy") == direct
    x = rng.standard_normal((2,) + shape).astype(np.float32)
    want = bnnrt.Model(g, resolver="reference").run(x)
    np.testing.assert_allclose(model.run(x), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("width,cin,k,stride", [(16, 5, 3, 1), (32, 3, 3, 1), (32, 12, 1, 2), (20, 4, 3, 1),
                                               (12, 7, 3, 2), (8, 9, 1, 1)])
def test_conv2d_float_rows_of_any_width(width, cin, k, stride):
    """Rows whose pixels the dense kernel blocks in 4s (AVX2: widths a
    multiple of 4 but not of 5), 5s or 8s, with the channel blocks' tails."""
    rng = np.random.default_rng(width + cin)
    shape = (5, width, cin)
    pads = [k // 2] * 4
    consts = {"weights": rng.standard_normal((21, k, k, cin)).astype(np.float32),
              "bias": rng.standard_normal(21).astype(np.float32)}
    g = _graph("conv2d_float", shape, {"strides": [stride, stride], "pads": pads}, consts)
    model = bnnrt.Model(g)
    assert model.layers()[0]["kernel"] != "numpy"
    x = rng.standard_normal((2,) + shape).astype(np.float32)
    want = bnnrt.Model(g, resolver="reference").run(x)
    np.testing.assert_allclose(model.run(x), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("op,attrs,consts,match", [
    ("conv2d_float", {"groups": 2}, {"weights": np.zeros((4, 3, 3, 5), np.float32)}, "do not fit"),
    ("conv2d_float", {"activation": "gelu"}, {"weights": np.zeros((4, 1, 1, 5), np.float32)}, "activation"),
    ("add_float", {}, {"operand": np.zeros(3, np.float32)}, "does not broadcast"),
    ("reshape", {"shape": [2, 2, 2]}, {}, "cannot reshape"),
    ("pad_float", {"pads": [1, 1, 1, 1], "value": float("nan")}, {}, "finite"),
    ("softmax", {"beta": -1.0}, {}, "beta"),
    ("bconv2d_float", {"cin": 5}, {}, "expected dtype bits"),
    ("prelu", {}, {"slope": np.zeros(3, np.float32)}, "does not broadcast"),
    ("prelu", {}, {"slope": np.float32([np.inf])}, "NaN or infinite"),
])
def test_bad_float_layers_name_the_problem(op, attrs, consts, match):
    with pytest.raises(GraphError, match=match):
        bnnrt.Model(_graph(op, (9, 7, 5), attrs, consts))


def test_slice_and_concat_of_bit_tensors():
    """Grouped binary convs of imported models slice and concatenate bit tensors
    by whole bytes; the values are those of the float tensor they came from."""
    b = GraphBuilder()
    x = b.input("x", (4, 3, 21))
    bits = b.sign_bits(x)
    parts = [b.add("slice_channels", [bits], {"start": s, "stop": e}) for s, e in ((8, 16), (0, 8), (16, 21))]
    y = b.dequantize(b.add("concat", parts), scale=1.0)
    g = b.build(y)
    xs = np.random.default_rng(0).standard_normal((2, 4, 3, 21)).astype(np.float32)
    want = np.where(np.concatenate([xs[..., 8:16], xs[..., 0:8], xs[..., 16:21]], axis=-1) < 0, -1, 1)
    for resolver in ("kernels", "reference"):
        np.testing.assert_array_equal(bnnrt.Model(g, resolver=resolver).run(xs), want)


@pytest.mark.parametrize("slices,match", [(((4, 12),), "whole bytes"), (((0, 5), (5, 21)), "whole bytes")])
def test_bit_slices_must_be_whole_bytes(slices, match):
    b = GraphBuilder()
    bits = b.sign_bits(b.input("x", (4, 3, 21)))
    parts = [b.add("slice_channels", [bits], {"start": s, "stop": e}) for s, e in slices]
    out = b.add("concat", parts) if len(parts) > 1 else parts[0]
    with pytest.raises(GraphError, match=match):
        bnnrt.Model(b.build(out))


@pytest.mark.parametrize("op,shape,attrs,consts,match", [
    ("softmax", (1, 1, 5), {"beta": 1e300}, {}, r"'beta' = 1e\+300 is not a finite float32"),
    ("softmax", (1, 1, 5), {"beta": 10**400}, {}, "beyond the float range"),
    ("pad_float", (3, 3, 2), {"pads": [1, 1, 1, 1], "value": 1e300}, {}, "not a finite float32"),
    ("quantize", (3, 3, 2), {"scale": 1e-300}, {}, "positive float32"),
    ("quantize", (3, 3, 2), {"scale": 10**400}, {}, "beyond the float range"),
    ("tfl_quantize", (3, 3, 2), {"scale": 1e-300, "zero_point": 0}, {}, "positive float32"),
    ("tfl_dequantize", (3, 3, 2), {"scale": 1e37, "zero_point": 0}, {}, "times 256"),
    ("dequantize", (3, 3, 2), {}, {"scale": np.array([np.nan], np.float32)}, "NaN or infinite"),
    ("tfl_softmax", (1, 1, 5), {"scale": 1 / 256, "zero_point": -128}, {"table": np.zeros(256, np.float32)},
     "not all zero"),
    ("add_float", (3, 3, 2), {}, {"operand": np.array([np.inf], np.float32)}, "NaN or infinite"),
])
def test_float_constants_are_checked_in_float32(op, shape, attrs, consts, match):
    """A float constant is checked in the precision the op computes in: a value
    finite in float64 that overflows or underflows float32 would give inf, NaN
    or a collapsed quantization at run time."""
    b = GraphBuilder()
    dtype = "int8" if op in ("tfl_dequantize", "tfl_softmax", "dequantize") else "float32"
    x = b.input("x", shape, dtype)
    y = b.add(op, [x], attrs, consts, name="layer")
    with pytest.raises(GraphError, match=r"layer 'layer' \(" + op + r"\): .*" + match):
        bnnrt.Model(b.build(y))
