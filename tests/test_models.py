"""The trained models shipped in models/: they load, they classify the sample
images as their names say, and bnnrt reproduces, image for image, the
accuracy their training report (and model card) states."""

import json
import pathlib

import numpy as np
import pytest

import bnnrt
from bnnrt import datasets

MODELS = pathlib.Path(__file__).resolve().parents[1] / "models"
FMNIST = MODELS / "blendnet20_fmnist.bnn"
REPORT = MODELS / "blendnet20_fmnist.bnn.json"


@pytest.fixture(scope="module")
def fmnist():
    return bnnrt.load(FMNIST)


def test_fmnist_model_describes_itself(fmnist):
    assert fmnist.labels == datasets.FASHION_MNIST_LABELS
    assert fmnist.metadata["provenance"]["trained"] is True
    assert tuple(fmnist.metadata["input"]["shape"]) == (28, 28, 1)
    ops = {layer["op"] for layer in fmnist.layers()}
    assert {"bconv2d", "binarize", "conv2d_int8", "global_avgpool"} <= ops


def _label_of(path: pathlib.Path) -> str:
    name = path.stem.split("_", 2)[2]          # fmnist_test0_ankle_boot -> ankle_boot
    by_key = {lab.lower().replace("/", "_").replace(" ", "_"): lab for lab in datasets.FASHION_MNIST_LABELS}
    return by_key[name]


def test_sample_images_are_classified_as_named(fmnist):
    samples = sorted((MODELS / "samples").glob("fmnist_*.png"))
    assert len(samples) >= 4
    for path, top in zip(samples, fmnist.top_k([str(p) for p in samples], k=1)):
        assert top[0][0] == _label_of(path), path.name


def test_accuracy_is_what_the_report_says(fmnist):
    try:
        images, labels = datasets.fashion_mnist("test")
    except datasets.DatasetNotFound:
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    report = json.loads(REPORT.read_text())
    pred = np.concatenate([fmnist.predict(images[i:i + 1000]).argmax(1) for i in range(0, len(images), 1000)])
    assert len(pred) == report["test_images"] == 10000
    # integer inference is deterministic: the very same count, not approximately
    assert int((pred == labels).sum()) == round(report["accuracy_bnnrt"] * 10000)
