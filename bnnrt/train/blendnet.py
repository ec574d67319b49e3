"""BlendNet-20 as PyTorch modules (the wiring of ``bnnrt.blendnet``).

``model.train()``: float tensors with straight-through estimators that hold
exactly what the integer network would (signs, multiples of the int8 scales,
integer dot products), BatchNorm on batch statistics.

``model.eval()``: the integer network itself. The trained parameters are folded
(``bnnrt.fold``) into exactly the constants ``bnnrt.convert.from_torch`` writes
to the .bnn file, and the forward pass runs the integer arithmetic of
numerics.md on them in torch (float64 convolutions of small integers are exact,
rescaling in int64). So eval-mode accuracy *is* the deployed model's accuracy.

Inputs are float NCHW, already normalized as the model's metadata says (what
``Model.run`` takes, transposed to NCHW). Outputs are float logits.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from .. import blendnet as wiring
from .. import fold
from ..quant import quantize_multiplier
from .integer import affine, conv, int8_out, np64, per_channel, requantize, signs
from .layers import BinaryConv2d, Int8Conv2d, Int8Linear, clamp_int8, compact_saved, fake_quant, sign


class BlendBlock(nn.Module):
    """binarize(BN(a)) -> bconv 3x3 /s -> BN -> sign -> bconv 3x3 -> BN,
    plus the int8 skip (identity or 1x1 conv /s + BN), clipped to int8."""

    def __init__(self, geometry: wiring.Block):
        super().__init__()
        g = self.geometry = geometry
        self.bn_in = nn.BatchNorm2d(g.cin)
        self.conv1 = BinaryConv2d(g.cin, g.cout, 3, g.stride)
        self.bn1 = nn.BatchNorm2d(g.cout)
        self.conv2 = BinaryConv2d(g.cout, g.cout, 3, 1)
        self.bn2 = nn.BatchNorm2d(g.cout)
        if g.skip_conv:
            self.skip = Int8Conv2d(g.cin, g.cout, 1, g.stride)
            self.skip_bn = nn.BatchNorm2d(g.cout)
        else:
            self.skip = self.skip_bn = None

    def forward(self, a, act_scale: float, lean: bool = False):
        g = self.geometry
        with compact_saved(a, act_scale, torch.int8, lean):
            z0 = self.bn_in(a)
        y1 = self.conv1(z0, g.conv1_pads)
        with compact_saved(y1, 1.0, torch.int16, lean):
            z1 = self.bn1(y1)
        y2 = self.conv2(z1, g.conv2_pads)
        with compact_saved(y2, 1.0, torch.int16, lean):
            main = fake_quant(self.bn2(y2), act_scale, clamp=False)
        if self.skip is None:
            skip = a
        else:
            with compact_saved(a, act_scale, torch.int8, lean):
                skip = fake_quant(self.skip_bn(self.skip(a)), act_scale)
        return clamp_int8(main + skip, act_scale)


class BlendNet20(nn.Module):
    """BlendNet-20: int8 stem, 9 Blend blocks, global average pool, int8 dense head.

    ``act_frac_bits`` sets the fixed-point scale 2**-f of every int8 tensor
    between blocks; ``input_scale`` quantizes the normalized input."""

    def __init__(self, width: int = 1, input_shape=(28, 28, 1), num_classes: int = 10,
                 act_frac_bits: int = 4, input_scale: float = 1 / 127):
        super().__init__()
        self.width, self.input_shape = int(width), tuple(int(d) for d in input_shape)
        self.num_classes = int(num_classes)
        self.act_scale = 2.0 ** -int(act_frac_bits)
        self.input_scale = float(input_scale)
        c0 = 16 * self.width
        self.stem = Int8Conv2d(self.input_shape[2], c0, 3, 1)
        self.stem_bn = nn.BatchNorm2d(c0)
        self.blocks = nn.ModuleList(BlendBlock(g) for g in wiring.blocks(self.input_shape, self.width))
        self.head = Int8Linear(64 * self.width, self.num_classes)
        self.lean = False

    def set_lean(self, lean: bool = True):
        """Memory-lean training: binary convs keep only bits for backward,
        BatchNorms keep integer inputs as int8/int16."""
        self.lean = bool(lean)
        for m in self.modules():
            if isinstance(m, BinaryConv2d):
                m.lean = self.lean
        return self

    def forward(self, x):
        if not self.training:
            return integer_forward(self.folded(), x, self.input_shape, self.width)
        q = fake_quant(x, self.input_scale)
        a = fake_quant(self.stem_bn(self.stem(q, wiring.conv_pads(self.input_shape[:2]))), self.act_scale)
        for block in self.blocks:
            a = block(a, self.act_scale, self.lean)
        p = fake_quant(a.mean(dim=(2, 3)), self.act_scale)
        return self.head(p)

    # ------------------------------------------------------------------ folding

    @torch.no_grad()
    def folded(self) -> dict:
        """The integer constants of every layer, keyed as ``bnnrt.blendnet.build`` expects."""
        s_in, s_a = self.input_scale, self.act_scale
        params = {"input": {"scale": s_in}}
        w, s_w = fold.int8_weights(np64(self.stem.weight).transpose(0, 2, 3, 1))
        m, s, bias = fold.requant_from_affine(*affine(self.stem_bn), s_in * s_w, s_a)
        params["stem"] = {"weights": w, "multiplier": m, "shift": s, "bias": bias}
        one_m, one_s = quantize_multiplier(1.0)
        for block in self.blocks:
            g = block.geometry
            t, d = fold.binarize_thresholds(*affine(block.bn_in), s_a)
            params[f"{g.name}.binarize"] = {"thresholds": t, "directions": d}
            thr, flip = fold.sign_thresholds(*affine(block.bn1), 9 * g.cin)
            w1 = np.where(np64(block.conv1.weight) >= 0, 1, -1) * np.where(flip, -1, 1)[:, None, None, None]
            params[f"{g.name}.conv1"] = {"weights": fold.pack_signs(w1.transpose(0, 2, 3, 1)),
                                         "thresholds": thr}
            m, s, bias = fold.requant_from_affine(*affine(block.bn2), 1.0, s_a)
            w2 = np.where(np64(block.conv2.weight) >= 0, 1, -1)
            params[f"{g.name}.conv2"] = {"weights": fold.pack_signs(w2.transpose(0, 2, 3, 1)),
                                         "multiplier": m, "shift": s, "bias": bias,
                                         "skip_multiplier": one_m, "skip_shift": one_s}
            if block.skip is not None:
                w, s_w = fold.int8_weights(np64(block.skip.weight).transpose(0, 2, 3, 1))
                m, s, bias = fold.requant_from_affine(*affine(block.skip_bn), s_a * s_w, s_a)
                params[f"{g.name}.skip"] = {"weights": w, "multiplier": m, "shift": s, "bias": bias}
        oh, ow = wiring.output_hw(self.input_shape)
        m, s = quantize_multiplier(1.0 / (oh * ow))
        params["pool"] = {"multiplier": m, "shift": s}
        w, s_h = fold.int8_weights(np64(self.head.weight)[:, None, None, :])
        head_scale = s_a * s_h
        params["head"] = {"weights": w, "bias": np.clip(np.rint(np64(self.head.bias) / head_scale),
                                                          -fold.BIAS_LIMIT, fold.BIAS_LIMIT).astype(np.int32)}
        params["logits"] = {"scale": head_scale.astype(np.float32)}
        return params


def blendnet20(width: int = 1, input_shape=(28, 28, 1), num_classes: int = 10, **kwargs) -> BlendNet20:
    return BlendNet20(width=width, input_shape=input_shape, num_classes=num_classes, **kwargs)


@torch.no_grad()
def integer_forward(params: dict, x, input_shape, width: int):
    """Run the folded network on float NCHW input; returns float32 logits."""
    q = torch.round(x.float() / np.float32(params["input"]["scale"])).clamp(-128, 127).to(torch.int64)
    a = int8_out(conv(q, params["stem"]["weights"], 1, wiring.conv_pads(input_shape[:2])), params["stem"])
    for g in wiring.blocks(input_shape, width):
        p = lambda part: params[f"{g.name}.{part}"]  # noqa: E731
        t, d = per_channel(p("binarize")["thresholds"]), per_channel(p("binarize")["directions"])
        s0 = sign(torch.where(d > 0, a >= t, a <= t).double() - 0.5)
        y1 = conv(s0, signs(p("conv1")["weights"], g.cin), g.stride, g.conv1_pads, 1.0)
        s1 = sign((y1 >= per_channel(p("conv1")["thresholds"])).double() - 0.5)
        y2 = conv(s1, signs(p("conv2")["weights"], g.cout), 1, g.conv2_pads, 1.0)
        skip = a
        if g.skip_conv:
            skip = int8_out(conv(a, p("skip")["weights"], g.stride), p("skip"))
        a = int8_out(y2, p("conv2"), skip)
    total = a.sum(dim=(2, 3), keepdim=True)
    pooled = requantize(total, [params["pool"]["multiplier"]], [params["pool"]["shift"]]).clamp(-128, 127)
    acc = conv(pooled, params["head"]["weights"]) + per_channel(params["head"]["bias"])
    logits = acc.float() * torch.as_tensor(params["logits"]["scale"]).reshape(1, -1, 1, 1)
    return logits.reshape(logits.shape[0], -1)
