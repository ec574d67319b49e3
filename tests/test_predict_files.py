"""bnnrt predict over directories and globs: bounded memory, order, failures, CSV/JSONL."""

import csv
import json
import threading

import numpy as np
import pytest
from PIL import Image

import bnnrt
from bnnrt import stream, zoo

from test_cli import bnnrt_cli


def write_pngs(folder, n, seed=0):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    paths = []
    for i, p in enumerate(pixels):
        path = folder / f"{i:05d}.png"
        Image.fromarray(p, "L").save(path)
        paths.append(str(path))
    return paths, pixels[..., None]


@pytest.fixture(scope="module")
def model():
    return zoo.blendnet20(input_shape=(28, 28, 1), seed=1, threads=2)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, model):
    path = tmp_path_factory.mktemp("m") / "gray.bnn"
    bnnrt.save(model, path)
    return path


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """a/ with 5 images, a/sub/ with 3 and a corrupt .png, a text file beside them."""
    root = tmp_path_factory.mktemp("tree")
    (root / "sub").mkdir()
    top, top_px = write_pngs(root, 5, seed=1)
    sub, sub_px = write_pngs(root / "sub", 3, seed=2)
    (root / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "notes.txt").write_text("not an image")
    return root, top + sub, np.concatenate([top_px, sub_px])


def test_decoded_images_waiting_never_exceed_the_window(model, tmp_path, monkeypatch):
    """3,000 files, a window of 96: decoded but not yet handed out stays <= 96."""
    paths, pixels = write_pngs(tmp_path, 3000)
    lock = threading.Lock()
    count = {"decoded": 0, "consumed": 0, "peak": 0}
    decode = stream._decode

    def counting_decode(pre, path):
        out = decode(pre, path)
        with lock:
            count["decoded"] += 1
            count["peak"] = max(count["peak"], count["decoded"] - count["consumed"])
        return out

    monkeypatch.setattr(stream, "_decode", counting_decode)
    results = []
    for result in stream.predict_files(model, stream.Inputs([tmp_path]), batch=32, window=96):
        with lock:
            count["consumed"] += 1
        results.append(result)
    assert count["decoded"] == 3000 and len(results) == 3000
    assert 32 <= count["peak"] <= 96
    assert [r.path for r in results] == paths                       # input order
    np.testing.assert_allclose(np.stack([r.probs for r in results[:500]]),
                               model.predict(pixels[:500]), rtol=1e-6)


def test_inputs_walk_directories_and_globs_in_order(tree, tmp_path):
    root, images, _ = tree
    items = stream.Inputs([root])
    got = list(items)
    assert [p for p, _ in got] == images[:5] + [str(root / "sub" / n) for n in
                                                 ("00000.png", "00001.png", "00002.png", "broken.png")]
    assert all(err is None for _, err in got) and items.ignored == 1       # notes.txt
    assert [p for p, _ in stream.Inputs([str(root / "*.png")])] == images[:5]
    assert list(stream.Inputs([str(root / "*.jpg")])) == [(str(root / "*.jpg"),
                                                            "the pattern matches no image files")]
    (tmp_path / "empty").mkdir()
    assert list(stream.Inputs([tmp_path / "empty"]))[0][1] == "the directory holds no image files"
    assert list(stream.Inputs(["/no/such.png"]))[0][1] == "no such file or directory"


def test_cli_csv_has_top_k_columns_in_input_order_and_reports_failures(model, model_file, tree, tmp_path):
    root, images, pixels = tree
    out = tmp_path / "p.csv"
    proc = bnnrt_cli("predict", model_file, root, tmp_path / "missing.png", "--out", out,
                     "--top-k", "3", "--batch", "3", check=False)
    assert proc.returncode == 1                     # some files were skipped
    assert f"skipped {root / 'sub' / 'broken.png'}: cannot identify image file" in proc.stderr
    assert f"skipped {tmp_path / 'missing.png'}: no such file or directory" in proc.stderr
    assert "8 images predicted, 2 skipped" in proc.stderr and "Traceback" not in proc.stderr
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["path", "label", "probability", "label_2", "probability_2",
                             "label_3", "probability_3"]
    assert [r["path"] for r in rows] == images
    want = model.top_k(pixels, k=3)
    for row, top in zip(rows, want):
        assert [row["label"], row["label_2"], row["label_3"]] == [label for label, _ in top]
        assert float(row["probability"]) == pytest.approx(top[0][1], rel=1e-6)
        assert float(row["probability_3"]) == pytest.approx(top[2][1], rel=1e-6)


def test_cli_jsonl_and_plain_output(model, model_file, tree, tmp_path):
    root, images, pixels = tree
    out = tmp_path / "p.jsonl"
    proc = bnnrt_cli("predict", model_file, str(root / "*.png"), "--out", out, "--top-k", "1")
    assert proc.returncode == 0 and proc.stdout == ""
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["path"] for r in rows] == images[:5]
    assert set(rows[0]) == {"path", "label", "probability"}
    assert [r["label"] for r in rows] == [t[0][0] for t in model.top_k(pixels[:5], k=1)]
    plain = bnnrt_cli("predict", model_file, images[0], images[1], "--top-k", "2").stdout.splitlines()
    assert len(plain) == 4 and plain[0].startswith(f"{images[0]}: ") and plain[1].startswith("    ")


def test_cli_refuses_an_unknown_out_format(model_file, tree, tmp_path):
    proc = bnnrt_cli("predict", model_file, tree[0], "--out", tmp_path / "p.xlsx", check=False)
    assert proc.returncode == 2 and "must end in .csv or .jsonl" in proc.stderr
    assert "Traceback" not in proc.stderr
