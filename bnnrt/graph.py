"""The in-memory model: tensors, nodes, graph, and the builder that writes them.

A :class:`Graph` is what a .bnn file holds and what converters produce. It is
plain data: ops are named by string and resolved through ``bnnrt.ops.OPS``,
constants are numpy arrays (zero-copy views into the file when loaded).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._shapes import packed_bytes
from .errors import GraphError

#: dtype name -> numpy dtype of the storage. "bits" tensors store C channels
#: packed into ceil(C/8) bytes per pixel (see bnnrt.reference).
DTYPES = {
    "float32": np.dtype("<f4"),
    "int32": np.dtype("<i4"),
    "int8": np.dtype("i1"),
    "uint8": np.dtype("u1"),
    "bits": np.dtype("u1"),
}


@dataclass(frozen=True)
class TensorSpec:
    """Shape of one sample (batch excluded; NHWC tensors are (H, W, C)) and dtype."""

    shape: tuple[int, ...]
    dtype: str

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise GraphError(f"unknown tensor dtype {self.dtype!r}")
        if not all(isinstance(d, int) and 0 < d <= 1 << 31 for d in self.shape):
            raise GraphError(f"tensor shape {self.shape} must be positive integers below 2**31")

    @property
    def channels(self) -> int:
        return self.shape[-1]

    @property
    def storage_shape(self) -> tuple[int, ...]:
        if self.dtype == "bits":
            return self.shape[:-1] + (packed_bytes(self.shape[-1]),)
        return self.shape

    @property
    def np_dtype(self) -> np.dtype:
        return DTYPES[self.dtype]

    @property
    def nbytes(self) -> int:
        return math.prod(self.storage_shape) * self.np_dtype.itemsize      # Python ints: no overflow

    def __str__(self) -> str:
        return f"{self.dtype}{list(self.shape)}"


@dataclass
class Node:
    """One op application. ``attrs`` are JSON values, ``consts`` numpy arrays."""

    op: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    consts: dict[str, np.ndarray] = field(default_factory=dict)

    def where(self) -> str:
        return f"layer {self.name!r} ({self.op})"


@dataclass
class Graph:
    inputs: dict[str, TensorSpec]
    outputs: list[str]
    nodes: list[Node]
    metadata: dict[str, Any] = field(default_factory=dict)


def _as_const(value, dtype) -> np.ndarray:
    arr = np.ascontiguousarray(value, dtype=dtype)
    arr.setflags(write=False)
    return arr


class GraphBuilder:
    """Writes a :class:`Graph` one op at a time; every method returns the name of
    the tensor it produces. Constants are converted to the dtypes the ops expect.

    >>> b = GraphBuilder()
    >>> x = b.input("image", (28, 28, 1))
    >>> q = b.quantize(x, scale=1 / 64)
    """

    def __init__(self):
        self._inputs: dict[str, TensorSpec] = {}
        self._nodes: list[Node] = []
        self._names: set[str] = set()
        self._count: dict[str, int] = {}

    # -- plumbing
    def _fresh(self, base: str) -> str:
        n = self._count.get(base, 0)
        self._count[base] = n + 1
        name = f"{base}_{n}"
        while name in self._names:
            n += 1
            name = f"{base}_{n}"
        self._names.add(name)
        return name

    def add(self, op: str, inputs, attrs=None, consts=None, name=None, n_outputs=1):
        """Append a node of any registered op; returns its output name(s). A
        ``name`` already taken (a converted file may repeat its tensor names)
        gets a suffix, so every node and tensor is named once."""
        if name is None or name in self._names:
            name = self._fresh(name or op)
        self._names.add(name)
        outputs = [f"{name}:{i}" if n_outputs > 1 else name for i in range(n_outputs)]
        self._nodes.append(Node(op, name, list(inputs), outputs, dict(attrs or {}), dict(consts or {})))
        return outputs if n_outputs > 1 else outputs[0]

    @property
    def nodes(self) -> tuple[Node, ...]:
        """The nodes written so far, in order."""
        return tuple(self._nodes)

    @property
    def input_specs(self) -> dict[str, TensorSpec]:
        return dict(self._inputs)

    def input(self, name: str, shape, dtype: str = "float32") -> str:
        self._inputs[name] = TensorSpec(tuple(int(d) for d in shape), dtype)
        self._names.add(name)
        return name

    def build(self, outputs, metadata=None) -> Graph:
        outputs = [outputs] if isinstance(outputs, str) else list(outputs)
        return Graph(dict(self._inputs), outputs, list(self._nodes), dict(metadata or {}))

    # -- ops (see bnnrt.reference for what each computes)
    def quantize(self, x, *, scale, name=None):
        return self.add("quantize", [x], {"scale": float(scale)}, name=name)

    def dequantize(self, x, *, scale, offset=None, name=None):
        consts = {"scale": _as_const(np.atleast_1d(scale), np.float32)}
        if offset is not None:
            consts["offset"] = _as_const(np.atleast_1d(offset), np.float32)
        return self.add("dequantize", [x], consts=consts, name=name)

    def sign_bits(self, x, name=None):
        return self.add("sign_bits", [x], name=name)

    def binarize(self, x, *, thresholds, directions, name=None):
        return self.add("binarize", [x], consts={
            "thresholds": _as_const(thresholds, np.int16),
            "directions": _as_const(directions, np.int8)}, name=name)

    @staticmethod
    def _conv_attrs(strides, dilations, pads):
        return {"strides": [int(s) for s in strides], "dilations": [int(d) for d in dilations],
                "pads": [int(p) for p in pads]}

    @staticmethod
    def _epilogue_consts(output, thresholds, bias, multiplier, shift):
        consts = {}
        if output == "bits":
            consts["thresholds"] = _as_const(thresholds, np.int32)
        if bias is not None:
            consts["bias"] = _as_const(bias, np.int32)
        if output == "int8":
            consts["multiplier"] = _as_const(multiplier, np.int32)
            consts["shift"] = _as_const(shift, np.int8)
        return consts

    def bconv2d(self, x, weights, *, cin, strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0),
                pad_value=1, output="int32", thresholds=None, bias=None, multiplier=None,
                shift=None, clamp=(-128, 127), skip=None, skip_multiplier=1, skip_shift=0,
                name=None):
        """Binary conv; ``weights`` packed uint8 (Cout, kh, kw, ceil(cin/8))."""
        attrs = self._conv_attrs(strides, dilations, pads)
        attrs.update(cin=int(cin), pad_value=int(pad_value), output=output)
        consts = {"weights": _as_const(weights, np.uint8)}
        if output == "int8":
            attrs["clamp"] = [int(c) for c in clamp]
            if bias is None:
                bias = np.zeros(consts["weights"].shape[0], np.int32)
        consts.update(self._epilogue_consts(output, thresholds, bias, multiplier, shift))
        inputs = [x]
        if skip is not None:
            inputs.append(skip)
            attrs.update(skip_multiplier=int(skip_multiplier), skip_shift=int(skip_shift))
        return self.add("bconv2d", inputs, attrs, consts, name=name)

    def conv2d_int8(self, x, weights, *, bias=None, strides=(1, 1), dilations=(1, 1),
                    pads=(0, 0, 0, 0), output="int8", multiplier=None, shift=None, thresholds=None,
                    clamp=(-128, 127), skip=None, skip_multiplier=1, skip_shift=0, name=None):
        """int8 conv; ``weights`` int8 (Cout, kh, kw, Cin); ``output`` "bits"
        takes ``thresholds`` (+1 iff y >= threshold) and no bias."""
        attrs = self._conv_attrs(strides, dilations, pads)
        attrs["output"] = output
        weights = _as_const(weights, np.int8)
        if bias is None and output != "bits":
            bias = np.zeros(weights.shape[0], np.int32)
        consts = {"weights": weights}
        consts.update(self._epilogue_consts(output, thresholds, bias, multiplier, shift))
        if output == "int8":
            attrs["clamp"] = [int(c) for c in clamp]
        inputs = [x]
        if skip is not None:
            inputs.append(skip)
            attrs.update(skip_multiplier=int(skip_multiplier), skip_shift=int(skip_shift))
        return self.add("conv2d_int8", inputs, attrs, consts, name=name)

    def add_int8(self, a, b, *, a_multiplier, a_shift, b_multiplier, b_shift,
                 clamp=(-128, 127), name=None):
        return self.add("add_int8", [a, b], {
            "a_multiplier": int(a_multiplier), "a_shift": int(a_shift),
            "b_multiplier": int(b_multiplier), "b_shift": int(b_shift),
            "clamp": [int(c) for c in clamp]}, name=name)

    def maxpool(self, x, *, kernel, strides, pads=(0, 0, 0, 0), name=None):
        return self.add("maxpool", [x], {"kernel": [int(k) for k in kernel],
                                         "strides": [int(s) for s in strides],
                                         "pads": [int(p) for p in pads]}, name=name)

    def global_avgpool(self, x, *, multiplier, shift, clamp=(-128, 127), name=None):
        return self.add("global_avgpool", [x], {"multiplier": int(multiplier), "shift": int(shift),
                                                "clamp": [int(c) for c in clamp]}, name=name)

    def transpose(self, x, name=None):
        """(H, W, C) -> (1, C, H*W), int8 or bits."""
        return self.add("transpose", [x], name=name)

    def flatten(self, x, name=None):
        return self.add("flatten", [x], name=name)

    def softmax(self, x, name=None):
        return self.add("softmax", [x], name=name)
