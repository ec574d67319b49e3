"""Importing int8 LCE/TFLite files (LCE's converter with int8 input and
output and a default int8 range): TFLite's integer kernels, bit for bit.

The fixtures (tests/data/lce/int8_*.tflite, written by make_fixtures.py in
LCE's virtualenv) hold LCE's int8 outputs for int8 inputs quantized the
TFLite way. bnnrt's graph takes the float inputs, quantizes them with the
file's input scale and zero point, and returns (q - zero point) * scale:
quantizing that back must give LCE's int8 values exactly.
"""

import os

import numpy as np
import pytest

pytest.importorskip("tflite", reason="the .tflite importer needs the flatbuffer reader (bnnrt[tflite])")

import bnnrt  # noqa: E402
from bnnrt import reference as ref  # noqa: E402
from bnnrt.convert import _tflite, from_tflite  # noqa: E402
from bnnrt.errors import GraphError, UnsupportedOpError  # noqa: E402
from bnnrt.quant import tflite_multiplier  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "data", "lce")
FIXTURES = ["int8_model", "int8_ops", "int8_quicknet", "int8_birealnet"]


def fixture(name):
    return os.path.join(DATA, f"{name}.tflite"), np.load(os.path.join(DATA, f"{name}.npz"))


def as_int8(out, data):
    scale, zp = data["output_quantization"]
    return np.rint(out.reshape(data["lce"].shape) / scale + zp).astype(np.int64)


@pytest.mark.parametrize("name", FIXTURES)
def test_int8_outputs_equal_lce(name):
    path, data = fixture(name)
    model = from_tflite(path)
    got = as_int8(model.run(data["inputs"]), data)
    # TFLite's integer arithmetic, reproduced: every int8 output equal
    np.testing.assert_array_equal(got, data["lce"].astype(np.int64))
    np.testing.assert_array_equal(got.argmax(axis=1), data["lce"].argmax(axis=1))


def test_input_is_quantized_as_tflite_does():
    path, data = fixture("int8_ops")
    graph = _tflite.to_graph(path)
    first = graph.nodes[0]
    assert first.op == "tfl_quantize"
    q = ref.tfl_quantize(data["inputs"], scale=first.attrs["scale"], zero_point=first.attrs["zero_point"])
    np.testing.assert_array_equal(q, data["inputs_q"])
    assert graph.metadata["quantization"]["input"] == [first.attrs["scale"], first.attrs["zero_point"]]


@pytest.mark.parametrize("name", FIXTURES)
def test_kernels_equal_reference(name):
    path, data = fixture(name)
    graph = _tflite.to_graph(path)
    kernels = bnnrt.Model(graph).run(data["inputs"])
    oracle = bnnrt.Model(graph, resolver="reference").run(data["inputs"])
    # int8 all the way, then one dequantize: bit-exact (the float binary blocks agree within rounding)
    np.testing.assert_allclose(kernels, oracle, rtol=0, atol=1e-6)


def test_tfl_conv2d_kernel_equals_reference_on_random_layers():
    """The im2col/float64 kernel against the oracle: odd channels, stride 2,
    dilation, padding, groups, depthwise with a multiplier, both roundings."""
    rng = np.random.default_rng(0)
    b = bnnrt.graph.GraphBuilder()
    x = b.input("x", (9, 7, 6), "int8")
    cases = [dict(cout=5, k=3, groups=1, strides=[2, 2], dilations=[1, 1], pads=[1, 1, 1, 1], rounding="double"),
             dict(cout=12, k=3, groups=6, strides=[1, 2], dilations=[1, 1], pads=[1, 1, 0, 1], rounding="double"),
             dict(cout=4, k=2, groups=2, strides=[1, 1], dilations=[2, 1], pads=[0, 1, 1, 0], rounding="single"),
             dict(cout=3, k=1, groups=1, strides=[1, 1], dilations=[1, 1], pads=[0, 0, 0, 0], rounding="single"),
             dict(cout=7, k=3, groups=1, strides=[2, 1], dilations=[1, 1], pads=[1, 0, 1, 1], rounding="ruy")]
    outs = []
    for i, c in enumerate(cases):
        w = rng.integers(-127, 128, (c["cout"], c["k"], c["k"], 6 // c["groups"])).astype(np.int8)
        mult = rng.integers(1 << 30, 1 << 31, c["cout"]).astype(np.int32)
        shift = rng.integers(-12, -6, c["cout"]).astype(np.int8)
        bias = rng.integers(-5000, 5000, c["cout"]).astype(np.int32)
        outs.append(b.add("tfl_conv2d", [x], {"strides": c["strides"], "dilations": c["dilations"],
                                              "pads": c["pads"], "groups": c["groups"], "in_zero_point": -7,
                                              "out_zero_point": 3, "clamp": [-100, 120],
                                              "rounding": c["rounding"]},
                          {"weights": w, "bias": bias, "multiplier": mult, "shift": shift}, name=f"conv{i}"))
    graph = b.build(outs)
    xs = rng.integers(-128, 128, (3, 9, 7, 6)).astype(np.int8)
    for k, o in zip(bnnrt.Model(graph).run(xs), bnnrt.Model(graph, resolver="reference").run(xs)):
        np.testing.assert_array_equal(k, o)


def test_tfl_multiply_is_tflites_double_rounding():
    # 5 * 0.25: the high multiply rounds 2.5 to 3, the shift rounds 1.5 to 2 (single
    # rounding gives 1); -5 * 0.25: the high multiply's ties go up, -2.5 to -2, then -1
    assert ref.tfl_multiply(np.array([5, -5, 3, 100]), 1 << 30, -1).tolist() == [2, -1, 1, 25]
    # left shifts apply before the multiply; the only saturating case
    assert ref.tfl_multiply(np.array([3]), 1 << 30, 2).tolist() == [6]
    assert ref.tfl_multiply(np.array([-2**31]), -2**31, 0).tolist() == [2**31 - 1]
    m, s = tflite_multiplier(1 / 12)
    assert (m, s) == (round(2 / 3 * 2**31), -3)


def test_ruy_multiply_rounds_halves_up():
    # the GEMM backend's rescale differs from gemmlowp's on ties of the right
    # shift: -186 * 2**30 / 2**31 = -93 exactly, then -93 / 2 = -46.5 goes up
    # to -46 where the reference rounds away from zero to -47 (the int8_ops
    # fixture's conv2d_4 has such a tie); elsewhere they agree
    assert ref.ruy_multiply(np.array([-186]), 1 << 30, -1).tolist() == [-46]
    assert ref.tfl_multiply(np.array([-186]), 1 << 30, -1).tolist() == [-47]
    assert ref.ruy_multiply(np.array([5, -5, 3, 100, 186]), 1 << 30, -1).tolist() == [2, -1, 1, 25, 47]


def test_int8_softmax_sums_to_one_and_matches_lce():
    path, data = fixture("int8_ops")
    model = from_tflite(path)
    assert model.metadata["output"] == "probabilities"
    probs = model.predict(data["inputs"])
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=0.03)


def test_save_load_round_trip(tmp_path):
    for name in ("int8_ops", "int8_quicknet"):
        path, data = fixture(name)
        model = from_tflite(path)
        out = tmp_path / f"{name}.bnn"
        bnnrt.save(model, out)
        again = bnnrt.load(out)
        assert [n.op for n in again.graph.nodes] == [n.op for n in model.graph.nodes]
        np.testing.assert_array_equal(again.run(data["inputs"]), model.run(data["inputs"]))
        assert again.metadata["quantization"] == model.metadata["quantization"]


def test_covers_the_int8_ops():
    used = set()
    for name in FIXTURES:
        used |= {n.op for n in _tflite.to_graph(fixture(name)[0]).nodes}
    tfl_ops = {n for n in bnnrt.ops.OPS if n.startswith("tfl_")}
    # tfl_requantize: LCE's converter gives every int8 tensor of these models one scale
    assert tfl_ops - used == {"tfl_requantize"}
    assert {"binarize", "maxpool", "concat", "bconv2d_float"} <= used


def test_unsupported_int8_ops_are_listed(monkeypatch):
    """An int8 op bnnrt lacks: the one error lists every one with its count."""
    for op in ("MEAN", "FULLY_CONNECTED", "QUANTIZE"):
        monkeypatch.setattr(_tflite, "INT8_HANDLERS", _tflite.INT8_HANDLERS - {op})
    with pytest.raises(UnsupportedOpError) as e:
        from_tflite(fixture("int8_model")[0])
    msg = str(e.value)
    assert "3 op(s)" in msg
    for op in ("MEAN (int8) x1", "FULLY_CONNECTED (int8) x1", "QUANTIZE (int8) x1"):
        assert op in msg
    assert "LceBconv2d" not in msg and "ADD" not in msg     # those run on floats in this file


def _mutated(name, tensor_name, **changes):
    """The fixture's flatbuffer with one tensor's quantization changed in place."""
    import tflite
    data = bytearray(open(fixture(name)[0], "rb").read())
    m = tflite.Model.GetRootAsModel(data, 0)
    g = m.Subgraphs(0)
    for i in range(g.TensorsLength()):
        t = g.Tensors(i)
        if t.Name().decode() == tensor_name:
            q = t.Quantization()
            for key, value in changes.items():
                vec = q.ZeroPointAsNumpy() if key == "zero_point" else q.ScaleAsNumpy()
                off = q._tab.Vector(q._tab.Offset(10 if key == "zero_point" else 8))
                dt = "<i8" if key == "zero_point" else "<f4"
                np.frombuffer(data, dt, count=len(vec), offset=off)[...] = value  # noqa: B018
            return bytes(data)
    raise AssertionError(tensor_name)


def test_zero_point_out_of_range_names_the_layer():
    bad = _mutated("int8_model", "model/batch_normalization/FusedBatchNormV3;model/c", zero_point=300)
    with pytest.raises(GraphError, match=r"operator 0 \(CONV_2D\).*zero point 300"):
        from_tflite(bad)


def test_asymmetric_weights_are_refused():
    import tflite
    f = tflite.Model.GetRootAsModel(open(fixture("int8_model")[0], "rb").read(), 0).Subgraphs(0)
    wname = [f.Tensors(i).Name().decode() for i in range(f.TensorsLength())
             if f.Tensors(i).Name().decode() == "model/conv2d/Conv2D"][0]
    bad = _mutated("int8_model", wname, zero_point=3)
    with pytest.raises(GraphError, match="symmetric"):
        from_tflite(bad)


def test_bad_attributes_name_the_layer():
    b = bnnrt.graph.GraphBuilder()
    x = b.input("x", (4, 4, 3))
    q = b.add("tfl_quantize", [x], {"scale": 0.1, "zero_point": 200}, name="q")
    with pytest.raises(GraphError, match=r"layer 'q' \(tfl_quantize\).*zero_point"):
        bnnrt.Model(b.build(q))
    b = bnnrt.graph.GraphBuilder()
    x = b.input("x", (4, 4, 3), "int8")
    y = b.add("tfl_mean", [x], {"multiplier": 1 << 30, "shift": 40, "input_zero_point": 0,
                                "output_zero_point": 0}, name="m")
    with pytest.raises(GraphError, match=r"layer 'm' \(tfl_mean\).*shift"):
        bnnrt.Model(b.build(y))
