"""bnnrt.ray.Predictor on a local Ray (2 CPUs): the same answers as bnnrt predict."""

import csv

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

import bnnrt  # noqa: E402
import bnnrt.ray  # noqa: E402
from bnnrt import zoo  # noqa: E402
from bnnrt.errors import InputError  # noqa: E402

from test_cli import bnnrt_cli  # noqa: E402
from test_predict_files import write_pngs  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray")
    model = zoo.blendnet20(input_shape=(28, 28, 1), seed=3, threads=1)
    bnnrt.save(model, root / "gray.bnn")
    (root / "images").mkdir()
    paths, pixels = write_pngs(root / "images", 40, seed=4)
    out = root / "cli.csv"
    bnnrt_cli("predict", root / "gray.bnn", root / "images", "--out", out, "--top-k", "3")
    with open(out, newline="") as fh:
        expected = {row["path"]: row for row in csv.DictReader(fh)}
    return root, paths, pixels, expected


def check_same_as_cli(table, expected):
    table = table.sort_values("path")
    assert sorted(expected) == list(table["path"])
    for _, row in table.iterrows():
        want = expected[row["path"]]
        for j in ("", "_2", "_3"):
            assert row["label" + j] == want["label" + j]
            assert row["probability" + j] == pytest.approx(float(want["probability" + j]), rel=1e-6)


# Two actors of half a CPU each leave a CPU for the read tasks (actors holding
# every CPU of a 2-CPU Ray starve them).
MAP = dict(concurrency=2, batch_size=16, num_cpus=0.5)


def test_read_images_through_actors_equals_bnnrt_predict(local_ray, files):
    root, paths, _, expected = files
    ds = ray.data.read_images(str(root / "images"), mode="L", include_paths=True)
    out = ds.map_batches(bnnrt.ray.Predictor, fn_constructor_kwargs={"model": str(root / "gray.bnn")},
                         **MAP)
    table = out.to_pandas()
    assert list(table.columns) == ["path", "label", "probability", "label_2", "probability_2",
                                   "label_3", "probability_3"]
    table["path"] = [p if p.startswith("/") else "/" + p for p in table["path"]]
    check_same_as_cli(table, expected)


def test_parquet_of_encoded_images_round_trip(local_ray, files, tmp_path):
    """Encoded files in a parquet 'bytes' column, the model as bytes (no shared
    file system needed), predictions written as parquet and read back."""
    root, paths, _, expected = files
    ray.data.read_binary_files(paths, include_paths=True).write_parquet(str(tmp_path / "in"))
    ds = ray.data.read_parquet(str(tmp_path / "in"))
    model_bytes = (root / "gray.bnn").read_bytes()
    ds.map_batches(bnnrt.ray.Predictor, fn_constructor_kwargs={"model": model_bytes},
                   **MAP).write_parquet(str(tmp_path / "out"))
    table = ray.data.read_parquet(str(tmp_path / "out")).to_pandas()
    table["path"] = [p if p.startswith("/") else "/" + p for p in table["path"]]
    check_same_as_cli(table, expected)


def test_predictor_on_arrays_and_bad_batches(files):
    """The callable alone (no Ray scheduling): arrays in, the same columns out."""
    root, _, pixels, _ = files
    predictor = bnnrt.ray.Predictor(str(root / "gray.bnn"), top_k=2)
    out = predictor({"image": pixels[:5, :, :, 0]})              # mode "L": (N, H, W)
    assert set(out) == {"label", "probability", "label_2", "probability_2"}
    probs = predictor.model.predict(pixels[:5])
    np.testing.assert_allclose(out["probability"], probs.max(axis=1), rtol=1e-6)
    assert list(out["label"]) == [predictor.labels[i] for i in probs.argmax(axis=1)]
    with pytest.raises(InputError, match="'image' column"):
        predictor({"pixels": pixels[:2]})
    with pytest.raises(InputError, match="cannot read image 'x.png'"):
        predictor({"bytes": np.array([b"not an image"], object), "path": np.array(["x.png"])})
