"""Reading and writing .bnn model files (the specification is docs/format.md).

A file is a 64-byte header, a compact JSON document (graph, metadata, array
table) and a data section of little-endian arrays, each 8-byte aligned, binary
weights packed 8 per byte. Reading parses JSON and slices the file's bytes:
no pickle, no eval, and the constants are zero-copy views into those bytes.
Nothing is allocated from a size the header claims: every size is checked
against the bytes actually present first.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from typing import Any

import numpy as np

from ._io import read_bounded
from .errors import ModelFormatError, ModelIOError
from .graph import DTYPES, Graph, Node, TensorSpec

MAGIC = b"BNNRT\x00\r\n"
VERSION = (1, 1)
#: Ops later than 1.0, by the minor version that added them. A file records the
#: oldest version whose readers run its graph, so files without them stay 1.0.
OP_VERSIONS = {"transpose": (1, 1)}
HEADER = struct.Struct("<8sHHIQQQQII8x")  # see docs/format.md
assert HEADER.size == 64
CRC_OFFSET = 48
DATA_ALIGN = 64
ARRAY_ALIGN = 8

#: dtype codes of the array table.
ARRAY_DTYPES = {"u1": np.dtype("u1"), "i1": np.dtype("i1"), "i2": np.dtype("<i2"),
                "i4": np.dtype("<i4"), "f4": np.dtype("<f4")}
_CODES = {v: k for k, v in ARRAY_DTYPES.items()}

_MAX_RANK = 8
#: flags bit 0: the metadata JSON is zlib-compressed (names repeat a lot; this
#: keeps the file within a few percent of its weights).
FLAG_DEFLATED_META = 1
#: Largest metadata JSON a reader inflates (a guard against zip bombs).
MAX_META_BYTES = 64 << 20
#: Largest .bnn file ``load`` reads: a file is read whole into memory, and the
#: largest models bnnrt runs (float layers included) are a few hundred MB.
MAX_FILE_BYTES = 1 << 30


def _align(n: int, a: int) -> int:
    return -(-n // a) * a


def _crc(data) -> int:
    """CRC-32 of the whole file with the checksum field read as zero."""
    view = memoryview(data)
    crc = zlib.crc32(view[:CRC_OFFSET])
    crc = zlib.crc32(b"\0\0\0\0", crc)
    return zlib.crc32(view[CRC_OFFSET + 4:], crc)


# --------------------------------------------------------------------------
# writing


def _json_default(obj):
    """numpy scalars and arrays in attributes or metadata become JSON numbers and lists."""
    if isinstance(obj, (np.generic, np.ndarray)):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def dumps(graph: Graph) -> bytes:
    """Serialize a graph to the bytes of a .bnn file."""
    arrays: list[np.ndarray] = []
    table: list[dict[str, Any]] = []
    offset = 0

    def add_array(arr: np.ndarray) -> int:
        nonlocal offset
        arr = np.asarray(arr)
        dt = arr.dtype.newbyteorder("<") if arr.dtype.itemsize > 1 else arr.dtype
        if dt not in _CODES:
            raise ModelFormatError(f"cannot store arrays of dtype {arr.dtype}")
        arr = np.ascontiguousarray(arr, dtype=dt)
        offset = _align(offset, ARRAY_ALIGN)
        table.append({"dtype": _CODES[dt], "shape": list(arr.shape), "offset": offset})
        arrays.append(arr)
        offset += arr.nbytes
        return len(table) - 1

    nodes = []
    for node in graph.nodes:
        entry: dict[str, Any] = {"op": node.op, "name": node.name, "inputs": node.inputs,
                                 "outputs": node.outputs}
        if node.attrs:
            entry["attrs"] = node.attrs
        if node.consts:
            entry["consts"] = {k: add_array(v) for k, v in node.consts.items()}
        nodes.append(entry)
    doc = {
        "inputs": [{"name": n, "shape": list(s.shape), "dtype": s.dtype} for n, s in graph.inputs.items()],
        "outputs": graph.outputs,
        "nodes": nodes,
        "arrays": table,
        "metadata": graph.metadata,
    }
    try:
        meta = json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                          default=_json_default).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise ModelFormatError(f"cannot write the graph's attributes or metadata as JSON: {e}") from None
    data = bytearray(offset)
    for entry, arr in zip(table, arrays):
        data[entry["offset"]:entry["offset"] + arr.nbytes] = arr.tobytes()
    return pack(meta, data, max([(1, 0)] + [OP_VERSIONS.get(n.op, (1, 0)) for n in graph.nodes]))


def pack(meta: bytes, data: bytes, version=VERSION) -> bytes:
    """Assemble a file from its JSON and its data section (header, padding, checksum)."""
    meta = zlib.compress(meta, 9)
    meta_offset = HEADER.size
    data_offset = _align(meta_offset + len(meta), DATA_ALIGN)
    out = bytearray(data_offset + len(data))
    out[meta_offset:meta_offset + len(meta)] = meta
    out[data_offset:] = data
    HEADER.pack_into(out, 0, MAGIC, version[0], version[1], HEADER.size,
                     meta_offset, len(meta), data_offset, len(data), 0, FLAG_DEFLATED_META)
    struct.pack_into("<I", out, CRC_OFFSET, _crc(out))
    return bytes(out)


def unpack(data: bytes) -> tuple[dict, bytes]:
    """(JSON document, data section) of a well-formed file, for tools and tests."""
    h = HEADER.unpack_from(data, 0)
    meta_offset, meta_size, data_offset, data_size = h[4:8]
    meta = data[meta_offset:meta_offset + meta_size]
    if h[9] & FLAG_DEFLATED_META:
        meta = zlib.decompress(meta)
    return json.loads(meta), data[data_offset:data_offset + data_size]


def save(graph: Graph, path) -> None:
    """Write ``graph`` to ``path`` atomically (temporary file, then rename),
    or to an open binary file object."""
    data = dumps(graph)
    if hasattr(path, "write"):
        path.write(data)
        return
    try:
        tmp = f"{os.fspath(path)}.tmp{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:
        raise ModelIOError(f"cannot write model file {os.fspath(path)!r}: {e}") from e


# --------------------------------------------------------------------------
# reading


def read_source(source) -> tuple[bytes, str]:
    """Bytes of a path, bytes-like or binary file object (at most
    :data:`MAX_FILE_BYTES`; regular files only), and a name for messages."""
    return read_bounded(source, MAX_FILE_BYTES)


def loads(data: bytes, name: str = "<bytes>") -> Graph:
    """Parse the bytes of a .bnn file into a Graph (constants are views of ``data``)."""

    def bad(msg):
        return ModelFormatError(f"{name}: {msg}")

    if len(data) < HEADER.size:
        if data[:len(MAGIC)] != MAGIC[:len(data)]:
            raise bad("not a bnnrt model file (wrong magic)")
        raise bad(f"truncated: {len(data)} bytes, shorter than the {HEADER.size}-byte header")
    (magic, major, minor, header_size, meta_offset, meta_size, data_offset, data_size,
     crc, flags) = HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise bad("not a bnnrt model file (wrong magic)")
    if (major, minor) > VERSION:
        raise bad(f"format version {major}.{minor} is newer than this bnnrt reads "
                  f"({VERSION[0]}.{VERSION[1]}); upgrade bnnrt")
    if header_size != HEADER.size or meta_offset < HEADER.size:
        raise bad(f"corrupt header (header size {header_size}, metadata offset {meta_offset})")
    end_meta = meta_offset + meta_size
    end_data = data_offset + data_size
    if end_meta > len(data) or end_data > len(data):
        raise bad(f"truncated: header describes {max(end_meta, end_data)} bytes, file has {len(data)}")
    if data_offset < end_meta or data_offset % DATA_ALIGN:
        raise bad(f"corrupt header (data offset {data_offset})")
    if _crc(data) != crc:
        raise bad("checksum mismatch: the file is corrupted")
    if flags & ~FLAG_DEFLATED_META:
        raise bad(f"unknown flags {flags:#x}")
    meta = bytes(data[meta_offset:end_meta])
    if flags & FLAG_DEFLATED_META:
        inflater = zlib.decompressobj()
        try:
            meta = inflater.decompress(meta, MAX_META_BYTES)
        except zlib.error as e:
            raise bad(f"metadata does not inflate: {e}") from None
        if inflater.unconsumed_tail or not inflater.eof:
            raise bad(f"metadata is truncated or inflates beyond {MAX_META_BYTES} bytes")
    try:
        doc = json.loads(meta.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise bad(f"metadata is not valid JSON: {e}") from None
    try:
        return _graph_from_doc(doc, memoryview(data)[data_offset:end_data], bad)
    except ModelFormatError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise bad(f"malformed graph description ({type(e).__name__}: {e})") from None


def _check(cond, bad, msg):
    if not cond:
        raise bad(msg)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _graph_from_doc(doc, data: memoryview, bad) -> Graph:
    _check(isinstance(doc, dict), bad, "metadata must be a JSON object")
    for key, typ in (("inputs", list), ("outputs", list), ("nodes", list), ("arrays", list),
                     ("metadata", dict)):
        _check(isinstance(doc.get(key), typ), bad, f"missing or malformed {key!r}")

    arrays = []
    for i, entry in enumerate(doc["arrays"]):
        _check(isinstance(entry, dict), bad, f"array {i} is not an object")
        code, shape, offset = entry.get("dtype"), entry.get("shape"), entry.get("offset")
        _check(code in ARRAY_DTYPES, bad, f"array {i} has unknown dtype {code!r}")
        _check(isinstance(shape, list) and len(shape) <= _MAX_RANK
               and all(_is_int(d) and d >= 0 for d in shape), bad, f"array {i} has bad shape {shape!r}")
        _check(_is_int(offset) and offset >= 0 and offset % ARRAY_ALIGN == 0, bad,
               f"array {i} has bad offset {offset!r}")
        dt = ARRAY_DTYPES[code]
        count = 1
        for d in shape:
            count *= d          # Python ints: no overflow, and no allocation yet
        nbytes = count * dt.itemsize
        _check(offset + nbytes <= len(data), bad,
               f"array {i} ({code}{shape}) runs past the end of the data section")
        arr = np.frombuffer(data, dtype=dt, count=count, offset=offset).reshape(shape)
        arrays.append(arr)

    inputs = {}
    for entry in doc["inputs"]:
        _check(isinstance(entry, dict) and isinstance(entry.get("name"), str), bad, "malformed input")
        shape = entry.get("shape")
        _check(isinstance(shape, list) and 1 <= len(shape) <= _MAX_RANK
               and all(_is_int(d) and d > 0 for d in shape), bad,
               f"input {entry['name']!r} has bad shape {shape!r}")
        _check(entry.get("dtype") in DTYPES, bad, f"input {entry['name']!r} has bad dtype {entry.get('dtype')!r}")
        _check(entry["name"] not in inputs, bad, f"graph input {entry['name']!r} is listed twice")
        inputs[entry["name"]] = TensorSpec(tuple(shape), entry["dtype"])

    nodes = []
    for i, entry in enumerate(doc["nodes"]):
        _check(isinstance(entry, dict), bad, f"node {i} is not an object")
        op, nm = entry.get("op"), entry.get("name")
        _check(isinstance(op, str) and isinstance(nm, str), bad, f"node {i} lacks op or name")
        ins, outs = entry.get("inputs"), entry.get("outputs")
        _check(isinstance(ins, list) and all(isinstance(t, str) for t in ins)
               and isinstance(outs, list) and all(isinstance(t, str) for t in outs), bad,
               f"layer {nm!r}: malformed inputs/outputs")
        attrs = entry.get("attrs", {})
        _check(isinstance(attrs, dict), bad, f"layer {nm!r}: malformed attrs")
        consts = {}
        for key, idx in entry.get("consts", {}).items():
            _check(_is_int(idx) and 0 <= idx < len(arrays), bad,
                   f"layer {nm!r}: constant {key!r} names missing array {idx!r}")
            consts[key] = arrays[idx]
        nodes.append(Node(op, nm, list(ins), list(outs), attrs, consts))

    outputs = doc["outputs"]
    _check(all(isinstance(t, str) for t in outputs) and outputs, bad, "malformed outputs")
    return Graph(inputs, list(outputs), nodes, doc["metadata"])
