"""Peak training memory of BlendNet-20, plain vs memory-lean (--lean).

    python benchmarks/train_memory.py [--batch 128] [--width 1] [--json]

Each mode runs in its own process (so one does not inherit the other's
allocator high-water mark) and reports two numbers for one training step
(forward, backward, optimizer step) at the given batch on 28x28x1 inputs:

* ``saved_bytes``: the bytes autograd keeps for the backward pass at the end
  of the forward pass (activations; parameters excluded): the memory that
  lean training is about, measured exactly with saved-tensor hooks.
* ``peak_rss_delta``: the process's peak resident memory during the step
  minus its resident memory just before it (the allocator's view, noisier).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, resource, sys, torch
from bnnrt.train import blendnet20
lean, batch, width = sys.argv[1] == "lean", int(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
torch.set_num_threads(1)
model = blendnet20(width, (28, 28, 1)).set_lean(lean).train()
opt = torch.optim.Adam(model.parameters(), 1e-3)
x, y = torch.randn(batch, 1, 28, 28), torch.randint(0, 10, (batch,))

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()

saved = [0]
def pack(t):
    if isinstance(t, tuple) and t and t[0] == "compact":
        saved[0] += t[1].numel() * t[1].element_size()
    elif isinstance(t, torch.Tensor) and not isinstance(t, torch.nn.Parameter):
        saved[0] += t.numel() * t.element_size()
    return t

before = rss()
with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
    loss = torch.nn.functional.cross_entropy(model(x), y)
loss.backward()
opt.step()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"mode": "lean" if lean else "plain", "batch": batch, "width": width,
                  "saved_bytes": saved[0], "peak_rss_delta": peak - before, "peak_rss": peak}))
"""


def measure(mode: str, batch: int, width: int) -> dict:
    # A fixed mmap threshold makes glibc map every large tensor on its own and
    # unmap it when freed, so resident memory follows live memory.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(batch), str(width)],
                         capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--width", type=int, default=1)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    plain, lean = (measure(m, args.batch, args.width) for m in ("plain", "lean"))
    result = {"plain": plain, "lean": lean,
              "saved_ratio": plain["saved_bytes"] / lean["saved_bytes"],
              "peak_rss_delta_ratio": plain["peak_rss_delta"] / max(lean["peak_rss_delta"], 1)}
    if args.json:
        print(json.dumps(result))
        return 0
    mib = 1 / 2 ** 20
    print(f"BlendNet-20 w{args.width}, batch {args.batch}, 28x28x1, one training step")
    print(f"{'mode':<6} {'saved for backward':>20} {'peak RSS - RSS before':>24}")
    for r in (plain, lean):
        print(f"{r['mode']:<6} {r['saved_bytes'] * mib:>16.1f} MiB {r['peak_rss_delta'] * mib:>20.1f} MiB")
    print(f"ratio  {result['saved_ratio']:>16.2f}x {result['peak_rss_delta_ratio']:>20.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
