"""Training building blocks: straight-through estimators, fake quantization,
binary and int8 convolutions, and the memory-lean saved-tensor storage.

Forward passes in training mode simulate the integer inference of
../shared/design/numerics.md on float tensors that hold exactly representable
values: signs are +1/-1, int8 tensors are multiples of their scale, binary dot
products are integers. Rounding is round-half-up, as ``requantize`` does.

Memory-lean training (after Wang et al. 2021, "Enabling Binary Neural Network
Training on the Edge"): a binary convolution keeps only the packed sign bits of
its input and the packed straight-through mask for the backward pass, and the
BatchNorms keep their integer-valued inputs as int8/int16 instead of float32
(:func:`compact_saved`). Gradients are identical; only storage changes.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F

# --------------------------------------------------------------------------
# bit packing of boolean tensors (the lean mode's storage)

_BIT_WEIGHTS = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8)


def pack_bool(t: torch.Tensor) -> torch.Tensor:
    """Bool tensor -> uint8 tensor of ceil(numel / 8) bytes, LSB first."""
    flat = t.reshape(-1)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    return (flat.view(-1, 8).to(torch.uint8) * _BIT_WEIGHTS).sum(dim=1, dtype=torch.uint8)


def unpack_bool(packed: torch.Tensor, shape) -> torch.Tensor:
    bits = packed.unsqueeze(1).bitwise_and(_BIT_WEIGHTS).ne(0).reshape(-1)
    n = 1
    for d in shape:
        n *= d
    return bits[:n].reshape(shape)


# --------------------------------------------------------------------------
# straight-through estimators


def sign(x: torch.Tensor) -> torch.Tensor:
    """+1 where x >= 0, else -1 (numerics.md: zero binarizes to +1)."""
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


class SignSTE(torch.autograd.Function):
    """sign(x) forward; gradient passed where |x| <= 1 (the clipped STE)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return sign(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1)


def fake_quant(x, scale: float, clamp: bool = True):
    """Round x to the grid of ``scale`` (round half up, int8 range unless
    ``clamp=False``); straight-through: the gradient is the identity."""
    with torch.no_grad():                      # nothing of the rounding is kept for backward
        q = torch.floor(x / scale + 0.5)
        if clamp:
            q = q.clamp_(-128, 127)
        delta = q.mul_(scale).sub_(x)
    return x + delta


def clamp_int8(x, scale: float):
    """Clamp to the int8 range of ``scale``; straight-through."""
    with torch.no_grad():
        delta = x.clamp(-128 * scale, 127 * scale).sub_(x)
    return x + delta


def fake_quant_weight(w):
    """Symmetric per-output-channel int8 weights (scale max|w|/127), straight-through."""
    amax = w.detach().abs().reshape(w.shape[0], -1).amax(dim=1)
    scale = torch.where(amax > 0, amax / 127, torch.ones_like(amax)).reshape(-1, *[1] * (w.dim() - 1))
    with torch.no_grad():
        delta = torch.round(w / scale).clamp_(-127, 127).mul_(scale).sub_(w)
    return w + delta


# --------------------------------------------------------------------------
# memory-lean storage of integer-valued tensors saved for backward


@contextlib.contextmanager
def compact_saved(x: torch.Tensor, scale: float, dtype: torch.dtype, enabled: bool = True):
    """While active, autograd stores ``x`` (a float tensor whose values are
    integer multiples of ``scale`` fitting ``dtype``) as ``dtype``; every other
    saved tensor is kept as is."""
    if not enabled or not torch.is_grad_enabled():
        yield
        return
    key = (x.data_ptr(), tuple(x.shape), x.dtype)

    def pack(t):
        if (t.data_ptr(), tuple(t.shape), t.dtype) == key:
            return ("compact", torch.round(t.detach() / scale).to(dtype), t.dtype)
        return t

    def unpack(saved):
        if isinstance(saved, tuple) and len(saved) == 3 and saved[0] == "compact":
            return saved[1].to(saved[2]) * scale
        return saved

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        yield


class _LeanSignConv(torch.autograd.Function):
    """sign(z) -> pad with +1 -> conv2d with binary weights, saving only bits.

    Saved for backward: the packed signs of the input, the packed STE mask
    (|z| <= 1) and the binary weights; the +1/-1 input is rebuilt from the bits
    for the weight gradient."""

    @staticmethod
    def forward(ctx, z, w_bin, stride, pads):
        s = sign(z)
        ctx.shape, ctx.stride, ctx.pads = z.shape, stride, pads
        ctx.save_for_backward(pack_bool(s < 0), pack_bool(z.abs() <= 1), w_bin)
        return F.conv2d(F.pad(s, _torch_pads(pads), value=1.0), w_bin, stride=stride)

    @staticmethod
    def backward(ctx, grad):
        neg, mask, w_bin = ctx.saved_tensors
        s = 1.0 - 2.0 * unpack_bool(neg, ctx.shape).to(grad.dtype)
        sp = F.pad(s, _torch_pads(ctx.pads), value=1.0)
        grad_sp = torch.nn.grad.conv2d_input(sp.shape, w_bin, grad, stride=ctx.stride)
        top, bottom, left, right = ctx.pads
        grad_s = grad_sp[:, :, top:sp.shape[2] - bottom, left:sp.shape[3] - right]
        grad_z = grad_s * unpack_bool(mask, ctx.shape).to(grad.dtype)
        grad_w = torch.nn.grad.conv2d_weight(sp, w_bin.shape, grad, stride=ctx.stride)
        return grad_z, grad_w, None, None


def _torch_pads(pads):
    top, bottom, left, right = pads
    return (left, right, top, bottom)


# --------------------------------------------------------------------------
# layers


class BinaryConv2d(nn.Module):
    """Binary 3x3 (or kxk) convolution of the signs of its input with the
    signs of latent real weights, padding with +1 ("same-one").

    ``forward(z)`` takes the *pre-sign* activations (the BatchNorm output
    before the sign) and returns the integer dot products y as float."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1):
        super().__init__()
        self.cin, self.cout, self.kernel, self.stride = cin, cout, kernel, stride
        self.weight = nn.Parameter(torch.empty(cout, cin, kernel, kernel).uniform_(-0.05, 0.05))
        self.lean = False

    def binary_weight(self):
        return SignSTE.apply(self.weight)

    def forward(self, z, pads):
        w = self.binary_weight()
        if self.lean and torch.is_grad_enabled():
            return _LeanSignConv.apply(z, w, self.stride, pads)
        s = SignSTE.apply(z)
        return F.conv2d(F.pad(s, _torch_pads(pads), value=1.0), w, stride=self.stride)

    def extra_repr(self):
        return f"{self.cin}, {self.cout}, kernel={self.kernel}, stride={self.stride}"


class BinaryLinear(nn.Module):
    """Binary dense layer over the last axis: the signs of its input times the
    signs of latent real weights. ``forward(z)`` takes the pre-sign
    activations (..., cin) and returns the integer dot products (..., cout) as
    float. The Mixers' layers: one GEMM over every token at once."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.cin, self.cout = cin, cout
        self.weight = nn.Parameter(torch.empty(cout, cin).uniform_(-0.05, 0.05))

    def binary_weight(self):
        return SignSTE.apply(self.weight)

    def forward(self, z):
        return F.linear(SignSTE.apply(z), self.binary_weight())

    def extra_repr(self):
        return f"{self.cin}, {self.cout}"


class Int8Conv2d(nn.Module):
    """Convolution with fake-quantized int8 weights (per output channel), no bias:
    the BatchNorm that follows supplies it. Zero padding."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1):
        super().__init__()
        self.cin, self.cout, self.kernel, self.stride = cin, cout, kernel, stride
        self.weight = nn.Parameter(torch.empty(cout, cin, kernel, kernel))
        nn.init.kaiming_normal_(self.weight, nonlinearity="linear")

    def forward(self, x, pads=(0, 0, 0, 0)):
        return F.conv2d(F.pad(x, _torch_pads(pads)), fake_quant_weight(self.weight), stride=self.stride)

    def extra_repr(self):
        return f"{self.cin}, {self.cout}, kernel={self.kernel}, stride={self.stride}"


class Int8Linear(nn.Module):
    """Dense layer with fake-quantized int8 weights and a bias (the head)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.cin, self.cout = cin, cout
        self.weight = nn.Parameter(torch.empty(cout, cin))
        nn.init.kaiming_normal_(self.weight, nonlinearity="linear")
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x):
        return F.linear(x, fake_quant_weight(self.weight), self.bias)

    def extra_repr(self):
        return f"{self.cin}, {self.cout}"
