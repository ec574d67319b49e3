"""Shared fixtures: small graphs that use every op, the zoo model, and the
random seed of the tests that promise to pass for any seed."""

import os

import numpy as np
import pytest

from bnnrt import zoo
from bnnrt._shapes import same_pads
from bnnrt.graph import GraphBuilder
from bnnrt.quant import quantize_multiplier, quantize_multipliers


def every_op_graph(seed=0, h=9, w=7, cin=3):
    """A small graph touching every op, with odd sizes (for format and fuzz tests)."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder()
    x = b.input("image", (h, w, cin))
    q = b.quantize(x, scale=1 / 32)
    c = 17
    m, s = quantize_multipliers(np.full(c, 24 / (np.sqrt(9 * cin) * 73 * 32)))
    stem = b.conv2d_int8(q, rng.integers(-127, 128, (c, 3, 3, cin), dtype=np.int8),
                         bias=rng.integers(-100, 100, c), pads=same_pads(h, 3, 1) + same_pads(w, 3, 1),
                         multiplier=m, shift=s)
    bits = b.binarize(stem, thresholds=rng.integers(-5, 5, c), directions=np.where(rng.random(c) < .8, 1, -1))
    pooled_bits = b.maxpool(bits, kernel=(2, 2), strides=(1, 1), pads=(0, 1, 0, 1))
    wb = np.packbits(rng.random((c, 3, 3, c)) < 0.5, axis=-1, bitorder="little")
    h1 = b.bconv2d(pooled_bits, wb, cin=c, strides=(2, 2), pads=(1, 1, 1, 1), pad_value=0,
                   output="bits", thresholds=rng.integers(-10, 10, c))
    skip = b.conv2d_int8(stem, rng.integers(-127, 128, (c, 1, 1, c), dtype=np.int8), strides=(2, 2),
                         multiplier=m, shift=s)
    m2, s2 = quantize_multipliers(np.full(c, 24 / np.sqrt(9 * c)))
    sm, ss = quantize_multiplier(0.5)
    out = b.bconv2d(h1, wb, cin=c, pads=(1, 1, 1, 1), output="int8", bias=rng.integers(-5, 5, c),
                    multiplier=m2, shift=s2, skip=skip, skip_multiplier=sm, skip_shift=ss)
    am, ash = quantize_multiplier(0.75)
    added = b.add_int8(out, skip, a_multiplier=am, a_shift=ash, b_multiplier=am, b_shift=ash)
    pooled = b.maxpool(added, kernel=(3, 3), strides=(2, 2), pads=(1, 1, 1, 1))
    fb = b.sign_bits(b.dequantize(pooled, scale=0.1, offset=-0.05))
    yb = b.bconv2d(fb, wb[:5, :1, :1], cin=c, output="int32")
    gp_m, gp_s = quantize_multiplier(1 / 6)
    g = b.global_avgpool(pooled, multiplier=gp_m, shift=gp_s)
    flat = b.flatten(g)
    logits = b.conv2d_int8(flat, rng.integers(-127, 128, (4, 1, 1, c), dtype=np.int8), output="int32",
                           bias=rng.integers(-50, 50, 4))
    probs = b.softmax(b.dequantize(logits, scale=np.full(4, 0.01, np.float32)))
    return b.build([probs, yb], {"name": "every-op", "labels": ["a", "b", "c", "d"]})


@pytest.fixture
def graph():
    return every_op_graph()


@pytest.fixture(scope="session")
def blendnet():
    return zoo.blendnet20(threads=2)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def random_seeds(value: str) -> list[int]:
    """Seeds BNNRT_TESTS_SEED asks for: one seed ("7"), a range ("40-42",
    both ends included) or "all" (0..99), as scikit-learn's
    SKLEARN_TESTS_GLOBAL_RANDOM_SEED."""
    value = value.strip()
    if value == "all":
        return list(range(100))
    try:
        lo, _, hi = value.partition("-")
        seeds = list(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        seeds = []
    if not seeds or not 0 <= seeds[0] <= seeds[-1] <= 99:
        raise ValueError(f"BNNRT_TESTS_SEED={value!r}: expected a seed 0..99, a range such as "
                         "'40-42', or 'all'")
    return seeds


@pytest.fixture(params=random_seeds(os.environ.get("BNNRT_TESTS_SEED", "42")))
def global_random_seed(request):
    """A test that takes this fixture passes for every seed 0..99; CI runs the
    default (42), BNNRT_TESTS_SEED=all runs them all."""
    return request.param
