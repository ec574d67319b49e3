"""BlendNet-20: the one place that says how the network is wired.

No public code exists for BlendNet, so this reading is ours (docs/blendnet.md);
the zoo (random weights) and the PyTorch exporter both fill in the same
parameter dictionary and call :func:`build`.

Block (input A: int8 NHWC)::

    bits = binarize(A)                                   # BN before the sign folded in
    h    = bconv2d(bits, 3x3, stride s) -> threshold BN  # bits straight to the next conv
    skip = A, or conv2d_int8(A, 1x1, stride s) -> int8   # fixed-point skip path
    out  = bconv2d(h, 3x3) -> requant(y + bias) + requant(skip), clamped to int8

Network: quantize -> int8 3x3 stem (16w channels) -> 3 stages x 3 blocks
(16w/32w/64w channels, stride 2 entering stages 2 and 3) -> global average
pool -> int8 dense head (int32 logits, dequantized to float).
"""

from __future__ import annotations

from typing import NamedTuple

from ._shapes import symmetric_pads
from .graph import GraphBuilder


def stages(width: int = 1):
    """(name, cin, cout, stride) of the nine Blend blocks."""
    chans = [16 * width, 32 * width, 64 * width]
    blocks = []
    cin = chans[0]
    for s, cout in enumerate(chans):
        for b in range(3):
            stride = 2 if (s > 0 and b == 0) else 1
            blocks.append((f"stage{s + 1}.block{b + 1}", cin, cout, stride))
            cin = cout
    return blocks


def needs_skip_conv(cin: int, cout: int, stride: int) -> bool:
    return stride != 1 or cin != cout


def conv_pads(hw, k: int = 3, stride: int = 1, pad: int = 1):
    """(top, bottom, left, right) of PyTorch's ``padding=pad`` for a k x k conv."""
    top, bottom = symmetric_pads(hw[0], k, stride, pad)
    left, right = symmetric_pads(hw[1], k, stride, pad)
    return (top, bottom, left, right)


def _out_hw(hw, stride):
    return ((hw[0] - 1) // stride + 1, (hw[1] - 1) // stride + 1)


class Block(NamedTuple):
    """Geometry of one Blend block, shared by :func:`build` and the training modules."""
    name: str
    cin: int
    cout: int
    stride: int
    in_hw: tuple
    out_hw: tuple
    conv1_pads: tuple
    conv2_pads: tuple
    skip_conv: bool


def blocks(input_shape, width: int = 1) -> list[Block]:
    hw = tuple(int(d) for d in input_shape[:2])
    out = []
    for name, cin, cout, stride in stages(width):
        out_hw = _out_hw(hw, stride)
        out.append(Block(name, cin, cout, stride, hw, out_hw, conv_pads(hw, 3, stride, 1),
                         conv_pads(out_hw, 3, 1, 1), needs_skip_conv(cin, cout, stride)))
        hw = out_hw
    return out


def output_hw(input_shape) -> tuple[int, int]:
    """Spatial size entering the global pool."""
    return blocks(input_shape)[-1].out_hw


def build(params: dict, *, width: int = 1, input_shape=(32, 32, 3), num_classes: int = 10,
          metadata: dict | None = None):
    """Build the BlendNet-20 graph from ``params``: layer name -> dict of the
    constants and attributes the builder method of that layer takes (see
    ``bnnrt.zoo.blendnet20`` for the complete list of names and keys)."""
    b = GraphBuilder()
    x = b.input("image", input_shape, "float32")
    x = b.quantize(x, scale=params["input"]["scale"], name="input")
    x = b.conv2d_int8(x, pads=conv_pads(input_shape[:2]), name="stem", **params["stem"])
    for blk in blocks(input_shape, width):
        p = lambda part: params[f"{blk.name}.{part}"]  # noqa: E731
        bits = b.binarize(x, name=f"{blk.name}.binarize", **p("binarize"))
        h = b.bconv2d(bits, cin=blk.cin, strides=(blk.stride,) * 2, pads=blk.conv1_pads,
                      pad_value=1, output="bits", name=f"{blk.name}.conv1", **p("conv1"))
        skip = x
        if blk.skip_conv:
            skip = b.conv2d_int8(x, strides=(blk.stride,) * 2, name=f"{blk.name}.skip", **p("skip"))
        x = b.bconv2d(h, cin=blk.cout, pads=blk.conv2_pads, pad_value=1, output="int8",
                      skip=skip, name=f"{blk.name}.conv2", **p("conv2"))
    x = b.global_avgpool(x, name="pool", **params["pool"])
    x = b.conv2d_int8(x, output="int32", name="head", **params["head"])
    x = b.dequantize(x, name="logits", **params["logits"])
    meta = {"architecture": f"blendnet20(width={width})", "output": "logits"}
    meta.update(metadata or {})
    return b.build(x, meta)
