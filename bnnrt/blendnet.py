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


def _pads(hw, k, stride, pad):
    top, bottom = symmetric_pads(hw[0], k, stride, pad)
    left, right = symmetric_pads(hw[1], k, stride, pad)
    return (top, bottom, left, right)


def _out_hw(hw, stride):
    return ((hw[0] - 1) // stride + 1, (hw[1] - 1) // stride + 1)


def output_hw(input_shape) -> tuple[int, int]:
    """Spatial size entering the global pool."""
    hw = tuple(input_shape[:2])
    for _, _, _, stride in stages():
        hw = _out_hw(hw, stride)
    return hw


def build(params: dict, *, width: int = 1, input_shape=(32, 32, 3), num_classes: int = 10,
          metadata: dict | None = None):
    """Build the BlendNet-20 graph from ``params``: layer name -> dict of the
    constants and attributes the builder method of that layer takes (see
    ``bnnrt.zoo.blendnet20`` for the complete list of names and keys)."""
    b = GraphBuilder()
    x = b.input("image", input_shape, "float32")
    x = b.quantize(x, scale=params["input"]["scale"], name="input")
    hw = tuple(input_shape[:2])
    x = b.conv2d_int8(x, pads=_pads(hw, 3, 1, 1), name="stem", **params["stem"])
    for name, cin, cout, stride in stages(width):
        p = lambda part: params[f"{name}.{part}"]  # noqa: E731
        bits = b.binarize(x, name=f"{name}.binarize", **p("binarize"))
        h = b.bconv2d(bits, cin=cin, strides=(stride, stride), pads=_pads(hw, 3, stride, 1),
                      pad_value=1, output="bits", name=f"{name}.conv1", **p("conv1"))
        out_hw = _out_hw(hw, stride)
        skip = x
        if needs_skip_conv(cin, cout, stride):
            skip = b.conv2d_int8(x, strides=(stride, stride), name=f"{name}.skip", **p("skip"))
        x = b.bconv2d(h, cin=cout, pads=_pads(out_hw, 3, 1, 1), pad_value=1, output="int8",
                      skip=skip, name=f"{name}.conv2", **p("conv2"))
        hw = out_hw
    x = b.global_avgpool(x, name="pool", **params["pool"])
    x = b.conv2d_int8(x, output="int32", name="head", **params["head"])
    x = b.dequantize(x, name="logits", **params["logits"])
    meta = {"architecture": f"blendnet20(width={width})", "output": "logits"}
    meta.update(metadata or {})
    return b.build(x, meta)
