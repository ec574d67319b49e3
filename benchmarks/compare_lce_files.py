"""bnnrt and Larq Compute Engine on the same .tflite files, in one run.

    python benchmarks/compare_lce_files.py [--runs 20] [--rounds 3] [--lce-python /tmp/lce/bin/python]
        [--models quicknet_small,quicknet,quicknet_large,birealnet,binary_resnet_e18,resnet20b]
        [--keep DIR]

LCE's half (benchmarks/sidebyside/lce_bench.py, in LCE's own virtualenv, see
../shared/design/anchors.md) builds each model (larq_zoo architectures with
random weights and random BatchNorm statistics, and the binary ResNet-20 of
anchors.md), converts it with LCE, times LCE's best x86 setting (indirect
BGEMM, one thread, batch 1) and stores the file with LCE's outputs on two
random inputs. This script then imports each file with
``bnnrt.convert.from_tflite``, checks top-1 and outputs against LCE's, times
bnnrt (one thread, batch 1) and prints one table. Timing alternates: each of
``--rounds`` rounds times every file in LCE (a fresh process on the stored
files) and then in bnnrt, and each engine's time is the median over rounds of
its per-round medians, so a slow minute of a shared machine hits both. Quote
the ratios, from one run: absolute times drift on shared machines.
"""

from __future__ import annotations

import os

# One thread means one thread: numpy's BLAS (used by bnnrt only for grouped
# float convs) would otherwise use every core. Set before numpy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))     # the repository's bnnrt when it is not installed
DEFAULT_MODELS = "quicknet_small,quicknet,quicknet_large,birealnet,binary_resnet_e18,resnet20b"


def median_ms(fn, runs, max_seconds=60.0):
    for _ in range(3):
        fn()
    times = []
    deadline = time.perf_counter() + max_seconds
    for _ in range(runs):
        if times and time.perf_counter() > deadline:
            break
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3, help="LCE, bnnrt, LCE, bnnrt, ... rounds")
    ap.add_argument("--lce-python", default=os.environ.get("BNNRT_LCE_PYTHON", "/tmp/lce/bin/python"))
    ap.add_argument("--models", default=DEFAULT_MODELS)
    ap.add_argument("--keep", default=None, help="keep the .tflite files and LCE outputs in DIR")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not os.path.exists(args.lce_python):
        sys.exit(f"no LCE virtualenv at {args.lce_python} (see ../shared/design/anchors.md)")

    from bnnrt.convert import from_tflite

    with tempfile.TemporaryDirectory() as tmp:
        files = args.keep or tmp
        proc = subprocess.run([args.lce_python, os.path.join(HERE, "sidebyside", "lce_bench.py"),
                               "--runs", str(args.runs), "--models", args.models, "--save-dir", files],
                              capture_output=True, text=True, timeout=3600)
        if proc.returncode != 0:
            sys.exit(f"lce_bench.py failed:\n{proc.stderr[-3000:]}")
        lce_rounds = [json.loads(proc.stdout.strip().splitlines()[-1])]
        names = args.models.split(",")
        models, first_input, rows = {}, {}, {}
        for name in names:
            t0 = time.perf_counter()
            models[name] = from_tflite(os.path.join(files, f"{name}.tflite"), threads=1)
            rows[name] = {"import_s": time.perf_counter() - t0}
            first_input[name] = np.load(os.path.join(files, f"{name}.npz"))["inputs"][:1]
        ours_rounds = []
        for r in range(args.rounds):
            if r:
                proc = subprocess.run([args.lce_python, os.path.join(HERE, "sidebyside", "lce_bench.py"),
                                       "--runs", str(args.runs), "--models", args.models, "--time-dir", files],
                                      capture_output=True, text=True, timeout=3600)
                if proc.returncode != 0:
                    sys.exit(f"lce_bench.py failed:\n{proc.stderr[-3000:]}")
                lce_rounds.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            ours_rounds.append({name: median_ms(lambda: models[name].run(first_input[name]), args.runs)
                                for name in names})
        for name in names:
            path = os.path.join(files, f"{name}.tflite")
            data = np.load(os.path.join(files, f"{name}.npz"))
            model = models[name]
            out = np.concatenate([model.run(x[None]).reshape(1, -1) for x in data["inputs"]])
            ref = data["lce"]
            ms = statistics.median(o[name] for o in ours_rounds)
            lce_ms = statistics.median(lr[name]["median_ms"] for lr in lce_rounds)
            rows[name].update({
                "bnnrt_ms": ms, "lce_ms": lce_ms, "speedup": lce_ms / ms,
                "rounds": [{"lce_ms": lr[name]["median_ms"], "bnnrt_ms": o[name]}
                           for lr, o in zip(lce_rounds, ours_rounds)],
                "top1_equal": bool((out.argmax(1) == ref.argmax(1)).all()),
                # where LCE and Keras disagree (a float tie flipped a sign), bnnrt may side with Keras
                "top1_as_keras_where_lce_differs": bool(((out.argmax(1) == ref.argmax(1)) |
                                                         ((ref.argmax(1) != data["keras"].argmax(1)) &
                                                          (out.argmax(1) == data["keras"].argmax(1)))).all()),
                "max_rel_diff": float(np.abs(out - ref).max() / np.abs(ref).max()),
                "max_rel_diff_keras": float(np.abs(out - data["keras"]).max() / np.abs(data["keras"]).max()),
                "lce_max_rel_diff_keras": float(np.abs(ref - data["keras"]).max() / np.abs(data["keras"]).max()),
                "binary_macs": sum(r["binary_macs"] for r in model.layers()),
                "file_bytes": os.path.getsize(path),
            })
    if args.json:
        print(json.dumps(rows))
        return
    # top-1: "same" as LCE; "keras" where LCE and Keras disagree and bnnrt gives Keras' class
    print(f"{'model':20s} {'binary MACs':>12s} {'LCE ms':>9s} {'bnnrt ms':>9s} {'speedup':>8s} "
          f"{'top-1':>6s} {'rel diff LCE':>12s} {'to Keras':>9s} {'LCE-Keras':>9s}  per round (LCE/bnnrt ms)")
    for name, r in rows.items():
        per_round = "  ".join(f"{x['lce_ms']:.2f}/{x['bnnrt_ms']:.2f}" for x in r["rounds"])
        top1 = "same" if r["top1_equal"] else "keras" if r["top1_as_keras_where_lce_differs"] else "DIFF"
        print(f"{name:20s} {r['binary_macs'] / 1e6:10.0f} M {r['lce_ms']:9.2f} {r['bnnrt_ms']:9.2f} "
              f"{r['speedup']:7.2f}x {top1:>6s} {r['max_rel_diff']:12.2e} {r['max_rel_diff_keras']:9.1e} "
              f"{r['lce_max_rel_diff_keras']:9.1e}  {per_round}")


if __name__ == "__main__":
    main()
