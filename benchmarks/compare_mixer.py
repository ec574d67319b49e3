"""The shipped Mixers in bnnrt against their float twins in ONNX Runtime, in one run.

    python benchmarks/compare_mixer.py [--runs 200] [--rounds 5]

For each of models/blendmixer_fmnist.bnn and models/mixer_binary_fmnist.bnn
(or, where a file is missing, ``bnnrt.zoo.mixer`` with the same shapes), the
float twin is the same architecture in float32 PyTorch: the int8 patch
embedding a float conv + BatchNorm, each binary dense layer a float
``nn.Linear`` followed by its BatchNorm and a ReLU where the binary network
takes a sign, the residual adds where BlendMixer has its int8 skip path. It is
exported with ``torch.onnx.export(dynamo=False)`` and run by ONNX Runtime
(default graph optimizations, which fold the BatchNorms). One thread, batch 1,
a 28x28x1 input. Timing alternates: each of ``--rounds`` rounds times ORT,
then bnnrt, each the median of ``--runs`` calls; an engine's time is the median
over rounds. Quote the ratios, from one run.

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
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)     # the repository's bnnrt when it is not installed

MODELS = {"blendmixer": "blendmixer_fmnist.bnn", "mixer-binary": "mixer_binary_fmnist.bnn"}


def float_twin(nn, cfg):
    """The float32 Mixer with the shapes of ``cfg`` (a bnnrt.mixer.Config)."""
    from bnnrt import mixer

    class MLP(nn.Module):
        def __init__(self, width, hidden, residual):
            super().__init__()
            self.residual = residual
            self.net = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, width))

        def forward(self, x):
            return x + self.net(x) if self.residual else self.net(x)

    class Twin(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Sequential(nn.Conv2d(cfg.input_shape[2], cfg.dim, cfg.patch, cfg.patch),
                                       nn.BatchNorm2d(cfg.dim))
            self.axes = [axis for _, axis, _, _ in mixer.mlps(cfg)]
            self.mlps = nn.ModuleList(MLP(w, h, cfg.kind == "blend") for _, _, w, h in mixer.mlps(cfg))
            self.head = nn.Linear(cfg.dim, cfg.num_classes)

        def forward(self, x):
            t = self.embed(x).flatten(2).transpose(1, 2)          # (N, tokens, dim)
            for axis, mlp in zip(self.axes, self.mlps):
                t = mlp(t.transpose(1, 2)).transpose(1, 2) if axis == "token" else mlp(t)
            return self.head(t.mean(dim=1))

    return Twin().eval()


def median_ms(fn, runs):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def load(name):
    import bnnrt
    from bnnrt import mixer, zoo
    path = os.path.join(ROOT, "models", MODELS[name])
    if os.path.exists(path):
        model = bnnrt.load(path, threads=1)
        source = f"models/{MODELS[name]}"
    else:
        model = zoo.mixer("blend" if name == "blendmixer" else "binary", threads=1)
        source = "bnnrt.zoo.mixer (random weights)"
    cfg = _config_of(model, mixer)
    return model, cfg, source


def _config_of(model, mixer):
    """The Config a Mixer graph was built from, read back from its layers."""
    nodes = {n.name: n for n in model.graph.nodes}
    blocks = sorted({n.split(".")[0] for n in nodes if n.startswith("block")})
    embed = nodes["embed"].consts["weights"]
    kind = "blend" if "block1.token.binarize" in nodes else "binary"
    return mixer.Config(kind=kind, input_shape=tuple(model.graph.inputs["image"].shape), patch=embed.shape[1],
                        dim=embed.shape[0], token_hidden=nodes["block1.token.fc1"].consts["weights"].shape[0],
                        channel_hidden=nodes["block1.channel.fc1"].consts["weights"].shape[0],
                        depth=len(blocks), num_classes=nodes["head"].consts["weights"].shape[0])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)

    import onnxruntime as ort
    import torch
    import torch.nn as nn
    torch.set_num_threads(1)

    folder = tempfile.mkdtemp()
    rng = np.random.default_rng(0)
    engines = {}
    for name in MODELS:
        model, cfg, source = load(name)
        torch.manual_seed(0)
        twin = float_twin(nn, cfg)
        x = rng.standard_normal((1, cfg.input_shape[2]) + tuple(cfg.input_shape[:2])).astype(np.float32)
        x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        path = os.path.join(folder, f"{name}.onnx")
        torch.onnx.export(twin, (torch.from_numpy(x),), path, dynamo=False, opset_version=17)
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: x}
        print(f"{name}: {source}, {cfg.describe()}", flush=True)
        engines[name] = (lambda s=session, f=feed: s.run(None, f), lambda m=model, v=x_nhwc: m.run(v))
    rounds = {name: ([], []) for name in engines}
    for _ in range(args.rounds):
        for name, (run_ort, run_bnnrt) in engines.items():
            for _ in range(10):
                run_ort(), run_bnnrt()            # warm
            rounds[name][0].append(median_ms(run_ort, args.runs))
            rounds[name][1].append(median_ms(run_bnnrt, args.runs))
    print(f"\n{'model':<13} {'ORT float twin ms':>18} {'bnnrt ms':>9} {'ratio':>7}   (one thread, batch 1, 28x28x1)")
    for name, (t_ort, t_bnnrt) in rounds.items():
        a, b = statistics.median(t_ort), statistics.median(t_bnnrt)
        print(f"{name:<13} {a:>18.4f} {b:>9.4f} {a / b:>6.1f}x")


if __name__ == "__main__":
    main()
