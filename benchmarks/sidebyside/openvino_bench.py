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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--pads", default="1,0", help="pad values to measure (1: +1, 0: zero, -1)")
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
    print(json.dumps(out))


if __name__ == "__main__":
    main()
