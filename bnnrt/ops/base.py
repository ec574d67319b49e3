"""What every op shares: the :class:`Op` interface, the attribute and constant
checks (every error names the layer), and the two kernels written in Python.

An op has four entry points, as a TFLite registration does:

* ``infer(node, ins)``: validate attributes, constants and input specs, return
  output specs. Runs once at load; every error names the layer.
* ``reference(node, ins, arrays)``: the numpy oracle (``bnnrt.reference``).
* ``kernel(node, ins)``: build the compiled kernel once (constants repacked);
  its ``bind(*arrays, threads=)`` returns the zero-argument call the executor runs.
* ``cost(node, ins, outs)``: MACs by precision, for ``Model.summary``.
"""

from __future__ import annotations

import abc
import math

import numpy as np

from .. import reference as ref
from .._shapes import conv_geometry
from ..errors import GraphError
from ..graph import Node, TensorSpec

INT8_RANGE = (-128, 127)
INT32_RANGE = (-2**31, 2**31 - 1)

#: Bound on every geometry attribute (kernel, stride, pad, dilation, channels):
#: far beyond any real network, small enough for every kernel's int32 math.
MAX_DIM = 1 << 16


def fail(node: Node, msg: str):
    raise GraphError(f"{node.where()}: {msg}")


def int_list(node: Node, key: str, n: int, default=None, minimum=None, maximum=MAX_DIM) -> tuple[int, ...]:
    value = node.attrs.get(key, default)
    if (not isinstance(value, (list, tuple)) or len(value) != n
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        fail(node, f"attribute {key!r} must be {n} integers, got {value!r}")
    if minimum is not None and min(value) < minimum:
        fail(node, f"attribute {key!r} must be >= {minimum}, got {list(value)}")
    if maximum is not None and max(value) > maximum:
        fail(node, f"attribute {key!r} = {list(value)} exceeds {maximum}")
    return tuple(value)


def int_attr(node: Node, key: str, default=None, lo=None, hi=None) -> int:
    value = node.attrs.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        fail(node, f"attribute {key!r} must be an integer, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        fail(node, f"attribute {key!r} = {value} is outside [{lo}, {hi}]")
    return value


def choice(node: Node, key: str, choices, default=None):
    value = node.attrs.get(key, default)
    if value not in choices:
        fail(node, f"attribute {key!r} must be one of {list(choices)}, got {value!r}")
    return value


def int8_clamp(node: Node, key: str = "clamp") -> tuple[int, int]:
    lo, hi = int_list(node, key, 2, default=list(INT8_RANGE), maximum=None)
    if not INT8_RANGE[0] <= lo <= hi <= INT8_RANGE[1]:
        fail(node, f"clamp {[lo, hi]} is not an int8 range")
    return lo, hi


def const(node: Node, key: str, dtype, shape=None, optional=False):
    arr = node.consts.get(key)
    if arr is None:
        if optional:
            return None
        fail(node, f"missing constant {key!r}")
    if arr.dtype != np.dtype(dtype):
        fail(node, f"constant {key!r} has dtype {arr.dtype}, expected {np.dtype(dtype)}")
    if shape is not None and tuple(arr.shape) != tuple(shape):
        fail(node, f"constant {key!r} has shape {tuple(arr.shape)}, expected {tuple(shape)}")
    return arr


def input_spec(node: Node, ins, i: int, dtypes, rank=3) -> TensorSpec:
    spec = ins[i]
    if spec.dtype not in dtypes:
        fail(node, f"input {i} ({node.inputs[i]!r}) is {spec}, expected dtype {' or '.join(dtypes)}")
    if len(spec.shape) != rank:
        fail(node, f"input {i} ({node.inputs[i]!r}) is {spec}, expected rank {rank} (H, W, C)")
    return spec


def window(node: Node, spec: TensorSpec, kernel_hw):
    """(strides, dilations, pads, out_h, out_w) of a windowed op on ``spec``."""
    strides = int_list(node, "strides", 2, default=[1, 1], minimum=1)
    dilations = int_list(node, "dilations", 2, default=[1, 1], minimum=1)
    pads = int_list(node, "pads", 4, default=[0, 0, 0, 0], minimum=0)
    try:
        oh, ow = conv_geometry(spec.shape[:2], kernel_hw, strides, dilations, pads)
    except GraphError as e:
        fail(node, f"{e} (input {spec})")
    return strides, dilations, pads, oh, ow


def pool_window(node: Node, spec: TensorSpec) -> dict:
    """A pooling op's validated window, defaults filled in: kernel, strides, pads."""
    kernel = int_list(node, "kernel", 2, minimum=1)
    strides, _, pads, _, _ = window(node, spec, kernel)
    return dict(kernel=kernel, strides=strides, pads=pads)


def padded(node: Node, spec: TensorSpec) -> TensorSpec:
    """The spec of ``spec`` padded by the ``pads`` attribute (top, bottom, left, right)."""
    top, bottom, left, right = int_list(node, "pads", 4, minimum=0)
    h, w, c = spec.shape
    return TensorSpec((h + top + bottom, w + left + right, c), spec.dtype)


def float_attr(node: Node, key: str, default=None, *, positive=False, headroom=1.0) -> float:
    """A float attribute as the op computes with it, in float32: a JSON number
    (an integer too) that stays finite in float32 even times ``headroom`` (the
    largest factor the op multiplies it by), and with ``positive`` a positive
    normal float32 (a scale that does not underflow to 0)."""
    value = node.attrs.get(key, default)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        fail(node, f"attribute {key!r} must be a number, got {value!r}")
    try:
        v = float(value)
    except OverflowError:
        fail(node, f"attribute {key!r} = {value} is beyond the float range")
    with np.errstate(over="ignore", invalid="ignore"):
        finite = bool(np.isfinite(np.float32(v) * np.float32(headroom)))
    if not finite:
        fail(node, f"attribute {key!r} = {value!r} is not a finite float32 number"
             + (f" (times {headroom:g}, as the op uses it)" if headroom != 1 else ""))
    if positive and not np.float32(v) >= np.finfo(np.float32).tiny:
        fail(node, f"attribute {key!r} must be a positive float32 number (at least "
             f"{np.finfo(np.float32).tiny:.3g}), got {value!r}")
    return v


def finite_const(node: Node, key: str, dtype=np.float32, shape=None, optional=False):
    """A float constant, checked to hold finite values only."""
    arr = const(node, key, dtype, shape, optional)
    if arr is not None and not np.all(np.isfinite(arr)):
        fail(node, f"constant {key!r} holds NaN or infinite values")
    return arr


def activation_attr(node: Node, key: str = "activation") -> str:
    return choice(node, key, tuple(ref.ACTIVATIONS), default="none")


def macs(binary=0, int8=0, float_=0):
    return {"binary": int(binary), "int8": int(int8), "float": int(float_)}


class Op(abc.ABC):
    name: str = ""
    n_inputs: tuple[int, int] = (1, 1)
    precision = "int8"
    #: the kernel takes (input, output, skip): a second input is the fused skip add
    skip_last = False

    def precision_of(self, ins: list[TensorSpec]) -> str:
        """"binary", "int8", "float" or "none": what arithmetic the op does."""
        return self.precision

    def check_arity(self, node: Node):
        lo, hi = self.n_inputs
        if not lo <= len(node.inputs) <= hi:
            fail(node, f"takes {lo}..{hi} inputs, got {len(node.inputs)}")
        if len(node.outputs) != 1:
            fail(node, f"has one output, got {len(node.outputs)}")

    @abc.abstractmethod
    def infer(self, node: Node, ins: list[TensorSpec]) -> list[TensorSpec]:
        """Validate the node against its input specs; return the output specs."""

    @abc.abstractmethod
    def reference(self, node: Node, ins: list[TensorSpec], arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Compute the outputs with the numpy oracle."""

    @abc.abstractmethod
    def kernel(self, node: Node, ins: list[TensorSpec]):
        """Build the compiled kernel (constants repacked once)."""

    def cost(self, node, ins, outs):
        return macs()

    def scratch_bytes(self, node, ins, outs) -> int:
        """Bytes per sample the kernel allocates while it runs, beyond its
        planned inputs and outputs (padded copies, temporaries): the planner
        counts them against the memory limit. C kernels without scratch: 0."""
        return 0

    def reference_scratch_bytes(self, node, ins, outs) -> int:
        """The same for the numpy oracle (``resolver="reference"``)."""
        return 8 * NUMPY_TEMPORARIES * elements(ins + outs)


def elements(specs) -> int:
    """Values per sample of the tensors ``specs`` (bits count one per channel)."""
    return sum(math.prod(s.shape) for s in specs)


#: Temporaries a numpy kernel makes, in 8-byte values per value of its
#: inputs and output: an int64 or float64 copy of each and a few
#: intermediate results (the TFLite integer ops compute in int64).
NUMPY_TEMPORARIES = 4


class NumpyKernel:
    """A kernel written with numpy into preallocated outputs (float ops,
    TFLite integer ops and reshapes: cheap next to the convolutions)."""

    variant = "numpy"

    def __init__(self, fn):
        self._fn = fn

    def bind(self, *arrays, threads=1):
        fn = self._fn
        return lambda: fn(*arrays)

    def run(self, *arrays, threads=1):
        self._fn(*arrays)


class ReferenceKernel:
    """The numpy oracle behind the kernel interface (``resolver="reference"``),
    as TFLite's reference op resolver: same graph, same plan, oracle ops."""

    variant = "reference"

    def __init__(self, op: Op, node: Node, ins: list[TensorSpec]):
        self._op, self._node, self._ins = op, node, ins

    def run(self, *arrays, threads=1):
        # kernels take (inputs..., output[, skip]); the oracle takes inputs in graph order
        n_in = len(self._node.inputs)
        if self._op.skip_last and n_in == 2:
            inputs, out = [arrays[0], arrays[2]], arrays[1]
        else:
            inputs, out = list(arrays[:n_in]), arrays[n_in]
        out[...] = self._op.reference(self._node, self._ins, inputs)[0]

    def bind(self, *arrays, threads=1):
        return lambda: self.run(*arrays)


class ReferenceOp(Op):
    """An op whose reference function (``bnnrt.reference.<name>``) takes the
    attributes listed in ``attr_keys``; unless a subclass builds a compiled
    kernel, its kernel runs that function into the planned output."""

    #: attribute keys passed to the reference function (validated by infer)
    attr_keys: tuple[str, ...] = ()

    def scratch_bytes(self, node, ins, outs):
        return 8 * NUMPY_TEMPORARIES * elements(ins + outs)

    def _kwargs(self, node, ins):
        return {k: node.attrs[k] for k in self.attr_keys if k in node.attrs}

    def reference(self, node, ins, arrays):
        return [getattr(ref, self.name)(*arrays, **self._kwargs(node, ins))]

    def kernel(self, node, ins):
        fn, kw = getattr(ref, self.name), self._kwargs(node, ins)

        def run(*arrays):
            arrays[-1][...] = fn(*arrays[:-1], **kw)
        return NumpyKernel(run)


class Elementwise(ReferenceOp):
    """a (op) b, float32 or int8: b is the second input, or the constant
    ``operand`` broadcast over the input (shape (C,), (1,) or the input's own
    shape, as TFLite broadcasts it)."""

    n_inputs = (1, 2)
    dtype = "float32"
    #: whether a second input may hold one value per channel, (1, 1, C),
    #: broadcast over the first (numpy broadcasts it in the reference and the kernel)
    broadcast_inputs = False

    def check_attrs(self, node):
        """Validate the op's own attributes (activation, zero points, ...)."""

    def infer(self, node, ins):
        a = input_spec(node, ins, 0, [self.dtype])
        if len(node.inputs) == 2:
            b = input_spec(node, ins, 1, [self.dtype])
            per_channel = self.broadcast_inputs and b.shape == (1, 1, a.channels)
            if a.shape != b.shape and not per_channel:
                fail(node, f"operands {a} and {b} differ in shape"
                     + (" (the second may be (1, 1, C), one value per channel)" if self.broadcast_inputs else ""))
            if "operand" in node.consts:
                fail(node, "takes a second input or a constant operand, not both")
        else:
            c = (finite_const if self.dtype == "float32" else const)(node, "operand", self.dtype)
            if c.shape not in ((1,), (a.channels,), tuple(a.shape)):
                fail(node, f"constant operand of shape {c.shape} does not broadcast over {a}")
        self.check_attrs(node)
        return [a]

    def reference(self, node, ins, arrays):
        operands = arrays if len(arrays) == 2 else [arrays[0], node.consts["operand"]]
        return [getattr(ref, self.name)(*operands, **self._kwargs(node, ins))]

    def kernel(self, node, ins):
        fn, kw = getattr(ref, self.name), self._kwargs(node, ins)
        operand = node.consts.get("operand")

        def run(*arrays):
            operands = arrays[:-1] if operand is None else (arrays[0], operand)
            arrays[-1][...] = fn(*operands, **kw)
        return NumpyKernel(run)
