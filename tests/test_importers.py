"""What the importers share (bnnrt.convert._common) and how the CLI finds them
(bnnrt.convert.IMPORTERS)."""

import collections
import subprocess
import sys

import numpy as np
import pytest

import bnnrt
from bnnrt import cli, convert, zoo
from bnnrt.convert._common import TensorBindings, check_supported, source_metadata
from bnnrt.errors import GraphError, UnsupportedOpError
from bnnrt.graph import GraphBuilder, TensorSpec

# -- the unsupported-op precheck


def test_every_missing_op_is_named_with_its_count():
    counts = collections.Counter({"Relu": 3, "Gather": 1, "Squeeze": 2, "LceFoo": 5})
    with pytest.raises(UnsupportedOpError) as e:
        check_supported("net.onnx", counts, {"Relu"})
    assert str(e.value) == ("net.onnx: bnnrt does not implement 3 op(s) this file uses: "
                            "Gather x1, LceFoo x5, Squeeze x2")


def test_a_file_of_known_ops_passes():
    check_supported("net.onnx", collections.Counter(["Relu", "Relu", "Conv"]), {"Relu": None, "Conv": None})


def tiny_tflite(ops, tensor_types):
    """The bytes of a .tflite flatbuffer: subgraph 0 with one (1, 4, 4, 8) tensor
    per entry of ``tensor_types`` (TFLite type codes, no data; tensor 0 is the
    input, the last the output) and ``ops``: (builtin or custom op name, input
    indices, output indices)."""
    import flatbuffers
    import tflite
    b = flatbuffers.Builder(1024)

    def vector(start, items, prepend):
        start(b, len(items))
        for item in reversed(items):
            prepend(item)
        return b.EndVector()

    def offsets(start, items):
        return vector(start, items, b.PrependUOffsetTRelative)

    def ints(start, items):
        return vector(start, items, b.PrependInt32)

    names = sorted({name for name, _, _ in ops})
    codes = []
    for name in names:
        builtin = getattr(tflite.BuiltinOperator, name, None)
        custom = b.CreateString(name) if builtin is None else None
        code = tflite.BuiltinOperator.CUSTOM if builtin is None else builtin
        tflite.OperatorCodeStart(b)
        tflite.OperatorCodeAddBuiltinCode(b, code)
        tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
        if custom is not None:
            tflite.OperatorCodeAddCustomCode(b, custom)
        codes.append(tflite.OperatorCodeEnd(b))
    tensors = []
    for i, type_code in enumerate(tensor_types):
        shape, name = ints(tflite.TensorStartShapeVector, [1, 4, 4, 8]), b.CreateString(f"t{i}")
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, shape)
        tflite.TensorAddType(b, type_code)
        tflite.TensorAddBuffer(b, 0)
        tflite.TensorAddName(b, name)
        tensors.append(tflite.TensorEnd(b))
    operators = []
    for name, ins, outs in ops:
        ins, outs = ints(tflite.OperatorStartInputsVector, ins), ints(tflite.OperatorStartOutputsVector, outs)
        tflite.OperatorStart(b)
        tflite.OperatorAddOpcodeIndex(b, names.index(name))
        tflite.OperatorAddInputs(b, ins)
        tflite.OperatorAddOutputs(b, outs)
        operators.append(tflite.OperatorEnd(b))
    tensors = offsets(tflite.SubGraphStartTensorsVector, tensors)
    inputs = ints(tflite.SubGraphStartInputsVector, [0])
    outputs = ints(tflite.SubGraphStartOutputsVector, [len(tensor_types) - 1])
    operators = offsets(tflite.SubGraphStartOperatorsVector, operators)
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, tensors)
    tflite.SubGraphAddInputs(b, inputs)
    tflite.SubGraphAddOutputs(b, outputs)
    tflite.SubGraphAddOperators(b, operators)
    subgraphs = offsets(tflite.ModelStartSubgraphsVector, [tflite.SubGraphEnd(b)])
    tflite.BufferStart(b)
    buffers = offsets(tflite.ModelStartBuffersVector, [tflite.BufferEnd(b)])
    codes = offsets(tflite.ModelStartOperatorCodesVector, codes)
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddOperatorCodes(b, codes)
    tflite.ModelAddSubgraphs(b, subgraphs)
    tflite.ModelAddBuffers(b, buffers)
    b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_tflite_precheck_names_every_missing_op_before_building(tmp_path):
    """Float, int8 and uint8 ops, known and not: all that bnnrt lacks in one
    error, although the graph is nonsense (it is never built)."""
    pytest.importorskip("tflite")
    float32, int8, uint8 = 0, 9, 3
    path = tmp_path / "odd.tflite"
    path.write_bytes(tiny_tflite([("GATHER", [0], [1]), ("SQUEEZE", [1], [2]), ("SQUEEZE", [2], [1]),
                                  ("RELU", [0], [1]), ("ADD", [3, 3], [3]), ("ADD", [4, 3], [3]),
                                  ("LceFancy", [1], [5])],
                                 [float32, float32, float32, int8, uint8, float32]))
    with pytest.raises(UnsupportedOpError) as e:
        convert.from_tflite(path)
    assert str(e.value) == (f"{path}: bnnrt does not implement 4 op(s) this file uses: "
                            "ADD (int8, uint8) x1, GATHER x1, LceFancy x1, SQUEEZE x2")


# -- tensor bindings


INFERRED = {"conv_0": TensorSpec((2, 2, 40), "bits"), "y": TensorSpec((2, 2, 3), "float32"),
            "wrong": TensorSpec((3, 2, 3), "float32")}


def bindings():
    def fail(msg):
        raise GraphError(f"here: {msg}")
    return TensorBindings(describe=lambda t: f"<{t}>",
                          spec_of=lambda t, dtype, channels: TensorSpec((2, 2, channels or 3), dtype),
                          constants={"w": object()}, fail=fail, infer=INFERRED.__getitem__)


def test_bindings_bind_outputs_with_the_inferred_shape():
    b = bindings()
    assert b.out("y", "conv_0", "bits", channels=40) == TensorSpec((2, 2, 40), "bits")
    assert "y" in b and b.inp("y", ("bits",)) == ("conv_0", TensorSpec((2, 2, 40), "bits"))
    b.bind("z", "conv_0", b.specs["y"])                 # an alias: another id, the same tensor
    assert b.inp("z", ("bits",))[0] == "conv_0"
    with pytest.raises(GraphError, match=r"here: the file records <q> as float32\[2, 2, 3\], but bnnrt "
                                         r"computes float32\[3, 2, 3\]"):
        b.out("q", "wrong")


@pytest.mark.parametrize("tensor,dtypes,message", [
    ("x", ("float32",), "here: tensor <x> is used before it is computed"),
    ("w", ("float32",), "here: constant tensor <w> used as an activation input"),
    ("y", ("int8", "bits"), "here: input <y> is float32[2, 2, 3], expected int8 or bits"),
])
def test_bindings_refuse_bad_inputs(tensor, dtypes, message):
    b = bindings()
    b.out("y", "y")
    with pytest.raises(GraphError) as e:
        b.inp(tensor, dtypes)
    assert str(e.value) == message


def test_source_metadata_names_the_model_after_the_file():
    assert source_metadata("/m/quicknet.v2.tflite", "tflite") == {
        "name": "quicknet.v2", "source": {"format": "tflite", "file": "quicknet.v2.tflite"}}


# -- the registry


def test_importers_are_found_by_suffix_in_any_case():
    assert convert.importer_for("a/b/QuickNet.TFLITE") is convert.from_tflite
    assert convert.importer_for("model.bnn") is None and convert.importer_for("zoo") is None


def test_cli_opens_and_converts_any_registered_suffix(monkeypatch, tmp_path, capsys):
    calls = []

    def fake_importer(source, *, threads=None, metadata=None):
        calls.append((source, metadata))
        return zoo.resnet20_binary(width=1, threads=threads)
    monkeypatch.setitem(convert.IMPORTERS, ".fake", fake_importer)
    assert cli.main(["info", "net.fake"]) == 0
    out = tmp_path / "net.bnn"
    assert cli.main(["convert", "net.FAKE", str(out), "--scale", "0.5"]) == 0
    assert calls == [("net.fake", None), ("net.FAKE", {"input": {"scale": 0.5, "mean": None, "std": None}})]
    assert bnnrt.load(out).graph.nodes
    assert "net.FAKE -> " in capsys.readouterr().out


@pytest.mark.parametrize("source,message", [
    ("x.unknown", "x.unknown: bnnrt imports .onnx, .tflite files, not '.unknown' ones"),
    ("model.bnn", "model.bnn: bnnrt imports .onnx, .tflite files, not '.bnn' ones"),
    ("noext", "noext: bnnrt imports .onnx, .tflite files, not files without a suffix"),
])
def test_cli_convert_refuses_a_suffix_no_importer_reads(source, message, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bnnrt", "convert", source, str(tmp_path / "out.bnn")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr == f"bnnrt: error: {message}\n"
    assert not (tmp_path / "out.bnn").exists()


# -- what a hostile or unusual file must not do (issue 19)


def _importer_over(tensors):
    """An importer over a fake file holding ``tensors`` (for its helpers alone)."""
    from types import SimpleNamespace

    from bnnrt.convert._tflite import _Importer
    im = _Importer.__new__(_Importer)
    im.f = SimpleNamespace(tensors=tensors, name="f.tflite")
    im.consts = {t.index: t.data for t in tensors if t.data is not None}
    im._where = "f.tflite: operator 0 (CONV_2D)"
    return im


def test_hybrid_quantized_weights_are_dequantized():
    """A float op reading int8 weights with a scale (a "dynamic range" file)
    gets (q - zero point) * scale per output channel, not the raw integers."""
    pytest.importorskip("tflite")
    from bnnrt.convert._tflite import _Tensor
    q = np.array([[[[100, -50, 2]]], [[[4, 8, -127]]]], np.int8)          # (2, 1, 1, 3)
    t = _Tensor(0, "w", q.shape, 9, q, scale=np.array([0.02, 0.5], np.float32), zero_point=np.zeros(2, np.int64))
    got = _importer_over([t]).float_const(0, "the filter")
    np.testing.assert_array_equal(got, (q.astype(np.float32) * np.array([0.02, 0.5], np.float32)[:, None, None, None]))
    bare = _Tensor(1, "w2", q.shape, 9, q)
    with pytest.raises(GraphError, match="int8 without quantization parameters"):
        _importer_over([t, bare]).float_const(1, "the filter")


@pytest.mark.parametrize("strides,dilations,kernel", [((0, 1), (1, 1), (3, 3)), ((1, 1), (0, 2), (3, 3)),
                                                      ((1, 1), (1, 1), (0, 3)), ((-2, 1), (1, 1), (3, 3))])
def test_windows_are_checked_before_padding(strides, dilations, kernel):
    """stride 0 with SAME padding was a ZeroDivisionError ("malformed operator")."""
    pytest.importorskip("tflite")
    with pytest.raises(GraphError, match=r"f.tflite: operator 0 \(CONV_2D\): .* must be two integers from 1"):
        _importer_over([])._pads(0, (8, 8), kernel, strides, dilations)


def test_repeated_names_get_suffixes():
    """A converted file may name two tensors alike, or an intermediate
    'input': every bnnrt node and tensor is still named once."""
    b = GraphBuilder()
    x = b.input("input", (2, 2, 3))
    y = b.add("activation", [x], {"kind": "relu"}, name="input")
    z = b.add("activation", [y], {"kind": "relu"}, name="relu")
    w = b.add("activation", [z], {"kind": "relu"}, name="relu")
    assert len({x, y, z, w}) == 4 and z == "relu"
    model = bnnrt.Model(b.build(w))
    assert model.run(np.ones((1, 2, 2, 3), np.float32)).shape == (1, 2, 2, 3)


def test_graph_inputs_named_twice_are_refused():
    import json as _json
    from bnnrt import format as fmt
    b = GraphBuilder()
    x = b.input("x", (2, 2, 3))
    g = b.build(b.add("activation", [x], {"kind": "relu"}))
    doc, data = fmt.unpack(fmt.dumps(g))
    doc["inputs"] = doc["inputs"] * 2
    with pytest.raises(bnnrt.ModelFormatError, match="graph input 'x' is listed twice"):
        bnnrt.load(fmt.pack(_json.dumps(doc).encode(), data))
