"""Converters from what people train with to bnnrt models.

Each converter imports its heavy dependency (torch, a flatbuffer reader) only
when called, so ``import bnnrt.convert`` costs nothing. The importers of model
files are registered by file suffix in :data:`IMPORTERS` (the CLI's ``convert``,
``info``, ``bench`` and ``predict`` find them there); docs/tflite.md says what
a new one touches.
"""

from __future__ import annotations

import os


def from_torch(model, example=None, *, metadata=None, threads=None):
    """A PyTorch network as a :class:`bnnrt.Model`: a trained ``bnnrt.train``
    network folded exactly (``example``: its (H, W, C) input shape, optional),
    any other module exported to ONNX in memory with ``example`` (a tensor
    (1, C, H, W) or that shape) and imported as :func:`from_onnx` does."""
    from ._torch import from_torch as convert
    return convert(model, example, metadata=metadata, threads=threads)


def from_tflite(source, *, threads=None, metadata=None):
    """Import a Larq Compute Engine / TFLite ``.tflite`` file (a path, bytes or a
    binary file object) as a :class:`bnnrt.Model`. Needs the flatbuffer reader: ``pip install 'bnnrt[tflite]'``."""
    from ._tflite import from_tflite as convert
    return convert(source, threads=threads, metadata=metadata)


def from_onnx(source, *, threads=None, metadata=None):
    """Import an ONNX file (a path, bytes, a binary file object or an
    ``onnx.ModelProto``) of a binary network exported from PyTorch as a
    :class:`bnnrt.Model` (docs/onnx.md). Needs ``pip install 'bnnrt[onnx]'``."""
    from ._onnx import from_onnx as convert
    return convert(source, threads=threads, metadata=metadata)


#: File suffix (lower case) -> importer: ``importer(source, *, threads=None,
#: metadata=None)`` reads a path, bytes or a binary file object and returns a
#: :class:`bnnrt.Model`. Adding a file format is its module and one line here.
IMPORTERS = {
    ".tflite": from_tflite,
    ".onnx": from_onnx,
}


def importer_for(path):
    """The importer registered for ``path``'s suffix (any case), or None: a path
    no importer reads (a .bnn file is loaded, not imported)."""
    return IMPORTERS.get(os.path.splitext(os.fspath(path))[1].lower())


__all__ = ["IMPORTERS", "from_onnx", "from_tflite", "from_torch", "importer_for"]
