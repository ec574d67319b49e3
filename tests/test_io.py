"""Bounded reading of model files (bnnrt._io), through both of its users:
``bnnrt.load`` (.bnn) and the .tflite importer. Every refusal must name the
file, and nothing may block or read without end."""

import io
import os
import threading

import pytest

import bnnrt
from bnnrt import _io, zoo
from bnnrt import format as fmt
from bnnrt.convert import _tflite, from_tflite
from bnnrt.errors import ModelFormatError, ModelIOError

TFLITE = os.path.join(os.path.dirname(__file__), "data", "lce", "float_ops.tflite")

#: (reader, the module attribute holding its limit)
READERS = [pytest.param(bnnrt.load, (fmt, "MAX_FILE_BYTES"), id="load"),
           pytest.param(from_tflite, (_tflite, "MAX_FILE_BYTES"), id="from_tflite")]


def call_with_timeout(fn, *args, seconds=20):
    """fn(*args)'s exception (or None); fails instead of hanging the suite."""
    outcome = {}

    def target():
        try:
            fn(*args)
        except BaseException as e:   # noqa: BLE001 (handed to the test thread)
            outcome["error"] = e
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"{getattr(fn, '__name__', fn)}{args} still runs after {seconds} s")
    return outcome.get("error")


@pytest.fixture
def fifo(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    path = tmp_path / "model.fifo"
    os.mkfifo(path)
    yield path
    # a reader stuck in open() (the bug this guards against) is released by a writer
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass                          # no reader waits: nothing to release


@pytest.fixture
def bnn_file(tmp_path):
    path = tmp_path / "m.bnn"
    bnnrt.save(zoo.resnet20_binary(width=1, threads=1), path)
    return path


@pytest.mark.parametrize("reader,limit", READERS)
def test_a_fifo_is_refused_without_blocking(reader, limit, fifo, monkeypatch):
    monkeypatch.setattr(*limit, 1 << 20)     # a reader that got past the check stops soon
    error = call_with_timeout(reader, fifo)
    assert isinstance(error, ModelIOError), error
    assert "FIFO" in str(error) and str(fifo) in str(error)


@pytest.mark.parametrize("reader,limit", READERS)
def test_a_device_is_refused(reader, limit, monkeypatch):
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    monkeypatch.setattr(*limit, 1 << 20)     # a reader that got past the check stops soon
    error = call_with_timeout(reader, "/dev/zero")
    assert isinstance(error, ModelIOError), error
    assert "'/dev/zero'" in str(error) and "character device" in str(error)


@pytest.mark.parametrize("reader,limit", READERS)
def test_a_directory_is_refused(reader, limit, tmp_path):
    with pytest.raises(ModelIOError, match="directory") as e:
        reader(tmp_path)
    assert str(tmp_path) in str(e.value)


@pytest.mark.parametrize("reader,limit", READERS)
def test_a_file_over_the_limit_is_refused(reader, limit, monkeypatch, bnn_file):
    monkeypatch.setattr(*limit, os.path.getsize(bnn_file) - 1)
    with pytest.raises(ModelFormatError, match="more than") as e:
        reader(bnn_file)
    assert str(bnn_file) in str(e.value)


def test_a_file_of_exactly_the_limit_loads(monkeypatch, bnn_file):
    monkeypatch.setattr(fmt, "MAX_FILE_BYTES", os.path.getsize(bnn_file))
    assert bnnrt.load(bnn_file).graph.nodes


def test_a_tflite_file_of_exactly_the_limit_imports(monkeypatch):
    pytest.importorskip("tflite")
    monkeypatch.setattr(_tflite, "MAX_FILE_BYTES", os.path.getsize(TFLITE))
    assert from_tflite(TFLITE).graph.nodes


@pytest.mark.parametrize("reader,limit", READERS)
def test_the_bytes_read_count_not_the_size_reported(reader, limit, monkeypatch):
    """/proc files report size 0 and hold more: only counting what arrives catches them."""
    if not os.path.isfile("/proc/self/maps"):
        pytest.skip("no /proc")
    assert os.path.getsize("/proc/self/maps") == 0
    monkeypatch.setattr(*limit, 16)
    with pytest.raises(ModelFormatError, match="/proc/self/maps"):
        reader("/proc/self/maps")


class EndlessStream:
    """A binary file object that never ends (a pipe from /dev/zero), counting
    what it delivers; it stops the test once a reader asks for ``give_up`` bytes."""

    name = "<endless>"

    def __init__(self, give_up):
        self.delivered, self.give_up = 0, give_up

    def read(self, n=-1):
        assert n is not None and n >= 0, "an unbounded read() of an endless stream"
        self.delivered += n
        assert self.delivered < self.give_up, f"read {self.delivered} bytes of an endless stream"
        return b"\0" * n


@pytest.mark.parametrize("reader,limit", READERS)
def test_a_file_object_is_read_in_bounded_chunks(reader, limit, monkeypatch):
    monkeypatch.setattr(*limit, 1000)
    monkeypatch.setattr(_io, "CHUNK_BYTES", 64)
    stream = EndlessStream(give_up=100_000)
    with pytest.raises(ModelFormatError, match="<endless>: more than 1,000 bytes"):
        reader(stream)
    assert stream.delivered == 1001


def test_file_objects_and_bytes_read_whole(bnn_file):
    data = bnn_file.read_bytes()
    with open(bnn_file, "rb") as fh:
        assert _io.read_bounded(fh, len(data)) == (data, str(bnn_file))
    assert _io.read_bounded(io.BytesIO(data), len(data)) == (data, "<file object>")
    assert _io.read_bounded(memoryview(data), 1) == (data, "<bytes>")   # in memory already: not limited


def test_a_text_mode_file_object_is_refused(bnn_file):
    with open(bnn_file, encoding="latin-1") as fh, pytest.raises(ModelIOError, match="binary mode"):
        from_tflite(fh)


def test_a_tflite_file_object_imports_under_its_name():
    pytest.importorskip("tflite")
    with open(TFLITE, "rb") as fh:
        model = from_tflite(fh)
    assert model.name == TFLITE and model.graph.metadata["name"] == "float_ops"
