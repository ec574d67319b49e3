"""The op registry: for every op, its shape rule, its reference and its kernel.

Like TFLite's op resolver, this is a lookup from the op name a graph uses to
one :class:`Op` object with four entry points:

* ``infer(node, ins)``: validate attributes, constants and input specs, return
  output specs. Runs once at load; every error names the layer.
* ``reference(node, ins, arrays)``: the numpy oracle (``bnnrt.reference``).
* ``kernel(node, ins)``: build the compiled kernel once (constants repacked);
  its ``bind(*arrays, threads=)`` returns the zero-argument call the executor runs.
* ``cost(node, ins, outs)``: MACs by precision, for ``Model.summary``.

Adding an op means adding one class here and its reference function; the
import-time check at the bottom keeps the registry and the reference in step.
"""

from __future__ import annotations

import abc

import numpy as np

from . import reference as ref
from ._kernels import _core
from ._shapes import conv_geometry, packed_bytes
from .errors import GraphError
from .graph import Node, TensorSpec

INT8_RANGE = (-128, 127)


# --------------------------------------------------------------------------
# attribute and constant checks (all errors name the layer)


def _fail(node: Node, msg: str):
    raise GraphError(f"{node.where()}: {msg}")


#: Bound on every geometry attribute (kernel, stride, pad, dilation, channels):
#: far beyond any real network, small enough for every kernel's int32 math.
MAX_DIM = 1 << 16


def _ints(node: Node, key: str, n: int, default=None, minimum=None) -> tuple[int, ...]:
    value = node.attrs.get(key, default)
    if (not isinstance(value, (list, tuple)) or len(value) != n
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        _fail(node, f"attribute {key!r} must be {n} integers, got {value!r}")
    if minimum is not None and min(value) < minimum:
        _fail(node, f"attribute {key!r} must be >= {minimum}, got {list(value)}")
    if max(value) > MAX_DIM:
        _fail(node, f"attribute {key!r} = {list(value)} exceeds {MAX_DIM}")
    return tuple(value)


def _int(node: Node, key: str, default=None, lo=None, hi=None) -> int:
    value = node.attrs.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        _fail(node, f"attribute {key!r} must be an integer, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        _fail(node, f"attribute {key!r} = {value} is outside [{lo}, {hi}]")
    return value


def _choice(node: Node, key: str, choices, default=None):
    value = node.attrs.get(key, default)
    if value not in choices:
        _fail(node, f"attribute {key!r} must be one of {list(choices)}, got {value!r}")
    return value


def _clamp(node: Node) -> tuple[int, int]:
    lo, hi = _ints(node, "clamp", 2, default=list(INT8_RANGE))
    if not INT8_RANGE[0] <= lo <= hi <= INT8_RANGE[1]:
        _fail(node, f"clamp {[lo, hi]} is not an int8 range")
    return lo, hi


def _const(node: Node, key: str, dtype, shape=None, optional=False):
    arr = node.consts.get(key)
    if arr is None:
        if optional:
            return None
        _fail(node, f"missing constant {key!r}")
    if arr.dtype != np.dtype(dtype):
        _fail(node, f"constant {key!r} has dtype {arr.dtype}, expected {np.dtype(dtype)}")
    if shape is not None and tuple(arr.shape) != tuple(shape):
        _fail(node, f"constant {key!r} has shape {tuple(arr.shape)}, expected {tuple(shape)}")
    return arr


def _input(node: Node, ins, i: int, dtypes, rank=3) -> TensorSpec:
    spec = ins[i]
    if spec.dtype not in dtypes:
        _fail(node, f"input {i} ({node.inputs[i]!r}) is {spec}, expected dtype {' or '.join(dtypes)}")
    if len(spec.shape) != rank:
        _fail(node, f"input {i} ({node.inputs[i]!r}) is {spec}, expected rank {rank} (H, W, C)")
    return spec


def _macs(binary=0, int8=0, float_=0):
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
            _fail(node, f"takes {lo}..{hi} inputs, got {len(node.inputs)}")
        if len(node.outputs) != 1:
            _fail(node, f"has one output, got {len(node.outputs)}")

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
        return _macs()


class NumpyKernel:
    """A kernel written with numpy ufuncs into preallocated outputs (float
    ops and reshapes: cheap next to the convolutions)."""

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

    def __init__(self, op: "Op", node: Node, ins: list[TensorSpec]):
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


# --------------------------------------------------------------------------
# element-wise and conversion ops


class Quantize(Op):
    name = "quantize"
    precision = "float"

    def infer(self, node, ins):
        spec = _input(node, ins, 0, ["float32"])
        scale = node.attrs.get("scale")
        if not isinstance(scale, (int, float)) or not scale > 0 or not np.isfinite(scale):
            _fail(node, f"scale must be a positive number, got {scale!r}")
        return [TensorSpec(spec.shape, "int8")]

    def reference(self, node, ins, arrays):
        return [ref.quantize(arrays[0], scale=node.attrs["scale"])]

    def kernel(self, node, ins):
        return _core.Quantize(ins[0].channels, node.attrs["scale"])


class Dequantize(Op):
    name = "dequantize"
    precision = "float"

    def infer(self, node, ins):
        spec = _input(node, ins, 0, ["int8", "int32", "bits"])
        c = spec.channels
        for key in ("scale", "offset"):
            arr = _const(node, key, np.float32, optional=(key == "offset"))
            if arr is not None and arr.shape not in ((1,), (c,)):
                _fail(node, f"constant {key!r} has shape {arr.shape}, expected (1,) or ({c},)")
        return [TensorSpec(spec.shape, "float32")]

    def _kwargs(self, node, ins):
        channels = ins[0].channels if ins[0].dtype == "bits" else None
        return dict(scale=node.consts["scale"], offset=node.consts.get("offset"), channels=channels)

    def reference(self, node, ins, arrays):
        return [ref.dequantize(arrays[0], **self._kwargs(node, ins))]

    def kernel(self, node, ins):
        kw = self._kwargs(node, ins)
        if kw["channels"] is not None:  # bits: +1/-1 times the scale (LceDequantize)
            def run(x, out):
                out[...] = ref.dequantize(x, **kw)
            return NumpyKernel(run)
        scale, offset = kw["scale"], kw["offset"]

        def run(x, out):
            np.multiply(x, scale, out=out, dtype=np.float32)
            if offset is not None:
                np.add(out, offset, out=out)
        return NumpyKernel(run)


class Softmax(Op):
    name = "softmax"
    precision = "float"

    def infer(self, node, ins):
        spec = _input(node, ins, 0, ["float32"])
        beta = node.attrs.get("beta", 1.0)
        if not isinstance(beta, (int, float)) or not np.isfinite(beta) or beta <= 0:
            _fail(node, f"beta must be a positive number, got {beta!r}")
        return [spec]

    def reference(self, node, ins, arrays):
        return [ref.softmax(arrays[0], beta=node.attrs.get("beta", 1.0))]

    def kernel(self, node, ins):
        beta = np.float32(node.attrs.get("beta", 1.0))

        def run(x, out):
            np.subtract(x, x.max(axis=-1, keepdims=True), out=out)
            if beta != 1:
                out *= beta
            np.exp(out, out=out)
            out /= out.sum(axis=-1, keepdims=True)
        return NumpyKernel(run)


class Flatten(Op):
    name = "flatten"
    precision = "none"

    def infer(self, node, ins):
        spec = _input(node, ins, 0, ["int8", "int32", "float32", "bits"])
        h, w, c = spec.shape
        if spec.dtype == "bits" and c % 8 and h * w > 1:
            _fail(node, f"cannot flatten {spec}: bit pixels of {c} channels are not whole bytes")
        return [TensorSpec((1, 1, h * w * c), spec.dtype)]

    def reference(self, node, ins, arrays):
        return [ref.flatten(arrays[0])]

    def kernel(self, node, ins):
        def run(x, out):
            out[...] = x.reshape(out.shape)
        return NumpyKernel(run)


class SignBits(Op):
    name = "sign_bits"
    precision = "float"

    def infer(self, node, ins):
        spec = _input(node, ins, 0, ["float32"])
        return [TensorSpec(spec.shape, "bits")]

    def reference(self, node, ins, arrays):
        return [ref.sign_bits(arrays[0], channels=ins[0].channels)]

    def kernel(self, node, ins):
        return _core.SignBits(ins[0].channels)


class Binarize(Op):
    name = "binarize"

    def infer(self, node, ins):
        spec = _input(node, ins, 0, ["int8"])
        c = spec.channels
        _const(node, "thresholds", np.int16, (c,))
        d = _const(node, "directions", np.int8, (c,))
        if not np.all(np.abs(d) == 1):
            _fail(node, "directions must be +1 or -1")
        return [TensorSpec(spec.shape, "bits")]

    def reference(self, node, ins, arrays):
        return [ref.binarize(arrays[0], thresholds=node.consts["thresholds"],
                             directions=node.consts["directions"])]

    def kernel(self, node, ins):
        return _core.Binarize(node.consts["thresholds"], node.consts["directions"])


class AddInt8(Op):
    name = "add_int8"
    n_inputs = (2, 2)

    def infer(self, node, ins):
        a = _input(node, ins, 0, ["int8"])
        b = _input(node, ins, 1, ["int8"])
        if a.shape != b.shape:
            _fail(node, f"adds {a} and {b}: shapes differ")
        for side in "ab":
            _int(node, f"{side}_multiplier", lo=-2**31, hi=2**31 - 1)
            _int(node, f"{side}_shift", lo=0, hi=62)
        _clamp(node)
        return [a]

    def _params(self, node):
        a = node.attrs
        return dict(a_multiplier=a["a_multiplier"], a_shift=a["a_shift"],
                    b_multiplier=a["b_multiplier"], b_shift=a["b_shift"], clamp=_clamp(node))

    def reference(self, node, ins, arrays):
        return [ref.add_int8(arrays[0], arrays[1], **self._params(node))]

    def kernel(self, node, ins):
        return _core.AddInt8(**self._params(node))


# --------------------------------------------------------------------------
# windowed ops


def _window(node: Node, spec: TensorSpec, kernel_hw):
    strides = _ints(node, "strides", 2, default=[1, 1], minimum=1)
    dilations = _ints(node, "dilations", 2, default=[1, 1], minimum=1)
    pads = _ints(node, "pads", 4, default=[0, 0, 0, 0], minimum=0)
    try:
        oh, ow = conv_geometry(spec.shape[:2], kernel_hw, strides, dilations, pads)
    except GraphError as e:
        _fail(node, f"{e} (input {spec})")
    return strides, dilations, pads, oh, ow


def _epilogue(node: Node, cout: int, output: str, n_inputs: int, int32_bias: bool):
    """Validate the per-channel epilogue constants; returns kernel kwargs.
    ``int32_bias``: the int32 output adds a bias (int8 convs) or not (binary)."""
    kw = {"output": output}
    if output == "bits":
        kw["thresholds"] = _const(node, "thresholds", np.int32, (cout,))
    if output == "int8" or (output == "int32" and int32_bias):
        kw["bias"] = _const(node, "bias", np.int32, (cout,))
    if output == "int8":
        kw["multiplier"] = _const(node, "multiplier", np.int32, (cout,))
        shift = kw["shift"] = _const(node, "shift", np.int8, (cout,))
        if shift.size and (shift.min() < 0 or shift.max() > 62):
            _fail(node, "shift must lie in [0, 62]")
        kw["clamp"] = _clamp(node)
        if n_inputs == 2:
            kw["skip_multiplier"] = _int(node, "skip_multiplier", lo=-2**31, hi=2**31 - 1)
            kw["skip_shift"] = _int(node, "skip_shift", lo=0, hi=62)
    elif n_inputs == 2:
        _fail(node, "a skip input needs output 'int8'")
    return kw


class BConv2D(Op):
    name = "bconv2d"
    n_inputs = (1, 2)
    precision = "binary"
    skip_last = True

    def infer(self, node, ins):
        spec = _input(node, ins, 0, ["bits"])
        cin = _int(node, "cin", lo=1, hi=MAX_DIM)
        if cin != spec.channels:
            _fail(node, f"attribute cin={cin} but the input has {spec.channels} channels")
        w = node.consts.get("weights")
        if w is None or w.dtype != np.uint8 or w.ndim != 4 or w.shape[3] != packed_bytes(cin):
            _fail(node, f"weights must be uint8 (Cout, kh, kw, {packed_bytes(cin)}), got "
                  f"{None if w is None else (w.dtype, w.shape)}")
        cout, kh, kw_ = (int(d) for d in w.shape[:3])
        _choice(node, "pad_value", (0, 1), default=1)
        output = _choice(node, "output", ("int32", "bits", "int8"))
        _, _, _, oh, ow = _window(node, spec, (kh, kw_))
        _epilogue(node, cout, output, len(node.inputs), int32_bias=False)
        out_dtype = {"int32": "int32", "bits": "bits", "int8": "int8"}[output]
        out = TensorSpec((oh, ow, cout), out_dtype)
        if len(node.inputs) == 2:
            skip = _input(node, ins, 1, ["int8"])
            if skip.shape != out.shape:
                _fail(node, f"skip input {skip} does not match the output {out}")
        return [out]

    def _params(self, node, ins):
        w = node.consts["weights"]
        strides, dilations, pads, _, _ = _window(node, ins[0], w.shape[1:3])
        kw = _epilogue(node, w.shape[0], node.attrs["output"], len(node.inputs), int32_bias=False)
        kw.update(cin=node.attrs["cin"], strides=strides, dilations=dilations, pads=pads,
                  pad_value=node.attrs.get("pad_value", 1))
        return kw

    def reference(self, node, ins, arrays):
        kw = self._params(node, ins)
        skip = arrays[1] if len(arrays) > 1 else None
        return [ref.bconv2d(arrays[0], node.consts["weights"], skip=skip, **kw)]

    def kernel(self, node, ins):
        kw = self._params(node, ins)
        return _core.BConv2D(node.consts["weights"], in_hw=ins[0].shape[:2],
                             has_skip=len(node.inputs) == 2, **kw)

    def cost(self, node, ins, outs):
        w = node.consts["weights"]
        oh, ow, cout = outs[0].shape
        return _macs(binary=oh * ow * cout * w.shape[1] * w.shape[2] * node.attrs["cin"])


class Conv2DInt8(Op):
    name = "conv2d_int8"
    n_inputs = (1, 2)
    skip_last = True

    def infer(self, node, ins):
        spec = _input(node, ins, 0, ["int8"])
        w = node.consts.get("weights")
        if w is None or w.dtype != np.int8 or w.ndim != 4 or w.shape[3] != spec.channels:
            _fail(node, f"weights must be int8 (Cout, kh, kw, {spec.channels}), got "
                  f"{None if w is None else (w.dtype, w.shape)}")
        cout, kh, kw_ = (int(d) for d in w.shape[:3])
        output = _choice(node, "output", ("int32", "int8"))
        _, _, _, oh, ow = _window(node, spec, (kh, kw_))
        _epilogue(node, cout, output, len(node.inputs), int32_bias=True)
        out = TensorSpec((oh, ow, cout), output)
        if len(node.inputs) == 2:
            skip = _input(node, ins, 1, ["int8"])
            if skip.shape != out.shape:
                _fail(node, f"skip input {skip} does not match the output {out}")
        return [out]

    def _params(self, node, ins):
        w = node.consts["weights"]
        strides, dilations, pads, _, _ = _window(node, ins[0], w.shape[1:3])
        kw = _epilogue(node, w.shape[0], node.attrs["output"], len(node.inputs), int32_bias=True)
        kw.update(strides=strides, dilations=dilations, pads=pads)
        return kw

    def reference(self, node, ins, arrays):
        kw = self._params(node, ins)
        skip = arrays[1] if len(arrays) > 1 else None
        return [ref.conv2d_int8(arrays[0], node.consts["weights"], skip=skip, **kw)]

    def kernel(self, node, ins):
        kw = self._params(node, ins)
        return _core.Conv2DInt8(node.consts["weights"], in_hw=ins[0].shape[:2],
                                has_skip=len(node.inputs) == 2, **kw)

    def cost(self, node, ins, outs):
        w = node.consts["weights"]
        oh, ow, cout = outs[0].shape
        return _macs(int8=oh * ow * cout * w.shape[1] * w.shape[2] * w.shape[3])


class MaxPool(Op):
    name = "maxpool"

    def precision_of(self, ins):
        return "binary" if ins[0].dtype == "bits" else "int8"

    def infer(self, node, ins):
        spec = _input(node, ins, 0, ["int8", "bits"])
        kernel = _ints(node, "kernel", 2, minimum=1)
        _, _, _, oh, ow = _window(node, spec, kernel)
        return [TensorSpec((oh, ow, spec.channels), spec.dtype)]

    def _params(self, node, ins):
        kernel = _ints(node, "kernel", 2, minimum=1)
        strides, _, pads, _, _ = _window(node, ins[0], kernel)
        channels = ins[0].channels if ins[0].dtype == "bits" else None
        return dict(kernel=kernel, strides=strides, pads=pads, channels=channels)

    def reference(self, node, ins, arrays):
        return [ref.maxpool(arrays[0], **self._params(node, ins))]

    def kernel(self, node, ins):
        return _core.Pool(in_hw=ins[0].shape[:2], **self._params(node, ins))


class GlobalAvgPool(Op):
    name = "global_avgpool"

    def infer(self, node, ins):
        spec = _input(node, ins, 0, ["int8"])
        _int(node, "multiplier", lo=-2**31, hi=2**31 - 1)
        _int(node, "shift", lo=0, hi=62)
        _clamp(node)
        return [TensorSpec((1, 1, spec.channels), "int8")]

    def _params(self, node):
        return dict(multiplier=node.attrs["multiplier"], shift=node.attrs["shift"], clamp=_clamp(node))

    def reference(self, node, ins, arrays):
        return [ref.global_avgpool(arrays[0], **self._params(node))]

    def kernel(self, node, ins):
        return _core.GlobalAvgPool(**self._params(node))


# --------------------------------------------------------------------------
# float ops: the non-binary layers of imported Larq/TFLite models. Their
# kernels are the reference functions themselves (numpy and BLAS), written
# into the planned output buffer.


def _activation_attr(node: Node) -> str:
    return _choice(node, "activation", tuple(ref.ACTIVATIONS), default="none")


class _ReferenceOp(Op):
    """An op whose reference function (``bnnrt.reference.<name>``) takes the
    attributes listed in ``attr_keys``; unless a subclass builds a compiled
    kernel, the kernel runs that function into the planned output."""

    #: attribute keys passed to the reference function (validated by infer)
    attr_keys: tuple[str, ...] = ()

    def _kwargs(self, node, ins):
        return {k: node.attrs[k] for k in self.attr_keys if k in node.attrs}

    def reference(self, node, ins, arrays):
        return [getattr(ref, self.name)(*arrays, **self._kwargs(node, ins))]

    def kernel(self, node, ins):
        fn, kw = getattr(ref, self.name), self._kwargs(node, ins)

        def run(*arrays):
            arrays[-1][...] = fn(*arrays[:-1], **kw)
        return NumpyKernel(run)


class _FloatOp(_ReferenceOp):
    precision = "float"


class Activation(_FloatOp):
    name = "activation"

    def infer(self, node, ins):
        spec = _input(node, ins, 0, ["float32"])
        _choice(node, "kind", tuple(ref.ACTIVATIONS))
        return [spec]

    def _kwargs(self, node, ins):
        return {"kind": node.attrs["kind"]}


class Conv2DFloat(_FloatOp):
    name = "conv2d_float"

    def infer(self, node, ins):
        spec = _input(node, ins, 0, ["float32"])
        w = _const(node, "weights", np.float32)
        if w.ndim != 4:
            _fail(node, f"weights must be float32 (Cout, kh, kw, Cin/groups), got shape {w.shape}")
        groups = _int(node, "groups", default=1, lo=1, hi=MAX_DIM)
        cout = int(w.shape[0])
        if spec.channels != groups * w.shape[3] or cout % groups:
            _fail(node, f"weights {w.shape} with groups={groups} do not fit the input {spec}")
        _const(node, "bias", np.float32, (cout,), optional=True)
        _activation_attr(node)
        _, _, _, oh, ow = _window(node, spec, w.shape[1:3])
        return [TensorSpec((oh, ow, cout), "float32")]

    def _kwargs(self, node, ins):
        w = node.consts["weights"]
        strides, dilations, pads, _, _ = _window(node, ins[0], w.shape[1:3])
        return dict(weights=w, bias=node.consts.get("bias"), strides=strides, dilations=dilations,
                    pads=pads, groups=node.attrs.get("groups", 1), activation=_activation_attr(node))

    #: The direct kernel streams every weight once per block of pixels; past
    #: a few MB they no longer stay in cache and a blocked GEMM wins
    #: (benchmarks/float_conv_vs_blas.py: 3x3x512->512, 9 MB, 0.73x).
    DIRECT_MAX_WEIGHT_BYTES = 4 << 20

    def kernel(self, node, ins):
        # Dense and depthwise convs run the direct C kernel (register-blocked
        # FMA, bnn_fconv.c): against numpy's im2col + single-threaded OpenBLAS
        # (benchmarks/float_conv_vs_blas.py) 1.3-15x faster on the stems, 1x1
        # shortcuts, transitions and dense heads of the zoo models, and it
        # runs on Model.threads. Grouped convs, activations that are not a
        # clamp (tanh, logistic) and very large filters take the numpy path.
        kw = self._kwargs(node, ins)
        w = kw["weights"]
        direct = (kw["groups"] == 1 or w.shape[3] == 1) and w.nbytes <= self.DIRECT_MAX_WEIGHT_BYTES
        if direct and kw["activation"] in _core.FLOAT_CLAMPS:
            return _core.FloatConv(w, kw["bias"], in_hw=ins[0].shape[:2], strides=kw["strides"],
                                   dilations=kw["dilations"], pads=kw["pads"], groups=kw["groups"],
                                   activation=kw["activation"])
        return super().kernel(node, ins)

    def cost(self, node, ins, outs):
        w = node.consts["weights"]
        return _macs(float_=int(np.prod(outs[0].shape)) * int(np.prod(w.shape[1:])))


class BConv2DFloat(_FloatOp):
    """A binary conv with LCE's float epilogue (clamp y, then multiplier and
    bias), and optionally the float residual add that follows it in Larq
    models (a second input, added last: exactly the separate ADD)."""

    name = "bconv2d_float"
    precision = "binary"
    n_inputs = (1, 2)
    skip_last = True

    def infer(self, node, ins):
        spec = _input(node, ins, 0, ["bits"])
        cin = _int(node, "cin", lo=1, hi=MAX_DIM)
        if cin != spec.channels:
            _fail(node, f"attribute cin={cin} but the input has {spec.channels} channels")
        w = node.consts.get("weights")
        if w is None or w.dtype != np.uint8 or w.ndim != 4 or w.shape[3] != packed_bytes(cin):
            _fail(node, f"weights must be uint8 (Cout, kh, kw, {packed_bytes(cin)}), got "
                  f"{None if w is None else (w.dtype, w.shape)}")
        cout = int(w.shape[0])
        _choice(node, "pad_value", (0, 1), default=1)
        _const(node, "multiplier", np.float32, (cout,))
        _const(node, "bias", np.float32, (cout,))
        _choice(node, "activation", ("none", "relu", "relu6", "relu_n1_to_1"), default="none")
        clamp = node.attrs.get("clamp")
        if clamp is not None:
            if (not isinstance(clamp, (list, tuple)) or len(clamp) != 2
                    or not all(isinstance(v, int) and not isinstance(v, bool) for v in clamp)
                    or not -2**31 <= clamp[0] <= clamp[1] <= 2**31 - 1):
                _fail(node, f"clamp must be two int32 [lo, hi] with lo <= hi, got {clamp!r}")
        _, _, _, oh, ow = _window(node, spec, w.shape[1:3])
        out = TensorSpec((oh, ow, cout), "float32")
        if len(node.inputs) == 2:
            skip = _input(node, ins, 1, ["float32"])
            if skip.shape != out.shape:
                _fail(node, f"skip input {skip} does not match the output {out}")
        return [out]

    def reference(self, node, ins, arrays):
        skip = arrays[1] if len(arrays) > 1 else None
        return [ref.bconv2d_float(arrays[0], skip=skip, **self._kwargs(node, ins))]

    def _kwargs(self, node, ins):
        w = node.consts["weights"]
        strides, dilations, pads, _, _ = _window(node, ins[0], w.shape[1:3])
        clamp = node.attrs.get("clamp")
        return dict(weights=w, cin=node.attrs["cin"], multiplier=node.consts["multiplier"],
                    bias=node.consts["bias"], strides=strides, dilations=dilations, pads=pads,
                    pad_value=node.attrs.get("pad_value", 1),
                    clamp=None if clamp is None else tuple(clamp),
                    activation=node.attrs.get("activation", "none"))

    def kernel(self, node, ins):
        kw = self._kwargs(node, ins)
        return _core.BConv2D(kw["weights"], in_hw=ins[0].shape[:2], cin=kw["cin"],
                             strides=kw["strides"], dilations=kw["dilations"], pads=kw["pads"],
                             pad_value=kw["pad_value"], output="float32",
                             float_multiplier=kw["multiplier"], float_bias=kw["bias"],
                             y_clamp=kw["clamp"], activation=kw["activation"],
                             has_skip=len(node.inputs) == 2)

    def cost(self, node, ins, outs):
        w = node.consts["weights"]
        oh, ow, cout = outs[0].shape
        return _macs(binary=oh * ow * cout * w.shape[1] * w.shape[2] * node.attrs["cin"])


class _Elementwise(_FloatOp):
    """a (op) b: b is the second input, or the constant ``operand`` broadcast
    over the input (shape (C,), (1,) or the input's own shape)."""

    n_inputs = (1, 2)

    def infer(self, node, ins):
        a = _input(node, ins, 0, ["float32"])
        if len(node.inputs) == 2:
            b = _input(node, ins, 1, ["float32"])
            if a.shape != b.shape:
                _fail(node, f"operands {a} and {b} differ in shape")
            if "operand" in node.consts:
                _fail(node, "takes a second input or a constant operand, not both")
        else:
            c = _const(node, "operand", np.float32)
            if c.shape not in ((1,), (a.channels,), tuple(a.shape)):
                _fail(node, f"constant operand of shape {c.shape} does not broadcast over {a}")
        _activation_attr(node)
        return [a]

    def _kwargs(self, node, ins):
        return {"activation": _activation_attr(node)}

    def reference(self, node, ins, arrays):
        operands = arrays if len(arrays) == 2 else [arrays[0], node.consts["operand"]]
        return [getattr(ref, self.name)(*operands, **self._kwargs(node, ins))]

    def kernel(self, node, ins):
        fn, kw = getattr(ref, self.name), self._kwargs(node, ins)
        const = node.consts.get("operand")

        def run(*arrays):
            operands = arrays[:-1] if const is None else (arrays[0], const)
            arrays[-1][...] = fn(*operands, **kw)
        return NumpyKernel(run)


class AddFloat(_Elementwise):
    name = "add_float"


class MulFloat(_Elementwise):
    name = "mul_float"


class PadFloat(_FloatOp):
    name = "pad_float"
    precision = "none"
    attr_keys = ("pads", "value")

    def infer(self, node, ins):
        spec = _input(node, ins, 0, ["float32"])
        top, bottom, left, right = _ints(node, "pads", 4, minimum=0)
        value = node.attrs.get("value", 0.0)
        if not isinstance(value, (int, float)) or not np.isfinite(value):
            _fail(node, f"pad value must be a finite number, got {value!r}")
        h, w, c = spec.shape
        return [TensorSpec((h + top + bottom, w + left + right, c), "float32")]


class _PoolFloat(_FloatOp):
    attr_keys = ("kernel", "strides", "pads")

    def infer(self, node, ins):
        spec = _input(node, ins, 0, ["float32"])
        kernel = _ints(node, "kernel", 2, minimum=1)
        _, _, _, oh, ow = _window(node, spec, kernel)
        return [TensorSpec((oh, ow, spec.channels), "float32")]


class MaxPoolFloat(_PoolFloat):
    name = "maxpool_float"
    average = False

    def kernel(self, node, ins):
        kw = self._kwargs(node, ins)
        return _core.Pool(in_hw=ins[0].shape[:2], dtype="float32", average=self.average, **kw)


class AvgPoolFloat(MaxPoolFloat):
    name = "avgpool_float"
    average = True


class MeanFloat(_FloatOp):
    name = "mean_float"

    def infer(self, node, ins):
        spec = _input(node, ins, 0, ["float32"])
        return [TensorSpec((1, 1, spec.channels), "float32")]


class Reshape(_FloatOp):
    name = "reshape"
    precision = "none"
    attr_keys = ("shape",)

    def infer(self, node, ins):
        spec = _input(node, ins, 0, ["float32", "int8", "int32"])
        shape = _ints(node, "shape", 3, minimum=1)
        if int(np.prod(shape)) != int(np.prod(spec.shape)):
            _fail(node, f"cannot reshape {spec} to {list(shape)}")
        return [TensorSpec(tuple(shape), spec.dtype)]


class Concat(_FloatOp):
    name = "concat"
    precision = "none"
    n_inputs = (1, 64)

    def infer(self, node, ins):
        specs = [_input(node, ins, i, ["float32", "int8", "bits"]) for i in range(len(node.inputs))]
        if len({s.dtype for s in specs}) != 1 or len({s.shape[:2] for s in specs}) != 1:
            _fail(node, f"cannot concatenate {', '.join(map(str, specs))} along channels")
        if specs[0].dtype == "bits" and any(s.channels % 8 for s in specs[:-1]):
            _fail(node, f"bit tensors concatenate whole bytes: {', '.join(map(str, specs))}")
        return [TensorSpec(specs[0].shape[:2] + (sum(s.channels for s in specs),), specs[0].dtype)]


class SliceChannels(_FloatOp):
    name = "slice_channels"
    precision = "none"
    attr_keys = ("start", "stop")

    def infer(self, node, ins):
        spec = _input(node, ins, 0, ["float32", "int8", "bits"])
        start = _int(node, "start", lo=0, hi=spec.channels - 1)
        stop = _int(node, "stop", lo=start + 1, hi=spec.channels)
        if spec.dtype == "bits" and start % 8:
            _fail(node, f"a bit tensor slices whole bytes: start {start} is not a multiple of 8")
        return [TensorSpec(spec.shape[:2] + (stop - start,), spec.dtype)]


# --------------------------------------------------------------------------
# TFLite integer ops: the int8 layers of int8 models imported from LCE/TFLite
# files. Their tensors carry a zero point and TFLite rounds twice
# (reference.tfl_multiply), unlike bnnrt's own symmetric, single-rounding int8
# ops above; hence ops of their own, named tfl_*, with every TFLite constant
# explicit (zero points, multipliers and shifts in TFLite's sign convention).
# Their kernels are numpy in exact integer arithmetic.

#: TFLite's QuantizeMultiplier yields shifts in this range (shift > 0: left).
TFL_SHIFT = (-31, 30)


def _zero_point(node: Node, key: str) -> int:
    return _int(node, key, lo=INT8_RANGE[0], hi=INT8_RANGE[1])


def _multiplier(node: Node, key: str, shift_key: str) -> tuple[int, int]:
    return (_int(node, key, lo=0, hi=2**31 - 1), _int(node, shift_key, lo=TFL_SHIFT[0], hi=TFL_SHIFT[1]))


def _scale(node: Node, key: str = "scale") -> float:
    value = node.attrs.get(key)
    if (not isinstance(value, (int, float)) or isinstance(value, bool) or not np.isfinite(value)
            or not value > 0):
        _fail(node, f"attribute {key!r} must be a positive number, got {value!r}")
    return float(value)


class _TflOp(_ReferenceOp):
    """A TFLite integer op whose kernel is its reference function (numpy,
    exact integers) written into the planned output."""

    def _kwargs(self, node, ins):
        kw = super()._kwargs(node, ins)
        if "clamp" in self.attr_keys:
            kw["clamp"] = _clamp(node)
        return kw


class _TflScaleOp(_TflOp):
    """float32 <-> int8 with one scale and zero point (TFLite's QUANTIZE and
    DEQUANTIZE)."""
    precision = "float"
    attr_keys = ("scale", "zero_point")
    dtypes = ("float32", "int8")        # (input, output)

    def infer(self, node, ins):
        spec = _input(node, ins, 0, [self.dtypes[0]])
        _scale(node)
        _zero_point(node, "zero_point")
        return [TensorSpec(spec.shape, self.dtypes[1])]


class TflQuantize(_TflScaleOp):
    name = "tfl_quantize"


class TflDequantize(_TflScaleOp):
    name = "tfl_dequantize"
    dtypes = ("int8", "float32")


class TflRequantize(_TflOp):
    name = "tfl_requantize"
    attr_keys = ("multiplier", "shift", "in_zero_point", "out_zero_point")

    def infer(self, node, ins):
        spec = _input(node, ins, 0, ["int8"])
        _multiplier(node, "multiplier", "shift")
        _zero_point(node, "in_zero_point")
        _zero_point(node, "out_zero_point")
        return [spec]


class TflConv2D(Op):
    """CONV_2D, DEPTHWISE_CONV_2D (groups = Cin) and FULLY_CONNECTED (1x1)."""

    name = "tfl_conv2d"

    def infer(self, node, ins):
        spec = _input(node, ins, 0, ["int8"])
        w = _const(node, "weights", np.int8)
        if w.ndim != 4:
            _fail(node, f"weights must be int8 (Cout, kh, kw, Cin/groups), got shape {w.shape}")
        groups = _int(node, "groups", default=1, lo=1, hi=MAX_DIM)
        cout = int(w.shape[0])
        if spec.channels != groups * w.shape[3] or cout % groups:
            _fail(node, f"weights {w.shape} with groups={groups} do not fit the input {spec}")
        _const(node, "bias", np.int32, (cout,))
        m = _const(node, "multiplier", np.int32, (cout,))
        s = _const(node, "shift", np.int8, (cout,))
        if m.min() < 0:
            _fail(node, "multipliers must be non-negative (TFLite's QuantizeMultiplier)")
        if s.min() < TFL_SHIFT[0] or s.max() > TFL_SHIFT[1]:
            _fail(node, f"shifts must lie in {list(TFL_SHIFT)}")
        _zero_point(node, "in_zero_point")
        _zero_point(node, "out_zero_point")
        _choice(node, "rounding", ("double", "ruy", "single"), default="double")
        _clamp(node)
        _, _, _, oh, ow = _window(node, spec, w.shape[1:3])
        return [TensorSpec((oh, ow, cout), "int8")]

    def _kwargs(self, node, ins):
        w = node.consts["weights"]
        strides, dilations, pads, _, _ = _window(node, ins[0], w.shape[1:3])
        a = node.attrs
        return dict(bias=node.consts["bias"], multiplier=node.consts["multiplier"], shift=node.consts["shift"],
                    in_zero_point=a["in_zero_point"], out_zero_point=a["out_zero_point"], strides=strides,
                    dilations=dilations, pads=pads, groups=a.get("groups", 1), clamp=_clamp(node),
                    rounding=a.get("rounding", "double"))

    def reference(self, node, ins, arrays):
        return [ref.tfl_conv2d(arrays[0], node.consts["weights"], **self._kwargs(node, ins))]

    def kernel(self, node, ins):
        """im2col and one matrix product per group, in float64: exact, since
        |acc| <= 255 * 128 * K stays far below 2**53 for any K <= MAX_DIM**2."""
        kw = self._kwargs(node, ins)
        w = node.consts["weights"]
        cout, kh, kw_, cin_g = w.shape
        groups, zp = kw["groups"], kw["in_zero_point"]
        per_group = cout // groups
        strides, dilations, pads = kw["strides"], kw["dilations"], kw["pads"]
        oh, ow = conv_geometry(ins[0].shape[:2], (kh, kw_), strides, dilations, pads)
        depthwise = cin_g == 1 and groups > 1
        if depthwise:   # (kh*kw, Cout): a multiply-add per tap
            wmat = w.reshape(cout, kh * kw_).T.astype(np.float64)
        else:           # per group (K, Cout/groups), K in (ky, kx, c) order as the im2col rows
            wmat = [w[g * per_group:(g + 1) * per_group].reshape(per_group, -1).T.astype(np.float64)
                    for g in range(groups)]
        bias = kw["bias"].astype(np.int64)
        top, _, left, _ = pads
        sh, sw = strides
        dh, dw = dilations

        def run(x, out):
            n = x.shape[0]
            # padded taps hold the zero point: they add (zp - zp) * w = 0
            xp = np.full((n, ins[0].shape[0] + pads[0] + pads[1], ins[0].shape[1] + pads[2] + pads[3],
                          ins[0].shape[2]), zp, np.float64)
            xp[:, top:top + x.shape[1], left:left + x.shape[2]] = x
            xp -= zp
            taps = [xp[:, ky * dh:ky * dh + sh * (oh - 1) + 1:sh, kx * dw:kx * dw + sw * (ow - 1) + 1:sw]
                    for ky in range(kh) for kx in range(kw_)]
            if depthwise:
                acc = np.zeros((n, oh, ow, cout), np.float64)
                for t, tap in enumerate(taps):
                    acc += (tap if per_group == 1 else np.repeat(tap, per_group, axis=-1)) * wmat[t]
            else:
                parts = []
                for g in range(groups):
                    cols = np.concatenate([t[..., g * cin_g:(g + 1) * cin_g] for t in taps], axis=-1)
                    parts.append(cols.reshape(-1, kh * kw_ * cin_g) @ wmat[g])
                acc = (parts[0] if groups == 1 else np.concatenate(parts, axis=-1)).reshape(n, oh, ow, cout)
            total = acc.astype(np.int64) + bias
            y = ref._tfl_rescale(total, kw["multiplier"], kw["shift"], kw["rounding"]) + kw["out_zero_point"]
            np.clip(y, kw["clamp"][0], kw["clamp"][1], out=y)
            out[...] = y
        return NumpyKernel(run)

    def cost(self, node, ins, outs):
        w = node.consts["weights"]
        return _macs(int8=int(np.prod(outs[0].shape)) * int(np.prod(w.shape[1:])))


class _TflBinary(_TflOp):
    """a (op) b on int8: b is the second input or the constant int8
    ``operand`` ((C,), (1,) or the input's shape, broadcast as TFLite does)."""

    n_inputs = (1, 2)

    def infer(self, node, ins):
        a = _input(node, ins, 0, ["int8"])
        if len(node.inputs) == 2:
            b = _input(node, ins, 1, ["int8"])
            if a.shape != b.shape:
                _fail(node, f"operands {a} and {b} differ in shape")
            if "operand" in node.consts:
                _fail(node, "takes a second input or a constant operand, not both")
        else:
            c = _const(node, "operand", np.int8)
            if c.shape not in ((1,), (a.channels,), tuple(a.shape)):
                _fail(node, f"constant operand of shape {c.shape} does not broadcast over {a}")
        for key in ("a_zero_point", "b_zero_point", "out_zero_point"):
            _zero_point(node, key)
        self.check_multipliers(node)
        _clamp(node)
        return [a]

    def _operands(self, node, arrays):
        return list(arrays) if len(arrays) == 2 else [arrays[0], node.consts["operand"]]

    def reference(self, node, ins, arrays):
        return [getattr(ref, self.name)(*self._operands(node, arrays), **self._kwargs(node, ins))]

    def kernel(self, node, ins):
        fn, kw = getattr(ref, self.name), self._kwargs(node, ins)
        const = node.consts.get("operand")

        def run(*arrays):
            operands = arrays[:-1] if const is None else (arrays[0], const)
            arrays[-1][...] = fn(*operands, **kw)
        return NumpyKernel(run)


class TflAdd(_TflBinary):
    name = "tfl_add"
    attr_keys = ("a_zero_point", "b_zero_point", "out_zero_point", "left_shift", "a_multiplier", "a_shift",
                 "b_multiplier", "b_shift", "out_multiplier", "out_shift", "clamp")

    def check_multipliers(self, node):
        _int(node, "left_shift", lo=0, hi=20)
        for side in ("a", "b", "out"):
            _multiplier(node, f"{side}_multiplier", f"{side}_shift")


class TflMul(_TflBinary):
    name = "tfl_mul"
    attr_keys = ("a_zero_point", "b_zero_point", "out_zero_point", "multiplier", "shift", "clamp")

    def check_multipliers(self, node):
        _multiplier(node, "multiplier", "shift")


class TflAvgPool(_TflOp):
    name = "tfl_avgpool"
    attr_keys = ("kernel", "strides", "pads", "clamp")

    def infer(self, node, ins):
        spec = _input(node, ins, 0, ["int8"])
        kernel = _ints(node, "kernel", 2, minimum=1)
        _, _, _, oh, ow = _window(node, spec, kernel)
        _clamp(node)
        return [TensorSpec((oh, ow, spec.channels), "int8")]


class TflMean(_TflOp):
    name = "tfl_mean"
    attr_keys = ("multiplier", "shift", "input_zero_point", "output_zero_point", "clamp")

    def infer(self, node, ins):
        spec = _input(node, ins, 0, ["int8"])
        _multiplier(node, "multiplier", "shift")
        _zero_point(node, "input_zero_point")
        _zero_point(node, "output_zero_point")
        _clamp(node)
        if spec.shape[0] * spec.shape[1] > 1 << 23:
            _fail(node, f"averages {spec.shape[0]}x{spec.shape[1]} pixels: the int32 sum could overflow")
        return [TensorSpec((1, 1, spec.channels), "int8")]


class TflPad(_TflOp):
    name = "tfl_pad"
    precision = "none"
    attr_keys = ("pads", "value")

    def infer(self, node, ins):
        spec = _input(node, ins, 0, ["int8"])
        top, bottom, left, right = _ints(node, "pads", 4, minimum=0)
        _zero_point(node, "value")
        h, w, c = spec.shape
        return [TensorSpec((h + top + bottom, w + left + right, c), "int8")]


class TflSoftmax(_TflOp):
    name = "tfl_softmax"
    attr_keys = ("scale", "zero_point")

    def infer(self, node, ins):
        spec = _input(node, ins, 0, ["int8"])
        t = _const(node, "table", np.float32, (256,))
        if not (np.all(np.isfinite(t)) and np.all(t >= 0)):
            _fail(node, "the exp table must hold finite non-negative values")
        _scale(node)
        _zero_point(node, "zero_point")
        return [spec]

    def _kwargs(self, node, ins):
        return dict(super()._kwargs(node, ins), table=node.consts["table"])


#: op name -> Op. The one table the planner, the file reader and the
#: converters consult.
OPS: dict[str, Op] = {op.name: op for op in (
    Quantize(), Dequantize(), Softmax(), Flatten(), SignBits(), Binarize(), AddInt8(),
    BConv2D(), Conv2DInt8(), MaxPool(), GlobalAvgPool(),
    Activation(), Conv2DFloat(), BConv2DFloat(), AddFloat(), MulFloat(), PadFloat(),
    MaxPoolFloat(), AvgPoolFloat(), MeanFloat(), Reshape(), Concat(), SliceChannels(),
    TflQuantize(), TflDequantize(), TflRequantize(), TflConv2D(), TflAdd(), TflMul(), TflAvgPool(),
    TflMean(), TflPad(), TflSoftmax(),
)}

# Every op has its reference definition, under the same name (style.md, 5: the
# op table and the oracle cannot drift apart).
assert all(callable(getattr(ref, name, None)) for name in OPS), \
    sorted(n for n in OPS if not callable(getattr(ref, n, None)))


def get_op(node: Node) -> Op:
    op = OPS.get(node.op)
    if op is None:
        from .errors import UnsupportedOpError
        raise UnsupportedOpError(f"{node.where()}: unknown op {node.op!r}; bnnrt knows {sorted(OPS)}")
    op.check_arity(node)
    return op
