"""What every importer shares, whatever its file format: the check that names
every op bnnrt lacks before anything is built, the table binding the file's
tensors to bnnrt tensors (with their shapes inferred by bnnrt, never taken
on trust), and the metadata a graph starts with. Reading the
file is ``bnnrt._io.read_bounded``; rewrites of the built graph are
``bnnrt.passes``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Mapping
from typing import NoReturn

from ..errors import GraphError, UnsupportedOpError
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


class ShapeInference:
    """The spec of every bnnrt tensor an importer builds, inferred by the ops
    themselves (``Op.infer``, the checks a loaded file gets) as the nodes are
    added: an importer never takes a shape from the file on trust."""

    def __init__(self, builder):
        self._builder = builder
        self._specs: dict = {}
        self._done = 0

    def spec(self, name: str) -> TensorSpec:
        from ..ops import get_op
        self._specs.update(self._builder.input_specs)
        nodes = self._builder.nodes
        for node in nodes[self._done:]:
            op = get_op(node)
            outs = op.infer(node, [self._specs[t] for t in node.inputs])
            self._specs.update(zip(node.outputs, outs))
        self._done = len(nodes)
        return self._specs[name]


class TensorBindings:
    """The source file's tensors as bnnrt tensors: for each tensor id (TFLite's
    tensor index, ONNX's tensor name) computed so far, the name of the bnnrt
    tensor that holds it and its per-sample :class:`TensorSpec`, as bnnrt
    infers it (``infer(name)``); the shape the file records must agree.

    The format-specific parts are handed in: ``describe(id)`` names a tensor in
    messages, ``spec_of(id, dtype, channels)`` is the spec of the file's tensor
    (its layout and batch rules; None where the file records no shape for it,
    as ONNX files may not), ``fail(message)`` raises with the importer's
    current location, and ``constants`` (id -> array) holds the file's constant
    tensors, which ops read as weights, never as activations."""

    def __init__(self, *, describe: Callable[[Hashable], str],
                 spec_of: Callable[[Hashable, str, int | None], TensorSpec | None],
                 constants: Mapping, fail: Callable[[str], NoReturn],
                 infer: Callable[[str], TensorSpec]):
        self.names: dict = {}
        self.specs: dict = {}
        self.constants = constants
        self._describe, self._spec_of, self._fail, self._infer = describe, spec_of, fail, infer

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
        built, with the spec bnnrt infers for it; the shape the file records
        (``channels`` where the file's last dimension is not the channel count,
        e.g. bit tensors in words) must be the same."""
        try:
            spec = self._infer(name)
        except GraphError as e:
            self._fail(str(e))
        recorded = self._spec_of(tensor_id, dtype, channels)
        if recorded is not None and (recorded.shape, recorded.dtype) != (spec.shape, spec.dtype):
            self._fail(f"the file records {self._describe(tensor_id)} as {recorded}, but bnnrt computes {spec}")
        self.bind(tensor_id, name, spec)
        return spec


def source_metadata(file_name: str, file_format: str) -> dict:
    """The metadata an imported graph starts with: its name (the file's stem) and
    where it came from."""
    base = os.path.basename(file_name)
    return {"name": os.path.splitext(base)[0], "source": {"format": file_format, "file": base}}
