"""OpenVINO's half of benchmarks/compare.py: its JIT binary convolution on
the 3x3 56x56x64 -> 64 conv, bits in -> bits out, single thread, batch 1.

    /tmp/ov/bin/python benchmarks/sidebyside/openvino_bench.py [--runs 200] [--pads 1,0]

Run with a Python that has ``openvino`` and numpy (../shared/design/anchors.md).
Prints one JSON line: per padding value, the median ms of one conv and which
implementation OpenVINO ran. Which ISA OpenVINO uses is the caller's choice
(compare.py sets ONEDNN_MAX_CPU_ISA and, for the plugin's own nodes, an
LD_PRELOAD that hides AVX-512; see ../shared/bench/openvino/README.md).

OpenVINO takes no bit tensors as model inputs, so one conv's time is taken
from chains of identical convs, (t(5 convs) - t(1 conv)) / 4: the float
input's binarization and the last conv's float output cancel. Between convs
a FakeQuantize with two levels turns the popcount sums into bits with
per-channel thresholds, as bnnrt's threshold epilogue does; the plugin fuses
it into the convolution.

With ``--graph FILE.npz`` (written by compare.py's ``export_graph`` from a
bnnrt graph: the LCE-converted binary ResNet-20 of anchors.md) it also builds
that whole network in OpenVINO, node for node (sign_bits -> a two-level
FakeQuantize, bconv2d_float -> BinaryConvolution then the float epilogue and
the residual add, conv2d_float, mean_float), runs the file's input through it
and reports the median ms and the largest difference from bnnrt's output
stored beside it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import openvino as ov
import openvino.opset1 as opset1
import openvino.opset13 as ops

H, W, C = 56, 56, 64
CONFIG = {"INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
          "INFERENCE_PRECISION_HINT": "f32"}


def u1(bits: np.ndarray):
    """A u1 constant of 0/1 values. The CPU plugin reads u1 data least
    significant bit first; openvino's own packing is most significant first."""
    t = ov.Tensor(ov.Type.u1, ov.Shape(list(bits.shape)))
    t.data[:] = np.packbits(np.ascontiguousarray(bits, np.uint8).reshape(-1), bitorder="little")
    return ops.constant(t)


def f32(a):
    return ops.constant(np.ascontiguousarray(a, np.float32))


def to_bits(x, thresholds):
    """1 where x > threshold (per channel), as a two-level FakeQuantize; each
    bound its own constant, or the plugin does not fuse it."""
    t = np.asarray(thresholds, np.float32).reshape(1, -1, 1, 1)
    return ops.fake_quantize(x, f32(t), f32(t), f32(0.0), f32(1.0), 2)


def chain(n: int, pad_value: float, weights01: np.ndarray, thresholds: np.ndarray):
    """float NHWC -> sign -> n x [conv, bits] -> conv (float) -> float NHWC."""
    x = ops.parameter([1, H, W, C], np.float32, name="x")
    y = to_bits(ops.transpose(x, ops.constant(np.array([0, 3, 1, 2], np.int64))),
                np.full(C, -np.finfo(np.float32).tiny))
    for i in range(n + 1):
        y = opset1.binary_convolution(y, u1(weights01), [1, 1], [1, 1], [1, 1], [1, 1], "xnor-popcount",
                                      pad_value)
        if i < n:      # bnnrt: +1 iff y >= thr, i.e. y > thr - 1 for integer y
            y = to_bits(y, thresholds - 1)
    y = ops.transpose(y, ops.constant(np.array([0, 2, 3, 1], np.int64)))
    return ov.Model([y], [x], f"chain{n}")


def median_ms(request, runs: int) -> float:
    for _ in range(20):
        request.infer()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        request.infer()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


NCHW, NHWC = np.array([0, 3, 1, 2], np.int64), np.array([0, 2, 3, 1], np.int64)


def per_channel(a):
    return f32(np.asarray(a, np.float32).reshape(1, -1, 1, 1))


def unpack_weights(packed, cin):
    """bnnrt's bit filter (Cout, kh, kw, ceil(cin/8)), bit 1 = -1, as the
    0/1 OIHW filter BinaryConvolution takes (1 = +1)."""
    bits = np.unpackbits(packed, axis=-1, bitorder="little")[..., :cin]
    return (1 - bits).transpose(0, 3, 1, 2)


def build_graph(spec, consts):
    """An OpenVINO model of a bnnrt graph (NCHW inside, NHWC at the edges).
    Bit tensors are 0/1 floats, 1 = +1, which is what BinaryConvolution reads."""
    (name, shape), = spec["inputs"]
    x = ops.parameter([1, *shape], np.float32, name="x")
    values = {name: ops.transpose(x, ops.constant(NCHW))}
    for i, node in enumerate(spec["nodes"]):
        op, attrs = node["op"], node["attrs"]
        c = {k: consts[f"node{i}/{k}"] for k in node["consts"]}
        ins = [values[i] for i in node["inputs"]]
        attrs = {"strides": [1, 1], "dilations": [1, 1], "pads": [0, 0, 0, 0], **attrs}     # the ops' defaults
        if op == "sign_bits":        # +1 where x * m + b >= 0: above the largest negative float
            y = ins[0]
            if "multiplier" in c:
                y = ops.add(ops.multiply(y, per_channel(c["multiplier"])), per_channel(c["bias"]))
            y = ops.fake_quantize(y, f32(-np.finfo(np.float32).tiny), f32(-np.finfo(np.float32).tiny),
                                  f32(0.0), f32(1.0), 2)
        elif op in ("bconv2d_float", "bconv2d"):
            top, bottom, left, right = attrs["pads"]
            y = opset1.binary_convolution(ins[0], u1(unpack_weights(c["weights"], attrs["cin"])),
                                          attrs["strides"], [top, left], [bottom, right], attrs["dilations"],
                                          "xnor-popcount", float(attrs.get("pad_value", 1)))
            if op == "bconv2d":
                if attrs.get("output") != "bits":
                    raise SystemExit(f"openvino_bench.py: bconv2d output {attrs.get('output')!r} not built")
                th = np.asarray(c["thresholds"], np.float32).reshape(1, -1, 1, 1) - 1   # +1 iff y >= thr
                y = ops.fake_quantize(y, f32(th), f32(th.copy()), f32(0.0), f32(1.0), 2)
            else:
                if "clamp" in attrs:
                    y = ops.clamp(y, *map(float, attrs["clamp"]))
                y = ops.add(ops.multiply(y, per_channel(c["multiplier"])), per_channel(c["bias"]))
                if len(ins) == 2:
                    y = ops.add(y, ins[1])
                y = activation(y, attrs.get("activation", "none"))
        elif op == "conv2d_float":
            if attrs.get("groups", 1) != 1:
                raise SystemExit("openvino_bench.py: grouped conv2d_float not built")
            top, bottom, left, right = attrs["pads"]
            y = ops.convolution(ins[0], f32(c["weights"].transpose(0, 3, 1, 2)), attrs["strides"], [top, left],
                                [bottom, right], attrs["dilations"])
            if "bias" in c:
                y = ops.add(y, per_channel(c["bias"]))
            y = activation(y, attrs.get("activation", "none"))
        elif op == "mean_float":
            y = ops.reduce_mean(ins[0], ops.constant(np.array([2, 3], np.int64)), True)
        elif op == "add_float" and len(ins) == 2:
            y = activation(ops.add(ins[0], ins[1]), attrs.get("activation", "none"))
        else:
            raise SystemExit(f"openvino_bench.py: op {op!r} ({node['name']}) is not built")
        values[node["outputs"][0]] = y
    outs = [ops.transpose(values[o], ops.constant(NHWC)) for o in spec["outputs"]]
    return ov.Model(outs, [x], "graph")


def activation(y, kind):
    if kind == "none":
        return y
    lo, hi = {"relu": (0.0, np.inf), "relu6": (0.0, 6.0), "relu_n1_to_1": (-1.0, 1.0)}[kind]
    return ops.relu(y) if kind == "relu" else ops.clamp(y, lo, hi)


def graph_case(path, core, runs):
    data = np.load(path)
    spec = json.loads(str(data["graph.json"]))
    consts = {k: data[k] for k in data.files if "/" in k}
    compiled = core.compile_model(build_graph(spec, consts), "CPU", CONFIG)
    request = compiled.create_infer_request()
    request.set_input_tensor(ov.Tensor(np.ascontiguousarray(data["input"])))
    request.infer()
    got = request.get_output_tensor(0).data.reshape(data["bnnrt_output"].shape)
    want = data["bnnrt_output"]
    scale = float(np.abs(want).max()) or 1.0
    return {"median_ms": median_ms(request, runs), "max_diff_over_scale": float(np.abs(got - want).max()) / scale,
            "top1_equal": bool(np.argmax(got) == np.argmax(want))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--pads", default="1,0", help="pad values to measure (1: +1, 0: zero, -1)")
    ap.add_argument("--graph", help="a network exported by compare.py (npz) to build and time as well")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    weights01 = (rng.random((C, C, 3, 3)) < 0.5).astype(np.uint8)       # OIHW, 1 = +1
    thresholds = rng.integers(-20, 20, C).astype(np.float32)
    x = rng.standard_normal((1, H, W, C)).astype(np.float32)
    core = ov.Core()
    out = {"openvino": ov.__version__}
    for pad in (float(p) for p in args.pads.split(",")):
        requests, impl = {}, ""
        for n in (1, 5):
            compiled = core.compile_model(chain(n, pad, weights01, thresholds), "CPU", dict(CONFIG, PERF_COUNT=n == 1))
            requests[n] = compiled.create_infer_request()
            requests[n].set_input_tensor(ov.Tensor(x))
        requests[1].infer()
        impl = sorted({p.exec_type for p in requests[1].get_profiling_info() if p.node_type == "BinaryConvolution"})
        # the two chains alternate, so a slow moment of a shared host hits both
        diffs = [(median_ms(requests[5], args.runs // 5) - median_ms(requests[1], args.runs // 5)) / 4
                 for _ in range(5)]
        out[f"pad{pad:g}"] = {"median_ms": statistics.median(diffs), "exec_type": ",".join(impl),
                              "binary_macs": H * W * C * 9 * C}
    if args.graph:
        out["graph"] = graph_case(args.graph, core, args.runs)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
