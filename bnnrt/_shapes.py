"""Shape rules shared by the numpy reference, the planner and the kernel wrappers.

One implementation of each rule: nothing else in bnnrt computes an output
size or a padding.
"""

from __future__ import annotations

from .errors import GraphError


def conv_output_size(size: int, kernel: int, stride: int, dilation: int,
                     pad_before: int, pad_after: int) -> int:
    """Output length of a convolution / pooling window along one axis."""
    span = dilation * (kernel - 1) + 1
    padded = size + pad_before + pad_after
    if padded < span:
        raise GraphError(
            f"window of {span} does not fit input of {size} with pads "
            f"({pad_before}, {pad_after})")
    return (padded - span) // stride + 1


def same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's "same": output = ceil(size / stride), extra pad goes after."""
    span = dilation * (kernel - 1) + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


def symmetric_pads(size: int, kernel: int, stride: int, pad: int,
                   dilation: int = 1) -> tuple[int, int]:
    """PyTorch-style ``padding=pad``: ``pad`` on both sides, except that the
    trailing pad rows no window reaches are dropped, so every pad recorded in a
    model is one a window actually uses."""
    out = conv_output_size(size, kernel, stride, dilation, pad, pad)
    span = dilation * (kernel - 1) + 1
    used_after = max((out - 1) * stride + span - size - pad, 0)
    return pad, min(pad, used_after)


def conv_geometry(in_hw, kernel_hw, strides, dilations, pads):
    """(out_h, out_w) for NHWC windows; ``pads`` is (top, bottom, left, right)."""
    top, bottom, left, right = pads
    if min(pads) < 0:
        raise GraphError(f"negative padding {tuple(pads)}")
    if min(strides) < 1 or min(dilations) < 1 or min(kernel_hw) < 1:
        raise GraphError(
            f"kernel {tuple(kernel_hw)}, strides {tuple(strides)} and dilations "
            f"{tuple(dilations)} must be positive")
    if max(top, bottom) >= kernel_hw[0] * dilations[0] or max(left, right) >= kernel_hw[1] * dilations[1]:
        raise GraphError(f"padding {tuple(pads)} is as large as the window {tuple(kernel_hw)}")
    oh = conv_output_size(in_hw[0], kernel_hw[0], strides[0], dilations[0], top, bottom)
    ow = conv_output_size(in_hw[1], kernel_hw[1], strides[1], dilations[1], left, right)
    return oh, ow


def packed_bytes(channels: int) -> int:
    """Bytes one pixel of a bit tensor with ``channels`` channels occupies."""
    return (channels + 7) // 8

