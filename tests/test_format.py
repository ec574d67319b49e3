"""The .bnn file: round trip, compactness, and every kind of bad file."""

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

import bnnrt
from bnnrt import format as fmt
from bnnrt.errors import BnnrtError, ModelFormatError, ModelIOError

from conftest import every_op_graph


def _same_graph(a, b):
    assert a.inputs == b.inputs and a.outputs == b.outputs and a.metadata == b.metadata
    assert [n.op for n in a.nodes] == [n.op for n in b.nodes]
    for na, nb in zip(a.nodes, b.nodes):
        assert (na.name, na.inputs, na.outputs, na.attrs) == (nb.name, nb.inputs, nb.outputs, nb.attrs)
        assert na.consts.keys() == nb.consts.keys()
        for k in na.consts:
            assert na.consts[k].dtype == nb.consts[k].dtype
            np.testing.assert_array_equal(na.consts[k], nb.consts[k])


def test_round_trip_bytes_path_and_file_object(tmp_path, graph):
    data = fmt.dumps(graph)
    _same_graph(graph, fmt.loads(data))
    path = tmp_path / "m.bnn"
    bnnrt.save(graph, path)
    assert path.read_bytes() == data
    for source in (path, str(path), data, bytearray(data), io.BytesIO(data)):
        model = bnnrt.load(source)
        _same_graph(graph, model.graph)


def test_constants_are_zero_copy_views_of_the_file_bytes(graph):
    data = fmt.dumps(graph)
    loaded = fmt.loads(data)
    for node in loaded.nodes:
        for arr in node.consts.values():
            assert not arr.flags.owndata and not arr.flags.writeable
            assert np.shares_memory(arr, np.frombuffer(data, np.uint8))


def test_save_model_and_outputs_survive_round_trip(tmp_path, blendnet):
    path = tmp_path / "b.bnn"
    bnnrt.save(blendnet, path)
    again = bnnrt.load(path)
    x = np.random.default_rng(0).standard_normal((3, 32, 32, 3)).astype(np.float32)
    np.testing.assert_array_equal(blendnet.run(x), again.run(x))


@pytest.mark.parametrize("width", [1, 4])
def test_file_is_within_ten_percent_of_its_weights(width):
    graph = bnnrt.zoo.blendnet20(width=width, threads=1).graph
    data = fmt.dumps(graph)
    weights = sum(a.nbytes for n in graph.nodes for a in n.consts.values())
    assert len(data) <= 1.10 * weights + fmt.HEADER.size, (len(data), weights)


def test_binary_weights_take_one_bit_each(blendnet):
    bconv = [n for n in blendnet.graph.nodes if n.op == "bconv2d"]
    for node in bconv:
        cout, kh, kw, nbytes = node.consts["weights"].shape
        assert nbytes * 8 == node.attrs["cin"]  # 16/32/64 channels: no padding bits at all


# ---------------------------------------------------------------------------
# bad files: each raises a bnnrt error that says what is wrong


def test_missing_file_is_an_oserror(tmp_path):
    with pytest.raises(ModelIOError, match="cannot read model file") as e:
        bnnrt.load(tmp_path / "nope.bnn")
    assert isinstance(e.value, OSError)


def test_wrong_magic():
    with pytest.raises(ModelFormatError, match="wrong magic"):
        fmt.loads(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(ModelFormatError, match="wrong magic"):
        fmt.loads(b"hello")


@pytest.mark.parametrize("cut", [0, 10, 63, 64, 100, -1])
def test_truncated(graph, cut):
    data = fmt.dumps(graph)
    with pytest.raises(ModelFormatError, match="truncated|wrong magic"):
        fmt.loads(data[:cut] if cut >= 0 else data[:-1])


def test_corrupted_byte_fails_the_checksum(graph):
    data = bytearray(fmt.dumps(graph))
    data[len(data) // 2] ^= 0x10
    with pytest.raises(ModelFormatError, match="checksum"):
        fmt.loads(bytes(data))


def test_newer_version_is_refused(graph):
    doc, data = fmt.unpack(fmt.dumps(graph))
    meta = json.dumps(doc).encode()
    for version in ((fmt.VERSION[0], fmt.VERSION[1] + 1), (fmt.VERSION[0] + 1, 0)):
        with pytest.raises(ModelFormatError, match="newer than this bnnrt reads"):
            fmt.loads(fmt.pack(meta, data, version=version))


def test_absurd_sizes_in_the_header_allocate_nothing(graph):
    data = bytearray(fmt.dumps(graph))
    for field_offset in (24, 32, 40):     # meta_size, data_offset, data_size
        bad = bytearray(data)
        struct.pack_into("<Q", bad, field_offset, 2 ** 62)
        struct.pack_into("<I", bad, fmt.CRC_OFFSET, fmt._crc(bad))
        with pytest.raises(ModelFormatError, match="truncated|corrupt"):
            fmt.loads(bytes(bad))


def _with_doc(graph, edit):
    doc, data = fmt.unpack(fmt.dumps(graph))
    edit(doc)
    return fmt.pack(json.dumps(doc).encode(), data)


def test_absurd_array_shape_allocates_nothing(graph):
    def edit(doc):
        doc["arrays"][0]["shape"] = [2 ** 40, 2 ** 40]
    with pytest.raises(ModelFormatError, match="runs past the end"):
        fmt.loads(_with_doc(graph, edit))


def test_absurd_input_shape_is_refused_before_allocating(graph):
    def edit(doc):
        doc["inputs"][0]["shape"] = [100000, 100000, 3]
    with pytest.raises(BnnrtError, match="bytes per sample"):
        bnnrt.load(_with_doc(graph, edit))


def test_errors_name_the_layer(graph):
    def edit(doc):
        node = next(n for n in doc["nodes"] if n["op"] == "bconv2d")
        node["attrs"]["cin"] = 5
    with pytest.raises(BnnrtError, match=r"layer 'bconv2d_0' \(bconv2d\).*cin=5"):
        bnnrt.load(_with_doc(graph, edit))


def test_unknown_op_is_named(graph):
    def edit(doc):
        doc["nodes"][1]["op"] = "frobnicate"
    with pytest.raises(bnnrt.UnsupportedOpError, match="frobnicate"):
        bnnrt.load(_with_doc(graph, edit))


def test_cycle_and_undefined_tensor(graph):
    def cycle(doc):
        doc["nodes"][0]["inputs"] = [doc["nodes"][1]["outputs"][0]]
    with pytest.raises(BnnrtError, match="cycle"):
        bnnrt.load(_with_doc(graph, cycle))

    def undefined(doc):
        doc["nodes"][2]["inputs"] = ["ghost"]
    with pytest.raises(BnnrtError, match="ghost"):
        bnnrt.load(_with_doc(graph, undefined))


def test_not_json_metadata(graph):
    data = fmt.dumps(graph)
    doc, blob = fmt.unpack(data)
    with pytest.raises(ModelFormatError, match="not valid JSON"):
        fmt.loads(fmt.pack(b"{" * 10, blob))
    with pytest.raises(ModelFormatError, match="not valid JSON"):
        fmt.loads(fmt.pack(b"[" * 100000 + b"]" * 100000, blob))


def test_metadata_zip_bomb_is_refused(graph, monkeypatch):
    doc, blob = fmt.unpack(fmt.dumps(graph))
    bomb = fmt.pack(b" " * (2 * fmt.MAX_META_BYTES // 1024) + json.dumps(doc).encode(), blob)
    monkeypatch.setattr(fmt, "MAX_META_BYTES", 1024)
    with pytest.raises(ModelFormatError, match="inflates beyond"):
        fmt.loads(bomb)


def test_text_mode_file_object_is_refused(tmp_path, graph):
    path = tmp_path / "m.bnn"
    bnnrt.save(graph, path)
    with open(path, "r", encoding="latin-1") as f:
        with pytest.raises(ModelIOError, match="binary mode"):
            bnnrt.load(f)


def test_load_rejects_other_types():
    with pytest.raises(TypeError):
        bnnrt.load(12)


# ---------------------------------------------------------------------------
# docs/format.md is enough to read a file: a reader written from the page
# alone (no bnnrt.format) reads the shipped model as bnnrt.load does


SHIPPED_MODEL = Path(__file__).resolve().parent.parent / "models" / "blendnet20_fmnist.bnn"


def read_bnn_from_the_spec(data: bytes):
    """(JSON document, {array index: numpy array}) of a .bnn file, by docs/format.md."""
    (magic, major, minor, header_size, meta_offset, meta_size, data_offset, data_size,
     crc, flags) = struct.unpack_from("<8sHHIQQQQII8x", data, 0)
    assert magic == b"BNNRT\x00\r\n"
    assert (major, minor) <= (1, 0)
    assert header_size == 64 and meta_offset >= 64
    assert meta_offset + meta_size <= data_offset <= len(data) and data_offset % 64 == 0
    assert data_offset + data_size <= len(data)
    assert zlib.crc32(data[:48] + b"\0\0\0\0" + data[52:]) == crc
    assert flags & ~1 == 0
    meta = data[meta_offset:meta_offset + meta_size]
    if flags & 1:
        meta = zlib.decompress(meta)
    doc = json.loads(meta.decode("utf-8"))
    codes = {"u1": "u1", "i1": "i1", "i2": "<i2", "i4": "<i4", "f4": "<f4"}
    arrays = {}
    for i, entry in enumerate(doc["arrays"]):
        dtype = np.dtype(codes[entry["dtype"]])
        count = int(np.prod(entry["shape"], dtype=np.int64))
        assert entry["offset"] % 8 == 0 and entry["offset"] + count * dtype.itemsize <= data_size
        arrays[i] = np.frombuffer(data, dtype, count, data_offset + entry["offset"]).reshape(entry["shape"])
    return doc, arrays


def test_a_reader_written_from_the_spec_reads_the_shipped_model():
    data = SHIPPED_MODEL.read_bytes()
    doc, arrays = read_bnn_from_the_spec(data)
    # the page's claims about what bnnrt writes, on the file it ships
    assert struct.unpack_from("<I", data, 52)[0] == 1         # flags: deflated metadata
    assert struct.unpack_from("<Q", data, 16)[0] == 64        # metadata right after the header
    assert data[56:64] == bytes(8)
    model = bnnrt.load(SHIPPED_MODEL)
    graph = model.graph
    assert {i["name"]: (tuple(i["shape"]), i["dtype"]) for i in doc["inputs"]} == \
        {k: (s.shape, s.dtype) for k, s in graph.inputs.items()}
    assert doc["outputs"] == graph.outputs and doc["metadata"] == graph.metadata
    assert [(n["op"], n["name"], n["inputs"], n["outputs"]) for n in doc["nodes"]] == \
        [(n.op, n.name, n.inputs, n.outputs) for n in graph.nodes]
    used = set()
    for entry, node in zip(doc["nodes"], graph.nodes):
        assert entry.get("attrs", {}) == node.attrs
        assert entry.get("consts", {}).keys() == node.consts.keys()
        for key, index in entry.get("consts", {}).items():
            mine, theirs = arrays[index], node.consts[key]
            assert (mine.dtype, mine.shape) == (theirs.dtype, theirs.shape), (node.name, key)
            assert mine.tobytes() == theirs.tobytes(), (node.name, key)
            used.add(index)
    assert used == set(arrays)         # every array of the table belongs to a constant
