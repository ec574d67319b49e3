"""TFLite integer ops: the int8 layers of int8 models imported from LCE/TFLite
files, the third table of docs/ops.md. Their tensors carry a zero point and
TFLite rounds twice (reference.tfl_multiply), unlike bnnrt's own symmetric,
single-rounding int8 ops; hence ops of their own, with every TFLite constant
explicit (zero points, multipliers and shifts in TFLite's sign convention).
Their kernels are numpy in exact integer arithmetic."""

from __future__ import annotations

import numpy as np

from .. import reference as ref
from .._shapes import conv_geometry
from ..graph import TensorSpec
from .base import (INT8_RANGE, MAX_DIM, Elementwise, NumpyKernel, ReferenceOp, choice, const, fail, finite_const,
                   float_attr, input_spec, int8_clamp, int_attr, padded, pool_window, window)
from .conv import ConvOp

#: TFLite's QuantizeMultiplier yields shifts in this range (shift > 0: left).
TFL_SHIFT = (-31, 30)


def zero_point(node, key: str) -> int:
    return int_attr(node, key, lo=INT8_RANGE[0], hi=INT8_RANGE[1])


def multiplier(node, key: str, shift_key: str) -> tuple[int, int]:
    return (int_attr(node, key, lo=0, hi=2**31 - 1), int_attr(node, shift_key, lo=TFL_SHIFT[0], hi=TFL_SHIFT[1]))


def scale_attr(node, key: str = "scale") -> float:
    """A TFLite scale: positive, and q * scale finite in float32 for every
    int8 q less a zero point (|q - zp| <= 255)."""
    return float_attr(node, key, positive=True, headroom=256.0)


class TflOp(ReferenceOp):
    """A TFLite integer op whose kernel is its reference function (numpy,
    exact integers) written into the planned output."""

    def _kwargs(self, node, ins):
        kw = super()._kwargs(node, ins)
        if "clamp" in self.attr_keys:
            kw["clamp"] = int8_clamp(node)
        return kw


class TflScaleOp(TflOp):
    """float32 <-> int8 with one scale and zero point (TFLite's QUANTIZE and
    DEQUANTIZE)."""
    precision = "float"
    attr_keys = ("scale", "zero_point")
    dtypes = ("float32", "int8")        # (input, output)

    def infer(self, node, ins):
        spec = input_spec(node, ins, 0, [self.dtypes[0]])
        scale_attr(node)
        zero_point(node, "zero_point")
        return [TensorSpec(spec.shape, self.dtypes[1])]


class TflQuantize(TflScaleOp):
    name = "tfl_quantize"


class TflDequantize(TflScaleOp):
    name = "tfl_dequantize"
    dtypes = ("int8", "float32")


class TflRequantize(TflOp):
    name = "tfl_requantize"
    attr_keys = ("multiplier", "shift", "in_zero_point", "out_zero_point")

    def infer(self, node, ins):
        spec = input_spec(node, ins, 0, ["int8"])
        multiplier(node, "multiplier", "shift")
        zero_point(node, "in_zero_point")
        zero_point(node, "out_zero_point")
        return [spec]


class TflConv2D(ConvOp):
    """CONV_2D, DEPTHWISE_CONV_2D (groups = Cin) and FULLY_CONNECTED (1x1)."""

    name = "tfl_conv2d"
    skip_last = False

    def weights(self, node, spec):
        w = super().weights(node, spec)
        groups = int_attr(node, "groups", default=1, lo=1, hi=MAX_DIM)
        cout = int(w.shape[0])
        if spec.channels != groups * w.shape[3] or cout % groups:
            fail(node, f"weights {w.shape} with groups={groups} do not fit the input {spec}")
        const(node, "bias", np.int32, (cout,))
        m = const(node, "multiplier", np.int32, (cout,))
        s = const(node, "shift", np.int8, (cout,))
        if m.min() < 0:
            fail(node, "multipliers must be non-negative (TFLite's QuantizeMultiplier)")
        if s.min() < TFL_SHIFT[0] or s.max() > TFL_SHIFT[1]:
            fail(node, f"shifts must lie in {list(TFL_SHIFT)}")
        zero_point(node, "in_zero_point")
        zero_point(node, "out_zero_point")
        choice(node, "rounding", ("double", "ruy", "single"), default="double")
        int8_clamp(node)
        return w

    def _kwargs(self, node, ins):
        a = node.attrs
        return dict(self.geometry(node, ins), bias=node.consts["bias"], multiplier=node.consts["multiplier"],
                    shift=node.consts["shift"], in_zero_point=a["in_zero_point"],
                    out_zero_point=a["out_zero_point"], groups=a.get("groups", 1), clamp=int8_clamp(node),
                    rounding=a.get("rounding", "double"))

    def reference(self, node, ins, arrays):
        return [ref.tfl_conv2d(arrays[0], node.consts["weights"], **self._kwargs(node, ins))]

    def scratch_bytes(self, node, ins, outs):
        return self.numpy_scratch_bytes(node, ins, outs, 8)

    def kernel(self, node, ins):
        """im2col and one matrix product per group, in float64: exact, since
        |acc| <= 255 * 128 * K stays far below 2**53 for any K <= MAX_DIM**2."""
        params = self._kwargs(node, ins)
        w = node.consts["weights"]
        cout, kh, kwidth, cin_g = w.shape
        groups, zp = params["groups"], params["in_zero_point"]
        per_group = cout // groups
        strides, dilations, pads = params["strides"], params["dilations"], params["pads"]
        oh, ow = conv_geometry(ins[0].shape[:2], (kh, kwidth), strides, dilations, pads)
        depthwise = cin_g == 1 and groups > 1
        if depthwise:   # (kh*kw, Cout): a multiply-add per tap
            wmat = w.reshape(cout, kh * kwidth).T.astype(np.float64)
        else:           # per group (K, Cout/groups), K in (ky, kx, c) order as the im2col rows
            wmat = [w[g * per_group:(g + 1) * per_group].reshape(per_group, -1).T.astype(np.float64)
                    for g in range(groups)]
        bias = params["bias"].astype(np.int64)
        top, _, left, _ = pads
        sh, sw = strides
        dh, dw = dilations

        def run(x, out):
            n = x.shape[0]
            # padded taps hold the zero point: they add (zp - zp) * w = 0
            xp = np.full((n, ins[0].shape[0] + pads[0] + pads[1], ins[0].shape[1] + pads[2] + pads[3],
                          ins[0].shape[2]), zp, np.float64)
            xp[:, top:top + x.shape[1], left:left + x.shape[2]] = x
            xp -= zp
            taps = [xp[:, ky * dh:ky * dh + sh * (oh - 1) + 1:sh, kx * dw:kx * dw + sw * (ow - 1) + 1:sw]
                    for ky in range(kh) for kx in range(kwidth)]
            if depthwise:
                acc = np.zeros((n, oh, ow, cout), np.float64)
                for t, tap in enumerate(taps):
                    acc += (tap if per_group == 1 else np.repeat(tap, per_group, axis=-1)) * wmat[t]
            else:
                parts = []
                for g in range(groups):
                    cols = np.concatenate([t[..., g * cin_g:(g + 1) * cin_g] for t in taps], axis=-1)
                    parts.append(cols.reshape(-1, kh * kwidth * cin_g) @ wmat[g])
                acc = (parts[0] if groups == 1 else np.concatenate(parts, axis=-1)).reshape(n, oh, ow, cout)
            total = acc.astype(np.int64) + bias
            y = ref._tfl_rescale(total, params["multiplier"], params["shift"], params["rounding"]) + params["out_zero_point"]
            np.clip(y, params["clamp"][0], params["clamp"][1], out=y)
            out[...] = y
        return NumpyKernel(run)


class TflElementwise(Elementwise, TflOp):
    """TFLite's int8 ADD and MUL: a second input or a constant int8 operand."""

    dtype = "int8"

    def check_attrs(self, node):
        for key in ("a_zero_point", "b_zero_point", "out_zero_point"):
            zero_point(node, key)
        self.check_multipliers(node)
        int8_clamp(node)


class TflAdd(TflElementwise):
    name = "tfl_add"
    attr_keys = ("a_zero_point", "b_zero_point", "out_zero_point", "left_shift", "a_multiplier", "a_shift",
                 "b_multiplier", "b_shift", "out_multiplier", "out_shift", "clamp")

    def check_multipliers(self, node):
        int_attr(node, "left_shift", lo=0, hi=20)
        for side in ("a", "b", "out"):
            multiplier(node, f"{side}_multiplier", f"{side}_shift")


class TflMul(TflElementwise):
    name = "tfl_mul"
    attr_keys = ("a_zero_point", "b_zero_point", "out_zero_point", "multiplier", "shift", "clamp")

    def check_multipliers(self, node):
        multiplier(node, "multiplier", "shift")


class TflAvgPool(TflOp):
    name = "tfl_avgpool"

    def infer(self, node, ins):
        spec = input_spec(node, ins, 0, ["int8"])
        w = pool_window(node, spec)
        _, _, _, oh, ow = window(node, spec, w["kernel"])
        int8_clamp(node)
        return [TensorSpec((oh, ow, spec.channels), "int8")]

    def _kwargs(self, node, ins):
        return dict(pool_window(node, ins[0]), clamp=int8_clamp(node))


class TflMean(TflOp):
    name = "tfl_mean"
    attr_keys = ("multiplier", "shift", "input_zero_point", "output_zero_point", "clamp")

    def infer(self, node, ins):
        spec = input_spec(node, ins, 0, ["int8"])
        multiplier(node, "multiplier", "shift")
        zero_point(node, "input_zero_point")
        zero_point(node, "output_zero_point")
        int8_clamp(node)
        if spec.shape[0] * spec.shape[1] > 1 << 23:
            fail(node, f"averages {spec.shape[0]}x{spec.shape[1]} pixels: the int32 sum could overflow")
        return [TensorSpec((1, 1, spec.channels), "int8")]


class TflPad(TflOp):
    name = "tfl_pad"
    precision = "none"
    attr_keys = ("pads", "value")

    def infer(self, node, ins):
        spec = input_spec(node, ins, 0, ["int8"])
        zero_point(node, "value")
        return [padded(node, spec)]

    def scratch_bytes(self, node, ins, outs):
        return outs[0].nbytes           # np.pad's result


class TflSoftmax(TflOp):
    name = "tfl_softmax"
    attr_keys = ("scale", "zero_point")

    def infer(self, node, ins):
        spec = input_spec(node, ins, 0, ["int8"])
        t = finite_const(node, "table", np.float32, (256,))
        if not (np.all(t >= 0) and t.any()):
            fail(node, "the exp table must hold non-negative values, not all zero")
        scale_attr(node)
        zero_point(node, "zero_point")
        return [spec]

    def _kwargs(self, node, ins):
        return dict(super()._kwargs(node, ins), table=node.consts["table"])


OPS = (TflQuantize(), TflDequantize(), TflRequantize(), TflConv2D(), TflAdd(), TflMul(), TflAvgPool(),
       TflMean(), TflPad(), TflSoftmax())
