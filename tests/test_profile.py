"""Per-layer profiles: Model.profile, Plan.run(timings=...), bnnrt bench --profile."""

import json
import os
import statistics

import numpy as np
import pytest

from bnnrt import zoo
from bnnrt.errors import InputError

from test_cli import bnnrt_cli


@pytest.fixture(scope="module")
def model():
    return zoo.blendnet20(input_shape=(28, 28, 1), seed=1, threads=1)


def test_profile_rows_describe_every_layer(model):
    rows = model.profile(batch=2, runs=5)
    layers = model.layers()
    assert [r["name"] for r in rows] == [r["name"] for r in layers]
    assert [r["kernel"] for r in rows] == [r["kernel"] for r in layers]
    assert all(r["median_ms"] > 0 for r in rows)
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    for r in rows:
        if r["binary_macs"] or r["int8_macs"] or r["float_macs"]:
            assert r["gmac_s"] > 0
        else:
            assert r["gmac_s"] is None
    json.dumps(rows)                       # the rows go into bench --json as they are


@pytest.mark.skipif(bool(os.environ.get("BNNRT_IN_EMULATION")),
                    reason="under qemu (tools/aarch64.sh) the executor's Python, emulated, is half the run: "
                           "emulation times nothing")
def test_layers_add_up_to_the_end_to_end_median(model):
    """Profiled and plain runs alternate, so both see the same machine: the
    layers leave out only the executor's copies and dispatch."""
    # the machine is shared: a burst of other work can land in a few layers of
    # one measurement, so the sum must agree within 10% in one of three (a
    # profile that missed or double-counted steps would miss in all three).
    # Batch 8: a run's fixed cost outside the layers (Model.run's checks and
    # copies, ~20 us here) is then a few percent of it, as in real use
    seen = []
    for _ in range(3):
        times, rows = model.benchmark(batch=8, runs=20, warmup=3, profile=True)
        layers_ms = sum(r["median_ms"] for r in rows)
        run_ms = statistics.median(times) * 1e3
        seen.append((layers_ms, run_ms))
        if 0.9 * run_ms <= layers_ms <= 1.1 * run_ms:
            return
    pytest.fail(f"layers' sum vs end-to-end median (ms), three tries: {seen}")


def test_timings_of_a_batch_parallel_run_leave_results_alone():
    model = zoo.blendnet20(input_shape=(28, 28, 1), seed=1, threads=2)
    x = np.random.default_rng(0).standard_normal((9, 28, 28, 1)).astype(np.float32)
    timings = np.zeros(len(model.plan.steps))
    profiled = model.plan.run([x], timings)
    np.testing.assert_array_equal(profiled[0], model.plan.run([x])[0])
    assert (timings > 0).all()


def test_profile_refuses_bad_sizes(model):
    with pytest.raises(InputError, match="runs must be >= 1"):
        model.profile(batch=1, runs=0)


def test_bench_profile_json_and_table():
    out = json.loads(bnnrt_cli("bench", "zoo:blendnet20", "--profile", "--runs", "3",
                               "--threads", "1", "--json").stdout)
    assert len(out["layers"]) == 34
    assert {"name", "op", "kernel", "median_ms", "share", "gmac_s"} <= set(out["layers"][0])
    assert out["layers_ms"] == pytest.approx(sum(r["median_ms"] for r in out["layers"]))
    text = bnnrt_cli("bench", "zoo:blendnet20", "--profile", "--runs", "3").stdout
    assert "Run Order" in text and "Summary by node type" in text and "Summary by precision" in text
    assert "[bconv2d]" in text and "end-to-end median" in text
