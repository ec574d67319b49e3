"""A .tflite flatbuffer as plain Python data, and back.

The ``tflite`` package (2.18) only reads: it has no object API (no
``ModelT``) to edit a model and pack it again. ``read_model`` turns the parts
of a file bnnrt's importer looks at into dicts and lists (operator codes,
buffers, subgraph 0's tensors, operators with their builtin options as
``{field: value}`` and their custom options decoded from FlexBuffers, the
graph inputs and outputs); ``write_model`` builds a new flatbuffer from such a
description with ``flatbuffers.Builder``, so a mutator can change one field
semantically and still hand the importer a well-formed file.

Builtin options are read and written generically through the package's
generated code: the table class ``tflite.<Name>`` has one accessor per field
and the module has one ``<Name>Add<Field>(builder, value)`` per field, so no
list of fields is kept here.
"""

from __future__ import annotations

import flatbuffers
import numpy as np
import tflite
from flatbuffers import flexbuffers

#: BuiltinOptions union code -> table name (``Conv2DOptions`` ...).
OPTION_TABLES = {v: k for k, v in vars(tflite.BuiltinOptions).items() if not k.startswith("_")}


def _option_fields(table_name):
    """Field names of a builtin options table, from its generated ``Add`` functions."""
    prefix = f"{table_name}Add"
    return sorted(k[len(prefix):] for k in vars(tflite) if k.startswith(prefix))


def _read_options(op):
    code = op.BuiltinOptionsType()
    table = op.BuiltinOptions()
    if not code or table is None or code not in OPTION_TABLES:
        return code, None
    name = OPTION_TABLES[code]
    obj = getattr(tflite, name)()
    obj.Init(table.Bytes, table.Pos)
    fields = {}
    for field in _option_fields(name):
        if hasattr(obj, f"{field}AsNumpy"):          # a vector field (Reshape's new_shape ...)
            fields[field] = ([int(v) for v in getattr(obj, f"{field}AsNumpy")()]
                             if getattr(obj, f"{field}Length")() else [])
        elif hasattr(obj, field):
            fields[field] = getattr(obj, field)()
    return code, fields


def _numbers(obj, name, kind=int):
    if getattr(obj, f"{name}IsNone")() or not getattr(obj, f"{name}Length")():
        return None
    return [kind(v) for v in getattr(obj, f"{name}AsNumpy")()]


def read_model(data: bytes) -> dict:
    """The description of a .tflite file (subgraph 0 only, which is what bnnrt imports)."""
    m = tflite.Model.GetRootAsModel(data, 0)
    codes = []
    for i in range(m.OperatorCodesLength()):
        oc = m.OperatorCodes(i)
        codes.append({"builtin": oc.BuiltinCode(), "deprecated": oc.DeprecatedBuiltinCode(),
                      "custom": oc.CustomCode().decode("utf-8", "replace") if oc.CustomCode() else None,
                      "version": oc.Version()})
    buffers = []
    for i in range(m.BuffersLength()):
        b = m.Buffers(i)
        buffers.append(b.DataAsNumpy().tobytes() if b.DataLength() else b"")
    g = m.Subgraphs(0)
    tensors = []
    for i in range(g.TensorsLength()):
        t = g.Tensors(i)
        q = t.Quantization()
        quant = None
        if q is not None:
            quant = {"scale": _numbers(q, "Scale", float), "zero_point": _numbers(q, "ZeroPoint"),
                     "min": _numbers(q, "Min", float), "max": _numbers(q, "Max", float),
                     "dim": q.QuantizedDimension()}
        tensors.append({"name": (t.Name() or b"").decode("utf-8", "replace"),
                        "shape": [int(d) for d in t.ShapeAsNumpy()] if t.ShapeLength() else [],
                        "type": t.Type(), "buffer": t.Buffer(), "quant": quant})
    operators = []
    for i in range(g.OperatorsLength()):
        op = g.Operators(i)
        code, options = _read_options(op)
        custom = None
        if op.CustomOptionsLength():
            raw = bytes(op.CustomOptionsAsNumpy())
            try:
                custom = flexbuffers.Loads(raw)
            except Exception:  # noqa: BLE001 (the FlexBuffers reader raises anything; kept as bytes then)
                custom = raw
        operators.append({"opcode": op.OpcodeIndex(),
                          "inputs": [int(v) for v in op.InputsAsNumpy()] if op.InputsLength() else [],
                          "outputs": [int(v) for v in op.OutputsAsNumpy()] if op.OutputsLength() else [],
                          "options_type": code, "options": options, "custom": custom})
    return {"codes": codes, "buffers": buffers, "tensors": tensors, "operators": operators,
            "inputs": [int(v) for v in g.InputsAsNumpy()] if g.InputsLength() else [],
            "outputs": [int(v) for v in g.OutputsAsNumpy()] if g.OutputsLength() else []}


def _vector(b, values, dtype):
    return b.CreateNumpyVector(np.asarray(values, dtype=dtype))


def _table_vector(b, start, offsets):
    start(b, len(offsets))
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def _write_options(b, code, fields):
    name = OPTION_TABLES[code]
    vectors = {}
    for field, value in fields.items():
        if isinstance(value, list):
            vectors[field] = _vector(b, value, np.int32)
    getattr(tflite, f"{name}Start")(b)
    for field, value in fields.items():
        add = getattr(tflite, f"{name}Add{field}")
        add(b, vectors.get(field, value))
    return getattr(tflite, f"{name}End")(b)


def _custom_bytes(custom):
    if custom is None:
        return None
    if isinstance(custom, (bytes, bytearray)):
        return bytes(custom)
    return bytes(flexbuffers.Dumps(custom))


def write_model(desc: dict) -> bytes:
    """A .tflite flatbuffer from a description (``read_model``'s shape). Raises
    ``struct.error``, ``ValueError``, ``TypeError`` or ``OverflowError`` for a
    value its field cannot hold (an int8 field given 300): such a mutation
    cannot be written to a file."""
    T = tflite
    b = flatbuffers.Builder(1024)
    buffers = []
    for data in desc["buffers"]:
        vec = b.CreateByteVector(data) if data else None
        T.BufferStart(b)
        if vec is not None:
            T.BufferAddData(b, vec)
        buffers.append(T.BufferEnd(b))
    tensors = []
    for t in desc["tensors"]:
        name = b.CreateString(t["name"])
        shape = _vector(b, t["shape"], np.int32)
        quant = None
        if t["quant"] is not None:
            q = t["quant"]
            parts = {k: _vector(b, q[k], dt) for k, dt in (("scale", np.float32), ("zero_point", np.int64),
                                                            ("min", np.float32), ("max", np.float32))
                     if q[k] is not None}
            T.QuantizationParametersStart(b)
            for k, add in (("scale", T.QuantizationParametersAddScale),
                           ("zero_point", T.QuantizationParametersAddZeroPoint),
                           ("min", T.QuantizationParametersAddMin), ("max", T.QuantizationParametersAddMax)):
                if k in parts:
                    add(b, parts[k])
            T.QuantizationParametersAddQuantizedDimension(b, q["dim"])
            quant = T.QuantizationParametersEnd(b)
        T.TensorStart(b)
        T.TensorAddShape(b, shape)
        T.TensorAddType(b, t["type"])
        T.TensorAddBuffer(b, t["buffer"])
        T.TensorAddName(b, name)
        if quant is not None:
            T.TensorAddQuantization(b, quant)
        tensors.append(T.TensorEnd(b))
    operators = []
    for op in desc["operators"]:
        ins = _vector(b, op["inputs"], np.int32)
        outs = _vector(b, op["outputs"], np.int32)
        options = (_write_options(b, op["options_type"], op["options"])
                   if op["options"] is not None and op["options_type"] in OPTION_TABLES else None)
        custom = _custom_bytes(op["custom"])
        custom_vec = b.CreateByteVector(custom) if custom else None
        T.OperatorStart(b)
        T.OperatorAddOpcodeIndex(b, op["opcode"])
        T.OperatorAddInputs(b, ins)
        T.OperatorAddOutputs(b, outs)
        if options is not None:
            T.OperatorAddBuiltinOptionsType(b, op["options_type"])
            T.OperatorAddBuiltinOptions(b, options)
        if custom_vec is not None:
            T.OperatorAddCustomOptions(b, custom_vec)
        operators.append(T.OperatorEnd(b))
    tensor_vec = _table_vector(b, T.SubGraphStartTensorsVector, tensors)
    op_vec = _table_vector(b, T.SubGraphStartOperatorsVector, operators)
    g_ins = _vector(b, desc["inputs"], np.int32)
    g_outs = _vector(b, desc["outputs"], np.int32)
    g_name = b.CreateString("main")
    T.SubGraphStart(b)
    T.SubGraphAddTensors(b, tensor_vec)
    T.SubGraphAddInputs(b, g_ins)
    T.SubGraphAddOutputs(b, g_outs)
    T.SubGraphAddOperators(b, op_vec)
    T.SubGraphAddName(b, g_name)
    subgraph = T.SubGraphEnd(b)
    codes = []
    for c in desc["codes"]:
        custom = b.CreateString(c["custom"]) if c["custom"] is not None else None
        T.OperatorCodeStart(b)
        T.OperatorCodeAddDeprecatedBuiltinCode(b, c["deprecated"])
        T.OperatorCodeAddBuiltinCode(b, c["builtin"])
        T.OperatorCodeAddVersion(b, c["version"])
        if custom is not None:
            T.OperatorCodeAddCustomCode(b, custom)
        codes.append(T.OperatorCodeEnd(b))
    code_vec = _table_vector(b, T.ModelStartOperatorCodesVector, codes)
    sub_vec = _table_vector(b, T.ModelStartSubgraphsVector, [subgraph])
    buf_vec = _table_vector(b, T.ModelStartBuffersVector, buffers)
    desc_str = b.CreateString("bnnrt structure-aware fuzzing")
    T.ModelStart(b)
    T.ModelAddVersion(b, 3)
    T.ModelAddOperatorCodes(b, code_vec)
    T.ModelAddSubgraphs(b, sub_vec)
    T.ModelAddDescription(b, desc_str)
    T.ModelAddBuffers(b, buf_vec)
    b.Finish(T.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())
