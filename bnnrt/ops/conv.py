"""The base of every convolution: weights (Cout, kh, kw, Cin per group), a
window over the input, one output of Cout channels, and for some an optional
second input, the skip, added in the epilogue (the kernel takes it last)."""

from __future__ import annotations

import numpy as np

from .. import reference as ref
from .._shapes import packed_bytes
from ..graph import TensorSpec
from .base import MAX_DIM, Op, choice, fail, input_spec, int_attr, macs, window
from .epilogue import Epilogue


class ConvOp(Op):
    in_dtype = "int8"
    #: "binary", "int8" or "float": the MACs it does (Model.summary)
    precision = "int8"
    skip_last = True

    def weights(self, node, spec) -> np.ndarray:
        """The validated weights constant (Cout, kh, kw, ...)."""
        w = node.consts.get("weights")
        want = np.dtype(np.float32 if self.in_dtype == "float32" else np.int8)
        if w is None or w.dtype != want or w.ndim != 4 or min(w.shape) < 1:
            fail(node, f"weights must be {want} (Cout, kh, kw, Cin/groups), got "
                 f"{None if w is None else (w.dtype, w.shape)}")
        return w

    def taps(self, node, w) -> int:
        """Multiply-adds per output value."""
        return int(np.prod(w.shape[1:]))

    def output(self, node, cout: int) -> tuple[str, str | None]:
        """(output dtype, skip dtype or None) after validating the output attributes."""
        return self.in_dtype, None

    def infer(self, node, ins):
        spec = input_spec(node, ins, 0, [self.in_dtype])
        w = self.weights(node, spec)
        cout = int(w.shape[0])
        _, _, _, oh, ow = window(node, spec, w.shape[1:3])
        out_dtype, skip_dtype = self.output(node, cout)
        out = TensorSpec((oh, ow, cout), out_dtype)
        if len(node.inputs) == 2:
            skip = input_spec(node, ins, 1, [skip_dtype])
            if skip.shape != out.shape:
                fail(node, f"skip input {skip} does not match the output {out}")
        return [out]

    def geometry(self, node, ins) -> dict:
        w = node.consts["weights"]
        strides, dilations, pads, _, _ = window(node, ins[0], w.shape[1:3])
        return dict(strides=strides, dilations=dilations, pads=pads)

    def cost(self, node, ins, outs):
        n = int(np.prod(outs[0].shape)) * self.taps(node, node.consts["weights"])
        return macs(**{"float_" if self.precision == "float" else self.precision: n})

    def padded_pixels(self, node, ins, outs) -> int:
        """Pixels of the padded input a window reads (what a kernel copies)."""
        w = node.consts["weights"]
        (sh, sw), (dh, dw) = (node.attrs.get("strides", [1, 1]), node.attrs.get("dilations", [1, 1]))
        oh, ow = outs[0].shape[:2]
        return ((oh - 1) * sh + (w.shape[1] - 1) * dh + 1) * ((ow - 1) * sw + (w.shape[2] - 1) * dw + 1)

    def scratch_bytes(self, node, ins, outs):
        """The C kernels copy each image into a padded buffer (int16 values
        for the AVX2 int8 conv: twice the bytes), with a cache line of slack per row."""
        per_pixel = ins[0].storage_shape[-1] * ins[0].np_dtype.itemsize
        return 2 * self.padded_pixels(node, ins, outs) * per_pixel + 72 * (outs[0].shape[0] + 16)

    def reference_scratch_bytes(self, node, ins, outs):
        return self.numpy_scratch_bytes(node, ins, outs, 8)

    def numpy_scratch_bytes(self, node, ins, outs, itemsize: int) -> int:
        """An im2col kernel in numpy: a padded copy of the input, the gathered
        windows (K values per output pixel) and the accumulators, ``itemsize``
        bytes a value."""
        taps = self.taps(node, node.consts["weights"])
        oh, ow, cout = outs[0].shape
        return itemsize * (self.padded_pixels(node, ins, outs) * ins[0].channels + taps * oh * ow
                           + 3 * oh * ow * cout)


class BinaryWeights:
    """Mixin of the binary convolutions: bit inputs, packed weights, ``cin``
    and the padding value of the +1/-1 tensor."""

    in_dtype = "bits"
    precision = "binary"

    def weights(self, node, spec):
        cin = int_attr(node, "cin", lo=1, hi=MAX_DIM)
        if cin != spec.channels:
            fail(node, f"attribute cin={cin} but the input has {spec.channels} channels")
        w = node.consts.get("weights")
        if w is None or w.dtype != np.uint8 or w.ndim != 4 or w.shape[3] != packed_bytes(cin) or min(w.shape) < 1:
            fail(node, f"weights must be uint8 (Cout, kh, kw, {packed_bytes(cin)}), got "
                 f"{None if w is None else (w.dtype, w.shape)}")
        if cin % 8 and np.any(w[..., -1] >> (cin % 8)):
            fail(node, f"weights have bits set beyond channel {cin}")
        choice(node, "pad_value", (0, 1), default=1)
        return w

    def taps(self, node, w):
        return int(w.shape[1] * w.shape[2] * node.attrs["cin"])

    def y_bound(self, node, w):
        return self.taps(node, w)          # |y| <= K

    def geometry(self, node, ins):
        return dict(super().geometry(node, ins), cin=node.attrs["cin"], pad_value=node.attrs.get("pad_value", 1))


class EpilogueConv(ConvOp):
    """A convolution ending in an :class:`~bnnrt.ops.epilogue.Epilogue`; its
    reference is ``bnnrt.reference.<name>`` and its kernel ``kernel_class``."""

    n_inputs = (1, 2)
    #: the epilogue kinds the op offers, and whether its int32 output adds a bias
    kinds: tuple[str, ...] = ()
    int32_bias = False
    kernel_class = None

    def y_bound(self, node, w) -> int:
        """The largest |y| any input can give: 128 * the largest sum of |w|
        over a channel's taps (int8 inputs)."""
        return 128 * int(np.abs(w.reshape(w.shape[0], -1).astype(np.int64)).sum(axis=1).max())

    def epilogue(self, node, cout) -> Epilogue:
        w = node.consts["weights"]
        return Epilogue.from_node(node, cout, self.kinds, int32_bias=self.int32_bias,
                                  y_bound=self.y_bound(node, w))

    def output(self, node, cout):
        ep = self.epilogue(node, cout)
        return ep.out_dtype, ep.skip_dtype

    def reference(self, node, ins, arrays):
        w = node.consts["weights"]
        skip = arrays[1] if len(arrays) > 1 else None
        return [getattr(ref, self.name)(arrays[0], w, epilogue=self.epilogue(node, w.shape[0]), skip=skip,
                                        **self.geometry(node, ins))]

    def kernel(self, node, ins):
        w = node.consts["weights"]
        return self.kernel_class(w, self.epilogue(node, w.shape[0]), in_hw=ins[0].shape[:2],
                                 **self.geometry(node, ins))
