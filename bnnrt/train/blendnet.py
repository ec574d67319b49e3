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
import torch.nn.functional as F

from .. import blendnet as wiring
from .. import fold
from ..quant import quantize_multiplier
from .layers import (BinaryConv2d, Int8Conv2d, Int8Linear, clamp_int8, compact_saved, fake_quant,
                     sign, _torch_pads)


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
        w, s_w = fold.int8_weights(_np(self.stem.weight).transpose(0, 2, 3, 1))
        m, s, bias = fold.requant_from_affine(*_affine(self.stem_bn), s_in * s_w, s_a)
        params["stem"] = {"weights": w, "multiplier": m, "shift": s, "bias": bias}
        one_m, one_s = quantize_multiplier(1.0)
        for block in self.blocks:
            g = block.geometry
            t, d = fold.binarize_thresholds(*_affine(block.bn_in), s_a)
            params[f"{g.name}.binarize"] = {"thresholds": t, "directions": d}
            thr, flip = fold.sign_thresholds(*_affine(block.bn1), 9 * g.cin)
            w1 = np.where(_np(block.conv1.weight) >= 0, 1, -1) * np.where(flip, -1, 1)[:, None, None, None]
            params[f"{g.name}.conv1"] = {"weights": fold.pack_signs(w1.transpose(0, 2, 3, 1)),
                                         "thresholds": thr}
            m, s, bias = fold.requant_from_affine(*_affine(block.bn2), 1.0, s_a)
            w2 = np.where(_np(block.conv2.weight) >= 0, 1, -1)
            params[f"{g.name}.conv2"] = {"weights": fold.pack_signs(w2.transpose(0, 2, 3, 1)),
                                         "multiplier": m, "shift": s, "bias": bias,
                                         "skip_multiplier": one_m, "skip_shift": one_s}
            if block.skip is not None:
                w, s_w = fold.int8_weights(_np(block.skip.weight).transpose(0, 2, 3, 1))
                m, s, bias = fold.requant_from_affine(*_affine(block.skip_bn), s_a * s_w, s_a)
                params[f"{g.name}.skip"] = {"weights": w, "multiplier": m, "shift": s, "bias": bias}
        oh, ow = wiring.output_hw(self.input_shape)
        m, s = quantize_multiplier(1.0 / (oh * ow))
        params["pool"] = {"multiplier": m, "shift": s}
        w, s_h = fold.int8_weights(_np(self.head.weight)[:, None, None, :])
        head_scale = s_a * s_h
        params["head"] = {"weights": w, "bias": np.clip(np.rint(_np(self.head.bias) / head_scale),
                                                          -fold.BIAS_LIMIT, fold.BIAS_LIMIT).astype(np.int32)}
        params["logits"] = {"scale": head_scale.astype(np.float32)}
        return params


def blendnet20(width: int = 1, input_shape=(28, 28, 1), num_classes: int = 10, **kwargs) -> BlendNet20:
    return BlendNet20(width=width, input_shape=input_shape, num_classes=num_classes, **kwargs)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def _affine(bn: nn.BatchNorm2d):
    return fold.bn_affine(_np(bn.weight), _np(bn.bias), _np(bn.running_mean), _np(bn.running_var), bn.eps)


# ---------------------------------------------------------------------------
# the integer network, in torch (eval mode)


def _per_channel(a, dtype=torch.int64):
    return torch.as_tensor(np.asarray(a)).to(dtype).reshape(1, -1, 1, 1)


def _requantize(x, multiplier, shift):
    m, s = _per_channel(multiplier), _per_channel(shift)
    half = torch.where(s > 0, torch.bitwise_left_shift(torch.ones_like(s), (s - 1).clamp(min=0)), 0)
    return torch.bitwise_right_shift(x * m + half, s)


def _conv(x, w_ohwi, stride=1, pads=(0, 0, 0, 0), pad_value=0.0):
    w = torch.as_tensor(np.ascontiguousarray(np.asarray(w_ohwi).transpose(0, 3, 1, 2)), dtype=torch.float64)
    x = F.pad(x.double(), _torch_pads(pads), value=pad_value)
    return F.conv2d(x, w, stride=stride).round().to(torch.int64)


def _signs(packed, cin):
    bits = np.unpackbits(packed, axis=-1, count=cin, bitorder="little")
    return 1 - 2 * bits.astype(np.int64)


def _int8_out(acc, p, skip=None):
    out = _requantize(acc + _per_channel(p["bias"]), p["multiplier"], p["shift"])
    if skip is not None:
        out = out + _requantize(skip, p["skip_multiplier"], p["skip_shift"])
    return out.clamp(-128, 127)


@torch.no_grad()
def integer_forward(params: dict, x, input_shape, width: int):
    """Run the folded network on float NCHW input; returns float32 logits."""
    q = torch.round(x.float() / np.float32(params["input"]["scale"])).clamp(-128, 127).to(torch.int64)
    a = _int8_out(_conv(q, params["stem"]["weights"], 1, wiring.conv_pads(input_shape[:2])), params["stem"])
    for g in wiring.blocks(input_shape, width):
        p = lambda part: params[f"{g.name}.{part}"]  # noqa: E731
        t, d = _per_channel(p("binarize")["thresholds"]), _per_channel(p("binarize")["directions"])
        s0 = sign(torch.where(d > 0, a >= t, a <= t).double() - 0.5)
        y1 = _conv(s0, _signs(p("conv1")["weights"], g.cin), g.stride, g.conv1_pads, 1.0)
        s1 = sign((y1 >= _per_channel(p("conv1")["thresholds"])).double() - 0.5)
        y2 = _conv(s1, _signs(p("conv2")["weights"], g.cout), 1, g.conv2_pads, 1.0)
        skip = a
        if g.skip_conv:
            skip = _int8_out(_conv(a, p("skip")["weights"], g.stride), p("skip"))
        a = _int8_out(y2, p("conv2"), skip)
    total = a.sum(dim=(2, 3), keepdim=True)
    pooled = _requantize(total, [params["pool"]["multiplier"]], [params["pool"]["shift"]]).clamp(-128, 127)
    acc = _conv(pooled, params["head"]["weights"]) + _per_channel(params["head"]["bias"])
    logits = acc.float() * torch.as_tensor(params["logits"]["scale"]).reshape(1, -1, 1, 1)
    return logits.reshape(logits.shape[0], -1)
