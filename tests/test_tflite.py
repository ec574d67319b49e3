"""Importing Larq Compute Engine .tflite files.

The fixtures in tests/data/lce were written once by LCE itself
(tests/data/lce/make_fixtures.py, in LCE's own virtualenv): small Larq models,
converted by LCE, with LCE's outputs on a few random inputs. bnnrt must match
LCE: top-1 identical, outputs within 1e-3 relative.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("tflite", reason="the .tflite importer needs the flatbuffer reader (bnnrt[tflite])")

import bnnrt  # noqa: E402
from bnnrt import reference as ref  # noqa: E402
from bnnrt.convert import _tflite, from_tflite  # noqa: E402
from bnnrt.errors import ModelFormatError, ModelIOError, UnsupportedOpError  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "data", "lce")
FIXTURES = ["bconv_stack", "wide_dilated", "float_ops", "resnet20_binary_w1", "grouped"]


def fixture(name):
    return os.path.join(DATA, f"{name}.tflite"), np.load(os.path.join(DATA, f"{name}.npz"))


def assert_matches_lce(out, lce):
    out = out.reshape(lce.shape)
    np.testing.assert_array_equal(out.argmax(axis=1), lce.argmax(axis=1))
    np.testing.assert_allclose(out, lce, rtol=1e-3, atol=1e-3 * np.abs(lce).max())


@pytest.mark.parametrize("name", FIXTURES)
def test_outputs_match_lce(name):
    path, data = fixture(name)
    model = from_tflite(path)
    # the whole batch at once: LCE runs batch 1, bnnrt any batch
    assert_matches_lce(model.run(data["inputs"]), data["lce"])


@pytest.mark.parametrize("name", FIXTURES)
def test_reference_resolver_agrees(name):
    path, data = fixture(name)
    graph = _tflite.to_graph(path)
    kernels = bnnrt.Model(graph).run(data["inputs"])
    oracle = bnnrt.Model(graph, resolver="reference").run(data["inputs"])
    # float layers sum in another order in the kernels: equal within rounding, relative to the output's scale
    np.testing.assert_allclose(kernels, oracle, rtol=1e-5, atol=1e-5 * np.abs(oracle).max())


def test_covers_every_handled_op():
    """The fixtures together (with the int8 ones of test_tflite_int8.py) use
    every op the importer reads, but three that Keras + LCE do not emit for
    these models (ReLU6 and friends as separate ops, PADV2): those share their
    code with RELU and PAD. The ops of larq_zoo's larger models (issue 18) are
    tested on files written by tests/test_tflite_zoo.py."""
    used = set()
    for name in FIXTURES + ["int8_model", "int8_ops", "int8_quicknet", "int8_birealnet"]:
        f = _tflite._File(open(os.path.join(DATA, f"{name}.tflite"), "rb").read(), name)
        used |= {f.op_name(i) for i in range(len(f.ops))}
    zoo = {"MINIMUM", "MAXIMUM", "PRELU", "SPLIT", "SPLIT_V", "ABS", "FLOOR", "ROUND"}
    assert set(_tflite.HANDLERS) - used == {"PADV2", "RELU6", "RELU_N1_TO_1"} | zoo


def test_bitpacked_and_float_bconv_layers_are_fused():
    """Binary convs feeding binary convs write bits (threshold epilogue), not
    floats that are binarized again."""
    path, _ = fixture("bconv_stack")
    ops = [n.op for n in _tflite.to_graph(path).nodes]
    assert ops.count("bconv2d") == 4 and ops.count("bconv2d_float") == 3
    assert ops.count("sign_bits") == 3


def test_lce_weights_repack():
    rng = np.random.default_rng(0)
    for cin in (1, 7, 8, 31, 32, 33, 70):
        signs = rng.random((5, 3, 2, cin)) < 0.5
        words = np.zeros((5, 3, 2, -(-cin // 32)), np.uint32)
        for c in range(cin):
            words[..., c // 32] |= signs[..., c].astype(np.uint32) << np.uint32(c % 32)
        got = _tflite.lce_weights(words.view(np.int32), cin)
        np.testing.assert_array_equal(got, ref.pack_bits(signs))


def test_softmax_output_is_not_softmaxed_twice():
    path, data = fixture("bconv_stack")
    model = from_tflite(path)
    assert model.metadata["output"] == "probabilities"
    probs = model.predict(data["inputs"])
    np.testing.assert_allclose(probs, data["lce"], rtol=1e-3, atol=1e-6)


def test_missing_ops_are_listed_with_counts(monkeypatch):
    path, _ = fixture("resnet20_binary_w1")
    for op in ("ADD", "MEAN", "LceBconv2d"):
        monkeypatch.delitem(_tflite.HANDLERS, op)
    with pytest.raises(UnsupportedOpError) as e:
        from_tflite(path)
    msg = str(e.value)
    assert "3 op(s)" in msg and "ADD x" in msg and "LceBconv2d x18" in msg and "MEAN x1" in msg
    assert "resnet20_binary_w1.tflite" in msg


def test_save_load_round_trip(tmp_path):
    path, data = fixture("float_ops")
    model = from_tflite(path)
    out = tmp_path / "float_ops.bnn"
    bnnrt.save(model, out)
    again = bnnrt.load(out)
    np.testing.assert_array_equal(again.run(data["inputs"]), model.run(data["inputs"]))


def test_cli_convert(tmp_path):
    path, data = fixture("bconv_stack")
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"class{i}" for i in range(10)) + "\n")
    out = tmp_path / "m.bnn"
    r = subprocess.run([sys.executable, "-m", "bnnrt", "convert", path, str(out), "--labels", str(labels),
                        "--mean", "0.5", "--std", "0.25"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "binary MACs" in r.stdout
    model = bnnrt.load(out)
    assert model.labels[3] == "class3"
    # predict() normalizes pixels as told: (p / 255 - 0.5) / 0.25
    pixels = np.full((9, 11, 5), 255, np.uint8)
    np.testing.assert_allclose(model.predict(pixels), model.run(np.full((1, 9, 11, 5), 2.0, np.float32)).reshape(-1),
                               rtol=1e-6)
    assert_matches_lce(model.run(data["inputs"]), data["lce"])


@pytest.mark.parametrize("mutate,error", [
    (lambda b: b[:100], ModelFormatError),
    (lambda b: b"\0" * 4 + b"TFL3" + b"\xff" * 200, ModelFormatError),
    (lambda b: b"not a flatbuffer at all", ModelFormatError),
    (lambda b: b[:4] + b"XXXX" + b[8:], ModelFormatError),
])
def test_hostile_files_raise_clear_errors(mutate, error):
    path, _ = fixture("bconv_stack")
    with pytest.raises(error):
        from_tflite(mutate(open(path, "rb").read()))


def test_truncations_never_crash():
    """Every prefix length on a coarse grid: a clear bnnrt error, nothing else."""
    data = open(fixture("float_ops")[0], "rb").read()
    for n in range(0, len(data), max(1, len(data) // 97)):
        try:
            from_tflite(data[:n])
        except bnnrt.errors.BnnrtError:
            pass


def test_missing_file():
    with pytest.raises(ModelIOError, match="nope.tflite"):
        from_tflite("nope.tflite")


def test_missing_reader_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tflite", None)
    with pytest.raises(ImportError, match=r"bnnrt\[tflite\]"):
        from_tflite(fixture("bconv_stack")[0])


def test_cli_runs_tflite_files_directly():
    path, _ = fixture("resnet20_binary_w1")
    r = subprocess.run([sys.executable, "-m", "bnnrt", "info", path], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "bconv2d_float" in r.stdout and "sign_bits" in r.stdout


def test_cli_convert_reports_missing_reader_cleanly(tmp_path):
    path, _ = fixture("bconv_stack")
    code = ("import sys; sys.modules['tflite'] = None; from bnnrt.cli import main; "
            f"sys.exit(main(['convert', {path!r}, {str(tmp_path / 'x.bnn')!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 2 and "pip install 'bnnrt[tflite]'" in r.stderr and "Traceback" not in r.stderr
