"""ONNX -> bnnrt graph, for binary networks trained in PyTorch: exported with
``torch.onnx.export`` (both exporters), or as QONNX with Brevitas'
``export_qonnx``.

Such files spell a binary layer in float: the activation is ``Sign(x)``
(Bi-Real/ReActNet's straight-through estimator adds ``Sub(Sign(x), P) + P``
around it, P a polynomial of x) or QONNX's ``BipolarQuant``, and the weight
is a float tensor, folded or still the subgraph that computes ``mean|W| *
Sign(W)`` (or ``BipolarQuant(W)``) from the latent weight. The importer

* folds every subgraph whose inputs are all constant (initializers,
  ``Constant`` nodes, and ``Shape`` of a tensor whose shape bnnrt knows),
  in numpy (``FOLDERS``);
* reads ``Add(Sub(S, T), T)`` with S a binarized tensor as S (both STE
  spellings, then drops the polynomial nobody else reads) and Identity as an
  alias;
* writes a binarizer (``Sign``, ``Where(GreaterOrEqual(x, 0), 1, -1)``,
  ``BipolarQuant``) as ``sign_bits``, and a Conv/Gemm/MatMul reading bits
  whose weight has one magnitude per output channel as a binary conv: the
  magnitudes are the multiplier, a following BatchNormalization and the
  Conv's bias its epilogue, a following residual Add its skip, and a
  following binarizer makes it a bit output with thresholds;
* writes everything else with bnnrt's float ops, NCHW -> NHWC (an 8-bit
  QONNX ``Quant`` and the binary-weight conv reading it with int8 ops).

docs/onnx.md has the table of what maps to what. Every op of the file is
checked before anything is built: one :class:`UnsupportedOpError` lists each
op bnnrt lacks with its count.
"""
from __future__ import annotations

import collections
import os
import warnings

import numpy as np

from .._io import read_bounded
from .._shapes import same_pads
from ..errors import BnnrtError, GraphError, ModelFormatError
from ..graph import GraphBuilder, TensorSpec
from ..model import Model
from ..passes import fuse_residual_adds, fuse_sign_affines
from ..reference import pack_bits
from ._common import ShapeInference, TensorBindings, check_supported, source_metadata

#: Reading a file larger than this is refused (a Bi-Real-18 with its latent
#: weights is ~50 MB; see bnnrt._io for what else the reader refuses).
MAX_FILE_BYTES = 1 << 30

#: A binary layer's folded weight is one magnitude per output channel up to
#: this relative spread: the STE's ``(alpha sign(w) - clip(w)) + clip(w)``
#: rounds alpha differently per weight (measured: <= 2.7e-7).
MAGNITUDE_TOLERANCE = 1e-5


#: The domains QONNX's ops are written in (Brevitas' export_qonnx, older
#: Brevitas, FINN); the importer names their ops ``qonnx::Op``.
QONNX_DOMAINS = ("qonnx.custom_op.general", "onnx.brevitas", "finn.custom_op.general")

#: QONNX's integer quantizer (Brevitas' 8-bit input layer).
QUANT = "qonnx::Quant"
MULTI_THRESHOLD = "qonnx::MultiThreshold"

#: QONNX's binarizer: ``s * (x >= 0 ? +1 : -1)``, +1 at 0 as bnnrt's bits.
BIPOLAR_QUANT = "qonnx::BipolarQuant"


def _import_onnx():
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise ImportError("reading .onnx files needs the onnx package: pip install 'bnnrt[onnx]'") from None
    return onnx, numpy_helper


class _Node:
    """One ONNX node as the importer reads it (inputs rewritten through aliases)."""

    def __init__(self, index, op, name, inputs, outputs, attrs):
        self.index, self.op, self.name = index, op, name
        self.inputs, self.outputs, self.attrs = list(inputs), list(outputs), attrs

    def __str__(self):
        return f"node {self.index} ({self.op} {self.name!r})" if self.name else f"node {self.index} ({self.op})"


def _parse(data: bytes, name: str, base_dir=None):
    """What the importer reads of a serialized ONNX model (``_read_model``),
    or ModelFormatError; ``base_dir``: where its external data files are."""
    onnx, numpy_helper = _import_onnx()
    try:
        model = onnx.ModelProto()
        model.ParseFromString(data)
    except Exception as e:     # protobuf's DecodeError and friends
        raise ModelFormatError(f"{name}: not an ONNX model ({type(e).__name__}: {e})") from None
    return _read_model(model, name, onnx, numpy_helper, base_dir)


def _check_arity(onnx, n, i, opset, name):
    """The node's input and output counts against ONNX's own schema of its op
    at the file's opset (an op ONNX does not know is left to the precheck,
    which names it): a node short of a required input never reaches a
    handler or the constant folder."""
    try:
        schema = onnx.defs.get_schema(n.op_type, max(int(opset), 1), "")
    except Exception:       # noqa: BLE001 (onnx.defs.SchemaError: not an ONNX op at this opset)
        return
    where = f"{name}: node {i} ({n.op_type} {n.name!r})" if n.name else f"{name}: node {i} ({n.op_type})"
    required = [t for t in list(n.input)[:schema.min_input]]
    if not schema.min_input <= len(n.input) <= schema.max_input or not all(required):
        takes = (f"{schema.min_input}" if schema.min_input == schema.max_input else
                 f"{schema.min_input} to {schema.max_input} (the first {schema.min_input} named)")
        raise ModelFormatError(f"{where}: has {len(n.input)} inputs ({', '.join(map(repr, n.input))}); "
                               f"{n.op_type} takes {takes}")
    if not max(schema.min_output, 1) <= len(n.output) <= schema.max_output:
        raise ModelFormatError(f"{where}: has {len(n.output)} outputs; {n.op_type} makes "
                               f"{schema.min_output} to {schema.max_output}")


def _read_model(model, name, onnx, numpy_helper, base_dir=None):
    g = model.graph
    if not g.node or not g.output:
        raise ModelFormatError(f"{name}: not an ONNX model with a graph (no nodes or no outputs)")
    domains = {o.domain: o.version for o in model.opset_import}
    opset = domains.get("", domains.get("ai.onnx", 0))

    external_files = {}

    def external(t, where):
        """The array of a tensor stored beside the model (the dynamo exporter's
        ``NAME.onnx.data``): only for a model read from a path, and only from a
        file in the model's own directory."""
        info = {e.key: e.value for e in t.external_data}
        location = info.get("location", "")
        if base_dir is None:
            raise ModelFormatError(f"{name}: {where} {t.name!r} is stored in the external data file "
                                   f"{location!r}; import the model from its path, or save it with every "
                                   "tensor inline (onnx.save(..., save_as_external_data=False))")
        if not location or os.path.isabs(location) or os.path.basename(location) != location:
            raise ModelFormatError(f"{name}: {where} {t.name!r} refers to the external data file "
                                   f"{location!r}; bnnrt reads such files from the model's directory only")
        if location not in external_files:
            external_files[location] = read_bounded(os.path.join(base_dir, location), MAX_FILE_BYTES)[0]
        blob = external_files[location]
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type)).newbyteorder("<")
        count = int(np.prod(t.dims, dtype=np.int64))
        offset = int(info.get("offset", 0))
        length = int(info.get("length", count * dtype.itemsize))
        if length != count * dtype.itemsize or offset < 0 or offset + length > len(blob):
            raise ModelFormatError(f"{name}: {where} {t.name!r} of {count} x {dtype.name} does not fit "
                                   f"bytes {offset}..{offset + length} of {location!r} ({len(blob)} bytes)")
        return np.frombuffer(blob, dtype, count, offset).reshape(tuple(t.dims)).astype(dtype.newbyteorder("="))

    def tensor(t, where):
        try:
            if t.data_location == onnx.TensorProto.EXTERNAL:
                return external(t, where)
            return np.array(numpy_helper.to_array(t))
        except BnnrtError:
            raise
        except Exception as e:
            raise ModelFormatError(f"{name}: unreadable {where} {t.name!r} ({type(e).__name__}: {e})") from None

    consts = {t.name: tensor(t, "initializer") for t in g.initializer}
    nodes = []
    for i, n in enumerate(g.node):
        attrs = {}
        for a in n.attribute:
            try:
                value = onnx.helper.get_attribute_value(a)
            except Exception as e:
                raise ModelFormatError(f"{name}: node {i} ({n.op_type}) has an unreadable attribute "
                                       f"{a.name!r} ({e})") from None
            if isinstance(value, onnx.TensorProto):
                value = tensor(value, f"attribute {a.name} of node {i}")
            elif isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            attrs[a.name] = value
        # an op of another domain is named with it, so that the precheck
        # never takes it for ONNX's op of the same name
        if n.domain in ("", "ai.onnx"):
            op = n.op_type
            _check_arity(onnx, n, i, opset, name)
        elif n.domain in QONNX_DOMAINS:
            op = f"qonnx::{n.op_type}"
        else:
            op = f"{n.domain}::{n.op_type}"
        nodes.append(_Node(i, op, n.name, n.input, n.output, attrs))
    shapes = {}
    for vi in list(g.value_info) + list(g.output) + list(g.input):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    inputs = [vi.name for vi in g.input if vi.name not in consts]
    return model, nodes, consts, inputs, [o.name for o in g.output], shapes, opset


# --------------------------------------------------------------------------
# the constant folder: numpy evaluations of ops whose inputs are all constant


def _attr_or_input(node, ins, key, position):
    """An operand that older opsets give as an attribute and newer ones as an
    (optional) input: ReduceMean's axes, Unsqueeze's axes, Clip's bounds."""
    if len(ins) > position and ins[position] is not None:
        return ins[position]
    return node.attrs.get(key)


def _int_list(node, value, what, rank=None):
    """A 1-D integer operand (axes, a shape) as a list, each axis within
    [-rank, rank) when ``rank`` is given; GraphError naming the node if not."""
    a = np.asarray(value)
    if a.ndim > 1 or a.dtype.kind not in "iu":
        raise GraphError(f"{node}: {what} must be a list of integers, got {a.dtype}{list(a.shape)}")
    values = [int(v) for v in a.reshape(-1)]
    if rank is not None and any(not -rank <= v < rank for v in values):
        raise GraphError(f"{node}: {what} {values} out of range for a rank-{rank} tensor")
    return values


def _reshape(node, ins):
    data, shape = ins[0], _int_list(node, ins[1], "the shape")
    if not node.attrs.get("allowzero", 0):
        shape = [data.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return data.reshape(shape)


def _reduce_mean(node, ins):
    axes = _attr_or_input(node, ins, "axes", 1)
    keep = bool(node.attrs.get("keepdims", 1))
    if axes is None or len(np.atleast_1d(axes)) == 0:
        if node.attrs.get("noop_with_empty_axes", 0):
            return ins[0]
        axes = range(ins[0].ndim)
    axes = tuple(a % ins[0].ndim for a in _int_list(node, axes, "axes", ins[0].ndim))
    if len(set(axes)) != len(axes):
        raise GraphError(f"{node}: axes {list(axes)} name an axis twice")
    return np.mean(ins[0], axis=axes, keepdims=keep, dtype=ins[0].dtype)


def _clip(node, ins):
    lo, hi = _attr_or_input(node, ins, "min", 1), _attr_or_input(node, ins, "max", 2)
    x = ins[0]
    if lo is not None:
        x = np.maximum(x, np.asarray(lo, x.dtype))
    if hi is not None:
        x = np.minimum(x, np.asarray(hi, x.dtype))
    return x


def _cast(node, ins):
    from onnx.helper import tensor_dtype_to_np_dtype
    return ins[0].astype(tensor_dtype_to_np_dtype(node.attrs["to"]))


def _unsqueeze(node, ins):
    axes = _attr_or_input(node, ins, "axes", 1)
    if axes is None:
        raise GraphError(f"{node}: Unsqueeze without axes")
    axes = _int_list(node, axes, "axes")
    out = ins[0]
    rank = out.ndim + len(axes)
    axes = _int_list(node, axes, "axes", rank)
    for a in sorted(a % rank for a in axes):
        out = np.expand_dims(out, a)
    return out


def _squeeze(node, ins):
    axes = _attr_or_input(node, ins, "axes", 1)
    if axes is None:
        return np.squeeze(ins[0])
    axes = tuple(a % ins[0].ndim for a in _int_list(node, axes, "axes", ins[0].ndim))
    if any(ins[0].shape[a] != 1 for a in axes):
        raise GraphError(f"{node}: cannot squeeze axes {list(axes)} of a {list(ins[0].shape)} tensor")
    return np.squeeze(ins[0], axis=axes)


def _binary(fn):
    def fold(node, ins):
        a, b = ins[0], ins[1]
        out = fn(a, b)
        # ONNX keeps its operands' type where numpy would promote a scalar
        return out.astype(a.dtype) if out.dtype.kind == a.dtype.kind else out
    return fold


def _constant(node, ins):
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in node.attrs:
            v = node.attrs[key]
            if key.startswith("value_float"):
                return np.array(v, np.float32)
            if key.startswith("value_int"):
                return np.array(v, np.int64)
            return np.array(v)
    raise GraphError(f"{node}: a Constant without a numeric value (attributes {sorted(node.attrs)})")


def _int_range(signed, narrow, bits):
    """QONNX's integer range of a ``bits``-bit Quant."""
    if signed:
        return -(1 << (bits - 1)) + int(narrow), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1 - int(narrow)


#: QONNX Quant's rounding modes, as numpy functions
_ROUNDING = {"ROUND": np.round, "ROUND_TO_ZERO": np.fix, "FLOOR": np.floor, "CEIL": np.ceil}


def _quant(node, ins):
    """QONNX Quant: ``(clamp(round(x / s + z), lo, hi) - z) * s``."""
    x, s, z, bits = ins[0], ins[1], ins[2], ins[3]
    mode = str(node.attrs.get("rounding_mode", "ROUND")).upper()
    if mode not in _ROUNDING or bits.size != 1 or not 1 <= float(bits.reshape(-1)[0]) <= 32:
        raise GraphError(f"{node}: Quant with rounding_mode {mode} and bit width {bits.reshape(-1)[:4]} is "
                         "not supported")
    lo, hi = _int_range(node.attrs.get("signed", 1), node.attrs.get("narrow", 0), int(bits.reshape(-1)[0]))
    q = np.clip(_ROUNDING[mode](x / s + z), lo, hi)
    return ((q - z) * s).astype(x.dtype)


#: ONNX op -> numpy evaluation ``fold(node, input arrays) -> output array``,
#: applied when every input is constant.
FOLDERS = {
    "Constant": _constant,
    "Identity": lambda node, ins: ins[0],
    "Reshape": _reshape,
    "Flatten": lambda node, ins: ins[0].reshape(
        int(np.prod(ins[0].shape[:node.attrs.get("axis", 1) % max(ins[0].ndim, 1)])), -1),
    "Abs": lambda node, ins: np.abs(ins[0]),
    "Neg": lambda node, ins: np.negative(ins[0]),
    "Sign": lambda node, ins: np.sign(ins[0]),
    "ReduceMean": _reduce_mean,
    "Clip": _clip,
    "Cast": _cast,
    "Mul": _binary(np.multiply),
    "Add": _binary(np.add),
    "Sub": _binary(np.subtract),
    "Div": _binary(np.divide),
    "Less": lambda node, ins: np.less(ins[0], ins[1]),
    "Greater": lambda node, ins: np.greater(ins[0], ins[1]),
    "GreaterOrEqual": lambda node, ins: np.greater_equal(ins[0], ins[1]),
    "Where": lambda node, ins: np.where(ins[0], ins[1], ins[2]),
    "Transpose": lambda node, ins: np.transpose(ins[0], node.attrs.get("perm")),
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "CastLike": lambda node, ins: ins[0].astype(ins[1].dtype),
    "Pow": lambda node, ins: np.power(ins[0], ins[1]).astype(ins[0].dtype),
    QUANT: _quant,
    BIPOLAR_QUANT: lambda node, ins: np.where(ins[0] >= 0, 1, -1).astype(ins[0].dtype) * ins[1],
    "Shape": lambda node, ins: np.array(ins[0].shape, np.int64)[node.attrs.get("start", 0):node.attrs.get("end")],
    "Gather": lambda node, ins: np.take(ins[0], ins[1].astype(np.int64), axis=node.attrs.get("axis", 0)),
    "Concat": lambda node, ins: np.concatenate(ins, axis=node.attrs["axis"]),
    "Expand": lambda node, ins: np.broadcast_to(
        ins[0], np.broadcast_shapes(ins[0].shape, tuple(int(d) for d in ins[1]))).copy(),
}

#: The folder's ops whose output may be larger than their inputs: checked
#: against MAX_FOLDED_ELEMENTS before they run.
_BROADCASTING = ("Add", "Sub", "Mul", "Div", "Less", "Greater", "GreaterOrEqual", "Where", "Expand")

#: A folded constant may hold this many elements (256 MB of float32): a
#: Bi-Real-18's largest latent weight has 2.4 million.
MAX_FOLDED_ELEMENTS = 1 << 26

#: Ops that binarize: their output is a bit tensor in bnnrt.
_BINARIZERS = ("Sign", "Where", BIPOLAR_QUANT)

#: The activation dtypes a handler may find: float32, bits (binarized) and
#: int8 (a QONNX Quant's integers, with their scale).
_ANY = ("float32", "bits", "int8")


def _simplify(nodes, outputs):
    """Identity nodes become aliases, the STE ``Add(Sub(S, T), T)`` (S a
    binarizer's output, T the polynomial or x itself, either Add operand
    order) becomes S; then every node no graph output depends on is dropped.
    Returns (the live nodes, the graph outputs through the aliases)."""
    producer = {o: n for n in nodes for o in n.outputs}
    alias = {}

    def resolve(t):
        while t in alias:
            t = alias[t]
        return t
    for n in nodes:
        n.inputs = [resolve(t) if t else t for t in n.inputs]
        if n.op == "Identity" and len(n.inputs) == 1 and len(n.outputs) == 1:
            alias[n.outputs[0]] = n.inputs[0]
        elif n.op == "Add" and len(n.inputs) == 2 and len(n.outputs) == 1:
            for a, b in (n.inputs, n.inputs[::-1]):
                sub = producer.get(a)
                if sub is None or sub.op != "Sub" or len(sub.inputs) != 2 or sub.inputs[1] != b:
                    continue
                s = producer.get(sub.inputs[0])
                if s is not None and s.op in _BINARIZERS:
                    alias[n.outputs[0]] = sub.inputs[0]
                    break
    outputs = [resolve(t) for t in outputs]
    needed = set(outputs)
    live = []
    for n in reversed(nodes):
        if any(o in needed for o in n.outputs) and not (n.outputs[0] in alias and len(n.outputs) == 1):
            live.append(n)
            needed.update(t for t in n.inputs if t)
    return live[::-1], outputs


# --------------------------------------------------------------------------
# the walk


class _Importer:
    """Walks the live nodes in file order (ONNX stores them topologically),
    folding constant ones and writing one bnnrt layer per remaining node
    (a Conv with the BatchNormalization and residual Add it absorbs is one)."""

    def __init__(self, name, nodes, consts, inputs, outputs, shapes, opset):
        self.name, self.consts, self.shapes, self.opset = name, consts, shapes, opset
        self.nodes, self.outputs = _simplify(nodes, outputs)
        self.graph_inputs = inputs
        self.uses = collections.Counter(t for n in self.nodes for t in n.inputs if t)
        self.uses.update(self.outputs)
        self.readers = collections.defaultdict(list)
        for n in self.nodes:
            for t in n.inputs:
                if t:
                    self.readers[t].append(n)
        self.b = GraphBuilder()
        self.bound = TensorBindings(describe=self.describe, spec_of=self.spec_of, constants=self.consts,
                                    fail=self.fail, infer=ShapeInference(self.b).spec)
        #: ONNX rank of each activation (4: N, C, H, W; 2: N, C): bnnrt's
        #: per-sample (H, W, C) does not say whether (1, 1, C) was [1, C]
        self.ranks: dict[str, int] = {}
        #: flattened activations -> the (H, W, C) they were flattened from
        #: (ONNX flattens C, H, W; bnnrt's flatten H, W, C)
        self.flattened: dict[str, tuple] = {}
        #: binarizations pending their Where: GreaterOrEqual output -> x
        self.conditions: dict[str, str] = {}
        #: nodes written by an earlier handler (a BN or residual Add a Conv absorbed):
        #: node index -> what to do at its place (None: nothing)
        self.absorbed: dict[int, object] = {}
        #: bnnrt's float32 copy of a bit or int8 tensor a float op reads
        self.as_float: dict[str, str] = {}
        #: int8 tensors (a QONNX Quant's output) -> their scale
        self.int8_scales: dict[str, float] = {}
        self._where = name

    # -- helpers
    def fail(self, msg):
        raise GraphError(f"{self._where}: {msg}")

    def describe(self, t):
        shape = self.shapes.get(t)
        return f"{t!r}" + (f" {shape}" if shape else "")

    def spec_of(self, t, dtype, channels=None):
        """The per-sample spec the file records for ``t`` (NCHW [1, C, H, W] or
        [1, C] -> (H, W, C)), or None where it records no complete shape. A
        symbolic first dimension is the batch (``dynamic_axes``)."""
        shape = self.shapes.get(t)
        if not shape or any(d is None for d in shape[1:]):
            return None
        if shape[0] not in (1, None):
            self.fail(f"tensor {self.describe(t)} has batch {shape[0]}; bnnrt imports batch-1 files")
        if len(shape) == 4:
            return TensorSpec((shape[2], shape[3], shape[1]), dtype)
        if len(shape) == 2:
            return TensorSpec((1, 1, shape[1]), dtype)
        self.fail(f"tensor {self.describe(t)} has rank {len(shape)}; bnnrt runs NCHW (rank 4) and (N, C) tensors")

    def const(self, t, what):
        if not t or t not in self.consts:
            self.fail(f"{what} must be a constant tensor")
        return self.consts[t]

    def inp(self, t, dtypes=("float32",)):
        return self.bound.inp(t, dtypes)

    def act(self, t):
        """An activation as float32: a bit tensor read by a float op is written
        as its +1/-1 values, an int8 one (a QONNX Quant) as q * scale (once)."""
        name, spec = self.inp(t, _ANY)
        if spec.dtype != "float32":
            if t not in self.as_float:
                scale = 1.0 if spec.dtype == "bits" else self.int8_scales[t]
                self.as_float[t] = self.b.dequantize(name, scale=scale, name=f"{name}/float")
            name, spec = self.as_float[t], TensorSpec(spec.shape, "float32")
        return name, spec

    def out(self, t, name, dtype="float32", rank=4, like=None):
        """Bind the op's output ``t`` to ``name``; ``like``: the input whose ONNX
        layout (rank, flattening order) an element-wise op keeps."""
        if like is not None:
            rank = self.ranks.get(like, 4)
            if like in self.flattened:
                self.flattened[t] = self.flattened[like]
        self.ranks[t] = rank
        return self.bound.out(t, name, dtype)

    def alias(self, t, source, rank=None):
        self.bound.bind(t, self.bound.names[source], self.bound.specs[source])
        if source in self.int8_scales:
            self.int8_scales[t] = self.int8_scales[source]
        self.ranks[t] = rank if rank is not None else self.ranks.get(source, 4)
        if source in self.flattened:
            self.flattened[t] = self.flattened[source]

    def sole_reader(self, t, op):
        """The one node reading ``t`` if it is an ``op`` (and ``t`` is no graph output)."""
        readers = self.readers.get(t, [])
        if self.uses[t] == 1 and len(readers) == 1 and readers[0].op == op:
            return readers[0]
        return None

    def sole_binarizer(self, t):
        """The one node reading ``t`` if it only binarizes it (a Sign, or a
        BipolarQuant of scale 1), else None."""
        node = self.sole_reader(t, "Sign") or self.sole_reader(t, BIPOLAR_QUANT)
        if node is not None and node.op == BIPOLAR_QUANT and not _unit_scale(self, node):
            return None
        return node

    def node_name(self, node):
        return node.name or node.outputs[0]

    def is_const(self, t):
        return not t or t in self.consts

    # -- the walk
    def run(self, metadata=None):
        if len(self.graph_inputs) != 1:
            raise GraphError(f"{self.name}: bnnrt imports models with one input (this one has "
                             f"{len(self.graph_inputs)}: {', '.join(self.graph_inputs)})")
        t_in = self.graph_inputs[0]
        spec = self.spec_of(t_in, "float32")
        if spec is None:
            raise GraphError(f"{self.name}: input {t_in!r} has no fixed shape (bnnrt imports batch-1 "
                             "files with a known N, C, H, W)")
        self.ranks[t_in] = len(self.shapes[t_in])
        self.bound.bind(t_in, self.b.input("input", spec.shape), spec)
        for node in self.nodes:
            self._where = f"{self.name}: {node}"
            if node.index in self.absorbed:
                then = self.absorbed.pop(node.index)
                if then is not None:
                    then()
                continue
            if all(self.is_const(t) for t in node.inputs) and node.op in FOLDERS:
                self.fold(node)
                continue
            if (node.op == "Shape" and node.inputs[0] in self.bound
                    or node.op == "CastLike" and self.is_const(node.inputs[0]) and node.inputs[1] in self.bound):
                self.fold_with_activations(node)
                continue
            handler = HANDLERS.get(node.op)
            if handler is None:
                self.fail(f"{node.op} of an activation is not supported (bnnrt evaluates it on constants only)")
            try:
                handler(self, node)
            except BnnrtError:
                raise
            except Exception as e:     # a malformed node: missing inputs, attributes of the wrong type
                raise ModelFormatError(f"{self._where}: malformed node ({type(e).__name__}: {e})") from None
        self._where = self.name
        missing = [t for t in self.outputs if t not in self.bound]
        if missing:
            raise GraphError(f"{self.name}: outputs {', '.join(missing)} are never computed (constant "
                             "outputs are not supported)")
        outputs = []
        for t in self.outputs:
            name, spec = self.act(t)
            outputs.append(name)
        meta = source_metadata(self.name, "onnx")
        graph = fuse_sign_affines(fuse_residual_adds(self.b.build(outputs, metadata=meta)))
        last = {out: node.op for node in graph.nodes for out in node.outputs}
        if last.get(outputs[0]) == "softmax":     # predict() must not apply a second softmax
            graph.metadata["output"] = "probabilities"
        graph.metadata.update(metadata or {})
        return graph

    def fold(self, node):
        ins = [self.consts[t] if t else None for t in node.inputs]
        try:
            if node.op in _BROADCASTING:
                # a hostile file could broadcast two small constants into terabytes
                shapes = [a.shape for a in ins if a is not None]
                if node.op == "Expand":
                    shapes[1] = tuple(int(d) for d in ins[1].reshape(-1))
                size = int(np.prod(np.broadcast_shapes(*shapes), dtype=np.int64))
                if size > MAX_FOLDED_ELEMENTS:
                    self.fail(f"evaluating it on its constant inputs gives {size} elements "
                              f"(bnnrt folds at most {MAX_FOLDED_ELEMENTS})")
            value = FOLDERS[node.op](node, ins)
        except BnnrtError:
            raise
        except Exception as e:
            raise ModelFormatError(f"{self._where}: cannot evaluate it on its constant inputs "
                                   f"{[None if a is None else list(a.shape) for a in ins]} "
                                   f"({type(e).__name__}: {e})") from None
        self.consts[node.outputs[0]] = np.asarray(value)

    def fold_with_activations(self, node):
        """Fold a node that reads of its activation inputs only what bnnrt
        knows before running: their shape (Shape) or dtype (CastLike)."""
        ins = [np.zeros(self.onnx_shape(t), np.float32) if t in self.bound else self.consts[t]
               for t in node.inputs]
        self.consts[node.outputs[0]] = np.asarray(FOLDERS[node.op](node, ins))

    def onnx_shape(self, t):
        spec = self.bound.specs[t]
        h, w, c = spec.shape
        return (1, c) if self.ranks.get(t, 4) == 2 else (1, c, h, w)

    def per_channel(self, c, t, what):
        """A constant operand broadcast over the ONNX activation ``t`` as
        bnnrt's element-wise ops take it: one value, one per channel, or
        (H, W, C); a full constant equal over H and W becomes per channel."""
        rank = self.ranks.get(t, 4)
        shape = self.onnx_shape(t)
        c = np.asarray(c, np.float32)
        if c.ndim > rank:
            self.fail(f"{what} of shape {list(c.shape)} has more dimensions than {self.describe(t)}")
        try:
            full = np.broadcast_to(c.reshape((1,) * (rank - c.ndim) + c.shape), shape)
        except ValueError:
            self.fail(f"{what} of shape {list(c.shape)} does not broadcast over {self.describe(t)} "
                      f"{list(shape)}")
        if c.size == 1:
            return c.reshape(1)
        if rank == 2:
            if t in self.flattened and c.size > 1:     # ONNX's C, H, W order -> bnnrt's H, W, C
                h, w, ch = self.flattened[t]
                return np.ascontiguousarray(full[0].reshape(ch, h, w).transpose(1, 2, 0).reshape(-1))
            return np.ascontiguousarray(full[0])
        hwc = np.transpose(full[0], (1, 2, 0))
        if np.all(hwc == hwc[:1, :1, :]):
            return np.ascontiguousarray(hwc[0, 0])
        return np.ascontiguousarray(hwc)


def _frozen(arr, dtype=np.float32):
    a = np.ascontiguousarray(arr, dtype=dtype)
    a.setflags(write=False)
    return a


def _ints(node, key, n, default):
    v = node.attrs.get(key, default)
    v = [int(x) for x in v] if isinstance(v, (list, tuple)) else [int(v)] * n
    return v


def _window(im, node, in_hw, kernel):
    """(strides, dilations, bnnrt pads) of a Conv or pool node over an input of
    ``in_hw`` with a ``kernel`` (h, w) window; ONNX orders pads [top, left,
    bottom, right], bnnrt [top, bottom, left, right]. ``auto_pad`` SAME_UPPER
    puts an odd pad after, SAME_LOWER before."""
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    if auto_pad not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
        im.fail(f"auto_pad={auto_pad} is not an ONNX padding")
    if node.attrs.get("ceil_mode", 0):
        im.fail("ceil_mode=1 is not supported")
    strides = _ints(node, "strides", 2, 1)
    dilations = _ints(node, "dilations", 2, 1)
    p = _ints(node, "pads", 4, 0)
    if len(strides) != 2 or len(dilations) != 2 or len(p) != 4 or len(kernel) != 2:
        im.fail(f"kernel {list(kernel)}, strides {strides}, dilations {dilations}, pads {p}: bnnrt runs 2-D windows")
    for what, values in (("strides", strides), ("dilations", dilations), ("kernel", kernel)):
        if not all(1 <= v <= 1 << 16 for v in values):
            im.fail(f"{what} {list(values)} must be integers from 1 to 65536")
    if auto_pad == "VALID":
        p = [0, 0, 0, 0]
    elif auto_pad != "NOTSET":
        (t, b), (l, r) = (same_pads(n, k, s, d) for n, k, s, d in zip(in_hw, kernel, strides, dilations))
        p = [t, l, b, r] if auto_pad == "SAME_UPPER" else [b, r, t, l]
    if not all(0 <= v <= 1 << 16 for v in p):
        im.fail(f"pads {p} must be integers from 0 to 65536")
    return strides, dilations, [p[0], p[2], p[1], p[3]]


# --------------------------------------------------------------------------
# handlers: (importer, node)


def _batchnorm_consts(im, bn, channels):
    """(scale, shift) per channel of an inference BatchNormalization."""
    if len(bn.inputs) < 5 or any(bn.outputs[1:]):
        im.fail(f"{bn}: only inference BatchNormalization (5 inputs, one output) is supported")
    g, b, m, v = (im.const(t, f"{bn} parameter").astype(np.float64).reshape(-1) for t in bn.inputs[1:5])
    if not all(a.shape == (channels,) for a in (g, b, m, v)):
        im.fail(f"{bn}: parameters of shapes {[a.shape for a in (g, b, m, v)]} for {channels} channels")
    if bn.attrs.get("training_mode", 0):
        im.fail(f"{bn}: training_mode=1 is not supported")
    scale = g / np.sqrt(v + float(bn.attrs.get("epsilon", 1e-5)))
    if not np.all(np.isfinite(scale)):
        im.fail(f"{bn}: variance + epsilon is not positive in every channel")
    return scale, b - m * scale


def _conv_like(im, node, x_id, w, bias, strides, dilations, pads, groups, rank):
    """Conv, Gemm and MatMul: ``w`` (Cout, kh, kw, Cin/groups) float. A
    following BatchNormalization is folded in. A bit input with one weight
    magnitude per output channel is a binary conv (``_binary_conv``); else a
    float conv, with a following Relu as its activation."""
    cout = int(w.shape[0])
    bias = np.zeros(cout) if bias is None else np.asarray(bias, np.float64).reshape(-1)
    if bias.shape != (cout,):
        im.fail(f"bias of shape {list(bias.shape)} for {cout} output channels")
    scale, last = np.ones(cout), node
    bn = im.sole_reader(node.outputs[0], "BatchNormalization")
    if bn is not None and bn.inputs[0] == node.outputs[0]:
        s, shift = _batchnorm_consts(im, bn, cout)
        scale, bias = s, bias * s + shift
        im.absorbed[bn.index] = None
        last = bn
    _, spec = im.inp(x_id, _ANY)
    binary = _binary_weights(im, w, groups) if spec.dtype == "bits" else None
    if binary is not None:
        signs, magnitude = binary
        return _binary_conv(im, node, last, x_id, signs, magnitude * scale, bias,
                            {"cin": spec.channels, "strides": strides, "dilations": dilations, "pads": pads,
                             "pad_value": 0 if any(pads) else 1}, rank)
    if spec.dtype == "int8" and groups == 1:
        found, _ = _one_magnitude(w)
        if found is not None:
            signs, magnitude = found
            return _int8_binary_conv(im, node, last, x_id, signs, magnitude * scale, bias, strides, dilations,
                                     pads, rank)
    x, spec = im.act(x_id)
    act = "none"
    relu = im.sole_reader(last.outputs[0], "Relu")
    if relu is not None:
        act, last = "relu", relu
        im.absorbed[relu.index] = None
    weights = w.astype(np.float64) * scale[:, None, None, None]
    attrs = {"strides": strides, "dilations": dilations, "pads": pads, "groups": groups, "activation": act}
    name = im.b.add("conv2d_float", [x], attrs, {"weights": _frozen(weights), "bias": _frozen(bias)},
                    name=im.node_name(node))
    im.out(last.outputs[0], name, rank=rank)


def _binary_conv(im, node, last, x_id, signs, multiplier, bias, attrs, rank):
    """A binary conv computing ``y * multiplier + bias`` at ``last``'s output
    (the conv or its BN). Read only by a Sign, it is a bit output with
    thresholds; read by a residual Add, the Add is its skip; else a float output."""
    x, _ = im.inp(x_id, ("bits",))
    out = last.outputs[0]
    name = im.node_name(node)
    sign = im.sole_binarizer(out)
    if sign is not None:
        k = signs[0].size
        thresholds, flip = _thresholds(multiplier, bias, k)
        signs = np.where(flip[:, None, None, None], -signs, signs)
        consts = {"weights": _frozen(pack_bits(signs < 0), np.uint8), "thresholds": _frozen(thresholds, np.int32)}
        im.absorbed[sign.index] = None
        im.out(sign.outputs[0], im.b.add("bconv2d", [x], dict(attrs, output="bits"), consts, name=name), "bits",
               rank=rank)
        return
    consts = {"weights": _frozen(pack_bits(signs < 0), np.uint8), "multiplier": _frozen(multiplier),
              "bias": _frozen(bias)}
    add = im.sole_reader(out, "Add")
    residual = None
    if add is not None:
        residual = add.inputs[1] if add.inputs[0] == out else add.inputs[0]
    if residual is None or im.is_const(residual) or residual == out:
        im.out(out, im.b.add("bconv2d_float", [x], attrs, consts, name=name), rank=rank)
        return

    def with_skip():
        # written at the Add's place: the residual may be computed after the conv
        r, _ = im.act(residual)
        im.out(add.outputs[0], im.b.add("bconv2d_float", [x, r], attrs, consts, name=name), rank=rank)
    im.absorbed[add.index] = with_skip


def _thresholds(multiplier, bias, k):
    """Per channel, the integer threshold on ``y`` (in [-k, k]) of
    ``float32(y) * m + b >= 0`` computed as bconv2d_float computes it (two
    float32 roundings), and where the weights are negated to make it
    ``y >= threshold`` (m < 0). m = 0: a constant channel."""
    m = np.asarray(multiplier, np.float32)
    b = np.asarray(bias, np.float32)
    flip = m < 0
    y = np.arange(-k - 1, k + 2, dtype=np.float32)
    thresholds = np.empty(m.shape, np.int64)
    for c in range(m.size):
        # a negated channel computes y' = -y: the condition on y' is (-y') * m + b >= 0
        ys = -y if flip[c] else y
        plus = (ys * m[c]) + b[c] >= 0
        if not plus.any():
            thresholds[c] = k + 1
        else:
            first = int(np.argmax(plus))
            thresholds[c] = int(y[first])
    return thresholds, flip


def _one_magnitude(w):
    """(+1/-1 weights, magnitude per output channel) where every output
    channel's weights have one magnitude (within MAGNITUDE_TOLERANCE) and none
    is 0, else None; with the channel that fails and why."""
    flat = np.abs(w.reshape(w.shape[0], -1).astype(np.float64))
    lo, hi = flat.min(axis=1), flat.max(axis=1)
    bad = (lo <= 0) | (hi - lo > MAGNITUDE_TOLERANCE * hi)
    if not bad.any():
        return (np.sign(w), (lo + hi) / 2), None
    c = int(np.argmax(bad))
    return None, f"output channel {c} has weight magnitudes from {lo[c]:.6g} to {hi[c]:.6g}"


def _binary_weights(im, w, groups):
    """(+1/-1 weights, magnitude per output channel) of a conv reading bits,
    or None where the weights are not binary (the conv then runs in float,
    with a warning). A zero weight is refused: Sign made it ternary."""
    zero = np.argwhere(w.reshape(w.shape[0], -1) == 0)
    if groups == 1 and len(zero):
        c, k = (int(v) for v in zero[0])
        im.fail(f"binarized conv with {len(zero)} zero weight(s) (output channel {c}, tap {k}, ...): "
                "Sign of a zero latent weight is 0, a ternary weight bnnrt's binary kernels cannot hold "
                "(torch's random inits hold an exact 0 about once in 2^24 values; give such weights a sign "
                "in PyTorch, e.g. w[w == 0] = 1e-6, and export again)")
    found, why = _one_magnitude(w) if groups == 1 else (None, f"groups={groups}")
    if found is None:
        warnings.warn(f"{im._where}: reads a binarized tensor but its weights are not binary ({why}); "
                      "it runs as a float conv", stacklevel=3)
    return found


def _int8_binary_conv(im, node, last, x_id, signs, multiplier, bias, strides, dilations, pads, rank):
    """An int8 activation (a QONNX Quant, Brevitas' input layer) times binary
    weights: ``conv2d_int8`` with +1/-1 weights. Read only by a binarizer (CNV's
    BN -> BipolarQuant), it writes bits with integer thresholds on its int32
    sums, exactly the float epilogue's signs; else int32, then ``dequantize``
    with the input scale times the multiplier per channel and the bias as
    offset, at ``last``'s output."""
    x, _ = im.inp(x_id, ("int8",))
    name = im.node_name(node)
    scale = np.asarray(multiplier, np.float32) * np.float32(im.int8_scales[x_id])
    sign = im.sole_binarizer(last.outputs[0])
    if sign is not None:
        thresholds, flip = _thresholds(scale, bias, signs[0].size * 128)
        signs = np.where(flip[:, None, None, None], -signs, signs)
        im.absorbed[sign.index] = None
        bits = im.b.conv2d_int8(x, signs.astype(np.int8), output="bits", thresholds=thresholds.astype(np.int32),
                                strides=strides, dilations=dilations, pads=pads, name=name)
        im.out(sign.outputs[0], bits, "bits", rank=rank)
        return
    acc = im.b.conv2d_int8(x, signs.astype(np.int8), output="int32", strides=strides, dilations=dilations,
                           pads=pads, name=name)
    y = im.b.dequantize(acc, scale=multiplier * im.int8_scales[x_id], offset=bias, name=f"{name}/dequantize")
    im.out(last.outputs[0], y, rank=rank)


def _conv(im, node):
    if len(node.inputs) < 2:
        im.fail("Conv needs an input and a weight")
    w = im.const(node.inputs[1], "the weight")
    if w.ndim != 4:
        im.fail(f"weight of shape {list(w.shape)}: bnnrt runs 2-D convolutions")
    _, spec = im.inp(node.inputs[0], _ANY)
    strides, dilations, pads = _window(im, node, spec.shape[:2], w.shape[2:])
    groups = int(node.attrs.get("group", 1))
    if groups < 1 or spec.channels != groups * w.shape[1] or w.shape[0] % groups:
        im.fail(f"weight of shape {list(w.shape)} with group={groups} does not fit the input "
                f"{im.describe(node.inputs[0])} of {spec.channels} channels")
    if "kernel_shape" in node.attrs and list(node.attrs["kernel_shape"]) != list(w.shape[2:]):
        im.fail(f"kernel_shape {node.attrs['kernel_shape']} disagrees with the weight {list(w.shape)}")
    bias = im.const(node.inputs[2], "the bias") if len(node.inputs) > 2 and node.inputs[2] else None
    _conv_like(im, node, node.inputs[0], np.transpose(w, (0, 2, 3, 1)), bias, strides, dilations, pads,
               groups, 4)


def _dense_weights(im, x_id, w_nk):
    """Dense weights (N, K) for bnnrt's flattened input: ONNX flattened C, H, W,
    bnnrt's ``flatten`` H, W, C, so the columns are permuted to match."""
    _, spec = im.inp(x_id, _ANY)
    if im.ranks.get(x_id, 4) != 2:
        im.fail(f"the dense layer's input {im.describe(x_id)} is not 2-D")
    k = spec.channels
    if w_nk.shape[1] != k:
        im.fail(f"weights of shape {list(w_nk.shape)} do not fit the input of {k} values")
    if x_id in im.flattened:
        h, w, c = im.flattened[x_id]
        w_nk = w_nk.reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(-1, k)
    return w_nk.reshape(w_nk.shape[0], 1, 1, k)


def _gemm(im, node):
    a, b = node.inputs[0], node.inputs[1]
    if node.attrs.get("transA", 0):
        im.fail("transA=1 is not supported")
    w = im.const(b, "the weight B").astype(np.float64)
    if w.ndim != 2:
        im.fail(f"weight B of shape {list(w.shape)} is not 2-D")
    w = w if node.attrs.get("transB", 0) else w.T
    w = w * float(node.attrs.get("alpha", 1.0))
    bias = None
    if len(node.inputs) > 2 and node.inputs[2]:
        c = im.const(node.inputs[2], "the bias C").astype(np.float64)
        if c.size not in (1, w.shape[0]):
            im.fail(f"bias C of shape {list(c.shape)} does not fit the {w.shape[0]} outputs")
        bias = np.broadcast_to(c.reshape(-1), (w.shape[0],))
        bias = bias * float(node.attrs.get("beta", 1.0))
    _conv_like(im, node, a, _dense_weights(im, a, w), bias, [1, 1], [1, 1], [0, 0, 0, 0], 1, 2)


def _matmul(im, node):
    a, b = node.inputs[0], node.inputs[1]
    w = im.const(b, "the weight (second operand)").astype(np.float64)
    if w.ndim != 2:
        im.fail(f"weight of shape {list(w.shape)} is not 2-D")
    _conv_like(im, node, a, _dense_weights(im, a, w.T), None, [1, 1], [1, 1], [0, 0, 0, 0], 1, 2)


def _batchnorm(im, node):
    x, spec = im.act(node.inputs[0])
    scale, shift = _batchnorm_consts(im, node, spec.channels)
    # BatchNorm1d of a flattened tensor: its channels are ONNX's C, H, W elements
    shape = (-1,) if im.ranks.get(node.inputs[0], 4) == 2 else (-1, 1, 1)
    scale, shift = (im.per_channel(a.reshape(shape), node.inputs[0], "the BatchNormalization") for a in (scale, shift))
    name = im.node_name(node)
    y = im.b.add("mul_float", [x], {}, {"operand": _frozen(scale)}, name=name + "/scale")
    im.out(node.outputs[0], im.b.add("add_float", [y], {}, {"operand": _frozen(shift)}, name=name),
           like=node.inputs[0])


def _sign(im, node):
    x, spec = im.act(node.inputs[0])
    im.out(node.outputs[0], im.b.sign_bits(x, name=im.node_name(node)), "bits",
           like=node.inputs[0])


def _unit_scale(im, node):
    """Whether a BipolarQuant's scale is the constant 1 (Brevitas' bnn_pynq:
    ``scaling_const=1.0``)."""
    scale = node.inputs[1] if len(node.inputs) > 1 else ""
    return bool(scale) and scale in im.consts and bool(np.all(im.consts[scale] == 1))


def _bipolar_quant(im, node):
    if not _unit_scale(im, node):
        im.fail("BipolarQuant of an activation with a scale other than the constant 1 is not supported")
    x, spec = im.act(node.inputs[0])
    im.out(node.outputs[0], im.b.sign_bits(x, name=im.node_name(node)), "bits", like=node.inputs[0])


def _multi_threshold(im, node):
    """QONNX's bipolar ``MultiThreshold(x, T)`` with one threshold per channel
    (or one for all), ``out_scale`` 2 and ``out_bias`` -1: +1 iff x >= t, i.e.
    the sign of x - t, which for finite floats is negative exactly when x < t
    (a difference of two floats is 0 only when they are equal): ``sign_bits``
    with bias -t. Other forms (several thresholds: multi-bit activations, or
    {0, 1} outputs) are not binary and refused."""
    x, spec = im.act(node.inputs[0])
    t = np.asarray(im.const(node.inputs[1], "the thresholds"), np.float32)
    scale, offset = float(node.attrs.get("out_scale", 1.0)), float(node.attrs.get("out_bias", 0.0))
    layout = str(node.attrs.get("data_layout", "NCHW")).upper()
    if t.ndim != 2 or t.shape[1] != 1 or t.shape[0] not in (1, spec.channels) or (scale, offset) != (2.0, -1.0):
        im.fail(f"MultiThreshold with thresholds {t.dtype}{list(t.shape)}, out_scale {scale:g}, out_bias "
                f"{offset:g}: bnnrt reads the bipolar form (one threshold per channel, out_scale 2, out_bias -1)")
    if layout not in ("NCHW", "NHWC", "NC"):
        im.fail(f"MultiThreshold with data_layout {layout!r}")
    if not np.all(np.isfinite(t)):
        im.fail("MultiThreshold thresholds hold NaN or infinite values")
    c = spec.channels
    bias = np.broadcast_to(-t[:, 0], (c,)).astype(np.float32)
    if im.flattened.get(node.inputs[0]) and t.shape[0] > 1:
        im.fail("a per-channel MultiThreshold of a flattened tensor is not supported")
    name = im.b.add("sign_bits", [x], {}, {"multiplier": np.ones(c, np.float32), "bias": bias},
                    name=im.node_name(node))
    im.out(node.outputs[0], name, "bits", like=node.inputs[0])


def _quant_handler(im, node):
    """A QONNX Quant of an activation to signed 8 bits with one scale, zero
    point 0 and half-even rounding is bnnrt's ``quantize`` (an int8 tensor
    whose real value is q * scale); a conv reading it runs on int8."""
    x, spec = im.act(node.inputs[0])
    s, z, bits = (np.asarray(im.const(t, f"the Quant's {what}"), np.float64).reshape(-1)
                  for t, what in zip(node.inputs[1:4], ("scale", "zero point", "bit width")))
    mode = str(node.attrs.get("rounding_mode", "ROUND")).upper()
    if (s.size != 1 or z.size != 1 or bits.size != 1 or z[0] != 0 or bits[0] != 8 or mode != "ROUND"
            or not node.attrs.get("signed", 1) or node.attrs.get("narrow", 0) or not s[0] > 0):
        im.fail(f"Quant of an activation with scale {s[:4].tolist()}, zero point {z[:4].tolist()}, bit width "
                f"{bits[:4].tolist()}, signed={node.attrs.get('signed', 1)}, narrow={node.attrs.get('narrow', 0)}, "
                f"rounding {mode}: bnnrt reads one positive scale, zero point 0, 8 bits signed, not narrow, ROUND")
    im.out(node.outputs[0], im.b.quantize(x, scale=float(s[0]), name=im.node_name(node)), "int8",
           like=node.inputs[0])
    im.int8_scales[node.outputs[0]] = float(np.float32(s[0]))


def _greater_or_equal(im, node):
    """``x >= 0`` is half a binarization, the Where after it the other half."""
    if not im.is_const(node.inputs[1]) or np.any(im.consts[node.inputs[1]] != 0):
        im.fail("GreaterOrEqual of an activation is supported against 0 only (a binarization with Where)")
    im.act(node.inputs[0])
    im.conditions[node.outputs[0]] = node.inputs[0]


def _where(im, node):
    cond, a, b = node.inputs[:3]
    if cond not in im.conditions or not (im.is_const(a) and im.is_const(b)) \
            or np.any(im.consts[a] != 1) or np.any(im.consts[b] != -1):
        im.fail("Where is supported as the binarization Where(x >= 0, 1, -1) only")
    src = im.conditions[cond]
    x, spec = im.act(src)
    im.out(node.outputs[0], im.b.sign_bits(x, name=im.node_name(node)), "bits", like=src)


def _elementwise(onnx_op):
    def handler(im, node):
        a, b = node.inputs[:2]
        name = im.node_name(node)
        if im.is_const(a) and im.is_const(b):
            im.fail("both operands are constant")
        if not im.is_const(a) and not im.is_const(b):
            if onnx_op not in ("Add", "Mul"):
                im.fail(f"{onnx_op} of two activations is not supported")
            (xa, sa), (xb, sb) = im.act(a), im.act(b)
            if sa.shape != sb.shape or im.ranks.get(a, 4) != im.ranks.get(b, 4):
                im.fail(f"operands {im.describe(a)} and {im.describe(b)} differ in shape "
                        "(broadcasting is not supported)")
            if im.flattened.get(a) != im.flattened.get(b):
                im.fail(f"operands {im.describe(a)} and {im.describe(b)} are flattened from different "
                        "shapes (their elements are in different orders in bnnrt)")
            op = "add_float" if onnx_op == "Add" else "mul_float"
            im.out(node.outputs[0], im.b.add(op, [xa, xb], {}, name=name), like=a)
            return
        x_id, c_id = (a, b) if im.is_const(b) else (b, a)
        if onnx_op in ("Sub", "Div") and x_id != a:
            im.fail(f"{onnx_op} of a constant by an activation is not supported")
        x, spec = im.act(x_id)
        c = im.per_channel(im.consts[c_id], x_id, "the constant operand").astype(np.float64)
        if onnx_op == "Div" and not np.all(c):
            im.fail("divides by a constant that holds 0")
        op, c = {"Add": ("add_float", c), "Sub": ("add_float", -c), "Mul": ("mul_float", c),
                 "Div": ("mul_float", 1 / c)}[onnx_op]
        im.out(node.outputs[0], im.b.add(op, [x], {}, {"operand": _frozen(c)}, name=name),
               like=x_id)
    return handler


def _relu(im, node):
    x, spec = im.act(node.inputs[0])
    im.out(node.outputs[0], im.b.add("activation", [x], {"kind": "relu"}, name=im.node_name(node)),
           like=node.inputs[0])


def _prelu(im, node):
    x, spec = im.act(node.inputs[0])
    slope = im.per_channel(im.const(node.inputs[1], "the slope"), node.inputs[0], "the slope")
    if slope.ndim != 1:
        im.fail(f"a slope that varies over H and W ({list(im.consts[node.inputs[1]].shape)}) is not supported")
    im.out(node.outputs[0], im.b.add("prelu", [x], {}, {"slope": _frozen(slope)}, name=im.node_name(node)),
           like=node.inputs[0])


def _softmax(im, node):
    rank = im.ranks.get(node.inputs[0], 4)
    if int(node.attrs.get("axis", -1 if im.opset >= 13 else 1)) % rank != 1:
        im.fail(f"Softmax along axis {node.attrs.get('axis')}: bnnrt's softmax is over channels")
    x, spec = im.act(node.inputs[0])
    im.out(node.outputs[0], im.b.softmax(x, name=im.node_name(node)), like=node.inputs[0])


def _pool(kind):
    def handler(im, node):
        _, spec = im.inp(node.inputs[0], _ANY)
        kernel = [int(k) for k in node.attrs.get("kernel_shape", [])]
        strides, dilations, pads = _window(im, node, spec.shape[:2], kernel)
        if dilations != [1, 1]:
            im.fail(f"dilations {dilations} in a pool are not supported")
        attrs = {"kernel": kernel, "strides": strides, "pads": pads}
        name = im.node_name(node)
        if kind == "max" and spec.dtype == "bits":       # max of +1/-1 values: the bit maxpool
            x, _ = im.inp(node.inputs[0], ("bits",))
            im.out(node.outputs[0], im.b.add("maxpool", [x], attrs, name=name), "bits")
            return
        if kind == "average" and any(pads) and node.attrs.get("count_include_pad", 0):
            im.fail("count_include_pad=1 with padding is not supported (bnnrt averages the valid taps)")
        x, spec = im.act(node.inputs[0])
        op = "maxpool_float" if kind == "max" else "avgpool_float"
        im.out(node.outputs[0], im.b.add(op, [x], attrs, name=name))
    return handler


def _global_average(im, node):
    x, spec = im.act(node.inputs[0])
    im.out(node.outputs[0], im.b.add("mean_float", [x], name=im.node_name(node)))


def _reduce_mean(im, node):
    x_id = node.inputs[0]
    axes = _attr_or_input(node, [None] + [im.consts.get(t) for t in node.inputs[1:]], "axes", 1)
    if len(node.inputs) > 1 and node.inputs[1] and node.inputs[1] not in im.consts:
        im.fail("the axes must be constant")
    rank = im.ranks.get(x_id, 4)
    if axes is None or sorted(int(a) % rank for a in np.atleast_1d(axes)) != [2, 3] or rank != 4:
        im.fail(f"ReduceMean over axes {None if axes is None else list(np.atleast_1d(axes))}: "
                "bnnrt averages over H and W only")
    x, spec = im.act(x_id)
    keep = bool(node.attrs.get("keepdims", 1))
    im.out(node.outputs[0], im.b.add("mean_float", [x], name=im.node_name(node)), rank=4 if keep else 2)


def _flatten_to(im, node, x_id):
    """A batch-1 activation to [1, K]: an alias when it is (1, 1, C) already,
    else bnnrt's ``flatten``, remembering the order the file flattened in."""
    name, spec = im.inp(x_id, _ANY)
    if spec.dtype == "int8":
        name, spec = im.act(x_id)
    if spec.shape[:2] == (1, 1):
        im.alias(node.outputs[0], x_id, rank=2)
        return
    out = im.b.flatten(name, name=im.node_name(node))
    im.out(node.outputs[0], out, spec.dtype, rank=2)
    im.flattened[node.outputs[0]] = spec.shape


def _flatten(im, node):
    if node.attrs.get("axis", 1) != 1:
        im.fail(f"Flatten with axis={node.attrs.get('axis')} is not supported (axis 1 only)")
    _flatten_to(im, node, node.inputs[0])


def _reshape_handler(im, node):
    x_id = node.inputs[0]
    target = [int(d) for d in im.const(node.inputs[1], "the shape").reshape(-1)]
    im.inp(x_id, _ANY)
    shape = list(im.onnx_shape(x_id))
    if not node.attrs.get("allowzero", 0):
        target = [shape[i] if d == 0 and i < len(shape) else d for i, d in enumerate(target)]
    total = int(np.prod(shape))
    if len(target) == 2 and target[0] == 1 and target[1] in (-1, total):
        _flatten_to(im, node, x_id)
        return
    if target == shape:
        im.alias(node.outputs[0], x_id)
        return
    im.fail(f"Reshape of {im.describe(x_id)} {shape} to {target}: bnnrt reshapes to [1, -1] only")


def _concat(im, node):
    rank = im.ranks.get(node.inputs[0], 4)
    if int(node.attrs.get("axis", 1)) % rank != 1:
        im.fail(f"Concat along axis {node.attrs.get('axis')}: bnnrt concatenates channels only")
    if any(t in im.flattened for t in node.inputs):
        im.fail("Concat of flattened tensors is not supported (bnnrt flattens in H, W, C order)")
    specs = [im.inp(t, _ANY)[1] for t in node.inputs]
    bits = all(s.dtype == "bits" for s in specs) and all(s.channels % 8 == 0 for s in specs[:-1])
    xs = [im.inp(t, ("bits",))[0] if bits else im.act(t)[0] for t in node.inputs]
    im.out(node.outputs[0], im.b.add("concat", xs, name=im.node_name(node)), "bits" if bits else "float32",
           rank=rank)


#: ONNX op -> handler for nodes reading activations. The precheck accepts
#: these and the constant folder's ops (``FOLDERS``).
HANDLERS = {
    "Conv": _conv,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "BatchNormalization": _batchnorm,
    "Sign": _sign,
    BIPOLAR_QUANT: _bipolar_quant,
    QUANT: _quant_handler,
    MULTI_THRESHOLD: _multi_threshold,
    "GreaterOrEqual": _greater_or_equal,
    "Where": _where,
    "Add": _elementwise("Add"),
    "Sub": _elementwise("Sub"),
    "Mul": _elementwise("Mul"),
    "Div": _elementwise("Div"),
    "Relu": _relu,
    "PRelu": _prelu,
    "Softmax": _softmax,
    "MaxPool": _pool("max"),
    "AveragePool": _pool("average"),
    "GlobalAveragePool": _global_average,
    "ReduceMean": _reduce_mean,
    "Flatten": _flatten,
    "Reshape": _reshape_handler,
    "Concat": _concat,
}


def _import(source, metadata):
    """(graph, the name the reader gave the source)."""
    onnx, numpy_helper = _import_onnx()
    if isinstance(source, onnx.ModelProto):
        name = source.graph.name or "<ModelProto>"
        parsed = _read_model(source, name, onnx, numpy_helper)
    else:
        data, name = read_bounded(source, MAX_FILE_BYTES)
        base_dir = os.path.dirname(os.path.abspath(name)) if isinstance(source, (str, os.PathLike)) else None
        parsed = _parse(data, name, base_dir)
    _, nodes, consts, inputs, outputs, shapes, opset = parsed
    check_supported(name, collections.Counter(n.op for n in nodes), set(HANDLERS) | set(FOLDERS))
    return _Importer(name, nodes, consts, inputs, outputs, shapes, opset).run(metadata), name


def to_graph(source, metadata=None):
    return _import(source, metadata)[0]


def from_onnx(source, *, threads=None, metadata=None) -> Model:
    graph, name = _import(source, metadata)
    return Model(graph, threads=threads, name=name)
