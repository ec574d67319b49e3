"""Turning what users hand to ``Model.predict`` into the graph's float input.

The model's metadata says how (docs/format.md, "input"): the image size, the
colour mode, and the normalisation ``(pixel * scale - mean) / std``. Images
(PIL images or paths) are converted to the model's colour mode and resized;
arrays are taken as pixels of the right size and channel count and checked,
never guessed at.
"""

from __future__ import annotations

import os

import numpy as np

from .errors import InputError

DEFAULT_INPUT = {"scale": 1.0 / 255.0, "mean": None, "std": None}


class Preprocessor:
    def __init__(self, input_meta: dict, shape: tuple[int, int, int]):
        self.shape = tuple(shape)
        h, w, c = self.shape
        meta = dict(DEFAULT_INPUT, **(input_meta or {}))
        self.color = meta.get("color") or ("L" if c == 1 else "RGB")
        if self.color not in ("L", "RGB"):
            raise InputError(f"model metadata asks for colour mode {self.color!r}; bnnrt knows L and RGB")
        self.scale = np.float32(meta["scale"])
        self.mean = np.asarray(meta["mean"] if meta["mean"] is not None else [0.0] * c, np.float32)
        self.std = np.asarray(meta["std"] if meta["std"] is not None else [1.0] * c, np.float32)
        if self.mean.shape not in ((1,), (c,)) or self.std.shape not in ((1,), (c,)) or np.any(self.std == 0):
            raise InputError(f"model metadata has a bad normalisation (mean {self.mean}, std {self.std})")

    # -- single items
    def _from_image(self, img, what: str) -> np.ndarray:
        from PIL import Image
        h, w, _ = self.shape
        try:
            img = img.convert(self.color)
            if img.size != (w, h):
                img = img.resize((w, h), Image.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
        except (OSError, ValueError) as e:
            raise InputError(f"cannot read image {what}: {e}") from None
        return arr.reshape(self.shape)

    def _from_path(self, path) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError
        name = os.fspath(path)
        try:
            with Image.open(name) as img:
                img.load()
                return self._from_image(img, repr(name))
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise InputError(f"cannot read image {name!r}: {e}") from None

    def _from_array(self, arr: np.ndarray, what: str) -> np.ndarray:
        h, w, c = self.shape
        if arr.ndim == 2 and c == 1:
            arr = arr[:, :, None]
        if arr.ndim != 3 or arr.shape[:2] != (h, w) or arr.shape[2] != c:
            raise InputError(f"{what} has shape {arr.shape}; this model takes {h}x{w} images "
                             f"with {c} channel{'s' if c > 1 else ''} (H, W, C)")
        return arr

    def item(self, x, what="input") -> np.ndarray:
        """One image as an (H, W, C) array of pixel values."""
        if isinstance(x, (str, os.PathLike)):
            return self._from_path(x)
        try:
            from PIL import Image
            if isinstance(x, Image.Image):
                return self._from_image(x, what)
        except ImportError:  # Pillow is a dependency; without it only arrays work
            pass
        if isinstance(x, np.ndarray):
            return self._from_array(check_numeric(x, what), what)
        raise InputError(f"{what}: expected a PIL image, an image path or an array, "
                         f"got {type(x).__name__}")

    # -- public
    def batch(self, x) -> tuple[np.ndarray, bool]:
        """(N, H, W, C) float32 graph input and whether x was a single image."""
        if isinstance(x, np.ndarray) and x.ndim == 4:
            pixels = check_numeric(x, "batch")
            if pixels.shape[1:] != self.shape:
                raise InputError(f"batch has shape {x.shape}; this model takes (N, "
                                 f"{', '.join(map(str, self.shape))})")
            single = False
        elif isinstance(x, (list, tuple)):
            items = [self.item(v, f"item {i} of the batch") for i, v in enumerate(x)]
            pixels = np.stack(items) if items else np.empty((0,) + self.shape, np.float32)
            single = False
        else:
            pixels = self.item(x)[None]
            single = True
        return self.normalize(pixels), single

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        out = pixels.astype(np.float32) * self.scale
        out -= self.mean
        out /= self.std
        if not np.isfinite(out).all():
            raise InputError("input contains NaN or infinite values")
        return out


def check_numeric(x: np.ndarray, what: str) -> np.ndarray:
    if x.dtype.kind not in "buif":
        raise InputError(f"{what} has dtype {x.dtype}; expected integer or float pixels")
    return x
