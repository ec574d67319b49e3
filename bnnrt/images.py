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

from .errors import InputError, ModelFormatError

DEFAULT_INPUT = {"scale": 1.0 / 255.0, "mean": None, "std": None}
#: Pillow's modes of 16-bit grayscale images (PNG): scaled to 8 bits, not clipped
_MODES_16 = ("I;16", "I;16B", "I;16L", "I;16N")


def _finite_numbers(value, what: str, count: int) -> np.ndarray:
    """A number or a list of ``count`` (or 1) numbers, finite in float32."""
    values = value if isinstance(value, list) else [value]
    if (len(values) not in (1, count)
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)):
        raise ModelFormatError(f"model metadata: input {what} must be a number or a list of {count}, "
                               f"got {value!r}")
    try:
        arr = np.array([float(v) for v in values], np.float64)
    except OverflowError:
        raise ModelFormatError(f"model metadata: input {what} {value!r} is beyond the float range") from None
    with np.errstate(over="ignore"):
        arr32 = arr.astype(np.float32)
    if not np.all(np.isfinite(arr32)):
        raise ModelFormatError(f"model metadata: input {what} {value!r} is not finite in float32")
    return arr32


class Preprocessor:
    """How pixels become the graph's input, from the model's ``metadata.input``
    (validated here, when the model is loaded)."""

    def __init__(self, input_meta, shape: tuple[int, int, int]):
        self.shape = tuple(shape)
        h, w, c = self.shape
        if input_meta is not None and not isinstance(input_meta, dict):
            raise ModelFormatError(f"model metadata: 'input' must be a mapping, got {type(input_meta).__name__}")
        meta = dict(DEFAULT_INPUT, **(input_meta or {}))
        self.color = meta.get("color") or ("L" if c == 1 else "RGB")
        if self.color not in ("L", "RGB") or (c in (1, 3) and (self.color == "L") != (c == 1)):
            raise ModelFormatError(f"model metadata asks for colour mode {self.color!r} for {c} channel(s); "
                                   "bnnrt knows L (1 channel) and RGB (3)")
        (self.scale,) = _finite_numbers(meta["scale"], "scale", 1)
        self.mean = _finite_numbers(meta["mean"] if meta["mean"] is not None else 0.0, "mean", c)
        self.std = _finite_numbers(meta["std"] if meta["std"] is not None else 1.0, "std", c)
        if np.any(self.std == 0) or self.scale == 0:
            raise ModelFormatError(f"model metadata has a zero scale or std (scale {self.scale}, std {self.std})")

    # -- single items
    def _from_image(self, img, what: str) -> np.ndarray:
        from PIL import Image
        h, w, c = self.shape
        if c not in (1, 3):
            raise InputError(f"image {what}: this model takes {c}-channel inputs, not L or RGB images; "
                             "pass (H, W, C) arrays")
        try:
            if img.mode in _MODES_16:     # 16-bit grayscale: the high byte, as 8-bit pixels
                img = Image.fromarray((np.asarray(img, dtype=np.uint16) >> 8).astype(np.uint8))
            img = img.convert(self.color)
            if img.size != (w, h):
                img = img.resize((w, h), Image.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise InputError(f"cannot read image {what}: {e}") from None
        return arr.reshape(self.shape)

    def _from_path(self, path) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError
        name = os.fspath(path)
        try:
            with Image.open(name) as img:
                img.load()
                return self._from_image(img, repr(name))
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
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
        parts, single = self.chunks(x, None)
        parts = list(parts)
        return (parts[0] if len(parts) == 1 else np.concatenate(parts)), single

    def chunks(self, x, size: int | None):
        """(iterator over the graph input of x, ``size`` images at a time (None:
        all at once), whether x was a single image). Only one chunk is decoded
        and normalised at a time: a million paths, or a broadcast view of a
        million images, never become a million decoded float images."""
        if isinstance(x, np.ndarray) and x.ndim == 4:
            check_numeric(x, "batch")
            if x.shape[1:] != self.shape:
                raise InputError(f"batch has shape {x.shape}; this model takes (N, "
                                 f"{', '.join(map(str, self.shape))})")
            pixels, single = x, False
        elif isinstance(x, (list, tuple)):
            pixels, single = x, False
        else:
            return iter([self.normalize(self.item(x)[None])]), True
        n = len(pixels)
        size = max(1, size or n)

        def parts():
            if n == 0:
                yield np.empty((0,) + self.shape, np.float32)
            for start in range(0, n, size):
                part = pixels[start:start + size]
                if not isinstance(part, np.ndarray):
                    part = np.stack([self.item(v, f"item {start + i} of the batch") for i, v in enumerate(part)])
                yield self.normalize(part)
        return parts(), single

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
