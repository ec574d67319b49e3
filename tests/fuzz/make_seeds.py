"""Write the seed corpus of fuzz_load.py: real model files (every op, the zoo)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bnnrt import format as fmt, zoo  # noqa: E402
from conftest import every_op_graph  # noqa: E402


def main(out):
    os.makedirs(out, exist_ok=True)
    graphs = {"every_op": every_op_graph(seed=3, h=6, w=5),
              "blendnet_tiny": zoo.blendnet20(input_shape=(6, 6, 1), threads=1).graph}
    import json
    n = 0
    for name, graph in graphs.items():
        data = fmt.dumps(graph)
        for mode in (0, 1):     # see fuzz_load.py: the first byte picks how the rest is read
            with open(os.path.join(out, f"{name}.mode{mode}.bnn"), "wb") as f:
                f.write(bytes([mode]) + data)
            n += 1
    doc = fmt.unpack(fmt.dumps(graphs["every_op"]))[0]
    with open(os.path.join(out, "every_op.mode2.json"), "wb") as f:
        f.write(b"\x02" + json.dumps(doc).encode())
    print(f"wrote {n + 1} seeds to {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "corpus_load")
