"""Converters from what people train with to bnnrt models.

Each converter imports its heavy dependency (torch, a flatbuffer reader) only
when called, so ``import bnnrt.convert`` costs nothing.
"""

from __future__ import annotations


def from_torch(model, input_shape=None, *, metadata=None, threads=None):
    """Export a trained ``bnnrt.train`` network to a :class:`bnnrt.Model`."""
    from ._torch import from_torch as convert
    return convert(model, input_shape, metadata=metadata, threads=threads)


def from_tflite(source, *, threads=None, metadata=None):
    """Import a Larq Compute Engine / TFLite ``.tflite`` file (a path, bytes or a
    binary file object) as a :class:`bnnrt.Model`. Needs the flatbuffer reader: ``pip install 'bnnrt[tflite]'``."""
    from ._tflite import from_tflite as convert
    return convert(source, threads=threads, metadata=metadata)


__all__ = ["from_torch", "from_tflite"]
