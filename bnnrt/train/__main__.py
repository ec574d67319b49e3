"""python -m bnnrt.train fashion-mnist --arch blendnet20|blendmixer|mixer-binary --epochs N --out models/x.bnn"""

from __future__ import annotations

import argparse
import sys

from .. import datasets
from ..mixer import Config


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bnnrt.train",
                                description="Train a BlendNet or a Mixer with bnnrt.train and export it to .bnn")
    p.add_argument("dataset", choices=["fashion-mnist"])
    p.add_argument("--arch", default="blendnet20", choices=["blendnet20", "blendmixer", "mixer-binary"],
                   help="blendnet20, or an MLP-Mixer: blendmixer (Blend modules) or mixer-binary "
                        "(every mixing layer binary, the naive baseline); docs/blendnet.md")
    p.add_argument("--width", type=int, default=1, help="blendnet20: channel multiplier (1: 16/32/64)")
    m = Config()
    p.add_argument("--patch", type=int, default=m.patch, help="Mixer: patch size in pixels")
    p.add_argument("--dim", type=int, default=m.dim, help="Mixer: channels per token")
    p.add_argument("--token-hidden", type=int, default=m.token_hidden, help="Mixer: token-MLP hidden width")
    p.add_argument("--channel-hidden", type=int, default=m.channel_hidden, help="Mixer: channel-MLP hidden width")
    p.add_argument("--depth", type=int, default=m.depth, help="Mixer: number of blocks")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (cosine decay to 0)")
    p.add_argument("--shift", type=int, default=1, help="random translation in pixels (augmentation)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--lean", action="store_true",
                   help="memory-lean training: keep only packed bits / int8 / int16 for backward")
    p.add_argument("--data", default=None, help=f"folder with the IDX files (default {datasets.FASHION_MNIST_DIR})")
    p.add_argument("--out", required=True, help="the .bnn file to write (checkpoint: OUT.ckpt, report: OUT.json)")
    p.add_argument("--resume", action="store_true", help="continue from OUT.ckpt")
    args = p.parse_args(argv)
    from .fit import train
    try:
        train(args)
    except datasets.DatasetNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
