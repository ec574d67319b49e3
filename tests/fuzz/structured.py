"""Structure-aware mutation of .bnn and .tflite model files.

Each mutator parses a valid seed into its structure (the .bnn JSON document
and data section via ``bnnrt.format.unpack``; a .tflite flatbuffer via
``tflite_model.read_model``), changes one field with a meaning (a shape, a
dtype, an array offset, a tensor index, an attribute or builtin option, a
quantization parameter, the graph's shape), and writes a well-formed file
again (``bnnrt.format.pack`` repairs the checksum, ``write_model`` builds a
new flatbuffer), so that every mutation reaches the checks behind the parsers
instead of stopping at a checksum or a flatbuffer offset.

Besides hostile edits, a share of the cases are equivalent rewrites (nodes
in another order, tensors renamed, names repeated as TFLite allows, float
weights stored as int8 with a scale): those must load and give the seed's
outputs. ``sweep_cases`` makes every single-field edit of every seed in turn.

``make_case(seeds, seed, index)`` is deterministic: the same (seed, index)
always gives the same file and the same list of mutation descriptions.
"""

from __future__ import annotations

import copy
import glob
import json
import math
import os
import struct

import numpy as np

from bnnrt import format as fmt

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

#: Integers that sit on the edges bnnrt's checks (and its C kernels) care about.
INTS = [0, 1, -1, 2, 3, 7, 8, 9, 16, 31, 32, 33, 63, 64, 127, 128, -128, -129, 255, 256, 1000, 4096,
        30001, 32767, 65536, 2 ** 31 - 1, 2 ** 31, -2 ** 31, 2 ** 32, 2 ** 53 + 1, 2 ** 63 - 1, 2 ** 63,
        2 ** 64, 10 ** 400]
FLOATS = [0.0, -0.0, 0.5, -1.0, 1e-300, 5e-324, 1e-45, 1e-38, 1e38, 3.5e38, 1e300, math.nan, math.inf,
          -math.inf]
#: Values of the wrong JSON type for any field.
ODD = [None, True, False, "x", "", "\ud800", [], {}, [1], [1, 2, 3], {"a": 1}, [[1]], 10 ** 400]
STRINGS = ["bits", "int8", "int32", "float32", "none", "relu", "relu6", "tanh", "logistic", "ruy", "double",
           "SAME", "image", "probabilities", "logits"]


class Skip(Exception):
    """The drawn mutation does not apply to this file (no such field): draw again."""


def _pick(rng, seq):
    if not len(seq):
        raise Skip
    return seq[int(rng.integers(len(seq)))]


def _value_like(rng, old):
    """A hostile replacement for a JSON value: same type mostly, any type sometimes."""
    r = rng.random()
    if r < 0.15:
        return copy.deepcopy(_pick(rng, ODD))
    if isinstance(old, bool):
        return _pick(rng, INTS[:3] + [not old])
    if isinstance(old, int):
        return _pick(rng, INTS) if r < 0.8 else _pick(rng, FLOATS)
    if isinstance(old, float):
        return _pick(rng, FLOATS) if r < 0.8 else _pick(rng, INTS)
    if isinstance(old, str):
        return _pick(rng, STRINGS)
    if isinstance(old, list):
        new = list(old)
        if new and r < 0.6:
            i = int(rng.integers(len(new)))
            new[i] = _value_like(rng, new[i])
        elif r < 0.75:
            new = new[:-1]
        elif r < 0.9:
            new = new + [new[-1] if new else 1]
        else:
            new = [_pick(rng, INTS)] * len(new)
        return new
    if isinstance(old, dict):
        return {k: _value_like(rng, v) for k, v in old.items()}
    return _pick(rng, INTS)


# --------------------------------------------------------------------------
# .bnn: mutations of the JSON document (and of the data section)

BNN_DTYPES = ["float32", "int8", "int32", "bits", "uint8", "float64", "bit", ""]
ARRAY_CODES = list(fmt.ARRAY_DTYPES)


def _node(doc, rng, need=None):
    nodes = [n for n in doc["nodes"] if need is None or need(n)]
    return _pick(rng, nodes)


def _tensors(doc):
    """Every tensor name: graph inputs, then each node's outputs in order."""
    names = [e["name"] for e in doc["inputs"]]
    for n in doc["nodes"]:
        names += n["outputs"]
    return names


def bnn_attr_value(doc, blob, rng):
    n = _node(doc, rng, lambda n: n.get("attrs"))
    key = _pick(rng, sorted(n["attrs"]))
    old = n["attrs"][key]
    n["attrs"][key] = new = _value_like(rng, old)
    return f"node {n['name']!r} ({n['op']}) attrs.{key}: {old!r} -> {new!r}"


def bnn_attr_geometry(doc, blob, rng):
    """Strides, pads, kernels, dilations set to 0, -1 or huge, on one axis or all."""
    keys = ("strides", "pads", "kernel", "dilations", "groups", "cin", "shape")
    n = _node(doc, rng, lambda n: any(k in n.get("attrs", {}) for k in keys))
    key = _pick(rng, [k for k in keys if k in n["attrs"]])
    old = n["attrs"][key]
    v = _pick(rng, [0, -1, 1, 2, 3, 16, 255, 30000, 2 ** 31 - 1, 2 ** 31, 2 ** 62, 10 ** 400])
    if isinstance(old, list) and old:
        new = list(old)
        if rng.random() < 0.5:
            new[int(rng.integers(len(new)))] = v
        else:
            new = [v] * len(new)
    else:
        new = v
    n["attrs"][key] = new
    return f"node {n['name']!r} ({n['op']}) attrs.{key}: {old!r} -> {new!r}"


def bnn_attr_numeric(doc, blob, rng):
    """Scales, multipliers, shifts, zero points, clamp ranges, betas, pad values at their limits."""
    words = ("scale", "beta", "value", "multiplier", "shift", "zero_point", "clamp", "left_shift", "pad_value")
    n = _node(doc, rng, lambda n: any(any(w in k for w in words) for k in n.get("attrs", {})))
    key = _pick(rng, [k for k in sorted(n["attrs"]) if any(w in k for w in words)])
    old = n["attrs"][key]
    pool = FLOATS + INTS if rng.random() < 0.5 else INTS + FLOATS[:6]
    if isinstance(old, list) and old:
        new = list(old)
        if rng.random() < 0.3:
            new = new[::-1]                         # an empty clamp range [hi, lo]
        else:
            new[int(rng.integers(len(new)))] = _pick(rng, pool)
    else:
        new = _pick(rng, pool)
    n["attrs"][key] = new
    return f"node {n['name']!r} ({n['op']}) attrs.{key}: {old!r} -> {new!r}"


def bnn_attr_swap(doc, blob, rng):
    """An attribute key another op has, added to (or one removed from) a node."""
    n = _node(doc, rng)
    attrs = n.setdefault("attrs", {})
    if attrs and rng.random() < 0.3:
        key = _pick(rng, sorted(attrs))
        del attrs[key]
        return f"node {n['name']!r} ({n['op']}) attrs.{key} removed"
    donor = _node(doc, rng, lambda m: m.get("attrs"))
    key = _pick(rng, sorted(donor["attrs"]))
    attrs[key] = copy.deepcopy(donor["attrs"][key])
    return f"node {n['name']!r} ({n['op']}) attrs.{key} = {attrs[key]!r} (from {donor['op']})"


def bnn_input_shape(doc, blob, rng):
    e = _pick(rng, doc["inputs"])
    old = list(e["shape"])
    r = rng.random()
    if r < 0.6:
        new = list(old)
        new[int(rng.integers(len(new)))] = _pick(rng, [0, 1, 2, 3, 31, 33, 1000, 30001, 2 ** 31, 2 ** 40, -1])
    elif r < 0.8:
        new = old + [_pick(rng, [1, 2, 3])]
    else:
        new = old[:-1] or [1]
    e["shape"] = new
    return f"input {e['name']!r} shape {old} -> {new}"


def bnn_input_dtype(doc, blob, rng):
    e = _pick(rng, doc["inputs"])
    old, e["dtype"] = e["dtype"], _pick(rng, BNN_DTYPES)
    return f"input {e['name']!r} dtype {old!r} -> {e['dtype']!r}"


def bnn_array_reshape(doc, blob, rng):
    """An array's shape changed; the same element count most often, so the
    bounds check passes and the op's own shape checks must catch it."""
    i = int(rng.integers(len(doc["arrays"]))) if doc["arrays"] else _pick(rng, [])
    a = doc["arrays"][i]
    old = list(a["shape"])
    count = int(np.prod(old)) if old else 1
    r = rng.random()
    if r < 0.4 and len(old) > 1:
        new = [old[j] for j in rng.permutation(len(old))]
    elif r < 0.6:
        new = [count]
    elif r < 0.75:
        new = [1] + old
    elif r < 0.9:
        new = [d for d in old if d != 1] or [count]
    else:
        new = old[:-1] + [max(0, old[-1] - 1)] if old else [0]
    a["shape"] = new
    return f"array {i} shape {old} -> {new}"


def bnn_array_dtype(doc, blob, rng):
    """An array read as another dtype, its shape adjusted to the same bytes where it divides."""
    if not doc["arrays"]:
        raise Skip
    i = int(rng.integers(len(doc["arrays"])))
    a = doc["arrays"][i]
    old, new = a["dtype"], _pick(rng, ARRAY_CODES)
    size_old, size_new = fmt.ARRAY_DTYPES[old].itemsize, fmt.ARRAY_DTYPES[new].itemsize
    shape = list(a["shape"])
    if shape and (shape[-1] * size_old) % size_new == 0:
        shape[-1] = shape[-1] * size_old // size_new
    a["dtype"], a["shape"] = new, shape
    return f"array {i} dtype {old} -> {new}, shape {shape}"


def bnn_array_offset(doc, blob, rng):
    if not doc["arrays"]:
        raise Skip
    i = int(rng.integers(len(doc["arrays"])))
    a = doc["arrays"][i]
    old = a["offset"]
    r = rng.random()
    if r < 0.5:
        a["offset"] = _pick(rng, doc["arrays"])["offset"]       # aliases another array
    elif r < 0.8:
        a["offset"] = int(rng.integers(0, max(1, len(blob) // 8))) * 8
    else:
        a["offset"] = _pick(rng, [-8, 4, 2 ** 63, 2 ** 64 - 8, len(blob)])
    return f"array {i} offset {old} -> {a['offset']}"


def bnn_array_values(doc, blob, rng):
    """Extreme values written into one array of the data section."""
    if not doc["arrays"]:
        raise Skip
    i = int(rng.integers(len(doc["arrays"])))
    a = doc["arrays"][i]
    dt = fmt.ARRAY_DTYPES[a["dtype"]]
    count = int(np.prod(a["shape"])) if a["shape"] else 1
    if count == 0 or a["offset"] + count * dt.itemsize > len(blob):
        raise Skip
    arr = np.frombuffer(blob, dt, count, a["offset"]).copy()
    if dt.kind == "f":
        v = _pick(rng, [np.nan, np.inf, -np.inf, 3.4e38, 1e-45, 0.0, -1e30])
    else:
        info = np.iinfo(dt)
        v = _pick(rng, [info.min, info.max, 0, -1 if info.min else 1])
    if rng.random() < 0.5:
        arr[:] = v
    else:
        arr[int(rng.integers(count))] = v
    out = bytearray(blob)
    out[a["offset"]:a["offset"] + arr.nbytes] = arr.tobytes()
    blob[:] = out
    return f"array {i} ({a['dtype']}{a['shape']}) values set to {v!r}"


def bnn_const_index(doc, blob, rng):
    n = _node(doc, rng, lambda n: n.get("consts"))
    key = _pick(rng, sorted(n["consts"]))
    old = n["consts"][key]
    r = rng.random()
    if r < 0.2:
        del n["consts"][key]
        return f"node {n['name']!r} ({n['op']}) const {key!r} removed"
    n["consts"][key] = int(rng.integers(len(doc["arrays"]))) if r < 0.8 else _pick(rng, [-1, len(doc["arrays"]), True])
    return f"node {n['name']!r} ({n['op']}) const {key!r}: array {old} -> {n['consts'][key]!r}"


def bnn_op_swap(doc, blob, rng):
    n = _node(doc, rng)
    old = n["op"]
    n["op"] = _pick(rng, sorted({m["op"] for m in doc["nodes"]}) + ["no_such_op", "", "__init__"])
    return f"node {n['name']!r} op {old!r} -> {n['op']!r}"


def bnn_rewire(doc, blob, rng):
    """A node input renamed: to a dangling name, a graph input, an earlier or a
    later tensor (a use before definition, or a cycle), or the node's own output."""
    n = _node(doc, rng, lambda n: n["inputs"])
    j = int(rng.integers(len(n["inputs"])))
    old = n["inputs"][j]
    names = _tensors(doc)
    r = rng.random()
    if r < 0.2:
        new = "no_such_tensor"
    elif r < 0.4 and n["outputs"]:
        new = n["outputs"][0]                        # a self-loop
    else:
        new = _pick(rng, names)
    n["inputs"][j] = new
    return f"node {n['name']!r} ({n['op']}) input {j}: {old!r} -> {new!r}"


def bnn_node_order(doc, blob, rng):
    nodes = doc["nodes"]
    if len(nodes) < 2:
        raise Skip
    r = rng.random()
    if r < 0.4:
        i, j = (int(v) for v in rng.choice(len(nodes), 2, replace=False))
        nodes[i], nodes[j] = nodes[j], nodes[i]
        return f"nodes {i} and {j} swapped"
    if r < 0.6:
        nodes.reverse()
        return "node order reversed"
    perm = rng.permutation(len(nodes))
    doc["nodes"] = [nodes[int(k)] for k in perm]
    return "node order shuffled"


def bnn_node_dup(doc, blob, rng):
    """A node deleted, or repeated (its tensor produced twice), or two nodes given one name."""
    nodes = doc["nodes"]
    i = int(rng.integers(len(nodes))) if nodes else _pick(rng, [])
    r = rng.random()
    if r < 0.35:
        gone = nodes.pop(i)
        return f"node {gone['name']!r} ({gone['op']}) deleted"
    if r < 0.7:
        nodes.insert(i + 1, copy.deepcopy(nodes[i]))
        return f"node {nodes[i]['name']!r} ({nodes[i]['op']}) repeated"
    j = int(rng.integers(len(nodes)))
    nodes[j]["name"] = nodes[i]["name"]
    return f"node {j} renamed to {nodes[i]['name']!r} (the name of node {i})"


def bnn_outputs(doc, blob, rng):
    names = _tensors(doc)
    r = rng.random()
    old = list(doc["outputs"])
    if r < 0.25:
        doc["outputs"] = old + [_pick(rng, names)]
    elif r < 0.45:
        doc["outputs"] = old + old
    elif r < 0.6:
        doc["outputs"] = [doc["inputs"][0]["name"]] if doc["inputs"] else []
    elif r < 0.75:
        doc["outputs"] = ["no_such_tensor"]
    elif r < 0.85:
        doc["outputs"] = []
    else:
        doc["outputs"] = list(names)                 # every tensor is an output
    return f"outputs {old} -> {doc['outputs'][:8]}{'...' if len(doc['outputs']) > 8 else ''}"


def bnn_inputs(doc, blob, rng):
    if not doc["inputs"]:
        raise Skip
    r = rng.random()
    first = doc["inputs"][0]
    if r < 0.4:
        doc["inputs"].append(copy.deepcopy(first))
        return f"graph input {first['name']!r} listed twice"
    if r < 0.6:
        extra = dict(first, name=_pick(rng, _tensors(doc)[1:] or ["x"]))
        doc["inputs"].append(extra)
        return f"graph input added with the name of tensor {extra['name']!r}"
    if r < 0.8:
        doc["inputs"].append(dict(first, name="unused_input", shape=[30001, 30001, 3]))
        return "unused graph input of 30001x30001x3 added"
    doc["inputs"] = []
    return "graph inputs removed"


def _chain_node(doc, rng):
    """A node whose output may be fed to a copy of itself (one input, one
    output, same spec): the link of a long chain."""
    same = {"maxpool": {"kernel": [1, 1], "strides": [1, 1], "pads": [0, 0, 0, 0]},
            "maxpool_float": {"kernel": [1, 1], "strides": [1, 1], "pads": [0, 0, 0, 0]},
            "activation": None}
    # not add_float: a chain of x + x doubles its input 3000 times, an honest overflow to inf
    return _node(doc, rng, lambda n: n["op"] in same and len(n["outputs"]) == 1), same


def bnn_long_chain(doc, blob, rng):
    """Thousands of copies of a shape-preserving node, each reading the one before."""
    n, same = _chain_node(doc, rng)
    length = _pick(rng, [500, 3000, 20000])
    attrs = same[n["op"]] if same[n["op"]] is not None else n.get("attrs", {})
    prev = n["outputs"][0]
    chain = []
    for k in range(length):
        name = f"chain_{k}"
        chain.append({"op": n["op"], "name": name, "inputs": [prev], "outputs": [name], "attrs": attrs})
        prev = name
    doc["nodes"] += chain
    doc["outputs"] = doc["outputs"] + [prev]
    return f"chain of {length} {n['op']} nodes after {n['name']!r}"


def bnn_fan_out(doc, blob, rng):
    """Thousands of nodes reading one tensor, every one a graph output."""
    n, same = _chain_node(doc, rng)
    width = _pick(rng, [300, 2000, 10000])
    attrs = same[n["op"]] if same[n["op"]] is not None else n.get("attrs", {})
    src = n["outputs"][0]
    fan = [{"op": n["op"], "name": f"fan_{k}", "inputs": [src], "outputs": [f"fan_{k}"],
            "attrs": attrs} for k in range(width)]
    doc["nodes"] += fan
    doc["outputs"] = doc["outputs"] + [f["name"] for f in fan]
    return f"{width} {n['op']} nodes reading {src!r}, each an output"


METADATA_INPUT = [
    "not a mapping", [0.5], 7, None,
    {"scale": "0.5"}, {"scale": [1, 2]}, {"scale": {"a": 1}}, {"scale": 10 ** 400}, {"scale": math.nan},
    {"scale": 1e300}, {"scale": 0}, {"scale": -1.0},
    {"mean": [0.5, 0.5]}, {"mean": "x"}, {"mean": [10 ** 400]}, {"mean": [math.inf]},
    {"std": [0.0]}, {"std": [1e-300]}, {"std": [0, 0, 0]}, {"std": []}, {"std": [-1.0]},
    {"shape": [30001, 30001, 1]}, {"shape": "x"}, {"shape": [0]}, {"color": "CMYK"}, {"color": 3},
    {"color": "RGB"}, {"resize": "x"}, {"layout": "NCHW"},
]


def bnn_metadata(doc, blob, rng):
    meta = doc["metadata"]
    r = rng.random()
    if r < 0.6:
        variant = copy.deepcopy(_pick(rng, METADATA_INPUT))
        base = meta.get("input")
        if isinstance(variant, dict) and isinstance(base, dict) and rng.random() < 0.7:
            variant = {**base, **variant}
        meta["input"] = variant
        return f"metadata.input = {variant!r}"
    key = _pick(rng, ["labels", "output", "name", "description", "architecture"])
    old = meta.get(key)
    new = _pick(rng, [None, 7, "\ud800", {"a": 1}, ["x"] * 100000, [None], "probabilities", [[1]], "x" * 100000])
    meta[key] = new
    return f"metadata.{key}: {str(old)[:40]} -> {str(new)[:40]}"


#: (mutator, weight): the graph-size bombs are rarer, since each costs up to
#: a timeout while planning is slow on them.
BNN_MUTATORS = [(bnn_attr_value, 1), (bnn_attr_geometry, 1.5), (bnn_attr_numeric, 2), (bnn_attr_swap, 1),
                (bnn_input_shape, 1), (bnn_input_dtype, 0.5), (bnn_array_reshape, 1), (bnn_array_dtype, 1),
                (bnn_array_offset, 1), (bnn_array_values, 1), (bnn_const_index, 1), (bnn_op_swap, 1),
                (bnn_rewire, 1), (bnn_node_order, 0.5), (bnn_node_dup, 1), (bnn_outputs, 1), (bnn_inputs, 1),
                (bnn_long_chain, 0.2), (bnn_fan_out, 0.2), (bnn_metadata, 2)]


def bnn_serialise(doc, blob) -> bytes:
    # allow_nan: NaN and Infinity are written as JSON's non-standard tokens, which Python's reader accepts
    return fmt.pack(json.dumps(doc, allow_nan=True).encode("utf-8", "surrogatepass"), bytes(blob))


# --------------------------------------------------------------------------
# .tflite: mutations of the model description

TFL_SCALES = [0.0, 1e-300, 1e-45, 1e-38, -1.0, 1e38, 1e300, math.nan, math.inf]
TFL_ZEROS = [128, -129, 255, -1, 2 ** 31, 2 ** 40, -2 ** 63]


def _tensor_index(desc, rng):
    return int(rng.integers(len(desc["tensors"]))) if desc["tensors"] else _pick(rng, [])


def _op_index(desc, rng):
    return int(rng.integers(len(desc["operators"]))) if desc["operators"] else _pick(rng, [])


def tfl_shape(desc, blob, rng):
    i = _tensor_index(desc, rng)
    t = desc["tensors"][i]
    old = list(t["shape"])
    r = rng.random()
    if r < 0.6 and old:
        new = list(old)
        new[int(rng.integers(len(new)))] = _pick(rng, [0, -1, 1, 2, 3, 30001, 2 ** 31 - 1, -2 ** 31])
    elif r < 0.8:
        new = old + [_pick(rng, [1, 2])]
    else:
        new = old[1:]
    t["shape"] = new
    return f"tensor {i} {t['name']!r} shape {old} -> {new}"


def tfl_type(desc, blob, rng):
    i = _tensor_index(desc, rng)
    t = desc["tensors"][i]
    old, t["type"] = t["type"], _pick(rng, [0, 1, 2, 3, 4, 6, 7, 9, 10, 16, 17, -1, 127])
    return f"tensor {i} {t['name']!r} type {old} -> {t['type']}"


def tfl_buffer(desc, blob, rng):
    i = _tensor_index(desc, rng)
    t = desc["tensors"][i]
    old = t["buffer"]
    t["buffer"] = (int(rng.integers(len(desc["buffers"]))) if rng.random() < 0.7
                   else _pick(rng, [0, len(desc["buffers"]), 2 ** 32 - 1]))
    return f"tensor {i} {t['name']!r} buffer {old} -> {t['buffer']}"


def tfl_buffer_data(desc, blob, rng):
    """A constant's bytes cut, extended, or set to extreme values."""
    filled = [k for k, b in enumerate(desc["buffers"]) if b]
    k = _pick(rng, filled)
    data = bytearray(desc["buffers"][k])
    r = rng.random()
    if r < 0.25:
        data = data[:-4]
    elif r < 0.4:
        data += bytes(4)
    else:
        word = _pick(rng, [np.float32(np.nan), np.float32(np.inf), np.float32(3.4e38), np.int32(-2 ** 31),
                           np.int32(2 ** 31 - 1), np.float32(1e-45)]).tobytes()
        for pos in range(0, len(data) - 3, 4) if rng.random() < 0.3 else [int(rng.integers(len(data) // 4)) * 4]:
            data[pos:pos + 4] = word
    desc["buffers"][k] = bytes(data)
    return f"buffer {k} ({len(desc['buffers'][k])} bytes) data mutated"


def tfl_op_io(desc, blob, rng):
    j = _op_index(desc, rng)
    op = desc["operators"][j]
    side = _pick(rng, ["inputs", "outputs"])
    lst = op[side]
    old = list(lst)
    r = rng.random()
    n = len(desc["tensors"])
    if r < 0.5 and lst:
        lst[int(rng.integers(len(lst)))] = (int(rng.integers(n)) if rng.random() < 0.6
                                            else _pick(rng, [-1, n, 2 ** 31 - 1, -2]))
    elif r < 0.65:
        lst.append(int(rng.integers(n)))
    elif r < 0.8 and lst:
        lst.pop(int(rng.integers(len(lst))))
    else:
        lst.reverse()
    return f"operator {j} {side} {old} -> {lst}"


def tfl_opcode(desc, blob, rng):
    j = _op_index(desc, rng)
    op = desc["operators"][j]
    old = op["opcode"]
    op["opcode"] = (int(rng.integers(len(desc["codes"]))) if rng.random() < 0.8
                    else _pick(rng, [len(desc["codes"]), 2 ** 32 - 1]))
    return f"operator {j} opcode index {old} -> {op['opcode']}"


def tfl_code(desc, blob, rng):
    """An operator code changed: another builtin op (CONV_2D read as
    DEPTHWISE_CONV_2D ...), another custom op, or a version."""
    k = int(rng.integers(len(desc["codes"]))) if desc["codes"] else _pick(rng, [])
    c = desc["codes"][k]
    old = dict(c)
    r = rng.random()
    if r < 0.5:
        code = _pick(rng, [0, 1, 2, 3, 4, 9, 14, 17, 18, 22, 25, 28, 34, 40, 114, 6, 19, 32, 200])
        c["builtin"], c["deprecated"] = code, min(code, 127)
    elif r < 0.8:
        c["builtin"] = c["deprecated"] = 32
        c["custom"] = _pick(rng, ["LceBconv2d", "LceQuantize", "LceDequantize", "LceBMaxPool2d", "Unknown", ""])
    else:
        c["version"] = _pick(rng, [0, -1, 99])
    return f"operator code {k} {old} -> {c}"


def tfl_options(desc, blob, rng):
    """A builtin option (strides, padding code, fused activation, dilation,
    axis, keep_dims, beta ...) set to a hostile value."""
    ops = [j for j, op in enumerate(desc["operators"]) if op["options"]]
    j = _pick(rng, ops)
    op = desc["operators"][j]
    field = _pick(rng, sorted(op["options"]))
    old = op["options"][field]
    if isinstance(old, list):
        new = _value_like(rng, old) if rng.random() < 0.7 else [_pick(rng, [0, -1, 2 ** 31 - 1])] * 4
        new = [v if isinstance(v, int) and not isinstance(v, bool) and -2 ** 31 <= v < 2 ** 31 else 0 for v in
               (new if isinstance(new, list) else [])]
    elif isinstance(old, float):
        new = _pick(rng, FLOATS)
    elif isinstance(old, bool):
        new = not old
    elif "Padding" in field:
        new = _pick(rng, [0, 1, 2, 99, -1])
    elif "Activation" in field:
        new = _pick(rng, [0, 1, 2, 3, 4, 5, 6, 99, -1])
    else:
        new = _pick(rng, [0, -1, 2, 3, 127, -128, 30001, 2 ** 31 - 1, -2 ** 31])
    op["options"][field] = new
    return f"operator {j} options.{field}: {old!r} -> {new!r}"


def tfl_options_table(desc, blob, rng):
    """An operator given another op's options table, or none."""
    j = _op_index(desc, rng)
    op = desc["operators"][j]
    donors = [o for o in desc["operators"] if o["options"] is not None]
    old = op["options_type"]
    if rng.random() < 0.3 or not donors:
        op["options_type"], op["options"] = 0, None
    else:
        d = _pick(rng, donors)
        op["options_type"], op["options"] = d["options_type"], copy.deepcopy(d["options"])
    return f"operator {j} options table {old} -> {op['options_type']}"


def tfl_custom(desc, blob, rng):
    """A field of an LCE op's FlexBuffer options (stride, padding, dilation,
    channels_in, fused activation, groups) set to a hostile value, or removed."""
    ops = [j for j, op in enumerate(desc["operators"]) if isinstance(op["custom"], dict)]
    j = _pick(rng, ops)
    opts = desc["operators"][j]["custom"]
    key = _pick(rng, sorted(opts))
    old = opts[key]
    if rng.random() < 0.15:
        del opts[key]
        return f"operator {j} custom option {key!r} removed"
    if isinstance(old, (int, float)) and not isinstance(old, bool):
        new = _pick(rng, [0, -1, 1, 2, 3, 99, 2 ** 31 - 1, -2 ** 31, 2 ** 40, 1e300, math.nan])
    elif isinstance(old, list):
        new = _pick(rng, [[], [0], [0] * 4, [2 ** 31] * 4, old * 2])
    else:
        new = _pick(rng, ["x", 3, [1], None])
    opts[key] = new
    return f"operator {j} custom option {key!r}: {old!r} -> {new!r}"


def tfl_quant(desc, blob, rng):
    qt = [i for i, t in enumerate(desc["tensors"]) if t["quant"] and t["quant"]["scale"]]
    i = _pick(rng, qt) if qt and rng.random() < 0.9 else _tensor_index(desc, rng)
    t = desc["tensors"][i]
    q = t["quant"] or {"scale": None, "zero_point": None, "min": None, "max": None, "dim": 0}
    t["quant"] = q
    old = copy.deepcopy(q)
    r = rng.random()
    n = len(q["scale"] or [1])
    if r < 0.35:
        q["scale"] = [_pick(rng, TFL_SCALES)] * n if rng.random() < 0.5 else \
            [*(q["scale"] or [1.0])[:-1], _pick(rng, TFL_SCALES)]
        q["zero_point"] = q["zero_point"] or [0] * n
    elif r < 0.55:
        q["zero_point"] = [_pick(rng, TFL_ZEROS)] * n
        q["scale"] = q["scale"] or [0.1] * n
    elif r < 0.8:
        m = _pick(rng, [0, 1, 2, n + 1, max(1, n - 1), 1000])
        q["scale"] = [(q["scale"] or [0.1])[0]] * m
        q["zero_point"] = [0] * (m if rng.random() < 0.8 else max(0, m - 1))
    elif r < 0.9:
        q["dim"] = _pick(rng, [-1, 1, 3, 5, 2 ** 31 - 1])
    else:
        t["quant"] = None
    return f"tensor {i} {t['name']!r} quantization {old} -> {t['quant']}"


def tfl_graph_io(desc, blob, rng):
    side = _pick(rng, ["inputs", "outputs"])
    old = list(desc[side])
    n = len(desc["tensors"])
    r = rng.random()
    consts = [i for i, t in enumerate(desc["tensors"]) if 0 <= t["buffer"] < len(desc["buffers"])
              and desc["buffers"][t["buffer"]]]
    if r < 0.3:
        desc[side] = old + [int(rng.integers(n))]
    elif r < 0.45:
        desc[side] = old + old
    elif r < 0.6 and consts:
        desc[side] = [_pick(rng, consts)]
    elif r < 0.8:
        desc[side] = [int(rng.integers(n))]
    else:
        desc[side] = []
    return f"graph {side} {old} -> {desc[side]}"


def tfl_op_order(desc, blob, rng):
    ops = desc["operators"]
    if len(ops) < 2:
        raise Skip
    r = rng.random()
    if r < 0.3:
        i, j = (int(v) for v in rng.choice(len(ops), 2, replace=False))
        ops[i], ops[j] = ops[j], ops[i]
        return f"operators {i} and {j} swapped"
    if r < 0.5:
        i = int(rng.integers(len(ops)))
        ops.pop(i)
        return f"operator {i} deleted"
    if r < 0.7:
        i = int(rng.integers(len(ops)))
        ops.insert(i + 1, copy.deepcopy(ops[i]))
        return f"operator {i} repeated (its outputs produced twice)"
    if r < 0.85:
        # a cycle: an operator reads the output of a later one
        i, j = sorted(int(v) for v in rng.choice(len(ops), 2, replace=False))
        if not ops[i]["inputs"] or not ops[j]["outputs"]:
            raise Skip
        ops[i]["inputs"][0] = ops[j]["outputs"][0]
        return f"operator {i} reads the output of the later operator {j}"
    desc["operators"] = [ops[int(k)] for k in rng.permutation(len(ops))]
    return "operators shuffled"


def tfl_names(desc, blob, rng):
    i = _tensor_index(desc, rng)
    t = desc["tensors"][i]
    old = t["name"]
    t["name"] = _pick(rng, ["input", "", "\ud800", desc["tensors"][int(rng.integers(len(desc["tensors"])))]["name"],
                            "x" * 100000])
    return f"tensor {i} name {old!r} -> {t['name'][:20]!r}"


TFL_MUTATORS = [(tfl_shape, 2), (tfl_type, 1), (tfl_buffer, 1), (tfl_buffer_data, 1), (tfl_op_io, 1),
                (tfl_opcode, 1), (tfl_code, 1), (tfl_options, 2), (tfl_options_table, 1), (tfl_custom, 2),
                (tfl_quant, 2), (tfl_graph_io, 1), (tfl_op_order, 1), (tfl_names, 0.5)]


def tfl_serialise(desc, blob) -> bytes:
    # imported here: the tflite reader is optional, and .bnn-only runs go without it
    from tflite_model import write_model
    return write_model(desc)


# --------------------------------------------------------------------------
# equivalent files: mutations that keep the model's meaning, so the file must
# load and give the seed's outputs (tolerance: how far they may move)


def eq_bnn_node_order(doc, blob, rng):
    """Nodes in a random order: the format allows any order (readers sort)."""
    perm = rng.permutation(len(doc["nodes"]))
    doc["nodes"] = [doc["nodes"][int(k)] for k in perm]
    return "nodes in a random order (allowed by docs/format.md)", 0.0


def eq_bnn_rename(doc, blob, rng):
    """Every tensor renamed consistently, to names that look like other things
    (a node's name, digits, a name the graph input had)."""
    names = _tensors(doc)
    style = _pick(rng, ["t{}", "{}", "image{}", "n\u00e9{}", " {} "])
    order = rng.permutation(len(names))
    new = {old: style.format(int(k)) for old, k in zip(names, order)}
    for e in doc["inputs"]:
        e["name"] = new[e["name"]]
    for n in doc["nodes"]:
        n["inputs"] = [new.get(t, t) for t in n["inputs"]]
        n["outputs"] = [new.get(t, t) for t in n["outputs"]]
    doc["outputs"] = [new.get(t, t) for t in doc["outputs"]]
    return f"every tensor renamed consistently ({style!r})", 0.0


def eq_bnn_extra(doc, blob, rng):
    """An unused array and unknown metadata keys: nothing refers to them."""
    doc["arrays"].append({"dtype": "u1", "shape": [0], "offset": 0})
    doc["metadata"]["x-unknown"] = {"nested": [1, 2, 3]}
    return "an unused array and an unknown metadata key added", 0.0


def eq_tfl_same_names(desc, blob, rng):
    """Tensor names repeated (TFLite does not require them to be unique), or
    an intermediate tensor named 'input'."""
    if rng.random() < 0.5:
        for t in desc["tensors"]:
            t["name"] = "t"
        return "every tensor named 't' (names need not be unique in TFLite)", 0.0
    produced = [o for op in desc["operators"] for o in op["outputs"] if o not in desc["outputs"]]
    i = _pick(rng, produced)
    for t in desc["tensors"]:
        if t["name"] == "input":
            t["name"] = "input_renamed"
    desc["tensors"][i]["name"] = "input"
    return f"intermediate tensor {i} named 'input'", 0.0


def eq_tfl_order(desc, blob, rng):
    """Duplicate operator codes (an operator pointing at the copy) and an unused tensor."""
    j = _op_index(desc, rng)
    op = desc["operators"][j]
    desc["codes"].append(dict(desc["codes"][op["opcode"]]))
    op["opcode"] = len(desc["codes"]) - 1
    desc["buffers"].append(b"")
    desc["tensors"].append({"name": "unused", "shape": [1, 2], "type": 0, "buffer": len(desc["buffers"]) - 1,
                            "quant": None})
    return f"operator {j} uses a duplicate operator code; an unused tensor added", 0.0


def eq_tfl_hybrid(desc, blob, rng):
    """A float CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED given int8 weights
    with a scale (TFLite's hybrid quantization): the output must stay close
    (the weights move by at most half a step) or the file be refused."""
    float_w = []
    for j, op in enumerate(desc["operators"]):
        code = desc["codes"][op["opcode"]]["builtin"]
        if code in (3, 4, 9) and len(op["inputs"]) > 1:
            t = desc["tensors"][op["inputs"][1]]
            if t["type"] == 0 and 0 <= t["buffer"] < len(desc["buffers"]) and desc["buffers"][t["buffer"]]:
                float_w.append(op["inputs"][1])
    i = _pick(rng, float_w)
    t = desc["tensors"][i]
    w = np.frombuffer(desc["buffers"][t["buffer"]], "<f4").reshape(t["shape"])
    scale = float(np.abs(w).max()) / 127 or 1.0
    q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
    desc["buffers"].append(q.tobytes())
    t.update(type=9, buffer=len(desc["buffers"]) - 1,
             quant={"scale": [scale], "zero_point": [0], "min": None, "max": None, "dim": 0})
    return f"float weights {i} {t['name']!r} stored as int8 with scale {scale:.3g} (hybrid)", 0.05


# --------------------------------------------------------------------------
# files that are certainly invalid: the loader must refuse them (loading
# them is a finding too, "accepted")


def bad_tfl_recorded_shape(desc, blob, rng):
    """One dimension of an operator's output recorded one larger than the
    operator computes: the file contradicts itself."""
    produced = sorted({o for op in desc["operators"] for o in op["outputs"]
                       if o >= 0 and len(desc["tensors"][o]["shape"]) >= 2})
    i = _pick(rng, produced)
    t = desc["tensors"][i]
    axis = int(rng.integers(1, len(t["shape"])))
    old = list(t["shape"])
    t["shape"][axis] += 1
    return f"tensor {i} {t['name']!r} (an operator output) recorded as {t['shape']}, computed {old}"


def bad_bnn_duplicate_input(doc, blob, rng):
    """Two graph inputs with one name (and another shape)."""
    first = doc["inputs"][0]
    doc["inputs"].append(dict(first, shape=[d + 1 for d in first["shape"]]))
    return f"graph input {first['name']!r} listed twice, with shapes {first['shape']} and {doc['inputs'][-1]['shape']}"


BNN_INVALID = [bad_bnn_duplicate_input]
TFL_INVALID = [bad_tfl_recorded_shape]


BNN_EQUIVALENT = [eq_bnn_node_order, eq_bnn_rename, eq_bnn_extra]
# eq_tfl_hybrid is kept for its reproducer (tests/fuzz/regressions) and not
# drawn at random: rounding float weights to int8 moves them by half a step,
# and in a deep binary network a few pre-sign values that cross 0 move the
# output beyond any fixed tolerance (the dequantization itself is exact and
# has its unit test in tests/test_importers.py).
TFL_EQUIVALENT = [eq_tfl_same_names, eq_tfl_same_names, eq_tfl_order]

# --------------------------------------------------------------------------
# the sweep: every single-field edit of every seed, one at a time (each
# finding is then its own minimal reproducer)

_DELETE = object()
SWEEP_VALUES = [_DELETE, None, "x", [], {}, True, 0, -1, 2 ** 31, 10 ** 400, 1e300, math.nan, math.inf, 1e-300]


def _sweep_list(old):
    n = len(old)
    return [[0] * n, [-1] * n, [2 ** 31] * n, [1e300] * n, old[:-1], old + old[-1:]]


def _bnn_field_edits(doc):
    seen = set()
    for i, node in enumerate(doc["nodes"]):
        kind = (node["op"], tuple(sorted(node.get("attrs", {}))), tuple(sorted(node.get("consts", {}))))
        if kind in seen:
            continue            # a repeated layer: its edits were made on the first
        seen.add(kind)
        for key, old in sorted(node.get("attrs", {}).items()):
            for v in SWEEP_VALUES + (_sweep_list(old) if isinstance(old, list) and old else []):
                yield f"node {node['name']!r} ({node['op']}) attrs.{key}: {old!r} -> " + \
                      ("removed" if v is _DELETE else repr(v)), ("nodes", i, "attrs", key), v
        for key in sorted(node.get("consts", {})):
            yield f"node {node['name']!r} ({node['op']}) const {key!r} removed", ("nodes", i, "consts", key), _DELETE
    for key in sorted(doc["metadata"]):
        for v in (None, 7, "x", [], {}, 10 ** 400):
            yield f"metadata.{key} -> {v!r}", ("metadata", key), v
    for variant in METADATA_INPUT:
        yield f"metadata.input = {variant!r}", ("metadata", "input"), variant


def _tfl_field_edits(desc):
    seen = set()
    for j, op in enumerate(desc["operators"]):
        kind = (desc["codes"][op["opcode"]]["builtin"], desc["codes"][op["opcode"]]["custom"],
                tuple(sorted(op["options"] or {})), len(op["inputs"]))
        if kind in seen:
            continue
        seen.add(kind)
        for field, old in sorted((op["options"] or {}).items()):
            values = [[], [0], [-1, -1], [2 ** 31 - 1] * 3] if isinstance(old, list) else \
                [0, -1, 2, 5, 99, 127, -128, 2 ** 31 - 1, -2 ** 31, math.nan, 1e300]
            for v in values:
                yield f"operator {j} options.{field}: {old!r} -> {v!r}", ("operators", j, "options", field), v
        if isinstance(op["custom"], dict):
            for key, old in sorted(op["custom"].items()):
                for v in (_DELETE, 0, -1, 2, 99, 2 ** 31 - 1, -2 ** 31, 1.5, "x", [1]):
                    yield f"operator {j} custom option {key!r}: {old!r} -> " + \
                          ("removed" if v is _DELETE else repr(v)), ("operators", j, "custom", key), v
    quant_kinds = set()
    for i, t in enumerate(desc["tensors"]):
        q = t["quant"]
        if not q or not q["scale"] or (t["type"], len(q["scale"]) > 1, len(t["shape"])) in quant_kinds:
            continue
        quant_kinds.add((t["type"], len(q["scale"]) > 1, len(t["shape"])))
        n = len(q["scale"])
        for v in (0.0, 1e-300, 1e-45, math.nan, math.inf, -1.0, 1e38):
            yield f"tensor {i} {t['name']!r} scale -> [{v!r}] * {n}", ("tensors", i, "quant", "scale"), [v] * n
        for v in (128, -129, 2 ** 40):
            yield f"tensor {i} {t['name']!r} zero point -> [{v!r}] * {n}", ("tensors", i, "quant", "zero_point"), [v] * n


def sweep_cases(seeds):
    """(target, seed name, file bytes, [description], None) of every single-field edit."""
    for target, name, structure, blob in seeds:
        if name == "blendnet_tiny.bnn":
            continue            # the layers of blendnet20_fmnist.bnn again
        edits = _bnn_field_edits(structure) if target == "bnn" else _tfl_field_edits(structure)
        serialise = bnn_serialise if target == "bnn" else tfl_serialise
        for what, path, value in edits:
            work = copy.deepcopy(structure)
            parent = work
            for key in path[:-1]:
                parent = parent[key]
            if value is _DELETE:
                del parent[path[-1]]
            else:
                parent[path[-1]] = copy.deepcopy(value)
            if path[-2:] in (("quant", "scale"), ("quant", "zero_point")):
                # the other half of the pair, so that only the edited one is wrong
                other = "zero_point" if path[-1] == "scale" else "scale"
                parent[other] = parent[other] or ([0] if other == "zero_point" else [0.1]) * len(value)
            try:
                data = serialise(work, blob)
            except (struct.error, ValueError, TypeError, OverflowError, UnicodeEncodeError, RuntimeError):
                continue
            yield target, name, data, [f"sweep: {what}"], None


# --------------------------------------------------------------------------
# seeds and cases


def _bnn_seeds():
    import sys
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from conftest import every_op_graph
    from bnnrt import zoo
    from bnnrt.convert._tflite import to_graph
    seeds = {"every_op.bnn": fmt.dumps(every_op_graph(seed=3, h=6, w=5)),
             "blendnet_tiny.bnn": fmt.dumps(zoo.blendnet20(input_shape=(8, 8, 1), threads=1).graph)}
    # the Mixers' transposes of int8 and bit tensors
    for kind in ("blend", "binary"):
        seeds[f"mixer_{kind}_tiny.bnn"] = fmt.dumps(zoo.mixer(kind, input_shape=(8, 12, 1), patch=2, dim=11,
                                                            token_hidden=9, channel_hidden=13, depth=1,
                                                            threads=1).graph)
    with open(os.path.join(ROOT, "models", "blendnet20_fmnist.bnn"), "rb") as f:
        seeds["blendnet20_fmnist.bnn"] = f.read()
    # the importer's output as .bnn seeds: float ops (pads, softmax, activations) and tfl_* int8 ops
    for stem in ("float_ops", "int8_ops", "int8_quicknet"):
        seeds[f"{stem}.bnn"] = fmt.dumps(to_graph(os.path.join(ROOT, "tests", "data", "lce", f"{stem}.tflite")))
    return seeds


def load_seeds(targets=("bnn", "tflite")) -> list[tuple[str, str, object, object]]:
    """(target, seed name, parsed structure, data section) of every seed."""
    import sys
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    from tflite_model import read_model
    out = []
    if "bnn" in targets:
        for name, data in _bnn_seeds().items():
            doc, blob = fmt.unpack(data)
            out.append(("bnn", name, doc, bytes(blob)))
    if "tflite" in targets:
        for path in sorted(glob.glob(os.path.join(ROOT, "tests", "data", "lce", "*.tflite"))):
            with open(path, "rb") as f:
                out.append(("tflite", os.path.basename(path), read_model(f.read()), None))
    return out


#: The equivalence of a case whose file must be refused.
MUST_REFUSE = "must-refuse"


def make_case(seeds, seed: int, index: int, max_mutations: int = 3, equivalent_share: float = 0.15,
              invalid_share: float = 0.05):
    """Case ``index``: (target, seed name, file bytes, mutation descriptions,
    equivalence). ``equivalence`` is None for a hostile file, (the seed's
    bytes, tolerance) for a file that must give the seed's outputs, or
    MUST_REFUSE for a file that is certainly invalid."""
    rng = np.random.default_rng([seed, index])
    for _ in range(50):
        target, name, structure, blob = seeds[int(rng.integers(len(seeds)))]
        bnn = target == "bnn"
        serialise = bnn_serialise if bnn else tfl_serialise
        work = copy.deepcopy(structure)
        data = bytearray(blob) if blob is not None else None
        done, equivalence = [], None
        try:
            if rng.random() < invalid_share:
                invalid = BNN_INVALID if bnn else TFL_INVALID
                fn = invalid[int(rng.integers(len(invalid)))]
                done.append(f"{fn.__name__}: {fn(work, data, rng)}")
                equivalence = MUST_REFUSE
            elif rng.random() < equivalent_share:
                equivalent = BNN_EQUIVALENT if bnn else TFL_EQUIVALENT
                fn = equivalent[int(rng.integers(len(equivalent)))]
                what, tolerance = fn(work, data, rng)
                done.append(f"{fn.__name__}: {what}")
                equivalence = (serialise(copy.deepcopy(structure), blob), tolerance)
            else:
                mutators = BNN_MUTATORS if bnn else TFL_MUTATORS
                weights = np.array([w for _, w in mutators])
                for _ in range(int(rng.integers(1, max_mutations + 1))):
                    mutator = mutators[int(rng.choice(len(mutators), p=weights / weights.sum()))][0]
                    try:
                        done.append(f"{mutator.__name__}: {mutator(work, data, rng)}")
                    except Skip:
                        continue
        except Skip:
            continue
        if not done:
            continue
        try:
            return target, name, serialise(work, data), done, equivalence
        except (struct.error, ValueError, TypeError, OverflowError, UnicodeEncodeError, RuntimeError):
            # a value the field's type cannot hold is no file (RuntimeError: the
            # FlexBuffers builder fails so for a float beyond float64): draw again
            continue
    raise RuntimeError(f"case {index}: no mutation could be written")
