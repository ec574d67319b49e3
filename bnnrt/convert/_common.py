"""What every importer shares, whatever its file format: the check that names
every op bnnrt lacks before anything is built, the table binding the file's
tensors to bnnrt tensors, and the metadata a graph starts with. Reading the
file is ``bnnrt._io.read_bounded``; rewrites of the built graph are
``bnnrt.passes``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Mapping
from typing import NoReturn

from ..errors import UnsupportedOpError
from ..graph import TensorSpec


def check_supported(name: str, counts: Mapping[str, int], known) -> None:
    """Raise one :class:`UnsupportedOpError` listing every op of ``counts`` (op ->
    how many times the file ``name`` uses it) that ``known`` (a container of op
    names) lacks, each with its count, so that one error tells the whole story."""
    missing = {op: n for op, n in counts.items() if op not in known}
    if missing:
        listing = ", ".join(f"{op} x{n}" for op, n in sorted(missing.items()))
        raise UnsupportedOpError(f"{name}: bnnrt does not implement {len(missing)} op(s) this file uses: "
                                 f"{listing}")


class TensorBindings:
    """The source file's tensors as bnnrt tensors: for each tensor id (TFLite's
    tensor index, ONNX's tensor name) computed so far, the name of the bnnrt
    tensor that holds it and its per-sample :class:`TensorSpec`.

    The format-specific parts are handed in: ``describe(id)`` names a tensor in
    messages, ``spec_of(id, dtype, channels)`` is the spec of the file's tensor
    (its layout and batch rules), ``fail(message)`` raises with the importer's
    current location, and ``constants`` (id -> array) holds the file's constant
    tensors, which ops read as weights, never as activations."""

    def __init__(self, *, describe: Callable[[Hashable], str],
                 spec_of: Callable[[Hashable, str, int | None], TensorSpec],
                 constants: Mapping, fail: Callable[[str], NoReturn]):
        self.names: dict = {}
        self.specs: dict = {}
        self.constants = constants
        self._describe, self._spec_of, self._fail = describe, spec_of, fail

    def __contains__(self, tensor_id) -> bool:
        return tensor_id in self.names

    def bind(self, tensor_id, name: str, spec: TensorSpec) -> None:
        """``tensor_id`` is held by bnnrt's tensor ``name`` (also: an alias of it)."""
        self.names[tensor_id] = name
        self.specs[tensor_id] = spec

    def inp(self, tensor_id, dtypes=("float32",)) -> tuple[str, TensorSpec]:
        """(bnnrt name, spec) of an op's activation input, which must have been
        computed already and be of one of ``dtypes``."""
        if tensor_id not in self.names:
            if tensor_id in self.constants:
                self._fail(f"constant tensor {self._describe(tensor_id)} used as an activation input")
            self._fail(f"tensor {self._describe(tensor_id)} is used before it is computed")
        spec = self.specs[tensor_id]
        if spec.dtype not in dtypes:
            self._fail(f"input {self._describe(tensor_id)} is {spec}, expected {' or '.join(dtypes)}")
        return self.names[tensor_id], spec

    def out(self, tensor_id, name: str, dtype: str = "float32", channels: int | None = None) -> TensorSpec:
        """Bind an op's output ``tensor_id`` to the bnnrt tensor ``name`` just
        built, with the file's shape for it (``channels`` where the file's last
        dimension is not the channel count, e.g. bit tensors in words)."""
        spec = self._spec_of(tensor_id, dtype, channels)
        self.bind(tensor_id, name, spec)
        return spec


def source_metadata(file_name: str, file_format: str) -> dict:
    """The metadata an imported graph starts with: its name (the file's stem) and
    where it came from."""
    base = os.path.basename(file_name)
    return {"name": os.path.splitext(base)[0], "source": {"format": file_format, "file": base}}
