"""BlendMixer and its naive binary twin: the one place that says how the two
MLP-Mixers are wired (docs/blendnet.md, "BlendMixer").

The zoo (random weights) and the PyTorch exporter fill in the same parameter
dictionary and call :func:`build`; the training modules
(``bnnrt.train.mixer``) take their shapes from :class:`Config`.

Tokens are the pixels of the patch grid. A tensor of T tokens with C channels
is NHWC (1, T, C) (or the (H, W, C) grid the embedding writes); token mixing
works on its ``transpose``, (1, C, T), where the tokens are the channels, so
every mixing layer is a 1x1 binary convolution over the channel axis.

``kind="blend"`` (BlendMixer), mixing MLP over axis K of an int8 tensor A::

    bits = binarize(A)                                     # BN before the sign, folded
    h    = bconv2d(bits, 1x1, K -> hidden) -> threshold BN # bits straight to fc2
    out  = bconv2d(h, 1x1, hidden -> K) -> requant(y + bias) + A, clamped to int8

``kind="binary"`` (the naive baseline): every tensor between the embedding
and the last layer is bits, each 1x1 bconv ends in a threshold BN; the last one
requantizes to int8 for the pool. There is no higher-precision path.

Network: quantize -> int8 patch embedding (p x p conv, stride p) -> ``depth``
blocks (token MLP between two transposes, then channel MLP) -> global average
pool over tokens -> int8 dense head -> dequantized logits.
"""

from __future__ import annotations

from typing import NamedTuple

from .graph import GraphBuilder

KINDS = ("blend", "binary")


class Config(NamedTuple):
    """Shape of a Mixer; shared by :func:`build` and ``bnnrt.train.mixer``."""
    kind: str = "blend"
    input_shape: tuple = (28, 28, 1)
    patch: int = 4
    dim: int = 128             # channels per token
    token_hidden: int = 64     # hidden width of the token-mixing MLP
    channel_hidden: int = 256  # hidden width of the channel-mixing MLP
    depth: int = 4
    num_classes: int = 10

    @property
    def grid(self) -> tuple[int, int]:
        h, w = self.input_shape[:2]
        return h // self.patch, w // self.patch

    @property
    def tokens(self) -> int:
        gh, gw = self.grid
        return gh * gw

    def describe(self) -> str:
        return (f"{'blendmixer' if self.kind == 'blend' else 'mixer-binary'}(patch={self.patch}, "
                f"dim={self.dim}, token_hidden={self.token_hidden}, "
                f"channel_hidden={self.channel_hidden}, depth={self.depth})")


def mlps(cfg: Config):
    """(name, axis, width, hidden) of every mixing MLP in order; ``axis`` is
    "token" (runs on the transposed tensor) or "channel"."""
    out = []
    for i in range(cfg.depth):
        out.append((f"block{i + 1}.token", "token", cfg.tokens, cfg.token_hidden))
        out.append((f"block{i + 1}.channel", "channel", cfg.dim, cfg.channel_hidden))
    return out


def build(params: dict, cfg: Config, metadata: dict | None = None):
    """The graph of ``cfg`` from ``params``: layer name -> the constants of
    that layer's builder method (``bnnrt.zoo.mixer_params`` lists them all)."""
    if cfg.kind not in KINDS:
        raise ValueError(f"Mixer kind must be one of {KINDS}, not {cfg.kind!r}")
    b = GraphBuilder()
    x = b.input("image", cfg.input_shape, "float32")
    x = b.quantize(x, scale=params["input"]["scale"], name="input")
    x = b.conv2d_int8(x, strides=(cfg.patch, cfg.patch), name="embed", **params["embed"])
    if cfg.kind == "binary":
        x = b.binarize(x, name="embed.binarize", **params["embed.binarize"])
    layers = mlps(cfg)
    for n, (name, axis, width, hidden) in enumerate(layers):
        p = lambda part: params[f"{name}.{part}"]  # noqa: E731
        if axis == "token":
            x = b.transpose(x, name=f"{name}.transpose")
        if cfg.kind == "blend":
            bits = b.binarize(x, name=f"{name}.binarize", **p("binarize"))
            h = b.bconv2d(bits, cin=width, output="bits", name=f"{name}.fc1", **p("fc1"))
            x = b.bconv2d(h, cin=hidden, output="int8", skip=x, name=f"{name}.fc2", **p("fc2"))
        else:
            h = b.bconv2d(x, cin=width, output="bits", name=f"{name}.fc1", **p("fc1"))
            last = n == len(layers) - 1
            x = b.bconv2d(h, cin=hidden, output="int8" if last else "bits", name=f"{name}.fc2",
                          **p("fc2"))
        if axis == "token":
            x = b.transpose(x, name=f"{name}.transpose_back")
    x = b.global_avgpool(x, name="pool", **params["pool"])
    x = b.conv2d_int8(x, output="int32", name="head", **params["head"])
    x = b.dequantize(x, name="logits", **params["logits"])
    meta = {"architecture": cfg.describe(), "output": "logits"}
    meta.update(metadata or {})
    return b.build(x, meta)
