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

Every op the file uses is checked before anything is built: a file with ops
bnnrt lacks raises one :class:`UnsupportedOpError` listing each with its count.
"""

from __future__ import annotations

import collections
import os

import numpy as np

from .._shapes import packed_bytes, same_pads
from ..errors import GraphError, ModelFormatError, ModelIOError, UnsupportedOpError
from ..graph import GraphBuilder, TensorSpec
from ..model import Model

#: TFLite TensorType -> numpy dtype (the types a Larq model's tensors have).
_TENSOR_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8}
_TYPE_NAMES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 9: "int8"}

#: TFLite ActivationFunctionType -> bnnrt activation name.
_ACTIVATIONS = {0: "none", 1: "relu", 2: "relu_n1_to_1", 3: "relu6", 4: "tanh"}

#: The same fused activations as a clamp of an integer (LCE applies them to y).
_Y_CLAMPS = {0: None, 1: (0, 2**31 - 1), 2: (-1, 1), 3: (0, 6)}

#: Reading a file larger than this is refused (Larq's largest zoo model is ~30 MB).
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

    def __init__(self, index, name, shape, type_code, data):
        self.index, self.name, self.shape, self.type_code, self.data = index, name, shape, type_code, data

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
        self.names: dict[int, str] = {}      # tflite tensor -> bnnrt tensor name
        self.specs: dict[int, TensorSpec] = {}
        self.consts: dict[int, np.ndarray] = {t.index: t.data for t in f.tensors if t.data is not None}
        # how many operators (and graph outputs) read each tensor: a producer may
        # absorb its only consumer
        self.uses = collections.Counter(i for ins, _ in f._io for i in ins if i >= 0)
        self.uses.update(f.outputs)

    # -- helpers
    def where(self, op_name, index):
        return f"{self.f.name}: operator {index} ({op_name})"

    def fail(self, msg):
        raise GraphError(f"{self._where}: {msg}")

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
        return TensorSpec((h, w, channels if channels is not None else c), dtype)

    def bind(self, tflite_index, name, spec):
        self.names[tflite_index] = name
        self.specs[tflite_index] = spec

    def inp(self, i, dtypes=("float32",)):
        if i not in self.names:
            if i in self.consts:
                self.fail(f"constant tensor {self.f.tensors[i]} used as an activation input")
            self.fail(f"tensor {self.f.tensors[i]} is used before it is computed")
        spec = self.specs[i]
        if spec.dtype not in dtypes:
            self.fail(f"input {self.f.tensors[i]} is {spec}, expected {' or '.join(dtypes)}")
        return self.names[i], spec

    def out(self, i, name, dtype="float32", channels=None):
        t = self.f.tensors[i]
        spec = self.spec_of(t, dtype, channels)
        self.bind(i, name, spec)
        return spec

    def _node_name(self, i):
        return self.f.tensors[i].name or f"t{i}"

    def _activation(self, code):
        if code not in _ACTIVATIONS:
            self.fail(f"fused activation {code} is not supported")
        return _ACTIVATIONS[code]

    def _pads(self, padding, in_hw, kernel_hw, strides, dilations):
        if padding == 1:     # VALID
            return (0, 0, 0, 0)
        if padding != 0:
            self.fail(f"unknown padding {padding}")
        top, bottom = same_pads(in_hw[0], kernel_hw[0], strides[0], dilations[0])
        left, right = same_pads(in_hw[1], kernel_hw[1], strides[1], dilations[1])
        return (top, bottom, left, right)

    def _check_output_shape(self, out_index, name):
        """The shape the converter computed must be the one TFLite recorded."""
        want = self.spec_of(self.f.tensors[out_index], self.specs[out_index].dtype,
                            self.specs[out_index].channels).shape
        got = self.specs[out_index].shape
        if want != got:
            self.fail(f"output {self.f.tensors[out_index]}: bnnrt computes {list(got)}")

    # -- the walk
    def run(self, metadata=None):
        f = self.f
        if len(f.inputs) != 1 or len(f.outputs) < 1:
            raise GraphError(f"{f.name}: bnnrt imports models with one input "
                             f"(this one has {len(f.inputs)}) and at least one output")
        t_in = f.tensors[f.inputs[0]]
        if t_in.type_code != 0:
            raise UnsupportedOpError(f"{f.name}: input {t_in} is {t_in.type_name}; bnnrt imports "
                                     "float32-input models")
        self._where = f.name
        spec = self.spec_of(t_in, "float32")
        self.bind(t_in.index, self.b.input("input", spec.shape), spec)
        for index, op in enumerate(f.ops):
            name = f.op_name(index)
            self._where = self.where(name, index)
            ins, outs = f.op_io(index)
            try:
                HANDLERS[name](self, op, ins, outs)
            except (GraphError, ModelFormatError):
                raise
            except Exception as e:   # the reader's accessors on a malformed table
                raise ModelFormatError(f"{self._where}: malformed operator ({type(e).__name__}: {e})") from None
            for o in outs:
                if o in self.specs:
                    self._check_output_shape(o, name)
        self._where = f.name
        missing = [f.tensors[o] for o in f.outputs if o not in self.names]
        if missing:
            raise GraphError(f"{f.name}: outputs {', '.join(map(str, missing))} are never computed")
        meta = {"name": os.path.splitext(os.path.basename(f.name))[0],
                "source": {"format": "tflite", "file": os.path.basename(f.name)}}
        outputs = [self.names[o] for o in f.outputs]
        graph = self.b.build(outputs, metadata=meta)
        last = {out: node.op for node in graph.nodes for out in node.outputs}
        if last.get(outputs[0]) == "softmax":     # predict() must not apply a second softmax
            graph.metadata["output"] = "probabilities"
        graph.metadata.update(metadata or {})
        return graph


# --------------------------------------------------------------------------
# op handlers: (importer, op, input tensor indices, output tensor indices)


def _conv_2d(im, op, ins, outs):
    x, spec = im.inp(ins[0])
    w = im.const(ins[1], "the filter").astype(np.float32)
    bias = im.const(ins[2], "the bias").astype(np.float32) if len(ins) > 2 and ins[2] >= 0 else None
    o = im.f.builtin_options(op, "Conv2DOptions")
    strides, dilations = (o.StrideH(), o.StrideW()), (o.DilationHFactor(), o.DilationWFactor())
    groups = spec.channels // w.shape[3] if w.shape[3] else 0
    if groups < 1 or groups * w.shape[3] != spec.channels:
        im.fail(f"filter {w.shape} does not fit the input {spec}")
    pads = im._pads(o.Padding(), spec.shape[:2], w.shape[1:3], strides, dilations)
    name = im.b.add("conv2d_float", [x], {"strides": list(strides), "dilations": list(dilations),
                                          "pads": list(pads), "groups": groups,
                                          "activation": im._activation(o.FusedActivationFunction())},
                    _float_consts(weights=w, bias=bias), name=im._node_name(outs[0]))
    im.out(outs[0], name)


def _depthwise_conv_2d(im, op, ins, outs):
    x, spec = im.inp(ins[0])
    w = im.const(ins[1], "the filter").astype(np.float32)        # (1, kh, kw, Cin * multiplier)
    bias = im.const(ins[2], "the bias").astype(np.float32) if len(ins) > 2 and ins[2] >= 0 else None
    o = im.f.builtin_options(op, "DepthwiseConv2DOptions")
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
    x, spec = im.inp(ins[0])
    w = im.const(ins[1], "the weights").astype(np.float32)         # (N, K)
    bias = im.const(ins[2], "the bias").astype(np.float32) if len(ins) > 2 and ins[2] >= 0 else None
    o = im.f.builtin_options(op, "FullyConnectedOptions")
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


def _elementwise(op_name, options):
    def handler(im, op, ins, outs):
        o = im.f.builtin_options(op, options)
        act = im._activation(o.FusedActivationFunction() if o is not None else 0)
        const = [i for i in ins if i in im.consts]
        if len(ins) != 2 or len(const) > 1:
            im.fail("takes two operands, at most one of them constant")
        if const:
            x, spec = im.inp(ins[0] if ins[1] == const[0] else ins[1])
            c = im.consts[const[0]].astype(np.float32)
            if c.size in (1, spec.channels) and (c.ndim == 0 or c.shape[-1] == c.size):
                operand = c.reshape(-1)
            elif c.size == int(np.prod(spec.shape)):
                operand = c.reshape(spec.shape)
            else:
                im.fail(f"constant operand of shape {c.shape} does not broadcast over {spec}")
            name = im.b.add(op_name, [x], {"activation": act}, {"operand": operand},
                            name=im._node_name(outs[0]))
        else:
            a, sa = im.inp(ins[0])
            b_, sb = im.inp(ins[1])
            if sa.shape != sb.shape:
                im.fail(f"operands {sa} and {sb} differ in shape (broadcasting is not supported)")
            if (op_name == "add_float" and act in ("none", "relu", "relu6", "relu_n1_to_1")
                    and _fuse_residual(im, ins, outs, act)):
                return
            name = im.b.add(op_name, [a, b_], {"activation": act}, name=im._node_name(outs[0]))
        im.out(outs[0], name)
    return handler


def _fuse_residual(im, ins, outs, act) -> bool:
    """ADD(bconv2d_float(x), r) -> bconv2d_float(x, skip=r), when the binary
    conv's output feeds only this ADD and r exists before the conv runs (the
    residual add of every Larq block: one pass over the output instead of two)."""
    for mine, other in ((ins[0], ins[1]), (ins[1], ins[0])):
        if im.uses[mine] != 1:
            continue
        found = im.b.producer(im.names[mine])
        if found is None or found[1].op != "bconv2d_float" or len(found[1].inputs) != 1:
            continue
        index, node = found
        src = im.b.producer(im.names[other])
        if src is not None and src[0] >= index:
            continue                  # the residual is computed after the conv
        if node.attrs.get("activation", "none") != "none":
            continue
        node.inputs.append(im.names[other])
        if act != "none":
            node.attrs["activation"] = act       # the ADD's fused activation, after the add
        im.bind(outs[0], im.names[mine], im.specs[mine])
        return True
    return False


def _pad(im, op, ins, outs):
    x, spec = im.inp(ins[0])
    p = im.const(ins[1], "the paddings").astype(np.int64)
    if p.shape != (4, 2) or p[0].any() or p[3].any() or (p < 0).any():
        im.fail(f"paddings {p.tolist()}: bnnrt pads height and width only")
    value = 0.0
    if len(ins) > 2 and ins[2] >= 0:
        value = float(im.const(ins[2], "the pad value").reshape(-1)[0])
    pads = [int(p[1, 0]), int(p[1, 1]), int(p[2, 0]), int(p[2, 1])]
    name = im.b.add("pad_float", [x], {"pads": pads, "value": value}, name=im._node_name(outs[0]))
    im.out(outs[0], name)


def _pool(op_name):
    def handler(im, op, ins, outs):
        x, spec = im.inp(ins[0])
        o = im.f.builtin_options(op, "Pool2DOptions")
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
    x, spec = im.inp(ins[0])
    axes = sorted(int(a) % 4 for a in im.const(ins[1], "the axes").reshape(-1))
    if axes != [1, 2]:
        im.fail(f"MEAN over axes {axes}: bnnrt averages over height and width only")
    name = im.b.add("mean_float", [x], name=im._node_name(outs[0]))
    im.out(outs[0], name)


def _reshape(im, op, ins, outs):
    x, spec = im.inp(ins[0], ("float32",))
    target = im.spec_of(im.f.tensors[outs[0]], spec.dtype).shape
    if int(np.prod(target)) != int(np.prod(spec.shape)):
        im.fail(f"cannot reshape {spec} to {list(target)}")
    if target == spec.shape:
        im.bind(outs[0], x, spec)           # a no-op: alias the tensor
        return
    name = im.b.add("reshape", [x], {"shape": list(target)}, name=im._node_name(outs[0]))
    im.out(outs[0], name)


def _softmax(im, op, ins, outs):
    x, spec = im.inp(ins[0])
    o = im.f.builtin_options(op, "SoftmaxOptions")
    beta = float(o.Beta()) if o is not None else 1.0
    name = im.b.add("softmax", [x], {"beta": beta}, name=im._node_name(outs[0]))
    im.out(outs[0], name)


def _activation_op(kind):
    def handler(im, op, ins, outs):
        x, spec = im.inp(ins[0])
        name = im.b.add("activation", [x], {"kind": kind}, name=im._node_name(outs[0]))
        im.out(outs[0], name)
    return handler


def _concatenation(im, op, ins, outs):
    o = im.f.builtin_options(op, "ConcatenationOptions")
    if o.Axis() not in (-1, 3):
        im.fail(f"concatenation along axis {o.Axis()}: bnnrt concatenates channels only")
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
    im.fail("DEQUANTIZE of an activation (int8 models) is not supported yet")


# -- LCE custom ops


def _lce_quantize(im, op, ins, outs):
    x, spec = im.inp(ins[0])
    name = im.b.sign_bits(x, name=im._node_name(outs[0]))
    im.out(outs[0], name, "bits", channels=spec.channels)


def _lce_dequantize(im, op, ins, outs):
    x, spec = im.inp(ins[0], ("bits",))
    name = im.b.dequantize(x, scale=1.0, name=im._node_name(outs[0]))
    im.out(outs[0], name, "float32", channels=spec.channels)


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
    cin = int(o.get("channels_in", spec.channels))
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
    strides = (int(o.get("stride_height", 1)), int(o.get("stride_width", 1)))
    dilations = (int(o.get("dilation_height_factor", 1)), int(o.get("dilation_width_factor", 1)))
    pad_value = int(o.get("pad_values", 0))
    pads = im._pads(int(o.get("padding", 1)), spec.shape[:2], (kh, kw), strides, dilations)
    if not any(pads):
        pad_value = 1                 # no padded taps: the value is irrelevant, 1 is the fast path
    act = int(o.get("fused_activation_function", 0))
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
    kernel = (int(o.get("filter_height", 1)), int(o.get("filter_width", 1)))
    strides = (int(o.get("stride_height", 1)), int(o.get("stride_width", 1)))
    pads = im._pads(int(o.get("padding", 1)), spec.shape[:2], kernel, strides, (1, 1))
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
    "CONCATENATION": _concatenation,
    "DEQUANTIZE": _dequantize,
    "LceQuantize": _lce_quantize,
    "LceDequantize": _lce_dequantize,
    "LceBconv2d": _lce_bconv2d,
    "LceBMaxPool2d": _lce_bmaxpool2d,
}


#: Integer activation types (int8 models: QUANTIZE/DEQUANTIZE at the edges,
#: integer tensors with zero points in between) bnnrt does not import yet.
_INTEGER_ACTIVATIONS = {3, 7, 9}        # uint8, int16, int8


def _op_kind(f: _File, i: int) -> str:
    """The op's name, marked " (int8)" when it computes on integer activations:
    the importer reads float models, and its error should say so per op.
    Constants (weights) do not count, nor LCE's bit tensors (int32 words)."""
    name = f.op_name(i)
    ins, outs = f.op_io(i)
    acts = [f.tensors[t] for t in ins + outs if t >= 0 and f.tensors[t].data is None]
    if any(t.type_code in _INTEGER_ACTIVATIONS for t in acts):
        return f"{name} (int8)"
    return name


def read(source) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "<bytes>"
    path = os.fspath(source)
    try:
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            raise ModelFormatError(f"{path}: {size:,} bytes is larger than any model bnnrt imports")
        with open(path, "rb") as fh:
            return fh.read(), path
    except OSError as e:
        raise ModelIOError(f"{path}: {e.strerror or e}") from None


def to_graph(source, metadata=None):
    data, name = read(source)
    f = _File(data, name)
    counts = collections.Counter(_op_kind(f, i) for i in range(len(f.ops)))
    missing = {op: n for op, n in counts.items() if op not in HANDLERS}
    if missing:
        listing = ", ".join(f"{op} x{n}" for op, n in sorted(missing.items()))
        raise UnsupportedOpError(f"{name}: bnnrt does not implement {len(missing)} op(s) this file uses: "
                                 f"{listing}")
    return _Importer(f).run(metadata)


def from_tflite(source, *, threads=None, metadata=None) -> Model:
    graph = to_graph(source, metadata)
    name = source if isinstance(source, (str, os.PathLike)) else "<bytes>"
    return Model(graph, threads=threads, name=os.fspath(name) if not isinstance(name, str) else name)
