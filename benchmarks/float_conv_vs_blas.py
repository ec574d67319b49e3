"""bnnrt's direct float conv against numpy's im2col + BLAS, side by side.

    python benchmarks/float_conv_vs_blas.py [--runs 30]

The float layers of imported Larq models (stems, 1x1 shortcuts, dense heads)
could run as im2col + one GEMM (numpy, OpenBLAS) or through bnnrt's direct
FMA kernel (bnn_fconv.c). This prints both, single-threaded, on the shapes
those models have, so the choice in ``Conv2DFloat.kernel`` is a measured one.
The numpy side is ``bnnrt.reference.conv2d_float`` (im2col plus a BLAS
matrix product). Quote ratios from one run.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")      # one thread means one thread

import argparse
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bnnrt import reference as ref  # noqa: E402
from bnnrt._kernels import _core  # noqa: E402
from bnnrt._shapes import conv_geometry  # noqa: E402

#: (what, input size, Cin, Cout, kernel, stride, pads)
SHAPES = [
    ("QuickNet stem", 224, 3, 8, 3, 2, (0, 1, 0, 1)),
    ("BiRealNet stem", 224, 3, 64, 7, 2, (2, 3, 2, 3)),
    ("ResNet-20 stem", 32, 3, 64, 3, 1, (1, 1, 1, 1)),
    ("1x1 shortcut", 32, 64, 128, 1, 2, (0, 0, 0, 0)),
    ("1x1 shortcut", 16, 128, 256, 1, 2, (0, 0, 0, 0)),
    ("1x1 transition", 28, 128, 256, 1, 1, (0, 0, 0, 0)),
    ("dense head", 1, 256, 10, 1, 1, (0, 0, 0, 0)),
    ("dense head", 1, 512, 1000, 1, 1, (0, 0, 0, 0)),
    ("3x3 float", 14, 256, 256, 3, 1, (1, 1, 1, 1)),
    ("3x3 float", 7, 512, 512, 3, 1, (1, 1, 1, 1)),
]


def median_us(fn, runs):
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=30)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"{'layer':<16} {'shape':<26} {'direct us':>10} {'GMAC/s':>7} {'numpy+BLAS us':>14} {'ratio':>6}")
    for what, hw, cin, cout, k, s, pads in SHAPES:
        x = rng.standard_normal((1, hw, hw, cin)).astype(np.float32)
        w = rng.standard_normal((cout, k, k, cin)).astype(np.float32)
        b = rng.standard_normal(cout).astype(np.float32)
        oh, ow = conv_geometry((hw, hw), (k, k), (s, s), (1, 1), pads)
        kernel = _core.FloatConv(w, b, in_hw=(hw, hw), strides=(s, s), dilations=(1, 1), pads=pads)
        out = np.empty((1, oh, ow, cout), np.float32)
        call = kernel.bind(x, out, threads=1)
        direct = median_us(call, args.runs)
        blas = median_us(lambda: ref.conv2d_float(x, w, bias=b, strides=(s, s), dilations=(1, 1), pads=pads),
                         args.runs)
        macs = oh * ow * cout * k * k * cin
        shape = f"{hw}x{hw}x{cin}->{cout} {k}x{k} s{s}"
        print(f"{what:<16} {shape:<26} {direct:10.1f} {macs / direct / 1e3:7.1f} {blas:14.1f} "
              f"{blas / direct:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
