"""Thousands of mutated model files: each loads (and runs) or raises a bnnrt
error; none crashes, hangs or allocates without bound.

Mutations are made at three depths: raw bytes (caught by the checksum), raw
bytes with the checksum repaired (reaching the header and JSON parsers), and
the JSON document itself (numbers, types and keys changed, reaching the
graph checks and the kernels' constructors)."""

import json
import os

import numpy as np
import pytest

import bnnrt
from bnnrt import format as fmt
from bnnrt.errors import BnnrtError

from conftest import every_op_graph

INTERESTING = [0, 1, -1, 2, 3, 7, 8, 9, 17, 63, 64, 65, 127, 128, -128, 255, 256, 32767, 32768,
               2 ** 31 - 1, 2 ** 31, -2 ** 31, 2 ** 32, 2 ** 63 - 1, 2 ** 64, 10 ** 12, 0.5, -0.0,
               None, True, "x", [], {}, [1, 2]]


def _try(data, x):
    try:
        model = bnnrt.load(data, threads=1)
    except BnnrtError:
        return "error"
    try:
        model.run(x)
    except BnnrtError:
        return "input error"
    return "ran"


def _paths(obj, prefix=()):
    """Every leaf and container path in a JSON document."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


def _set(doc, path, value):
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


@pytest.fixture(scope="module")
def seed_file():
    return fmt.dumps(every_op_graph(seed=3, h=6, w=5))


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).standard_normal((2, 6, 5, 3)).astype(np.float32)


def test_raw_byte_mutations(seed_file, x):
    rng = np.random.default_rng(0)
    outcomes = {}
    for i in range(1500):
        data = bytearray(seed_file)
        for _ in range(rng.integers(1, 8)):
            pos = int(rng.integers(0, len(data)))
            data[pos] = int(rng.integers(0, 256))
        if i % 2:   # repair the checksum so the mutation reaches the parsers
            import struct
            struct.pack_into("<I", data, fmt.CRC_OFFSET, fmt._crc(data))
        r = _try(bytes(data), x)
        outcomes[r] = outcomes.get(r, 0) + 1
    assert outcomes.get("error", 0) > 0


def test_json_mutations(seed_file, x):
    doc0, blob = fmt.unpack(seed_file)
    paths = [p for p in _paths(doc0) if p]
    rng = np.random.default_rng(1)
    outcomes = {}
    for _ in range(2000):
        doc = json.loads(json.dumps(doc0))
        for _ in range(rng.integers(1, 3)):
            path = paths[int(rng.integers(0, len(paths)))]
            try:
                if rng.random() < 0.1 and isinstance(path[-1], str):
                    parent = doc
                    for key in path[:-1]:
                        parent = parent[key]
                    parent.pop(path[-1], None)
                else:
                    _set(doc, path, INTERESTING[int(rng.integers(0, len(INTERESTING)))])
            except (KeyError, IndexError, TypeError):
                pass   # an earlier mutation removed the parent
        r = _try(fmt.pack(json.dumps(doc).encode(), blob), x)
        outcomes[r] = outcomes.get(r, 0) + 1
    # both kinds must occur, or the mutations are not reaching deep enough
    assert outcomes.get("error", 0) > 1000 and outcomes.get("ran", 0) > 20, outcomes


def test_truncations_everywhere(seed_file, x):
    for cut in range(0, len(seed_file), 7):
        assert _try(seed_file[:cut], x) == "error"


REGRESSIONS = os.path.join(os.path.dirname(__file__), "fuzz", "regressions", "load")


@pytest.mark.parametrize("name", sorted(os.listdir(REGRESSIONS)))
def test_regression_files(name, x):
    """Files that once broke the loader (or were built to): each ends in a bnnrt error."""
    with open(os.path.join(REGRESSIONS, name), "rb") as f:
        assert _try(f.read(), x) == "error"
