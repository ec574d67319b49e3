"""LCE / TFLite flatbuffer -> bnnrt graph.

Reads a ``.tflite`` file written by Larq Compute Engine's converter (its
custom ops LceQuantize, LceBconv2d, LceBMaxPool2d, LceDequantize, options as
FlexBuffers) and the builtin float ops Larq models convert to, and writes the
equivalent bnnrt graph. The flatbuffer reader (the ``tflite`` package, with
``flatbuffers`` for the FlexBuffer options) is an optional dependency imported
here only.

What maps to what (docs/tflite.md has the full table):

* LCE bit tensors are int32 words, 32 channels each, LSB first, bit 1 = -1:
  the same bit order as bnnrt's bytes, so packed weights convert by taking the
  first ceil(C/8) bytes of each tap's words.
* ``LceBconv2d`` with a bitpacked output (-1 iff popcount > threshold) becomes
  ``bconv2d`` with output bits (+1 iff y >= K - 2 * threshold); with a float
  output, ``bconv2d_float`` (LCE's epilogue: clamp y by the fused activation,
  then multiplier and bias).
* Float layers become bnnrt's float ops (``conv2d_float`` etc.).
* int8 layers (files converted with ``inference_input_type=tf.int8``) become
  the ``tfl_*`` ops, which reproduce TFLite's integer kernels bit for bit
  (zero points, double rounding); the importer computes their multipliers and
  shifts as TFLite's Prepare does. An int8 input is quantized by the graph's
  first op and int8 outputs are dequantized by its last, so such a model
  takes and returns floats like any other.

Every op the file uses is checked before anything is built: a file with ops
bnnrt lacks raises one :class:`UnsupportedOpError` listing each with its count.
"""

from __future__ import annotations

import collections

import numpy as np

from .. import reference as ref
from .._io import read_bounded
from .._shapes import packed_bytes, same_pads
from ..quant import tflite_multiplier
from ..errors import GraphError, ModelFormatError, UnsupportedOpError
from ..graph import GraphBuilder, TensorSpec
from ..model import Model
from ..passes import fuse_residual_adds, fuse_sign_affines
from ._common import ShapeInference, TensorBindings, check_supported, source_metadata

#: TFLite TensorType -> numpy dtype (the types a Larq model's tensors have).
_TENSOR_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8}
_TYPE_NAMES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 9: "int8"}

#: TFLite ActivationFunctionType -> bnnrt activation name.
_ACTIVATIONS = {0: "none", 1: "relu", 2: "relu_n1_to_1", 3: "relu6", 4: "tanh"}

#: The same fused activations as a clamp of an integer (LCE applies them to y).
_Y_CLAMPS = {0: None, 1: (0, 2**31 - 1), 2: (-1, 1), 3: (0, 6)}

#: Reading a file larger than this is refused (Larq's largest zoo model is ~30 MB;
#: see bnnrt._io for what else the reader refuses).
MAX_FILE_BYTES = 1 << 30


def _import_reader():
    try:
        import tflite
        from flatbuffers import flexbuffers
    except ImportError:
        raise ImportError("reading .tflite files needs the flatbuffer reader: "
                          "pip install 'bnnrt[tflite]' (the tflite and flatbuffers packages)") from None
    return tflite, flexbuffers


class _Tensor:
    """What the converter knows of one TFLite tensor."""

    def __init__(self, index, name, shape, type_code, data, scale=None, zero_point=None, axis=0):
        self.index, self.name, self.shape, self.type_code, self.data = index, name, shape, type_code, data
        #: TFLite's affine quantization (float32 scales, int64 zero points; per
        #: channel along ``axis``, the quantized dimension, for int8 weights), or None
        self.scale, self.zero_point, self.axis = scale, zero_point, axis

    @property
    def type_name(self):
        return _TYPE_NAMES.get(self.type_code, f"type {self.type_code}")

    def __str__(self):
        return f"{self.name!r} {self.type_name}{list(self.shape)}"


class _File:
    """The parts of a .tflite flatbuffer the importer reads: subgraph 0's
    tensors (with constant data), operators with their codes and options."""

    def __init__(self, data: bytes, name: str):
        tflite, flexbuffers = _import_reader()
        self._tflite, self._flex, self.name = tflite, flexbuffers, name
        if len(data) < 8 or data[4:8] != b"TFL3":
            raise ModelFormatError(f"{name}: not a TFLite flatbuffer (no 'TFL3' identifier)")
        try:
            self.model = tflite.Model.GetRootAsModel(data, 0)
            if self.model.SubgraphsLength() < 1:
                raise ModelFormatError(f"{name}: the file has no subgraph")
            self.graph = self.model.Subgraphs(0)
            self.codes = [self._code_name(self.model.OperatorCodes(i))
                          for i in range(self.model.OperatorCodesLength())]
            self.tensors = [self._tensor(i) for i in range(self.graph.TensorsLength())]
            self.ops = [self.graph.Operators(i) for i in range(self.graph.OperatorsLength())]
            # names and tensor lists of every operator, read (and checked) now
            self._names = [self._op_name(op) for op in self.ops]
            self._io = [self._op_io(op) for op in self.ops]
            #: constant-only subgraphs computed at import (fold_constants): tensor -> value, and the ops
            self.folded: dict[int, np.ndarray] = {}
            self.folded_ops: set[int] = set()
            self.inputs = [int(i) for i in self.graph.InputsAsNumpy()] if self.graph.InputsLength() else []
            self.outputs = [int(i) for i in self.graph.OutputsAsNumpy()] if self.graph.OutputsLength() else []
            for i in self.inputs + self.outputs:
                if not 0 <= i < len(self.tensors):
                    raise ModelFormatError(f"{name}: graph input/output {i} is not one of the "
                                           f"{len(self.tensors)} tensors")
        except ModelFormatError:
            raise
        except Exception as e:  # a malformed flatbuffer surfaces as any exception from the reader
            raise ModelFormatError(f"{name}: malformed TFLite flatbuffer ({type(e).__name__}: {e})") from None

    def _code_name(self, oc) -> str:
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        if code == self._tflite.BuiltinOperator.CUSTOM:
            return (oc.CustomCode() or b"").decode("utf-8", "replace")
        names = {v: k for k, v in vars(self._tflite.BuiltinOperator).items() if not k.startswith("_")}
        return names.get(code, f"BUILTIN_{code}")

    def _tensor(self, i) -> _Tensor:
        t = self.graph.Tensors(i)
        shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        data = None
        if t.Buffer() < self.model.BuffersLength():
            buf = self.model.Buffers(t.Buffer())
            if buf.DataLength():
                dtype = _TENSOR_TYPES.get(t.Type())
                raw = buf.DataAsNumpy().tobytes()
                if dtype is not None:
                    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
                    if count * np.dtype(dtype).itemsize != len(raw):
                        raise ModelFormatError(f"{self.name}: constant tensor {i} holds {len(raw)} bytes, "
                                               f"not {count} x {np.dtype(dtype).name}")
                    data = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)
        name = (t.Name() or b"").decode("utf-8", "replace")
        scale = zero_point = None
        q = t.Quantization()
        if q is not None and q.ScaleLength():
            scale = np.array(q.ScaleAsNumpy(), dtype=np.float32)
            zero_point = (np.array(q.ZeroPointAsNumpy(), dtype=np.int64) if q.ZeroPointLength()
                          else np.zeros(scale.shape, np.int64))
            if zero_point.shape != scale.shape:
                raise ModelFormatError(f"{self.name}: tensor {i} has {scale.size} scales and "
                                       f"{zero_point.size} zero points")
            return _Tensor(i, name, shape, t.Type(), data, scale, zero_point, int(q.QuantizedDimension()))
        return _Tensor(i, name, shape, t.Type(), data)

    def op_name(self, op) -> str:
        return self._names[self.ops.index(op)] if not isinstance(op, int) else self._names[op]

    def op_io(self, op):
        return self._io[self.ops.index(op)] if not isinstance(op, int) else self._io[op]

    def _op_name(self, op) -> str:
        idx = op.OpcodeIndex()
        if idx >= len(self.codes):
            raise ModelFormatError(f"{self.name}: operator code {idx} out of range")
        return self.codes[idx]

    def _op_io(self, op):
        ins = [int(i) for i in op.InputsAsNumpy()] if op.InputsLength() else []
        outs = [int(i) for i in op.OutputsAsNumpy()] if op.OutputsLength() else []
        for i in ins + outs:
            if not -1 <= i < len(self.tensors) or (i == -1 and i in outs):
                raise ModelFormatError(f"{self.name}: operator refers to tensor {i} of {len(self.tensors)}")
        return ins, outs

    def custom_options(self, op) -> dict:
        if not op.CustomOptionsLength():
            return {}
        try:
            opts = self._flex.Loads(bytes(op.CustomOptionsAsNumpy()))
        except Exception as e:
            raise ModelFormatError(f"{self.name}: unreadable custom options ({e})") from None
        if not isinstance(opts, dict):
            raise ModelFormatError(f"{self.name}: custom options are not a map")
        return opts

    def builtin_options(self, op, cls_name):
        """The op's builtin options table as the tflite package's class ``cls_name``."""
        table = op.BuiltinOptions()
        if table is None:
            return None
        opts = getattr(self._tflite, cls_name)()
        opts.Init(table.Bytes, table.Pos)
        return opts


class _Importer:
    """Walks the operators in file order (TFLite stores them topologically),
    mapping each TFLite tensor to a bnnrt tensor name and spec."""

    def __init__(self, f: _File):
        self.f = f
        self.b = GraphBuilder()
        self.consts: dict[int, np.ndarray] = {t.index: t.data for t in f.tensors if t.data is not None}
        self.consts.update(f.folded)
        #: float tensor -> the bit tensor it is the LceDequantize (+1/-1) of
        self.dequantized: dict[int, int] = {}
        #: tflite tensor index -> (bnnrt tensor name, spec)
        self.bound = TensorBindings(describe=lambda i: str(f.tensors[i]),
                                    spec_of=lambda i, dtype, channels: self.spec_of(f.tensors[i], dtype, channels),
                                    constants=self.consts, fail=self.fail, infer=ShapeInference(self.b).spec)
        # the handlers' vocabulary: im.inp(...), im.out(...), im.bind(...)
        self.bind, self.inp, self.out = self.bound.bind, self.bound.inp, self.bound.out

    # -- helpers
    def where(self, op_name, index):
        return f"{self.f.name}: operator {index} ({op_name})"

    def fail(self, msg):
        raise GraphError(f"{self._where}: {msg}")

    def float_const(self, i, what):
        """A constant read by a float op, as float32. Integer constants with a
        scale (the weights of a hybrid, "dynamic range" quantized file) are
        dequantized, (q - zero_point) * scale along their quantized axis: the
        float math TFLite's hybrid kernels approximate."""
        c = self.const(i, what)
        t = self.f.tensors[i]
        if t.type_code not in (3, 9):           # float32, float16 (DEQUANTIZE folded), int32 biases
            return c.astype(np.float32)
        if t.scale is None:
            self.fail(f"{what} {t} is {t.type_name} without quantization parameters")
        axis = t.axis if t.scale.size > 1 else 0
        if t.scale.size not in (1, c.shape[axis] if c.ndim else 1):
            self.fail(f"{what} {t} has {t.scale.size} scales for its {c.shape[axis]} channels (axis {axis})")
        if not (np.all(np.isfinite(t.scale)) and np.all(t.scale > 0)):
            self.fail(f"{what} {t} has scales that are not positive and finite")
        shape = [1] * c.ndim
        if c.ndim and t.scale.size > 1:
            shape[axis] = t.scale.size
        zp, scale = t.zero_point.reshape(shape), t.scale.astype(np.float32).reshape(shape)
        return ((c.astype(np.int64) - zp).astype(np.float32) * scale).astype(np.float32)

    def options(self, op, cls_name, required=True):
        """The op's builtin options table (``required``: a missing one is refused)."""
        o = self.f.builtin_options(op, cls_name)
        if o is None and required:
            self.fail(f"the operator has no {cls_name} table")
        return o

    def option_int(self, options: dict, key: str, default: int) -> int:
        """An integer of an LCE op's custom options (a FlexBuffer map)."""
        value = options.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(f"custom option {key!r} must be an integer, got {value!r}")
        return value

    def const(self, i, what):
        if i < 0 or i not in self.consts:
            self.fail(f"{what} must be a constant tensor")
        return self.consts[i]

    def spec_of(self, t: _Tensor, dtype, channels=None) -> TensorSpec:
        """The per-sample bnnrt spec of a TFLite activation tensor (batch 1)."""
        shape = t.shape
        if len(shape) == 4:
            n, h, w, c = shape
        elif len(shape) == 2:
            (n, c), h, w = shape, 1, 1
        else:
            self.fail(f"tensor {t} has rank {len(shape)}; bnnrt runs NHWC (rank 4) and (N, C) tensors")
        if n != 1:
            self.fail(f"tensor {t} has batch {n}; LCE models are converted with batch 1")
        if channels is not None and t.type_code == 2 and c != -(-channels // 32):
            self.fail(f"bit tensor {t} holds {c} words of 32 channels, not the {-(-channels // 32)} "
                      f"that {channels} channels take")
        if channels is not None and t.type_code != 2 and c != channels:
            self.fail(f"tensor {t} holds {c} channels, not {channels}")
        return TensorSpec((h, w, channels if channels is not None else c), dtype)

    def _node_name(self, i):
        return self.f.tensors[i].name or f"t{i}"

    def _activation(self, code):
        if code not in _ACTIVATIONS:
            self.fail(f"fused activation {code} is not supported")
        return _ACTIVATIONS[code]

    def _pads(self, padding, in_hw, kernel_hw, strides, dilations):
        """The explicit pads of TFLite's padding code, after checking the window
        (every windowed op passes here)."""
        for what, values in (("strides", strides), ("dilations", dilations), ("kernel", kernel_hw)):
            if len(values) != 2 or not all(isinstance(v, (int, np.integer)) and 1 <= v <= 1 << 16 for v in values):
                self.fail(f"{what} {list(values)} must be two integers from 1 to 65536")
        if padding == 1:     # VALID
            return (0, 0, 0, 0)
        if padding != 0:
            self.fail(f"unknown padding {padding}")
        top, bottom = same_pads(in_hw[0], kernel_hw[0], strides[0], dilations[0])
        left, right = same_pads(in_hw[1], kernel_hw[1], strides[1], dilations[1])
        return (top, bottom, left, right)

    # -- int8 tensors
    def is_int8(self, i) -> bool:
        return i >= 0 and self.f.tensors[i].type_code == 9

    def qparams(self, i) -> tuple[float, int]:
        """(scale, zero point) of a per-tensor quantized int8 tensor."""
        t = self.f.tensors[i]
        if t.scale is None:
            self.fail(f"int8 tensor {t} has no quantization parameters")
        if t.scale.size != 1:
            self.fail(f"int8 tensor {t} is quantized per channel ({t.scale.size} scales); "
                      "activations must be per tensor")
        scale, zp = float(t.scale[0]), int(t.zero_point[0])
        if not (np.isfinite(scale) and scale > 0):
            self.fail(f"int8 tensor {t} has scale {scale}")
        if not -128 <= zp <= 127:
            self.fail(f"int8 tensor {t} has zero point {zp}, outside the int8 range")
        return scale, zp

    def weight_scales(self, i, channels) -> np.ndarray:
        """float32 per-channel scales of symmetric int8 weights (one scale is
        broadcast to every channel)."""
        t = self.f.tensors[i]
        if t.type_code != 9 or t.scale is None:
            self.fail(f"weights {t} are not quantized int8")
        if np.any(t.zero_point != 0):
            self.fail(f"weights {t} have nonzero zero points {sorted(set(t.zero_point.tolist()))[:4]}; "
                      "int8 weights must be symmetric")
        if t.scale.size not in (1, channels):
            self.fail(f"weights {t} have {t.scale.size} scales for {channels} output channels")
        if not (np.all(np.isfinite(t.scale)) and np.all(t.scale > 0)):
            self.fail(f"weights {t} have non-positive scales")
        return np.broadcast_to(t.scale, (channels,)).astype(np.float32)

    def int8_clamp(self, code, i) -> list[int]:
        """TFLite's CalculateActivationRangeQuantized: the fused activation as an
        int8 range of the output tensor ``i`` (its real bounds quantized)."""
        scale, zp = self.qparams(i)

        def q(real):      # float32 division, rounded half away from zero
            r = float(np.float32(real) / np.float32(scale))
            return zp + int(np.sign(r) * np.floor(abs(r) + 0.5))
        act = self._activation(code)
        lo, hi = {"none": (-128, 127), "relu": (q(0.0), 127), "relu6": (q(0.0), q(6.0)),
                  "relu_n1_to_1": (q(-1.0), q(1.0))}.get(act, (None, None))
        if lo is None:
            self.fail(f"fused activation {act} on an int8 output is not supported")
        return [max(-128, lo), min(127, hi)]

    def multiplier(self, real, what) -> tuple[int, int]:
        try:
            return tflite_multiplier(real)
        except ValueError as e:
            self.fail(f"{what}: {e}")

    # -- the walk
    def run(self, metadata=None):
        f = self.f
        if len(f.inputs) != 1 or len(f.outputs) < 1:
            raise GraphError(f"{f.name}: bnnrt imports models with one input "
                             f"(this one has {len(f.inputs)}) and at least one output")
        t_in = f.tensors[f.inputs[0]]
        if t_in.type_code not in (0, 9):
            raise UnsupportedOpError(f"{f.name}: input {t_in} is {t_in.type_name}; bnnrt imports "
                                     "float32- and int8-input models")
        self._where = f.name
        spec = self.spec_of(t_in, "float32")
        x = self.b.input("input", spec.shape)
        quantization = {}
        if t_in.type_code == 9:
            # an int8 input: the graph takes floats and quantizes them as the
            # file's input tensor says, so run() and predict() work as for float models
            scale, zp = self.qparams(t_in.index)
            quantization["input"] = [scale, zp]
            x = self.b.add("tfl_quantize", [x], {"scale": scale, "zero_point": zp}, name="input/quantize")
            spec = TensorSpec(spec.shape, "int8")
        self.bind(t_in.index, x, spec)
        for index, op in enumerate(f.ops):
            if index in f.folded_ops:       # computed from constants at import (fold_constants)
                continue
            name = f.op_name(index)
            self._where = self.where(name, index)
            ins, outs = f.op_io(index)
            if name in MULTI_OUTPUT:
                if not outs or min(outs) < 0:
                    self.fail(f"has outputs {outs}; each must be a tensor")
            elif len(outs) != 1 or outs[0] < 0:
                self.fail(f"has {len(outs)} outputs; bnnrt's handlers write one")
            if len(ins) < MIN_INPUTS.get(name, 1):
                self.fail(f"takes at least {MIN_INPUTS.get(name, 1)} inputs, the file gives {len(ins)}")
            try:
                HANDLERS[name](self, op, ins, outs)
            except (GraphError, ModelFormatError):
                raise
            except Exception as e:   # the reader's accessors on a malformed table
                raise ModelFormatError(f"{self._where}: malformed operator ({type(e).__name__}: {e})") from None
        self._where = f.name
        missing = [f.tensors[o] for o in f.outputs if o not in self.bound]
        if missing:
            raise GraphError(f"{f.name}: outputs {', '.join(map(str, missing))} are never computed")
        meta = source_metadata(f.name, "tflite")
        outputs = [self.bound.names[o] for o in f.outputs]
        last = {out: node.op for node in self.b.build(outputs).nodes for out in node.outputs}
        probabilities = last.get(outputs[0]) in ("softmax", "tfl_softmax")
        for k, o in enumerate(f.outputs):
            if self.bound.specs[o].dtype == "int8":
                # int8 outputs leave as floats: (q - zero point) * scale, exactly
                # LCE's int8 output times its scale
                scale, zp = self.qparams(o)
                quantization.setdefault("outputs", []).append([scale, zp])
                outputs[k] = self.b.add("tfl_dequantize", [outputs[k]], {"scale": scale, "zero_point": zp},
                                        name=f"{outputs[k]}/dequantize")
        if quantization:
            meta["quantization"] = quantization
        graph = fuse_sign_affines(fuse_residual_adds(self.b.build(outputs, metadata=meta)))
        if probabilities:     # predict() must not apply a second softmax
            graph.metadata["output"] = "probabilities"
        graph.metadata.update(metadata or {})
        return graph


# --------------------------------------------------------------------------
# op handlers: (importer, op, input tensor indices, output tensor indices)


def _conv_2d(im, op, ins, outs):
    o = im.options(op, "Conv2DOptions")
    strides, dilations = (o.StrideH(), o.StrideW()), (o.DilationHFactor(), o.DilationWFactor())
    if im.is_int8(ins[0]):
        _, spec = im.inp(ins[0], ("int8",))
        w = im.const(ins[1], "the filter")
        groups = spec.channels // w.shape[3] if w.ndim == 4 and w.shape[3] else 0
        pads = im._pads(o.Padding(), spec.shape[:2], w.shape[1:3], strides, dilations)
        return _tfl_conv(im, ins, outs, w, groups, strides, dilations, pads, o.FusedActivationFunction())
    x, spec = im.inp(ins[0])
    w = im.float_const(ins[1], "the filter")
    bias = im.float_const(ins[2], "the bias") if len(ins) > 2 and ins[2] >= 0 else None
    groups = spec.channels // w.shape[3] if w.ndim == 4 and w.shape[3] else 0
    if groups < 1 or groups * w.shape[3] != spec.channels:
        im.fail(f"filter {w.shape} does not fit the input {spec}")
    pads = im._pads(o.Padding(), spec.shape[:2], w.shape[1:3], strides, dilations)
    act = im._activation(o.FusedActivationFunction())
    if groups == 1 and ins[0] in im.dequantized and act in _BCONV_ACTIVATIONS:
        scale = _binary_filter_scale(w)
        if scale is not None:
            return _conv_of_signs(im, ins, outs, w, scale, bias, strides, dilations, pads, act)
    name = im.b.add("conv2d_float", [x], {"strides": list(strides), "dilations": list(dilations),
                                          "pads": list(pads), "groups": groups, "activation": act},
                    _float_consts(weights=w, bias=bias), name=im._node_name(outs[0]))
    im.out(outs[0], name)


#: The fused activations bconv2d_float applies to its float output.
_BCONV_ACTIVATIONS = ("none", "relu", "relu6", "relu_n1_to_1")


def _binary_filter_scale(w):
    """s (Cout,) where the filter ``w`` (Cout, kh, kw, Cin) is +-s per output
    channel, s > 0 (XNORNet's sign(w) * mean|w| folded at import), else None."""
    s = np.abs(w).reshape(w.shape[0], -1).max(axis=1)
    if not (np.all(np.isfinite(s)) and np.all(s > 0)):
        return None
    return s if np.array_equal(np.abs(w), np.broadcast_to(s[:, None, None, None], w.shape)) else None


def _conv_of_signs(im, ins, outs, w, scale, bias, strides, dilations, pads, act):
    """A float CONV_2D of LceDequantize'd bits with a +-scale filter is a binary
    conv: sum(x * s * sign(w)) = s * y with y the +-1 dot product, so
    ``bconv2d_float`` on the bits with multiplier s and the conv's bias, its
    padded taps 0 as the float conv's (pad_value 0). The float conv rounds
    each product-sum in float32, the binary conv once: equal within float
    rounding, and the 6x6x256x4096 float filter of XNORNet becomes bits."""
    bits, spec = im.inp(im.dequantized[ins[0]], ("bits",))
    cout = int(w.shape[0])
    attrs = {"cin": spec.channels, "strides": list(strides), "dilations": list(dilations), "pads": list(pads),
             "pad_value": 0 if any(pads) else 1}
    if act != "none":
        attrs["activation"] = act
    bias = np.zeros(cout, np.float32) if bias is None else bias.reshape(-1)
    if bias.shape != (cout,):
        im.fail(f"bias of shape {bias.shape} for {cout} output channels")
    name = im.b.add("bconv2d_float", [bits], attrs,
                    {"weights": ref.pack_bits(w < 0), **_float_consts(multiplier=scale, bias=bias)},
                    name=im._node_name(outs[0]))
    im.out(outs[0], name)


def _depthwise_conv_2d(im, op, ins, outs):
    if im.is_int8(ins[0]):
        _, spec = im.inp(ins[0], ("int8",))
        w = im.const(ins[1], "the filter")
        o = im.options(op, "DepthwiseConv2DOptions")
        if w.ndim != 4 or w.shape[0] != 1 or w.shape[3] % spec.channels:
            im.fail(f"depthwise filter {w.shape} does not fit the input {spec}")
        strides, dilations = (o.StrideH(), o.StrideW()), (o.DilationHFactor(), o.DilationWFactor())
        pads = im._pads(o.Padding(), spec.shape[:2], w.shape[1:3], strides, dilations)
        return _tfl_conv(im, ins, outs, np.transpose(w, (3, 1, 2, 0)), spec.channels, strides, dilations,
                         pads, o.FusedActivationFunction())
    x, spec = im.inp(ins[0])
    w = im.float_const(ins[1], "the filter")        # (1, kh, kw, Cin * multiplier)
    bias = im.float_const(ins[2], "the bias") if len(ins) > 2 and ins[2] >= 0 else None
    o = im.options(op, "DepthwiseConv2DOptions")
    if w.ndim != 4 or w.shape[0] != 1 or w.shape[3] % spec.channels:
        im.fail(f"depthwise filter {w.shape} does not fit the input {spec}")
    strides, dilations = (o.StrideH(), o.StrideW()), (o.DilationHFactor(), o.DilationWFactor())
    pads = im._pads(o.Padding(), spec.shape[:2], w.shape[1:3], strides, dilations)
    weights = np.transpose(w, (3, 1, 2, 0))                       # (Cout, kh, kw, 1)
    name = im.b.add("conv2d_float", [x], {"strides": list(strides), "dilations": list(dilations),
                                          "pads": list(pads), "groups": spec.channels,
                                          "activation": im._activation(o.FusedActivationFunction())},
                    _float_consts(weights=weights, bias=bias), name=im._node_name(outs[0]))
    im.out(outs[0], name)


def _fully_connected(im, op, ins, outs):
    if im.is_int8(ins[0]):
        _, spec = im.inp(ins[0], ("int8",))
        w = im.const(ins[1], "the weights")
        o = im.options(op, "FullyConnectedOptions", required=False)
        k = int(np.prod(spec.shape))
        if w.ndim != 2 or w.shape[1] != k:
            im.fail(f"weights {w.shape} do not fit the input {spec} ({k} values)")
        if spec.shape[:2] != (1, 1):
            flat = im.b.flatten(im.bound.names[ins[0]], name=im._node_name(outs[0]) + "/flatten")
            im.bind(ins[0], flat, TensorSpec((1, 1, k), "int8"))
        return _tfl_conv(im, ins, outs, w.reshape(w.shape[0], 1, 1, k), 1, (1, 1), (1, 1), (0, 0, 0, 0),
                         o.FusedActivationFunction() if o is not None else 0, product_in_float=True)
    x, spec = im.inp(ins[0])
    w = im.float_const(ins[1], "the weights")         # (N, K)
    bias = im.float_const(ins[2], "the bias") if len(ins) > 2 and ins[2] >= 0 else None
    o = im.options(op, "FullyConnectedOptions", required=False)
    k = int(np.prod(spec.shape))
    if w.ndim != 2 or w.shape[1] != k:
        im.fail(f"weights {w.shape} do not fit the input {spec} ({k} values)")
    if spec.shape[:2] != (1, 1):
        x = im.b.flatten(x, name=im._node_name(outs[0]) + "/flatten")
    act = im._activation(o.FusedActivationFunction() if o is not None else 0)
    name = im.b.add("conv2d_float", [x], {"activation": act},
                    _float_consts(weights=w.reshape(w.shape[0], 1, 1, k), bias=bias),
                    name=im._node_name(outs[0]))
    im.out(outs[0], name)


def _broadcast_operand(im, c, spec):
    """A constant operand of ADD/MUL as bnnrt's ops take it: a scalar or one
    value per channel (flat), or the whole tensor (the activation's shape)."""
    if c.size in (1, spec.channels) and (c.ndim == 0 or c.shape[-1] == c.size):
        return c.reshape(-1)
    if c.size == int(np.prod(spec.shape)):
        return c.reshape(spec.shape)
    im.fail(f"constant operand of shape {c.shape} does not broadcast over {spec}")


def _elementwise(op_name, options):
    """ADD, MUL (with their fused activation), MINIMUM, MAXIMUM (``options``
    None: they have none) of float tensors."""
    def handler(im, op, ins, outs):
        if any(im.is_int8(i) for i in ins):
            if op_name not in _INT8_ELEMENTWISE:
                im.fail(f"int8 operands are not supported ({op_name} computes in float32)")
            return _INT8_ELEMENTWISE[op_name](im, op, ins, outs)
        o = im.options(op, options, required=False) if options else None
        act = im._activation(o.FusedActivationFunction() if o is not None else 0)
        const = [i for i in ins if i in im.consts]
        if len(ins) != 2 or len(const) > 1:
            im.fail("takes two operands, at most one of them constant")
        if const:
            x, spec = im.inp(ins[0] if ins[1] == const[0] else ins[1])
            operand = _broadcast_operand(im, im.float_const(const[0], "the constant operand"), spec)
            name = im.b.add(op_name, [x], {"activation": act}, {"operand": operand},
                            name=im._node_name(outs[0]))
        else:
            a, sa = im.inp(ins[0])
            b_, sb = im.inp(ins[1])
            if sa.shape != sb.shape:
                # TFLite broadcasts any size-1 dimension; bnnrt's ops take one value per
                # channel as the second operand (RealToBinaryNet's data-dependent scales).
                # The four ops commute, so the per-channel operand may come first.
                if sa.shape == (1, 1, sb.channels):
                    (a, sa), (b_, sb) = (b_, sb), (a, sa)
                if sb.shape != (1, 1, sa.channels):
                    im.fail(f"operands {im.f.tensors[ins[0]]} and {im.f.tensors[ins[1]]} do not broadcast "
                            "as bnnrt does: equal shapes, or one of them one value per channel")
            # a residual add after a binary conv is fused into it once the graph is built
            name = im.b.add(op_name, [a, b_], {"activation": act}, name=im._node_name(outs[0]))
        im.out(outs[0], name)
    return handler


def _pad(im, op, ins, outs):
    int8 = im.is_int8(ins[0])
    x, spec = im.inp(ins[0], ("int8",) if int8 else ("float32",))
    p = im.const(ins[1], "the paddings").astype(np.int64)
    if p.shape != (4, 2) or p[0].any() or (p < 0).any():
        im.fail(f"paddings {p.tolist()}: bnnrt pads height, width and channels (4 x 2 values, "
                "none negative, the batch unpadded)")
    pads = [int(p[1, 0]), int(p[1, 1]), int(p[2, 0]), int(p[2, 1])]
    channel_pads = [int(p[3, 0]), int(p[3, 1])]
    if int8 and any(channel_pads):
        im.fail(f"paddings {p.tolist()}: int8 tensors are padded in height and width only")
    if int8:     # PAD fills with the zero point (the real 0); PADV2 with its int8 value
        _same_quantization(im, ins[0], outs[0], "PAD")
        value = im.qparams(ins[0])[1]
        if len(ins) > 2 and ins[2] >= 0:
            value = int(im.const(ins[2], "the pad value").reshape(-1)[0])
        name = im.b.add("tfl_pad", [x], {"pads": pads, "value": value}, name=im._node_name(outs[0]))
        im.out(outs[0], name, "int8")
        return
    value = 0.0
    if len(ins) > 2 and ins[2] >= 0:
        value = float(im.const(ins[2], "the pad value").reshape(-1)[0])
    attrs = {"pads": pads, "value": value}
    if any(channel_pads):     # MeliusNet's x + pad(w): the new channels grow the dense block
        attrs["channel_pads"] = channel_pads
    name = im.b.add("pad_float", [x], attrs, name=im._node_name(outs[0]))
    im.out(outs[0], name)


def _pool(op_name):
    def handler(im, op, ins, outs):
        if im.is_int8(ins[0]):
            return _pool_int8(im, op, ins, outs, "MAX_POOL_2D" if op_name == "maxpool_float" else
                              "AVERAGE_POOL_2D")
        x, spec = im.inp(ins[0])
        o = im.options(op, "Pool2DOptions")
        kernel, strides = (o.FilterHeight(), o.FilterWidth()), (o.StrideH(), o.StrideW())
        pads = im._pads(o.Padding(), spec.shape[:2], kernel, strides, (1, 1))
        act = im._activation(o.FusedActivationFunction())
        base = im._node_name(outs[0])
        name = im.b.add(op_name, [x], {"kernel": list(kernel), "strides": list(strides), "pads": list(pads)},
                        name=base if act == "none" else base + "/pool")
        if act != "none":
            name = im.b.add("activation", [name], {"kind": act}, name=base)
        im.out(outs[0], name)
    return handler


def _mean(im, op, ins, outs):
    axes = sorted(int(a) % 4 for a in im.const(ins[1], "the axes").reshape(-1))
    if axes != [1, 2]:
        im.fail(f"MEAN over axes {axes}: bnnrt averages over height and width only")
    if im.is_int8(ins[0]):
        return _mean_int8(im, op, ins, outs)
    x, spec = im.inp(ins[0])
    name = im.b.add("mean_float", [x], name=im._node_name(outs[0]))
    im.out(outs[0], name)


def _reshape(im, op, ins, outs):
    x, spec = im.inp(ins[0], ("float32", "int8"))
    if spec.dtype == "int8":
        _same_quantization(im, ins[0], outs[0], "RESHAPE")
    target = im.spec_of(im.f.tensors[outs[0]], spec.dtype).shape
    if int(np.prod(target)) != int(np.prod(spec.shape)):
        im.fail(f"cannot reshape {spec} to {list(target)}")
    if target == spec.shape:
        im.bind(outs[0], x, spec)           # a no-op: alias the tensor
        return
    name = im.b.add("reshape", [x], {"shape": list(target)}, name=im._node_name(outs[0]))
    im.out(outs[0], name, spec.dtype)


def _softmax(im, op, ins, outs):
    o = im.options(op, "SoftmaxOptions", required=False)
    beta = float(o.Beta()) if o is not None else 1.0
    if im.is_int8(ins[0]):
        x, spec = im.inp(ins[0], ("int8",))
        s_in, _ = im.qparams(ins[0])
        s_out, z_out = im.qparams(outs[0])
        # TFLite's table: float32 exp(-in_scale * beta * d) for d = 255 - index, the
        # exponent's product in float32, exp rounded once (as expf)
        d = np.arange(255, -1, -1, dtype=np.float32)
        arg = (np.float32(-s_in) * np.float32(beta)) * d
        table = np.exp(arg.astype(np.float64)).astype(np.float32)
        name = im.b.add("tfl_softmax", [x], {"scale": s_out, "zero_point": z_out},
                        {"table": _frozen(table, np.float32)}, name=im._node_name(outs[0]))
        im.out(outs[0], name, "int8")
        return
    x, spec = im.inp(ins[0])
    name = im.b.add("softmax", [x], {"beta": beta}, name=im._node_name(outs[0]))
    im.out(outs[0], name)


def _activation_op(kind):
    def handler(im, op, ins, outs):
        x, spec = im.inp(ins[0])
        name = im.b.add("activation", [x], {"kind": kind}, name=im._node_name(outs[0]))
        im.out(outs[0], name)
    return handler


def _concatenation(im, op, ins, outs):
    o = im.options(op, "ConcatenationOptions")
    if o.Axis() not in (-1, 3):
        im.fail(f"concatenation along axis {o.Axis()}: bnnrt concatenates channels only")
    if im.is_int8(outs[0]):
        xs = [im.inp(i, ("int8",))[0] for i in ins]
        for i in ins:      # TFLite's int8 concatenation copies: one scale and zero point throughout
            _same_quantization(im, i, outs[0], "CONCATENATION")
        if im.int8_clamp(o.FusedActivationFunction(), outs[0]) != [-128, 127]:
            im.fail("a fused activation on an int8 concatenation is not supported")
        im.out(outs[0], im.b.add("concat", xs, name=im._node_name(outs[0])), "int8")
        return
    xs = [im.inp(i)[0] for i in ins]
    act = im._activation(o.FusedActivationFunction())
    base = im._node_name(outs[0])
    name = im.b.add("concat", xs, name=base if act == "none" else base + "/concat")
    if act != "none":
        name = im.b.add("activation", [name], {"kind": act}, name=base)
    im.out(outs[0], name)


def _dequantize(im, op, ins, outs):
    """float16 constants (weights stored at half precision) are folded."""
    if ins[0] in im.consts and im.f.tensors[ins[0]].type_code == 1:
        im.consts[outs[0]] = im.consts[ins[0]].astype(np.float32)
        return
    if not im.is_int8(ins[0]):
        im.fail(f"DEQUANTIZE of {im.f.tensors[ins[0]]} is not supported (int8 or float16 constants)")
    x, spec = im.inp(ins[0], ("int8",))
    scale, zp = im.qparams(ins[0])
    name = im.b.add("tfl_dequantize", [x], {"scale": scale, "zero_point": zp}, name=im._node_name(outs[0]))
    im.out(outs[0], name)


def _channel_axis(im, axis_tensor, t):
    """The split axis (a constant scalar) of the tensor ``t``, checked to be its channels."""
    a = im.const(axis_tensor, "the axis").reshape(-1)
    if a.size != 1 or a.dtype.kind not in "iu":
        im.fail(f"the axis must be one integer, got {a.tolist()}")
    rank = len(t.shape)
    if int(a[0]) not in (rank - 1, -1):
        im.fail(f"split along axis {int(a[0])} of {t}: bnnrt splits the channel axis (the last) only")


def _split_outputs(im, ins_x, outs, sizes):
    """One ``slice_channels`` per output, ``sizes`` channels each, in order."""
    dtype = "int8" if im.is_int8(ins_x) else "float32"
    x, spec = im.inp(ins_x, (dtype,))
    if len(sizes) != len(outs) or any(n < 1 for n in sizes) or sum(sizes) != spec.channels:
        im.fail(f"splits {list(sizes)} into {len(outs)} outputs do not divide the {spec.channels} channels of {spec}")
    start = 0
    for o, n in zip(outs, sizes):
        if dtype == "int8":      # TFLite's int8 SPLIT copies: every output quantized as the input
            _same_quantization(im, ins_x, o, "SPLIT")
        name = im.b.add("slice_channels", [x], {"start": start, "stop": start + n}, name=im._node_name(o))
        im.out(o, name, dtype)
        start += n


def _split(im, op, ins, outs):
    """SPLIT (axis, input): equal parts (MeliusNet's dense blocks)."""
    t = im.f.tensors[ins[1]]
    _channel_axis(im, ins[0], t)
    _, spec = im.inp(ins[1], ("int8",) if im.is_int8(ins[1]) else ("float32",))
    o = im.options(op, "SplitOptions", required=False)
    parts = o.NumSplits() if o is not None else len(outs)
    if parts != len(outs) or spec.channels % parts:
        im.fail(f"num_splits={parts} with {len(outs)} outputs does not divide the {spec.channels} channels")
    _split_outputs(im, ins[1], outs, [spec.channels // parts] * parts)


def _split_v(im, op, ins, outs):
    """SPLIT_V (input, size_splits, axis): given sizes, one of them -1 for the rest."""
    t = im.f.tensors[ins[0]]
    _channel_axis(im, ins[2], t)
    _, spec = im.inp(ins[0], ("int8",) if im.is_int8(ins[0]) else ("float32",))
    sizes = im.const(ins[1], "the size_splits").reshape(-1)
    if sizes.dtype.kind not in "iu":
        im.fail(f"size_splits {sizes.dtype} is not integer")
    sizes = [int(v) for v in sizes]
    if sizes.count(-1) > 1:
        im.fail(f"size_splits {sizes} leaves more than one size to infer")
    if -1 in sizes:
        sizes[sizes.index(-1)] = spec.channels - (sum(sizes) + 1)
    _split_outputs(im, ins[0], outs, sizes)


def _prelu(im, op, ins, outs):
    """PRELU (x, alpha): TFLite broadcasts alpha over x; bnnrt's prelu takes one
    slope or one per channel, so alpha's leading dimensions must be 1
    (Keras' PReLU with shared_axes=[1, 2]: (1, 1, C))."""
    x, spec = im.inp(ins[0])
    alpha = im.float_const(ins[1], "alpha")
    if alpha.ndim > 4 or (alpha.ndim and (any(d != 1 for d in alpha.shape[:-1])
                                          or alpha.shape[-1] not in (1, spec.channels))):
        im.fail(f"alpha {im.f.tensors[ins[1]]} is not one value or one per channel of {spec} "
                "(per-pixel slopes are not supported)")
    name = im.b.add("prelu", [x], {}, _float_consts(slope=alpha.reshape(-1)), name=im._node_name(outs[0]))
    im.out(outs[0], name)


# -- constants computed from constants

#: Largest tensor the folder computes (values): XNORNet's 6x6x256x4096 dense
#: filter is 38M; a file asking for more is refused rather than allocated.
MAX_FOLD_VALUES = 1 << 27


def _fold_binary(fn, options):
    """ADD, SUB, MUL, DIV on constants, then their fused activation."""
    def fold(f, op, args):
        out = fn(args[0], args[1])
        o = f.builtin_options(op, options)
        code = o.FusedActivationFunction() if o is not None else 0
        if code not in _ACTIVATIONS:
            raise ValueError(f"fused activation {code} is not supported")
        return ref.ACTIVATIONS[_ACTIVATIONS[code]](out)
    return fold


def _fold_reduce(fn):
    def fold(f, op, args):
        axes = tuple(int(a) for a in np.asarray(args[1]).reshape(-1))
        o = f.builtin_options(op, "ReducerOptions")
        return fn(args[0], axis=axes, keepdims=bool(o.KeepDims()) if o is not None else False)
    return fold


#: TFLite op -> fn(file, op, constant inputs) -> constant output: what the
#: folder computes on constants, in float32 as TFLite's float kernels do
#: (numpy broadcasts as TFLite's broadcasting ops do, right-aligned).
FOLDERS = {
    "ABS": lambda f, op, a: np.abs(a[0]),
    "NEG": lambda f, op, a: np.negative(a[0]),
    "SIGN": lambda f, op, a: np.sign(a[0]),
    "FLOOR": lambda f, op, a: np.floor(a[0]),
    "ROUND": lambda f, op, a: ref.tfl_round(a[0]),
    "ADD": _fold_binary(np.add, "AddOptions"),
    "SUB": _fold_binary(np.subtract, "SubOptions"),
    "MUL": _fold_binary(np.multiply, "MulOptions"),
    "DIV": _fold_binary(np.divide, "DivOptions"),
    "MINIMUM": lambda f, op, a: np.minimum(a[0], a[1]),
    "MAXIMUM": lambda f, op, a: np.maximum(a[0], a[1]),
    "TRANSPOSE": lambda f, op, a: np.transpose(a[0], [int(p) for p in np.asarray(a[1]).reshape(-1)]),
    "MEAN": _fold_reduce(np.mean),
    "SUM": _fold_reduce(np.sum),
    "RESHAPE": None,           # the output tensor's recorded shape (its inputs may not say it)
    "DEQUANTIZE": lambda f, op, a: a[0].astype(np.float32),
    **{op: (lambda kind: lambda f, op, a: ref.ACTIVATIONS[kind](a[0]))(kind)
       for op, kind in (("RELU", "relu"), ("RELU6", "relu6"), ("RELU_N1_TO_1", "relu_n1_to_1"),
                        ("TANH", "tanh"), ("LOGISTIC", "logistic"))},
    # LCE's sign of a float filter, as its kernels compute it: int32 words of 32
    # channels, LSB first, bit 1 where x < 0; and back to +1/-1
    "LceQuantize": lambda f, op, a: _lce_pack(a[0]),
    "LceDequantize": None,     # the channel count is the output tensor's (the words hold up to 32 more)
}

#: (input type, output type) of the ops that fold other types than float32 -> float32.
_FOLD_TYPES = {"DEQUANTIZE": (1, 0), "LceQuantize": (0, 2), "LceDequantize": (2, 0)}


def _lce_pack(x):
    negative = np.asarray(x) < 0
    pad = -negative.shape[-1] % 32
    if pad:
        negative = np.concatenate([negative, np.zeros(negative.shape[:-1] + (pad,), bool)], axis=-1)
    return ref.pack_bits(negative).view("<i4")


def _lce_unpack(words, channels):
    as_bytes = np.ascontiguousarray(words, dtype="<i4").view(np.uint8)
    if as_bytes.shape[-1] < packed_bytes(channels):
        raise ValueError(f"{words.shape[-1]} words do not hold {channels} channels")
    negative = ref.unpack_bits(as_bytes[..., :packed_bytes(channels)], channels)
    return np.where(negative, np.float32(-1), np.float32(1))

#: Arity of each folder (TRANSPOSE's perm, RESHAPE's shape, MEAN's axes included; RESHAPE's is optional).
_FOLD_ARITY = {"ADD": 2, "SUB": 2, "MUL": 2, "DIV": 2, "MINIMUM": 2, "MAXIMUM": 2, "TRANSPOSE": 2,
               "MEAN": 2, "SUM": 2}


def fold_constants(f: _File) -> None:
    """Compute, at import, every op of FOLDERS whose inputs are all constants
    (in file order, so chains fold): LCE leaves XNORNet's binarization of its
    float dense filter (ABS, TRANSPOSE among it) in the graph, and the
    CONV_2D or FULLY_CONNECTED it feeds then reads the result as weights. Only float32 values
    fold (int32 for shapes, perms and axes; float16 through DEQUANTIZE):
    quantized int8 constants stay for the handlers that read them. Results go
    to ``f.folded``; the ops to ``f.folded_ops``, which nothing else runs."""
    values = {t.index: t.data for t in f.tensors if t.data is not None}
    for index in range(len(f.ops)):
        name = f.op_name(index)
        ins, outs = f.op_io(index)
        if name not in FOLDERS or len(outs) != 1 or not ins or any(i < 0 or i not in values for i in ins):
            continue
        types = [f.tensors[i].type_code for i in ins]
        out_type = f.tensors[outs[0]].type_code
        if name in _FOLD_TYPES:
            if (types[0], out_type) != _FOLD_TYPES[name]:
                continue
        elif types[0] != 0 or any(t not in (0, 2) for t in types) or out_type != 0:
            continue
        where = f"{f.name}: operator {index} ({name})"
        if len(ins) < _FOLD_ARITY.get(name, 1):
            raise GraphError(f"{where}: takes {_FOLD_ARITY[name]} inputs, the file gives {len(ins)}")
        args = [values[i] for i in ins]
        out_t = f.tensors[outs[0]]
        try:
            if name in ("ADD", "SUB", "MUL", "DIV", "MINIMUM", "MAXIMUM"):
                shape = np.broadcast_shapes(args[0].shape, args[1].shape)
                if int(np.prod(shape, dtype=np.int64)) > MAX_FOLD_VALUES:
                    raise ValueError(f"the result {list(shape)} is larger than {MAX_FOLD_VALUES} values")
            with np.errstate(all="ignore"):
                if name == "RESHAPE":
                    out = args[0].reshape(out_t.shape)
                elif name == "LceDequantize":
                    out = _lce_unpack(args[0], out_t.shape[-1] if out_t.shape else 0)
                else:
                    out = FOLDERS[name](f, f.ops[index], args)
            out = np.asarray(out, dtype=np.float32 if out_type == 0 else np.int32)
        except (ValueError, TypeError, IndexError, OverflowError) as e:    # numpy's AxisError is a ValueError
            raise GraphError(f"{where}: cannot fold constants {', '.join(str(f.tensors[i]) for i in ins)} "
                             f"({e})") from None
        except Exception as e:     # the reader's accessors on a malformed options table
            raise ModelFormatError(f"{where}: malformed operator ({type(e).__name__}: {e})") from None
        if tuple(out.shape) != tuple(out_t.shape):
            raise GraphError(f"{where}: the file records {out_t}, but the folded constant is "
                             f"{list(out.shape)}")
        out.setflags(write=False)
        values[outs[0]] = f.folded[outs[0]] = out
        f.folded_ops.add(index)


# -- int8 (TFLite integer kernels, the tfl_* ops)

#: How LCE's int8 CONV_2D and FULLY_CONNECTED round: TFLite runs them through
#: ruy, whose x86 kernels round the high multiply and the right shift halves
#: up ("ruy"), not away from zero as gemmlowp's reference does ("double", still
#: right for depthwise convs and the other integer ops). Traced layer by
#: layer against LCE 0.16's interpreter on tests/data/lce/int8_ops.tflite:
#: "double" differs on one conv output (a tie at -46.5), "ruy" on none.
GEMM_ROUNDING = "ruy"


def _tfl_conv(im, ins, outs, w, groups, strides, dilations, pads, act, product_in_float=False):
    """int8 CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED -> tfl_conv2d.
    ``w`` is the filter as (Cout, kh, kw, Cin/groups)."""
    x, spec = im.inp(ins[0], ("int8",))
    if w.dtype != np.int8 or w.ndim != 4:
        im.fail(f"filter {w.dtype}{list(w.shape)} is not an int8 filter")
    cout = int(w.shape[0])
    if groups < 1 or groups * w.shape[3] != spec.channels or cout % groups:
        im.fail(f"filter {list(w.shape)} does not fit the input {spec}")
    w_scales = im.weight_scales(ins[1], cout)
    s_in, zp_in = im.qparams(ins[0])
    s_out, zp_out = im.qparams(outs[0])
    if len(ins) > 2 and ins[2] >= 0:
        bias = im.const(ins[2], "the bias")
        if bias.dtype != np.int32 or bias.size != cout:
            im.fail(f"bias {bias.dtype}{list(bias.shape)} is not int32 with {cout} values")
        bias = bias.reshape(-1)
    else:
        bias = np.zeros(cout, np.int32)
    mult = np.zeros(cout, np.int32)
    shift = np.zeros(cout, np.int8)
    for c in range(cout):
        if product_in_float:     # FULLY_CONNECTED: the scale product is taken in float32
            real = float(np.float32(s_in) * w_scales[c]) / s_out
        else:                    # convolutions: per channel, in double
            real = s_in * float(w_scales[c]) / s_out
        mult[c], shift[c] = im.multiplier(real, f"output channel {c}")
    attrs = {"strides": list(strides), "dilations": list(dilations), "pads": list(pads), "groups": int(groups),
             "in_zero_point": zp_in, "out_zero_point": zp_out, "clamp": im.int8_clamp(act, outs[0]),
             "rounding": "double" if groups > 1 and w.shape[3] == 1 else GEMM_ROUNDING}
    consts = {k: _frozen(v, dt) for k, v, dt in (("weights", w, np.int8), ("bias", bias, np.int32),
                                                  ("multiplier", mult, np.int32), ("shift", shift, np.int8))}
    name = im.b.add("tfl_conv2d", [x], attrs, consts, name=im._node_name(outs[0]))
    im.out(outs[0], name, "int8")


def _frozen(arr, dtype):
    a = np.ascontiguousarray(arr, dtype=dtype)
    a.setflags(write=False)
    return a


def _int8_operands(im, ins, what):
    """(first input, second input or None, constant int8 operand or None, and
    the tensor index of each operand) of an int8 ADD or MUL."""
    const = [i for i in ins if i in im.consts]
    if len(ins) != 2 or len(const) > 1:
        im.fail(f"{what} takes two operands, at most one of them constant")
    if not const:
        a, sa = im.inp(ins[0], ("int8",))
        b, sb = im.inp(ins[1], ("int8",))
        if sa.shape != sb.shape:
            im.fail(f"operands {sa} and {sb} differ in shape (broadcasting is not supported)")
        return [a, b], None, ins[0], ins[1]
    var = ins[0] if ins[1] == const[0] else ins[1]
    x, spec = im.inp(var, ("int8",))
    c = im.consts[const[0]]
    if c.dtype != np.int8:
        im.fail(f"constant operand {im.f.tensors[const[0]]} of an int8 {what} is not int8")
    operand = _broadcast_operand(im, c, spec)
    # element-wise ops commute: the activation comes first, the constant second
    return [x], _frozen(operand, np.int8), var, const[0]


def _add_int8(im, op, ins, outs):
    o = im.options(op, "AddOptions", required=False)
    inputs, operand, ia, ib = _int8_operands(im, ins, "ADD")
    (sa, za), (sb, zb), (so, zo) = im.qparams(ia), im.qparams(ib), im.qparams(outs[0])
    left_shift = 20
    # TFLite's int8 ADD: both inputs onto twice the larger input scale, the
    # scale products in double from float32 scales
    twice_max = 2.0 * max(float(sa), float(sb))
    a_m, a_s = im.multiplier(sa / twice_max, "input 1 multiplier")
    b_m, b_s = im.multiplier(sb / twice_max, "input 2 multiplier")
    o_m, o_s = im.multiplier(twice_max / ((1 << left_shift) * so), "output multiplier")
    attrs = {"a_zero_point": za, "b_zero_point": zb, "out_zero_point": zo, "left_shift": left_shift,
             "a_multiplier": a_m, "a_shift": a_s, "b_multiplier": b_m, "b_shift": b_s,
             "out_multiplier": o_m, "out_shift": o_s,
             "clamp": im.int8_clamp(o.FusedActivationFunction() if o is not None else 0, outs[0])}
    consts = {} if operand is None else {"operand": operand}
    im.out(outs[0], im.b.add("tfl_add", inputs, attrs, consts, name=im._node_name(outs[0])), "int8")


def _mul_int8(im, op, ins, outs):
    o = im.options(op, "MulOptions", required=False)
    inputs, operand, ia, ib = _int8_operands(im, ins, "MUL")
    (sa, za), (sb, zb), (so, zo) = im.qparams(ia), im.qparams(ib), im.qparams(outs[0])
    m, sh = im.multiplier(sa * sb / so, "multiplier")
    attrs = {"a_zero_point": za, "b_zero_point": zb, "out_zero_point": zo, "multiplier": m, "shift": sh,
             "clamp": im.int8_clamp(o.FusedActivationFunction() if o is not None else 0, outs[0])}
    consts = {} if operand is None else {"operand": operand}
    im.out(outs[0], im.b.add("tfl_mul", inputs, attrs, consts, name=im._node_name(outs[0])), "int8")


def _same_quantization(im, i, o, what):
    if im.qparams(i) != im.qparams(o):
        im.fail(f"{what}: input {im.f.tensors[i]} and output {im.f.tensors[o]} are quantized "
                f"differently ({im.qparams(i)} vs {im.qparams(o)}); TFLite requires them equal")


def _pool_int8(im, op, ins, outs, kind):
    x, spec = im.inp(ins[0], ("int8",))
    o = im.options(op, "Pool2DOptions")
    kernel, strides = (o.FilterHeight(), o.FilterWidth()), (o.StrideH(), o.StrideW())
    pads = im._pads(o.Padding(), spec.shape[:2], kernel, strides, (1, 1))
    _same_quantization(im, ins[0], outs[0], kind)
    clamp = im.int8_clamp(o.FusedActivationFunction(), outs[0])
    attrs = {"kernel": list(kernel), "strides": list(strides), "pads": list(pads)}
    if kind == "MAX_POOL_2D":
        if clamp != [-128, 127]:
            im.fail("a fused activation on an int8 max pool is not supported")
        name = im.b.add("maxpool", [x], attrs, name=im._node_name(outs[0]))
    else:
        name = im.b.add("tfl_avgpool", [x], dict(attrs, clamp=clamp), name=im._node_name(outs[0]))
    im.out(outs[0], name, "int8")


def _mean_int8(im, op, ins, outs):
    """TFLite's int8 MEAN (QuantizedMeanOrSum): the multiplier of in_scale /
    out_scale (in double), then divided by the element count in integers,
    losing the low bits it shifts out, as TFLite does."""
    x, spec = im.inp(ins[0], ("int8",))
    (s_in, z_in), (s_out, z_out) = im.qparams(ins[0]), im.qparams(outs[0])
    count = spec.shape[0] * spec.shape[1]
    m, sh = im.multiplier(float(s_in) / float(s_out), "multiplier")
    shift = min(count.bit_length() - 1, 32, 31 + sh)
    m, sh = (m << shift) // count, sh - shift
    name = im.b.add("tfl_mean", [x], {"multiplier": m, "shift": sh, "input_zero_point": z_in,
                                      "output_zero_point": z_out, "clamp": [-128, 127]},
                    name=im._node_name(outs[0]))
    im.out(outs[0], name, "int8")


def _quantize(im, op, ins, outs):
    """QUANTIZE: float32 -> int8 (tfl_quantize) or int8 -> int8 with another
    scale (tfl_requantize)."""
    if not im.is_int8(outs[0]):
        im.fail(f"QUANTIZE to {im.f.tensors[outs[0]].type_name} is not supported (int8 only)")
    s_out, z_out = im.qparams(outs[0])
    name = im._node_name(outs[0])
    if im.is_int8(ins[0]):
        x, spec = im.inp(ins[0], ("int8",))
        s_in, z_in = im.qparams(ins[0])
        m, sh = im.multiplier(s_in / s_out, "requantization multiplier")
        name = im.b.add("tfl_requantize", [x], {"multiplier": m, "shift": sh, "in_zero_point": z_in,
                                                "out_zero_point": z_out}, name=name)
    else:
        x, spec = im.inp(ins[0])
        name = im.b.add("tfl_quantize", [x], {"scale": s_out, "zero_point": z_out}, name=name)
    im.out(outs[0], name, "int8")


# -- LCE custom ops


def _lce_quantize(im, op, ins, outs):
    if im.is_int8(ins[0]):
        # the sign of the real value s * (q - zero point): -1 iff q < zero point
        x, spec = im.inp(ins[0], ("int8",))
        _, zp = im.qparams(ins[0])
        name = im.b.binarize(x, thresholds=np.full(spec.channels, zp), directions=np.ones(spec.channels),
                             name=im._node_name(outs[0]))
        im.out(outs[0], name, "bits", channels=spec.channels)
        return
    x, spec = im.inp(ins[0])
    name = im.b.sign_bits(x, name=im._node_name(outs[0]))
    im.out(outs[0], name, "bits", channels=spec.channels)


def _lce_dequantize(im, op, ins, outs):
    x, spec = im.inp(ins[0], ("bits",))
    name = im.b.dequantize(x, scale=1.0, name=im._node_name(outs[0]))
    im.out(outs[0], name, "float32")
    im.dequantized[outs[0]] = ins[0]      # a float conv of these +1/-1 may run on the bits


def lce_weights(packed: np.ndarray, cin: int) -> np.ndarray:
    """LCE's bitpacked filter int32 (Cout, kh, kw, ceil(Cin/32)) -> bnnrt's
    uint8 (Cout, kh, kw, ceil(Cin/8)): the same bits, LSB first, bit 1 = -1."""
    words = np.ascontiguousarray(packed, dtype="<i4")
    as_bytes = words.view(np.uint8).reshape(words.shape[:3] + (words.shape[3] * 4,))
    w = np.array(as_bytes[..., :packed_bytes(cin)])
    if cin % 8:                      # bits beyond the last channel are meaningless: clear them
        w[..., -1] &= (1 << (cin % 8)) - 1
    return w


def _lce_bconv2d(im, op, ins, outs):
    o = im.f.custom_options(op)
    x, spec = im.inp(ins[0], ("bits",))
    cin = im.option_int(o, "channels_in", spec.channels)
    if cin != spec.channels:
        im.fail(f"channels_in={cin} but the input has {spec.channels} channels")
    packed = im.const(ins[1], "the filter")
    if packed.ndim != 4 or packed.dtype != np.int32 or packed.shape[3] < 1:
        im.fail(f"filter {packed.dtype}{list(packed.shape)} is not a bitpacked OHWI filter")
    cout, kh, kw = (int(d) for d in packed.shape[:3])
    groups, cin_g = 1, cin
    if packed.shape[3] != -(-cin // 32):      # grouped: each group's channels are whole words
        cin_g = 32 * int(packed.shape[3])
        if cin % cin_g or cout % (cin // cin_g):
            im.fail(f"filter {list(packed.shape)} does not divide channels_in {cin} and {cout} outputs "
                    "into groups of whole 32-channel words")
        groups = cin // cin_g
    strides = (im.option_int(o, "stride_height", 1), im.option_int(o, "stride_width", 1))
    dilations = (im.option_int(o, "dilation_height_factor", 1), im.option_int(o, "dilation_width_factor", 1))
    pad_value = im.option_int(o, "pad_values", 0)
    pads = im._pads(im.option_int(o, "padding", 1), spec.shape[:2], (kh, kw), strides, dilations)
    if not any(pads):
        pad_value = 1                 # no padded taps: the value is irrelevant, 1 is the fast path
    act = im.option_int(o, "fused_activation_function", 0)
    out_t = im.f.tensors[outs[0]]
    name = im._node_name(outs[0])
    geometry = dict(cin=cin_g, strides=strides, dilations=dilations, pads=pads, pad_value=pad_value)
    if out_t.type_code == 2:          # bitpacked output: -1 iff popcount > threshold
        if len(ins) < 5 or ins[4] < 0:
            im.fail("a bitpacked output needs the thresholds input")
        thr = im.const(ins[4], "the thresholds").astype(np.int64).reshape(-1)
        if thr.shape != (cout,):
            im.fail(f"thresholds of shape {thr.shape}, expected ({cout},)")
        if groups > 1 and (cout // groups) % 8:
            im.fail(f"grouped convolution with bit outputs of {cout // groups} channels per group "
                    "(not whole bytes) is not supported")
        y_thresholds = np.clip(kh * kw * cin_g - 2 * thr, -2**31, 2**31 - 1)

        def emit(xg, sl, nm):
            return im.b.bconv2d(xg, lce_weights(packed[sl], cin_g), output="bits",
                                thresholds=y_thresholds[sl], name=nm, **geometry)
        dtype = "bits"
    elif out_t.type_code == 0:        # float output: clamp(y) * multiplier + bias
        if act not in _Y_CLAMPS:
            im.fail(f"fused activation {act} is not supported")
        mult = im.const(ins[2], "post_activation_multiplier").astype(np.float32).reshape(-1)
        bias = im.const(ins[3], "post_activation_bias").astype(np.float32).reshape(-1)
        if mult.shape != (cout,) or bias.shape != (cout,):
            im.fail(f"multiplier {mult.shape} and bias {bias.shape} must have {cout} values")
        attrs = {k_: list(v) if isinstance(v, tuple) else v for k_, v in geometry.items()}
        if _Y_CLAMPS[act] is not None:
            attrs["clamp"] = list(_Y_CLAMPS[act])

        def emit(xg, sl, nm):
            return im.b.add("bconv2d_float", [xg], attrs, {"weights": lce_weights(packed[sl], cin_g),
                                                            "multiplier": mult[sl], "bias": bias[sl]}, name=nm)
        dtype = "float32"
    else:
        im.fail(f"output {out_t} is {out_t.type_name}; int8 outputs are not supported yet")
    if groups == 1:
        name = emit(x, slice(None), name)
    else:                             # one binary conv per group on its slice of channels, then concat
        cout_g = cout // groups
        parts = [emit(im.b.add("slice_channels", [x], {"start": g * cin_g, "stop": (g + 1) * cin_g},
                               name=f"{name}/group{g}/in"),
                      slice(g * cout_g, (g + 1) * cout_g), f"{name}/group{g}")
                 for g in range(groups)]
        name = im.b.add("concat", parts, name=name)
    im.out(outs[0], name, dtype, channels=cout if dtype == "bits" else None)


def _lce_bmaxpool2d(im, op, ins, outs):
    o = im.f.custom_options(op)
    x, spec = im.inp(ins[0], ("bits",))
    kernel = (im.option_int(o, "filter_height", 1), im.option_int(o, "filter_width", 1))
    strides = (im.option_int(o, "stride_height", 1), im.option_int(o, "stride_width", 1))
    pads = im._pads(im.option_int(o, "padding", 1), spec.shape[:2], kernel, strides, (1, 1))
    name = im.b.maxpool(x, kernel=kernel, strides=strides, pads=pads, name=im._node_name(outs[0]))
    im.out(outs[0], name, "bits", channels=spec.channels)


def _float_consts(**arrays):
    out = {}
    for key, arr in arrays.items():
        if arr is not None:
            a = np.ascontiguousarray(arr, dtype=np.float32)
            a.setflags(write=False)
            out[key] = a
    return out


#: TFLite op name -> handler. The one table of what the importer reads.
HANDLERS = {
    "CONV_2D": _conv_2d,
    "DEPTHWISE_CONV_2D": _depthwise_conv_2d,
    "FULLY_CONNECTED": _fully_connected,
    "ADD": _elementwise("add_float", "AddOptions"),
    "MUL": _elementwise("mul_float", "MulOptions"),
    "MINIMUM": _elementwise("minimum_float", None),
    "MAXIMUM": _elementwise("maximum_float", None),
    "PRELU": _prelu,
    "SPLIT": _split,
    "SPLIT_V": _split_v,
    "PAD": _pad,
    "PADV2": _pad,
    "MAX_POOL_2D": _pool("maxpool_float"),
    "AVERAGE_POOL_2D": _pool("avgpool_float"),
    "MEAN": _mean,
    "RESHAPE": _reshape,
    "SOFTMAX": _softmax,
    "RELU": _activation_op("relu"),
    "RELU6": _activation_op("relu6"),
    "RELU_N1_TO_1": _activation_op("relu_n1_to_1"),
    "TANH": _activation_op("tanh"),
    "LOGISTIC": _activation_op("logistic"),
    "ABS": _activation_op("abs"),
    "FLOOR": _activation_op("floor"),
    "ROUND": _activation_op("round"),
    "CONCATENATION": _concatenation,
    "DEQUANTIZE": _dequantize,
    "QUANTIZE": _quantize,
    "LceQuantize": _lce_quantize,
    "LceDequantize": _lce_dequantize,
    "LceBconv2d": _lce_bconv2d,
    "LceBMaxPool2d": _lce_bmaxpool2d,
}


#: Inputs each handler reads unconditionally (others: one).
MIN_INPUTS = {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 2, "ADD": 2, "MUL": 2, "PAD": 2,
              "PADV2": 2, "MEAN": 2, "LceBconv2d": 2, "MINIMUM": 2, "MAXIMUM": 2, "PRELU": 2, "SPLIT": 2,
              "SPLIT_V": 3}

#: The handlers that write several outputs (every other op writes one).
MULTI_OUTPUT = {"SPLIT", "SPLIT_V"}

#: float op -> its int8 handler, for the element-wise ops TFLite also runs on int8.
_INT8_ELEMENTWISE = {"add_float": _add_int8, "mul_float": _mul_int8}


#: Integer activation types: TensorType code -> name. int8 ones run through
#: the tfl_* ops (for the handlers in INT8_HANDLERS); uint8 and int16 do not.
_INTEGER_ACTIVATIONS = {3: "uint8", 7: "int16", 9: "int8"}

#: The handlers that read int8 activations (TFLite's integer kernels).
INT8_HANDLERS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MUL", "PAD", "PADV2",
                 "MAX_POOL_2D", "AVERAGE_POOL_2D", "MEAN", "RESHAPE", "CONCATENATION", "QUANTIZE",
                 "DEQUANTIZE", "SOFTMAX", "LceQuantize", "SPLIT", "SPLIT_V"}


def _unsupported_use(f: _File, name: str, ins) -> str | None:
    """What makes this use of a known op one bnnrt lacks, read from its constant
    inputs before anything is built (so the up-front check names it with the
    missing ops), or None."""
    def const(k):
        return f.tensors[ins[k]].data if len(ins) > k and ins[k] >= 0 else None
    if name in ("SPLIT", "SPLIT_V"):
        axis, x = (const(0), ins[1] if len(ins) > 1 else -1) if name == "SPLIT" else (const(2), ins[0])
        if axis is not None and axis.size == 1 and axis.dtype.kind in "iu" and x >= 0:
            rank = len(f.tensors[x].shape)
            if int(axis.reshape(-1)[0]) not in (rank - 1, -1):
                return f"axis {int(axis.reshape(-1)[0])} of rank {rank}"
    if name in ("PAD", "PADV2"):
        p = const(1)
        if p is not None and p.shape == (4, 2) and p[0].any():
            return "batch axis"
    return None


def _op_label(f: _File, i: int) -> str:
    """The op's name, marked " (int8)" (or uint8, int16) when it computes on
    integer activations, or with the use bnnrt lacks (``_unsupported_use``).
    Constants (weights) do not count, nor LCE's bit tensors (int32 words)."""
    name = f.op_name(i)
    ins, outs = f.op_io(i)
    use = _unsupported_use(f, name, ins)
    if use is not None:
        return f"{name} ({use})"
    acts = [f.tensors[t] for t in ins + outs if t >= 0 and f.tensors[t].data is None]
    kinds = sorted({_INTEGER_ACTIVATIONS[t.type_code] for t in acts if t.type_code in _INTEGER_ACTIVATIONS})
    return f"{name} ({', '.join(kinds)})" if kinds else name


def _supported_labels() -> set[str]:
    """The op labels (``_op_label``) bnnrt runs: every handled op on float or
    bit activations, the int8 handlers on int8 ones (no uint8, no int16)."""
    return set(HANDLERS) | {f"{op} (int8)" for op in INT8_HANDLERS if op in HANDLERS}


def _import(source, metadata) -> tuple:
    """(graph, the name the reader gave the source)."""
    data, name = read_bounded(source, MAX_FILE_BYTES)
    f = _File(data, name)
    fold_constants(f)
    check_supported(name, collections.Counter(_op_label(f, i) for i in range(len(f.ops)) if i not in f.folded_ops),
                    _supported_labels())
    return _Importer(f).run(metadata), name


def to_graph(source, metadata=None):
    return _import(source, metadata)[0]


def from_tflite(source, *, threads=None, metadata=None) -> Model:
    graph, name = _import(source, metadata)
    return Model(graph, threads=threads, name=name)
