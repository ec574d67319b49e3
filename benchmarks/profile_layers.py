"""Per-layer time of a model: where a forward pass spends its time.

    python benchmarks/profile_layers.py MODEL [--batch 1] [--threads 1] [--reps 300]

MODEL is a .bnn file or zoo:NAME[:width]. Each bound kernel call of the plan
is timed on its own (median of ``--reps`` calls, after a warm-up pass), then
the whole ``Model.run`` for comparison; the difference is the executor's own
overhead (input copy, output copy, dispatch).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bnnrt.cli import open_model  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=300)
    args = p.parse_args(argv)
    model = open_model(args.model, threads=args.threads)
    spec = next(iter(model.plan.input_specs.values()))
    x = np.random.default_rng(0).standard_normal((args.batch,) + spec.shape).astype(np.float32)
    ctx = model.plan.acquire(args.batch)
    ctx.run([x])
    rows = []
    for layer, call in zip(model.layers(), ctx.calls):
        times = []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
        rows.append((layer, statistics.median(times)))
    model.plan.release(ctx)
    whole = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        model.run(x)
        whole.append(time.perf_counter() - t0)
    total = sum(t for _, t in rows)
    print(f"{args.model}: batch {args.batch}, {model.threads} thread(s)")
    print(f"{'layer':<28} {'op':<15} {'kernel':<11} {'us':>8} {'share':>6} {'GMAC/s':>8}")
    for layer, t in rows:
        macs = (layer["binary_macs"] + layer["int8_macs"] + layer["float_macs"]) * args.batch
        rate = f"{macs / t / 1e9:8.1f}" if macs else f"{'':>8}"
        print(f"{layer['name'][:28]:<28} {layer['op']:<15} {layer['kernel']:<11} {t * 1e6:8.1f} "
              f"{100 * t / total:5.1f}% {rate}")
    by_op: dict[str, float] = {}
    for layer, t in rows:
        by_op[layer["op"]] = by_op.get(layer["op"], 0.0) + t
    print("by op: " + ", ".join(f"{op} {t * 1e6:.1f} us" for op, t in sorted(by_op.items(), key=lambda kv: -kv[1])))
    run = statistics.median(whole)
    print(f"sum of layers {total * 1e6:.1f} us; Model.run {run * 1e6:.1f} us; "
          f"executor overhead {(run - total) * 1e6:.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
