"""Graph rewrites (bnnrt.passes) on small hand-built graphs."""

import copy

import numpy as np
import pytest

import bnnrt
from bnnrt.graph import GraphBuilder
from bnnrt.passes import count_uses, fuse_residual_adds, fuse_sign_affines

SHAPE = (5, 4, 8)
rng = np.random.default_rng(0)
WEIGHTS = rng.integers(0, 256, (8, 3, 3, 1), dtype=np.uint8)
MULTIPLIER = rng.uniform(0.5, 2, 8).astype(np.float32)
BIAS = rng.normal(size=8).astype(np.float32)


def binary_conv(b, x, name, **attrs):
    """A 3x3 binary conv with a float epilogue of x's signs, the shape of x."""
    bits = b.sign_bits(x, name=f"{name}/sign")
    return b.add("bconv2d_float", [bits], dict(cin=8, strides=[1, 1], dilations=[1, 1], pads=[1, 1, 1, 1],
                                                pad_value=1, **attrs),
                 {"weights": WEIGHTS, "multiplier": MULTIPLIER, "bias": BIAS}, name=name)


def add(b, x, y, name, activation="none"):
    return b.add("add_float", [x, y], {"activation": activation}, name=name)


def run(graph):
    x = np.random.default_rng(1).normal(size=(2,) + SHAPE).astype(np.float32)
    return bnnrt.Model(graph, resolver="reference").run(x)


def ops(graph):
    return [(n.op, n.name, n.inputs) for n in graph.nodes]


def assert_same_result(before, after):
    np.testing.assert_allclose(run(after), run(before), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("conv_first", [True, False])
def test_residual_add_moves_into_the_conv(conv_first):
    b = GraphBuilder()
    x = b.input("x", SHAPE)
    conv = binary_conv(b, x, "conv")
    y = add(b, conv, x, "add", "relu") if conv_first else add(b, x, conv, "add", "relu")
    out = b.add("activation", [y], {"kind": "tanh"}, name="tail")
    graph = b.build([out, y])
    before = copy.deepcopy(graph)
    fused = fuse_residual_adds(graph)
    assert ops(fused) == [("sign_bits", "conv/sign", ["x"]), ("bconv2d_float", "conv", ["conv/sign", "x"]),
                          ("activation", "tail", ["conv"])]
    assert fused.nodes[1].attrs["activation"] == "relu"
    assert fused.outputs == ["tail", "conv"]          # graph outputs follow the add's output too
    assert ops(graph) == ops(before) and "activation" not in graph.nodes[1].attrs   # argument untouched
    assert_same_result(graph, fused)


def test_no_activation_is_added_for_a_plain_add():
    b = GraphBuilder()
    x = b.input("x", SHAPE)
    graph = b.build(add(b, binary_conv(b, x, "conv"), x, "add"))
    fused = fuse_residual_adds(graph)
    assert [n.op for n in fused.nodes] == ["sign_bits", "bconv2d_float"]
    assert "activation" not in fused.nodes[1].attrs and fused.outputs == ["conv"]
    assert_same_result(graph, fused)


def conv_output_read_twice(b, x):
    conv = binary_conv(b, x, "conv")
    return [add(b, conv, x, "add"), b.add("activation", [conv], {"kind": "relu"}, name="other")]


def conv_output_also_a_graph_output(b, x):
    conv = binary_conv(b, x, "conv")
    return [add(b, conv, x, "add"), conv]


def residual_computed_after_the_conv(b, x):
    conv = binary_conv(b, x, "conv")
    return [add(b, conv, b.add("activation", [x], {"kind": "relu"}, name="late"), "add")]


def conv_with_an_activation(b, x):
    return [add(b, binary_conv(b, x, "conv", activation="relu"), x, "add")]


def add_activation_the_conv_lacks(b, x):
    return [add(b, binary_conv(b, x, "conv"), x, "add", "tanh")]


@pytest.mark.parametrize("outputs", [conv_output_read_twice, conv_output_also_a_graph_output,
                                     residual_computed_after_the_conv, conv_with_an_activation,
                                     add_activation_the_conv_lacks], ids=lambda f: f.__name__)
def test_what_is_not_fused(outputs):
    b = GraphBuilder()
    graph = b.build(outputs(b, b.input("x", SHAPE)))
    assert ops(fuse_residual_adds(graph)) == ops(graph)


def test_stacked_blocks_fuse_into_each_conv():
    """The second block's residual is the first block's (fused) output."""
    b = GraphBuilder()
    x = b.input("x", SHAPE)
    y1 = add(b, binary_conv(b, x, "conv1"), x, "add1")
    y2 = add(b, binary_conv(b, y1, "conv2"), y1, "add2", "relu6")
    graph = b.build(y2)
    fused = fuse_residual_adds(graph)
    assert ops(fused) == [("sign_bits", "conv1/sign", ["x"]), ("bconv2d_float", "conv1", ["conv1/sign", "x"]),
                          ("sign_bits", "conv2/sign", ["conv1"]),
                          ("bconv2d_float", "conv2", ["conv2/sign", "conv1"])]
    assert fused.outputs == ["conv2"] and fused.nodes[3].attrs["activation"] == "relu6"
    assert_same_result(graph, fused)


def test_count_uses_counts_node_inputs_and_graph_outputs():
    b = GraphBuilder()
    x = b.input("x", SHAPE)
    y = add(b, x, x, "twice")
    graph = b.build([y, y])
    assert count_uses(graph) == {"x": 2, "twice": 2}


def test_add_of_one_value_per_channel_is_not_fused():
    """A conv's skip is a whole tensor of its output's shape: an add that
    broadcasts a runtime (1, 1, C) scale over the conv's output stays an add."""
    b = GraphBuilder()
    x = b.input("x", SHAPE)
    scale = b.add("mean_float", [x], name="gap")
    graph = b.build(add(b, binary_conv(b, x, "conv"), scale, "add"))
    fused = fuse_residual_adds(graph)
    assert ops(fused) == ops(graph)
    assert_same_result(graph, fused)


# --------------------------------------------------------------------------
# fuse_sign_affines: the BatchNorm before a sign, computed in the sign kernel

def affine_sign(b, x, mult=None, bias=None, activation="none", name="bn"):
    y = x
    if mult is not None:
        y = b.add("mul_float", [y], {"activation": "none"}, {"operand": mult}, name=f"{name}/mul")
    if bias is not None:
        y = b.add("add_float", [y], {"activation": activation}, {"operand": bias}, name=f"{name}/add")
    return b.sign_bits(y, name=f"{name}/sign")


def kernels_and_reference_agree(graph):
    x = np.random.default_rng(2).normal(size=(3,) + SHAPE).astype(np.float32)
    x[0, 0, 0] = -BIAS / MULTIPLIER          # at the tie
    model = bnnrt.Model(graph, threads=2)
    got = model.run(x)
    want = bnnrt.Model(graph, resolver="reference").run(x)
    np.testing.assert_array_equal(got, want)
    return got


@pytest.mark.parametrize("mult,bias", [(MULTIPLIER, BIAS), (None, BIAS), (-MULTIPLIER, None),
                                       (np.float32([-0.5]), np.float32([0.25])), (MULTIPLIER, np.float32([0]))])
def test_affine_before_a_sign_moves_into_it(mult, bias):
    b = GraphBuilder()
    x = b.input("x", SHAPE)
    y = affine_sign(b, x, mult, bias)
    before = b.build(y)
    after = fuse_sign_affines(before)
    assert [n.op for n in after.nodes] == ["sign_bits"]
    consts = after.nodes[0].consts
    assert consts["multiplier"].shape == consts["bias"].shape == (SHAPE[-1],)
    np.testing.assert_array_equal(kernels_and_reference_agree(after), kernels_and_reference_agree(before))
    assert [n.op for n in before.nodes][-1] == "sign_bits" and len(before.nodes) > 1   # left as it was


def test_what_is_not_fused_into_a_sign():
    b = GraphBuilder()
    x = b.input("x", SHAPE)
    relu = affine_sign(b, x, MULTIPLIER, BIAS, activation="relu", name="relu")      # the add clamps first
    y = b.add("mul_float", [x], {}, {"operand": MULTIPLIER}, name="shared")
    twice = b.sign_bits(y, name="shared/sign")                                      # y read twice
    full = b.add("add_float", [x], {}, {"operand": np.ones(SHAPE, np.float32)}, name="full")
    whole = b.sign_bits(full, name="full/sign")                                     # not per channel
    graph = b.build([relu, twice, whole, y])
    after = fuse_sign_affines(graph)
    # only the relu chain's mul (its add keeps the activation) may go: nothing fuses
    assert [n.op for n in after.nodes] == [n.op for n in graph.nodes]
    assert all(not n.consts for n in after.nodes if n.op == "sign_bits")
