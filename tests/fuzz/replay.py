"""Run a fuzz target over files (a corpus, or the regression inputs), without
the fuzzer: for replaying what the fuzzers found under the sanitizer build.

    python tests/fuzz/replay.py load|predict|tflite FILE_OR_DIR...
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main(target, paths):
    module = __import__({"load": "fuzz_load", "predict": "fuzz_predict", "tflite": "fuzz_tflite"}[target])
    files = []
    for p in paths:
        files += [os.path.join(p, f) for f in sorted(os.listdir(p))] if os.path.isdir(p) else [p]
    for path in files:
        with open(path, "rb") as f:
            data = f.read()
        if target == "load" and path.endswith(".bnn"):
            data = b"\0" + data      # a plain model file (mode 0, see fuzz_load.py)
        module.one_input(data)
    print(f"replayed {len(files)} inputs through fuzz_{target}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
