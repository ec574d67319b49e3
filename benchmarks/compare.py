"""bnnrt, Larq Compute Engine, ONNX Runtime and OpenVINO side by side, in one run.

    python benchmarks/compare.py [--runs 200] [--rounds 1] [--lce-python /tmp/lce/bin/python]
                                 [--ort-python /tmp/ort/bin/python] [--ov-python /tmp/ov/bin/python]
                                 [--ov-avx2-shim ../shared/bench/openvino/ov_hide_avx512.cpp]
                                 [--only-openvino]

LCE (TensorFlow, numpy < 2), ONNX Runtime and OpenVINO live in their own virtualenvs
(../shared/design/anchors.md has the install commands); this script runs
their halves (benchmarks/sidebyside/*.py) as subprocesses and bnnrt in-process,
single thread, batch 1, then prints medians and ratios. It also compiles and
runs benchmarks/native/popcount_ceiling.c, the XOR + POPCNT + ADD loop that
bounds what a binary convolution can reach on this core. Without a venv the
corresponding column says so. Quote the ratios: absolute times drift on
shared machines. The host here flips between a quiet and a ~1.6x slower
state for seconds at a time (other tenants): ``--rounds 3`` interleaves the
engines so that no engine is measured only in one state. Target 4's one-
and two-thread runs alternate in back-to-back pairs (the median ratio is
quoted), and it comes with the host's two-core capacity measured in the same
round: two single-threaded bnnrt processes running at once
(sidebyside/bnnrt_throughput.py) against one alone, the most any two-thread
run could gain at that moment. Target 5 sets OpenVINO's JIT binary
convolution beside bnnrt's on each ISA this CPU has: AVX-512 as installed, and
AVX2 (bnnrt with BNNRT_DISABLE_SIMD=avx512; OpenVINO with ONEDNN_MAX_CPU_ISA=AVX2
plus, for its own binary conv node, an LD_PRELOAD shim that hides AVX-512,
built from ``--ov-avx2-shim`` when given), each against that ISA's popcount
ceiling measured in the same round, and the LCE-converted binary ResNet-20 of
anchors.md end to end (LCE's venv converts it; bnnrt imports the file, and
sidebyside/openvino_bench.py rebuilds bnnrt's graph in OpenVINO node for node
and checks its output against bnnrt's).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))     # the repository's bnnrt when it is not installed


def median_ms(fn, runs):
    for _ in range(10):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def paired_speedup(one, two, runs, pairs=15):
    """Median over ``pairs`` back-to-back pairs of (median time of ``one``) /
    (median time of ``two``), ``runs`` calls each: the two halves of a pair are
    tens of ms apart, so a few seconds of another tenant on the second vCPU
    spoil a few pairs, not the whole comparison."""
    ratios = [median_ms(one, runs) / median_ms(two, runs) for _ in range(pairs)]
    return statistics.median(ratios)


def ceiling():
    """G binary MAC/s of XOR + POPCNT + ADD on L1-resident bits (AVX-512 and scalar)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        exe = os.path.join(tmp, "ceiling")
        subprocess.run([cc, "-O3", os.path.join(HERE, "native", "popcount_ceiling.c"), "-o", exe], check=True)
        out = subprocess.run([exe], capture_output=True, text=True, check=True).stdout
    return {line.split()[0]: float(line.split()[1]) for line in out.splitlines()}


def side(python, script, args):
    if not python or not os.path.exists(python):
        return None
    proc = subprocess.run([python, os.path.join(HERE, "sidebyside", script), *args],
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        print(f"{script} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bnnrt_side(runs):
    from bnnrt import zoo
    from bnnrt._kernels import _core
    from bnnrt._shapes import conv_geometry
    from bnnrt.ops.epilogue import Epilogue
    rng = np.random.default_rng(0)
    out = {}
    # one 3x3 binary conv, 56x56, 64->64, same-one, threshold (bits) epilogue
    w = np.packbits(rng.random((64, 3, 3, 64)) < 0.5, axis=-1, bitorder="little")
    k = _core.BConv2D(w, Epilogue("bits", 64, thresholds=np.zeros(64, np.int32)), cin=64, in_hw=(56, 56),
                      strides=(1, 1), dilations=(1, 1), pads=(1, 1, 1, 1), pad_value=1)
    x = np.packbits(rng.random((1, 56, 56, 64)) < 0.5, axis=-1, bitorder="little")
    y = np.empty((1, 56, 56, 8), np.uint8)
    oh, ow = conv_geometry((56, 56), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1))
    out["conv56"] = {"median_ms": median_ms(k.bind(x, y, threads=1), runs), "binary_macs": oh * ow * 64 * 9 * 64,
                     "kernel": k.variant}
    models = {}
    for name, make in [("resnet20b", lambda t: zoo.resnet20_binary(width=4, threads=t)),
                       ("blendnet20", lambda t: zoo.blendnet20(width=1, threads=t)),
                       ("blendnet20_w4", lambda t: zoo.blendnet20(width=4, threads=t))]:
        for threads in (1, 2):
            model = models[name, threads] = make(threads)
            xin = rng.standard_normal((1, 32, 32, 3)).astype(np.float32)
            ms = median_ms(lambda: model.run(xin), runs)
            key = name if threads == 1 else f"{name}@2threads"
            out[key] = {"median_ms": ms, "binary_macs": sum(r["binary_macs"] for r in model.layers())}
    # target 4: one and two threads measured in back-to-back pairs
    x1 = rng.standard_normal((1, 32, 32, 3)).astype(np.float32)
    r1, r2 = models["resnet20b", 1], models["resnet20b", 2]
    out["resnet20b_latency_2threads"] = paired_speedup(lambda: r1.run(x1), lambda: r2.run(x1), 20)
    xb = rng.standard_normal((64, 32, 32, 3)).astype(np.float32)
    b1, b2 = models["blendnet20", 1], models["blendnet20", 2]
    out["blendnet20_b64_2threads"] = paired_speedup(lambda: b1.run(xb), lambda: b2.run(xb), 5)
    out["two_core_capacity"] = two_core_capacity()
    return out


def bnnrt_conv_chains(runs, isa, resnet=None):
    """One bits -> bits 3x3 conv 56x56x64 -> 64 through Model.run, from chains
    of identical convs as OpenVINO's is measured (sidebyside/openvino_bench.py):
    (t(5 convs) - t(1 conv)) / 4, per padding value; with ``resnet`` (the LCE
    file) that network too. ``isa`` "avx2" builds the kernels with AVX-512
    disabled."""
    from bnnrt import GraphBuilder, Model
    rng = np.random.default_rng(0)
    h, w_, c = 56, 56, 64
    weights = np.packbits(rng.random((c, 3, 3, c)) < 0.5, axis=-1, bitorder="little")
    thr = rng.integers(-20, 20, c).astype(np.int32)
    x = np.packbits(rng.random((1, h, w_, c)) < 0.5, axis=-1, bitorder="little")
    saved = os.environ.get("BNNRT_DISABLE_SIMD")
    os.environ["BNNRT_DISABLE_SIMD"] = "avx512" if isa == "avx2" else (saved or "")
    try:
        models = {}
        for pad in (1, 0):
            for n in (1, 5):
                b = GraphBuilder()
                y = b.input("x", (h, w_, c), dtype="bits")
                for _ in range(n):
                    y = b.bconv2d(y, weights, cin=c, pads=(1, 1, 1, 1), pad_value=pad, output="bits", thresholds=thr)
                y = b.add("bconv2d_float", [y], {"cin": c, "strides": [1, 1], "dilations": [1, 1],
                                                 "pads": [1, 1, 1, 1], "pad_value": pad},
                          {"weights": weights, "multiplier": np.ones(c, np.float32), "bias": np.zeros(c, np.float32)})
                models[pad, n] = Model(b.build(y), threads=1)
        if resnet:
            from bnnrt.convert import from_tflite
            models["resnet"] = from_tflite(resnet, threads=1)
    finally:
        if saved is None:
            os.environ.pop("BNNRT_DISABLE_SIMD", None)
        else:
            os.environ["BNNRT_DISABLE_SIMD"] = saved
    out = {"kernel": models[1, 1].plan.kernel_variants()["bconv2d"]}
    for pad in (1, 0):
        diffs = [(median_ms(lambda: models[pad, 5].run(x), runs // 5) -
                  median_ms(lambda: models[pad, 1].run(x), runs // 5)) / 4 for _ in range(5)]
        out[f"pad{pad}"] = {"median_ms": statistics.median(diffs), "binary_macs": h * w_ * c * 9 * c}
    if resnet:
        m = models["resnet"]
        xr = np.random.default_rng(1).standard_normal((1, *m.input_shape)).astype(np.float32)
        out["graph"] = {"median_ms": median_ms(lambda: m.run(xr), runs),
                        "binary_macs": sum(r["binary_macs"] for r in m.layers())}
    return out


def export_graph(model, x, path):
    """``model``'s graph, an input and bnnrt's output for it, as an npz that
    sidebyside/openvino_bench.py rebuilds in OpenVINO (no bnnrt in its venv)."""
    g = model.graph
    spec = {"inputs": [[name, list(t.shape)] for name, t in g.inputs.items()], "outputs": list(g.outputs),
            "nodes": [{"op": n.op, "name": n.name, "inputs": list(n.inputs), "outputs": list(n.outputs),
                       "attrs": n.attrs, "consts": sorted(n.consts)} for n in g.nodes]}
    arrays = {f"node{i}/{k}": v for i, n in enumerate(g.nodes) for k, v in n.consts.items()}
    np.savez(path, **{"graph.json": np.array(json.dumps(spec)), "input": x, "bnnrt_output": model.run(x)}, **arrays)


def lce_resnet20(lce_python, work):
    """The LCE-converted binary ResNet-20 of anchors.md (LCE's venv converts
    it: sidebyside/lce_bench.py), imported by bnnrt; None without the venv."""
    path = os.path.join(work, "resnet20b.tflite")
    if not os.path.exists(path) and side(lce_python, "lce_bench.py",
                                         ["--runs", "1", "--models", "resnet20b", "--save-dir", work]) is None:
        return None
    return path


def openvino_side(python, runs, isa, shim_source, work, graph=None):
    """OpenVINO's conv (sidebyside/openvino_bench.py) in its venv, on ``isa``;
    with ``graph`` (export_graph's npz) that network too."""
    if not python or not os.path.exists(python):
        return None
    env = dict(os.environ)
    if isa == "avx2":
        env["ONEDNN_MAX_CPU_ISA"] = "AVX2"
        if not shim_source or not os.path.exists(shim_source):
            return None      # without the shim the plugin's binary conv stays a 512-bit kernel
        shim = os.path.join(work, "ov_hide_avx512.so")
        if not os.path.exists(shim):
            subprocess.run(["g++", "-O2", "-shared", "-fPIC", shim_source, "-o", shim], check=True)
        env["LD_PRELOAD"] = shim
    proc = subprocess.run([python, os.path.join(HERE, "sidebyside", "openvino_bench.py"), "--runs", str(runs),
                           *(["--graph", graph] if graph else [])],
                          capture_output=True, text=True, timeout=600, env=env)
    if proc.returncode != 0:
        print(f"openvino_bench.py ({isa}) failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def two_core_capacity(seconds=2.0):
    """Images/s of two single-threaded bnnrt processes at once over one alone
    (BlendNet-20, batch 64; sidebyside/bnnrt_throughput.py): what the host's
    two cores give a batch-parallel run at this moment."""
    script = os.path.join(HERE, "sidebyside", "bnnrt_throughput.py")

    def rates(count):
        start = time.time() + 3.0                   # after both have loaded the model
        procs = [subprocess.Popen([sys.executable, script, "--seconds", str(seconds), "--start-at", str(start)],
                                  stdout=subprocess.PIPE, text=True) for _ in range(count)]
        return [json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1])["images_per_s"] for p in procs]

    one = rates(1)[0]
    return sum(rates(2)) / one


def median_of_rounds(results):
    """One result from several rounds' (same keys): every number its median
    over the rounds; None if a round had no result (engine not installed)."""
    if any(r is None for r in results):
        return None
    first = results[0]
    if isinstance(first, dict):
        return {k: median_of_rounds([r[k] for r in results]) for k in first}
    if isinstance(first, (int, float)) and not isinstance(first, bool):
        return statistics.median(results)
    return first


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--lce-python", default=os.environ.get("BNNRT_LCE_PYTHON", "/tmp/lce/bin/python"))
    ap.add_argument("--ort-python", default=os.environ.get("BNNRT_ORT_PYTHON", "/tmp/ort/bin/python"))
    ap.add_argument("--ov-python", default=os.environ.get("BNNRT_OV_PYTHON", "/tmp/ov/bin/python"))
    ap.add_argument("--ov-avx2-shim", default=os.path.join(os.path.dirname(HERE), "..", "shared",
                                                          "bench", "openvino", "ov_hide_avx512.cpp"),
                    help="source of the LD_PRELOAD shim that makes OpenVINO's own nodes see no AVX-512")
    ap.add_argument("--only-openvino", action="store_true", help="target 5 alone (the conv on each ISA)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="ceiling, LCE, ORT, bnnrt, ceiling, ... rounds; each number is the median of its "
                         "per-round values, so a slow minute of a shared host hits every engine")
    ap.add_argument("--json", action="store_true", help="print all measurements as JSON too")
    args = ap.parse_args()

    from bnnrt._kernels import _core
    isas = ["avx512", "avx2"] if "avx512" in _core.cpu_info()["variants"]["bconv2d"] else ["avx2"]
    rounds = {"ceiling": [], "lce": [], "ort": [], "bnnrt": [],
              **{f"{who}_{isa}": [] for who in ("ov", "bn") for isa in isas}}
    work = tempfile.mkdtemp(prefix="bnnrt-compare-")
    # target 5's network: the LCE file, run by bnnrt and rebuilt in OpenVINO
    resnet = lce_resnet20(args.lce_python, work) if os.path.exists(args.ov_python or "") else None
    graph = None
    if resnet:
        from bnnrt.convert import from_tflite
        graph = os.path.join(work, "resnet20b_graph.npz")
        m = from_tflite(resnet, threads=1)
        export_graph(m, np.random.default_rng(2).standard_normal((1, *m.input_shape)).astype(np.float32), graph)
    for i in range(args.rounds):
        if args.rounds > 1:
            print(f"round {i + 1} of {args.rounds}", file=sys.stderr)
        rounds["ceiling"].append(ceiling())
        # target 5: each ISA's pair back to back, the order turned round on odd rounds
        for isa in (isas if i % 2 == 0 else isas[::-1]):
            pair = [("ov", lambda: openvino_side(args.ov_python, args.runs, isa, args.ov_avx2_shim, work, graph)),
                    ("bn", lambda: bnnrt_conv_chains(args.runs, isa, resnet))]
            for who, fn in (pair if i % 2 == 0 else pair[::-1]):
                rounds[f"{who}_{isa}"].append(fn())
        if args.only_openvino:
            continue
        rounds["lce"].append(side(args.lce_python, "lce_bench.py",
                                  ["--runs", str(args.runs), "--models", "conv56,resnet20b"]))
        rounds["ort"].append(side(args.ort_python, "ort_bench.py", ["--runs", str(args.runs)]))
        rounds["bnnrt"].append(bnnrt_side(args.runs))
    ceil = median_of_rounds(rounds["ceiling"])
    if args.only_openvino:
        print_openvino(rounds, isas, ceil)
        return
    lce, ort, ours = (median_of_rounds(rounds[k]) for k in ("lce", "ort", "bnnrt"))

    def gmacs(entry):
        return entry["binary_macs"] / entry["median_ms"] / 1e6

    print("single thread, batch 1 unless noted; medians of", args.runs, "runs"
          + (f", median over {args.rounds} interleaved rounds" if args.rounds > 1 else "") + "\n")
    # targets 1 and 2 run the best ISA there is: AVX-512, else AVX2 (no AVX-512 here)
    isa_name, c512 = ("AVX-512", ceil.get("avx512_vpopcntq")) if ceil.get("avx512_vpopcntq") else (
        "AVX2 nibble LUT", ceil.get("avx2_nibble_lut"))
    print(f"XOR+POPCNT+ADD ceiling: {isa_name} {c512 or float('nan'):.0f}, scalar "
          f"{ceil.get('scalar_popcnt', float('nan')):.0f} G binary MAC/s")
    conv = ours["conv56"]
    print(f"\n1. 3x3 binary conv 56x56 64->64 same-one ({conv['binary_macs'] / 1e6:.0f} M MACs)")
    print(f"   bnnrt ({conv['kernel']}) {conv['median_ms']:.3f} ms = {gmacs(conv):.0f} G binary MAC/s"
          + (f" = {gmacs(conv) / c512:.0%} of the ceiling" if c512 else ""))
    if lce:
        print(f"   LCE {lce['conv56']['median_ms']:.3f} ms = {gmacs(lce['conv56']):.0f} G binary MAC/s"
              + (f" = {gmacs(lce['conv56']) / c512:.0%} of the ceiling" if c512 else "")
              + f"; bnnrt is {lce['conv56']['median_ms'] / conv['median_ms']:.1f}x faster")
    r = ours["resnet20b"]
    print(f"\n2. binary ResNet-20, 64/128/256 ch ({r['binary_macs'] / 1e6:.0f} M binary MACs)")
    print(f"   bnnrt {r['median_ms']:.3f} ms ({ours['resnet20b@2threads']['median_ms']:.3f} ms with 2 threads)")
    if lce:
        print(f"   LCE (indirect BGEMM) {lce['resnet20b']['median_ms']:.3f} ms: bnnrt "
              f"{lce['resnet20b']['median_ms'] / r['median_ms']:.1f}x faster")
    if ort:
        print(f"   ORT float twin {ort['resnet20b_twin']['median_ms']:.3f} ms: bnnrt "
              f"{ort['resnet20b_twin']['median_ms'] / r['median_ms']:.1f}x faster")
    b = ours["blendnet20"]
    print(f"\n3. BlendNet-20 16/32/64 ch, 32x32x3: bnnrt {b['median_ms']:.3f} ms "
          f"({b['median_ms'] / 0.38:.2f} of the FPGA's 0.38 ms)")
    if ort:
        print(f"   ORT float32 classic ResNet-20 {ort['resnet20']['median_ms']:.3f} ms: bnnrt "
              f"{ort['resnet20']['median_ms'] / b['median_ms']:.1f}x faster")
    print(f"\n4. two threads: BlendNet-20 batch 64 {ours['blendnet20_b64_2threads']:.2f}x the images/s of one "
          f"thread; binary ResNet-20 batch 1 {ours['resnet20b_latency_2threads']:.2f}x lower latency "
          "(medians of 15 back-to-back pairs)")
    print(f"   two single-threaded processes at once: {ours['two_core_capacity']:.2f}x the images/s of one "
          "(what the host's two cores give right now)")
    print_openvino(rounds, isas, ceil)
    if args.json:
        print(json.dumps({"ceiling": ceil, "lce": lce, "ort": ort, "bnnrt": ours,
                          "openvino": {k: v for k, v in rounds.items() if k.startswith(("ov_", "bn_"))}}))


def print_openvino(rounds, isas, ceil):
    """Target 5: the conv, bits -> bits, OpenVINO / bnnrt time per round (the
    median of the per-round ratios is quoted) and both against the ceiling."""
    ceiling_of = {"avx512": ceil.get("avx512_vpopcntq"), "avx2": ceil.get("avx2_nibble_lut")}
    print("\n5. 3x3 binary conv 56x56 64->64, bits -> bits (chains of 5 minus 1): OpenVINO beside bnnrt")
    for isa in isas:
        ov_r, bn_r = rounds[f"ov_{isa}"], rounds[f"bn_{isa}"]
        measured = not any(r is None for r in ov_r)
        if not measured:
            print(f"   {isa}: OpenVINO not measured (no --ov-python venv, or no --ov-avx2-shim for AVX2)")
        for pad in (1, 0):
            bn_ms = statistics.median(r[f"pad{pad}"]["median_ms"] for r in bn_r)
            macs = bn_r[0][f"pad{pad}"]["binary_macs"]
            c = ceiling_of[isa]
            line = f"   {isa}, pad {'+1' if pad else '0 '}: bnnrt ({bn_r[0]['kernel']}) {bn_ms:.4f} ms" + (
                f" = {macs / bn_ms / 1e6 / c:.0%} of {c:.0f} G/s" if c else "")
            if measured:
                ov_ms = statistics.median(r[f"pad{pad}"]["median_ms"] for r in ov_r)
                ratio = statistics.median(o[f"pad{pad}"]["median_ms"] / b[f"pad{pad}"]["median_ms"]
                                          for o, b in zip(ov_r, bn_r))
                line += (f"; OpenVINO ({ov_r[0][f'pad{pad}']['exec_type']}) {ov_ms:.4f} ms"
                         + (f" = {macs / ov_ms / 1e6 / c:.0%}" if c else "") + f"; OpenVINO / bnnrt {ratio:.2f}")
            print(line)
        if "graph" in bn_r[0]:
            bn_ms = statistics.median(r["graph"]["median_ms"] for r in bn_r)
            line = f"   {isa}, binary ResNet-20 (LCE file) end to end: bnnrt {bn_ms:.4f} ms"
            if measured and all("graph" in r for r in ov_r):
                ov_ms = statistics.median(r["graph"]["median_ms"] for r in ov_r)
                ratio = statistics.median(o["graph"]["median_ms"] / b["graph"]["median_ms"] for o, b in zip(ov_r, bn_r))
                agree = ov_r[0]["graph"]
                line += (f"; OpenVINO {ov_ms:.4f} ms; OpenVINO / bnnrt {ratio:.2f} (outputs: max difference "
                         f"{agree['max_diff_over_scale']:.1e} of the scale, top-1 "
                         f"{'equal' if agree['top1_equal'] else 'DIFFERENT'})")
            print(line)


if __name__ == "__main__":
    main()
