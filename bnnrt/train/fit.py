"""The training run: data, loop, progress, checkpoints, export and evaluation.

``python -m bnnrt.train fashion-mnist --arch blendnet20 --epochs N --out models/x.bnn``

Deterministic for a given seed and thread count: the shuffle and the
augmentation of epoch e come from generators seeded with (seed, e), so a run
resumed from a checkpoint continues exactly where it stopped.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from .. import datasets
from .._progress import Progress, clock as _clock
from ..images import Preprocessor
from .. import mixer as mixer_wiring
from .blendnet import BlendNet20
from .layers import BinaryConv2d, BinaryLinear
from .mixer import Mixer

#: --arch -> (model name in the file, what it is, constructor from the parsed arguments)
ARCHS = {
    "blendnet20": ("blendnet20-fmnist", "BlendNet-20",
                   lambda a: BlendNet20(width=a.width, input_shape=(28, 28, 1), num_classes=10)),
    "blendmixer": ("blendmixer-fmnist", "BlendMixer",
                   lambda a: Mixer(mixer_config(a, "blend"))),
    "mixer-binary": ("mixer-binary-fmnist", "the naive binary MLP-Mixer",
                     lambda a: Mixer(mixer_config(a, "binary"))),
}


def mixer_config(args, kind) -> mixer_wiring.Config:
    return mixer_wiring.Config(kind=kind, input_shape=(28, 28, 1), patch=args.patch, dim=args.dim,
                               token_hidden=args.token_hidden, channel_hidden=args.channel_hidden,
                               depth=args.depth, num_classes=10)


def arch_description(args) -> str:
    if args.arch == "blendnet20":
        return f"blendnet20(width={args.width})"
    return mixer_config(args, "blend" if args.arch == "blendmixer" else "binary").describe()
INPUT_META = {"scale": 1.0 / 255.0, "mean": [0.5], "std": [0.5]}


def load_fashion_mnist(data_dir=None):
    """Normalized float NCHW tensors and int64 labels, train and test."""
    pre = Preprocessor(dict(INPUT_META, shape=[28, 28, 1], color="L"), (28, 28, 1))
    out = {}
    for split in ("train", "test"):
        images, labels = datasets.fashion_mnist(split, data_dir)
        x = pre.normalize(images)                      # exactly what Model.predict feeds the graph
        out[split] = (torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))),
                      torch.from_numpy(labels.astype(np.int64)))
    return out


def augment(x, gen: torch.Generator, shift: int):
    """Random horizontal flip and a random translation by up to ``shift``
    pixels, padding with the background value (the image minimum)."""
    n = x.shape[0]
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    if shift:
        bg = float(x.min())
        padded = F.pad(x, (shift,) * 4, value=bg)
        dy = torch.randint(0, 2 * shift + 1, (n,), generator=gen)
        dx = torch.randint(0, 2 * shift + 1, (n,), generator=gen)
        h, w = x.shape[2:]
        out = torch.empty_like(x)
        for oy in range(2 * shift + 1):
            for ox in range(2 * shift + 1):
                idx = ((dy == oy) & (dx == ox)).nonzero().flatten()
                if len(idx):
                    out[idx] = padded[idx, :, oy:oy + h, ox:ox + w]
        x = out
    return x


def clip_latent_weights(model):
    """Keep binary latent weights in [-1, 1], where the STE passes gradients."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (BinaryConv2d, BinaryLinear)):
                m.weight.clamp_(-1.0, 1.0)


@torch.no_grad()
def torch_predictions(model, x, batch=1000):
    model.eval()
    return torch.cat([model(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)])


def export(model, arch, meta_extra=None):
    from ..convert import from_torch
    name, what, _ = ARCHS[arch]
    metadata = {
        "name": name,
        "description": f"{what} trained on Fashion-MNIST with bnnrt.train",
        "input": dict(INPUT_META, shape=list(model.input_shape), color="L"),
        "labels": list(datasets.FASHION_MNIST_LABELS),
        "provenance": {"source": "python -m bnnrt.train", "trained": True, **(meta_extra or {})},
    }
    return from_torch(model, metadata=metadata)


def logits_of(bmodel, x_nchw, batch=1000):
    xs = x_nchw.permute(0, 2, 3, 1).contiguous().numpy()
    outs = [np.asarray(bmodel.run(xs[i:i + batch])) for i in range(0, len(xs), batch)]
    return np.concatenate([o.reshape(o.shape[0], -1) for o in outs])


def train(args) -> dict:
    torch.manual_seed(args.seed)
    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    data = load_fashion_mnist(args.data)
    x_train, y_train = data["train"]
    x_test, y_test = data["test"]
    model = ARCHS[args.arch][2](args)
    model.set_lean(args.lean)
    steps_per_epoch = math.ceil(len(x_train) / args.batch)
    total_steps = steps_per_epoch * args.epochs
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps)))
    ckpt_path = args.out + ".ckpt"
    history, start_epoch, wall = [], 0, 0.0
    if args.resume and os.path.exists(ckpt_path):
        ckpt = torch.load(ckpt_path, weights_only=True)
        if ckpt["config"] != _config(args):
            raise SystemExit(f"{ckpt_path} was written with different settings: {ckpt['config']}")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        history, start_epoch, wall = json.loads(ckpt["history"]), int(ckpt["epoch"]), float(ckpt["wall"])
        print(f"resumed from {ckpt_path} after epoch {start_epoch}", file=sys.stderr)

    for epoch in range(start_epoch, args.epochs):
        t0 = time.monotonic()
        model.train()
        gen = torch.Generator().manual_seed(args.seed * 1000 + epoch)
        order = torch.randperm(len(x_train), generator=gen)
        progress = Progress(steps_per_epoch, f"epoch {epoch + 1}/{args.epochs}")
        seen = correct = 0
        loss_sum = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * args.batch:(step + 1) * args.batch]
            xb = augment(x_train[idx], gen, args.shift)
            yb = y_train[idx]
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            clip_latent_weights(model)
            seen += len(idx)
            correct += int((logits.argmax(1) == yb).sum())
            loss_sum += float(loss.detach()) * len(idx)
            progress.update(step + 1, loss=f"{loss_sum / seen:.4f}", acc=f"{100 * correct / seen:.2f}%")
        # eval mode runs the folded integer network, the exported file's arithmetic
        test_acc = float((torch_predictions(model, x_test) == y_test).float().mean())
        wall += time.monotonic() - t0
        history.append({"epoch": epoch + 1, "loss": loss_sum / seen, "train_acc": correct / seen,
                        "test_acc": test_acc, "wall_s": round(wall, 1)})
        print(f"epoch {epoch + 1}: loss {loss_sum / seen:.4f}, train {100 * correct / seen:.2f}%, "
              f"test {100 * test_acc:.2f}%, {_clock(wall)} so far", file=sys.stderr)
        torch.save({"config": _config(args), "model": model.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "epoch": epoch + 1, "wall": wall,
                    "history": json.dumps(history)}, ckpt_path + ".tmp")
        os.replace(ckpt_path + ".tmp", ckpt_path)

    return finish(model, args, history, wall, threads, x_test, y_test)


def finish(model, args, history, wall, threads, x_test, y_test) -> dict:
    """Export, then measure: accuracy in PyTorch (eval mode) and in bnnrt, and agreement."""
    import bnnrt
    labels = y_test.numpy()
    torch_pred = torch_predictions(model, x_test).numpy()
    bmodel = export(model, args.arch, {"arch": arch_description(args), "epochs": args.epochs,
                            "seed": args.seed, "lean": bool(args.lean), "torch": torch.__version__,
                            "train_wall_s": round(wall, 1), "threads": threads})
    bnnrt.save(bmodel, args.out)
    reloaded = bnnrt.load(args.out)
    bnnrt_pred = logits_of(reloaded, x_test).argmax(1)
    report = {
        "model": args.out, "arch": args.arch, "architecture": arch_description(args),
        "config": _config(args), "epochs": args.epochs, "width": args.width,
        "batch": args.batch, "lr": args.lr, "shift": args.shift, "seed": args.seed,
        "lean": bool(args.lean), "threads": threads, "train_wall_s": round(wall, 1),
        "test_images": int(len(labels)),
        "accuracy_torch": float((torch_pred == labels).mean()),
        "accuracy_bnnrt": float((bnnrt_pred == labels).mean()),
        "agreement": int((torch_pred == bnnrt_pred).sum()),
        "history": history,
    }
    with open(args.out + ".json", "w") as f:
        json.dump(report, f, indent=1)
    print(json.dumps({k: v for k, v in report.items() if k != "history"}, indent=1))
    return report


def _config(args) -> dict:
    keys = ["arch", "epochs", "batch", "lr", "shift", "seed", "lean"]
    keys += ["width"] if args.arch == "blendnet20" else ["patch", "dim", "token_hidden", "channel_hidden", "depth"]
    return {k: getattr(args, k) for k in keys}
