"""Offline batch inference with Ray Data (extra ``bnnrt[ray]``).

    import ray, bnnrt.ray
    ds = ray.data.read_images("images/", mode="L", include_paths=True)
    out = ds.map_batches(bnnrt.ray.Predictor, fn_constructor_kwargs={"model": "model.bnn"},
                         concurrency=2, batch_size=256)
    out.write_parquet("predictions/")

:class:`Predictor` is a callable class: Ray makes one per actor (the model
is loaded once there) and calls it on batches (dicts of numpy columns). It
reads an ``image`` column (pixel arrays, as ``ray.data.read_images`` or a
parquet file of arrays gives) or a ``bytes`` column (encoded image files, as
``ray.data.read_binary_files`` gives: decoded exactly as ``bnnrt predict``
decodes them), and returns ``path`` (when the input has one), ``label``,
``probability``, ``label_2``, ``probability_2``, ... (:func:`bnnrt.stream.top_k_columns`).
docs/performance.md ("Ray Data") has the recipe and what it costs.
"""

from __future__ import annotations

import io

import numpy as np

try:
    import ray  # noqa: F401  (the module is for Ray; fail here, with the fix, when it is missing)
except ImportError as e:
    raise ImportError(f"bnnrt.ray needs Ray Data: pip install 'bnnrt[ray]' ({e})") from None

from .errors import InputError
from .model import Model, load
from .stream import top_k_columns


class Predictor:
    """``model``: a .bnn path (read where the actor runs), its bytes, or a
    :class:`~bnnrt.Model`; ``top_k``: how many classes per image; ``threads``:
    per actor (default: bnnrt's, which follows the OMP_NUM_THREADS Ray sets to
    the CPUs an actor holds)."""

    #: encoded images are decoded and predicted in chunks of this many, so
    #: that the next chunk decodes while the model runs on this one
    CHUNK = 64

    def __init__(self, model, top_k: int = 3, threads: int | None = None):
        self.model = model if isinstance(model, Model) else load(model, threads=threads)
        self.top_k = top_k
        self.labels = self.model.labels
        self._pool = None       # decoding threads, made on the first 'bytes' batch

    def __call__(self, batch: dict) -> dict:
        if "image" in batch:
            probs = self.model.predict(self._pixels(batch["image"]))
        elif "bytes" in batch:
            probs = self._predict_encoded(batch)
        else:
            raise InputError(f"bnnrt.ray.Predictor reads an 'image' column (pixel arrays) or a "
                             f"'bytes' column (image files); the batch has {sorted(batch)}")
        out = {"path": np.asarray(batch["path"])} if "path" in batch else {}
        out.update({name: np.asarray(values)
                    for name, values in top_k_columns(probs, self.labels, self.top_k).items()})
        return out

    def _pixels(self, images):
        """One (N, H, W, C) array when the images share a shape, else a list."""
        if isinstance(images, np.ndarray) and images.dtype != object:
            if images.ndim == 3 and self.model.input_shape[-1] == 1:   # mode "L": (N, H, W)
                images = images[..., None]
            return images
        return list(images)

    def _predict_encoded(self, batch: dict) -> np.ndarray:
        """Pillow decodes on a thread pool (the model's threads) while the
        kernels, which release the GIL, run on the chunk before, as
        ``bnnrt predict`` overlaps them."""
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor
            self._pool = ThreadPoolExecutor(self.model.threads, thread_name_prefix="bnnrt-decode")
        futures = [self._pool.submit(self._decode, b, batch, i) for i, b in enumerate(batch["bytes"])]
        try:
            probs = [self.model.predict([f.result() for f in futures[a:a + self.CHUNK]])
                     for a in range(0, len(futures), self.CHUNK)]
        finally:
            for f in futures:
                f.cancel()
        return np.concatenate(probs) if probs else np.zeros((0, len(self.labels)), np.float32)

    def _decode(self, data: bytes, batch: dict, i: int) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError
        what = repr(str(batch["path"][i])) if "path" in batch else f"row {i} of the batch"
        try:
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                return self.model._preprocessor().item(img, what)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
            raise InputError(f"cannot read image {what}: {e}") from None
