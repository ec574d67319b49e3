"""BlendMixer and the naive binary Mixer as PyTorch modules (the wiring of
``bnnrt.mixer``), with the discipline of ``bnnrt.train.blendnet``: training
mode simulates the integer network with straight-through estimators, eval mode
runs the folded integer network itself (``bnnrt.train.integer``), so eval-mode
accuracy is the deployed model's.

In training a token tensor is (N, L, K), K the axis the next layer mixes (the
channels for channel mixing, the tokens for token mixing): bnnrt's NHWC
(1, L, K), so every binary layer is one GEMM over all tokens and the engine's
``transpose`` is ``transpose(1, 2)``. The integer network (eval mode) keeps
NCHW (N, K, 1, L) for the shared helpers' 1x1 convolutions.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from .. import fold
from .. import mixer as wiring
from ..quant import quantize_multiplier
from .integer import affine, conv, int8_out, np64, per_channel, requantize, signs
from .layers import BinaryLinear, Int8Conv2d, Int8Linear, clamp_int8, fake_quant, sign

NO_PADS = (0, 0, 0, 0)


def transpose(x):
    """(N, L, K) <-> (N, K, L), contiguous: bnnrt's ``transpose``."""
    return x.transpose(1, 2).contiguous()


def to_tokens(x):
    """(N, C, H, W) grid -> (N, H*W, C) tokens, in the order bnnrt keeps them."""
    return x.flatten(2).transpose(1, 2).contiguous()


def _bn(bn: nn.BatchNorm1d, x):
    """BatchNorm over the last axis of (N, L, K)."""
    return bn(x.reshape(-1, x.shape[-1])).view_as(x)


class BlendMLP(nn.Module):
    """One Blend mixing MLP over the last axis K of an int8 tensor A (N, L, K):
    BN -> sign -> binary dense (K -> hidden) -> BN -> sign -> binary dense
    (hidden -> K) -> BN, plus A itself (the int8 skip path), clipped to int8."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.width, self.hidden = width, hidden
        self.bn_in = nn.BatchNorm1d(width)
        self.fc1 = BinaryLinear(width, hidden)
        self.bn1 = nn.BatchNorm1d(hidden)
        self.fc2 = BinaryLinear(hidden, width)
        self.bn2 = nn.BatchNorm1d(width)

    def forward(self, a, act_scale: float):
        z1 = _bn(self.bn1, self.fc1(_bn(self.bn_in, a)))
        main = fake_quant(_bn(self.bn2, self.fc2(z1)), act_scale, clamp=False)
        return clamp_int8(main + a, act_scale)

    @torch.no_grad()
    def folded(self, act_scale: float) -> dict:
        t, d = fold.binarize_thresholds(*affine(self.bn_in), act_scale)
        thr, flip = fold.sign_thresholds(*affine(self.bn1), self.width)
        w1 = _binary(self.fc1) * np.where(flip, -1, 1)[:, None, None, None]
        m, s, bias = fold.requant_from_affine(*affine(self.bn2), 1.0, act_scale)
        one_m, one_s = quantize_multiplier(1.0)
        return {"binarize": {"thresholds": t, "directions": d},
                "fc1": {"weights": fold.pack_signs(w1), "thresholds": thr},
                "fc2": {"weights": fold.pack_signs(_binary(self.fc2)), "multiplier": m, "shift": s,
                        "bias": bias, "skip_multiplier": one_m, "skip_shift": one_s}}


class BinaryMLP(nn.Module):
    """One naive binary mixing MLP over the last axis: pre-sign activations in,
    pre-sign out. binary dense (K -> hidden) -> BN -> sign -> binary dense
    (hidden -> K) -> BN; the signs of the result feed the next MLP (after the
    last one, the BN output is requantized to int8 for the pool)."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.width, self.hidden = width, hidden
        self.fc1 = BinaryLinear(width, hidden)
        self.bn1 = nn.BatchNorm1d(hidden)
        self.fc2 = BinaryLinear(hidden, width)
        self.bn2 = nn.BatchNorm1d(width)

    def forward(self, z):
        return _bn(self.bn2, self.fc2(_bn(self.bn1, self.fc1(z))))

    @torch.no_grad()
    def folded(self, act_scale: float, last: bool) -> dict:
        thr, flip = fold.sign_thresholds(*affine(self.bn1), self.width)
        w1 = _binary(self.fc1) * np.where(flip, -1, 1)[:, None, None, None]
        out = {"fc1": {"weights": fold.pack_signs(w1), "thresholds": thr}}
        if last:
            m, s, bias = fold.requant_from_affine(*affine(self.bn2), 1.0, act_scale)
            out["fc2"] = {"weights": fold.pack_signs(_binary(self.fc2)), "multiplier": m, "shift": s,
                          "bias": bias}
        else:
            thr2, flip2 = fold.sign_thresholds(*affine(self.bn2), self.hidden)
            w2 = _binary(self.fc2) * np.where(flip2, -1, 1)[:, None, None, None]
            out["fc2"] = {"weights": fold.pack_signs(w2), "thresholds": thr2}
        return out


class Mixer(nn.Module):
    """BlendMixer (``kind="blend"``) or the naive binary Mixer (``"binary"``):
    int8 patch embedding, ``depth`` token + channel MLPs, global average pool,
    int8 dense head. ``act_frac_bits`` sets the fixed-point scale 2**-f of the
    int8 tensors; ``input_scale`` quantizes the normalized input."""

    def __init__(self, cfg: wiring.Config, act_frac_bits: int = 4, input_scale: float = 1 / 127):
        super().__init__()
        if cfg.kind not in wiring.KINDS:
            raise ValueError(f"Mixer kind must be one of {wiring.KINDS}, not {cfg.kind!r}")
        if cfg.kind == "binary" and cfg.depth < 1:
            raise ValueError("the binary Mixer needs depth >= 1")
        self.cfg = cfg
        self.input_shape = tuple(int(d) for d in cfg.input_shape)
        self.num_classes = int(cfg.num_classes)
        self.act_scale = 2.0 ** -int(act_frac_bits)
        self.input_scale = float(input_scale)
        p = cfg.patch
        self.embed = Int8Conv2d(self.input_shape[2], cfg.dim, p, p)
        self.embed_bn = nn.BatchNorm2d(cfg.dim)
        mlp = BlendMLP if cfg.kind == "blend" else BinaryMLP
        self.mlps = nn.ModuleList(mlp(width, hidden) for _, _, width, hidden in wiring.mlps(cfg))
        self.embed_sign_bn = nn.BatchNorm1d(cfg.dim) if cfg.kind == "binary" else None
        self.head = Int8Linear(cfg.dim, self.num_classes)

    def set_lean(self, lean: bool = True):
        if lean:
            raise ValueError("memory-lean training is for the convolutional BlendNet; a Mixer's "
                             "binary layers are dense GEMMs")
        return self

    def forward(self, x):
        if not self.training:
            return integer_forward(self.folded(), x, self.cfg)
        s_a = self.act_scale
        q = fake_quant(x, self.input_scale)
        a = to_tokens(fake_quant(self.embed_bn(self.embed(q)), s_a))      # (N, T, C)
        axes = [axis for _, axis, _, _ in wiring.mlps(self.cfg)]
        if self.cfg.kind == "blend":
            for axis, mlp in zip(axes, self.mlps):
                a = transpose(mlp(transpose(a), s_a)) if axis == "token" else mlp(a, s_a)
        else:
            z = _bn(self.embed_sign_bn, a)
            for axis, mlp in zip(axes, self.mlps):
                z = transpose(mlp(transpose(z))) if axis == "token" else mlp(z)
            a = fake_quant(z, s_a)
        p = fake_quant(a.mean(dim=1), s_a)
        return self.head(p)

    @torch.no_grad()
    def folded(self) -> dict:
        """The integer constants of every layer, keyed as ``bnnrt.mixer.build`` expects."""
        cfg, s_in, s_a = self.cfg, self.input_scale, self.act_scale
        params = {"input": {"scale": s_in}}
        w, s_w = fold.int8_weights(np64(self.embed.weight).transpose(0, 2, 3, 1))
        m, s, bias = fold.requant_from_affine(*affine(self.embed_bn), s_in * s_w, s_a)
        params["embed"] = {"weights": w, "multiplier": m, "shift": s, "bias": bias}
        if cfg.kind == "binary":
            t, d = fold.binarize_thresholds(*affine(self.embed_sign_bn), s_a)
            params["embed.binarize"] = {"thresholds": t, "directions": d}
        layers = wiring.mlps(cfg)
        for n, ((name, _, _, _), mlp) in enumerate(zip(layers, self.mlps)):
            parts = mlp.folded(s_a) if cfg.kind == "blend" else mlp.folded(s_a, n == len(layers) - 1)
            params.update({f"{name}.{part}": value for part, value in parts.items()})
        m, s = quantize_multiplier(1.0 / cfg.tokens)
        params["pool"] = {"multiplier": m, "shift": s}
        w, s_h = fold.int8_weights(np64(self.head.weight)[:, None, None, :])
        head_scale = s_a * s_h
        params["head"] = {"weights": w, "bias": np.clip(np.rint(np64(self.head.bias) / head_scale),
                                                          -fold.BIAS_LIMIT, fold.BIAS_LIMIT).astype(np.int32)}
        params["logits"] = {"scale": head_scale.astype(np.float32)}
        return params


def mixer(kind: str = "blend", **config) -> Mixer:
    """A Mixer of ``bnnrt.mixer.Config(kind, **config)``."""
    return Mixer(wiring.Config(kind=kind, **config))


def _binary(fc: BinaryLinear) -> np.ndarray:
    """The +1/-1 weights of a binary dense layer as a 1x1 conv's (O, 1, 1, I)."""
    return np.where(np64(fc.weight) >= 0, 1, -1)[:, None, None, :]


# ---------------------------------------------------------------------------
# the integer network, in torch (eval mode)


def _nchw_transpose(x):
    return x.permute(0, 3, 2, 1)


def _nchw_tokens(x):
    return x.reshape(x.shape[0], x.shape[1], 1, -1)


def _dense(x, w_ohwi):
    """A 1x1 convolution of (N, K, 1, L) integers as one float64 GEMM (exact)."""
    n, k, _, l = x.shape
    w = torch.as_tensor(np.asarray(w_ohwi).reshape(-1, k), dtype=torch.float64)
    y = x.double().permute(0, 3, 2, 1).reshape(-1, k) @ w.T
    return y.round().to(torch.int64).reshape(n, l, 1, -1).permute(0, 3, 2, 1)


def _threshold_signs(y, thresholds):
    return sign((y >= per_channel(thresholds)).double() - 0.5)


@torch.no_grad()
def integer_forward(params: dict, x, cfg: wiring.Config):
    """Run the folded Mixer on float NCHW input; returns float32 logits."""
    q = torch.round(x.float() / np.float32(params["input"]["scale"])).clamp(-128, 127).to(torch.int64)
    a = _nchw_tokens(int8_out(conv(q, params["embed"]["weights"], cfg.patch), params["embed"]))
    layers = wiring.mlps(cfg)
    if cfg.kind == "binary":
        t, d = per_channel(params["embed.binarize"]["thresholds"]), per_channel(params["embed.binarize"]["directions"])
        s = sign(torch.where(d > 0, a >= t, a <= t).double() - 0.5)
    for n, (name, axis, width, hidden) in enumerate(layers):
        p = lambda part: params[f"{name}.{part}"]  # noqa: E731
        if cfg.kind == "blend":
            a = _nchw_transpose(a) if axis == "token" else a
            t, d = per_channel(p("binarize")["thresholds"]), per_channel(p("binarize")["directions"])
            s0 = sign(torch.where(d > 0, a >= t, a <= t).double() - 0.5)
            s1 = _threshold_signs(_dense(s0, signs(p("fc1")["weights"], width)), p("fc1")["thresholds"])
            a = int8_out(_dense(s1, signs(p("fc2")["weights"], hidden)), p("fc2"), a)
            a = _nchw_transpose(a) if axis == "token" else a
        else:
            s = _nchw_transpose(s) if axis == "token" else s
            s1 = _threshold_signs(_dense(s, signs(p("fc1")["weights"], width)), p("fc1")["thresholds"])
            y2 = _dense(s1, signs(p("fc2")["weights"], hidden))
            if n == len(layers) - 1:
                a = int8_out(y2, p("fc2"))
            else:
                s = _threshold_signs(y2, p("fc2")["thresholds"])
                s = _nchw_transpose(s) if axis == "token" else s
    total = a.sum(dim=(2, 3), keepdim=True)
    pooled = requantize(total, [params["pool"]["multiplier"]], [params["pool"]["shift"]]).clamp(-128, 127)
    acc = conv(pooled, params["head"]["weights"]) + per_channel(params["head"]["bias"])
    logits = acc.float() * torch.as_tensor(params["logits"]["scale"]).reshape(1, -1, 1, 1)
    return logits.reshape(logits.shape[0], -1)
