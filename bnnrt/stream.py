"""Prediction over many image files in bounded memory (``bnnrt predict``).

:class:`Inputs` turns the command's PATHs into image files, lazily: a file
as given, a directory walked recursively, a glob pattern; directories and
globs keep the files whose names end in an extension Pillow opens, in sorted
order. :func:`predict_files` decodes them with a thread pool (Pillow), at
most ``window`` images ahead of the consumer, and runs the model on batches of
them while the next ones decode (the kernels release the GIL); results come
back in input order, one per file, a file that cannot be read carrying the
reason instead of probabilities. :func:`top_k_columns` is the table every
output shares (CSV, JSONL, :mod:`bnnrt.ray`): ``label`` and ``probability``
(top-1), then ``label_2``, ``probability_2`` ... up to k.
"""

from __future__ import annotations

import collections
import glob
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from .errors import InputError


def image_extensions() -> frozenset[str]:
    """The file name extensions of the image formats Pillow can open (".png", ".jpg", ...)."""
    from PIL import Image
    Image.init()
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


@dataclass
class Result:
    path: str
    probs: np.ndarray | None = None     # (classes,) float32, or None when the file failed
    error: str | None = None


class Inputs:
    """The image files that a list of PATHs names, in order (iterable more than
    once; each pass walks the file system again). Items are ``(path, error)``:
    ``error`` says why a PATH gave no file (missing, a glob or a directory
    without images). ``ignored`` counts the files of directories and globs
    skipped by name on the last pass (not an image extension)."""

    def __init__(self, paths: Iterable[str]):
        self.paths = [os.fspath(p) for p in paths]
        self.ignored = 0
        self._extensions = image_extensions()

    def __iter__(self) -> Iterator[tuple[str, str | None]]:
        self.ignored = 0
        for path in self.paths:
            if os.path.isdir(path):
                yield from self._tree(path)
            elif os.path.exists(path):
                yield path, None
            elif glob.has_magic(path):
                found = False
                for match in sorted(glob.iglob(path, recursive=True)):
                    for item in self._tree(match) if os.path.isdir(match) else self._named(match):
                        found = True
                        yield item
                if not found:
                    yield path, "the pattern matches no image files"
            else:
                yield path, "no such file or directory"

    def _named(self, path: str):
        if os.path.splitext(path)[1].lower() in self._extensions:
            yield path, None
        else:
            self.ignored += 1

    def _tree(self, top: str):
        found = False
        stack = [top]
        while stack:                  # depth first, each directory's entries sorted by name
            folder = stack.pop()
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError as e:
                yield folder, f"cannot list the directory: {e.strerror or e}"
                continue
            subdirs = []
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    subdirs.append(entry.path)
                    continue
                if entry.is_dir():        # a link to a directory: not followed (no loops)
                    self.ignored += 1
                    continue
                for item in self._named(entry.path):
                    found = True
                    yield item
            stack.extend(reversed(subdirs))
        if not found:
            yield top, "the directory holds no image files"


def _decode(pre, path: str) -> np.ndarray:
    """One file as (H, W, C) pixels; any failure to read it becomes an
    InputError whose message is the reason (the path is the caller's)."""
    try:
        return pre.item(path)
    except InputError as e:
        reason = str(e).removeprefix(f"cannot read image {path!r}: ")
    except Exception as e:        # Pillow raises SyntaxError, struct.error, ... on corrupt files
        reason = f"{type(e).__name__}: {e}"
    raise InputError(reason)


def predict_files(model, items: Iterable[tuple[str, str | None]], batch: int = 64,
                  workers: int | None = None, window: int | None = None) -> Iterator[Result]:
    """One :class:`Result` per item, in order, for ``(path, error)`` items
    (:class:`Inputs`). At most ``window`` (default 3 x ``batch``) files are
    decoding, decoded or waiting in a batch at any time, so memory does not
    grow with the number of files; ``workers`` threads decode (default: the
    model's threads)."""
    window = max(batch, window or 3 * batch)
    pre = model._preprocessor()
    source = iter(items)
    pending: collections.deque = collections.deque()    # (path, error, future or None)
    with ThreadPoolExecutor(workers or model.threads, thread_name_prefix="bnnrt-decode") as pool:

        def top_up(held: int) -> None:
            while len(pending) + held < window:
                item = next(source, None)
                if item is None:
                    return
                path, error = item
                pending.append((path, error, None if error else pool.submit(_decode, pre, path)))

        top_up(0)
        while pending:
            group: list[Result] = []
            pixels: list[np.ndarray] = []
            while pending and len(pixels) < batch:
                path, error, future = pending.popleft()
                if future is not None:
                    try:
                        pixels.append(future.result())
                    except InputError as e:
                        error = str(e)
                group.append(Result(path, error=error))
                top_up(len(group))
            probs = model.predict(np.stack(pixels)) if pixels else None
            done = 0
            for result in group:
                if result.error is None:
                    result.probs = probs[done]
                    done += 1
                yield result


def top_k_columns(probs: np.ndarray, labels: list[str], k: int) -> dict[str, list]:
    """Columns ``label``, ``probability``, ``label_2``, ``probability_2``, ... for
    (N, classes) probabilities: the k best classes of each row, best first
    (ties: the lower class index first, as :meth:`Model.top_k`)."""
    probs = np.asarray(probs, dtype=np.float32).reshape(len(probs), -1)
    k = max(1, min(k, probs.shape[1]))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    columns: dict[str, list] = {}
    rows = np.arange(len(probs))
    for j in range(k):
        suffix = "" if j == 0 else f"_{j + 1}"
        columns["label" + suffix] = [labels[i] for i in order[:, j]]
        columns["probability" + suffix] = probs[rows, order[:, j]].tolist()
    return columns
