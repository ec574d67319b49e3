"""Layout ops: they move values without arithmetic (any dtype, one scale
throughout), shared by every numeric contract."""

from __future__ import annotations

import numpy as np

from .. import reference as ref
from .._kernels import _core
from ..graph import TensorSpec
from .base import NumpyKernel, ReferenceOp, fail, input_spec, int_attr, int_list


class LayoutOp(ReferenceOp):
    precision = "none"

    def scratch_bytes(self, node, ins, outs):
        return outs[0].nbytes           # the result numpy makes before it is copied out


class Flatten(LayoutOp):
    name = "flatten"

    def infer(self, node, ins):
        spec = input_spec(node, ins, 0, ["int8", "int32", "float32", "bits"])
        h, w, c = spec.shape
        if spec.dtype == "bits" and c % 8 and h * w > 1:
            fail(node, f"cannot flatten {spec}: bit pixels of {c} channels are not whole bytes")
        return [TensorSpec((1, 1, h * w * c), spec.dtype)]

    def kernel(self, node, ins):
        def run(x, out):
            out[...] = x.reshape(out.shape)
        return NumpyKernel(run)


class Reshape(LayoutOp):
    name = "reshape"
    attr_keys = ("shape",)

    def infer(self, node, ins):
        spec = input_spec(node, ins, 0, ["float32", "int8", "int32"])
        shape = int_list(node, "shape", 3, minimum=1)
        if int(np.prod(shape)) != int(np.prod(spec.shape)):
            fail(node, f"cannot reshape {spec} to {list(shape)}")
        return [TensorSpec(tuple(shape), spec.dtype)]


class Concat(LayoutOp):
    name = "concat"
    n_inputs = (1, 64)

    def infer(self, node, ins):
        specs = [input_spec(node, ins, i, ["float32", "int8", "bits"]) for i in range(len(node.inputs))]
        if len({s.dtype for s in specs}) != 1 or len({s.shape[:2] for s in specs}) != 1:
            fail(node, f"cannot concatenate {', '.join(map(str, specs))} along channels")
        if specs[0].dtype == "bits" and any(s.channels % 8 for s in specs[:-1]):
            fail(node, f"bit tensors concatenate whole bytes: {', '.join(map(str, specs))}")
        return [TensorSpec(specs[0].shape[:2] + (sum(s.channels for s in specs),), specs[0].dtype)]


class SliceChannels(LayoutOp):
    name = "slice_channels"
    attr_keys = ("start", "stop")

    def infer(self, node, ins):
        spec = input_spec(node, ins, 0, ["float32", "int8", "bits"])
        start = int_attr(node, "start", lo=0, hi=spec.channels - 1)
        stop = int_attr(node, "stop", lo=start + 1, hi=spec.channels)
        if spec.dtype == "bits" and start % 8:
            fail(node, f"a bit tensor slices whole bytes: start {start} is not a multiple of 8")
        return [TensorSpec(spec.shape[:2] + (stop - start,), spec.dtype)]


class Transpose(LayoutOp):
    """(H, W, C) -> (1, C, H*W), int8 or bits: the pixels become the channels.
    Token mixing in a Mixer runs on the transposed tensor, so its dense layers
    are 1x1 convolutions over the packed channel axis like every other."""
    name = "transpose"

    def infer(self, node, ins):
        spec = input_spec(node, ins, 0, ["int8", "bits"])
        h, w, c = spec.shape
        if h * w > 1 << 24:
            fail(node, f"cannot transpose {spec}: {h * w} pixels would be too many channels")
        return [TensorSpec((1, c, h * w), spec.dtype)]

    def scratch_bytes(self, node, ins, outs):
        return 0

    def _channels(self, ins):
        return ins[0].channels if ins[0].dtype == "bits" else None

    def reference(self, node, ins, arrays):
        return [ref.transpose(arrays[0], channels=self._channels(ins))]

    def kernel(self, node, ins):
        return _core.Transpose(ins[0].shape, ins[0].dtype)


OPS = (Flatten(), Reshape(), Concat(), SliceChannels(), Transpose())
