"""bnnrt and ONNX Runtime on the same .onnx files, in one run.

    python benchmarks/compare_onnx.py [--runs 20] [--rounds 3] [--models bireal18,reactnet] [--keep DIR]

Builds PyTorch binary networks at ImageNet size (224x224, random weights,
BatchNorm calibrated on random inputs, as tests/test_onnx.py builds its small
ones, from the same blocks): a Bi-Real-18 (7x7/2 stem, max pool, 16 blocks
of sign + 3x3 binary conv + BN + residual, AvgPool + 1x1 shortcuts) and a
ReActNet-A-style net (RSign, RPReLU, 3x3 and 1x1 binary convs, widths 32 to
1024). Each is exported with ``torch.onnx.export(dynamo=False)``, imported
with ``bnnrt.convert.from_onnx`` and checked against ONNX Runtime (top-1 and
the largest difference relative to the output scale: the inputs are random,
without the tests' margin from 0, so a flipped sign may show), then timed:
one thread, batch 1, ONNX Runtime's default graph optimizations. Timing
alternates: each of ``--rounds`` rounds times every file in ORT and then in
bnnrt, and each engine's time is the median over rounds of its per-round
medians, so a slow minute of a shared machine hits both. Quote the ratios,
from one run: absolute times drift on shared machines.

Needs torch, onnx and onnxruntime.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import statistics
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))     # the repository's bnnrt when it is not installed
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))


def bireal18(nn, blocks):
    """Bi-Real-18: each of ResNet-18's 16 convs is a block with its own residual."""
    layers, cin = [], 64
    for width in (64, 128, 256, 512):
        for i in range(4):
            layers.append(blocks.Block(cin, width, 2 if i == 0 and width != 64 else 1))
            cin = width
    return _classifier(nn, nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64),
                                                 nn.MaxPool2d(3, 2, 1)), layers, cin)


def reactnet(nn, blocks):
    """ReActNet-A's stages (MobileNet-v1 widths) from tests/test_onnx.py's block."""
    plan = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2)] + \
        [(512, 512, 1)] * 5 + [(512, 1024, 2), (1024, 1024, 1)]
    layers = [blocks.ReActBlock(cin, cout, stride) for cin, cout, stride in plan]
    return _classifier(nn, nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32)),
                       layers, 1024)


def _classifier(nn, stem, layers, width):
    import torch

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.blocks, self.fc = stem, nn.Sequential(*layers), nn.Linear(width, 1000)

        def forward(self, x):
            x = self.blocks(self.stem(x))
            return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1))
    return Net()


MODELS = {"bireal18": bireal18, "reactnet": reactnet}


def median_ms(fn, runs):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--keep", help="a directory to keep the .onnx files in")
    args = p.parse_args(argv)

    import onnxruntime as ort
    import torch
    import torch.nn as nn
    torch.set_num_threads(1)
    import test_onnx as blocks                # the tests' blocks, as research code writes them
    from bnnrt.convert import from_onnx

    folder = args.keep or tempfile.mkdtemp()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 3, 224, 224)).astype(np.float32)
    x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    engines = {}
    for name in args.models.split(","):
        torch.manual_seed(0)
        net = MODELS[name](nn, blocks)
        with torch.no_grad():
            # torch's random inits hold an exact 0 about once in 2^24 values (uniform
            # and normal_ alike), which bnnrt refuses (Sign makes it a ternary weight):
            # ReActNet's 9.4 million weights of a 1024 x 1024 x 3 x 3 layer often hold one
            for m in net.modules():
                if isinstance(m, blocks.HardBinaryConv):
                    m.weight[m.weight == 0] = 1e-6
        net = blocks.calibrated(net, seed=1, shape=(3, 224, 224), batches=2, batch=4)
        path = os.path.join(folder, f"{name}.onnx")
        torch.onnx.export(net, (torch.from_numpy(x),), path, dynamo=False, opset_version=17)
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        model = from_onnx(path, threads=1)
        want = session.run(None, {session.get_inputs()[0].name: x})[0]
        got = model.run(x_nhwc).reshape(want.shape)
        binary = sum(r["precision"] == "binary" for r in model.layers())
        print(f"{name}: {binary} binary layers, top-1 {'equal' if got.argmax() == want.argmax() else 'DIFFERS'}, "
              f"max |bnnrt - ORT| / scale {np.abs(got - want).max() / np.abs(want).max():.2g}", flush=True)
        engines[name] = (lambda s=session: s.run(None, {s.get_inputs()[0].name: x}),
                         lambda m=model: m.run(x_nhwc))
    rounds = {name: ([], []) for name in engines}
    for _ in range(args.rounds):
        for name, (run_ort, run_bnnrt) in engines.items():
            run_ort(), run_bnnrt()            # warm
            rounds[name][0].append(median_ms(run_ort, args.runs))
            rounds[name][1].append(median_ms(run_bnnrt, args.runs))
    print(f"\n{'model':<10} {'ORT ms':>9} {'bnnrt ms':>9} {'ratio':>7}   (one thread, batch 1, 224x224)")
    for name, (t_ort, t_bnnrt) in rounds.items():
        a, b = statistics.median(t_ort), statistics.median(t_bnnrt)
        print(f"{name:<10} {a:>9.1f} {b:>9.1f} {a / b:>6.1f}x")


if __name__ == "__main__":
    main()
