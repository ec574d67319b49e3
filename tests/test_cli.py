"""The bnnrt command line, run as a user would (in a subprocess)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import bnnrt
from bnnrt import zoo


def bnnrt_cli(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "bnnrt", *map(str, args)],
                          capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"bnnrt {args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "gray.bnn"
    bnnrt.save(zoo.blendnet20(input_shape=(28, 28, 1), seed=1, threads=1), path)
    return path


def test_info(model_file):
    out = bnnrt_cli("info", model_file).stdout
    assert "random weights (untrained)" in out
    assert "bconv2d" in out and "kernels:" in out and "total" in out


def test_predict_prints_top_k_labels(model_file, tmp_path):
    paths = []
    for i in range(2):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(np.full((28, 28), 40 * i, np.uint8), "L").save(p)
        paths.append(p)
    proc = bnnrt_cli("predict", model_file, *paths, "--top-k", "2")
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"{paths[0]}: class_") and "%" in lines[0]
    assert len(lines) == 4
    assert "untrained" in proc.stderr


def test_bench_json_on_a_file_and_the_zoo(model_file):
    out = json.loads(bnnrt_cli("bench", model_file, "--runs", "5", "--batch", "2", "--json").stdout)
    assert {"median_ms", "images_per_s", "batch", "threads", "kernel"} <= set(out)
    assert out["batch"] == 2 and out["median_ms"] > 0
    out = json.loads(bnnrt_cli("bench", "zoo:blendnet20", "--runs", "3", "--threads", "1", "--json").stdout)
    assert out["threads"] == 1 and out["images_per_s"] > 0


def test_the_zoo_mixers_run():
    for name in ("zoo:blendmixer", "zoo:mixer-binary"):
        out = json.loads(bnnrt_cli("bench", name, "--runs", "3", "--threads", "1", "--json").stdout)
        assert out["images_per_s"] > 0


def test_bench_prints_latency():
    out = bnnrt_cli("bench", "zoo:blendnet20:2", "--runs", "3").stdout
    assert "median" in out and "images/s" in out


@pytest.mark.parametrize("args,match", [
    (["info", "/nonexistent.bnn"], "cannot read model file"),
    (["bench", "zoo:resnet"], "unknown zoo model"),
    (["bench", "zoo:blendnet20:0"], "width must be a positive integer"),
    (["bench", "zoo:blendmixer:2"], "has no width"),
    (["bench", "zoo:"], "unknown zoo model"),
])
def test_errors_are_one_line_not_tracebacks(args, match):
    proc = bnnrt_cli(*args, check=False)
    assert proc.returncode == 2
    assert match in proc.stderr and "Traceback" not in proc.stderr


def test_bad_image_is_reported(model_file, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    proc = bnnrt_cli("predict", model_file, bad, check=False)
    assert proc.returncode == 1 and "skipped" in proc.stderr and "bad.png" in proc.stderr


def test_bad_threads_argument():
    proc = bnnrt_cli("bench", "zoo:blendnet20", "--threads", "0", check=False)
    assert proc.returncode == 2 and "positive integer" in proc.stderr


def test_info_prints_a_model_name_that_does_not_encode(tmp_path):
    """A lone surrogate in the model's name (metadata is JSON: anything goes)
    is printed escaped, not a UnicodeEncodeError traceback."""
    from bnnrt import format as fmt
    doc, data = fmt.unpack(fmt.dumps(zoo.blendnet20().graph))
    doc["metadata"]["name"] = "odd\udc80name"            # JSON's "\\udc80" escape reads as a lone surrogate
    path = tmp_path / "odd.bnn"
    path.write_bytes(fmt.pack(json.dumps(doc).encode(), data))
    proc = subprocess.run([sys.executable, "-m", "bnnrt", "info", str(path)], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONIOENCODING="utf-8"))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "odd\\udc80name" in proc.stdout
