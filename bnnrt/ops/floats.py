"""Float ops: the layers imported Larq/TFLite (and ONNX) models keep in
float32 (stem, shortcuts, pooling, head), the second table of docs/ops.md.
They compute in float32 like TFLite's kernels: the convolutions and the pools
run C kernels, the element-wise ops numpy."""

from __future__ import annotations

import numpy as np

from .. import reference as ref
from .._kernels import _core
from ..graph import TensorSpec
from .base import (MAX_DIM, Elementwise, NumpyKernel, ReferenceOp, activation_attr, choice, fail, finite_const,
                   float_attr, input_spec, int_attr, int_list, padded, pool_window, window)
from .conv import BinaryWeights, ConvOp, EpilogueConv


class FloatOp(ReferenceOp):
    precision = "float"


class Activation(FloatOp):
    name = "activation"
    attr_keys = ("kind",)

    def infer(self, node, ins):
        spec = input_spec(node, ins, 0, ["float32"])
        choice(node, "kind", tuple(ref.UNARY))
        return [spec]


class Conv2DFloat(ConvOp, FloatOp):
    name = "conv2d_float"
    in_dtype = "float32"
    precision = "float"
    skip_last = False

    #: The direct kernel streams every weight once per block of pixels; past
    #: a few MB they no longer stay in cache and a blocked GEMM wins
    #: (benchmarks/float_conv_vs_blas.py).
    DIRECT_MAX_WEIGHT_BYTES = 4 << 20

    def weights(self, node, spec):
        w = super().weights(node, spec)
        groups = int_attr(node, "groups", default=1, lo=1, hi=MAX_DIM)
        cout = int(w.shape[0])
        if spec.channels != groups * w.shape[3] or cout % groups:
            fail(node, f"weights {w.shape} with groups={groups} do not fit the input {spec}")
        finite_const(node, "weights")
        finite_const(node, "bias", shape=(cout,), optional=True)
        activation_attr(node)
        return w

    def _kwargs(self, node, ins):
        return dict(self.geometry(node, ins), weights=node.consts["weights"], bias=node.consts.get("bias"),
                    groups=node.attrs.get("groups", 1), activation=activation_attr(node))

    def kernel(self, node, ins):
        # Dense and depthwise convs run the direct C kernel (register-blocked
        # FMA, bnn_fconv.c; docs/performance.md compares it with im2col and
        # BLAS). Grouped convs, activations that are not a clamp (tanh,
        # logistic) and very large filters take the numpy path.
        kw = self._kwargs(node, ins)
        w = kw["weights"]
        direct = (kw["groups"] == 1 or w.shape[3] == 1) and w.nbytes <= self.DIRECT_MAX_WEIGHT_BYTES
        if direct and kw["activation"] in _core.FLOAT_CLAMPS:
            return _core.FloatConv(w, kw["bias"], in_hw=ins[0].shape[:2], strides=kw["strides"],
                                   dilations=kw["dilations"], pads=kw["pads"], groups=kw["groups"],
                                   activation=kw["activation"])
        return FloatOp.kernel(self, node, ins)

    def scratch_bytes(self, node, ins, outs):
        # the numpy path's im2col (counted for both: the planner does not know yet which runs)
        return self.numpy_scratch_bytes(node, ins, outs, 4)



class BConv2DFloat(BinaryWeights, EpilogueConv):
    """A binary conv with LCE's float epilogue (clamp y, then multiplier and
    bias), and optionally the float residual add that follows it in Larq
    models (a second input, added last: exactly the separate ADD)."""

    name = "bconv2d_float"
    kinds = ("float32",)
    kernel_class = _core.BConv2D


class AddFloat(Elementwise):
    name = "add_float"
    precision = "float"
    ufunc = np.add
    #: a second input may be one value per channel, (1, 1, C): RealToBinaryNet
    #: scales each channel by a factor computed from the data
    broadcast_inputs = True

    def check_attrs(self, node):
        activation_attr(node)

    def _kwargs(self, node, ins):
        return {"activation": activation_attr(node)}

    def kernel(self, node, ins):
        if activation_attr(node) != "none":
            return super().kernel(node, ins)
        # written into the output: a ReActNet runs ~80 of these, and the
        # reference's temporaries cost as much as its binary convs
        ufunc, operand = self.ufunc, node.consts.get("operand")

        def run(*arrays):
            ufunc(arrays[0], arrays[1] if operand is None else operand, out=arrays[-1])
        return NumpyKernel(run)


class MulFloat(AddFloat):
    name = "mul_float"
    ufunc = np.multiply


class MinimumFloat(AddFloat):
    """TFLite's MINIMUM (DoReFaNet's clip of activations to [0, 1])."""

    name = "minimum_float"
    ufunc = np.minimum


class MaximumFloat(AddFloat):
    name = "maximum_float"
    ufunc = np.maximum


class PadFloat(FloatOp):
    name = "pad_float"
    precision = "none"
    attr_keys = ("pads", "value", "channel_pads")

    def infer(self, node, ins):
        spec = input_spec(node, ins, 0, ["float32"])
        float_attr(node, "value", 0.0)
        before, after = int_list(node, "channel_pads", 2, default=[0, 0], minimum=0)
        h, w, c = padded(node, spec).shape
        return [TensorSpec((h, w, c + before + after), "float32")]

    def scratch_bytes(self, node, ins, outs):
        return outs[0].nbytes           # np.pad's result


class MaxPoolFloat(FloatOp):
    name = "maxpool_float"
    average = False

    def infer(self, node, ins):
        spec = input_spec(node, ins, 0, ["float32"])
        w = pool_window(node, spec)
        _, _, _, oh, ow = window(node, spec, w["kernel"])
        return [TensorSpec((oh, ow, spec.channels), "float32")]

    def _kwargs(self, node, ins):
        return pool_window(node, ins[0])

    def kernel(self, node, ins):
        return _core.Pool(in_hw=ins[0].shape[:2], dtype="float32", average=self.average,
                          **self._kwargs(node, ins))


class AvgPoolFloat(MaxPoolFloat):
    name = "avgpool_float"
    average = True


class MeanFloat(FloatOp):
    name = "mean_float"

    def infer(self, node, ins):
        spec = input_spec(node, ins, 0, ["float32"])
        return [TensorSpec((1, 1, spec.channels), "float32")]

    def kernel(self, node, ins):
        # the average pool of one window over the whole image (numpy's mean
        # cost 0.05 ms of a 2.3 ms ResNet-20 in fixed overhead)
        h, w = ins[0].shape[:2]
        return _core.Pool(in_hw=(h, w), dtype="float32", average=True, kernel=(h, w), strides=(1, 1),
                          pads=(0, 0, 0, 0))


class PReLU(FloatOp):
    """x where x >= 0, else slope * x, the slope per channel (ReActNet's
    RPReLU, Larq's PReLU): numpy, an element-wise pass like add_float's."""

    name = "prelu"

    def infer(self, node, ins):
        spec = input_spec(node, ins, 0, ["float32"])
        slope = finite_const(node, "slope")
        if slope.shape not in ((1,), (spec.channels,)):
            fail(node, f"slope of shape {slope.shape} does not broadcast over {spec} (one value or one per channel)")
        return [spec]

    def _kwargs(self, node, ins):
        return {"slope": node.consts["slope"]}

    def kernel(self, node, ins):
        slope = node.consts["slope"]
        if np.all((slope >= 0) & (slope <= 1)):
            # max(x, slope x) is the same value for such slopes (the rounded
            # product stays on x's side of 0 and below |x|), in two passes
            # without temporaries: the reference's np.where costs three
            def run(x, out):
                np.multiply(x, slope, out=out)
                np.maximum(out, x, out=out)
        else:
            def run(x, out):
                np.minimum(x, 0, out=out)
                out *= slope
                out += np.maximum(x, 0)
        return NumpyKernel(run)


OPS = (Activation(), Conv2DFloat(), BConv2DFloat(), AddFloat(), MulFloat(), MinimumFloat(), MaximumFloat(),
       PadFloat(), MaxPoolFloat(), AvgPoolFloat(), MeanFloat(), PReLU())
