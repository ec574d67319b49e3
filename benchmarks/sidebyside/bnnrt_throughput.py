"""Images/s of one single-threaded bnnrt process on BlendNet-20 at batch 64.

    python benchmarks/sidebyside/bnnrt_throughput.py --seconds 2 [--start-at UNIX_TIME]

compare.py starts two of these at the same moment (``--start-at``) next to
one alone: the two processes share nothing, so the sum of their rates over the
rate of one is what this host's two cores can give a batch-parallel run right
now. Target 4's two threads are judged against it: a second vCPU that another
tenant is using slows both alike. Prints one JSON line.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from bnnrt import zoo  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--start-at", type=float, default=0.0, help="time.time() to start measuring at")
    args = ap.parse_args()
    model = zoo.blendnet20(width=1, threads=1)
    x = np.random.default_rng(0).standard_normal((64, 32, 32, 3)).astype(np.float32)
    model.run(x)                                    # warm up: arena, caches
    while time.time() < args.start_at:
        time.sleep(0.001)
    images, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < args.seconds:
        model.run(x)
        images += x.shape[0]
    print(json.dumps({"images_per_s": images / (time.perf_counter() - t0)}))


if __name__ == "__main__":
    main()
