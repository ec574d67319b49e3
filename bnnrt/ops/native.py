"""bnnrt's own ops: binary and symmetric int8 fixed point (numerics.md), the
first table of docs/ops.md. Every one runs a C kernel."""

from __future__ import annotations

import numpy as np

from .. import reference as ref
from .._kernels import _core
from ..graph import TensorSpec
from .base import (INT32_RANGE, NumpyKernel, Op, const, fail, finite_const, float_attr, input_spec, int8_clamp,
                   int_attr, int_list, pool_window, window)
from .conv import BinaryWeights, EpilogueConv


class Quantize(Op):
    name = "quantize"
    precision = "float"

    def infer(self, node, ins):
        spec = input_spec(node, ins, 0, ["float32"])
        float_attr(node, "scale", positive=True)
        return [TensorSpec(spec.shape, "int8")]

    def reference(self, node, ins, arrays):
        return [ref.quantize(arrays[0], scale=node.attrs["scale"])]

    def kernel(self, node, ins):
        return _core.Quantize(ins[0].channels, node.attrs["scale"])


class Dequantize(Op):
    name = "dequantize"
    precision = "float"

    def infer(self, node, ins):
        spec = input_spec(node, ins, 0, ["int8", "int32", "bits"])
        c = spec.channels
        for key in ("scale", "offset"):
            arr = finite_const(node, key, optional=(key == "offset"))
            if arr is not None and arr.shape not in ((1,), (c,)):
                fail(node, f"constant {key!r} has shape {arr.shape}, expected (1,) or ({c},)")
        return [TensorSpec(spec.shape, "float32")]

    def _kwargs(self, node, ins):
        channels = ins[0].channels if ins[0].dtype == "bits" else None
        return dict(scale=node.consts["scale"], offset=node.consts.get("offset"), channels=channels)

    def reference(self, node, ins, arrays):
        return [ref.dequantize(arrays[0], **self._kwargs(node, ins))]

    def kernel(self, node, ins):
        kw = self._kwargs(node, ins)
        if kw["channels"] is not None:  # bits: +1/-1 times the scale (LceDequantize)
            def run(x, out):
                out[...] = ref.dequantize(x, **kw)
            return NumpyKernel(run)
        scale, offset = kw["scale"], kw["offset"]

        def run(x, out):
            np.multiply(x, scale, out=out, dtype=np.float32)
            if offset is not None:
                np.add(out, offset, out=out)
        return NumpyKernel(run)


class Softmax(Op):
    name = "softmax"
    precision = "float"

    def infer(self, node, ins):
        spec = input_spec(node, ins, 0, ["float32"])
        float_attr(node, "beta", 1.0, positive=True)
        return [spec]

    def reference(self, node, ins, arrays):
        return [ref.softmax(arrays[0], beta=node.attrs.get("beta", 1.0))]

    def kernel(self, node, ins):
        beta = np.float32(node.attrs.get("beta", 1.0))

        def run(x, out):
            np.subtract(x, x.max(axis=-1, keepdims=True), out=out)
            if beta != 1:
                out *= beta
            np.exp(out, out=out)
            out /= out.sum(axis=-1, keepdims=True)
        return NumpyKernel(run)


class SignBits(Op):
    """float32 -> bits; with the constants ``multiplier`` and ``bias`` (float32
    [C], both or neither) the sign of the per-channel affine x * m + b
    (passes.fuse_sign_affines folds a mul_float/add_float pair into it)."""
    name = "sign_bits"
    precision = "float"

    def _affine(self, node, ins):
        c = ins[0].channels
        m = finite_const(node, "multiplier", shape=(c,), optional=True)
        b = finite_const(node, "bias", shape=(c,), optional=True)
        if (m is None) != (b is None):
            fail(node, "takes the constants multiplier and bias together, or neither")
        return {"multiplier": m, "bias": b}

    def infer(self, node, ins):
        spec = input_spec(node, ins, 0, ["float32"])
        self._affine(node, ins)
        return [TensorSpec(spec.shape, "bits")]

    def reference(self, node, ins, arrays):
        return [ref.sign_bits(arrays[0], channels=ins[0].channels, **self._affine(node, ins))]

    def kernel(self, node, ins):
        return _core.SignBits(ins[0].channels, **self._affine(node, ins))


class Binarize(Op):
    name = "binarize"

    def infer(self, node, ins):
        spec = input_spec(node, ins, 0, ["int8"])
        c = spec.channels
        const(node, "thresholds", np.int16, (c,))
        d = const(node, "directions", np.int8, (c,))
        if not np.all(np.abs(d) == 1):
            fail(node, "directions must be +1 or -1")
        return [TensorSpec(spec.shape, "bits")]

    def reference(self, node, ins, arrays):
        return [ref.binarize(arrays[0], thresholds=node.consts["thresholds"],
                             directions=node.consts["directions"])]

    def kernel(self, node, ins):
        return _core.Binarize(node.consts["thresholds"], node.consts["directions"])


class AddInt8(Op):
    name = "add_int8"
    n_inputs = (2, 2)

    def infer(self, node, ins):
        a = input_spec(node, ins, 0, ["int8"])
        b = input_spec(node, ins, 1, ["int8"])
        if a.shape != b.shape:
            fail(node, f"adds {a} and {b}: shapes differ")
        self._params(node)
        return [a]

    def _params(self, node):
        params = {}
        for side in "ab":
            params[f"{side}_multiplier"] = int_attr(node, f"{side}_multiplier", lo=INT32_RANGE[0], hi=INT32_RANGE[1])
            params[f"{side}_shift"] = int_attr(node, f"{side}_shift", lo=0, hi=62)
        params["clamp"] = int8_clamp(node)
        return params

    def reference(self, node, ins, arrays):
        return [ref.add_int8(arrays[0], arrays[1], **self._params(node))]

    def kernel(self, node, ins):
        return _core.AddInt8(**self._params(node))


class BConv2D(BinaryWeights, EpilogueConv):
    name = "bconv2d"
    kinds = ("int32", "bits", "int8")
    kernel_class = _core.BConv2D


class Conv2DInt8(EpilogueConv):
    name = "conv2d_int8"
    kinds = ("int32", "bits", "int8")
    int32_bias = True
    kernel_class = _core.Conv2DInt8


class MaxPool(Op):
    name = "maxpool"

    def precision_of(self, ins):
        return "binary" if ins[0].dtype == "bits" else "int8"

    def infer(self, node, ins):
        spec = input_spec(node, ins, 0, ["int8", "bits"])
        kernel = int_list(node, "kernel", 2, minimum=1)
        _, _, _, oh, ow = window(node, spec, kernel)
        return [TensorSpec((oh, ow, spec.channels), spec.dtype)]

    def _params(self, node, ins):
        channels = ins[0].channels if ins[0].dtype == "bits" else None
        return dict(pool_window(node, ins[0]), channels=channels)

    def reference(self, node, ins, arrays):
        return [ref.maxpool(arrays[0], **self._params(node, ins))]

    def kernel(self, node, ins):
        return _core.Pool(in_hw=ins[0].shape[:2], **self._params(node, ins))


class GlobalAvgPool(Op):
    name = "global_avgpool"

    def infer(self, node, ins):
        spec = input_spec(node, ins, 0, ["int8"])
        self._params(node)
        return [TensorSpec((1, 1, spec.channels), "int8")]

    def _params(self, node):
        return dict(multiplier=int_attr(node, "multiplier", lo=INT32_RANGE[0], hi=INT32_RANGE[1]),
                    shift=int_attr(node, "shift", lo=0, hi=62), clamp=int8_clamp(node))

    def reference(self, node, ins, arrays):
        return [ref.global_avgpool(arrays[0], **self._params(node))]

    def kernel(self, node, ins):
        return _core.GlobalAvgPool(**self._params(node))


OPS = (Quantize(), Dequantize(), Softmax(), SignBits(), Binarize(), AddInt8(), BConv2D(), Conv2DInt8(),
       MaxPool(), GlobalAvgPool())
