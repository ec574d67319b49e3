"""A cycle model of bnnrt's NEON kernels on a Cortex-A72 (Raspberry Pi 4B).

Nothing here times anything: the machine is x86_64 and emulation times
nothing. Instead the kernels are cross-compiled exactly as the wheel builds
them (aarch64-linux-gnu-gcc -O3, no -march), the innermost loop of each NEON
kernel is cut out of the assembly, and llvm-mca (Debian's ``llvm``) estimates
its cycles per iteration on the chosen core. The per-layer counts of a bnnrt
model (binary MACs, int8 MACs, outputs per epilogue kind) then give a latency
estimate, printed next to LCE's published numbers.

    python tools/arm_model.py [MODEL ...] [--mcpu cortex-a72] [--ghz 1.5] [--json]

MODEL is a .bnn file or zoo:NAME[:width] (default: zoo:resnet20_binary and
the QuickNet shape model below). docs/performance.md quotes its output.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(REPO, "bnnrt", "_kernels", "src")
CC = os.environ.get("BNNRT_ARM_CC", "aarch64-linux-gnu-gcc")
CFLAGS = ["-O3", "-std=c11", "-fopenmp", "-fwrapv", f"-I{SRC}", "-S"]

# (name, source, mnemonic that marks the loop, binary or int8 MACs per such instruction)
#  uadalp: 16 byte counts of XOR-ed words = 128 bits = 128 binary MACs (2 channels x 64 taps)
#  sdot:   4 lanes x 4 products;  sadalp (after smull): 8 products
LOOPS = [
    ("bconv_neon", "bnn_bconv.c", "uadalp", 128),
    ("conv8_dotprod", "bnn_conv8.c", "sdot", 16),
    ("conv8_neon", "bnn_conv8.c", "sadalp", 8),
]
EPILOGUE_STUB = """#include "bnn_common.h"
void epi(const bnn_epi *e, const int64_t *y, size_t pix, void *out, const int8_t *skip)
{ bnn_epi_pixel_neon(e, y, pix, out, skip); }
"""


def compile_asm(source_text_or_path: str, tmp: str, name: str) -> list[str]:
    src = source_text_or_path
    if not os.path.exists(src):
        src = os.path.join(tmp, f"{name}.c")
        with open(src, "w") as f:
            f.write(source_text_or_path)
    out = os.path.join(tmp, f"{name}.s")
    subprocess.run([CC, *CFLAGS, "-o", out, src], check=True)
    with open(out) as f:
        return f.read().splitlines()


def loops_of(lines: list[str]):
    """(start, end) line ranges of loops: a label and a later branch back to it."""
    labels = {}
    for i, ln in enumerate(lines):
        m = re.match(r"^(\.L\w+):", ln)
        if m:
            labels[m.group(1)] = i
    for i, ln in enumerate(lines):
        m = re.match(r"^\s+(b\.\w+|b|bne|beq|cbnz|cbz|tbnz|tbz)\s+(?:\w+,\s*)*(\.L\w+)\s*$", ln)
        if m and m.group(2) in labels and labels[m.group(2)] < i:
            yield labels[m.group(2)], i


def instructions(lines):
    return [ln for ln in lines if ln.startswith("\t") and not ln.strip().startswith(".")]


def hot_loop(lines: list[str], mnemonic: str) -> list[str]:
    """The loop with the most ``mnemonic`` instructions; ties go to the shortest."""
    loops = list(loops_of(lines))
    inner = [(s, e) for s, e in loops if not any(s <= s2 and e2 <= e and (s2, e2) != (s, e) for s2, e2 in loops)]
    best = None
    for start, end in inner:
        body = instructions(lines[start + 1:end + 1])
        count = sum(1 for ln in body if ln.split()[0] == mnemonic)
        if count and (best is None or (count, -len(body)) > best[0]):
            best = ((count, -len(body)), body)
    if best is None:
        raise SystemExit(f"no loop with {mnemonic} found")
    # the branches inside are not part of the steady-state path llvm-mca models
    return [ln for ln in best[1] if not re.match(r"^\s+(b\.\w+|b|bne|beq|cbnz|cbz|tbnz|tbz)\s", ln)]


def mca_cycles(body: list[str], mcpu: str, tmp: str, name: str) -> float:
    path = os.path.join(tmp, f"{name}.loop.s")
    with open(path, "w") as f:
        f.write("\n".join(body) + "\n")
    out = subprocess.run(["llvm-mca", "-mtriple=aarch64", f"-mcpu={mcpu}", "-mattr=+dotprod",
                          "-iterations=1000", path], capture_output=True, text=True, check=True).stdout
    cycles = int(re.search(r"Total Cycles:\s+(\d+)", out).group(1))
    return cycles / 1000.0


def measure(mcpu: str) -> dict:
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, source, mnemonic, macs_per in LOOPS:
            body = hot_loop(compile_asm(os.path.join(SRC, source), tmp, name), mnemonic)
            n = sum(1 for ln in body if ln.split()[0] == mnemonic)
            cyc = mca_cycles(body, mcpu, tmp, name)
            rates[name] = {"instructions": len(body), mnemonic: n, "cycles_per_iter": cyc,
                           "macs_per_iter": n * macs_per, "macs_per_cycle": n * macs_per / cyc,
                           "instructions_per_mac": len(body) / (n * macs_per)}
        body = hot_loop(compile_asm(os.path.join(SRC, "bnn_misc.c"), tmp, "binarize"), "addp")
        cyc = mca_cycles(body, mcpu, tmp, "binarize")
        rates["binarize"] = {"instructions": len(body), "cycles_per_iter": cyc, "outputs_per_iter": 64,
                             "cycles_per_output": cyc / 64}
        body = hot_loop(compile_asm(EPILOGUE_STUB, tmp, "epilogue"), "sqxtn")
        cyc = mca_cycles(body, mcpu, tmp, "epilogue")
        rates["epilogue_int8"] = {"instructions": len(body), "cycles_per_iter": cyc, "outputs_per_iter": 4,
                                  "cycles_per_output": cyc / 4}
    return rates


# Parts still scalar on ARM, in cycles per element (generous: a few instructions
# per element on a 3-wide core): the threshold-to-bits and int32 epilogues, pools.
SCALAR_CYCLES = {"bits_epilogue": 2.0, "int32_epilogue": 1.5, "pool": 1.5, "other": 2.0}


def estimate(layers, rates: dict, ghz: float, dotprod: bool = False) -> dict:
    conv8 = rates["conv8_dotprod" if dotprod else "conv8_neon"]["macs_per_cycle"]
    parts = {"binary": 0.0, "int8": 0.0, "epilogue": 0.0, "other": 0.0}
    for layer in layers:
        outputs = layer["outputs"]
        parts["binary"] += layer["binary_macs"] / rates["bconv_neon"]["macs_per_cycle"]
        parts["int8"] += layer["int8_macs"] / conv8
        if layer["op"] in ("bconv2d", "conv2d_int8"):
            kind = layer["out_kind"]
            per = (rates["epilogue_int8"]["cycles_per_output"] if kind == "int8"
                   else SCALAR_CYCLES["bits_epilogue"] if kind == "bits" else SCALAR_CYCLES["int32_epilogue"])
            parts["epilogue"] += outputs * per
        elif layer["op"] == "binarize":
            parts["other"] += outputs * rates["binarize"]["cycles_per_output"]
        else:
            parts["other"] += outputs * SCALAR_CYCLES["other"]
    ms = {k: v / (ghz * 1e6) for k, v in parts.items()}
    ms["total"] = sum(ms.values())
    return ms


def layers_of(spec: str):
    sys.path.insert(0, REPO)
    from bnnrt.cli import open_model
    model = open_model(spec, threads=1)
    out = []
    for layer, step in zip(model.layers(), model.plan.steps):
        n = 1
        for d in layer["output"].shape:
            n *= d
        out.append({"op": layer["op"], "binary_macs": layer["binary_macs"], "int8_macs": layer["int8_macs"],
                    "outputs": n, "out_kind": step.node.attrs.get("output", "int8")})
    return out


def quicknet_layers():
    """QuickNet at 224x224 as 16 binary 3x3 convs, 4 per stage at 56/28/14/7 pixels with
    64/128/256/512 channels (1.85 G binary MACs, the count of anchors.md), each with the
    int8 requantize + residual-add epilogue and a binarize of its input; the non-binary
    layers (stem, transitions, head) as int8 MACs: larq's own summary puts 99.6% of
    QuickNet's MACs in binary layers, so 0.4% of the total is taken, at the plain NEON
    int8 rate (the A72 has no dot product)."""
    layers = []
    for hw, c in ((56, 64), (28, 128), (14, 256), (7, 512)):
        for _ in range(4):
            layers.append({"op": "binarize", "binary_macs": 0, "int8_macs": 0, "outputs": hw * hw * c,
                           "out_kind": "bits"})
            layers.append({"op": "bconv2d", "binary_macs": hw * hw * c * 9 * c, "int8_macs": 0,
                           "outputs": hw * hw * c, "out_kind": "int8"})
    binary = sum(layer["binary_macs"] for layer in layers)
    layers.append({"op": "conv2d_int8", "binary_macs": 0, "int8_macs": int(binary * 0.004 / 0.996),
                   "outputs": 0, "out_kind": "int8"})
    return layers


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="*", default=["zoo:resnet20_binary", "quicknet"])
    p.add_argument("--mcpu", default="cortex-a72")
    p.add_argument("--ghz", type=float, default=1.5)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    rates = measure(args.mcpu)
    result = {"mcpu": args.mcpu, "ghz": args.ghz, "loops": rates, "models": {}}
    for spec in args.models:
        layers = quicknet_layers() if spec == "quicknet" else layers_of(spec)
        result["models"][spec] = estimate(layers, rates, args.ghz)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"{args.mcpu} at {args.ghz} GHz (llvm-mca on the cross-compiled kernels)")
    for name, r in rates.items():
        print(f"  {name:<15} " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                          for k, v in r.items()))
    for spec, ms in result["models"].items():
        print(f"{spec}: {ms['total']:.1f} ms  (" + ", ".join(f"{k} {v:.2f}" for k, v in ms.items()
                                                          if k != "total") + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
