"""Shapes and data shared by the suites. Append only: changing an entry
changes what an old result means."""

import numpy as np

SEED = 0

#: (name, H, W, Cin, Cout, kernel, stride, pads, pad_value)
BCONV_SHAPES = {
    "56x56x64-64-3x3-s1-same1": (56, 56, 64, 64, 3, 1, (1, 1, 1, 1), 1),
    "32x32x64-64-3x3-s1-same1": (32, 32, 64, 64, 3, 1, (1, 1, 1, 1), 1),    # binary ResNet-20 stage 1
    "16x16x128-128-3x3-s1-same1": (16, 16, 128, 128, 3, 1, (1, 1, 1, 1), 1),
    "32x32x16-16-3x3-s1-same1": (32, 32, 16, 16, 3, 1, (1, 1, 1, 1), 1),
    "16x16x32-64-3x3-s2-same1": (16, 16, 32, 64, 3, 2, (1, 0, 1, 0), 1),
    "16x16x32-32-3x3-s1-same1": (16, 16, 32, 32, 3, 1, (1, 1, 1, 1), 1),
    "8x8x256-256-3x3-s1-same0": (8, 8, 256, 256, 3, 1, (1, 1, 1, 1), 0),
    "28x28x128-128-3x3-s1-valid": (28, 28, 128, 128, 3, 1, (0, 0, 0, 0), 1),
}


def rng():
    return np.random.default_rng(SEED)


def random_bits(shape, channels):
    r = rng()
    return np.packbits(r.random(tuple(shape) + (channels,)) < 0.5, axis=-1, bitorder="little")


def bconv_binary_macs(name):
    from bnnrt._shapes import conv_geometry
    h, w, cin, cout, k, s, pads, _ = BCONV_SHAPES[name]
    oh, ow = conv_geometry((h, w), (k, k), (s, s), (1, 1), pads)
    return oh * ow * cout * k * k * cin
