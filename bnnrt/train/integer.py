"""The integer arithmetic of numerics.md in torch, for the eval mode of the
training modules: float64 convolutions of small integers (exact), rescaling in
int64. Tensors are NCHW; per-channel constants are the folded ones the .bnn
file holds (``bnnrt.fold``), so eval mode runs exactly the exported model."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import fold
from .layers import _torch_pads


def np64(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def affine(bn: nn.BatchNorm2d):
    return fold.bn_affine(np64(bn.weight), np64(bn.bias), np64(bn.running_mean), np64(bn.running_var), bn.eps)


def per_channel(a, dtype=torch.int64):
    return torch.as_tensor(np.asarray(a)).to(dtype).reshape(1, -1, 1, 1)


def requantize(x, multiplier, shift):
    m, s = per_channel(multiplier), per_channel(shift)
    half = torch.where(s > 0, torch.bitwise_left_shift(torch.ones_like(s), (s - 1).clamp(min=0)), 0)
    return torch.bitwise_right_shift(x * m + half, s)


def conv(x, w_ohwi, stride=1, pads=(0, 0, 0, 0), pad_value=0.0):
    w = torch.as_tensor(np.ascontiguousarray(np.asarray(w_ohwi).transpose(0, 3, 1, 2)), dtype=torch.float64)
    x = F.pad(x.double(), _torch_pads(pads), value=pad_value)
    return F.conv2d(x, w, stride=stride).round().to(torch.int64)


def signs(packed, cin):
    bits = np.unpackbits(packed, axis=-1, count=cin, bitorder="little")
    return 1 - 2 * bits.astype(np.int64)


def int8_out(acc, p, skip=None):
    out = requantize(acc + per_channel(p["bias"]), p["multiplier"], p["shift"])
    if skip is not None:
        out = out + requantize(skip, p["skip_multiplier"], p["skip_shift"])
    return out.clamp(-128, 127)
