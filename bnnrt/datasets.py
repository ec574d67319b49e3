"""Reading the datasets bnnrt evaluates on, without extra dependencies.

Fashion-MNIST comes from Debian's ``dataset-fashion-mnist`` package
(``apt-get install dataset-fashion-mnist``), which installs the four IDX
files under /usr/share/datasets/fashion-mnist; any folder with the same
files (gzipped or not) works through ``data_dir``.
"""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np

from .errors import BnnrtError

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                        "Sneaker", "Bag", "Ankle boot"]


class DatasetNotFound(BnnrtError, FileNotFoundError):
    pass


def _read_idx(path: str) -> np.ndarray:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b"\0\0":
        raise BnnrtError(f"{path}: not an IDX file")
    dtype_code, ndim = data[2], data[3]
    if dtype_code != 0x08:
        raise BnnrtError(f"{path}: IDX type {dtype_code:#x} is not unsigned bytes")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    count = int(np.prod(dims))
    body = np.frombuffer(data, np.uint8, count=count, offset=4 + 4 * ndim)
    return body.reshape(dims)


def fashion_mnist(split: str = "test", data_dir: str | None = None):
    """(images uint8 (N, 28, 28, 1), labels uint8 (N,)) of Fashion-MNIST."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    data_dir = data_dir or os.environ.get("BNNRT_FASHION_MNIST", FASHION_MNIST_DIR)
    prefix = "train" if split == "train" else "t10k"
    paths = []
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        for suffix in (".gz", ""):
            p = os.path.join(data_dir, f"{prefix}-{kind}{suffix}")
            if os.path.exists(p):
                paths.append(p)
                break
        else:
            raise DatasetNotFound(
                f"Fashion-MNIST {split} files not found in {data_dir!r}. Install them with "
                "`apt-get install dataset-fashion-mnist` (Debian/Ubuntu) or pass the folder "
                "holding the IDX files with --data DIR.")
    images = _read_idx(paths[0])[..., None]
    labels = _read_idx(paths[1])
    if images.shape[0] != labels.shape[0]:
        raise BnnrtError(f"{data_dir}: {images.shape[0]} images but {labels.shape[0]} labels")
    return images, labels
