"""Hostile input (issue 19): each case runs in a child process under an
address-space limit and a wall-clock timeout (tests/fuzz/sandbox.py), so a
crash, a hang or a memory bomb fails one test instead of the test run.

* the minimal reproducers of what the structure-aware fuzzer found
  (tests/fuzz/regressions/structured, written by make_regressions.py);
* one case per class of the issue: crashes and hangs, memory bombs, foreign
  exceptions, silent wrong answers;
* a short run of the mutator itself, which fails on any finding that is not
  one of the open defects listed in tests/fuzz/mutate.py's KNOWN_FINDINGS.

Cases for defects not fixed yet are xfail(strict=False), with the reason.
"""

import json
import os
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "fuzz"))

from sandbox import Sandbox  # noqa: E402

import bnnrt  # noqa: E402
from bnnrt import GraphBuilder, format as fmt  # noqa: E402

# tools/aarch64.sh runs the suite from a script on stdin, where multiprocessing's
# spawn cannot start the sandbox's children; the checks are the same Python on
# every architecture and run in the x86 and sanitizer suites.
if os.environ.get("BNNRT_IN_EMULATION"):
    pytest.skip("the sandbox's spawned children cannot start under tools/aarch64.sh", allow_module_level=True)

REGRESSIONS = os.path.join(HERE, "fuzz", "regressions", "structured")
ROOT = os.path.dirname(HERE)
with open(os.path.join(REGRESSIONS, "cases.json")) as _f:
    MANIFEST = json.load(_f)

#: Outcomes each expectation of cases.json accepts.
ACCEPTED = {"refused": {"refused"}, "equivalent": {"ok"}, "equivalent-or-refused": {"ok", "refused"},
            "loads-or-refused": {"ok", "refused"}}


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(timeout=10) as box:
        yield box


def _expect(outcome, accepted):
    kind, detail, seconds = outcome
    assert kind in accepted, f"{kind} after {seconds:.1f} s: {detail}"


@pytest.mark.parametrize("entry", [pytest.param(e, id=e["file"], marks=[pytest.mark.xfail(
    strict=False, reason=e["known"])] if e["known"] else []) for e in MANIFEST])
def test_structured_regression(sandbox, entry):
    with open(os.path.join(REGRESSIONS, entry["file"]), "rb") as f:
        data = f.read()
    equivalence = None
    if entry["expect"].startswith("equivalent"):
        with open(os.path.join(ROOT, entry["seed_file"]), "rb") as f:
            equivalence = (f.read(), entry["tolerance"])
    _expect(sandbox.run(entry["target"], data, equivalence), ACCEPTED[entry["expect"]])


# --------------------------------------------------------------------------
# one case per class of the issue (the functions below run in the child)


def _one_input_graph(shape=(1, 1, 1)):
    b = GraphBuilder()
    return b, b.input("image", shape)


def child_threads(n):
    b, x = _one_input_graph((4, 4, 1))
    model = bnnrt.Model(b.build([b.softmax(b.add("activation", [x], attrs={"kind": "relu"}))]), threads=n)
    return model.run(np.ones((8, 4, 4, 1), np.float32)).shape


def child_load_path(path):
    return bnnrt.load(path)


def child_load_fifo(directory):
    path = os.path.join(directory, "model.bnn")
    os.mkfifo(path)
    return bnnrt.load(path)


def child_pad_bomb():
    """A 1x1 input padded to 30001x30001: a few hundred bytes of file, 3.6 GB of tensor."""
    b, x = _one_input_graph()
    y = b.add("pad_float", [x], attrs={"pads": [15000, 15000, 15000, 15000], "value": 0.0})
    model = bnnrt.load(fmt.dumps(b.build([y])), threads=1)
    return model.run(np.ones((1, 1, 1, 1), np.float32)).shape


def child_float_attr(op, key, value):
    b, x = _one_input_graph((2, 2, 4))
    y = b.add(op, [x], attrs={key: value})
    model = bnnrt.load(fmt.dumps(b.build([y])), threads=1)
    return model.run(np.ones((1, 2, 2, 4), np.float32)).tolist()


def child_metadata_input(variant):
    b, x = _one_input_graph((2, 2, 1))
    doc, blob = fmt.unpack(fmt.dumps(b.build([b.softmax(b.flatten(x))])))
    doc["metadata"]["input"] = variant
    model = bnnrt.load(fmt.pack(json.dumps(doc).encode(), blob), threads=1)
    return model.predict(np.zeros((2, 2, 1), np.uint8)).tolist()


def child_duplicate_graph_inputs():
    b, x = _one_input_graph((2, 2, 1))
    doc, blob = fmt.unpack(fmt.dumps(b.build([b.softmax(b.flatten(x))])))
    doc["inputs"].append(dict(doc["inputs"][0]))
    return bnnrt.load(fmt.pack(json.dumps(doc).encode(), blob), threads=1).plan.input_specs


def child_long_chain(length):
    b, x = _one_input_graph((2, 2, 1))
    for _ in range(length):
        x = b.add("activation", [x], attrs={"kind": "relu"})
    model = bnnrt.load(fmt.dumps(b.build([x])), threads=1)
    return model.run(np.ones((1, 2, 2, 1), np.float32)).shape


def test_thread_count_beyond_the_cap_is_refused(sandbox):
    _expect(sandbox.call("test_hostile", "child_threads", 100000), {"refused"})


def test_fifo_and_device_are_refused(sandbox, tmp_path):
    _expect(sandbox.call("test_hostile", "child_load_fifo", str(tmp_path)), {"refused"})
    _expect(sandbox.call("test_hostile", "child_load_path", "/dev/zero"), {"refused"})


def test_a_long_chain_loads_and_runs_in_time(sandbox):
    """30,000 nodes plan and run in a few seconds (near-linear: with the old
    quadratic planner they took minutes; 100,000 take about three times as long)."""
    _expect(sandbox.call("test_hostile", "child_long_chain", 30000), {"ok"})


def test_padding_bomb_is_refused_at_load(sandbox):
    _expect(sandbox.call("test_hostile", "child_pad_bomb"), {"refused"})


@pytest.mark.parametrize("variant", ["not a mapping", {"scale": "0.5"}, {"mean": [0.5, 0.5]},
                                     {"scale": {"a": 1}}, {"std": [10 ** 400]}])
def test_malformed_metadata_input_is_refused(sandbox, variant):
    _expect(sandbox.call("test_hostile", "child_metadata_input", variant), {"refused"})


@pytest.mark.parametrize("op,key,value", [("softmax", "beta", 1e300), ("softmax", "beta", 10 ** 400),
                                          ("pad_float", "value", 1e300)])
def test_float_attributes_beyond_float32_are_refused(sandbox, op, key, value):
    _expect(sandbox.call("test_hostile", "child_float_attr", op, key, value), {"refused"})


def test_duplicate_graph_input_names_are_refused(sandbox):
    _expect(sandbox.call("test_hostile", "child_duplicate_graph_inputs"), {"refused"})


# --------------------------------------------------------------------------
# a short run of the structure-aware mutator

def test_onnx_mutations_find_nothing():
    """Exported PyTorch BNNs, edited node by node (tests/fuzz/onnx_mutate.py):
    every case loads and runs, or is refused with a bnnrt error that says
    what is wrong."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from onnx_mutate import fuzz, seeds
    # TorchScript's files only (the dynamo exporter takes seconds per net);
    # `python tests/fuzz/onnx_mutate.py` mutates both
    counts, findings = fuzz(cases=80, seed=20261202, sources=seeds(("torchscript",)), timeout=10)
    assert counts.get("refused", 0) and counts.get("ok", 0), counts
    assert not findings, "\n".join(f"{cls}: case {i}: {detail}; mutations {done}"
                                    for cls, (i, done, detail) in findings.items())


def test_mutator_finds_nothing_new():
    from mutate import fuzz, known_reason
    counts, findings, ran = fuzz(cases=300, seconds=45, seed=20261201, timeout=5, log=lambda *a: None)
    assert ran >= 50 and counts.get("refused", 0) and counts.get("ok", 0), counts
    new = {cls: f"case {hits[0][0]} ({hits[0][1]}): {hits[0][3]} after {hits[0][2]}"
           for cls, hits in findings.items() if not known_reason(cls, hits[0][3])}
    assert not new, "findings outside mutate.KNOWN_FINDINGS:\n" + "\n".join(f"{k}: {v}" for k, v in new.items())
