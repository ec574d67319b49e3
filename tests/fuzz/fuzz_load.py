"""Coverage-guided fuzzing of bnnrt.load (atheris / libFuzzer).

    python tests/fuzz/fuzz_load.py tests/fuzz/corpus_load -max_total_time=60 -timeout=1 -rss_limit_mb=2048

The first byte of an input picks how the rest reaches the loader: 0, as a
file; 1, as a file whose checksum is repaired first (so mutations get past the
CRC into the header and graph checks); 2, as the metadata JSON of a file
packed around the data section of a real model (so the graph, attribute and
kernel-constructor checks see structured mutations). When a model loads, it
also runs once on a small batch. Anything but success or a bnnrt error (BnnrtError) is a
finding: an exception of another type, a crash (SIGSEGV, a sanitizer
report), a hang over -timeout seconds, or memory beyond -rss_limit_mb.
The seed corpus (written by make_seeds.py) is real model files.
"""

import sys

import atheris

with atheris.instrument_imports():
    import struct

    import numpy as np

    import bnnrt
    from bnnrt import format as fmt
    from bnnrt.errors import BnnrtError

X_CACHE = {}
BLOB = None     # data section of the every-op seed, for mode 2


def as_file(data: bytes) -> bytes:
    global BLOB
    mode, body = (data[0] % 3, data[1:]) if data else (0, b"")
    if mode == 1 and len(body) >= fmt.HEADER.size:
        body = bytearray(body)
        struct.pack_into("<I", body, fmt.CRC_OFFSET, fmt._crc(body))
        return bytes(body)
    if mode == 2:
        if BLOB is None:
            import os
            sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
            from conftest import every_op_graph
            BLOB = fmt.unpack(fmt.dumps(every_op_graph(seed=3, h=6, w=5)))[1]
        return fmt.pack(body, BLOB)
    return body


def one_input(data: bytes) -> None:
    try:
        model = bnnrt.load(as_file(data), threads=1)
    except BnnrtError:
        return
    spec = next(iter(model.plan.input_specs.values()))
    if spec.nbytes > 1 << 22:
        return          # loads fine; running it would only measure the fuzzer's patience
    key = (spec.shape, spec.dtype)
    if key not in X_CACHE:
        X_CACHE[key] = np.ones((2,) + spec.storage_shape, spec.np_dtype)
    try:
        model.run(X_CACHE[key])
    except BnnrtError:
        return


def main():
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
