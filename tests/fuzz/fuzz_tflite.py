"""Coverage-guided fuzzing of the .tflite importer (atheris / libFuzzer).

    python tests/fuzz/fuzz_tflite.py CORPUS -max_total_time=60 -timeout=1 -rss_limit_mb=2048

Each input is handed to ``bnnrt.convert.from_tflite`` as the bytes of a file;
when it imports, the model runs once on a small batch. Anything but success,
a bnnrt error (BnnrtError) or the reader's ImportError is a finding: another
exception, a crash, a hang over -timeout seconds, or memory beyond
-rss_limit_mb. The seed corpus is the LCE fixtures in tests/data/lce.
"""

import sys

import atheris

with atheris.instrument_imports():
    import numpy as np

    from bnnrt.convert import _tflite  # noqa: F401  (imported lazily by from_tflite: instrument it now)
    from bnnrt.convert import from_tflite
    from bnnrt.errors import BnnrtError

X_CACHE = {}


def one_input(data: bytes) -> None:
    try:
        model = from_tflite(data, threads=1)
    except BnnrtError:
        return
    spec = next(iter(model.plan.input_specs.values()))
    if spec.nbytes > 1 << 22:
        return          # imports fine; running it would only measure the fuzzer's patience
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
