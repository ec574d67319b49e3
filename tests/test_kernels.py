"""Every C kernel, every variant this CPU runs, bit-exact against the numpy oracle.

Shapes follow the issue: channel counts 1, 3, 16, 17, 64, 65, 200; kernels 1x1
and 3x3; strides 1 and 2; valid, same-one and same-zero padding (TensorFlow's
asymmetric "same" and PyTorch's symmetric pads); dilation 2; batch 1 and 5;
K near the int16 limit and past it. Every input array is allocated to end
exactly where its data ends, so an over-read is a read outside the array.
"""

import ctypes
import mmap

import numpy as np
import pytest

from bnnrt import reference as ref
from bnnrt._kernels import _core
from bnnrt._shapes import conv_geometry, packed_bytes, same_pads, symmetric_pads
from bnnrt.errors import GraphError, InputError
from bnnrt.ops.epilogue import Epilogue
from bnnrt.quant import quantize_multiplier, quantize_multipliers

CHANNELS = [1, 3, 16, 17, 64, 65, 200]


def _variants(family):
    """The variants of a kernel family this CPU runs now, best first, each
    forced by name (the variant table; tests/test_dispatch.py checks it)."""
    return _core.cpu_info()["variants"][family]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


def tight(arr):
    """A copy that ends exactly at an inaccessible (PROT_NONE) page: a kernel
    reading or writing one byte past the array faults instead of passing."""
    arr = np.ascontiguousarray(arr)
    page = mmap.PAGESIZE
    size = -(-max(arr.nbytes, 1) // page) * page + page
    m = mmap.mmap(-1, size, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
    assert _libc.mprotect(addr + size - page, page, 0) == 0   # PROT_NONE
    out = np.frombuffer(m, dtype=arr.dtype, count=arr.size, offset=size - page - arr.nbytes)
    out = out.reshape(arr.shape)
    out[...] = arr
    return out


def random_bits(rng, shape, channels):
    return tight(ref.pack_bits(rng.random(tuple(shape) + (channels,)) < 0.5))


# The convolution kernels and their references take the layer's Epilogue;
# these tests describe it with the keyword arguments of the op's attributes.
EPILOGUE_KEYS = ("output", "thresholds", "bias", "multiplier", "shift", "clamp", "float_multiplier",
                 "float_bias", "y_clamp", "activation", "has_skip", "skip_multiplier", "skip_shift")


def _split(cout, kw):
    """(Epilogue, the other keyword arguments) of a conv's keyword arguments."""
    ep = {k: kw.pop(k) for k in EPILOGUE_KEYS if k in kw}
    kind = ep.pop("output", "int32")
    if "clamp" in ep:
        ep["output_clamp"] = tuple(ep.pop("clamp"))
    if kind != "int8":
        ep.pop("output_clamp", None)
        ep.pop("skip_multiplier", None)
        ep.pop("skip_shift", None)
    return Epilogue(kind, cout, **ep), kw


def make_bconv(weights, **kw):
    ep, rest = _split(weights.shape[0], dict(kw))
    return _core.BConv2D(weights, ep, **rest)


def make_conv8(weights, **kw):
    ep, rest = _split(weights.shape[0], dict(kw))
    return _core.Conv2DInt8(weights, ep, **rest)


def ref_conv(fn, x, weights, skip=None, **kw):
    ep, rest = _split(weights.shape[0], dict(kw, has_skip=skip is not None))
    return fn(x, weights, epilogue=ep, skip=skip, **rest)


def _pads(mode, h, w, k, s, d):
    if mode == "valid":
        return (0, 0, 0, 0), 1
    if mode == "torch":
        return symmetric_pads(h, k, s, k // 2, d) + symmetric_pads(w, k, s, k // 2, d), 1
    if mode == "pad2-zero":     # two rows of the window in the padding, asymmetric
        return (2, 1, 1, 2), 0
    pads = same_pads(h, k, s, d) + same_pads(w, k, s, d)
    return pads, (0 if mode == "same-zero" else 1)


def _epilogue(rng, output, cout, k2c):
    kw = {}
    if output == "bits":
        thr = rng.integers(-k2c // 3 - 2, k2c // 3 + 2, cout).astype(np.int32)
        thr[::5] = -(k2c + 1)      # constant +1 channels
        thr[1::7] = k2c + 1        # constant -1 channels
        kw["thresholds"] = thr
    if output == "int8":
        kw["bias"] = rng.integers(-50, 50, cout).astype(np.int32)
        kw["multiplier"] = rng.integers(-2 ** 31, 2 ** 31, cout).astype(np.int32)
        kw["shift"] = rng.integers(24, 40, cout).astype(np.int8)
    if output == "float32":     # LCE's float epilogue: clamp y (a fused activation), multiplier, bias
        kw["float_multiplier"] = rng.uniform(-2, 2, cout).astype(np.float32)
        kw["float_bias"] = rng.normal(0, 3, cout).astype(np.float32)
        kw["y_clamp"] = [None, (0, 2 ** 31 - 1), (-1, 1), (0, 6)][cout % 4]
        kw["activation"] = ["none", "relu", "relu6", "relu_n1_to_1"][(cout // 4) % 4]   # after the skip add
    return kw


def _ref_bconv(x, weights, output, **kw):
    """The reference for a kernel's keyword arguments (float32 output is the
    ``bconv2d_float`` op, the others ``bconv2d``)."""
    return ref_conv(ref.bconv2d_float if output == "float32" else ref.bconv2d, x, weights, output=output, **kw)


BCONV_CASES = [
    # (cin, cout, k, stride, padding, dilation, batch, h, w)
    *[(c, co, k, s, p, 1, b, 7, 6)
      for c, co in [(1, 3), (3, 16), (16, 16), (17, 17), (64, 65), (65, 64), (200, 1)]
      for k, s, p, b in [(3, 1, "same-one", 1), (3, 2, "same-zero", 5), (1, 1, "valid", 2),
                         (3, 2, "torch", 1), (3, 1, "valid", 5), (1, 2, "same-one", 1)]],
    (17, 16, 3, 1, "same-zero", 2, 2, 9, 8),
    (16, 17, 3, 2, "same-one", 2, 1, 9, 9),
    (64, 200, 3, 1, "same-one", 1, 2, 5, 16),   # rows of 16 pixels: 8-pixel x 3-group blocks
    (65, 64, 3, 1, "same-zero", 1, 1, 4, 15),   # 15 = 6 + 6 + 2 + 1: every remainder block
    (24, 40, 3, 2, "same-zero", 1, 1, 9, 30),   # 15 outputs per row, stride 2
    (3640, 9, 3, 1, "same-zero", 1, 1, 3, 4),   # K = 32760: the int16 limit
    (3700, 9, 3, 2, "same-one", 1, 2, 3, 3),    # K = 33300: the int32 path
    # AVX-512 lane layouts (w16: 9..16 channels at stride 1; d32: rows of 32-bit words)
    (16, 16, 3, 1, "same-one", 1, 3, 8, 32),    # BlendNet stage 1: w16, 8 pixel pairs per block
    (16, 16, 3, 1, "same-zero", 1, 2, 5, 9),    # odd row: the last pair's second pixel is not stored
    (12, 40, 3, 1, "torch", 1, 2, 6, 23),       # 12 channels, 3 groups of 16 (the last one partial)
    (16, 70, 3, 1, "same-zero", 2, 1, 7, 13),   # dilation 2, 5 groups: 4 + 1
    (16, 9, 5, 1, "valid", 1, 1, 9, 30),        # 25 taps, 9 output channels
    (32, 32, 3, 1, "same-one", 1, 2, 16, 16),   # BlendNet stage 2: d32, rows of 3 dwords
    (32, 64, 3, 2, "same-one", 1, 1, 16, 16),   # stage 3's first conv: stride 2, 4 groups
    (32, 17, 3, 1, "same-zero", 1, 2, 5, 11),   # a partial group, every remainder block
    (96, 48, 3, 2, "torch", 1, 1, 7, 9),        # 96 channels: rows of 9 dwords (not 5 words)
    (40, 24, 1, 1, "valid", 1, 3, 4, 7),        # 5-byte rows: 2 dwords, the last one masked
    # same-zero border classes: wide asymmetric pads, and a window so large that its
    # classes times 64 channels pass the kernel's table limit (the per-tap path)
    (16, 16, 3, 1, "pad2-zero", 1, 2, 6, 7), (33, 24, 3, 2, "pad2-zero", 2, 1, 8, 9),
    (64, 64, 3, 1, "pad2-zero", 1, 1, 5, 5), (24, 16, 3, 1, "same-zero", 1, 2, 1, 9),  # every row a border
    (16, 64, 5, 1, "same-zero", 12, 1, 40, 41),
    (16, 16, 46, 1, "valid", 1, 1, 46, 47),     # K = 33856: no w16 (int16 lanes), d32
]

#: Settings of BNNRT_DISABLE_SIMD under which the tests run every bconv2d
#: kernel: the AVX-512 variant picks its lane layout from the shape, so the
#: layouts a shape could also take are run by switching the others off.
LAYOUTS = ["", "avx512-w16", "avx512-w16,avx512-d32"]


@pytest.mark.parametrize("case", BCONV_CASES, ids=lambda c: "-".join(map(str, c)))
@pytest.mark.parametrize("output", ["int32", "bits", "int8", "float32"])
def test_bconv2d_matches_reference(case, output, monkeypatch):
    cin, cout, k, s, mode, d, n, h, w = case
    rng = np.random.default_rng(hash((case, output)) % 2 ** 32)
    pads, pad_value = _pads(mode, h, w, k, s, d)
    x = random_bits(rng, (n, h, w), cin)
    weights = random_bits(rng, (cout, k, k), cin)
    oh, ow = conv_geometry((h, w), (k, k), (s, s), (d, d), pads)
    kw = _epilogue(rng, output, cout, k * k * cin)
    skip = tight(rng.integers(-128, 128, (n, oh, ow, cout), dtype=np.int8)) if output == "int8" else None
    if output == "float32" and cout % 2:        # the fused residual add of imported models
        skip = tight(rng.standard_normal((n, oh, ow, cout)).astype(np.float32))
    geo = dict(cin=cin, strides=(s, s), dilations=(d, d), pads=pads, pad_value=pad_value)
    sm, ss = (3 << 27, 28) if cout % 2 else (1 << 20, 20)     # odd: a rescale; even: the identity
    expected = _ref_bconv(x, weights, output, skip=skip, skip_multiplier=sm, skip_shift=ss, **geo, **kw)
    geo["output"] = output
    layouts = set()
    for variant, disabled in [(v, d) for v in _variants("bconv2d") for d in (LAYOUTS if v == "avx512" else [""])]:
        monkeypatch.setenv("BNNRT_DISABLE_SIMD", disabled)
        kernel = make_bconv(weights, in_hw=(h, w), has_skip=skip is not None, skip_multiplier=sm,
                               skip_shift=ss, variant=variant, **geo, **kw)
        if (variant, kernel.layout) in layouts:
            continue
        layouts.add((variant, kernel.layout))
        what = f"variant {variant}, layout {kernel.layout}"
        out = tight(np.zeros_like(expected))
        arrays = (x, out) if skip is None else (x, out, skip)
        kernel.run(*arrays, threads=2)
        np.testing.assert_array_equal(out, expected, err_msg=what)
        out[...] = 0
        kernel.bind(*arrays, threads=1)()
        np.testing.assert_array_equal(out, expected, err_msg=f"{what}, bound")


@pytest.mark.parametrize("cin,skip,clamp", [
    (64, "scaled", (-128, 127)),     # the binary ResNet's blocks: a 0.7 skip
    (64, "identity", (-128, 127)),   # BlendNet's
    (64, None, (-128, 127)),
    (37, "scaled", (-20, 90)),       # a clamp that is not the int8 range
    (300, None, (-128, 127)),        # counts up to 300, 5 words per row
    (2304, "scaled", (-128, 127)),   # a 256-channel 3x3 conv's counts: exact only where not pinned
])
def test_bconv2d_int8_every_count_and_skip(cin, skip, clamp):
    """The AVX-512 int8 epilogue requantizes popcount sums in int32 lanes with
    parameters found for each channel at plan time (bnn_epi_reduce): every
    sum 0..K meets every skip value -128..127 (K <= 300), on realistic scales.
    (Only the sums whose output the skip can still change need be exact: the
    largest case fails without that window.)"""
    rng = np.random.default_rng(cin)
    cout = 48
    w_bits = rng.random(cin) < 0.5
    weights = tight(np.broadcast_to(ref.pack_bits(w_bits), (cout, 1, 1, packed_bytes(cin))).copy())
    # pixel (x, s): an input whose popcount sum against every channel is x
    counts = np.arange(cin + 1)
    flips = np.arange(cin)[None, :] < counts[:, None]
    acts = ref.pack_bits(w_bits[None, :] ^ flips[:, rng.permutation(cin)])    # (K+1, bytes)
    # every skip value, or for the largest K both ends and a few between (time)
    svals = np.arange(-128, 128) if cin <= 300 else np.r_[-128, rng.integers(-127, 127, 6), 127]
    x = tight(np.broadcast_to(acts[:, None, :], (cin + 1, len(svals), packed_bytes(cin)))[None].copy())
    skip_vals = tight(np.broadcast_to(svals.astype(np.int8)[None, :, None], (cin + 1, len(svals), cout))[None].copy())
    scales = rng.uniform(0.05, 3.0, cout) / np.sqrt(cin)
    scales[::7] *= -1
    mult, shift = quantize_multipliers(scales)
    kw = dict(bias=rng.integers(-cin, cin, cout).astype(np.int32), multiplier=mult, shift=shift.astype(np.int8),
              clamp=clamp)
    sm, ss = {"scaled": quantize_multiplier(0.7), "identity": (1 << 20, 20), None: (1, 0)}[skip]
    geo = dict(cin=cin, strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0), pad_value=1, output="int8")
    expected = ref_conv(ref.bconv2d, x, weights, skip=skip_vals if skip else None, skip_multiplier=sm, skip_shift=ss,
                           **geo, **kw)
    arrays = (x, None, skip_vals) if skip else (x, None)
    for variant in _variants("bconv2d"):
        kernel = make_bconv(weights, in_hw=x.shape[1:3], has_skip=skip is not None, skip_multiplier=sm,
                               skip_shift=ss, variant=variant, **geo, **kw)
        if variant in ("avx512", "avx2"):
            assert kernel.requant == "int32", variant
        out = tight(np.zeros_like(expected))
        kernel.run(arrays[0], out, *arrays[2:], threads=1)
        np.testing.assert_array_equal(out, expected, err_msg=f"variant {variant}")


def test_bconv2d_int8_avx2_falls_back_to_the_scalar_epilogue():
    """Scales where no int32 parameters check out take AVX2's scalar epilogue,
    the others the int32 lanes: bit-exact either way, with skips and borders."""
    if "avx2" not in _variants("bconv2d"):
        pytest.skip("no AVX2 binary conv on this CPU")
    rng = np.random.default_rng(6)
    cin, cout = 64, 21
    weights = random_bits(rng, (cout, 3, 3), cin)
    x = random_bits(rng, (2, 5, 8), cin)
    skip = rng.integers(-128, 128, (2, 5, 8, cout), dtype=np.int8)
    geo = dict(cin=cin, strides=(1, 1), dilations=(1, 1), pads=(1, 1, 1, 1), pad_value=1, output="int8",
               bias=rng.integers(-9, 9, cout).astype(np.int32))
    steep = dict(multiplier=np.full(cout, 2 ** 31 - 1, np.int32), shift=np.full(cout, 10, np.int8))
    usual = dict(zip(("multiplier", "shift"), quantize_multipliers(np.full(cout, 0.05))))
    usual["shift"] = usual["shift"].astype(np.int8)
    sm, ss = quantize_multiplier(0.7)
    # a scale of 2^21 without a skip: the extreme counts' results do not fit int32
    for params, has_skip, want in [(usual, True, "int32"), (steep, False, "int64")]:
        kw = dict(skip_multiplier=sm, skip_shift=ss) if has_skip else {}
        kernel = make_bconv(weights, in_hw=(5, 8), variant="avx2", has_skip=has_skip, **kw, **geo, **params)
        assert kernel.requant == want
        out = np.zeros((2, 5, 8, cout), np.int8)
        kernel.run(x, out, *((skip,) if has_skip else ()), threads=1)
        expected = ref_conv(ref.bconv2d, x, weights, skip=skip if has_skip else None, **kw, **geo, **params)
        np.testing.assert_array_equal(out, expected, err_msg=want)


def test_bconv2d_int8_requant_falls_back_to_int64(monkeypatch):
    """Scales where no int32 parameters check out, and the switch that turns
    them off, keep the 64-bit products (bit-exact either way)."""
    if "avx512" not in _variants("bconv2d"):
        pytest.skip("no AVX-512 binary conv on this CPU")
    rng = np.random.default_rng(5)
    cin, cout = 64, 16
    weights = random_bits(rng, (cout, 3, 3), cin)
    x = random_bits(rng, (2, 6, 7), cin)
    geo = dict(cin=cin, in_hw=(6, 7), strides=(1, 1), dilations=(1, 1), pads=(1, 1, 1, 1), pad_value=1,
               output="int8", bias=rng.integers(-9, 9, cout).astype(np.int32))
    # a scale of 2^21: the results of the extreme counts do not fit int32
    steep = dict(multiplier=np.full(cout, 2 ** 31 - 1, np.int32), shift=np.full(cout, 10, np.int8))
    usual = dict(zip(("multiplier", "shift"), quantize_multipliers(np.full(cout, 0.05))))
    usual["shift"] = usual["shift"].astype(np.int8)
    for params, disabled, want in [(usual, "", "int32"), (usual, "avx512-rq32", "int64"), (steep, "", "int64")]:
        monkeypatch.setenv("BNNRT_DISABLE_SIMD", disabled)
        kernel = make_bconv(weights, variant="avx512", **geo, **params)
        assert kernel.requant == want, disabled
        out = np.zeros((2, 6, 7, cout), np.int8)
        kernel.run(x, out)
        np.testing.assert_array_equal(out, ref_conv(ref.bconv2d, x, weights, **{k: v for k, v in geo.items() if k != "in_hw"},
                                                       **params))


def test_model_layers_name_the_lane_layout():
    from bnnrt import zoo
    chosen = _core.cpu_info()["kernels"]
    if (chosen["bconv2d"], chosen["conv2d_int8"]) != ("avx512", "avx512vnni"):
        pytest.skip(f"needs the AVX-512 bconv2d and VNNI kernels (chosen: {chosen['bconv2d']}, "
                    f"{chosen['conv2d_int8']})")
    kernels = {r["name"]: r["kernel"] for r in zoo.blendnet20(width=1, threads=1).layers()}
    assert kernels["stage1.block1.conv1"] == "avx512/w16"      # 16 channels, stride 1
    assert kernels["stage2.block1.conv1"] == "avx512/q64"      # 16 channels, stride 2
    assert kernels["stage2.block2.conv1"] == "avx512/d32"      # 32 channels
    assert kernels["stage3.block2.conv1"] == "avx512/q64"      # 64 channels: full words
    assert kernels["stem"] == "avx512vnni"


@pytest.mark.parametrize("cin,cout,k,s,d,expected", [
    (16, 16, 3, 1, 1, "w16"), (9, 32, 3, 1, 2, "w16"), (16, 16, 3, 2, 1, "q64"),
    (32, 32, 3, 1, 1, "d32"), (32, 64, 3, 2, 1, "d32"), (96, 8, 3, 1, 1, "d32"),
    (64, 64, 3, 1, 1, "q64"), (17, 16, 3, 1, 1, "d32"), (16, 16, 46, 1, 1, "d32"),
])
def test_bconv2d_lane_layout_follows_the_shape(cin, cout, k, s, d, expected, monkeypatch):
    """w16 for 9..16 channels at stride 1 (K <= 32767), d32 where 32-bit words
    waste fewer bits of a row than 64-bit ones, q64 otherwise; each can be
    switched off."""
    feats = set(_core.cpu_info()["features"])
    if not {"avx512", "avx512vpopcntdq"} <= feats or (expected == "w16" and "avx512bitalg" not in feats):
        pytest.skip("needs AVX-512 VPOPCNTDQ (and BITALG for w16)")
    monkeypatch.delenv("BNNRT_DISABLE_SIMD", raising=False)
    w = np.zeros((cout, k, k, packed_bytes(cin)), np.uint8)
    hw = (max(9, k), max(9, k))
    make = lambda: make_bconv(w, cin=cin, in_hw=hw, strides=(s, s), dilations=(d, d),  # noqa: E731
                                 pads=(0, 0, 0, 0), pad_value=1, output="int32", variant="avx512")
    assert make().layout == expected
    monkeypatch.setenv("BNNRT_DISABLE_SIMD", f"avx512-{expected}")
    assert expected == "q64" or make().layout != expected
    monkeypatch.setenv("BNNRT_DISABLE_SIMD", "avx512")
    assert make_bconv(w, cin=cin, in_hw=hw, strides=(s, s), dilations=(d, d), pads=(0, 0, 0, 0),
                         pad_value=1, output="int32").layout == "q64"


def _all_variants_match(weights, x, output, **geo):
    """Every bconv2d variant (and AVX-512 layout) this CPU runs against the
    reference; returns {variant: layout}."""
    kw = _epilogue(np.random.default_rng(1), output, weights.shape[0], weights.shape[1] * weights.shape[2] * geo["cin"])
    expected = _ref_bconv(x, weights, output, **geo, **kw)
    seen = {}
    for variant in _variants("bconv2d"):
        kernel = make_bconv(weights, in_hw=x.shape[1:3], variant=variant, output=output, **geo, **kw)
        out = tight(np.zeros_like(expected))
        kernel.run(x, out, threads=2)
        np.testing.assert_array_equal(out, expected, err_msg=f"{variant}/{kernel.layout}")
        seen[kernel.variant] = kernel.layout
    return seen


@pytest.mark.parametrize("output", ["bits", "float32"])
@pytest.mark.parametrize("mode,s", [("same-zero", 1), ("same-one", 2)])
def test_bconv2d_planes_in_several_bands(output, mode, s):
    """The AVX-512 q64 and AVX2 kernels expand the padded rows into word
    planes a band of output rows at a time (512 KiB of planes): 512 channels
    x 3 taps over 300 columns make bands of a few rows, so a 25-row image
    (two of them) crosses several, a band's first rows rebuilt from the last
    one's."""
    rng = np.random.default_rng(7)
    cin, h, w = 512, 25, 300
    pads, pad_value = _pads(mode, h, w, 3, s, 1)
    x = random_bits(rng, (2, h, w), cin)
    weights = random_bits(rng, (9, 3, 3), cin)
    _all_variants_match(weights, x, output, cin=cin, strides=(s, s), dilations=(1, 1), pads=pads,
                        pad_value=pad_value)


def test_bconv2d_window_too_tall_for_planes():
    """A window whose rows alone would make 64 MiB of planes (three taps 3,000
    rows apart over a 2,000-pixel row) reads padded rows instead: d32 on
    AVX-512, the scalar kernel where AVX2 was asked for; same results."""
    rng = np.random.default_rng(8)
    x = random_bits(rng, (1, 6001, 2000), 8)
    weights = random_bits(rng, (3, 3, 3), 8)
    seen = _all_variants_match(weights, x, "int32", cin=8, strides=(1, 1), dilations=(3000, 1),
                               pads=(0, 0, 0, 0), pad_value=1)
    if "avx512" in _variants("bconv2d"):
        assert seen["avx512"] == "d32"
    if "avx2" in _variants("bconv2d"):
        assert "avx2" not in seen and "scalar" in seen


@pytest.mark.parametrize("cin,cout,k,s,mode,n", [
    (3, 16, 3, 1, "same-one", 1), (1, 1, 3, 2, "valid", 5), (16, 17, 1, 2, "valid", 2),
    (17, 64, 3, 2, "torch", 5), (64, 65, 1, 1, "valid", 1), (65, 3, 3, 1, "same-one", 2),
    (200, 10, 1, 1, "valid", 5), (3, 33, 3, 2, "same-one", 1),
])
@pytest.mark.parametrize("output", ["int32", "int8", "bits"])
def test_conv2d_int8_matches_reference(cin, cout, k, s, mode, n, output):
    rng = np.random.default_rng(cin * 1000 + cout)
    h, w = 7, 5
    pads, _ = _pads(mode, h, w, k, s, 1)
    x = tight(rng.integers(-128, 128, (n, h, w, cin), dtype=np.int8))
    x.flat[::7] = -128                                    # the extremes
    weights = tight(rng.integers(-128, 128, (cout, k, k, cin), dtype=np.int8))
    if output == "bits":       # Brevitas CNV's first layer: 8-bit activations, +-1 weights
        weights = tight(np.where(weights < 0, -1, 1).astype(np.int8))
    oh, ow = conv_geometry((h, w), (k, k), (s, s), (1, 1), pads)
    # thresholds over the reach of the sums (|y| <= 128 K for +-1 weights)
    kw = _epilogue(rng, output, cout, k * k * cin * 128 // 4 if output == "bits" else 0)
    if output != "bits":
        kw["bias"] = rng.integers(-2 ** 20, 2 ** 20, cout).astype(np.int32)
    skip = tight(rng.integers(-128, 128, (n, oh, ow, cout), dtype=np.int8)) if output == "int8" else None
    if output == "float32" and cout % 2:        # the fused residual add of imported models
        skip = tight(rng.standard_normal((n, oh, ow, cout)).astype(np.float32))
    geo = dict(strides=(s, s), dilations=(1, 1), pads=pads, output=output)
    expected = ref_conv(ref.conv2d_int8, x, weights, skip=skip, skip_multiplier=-(5 << 26), skip_shift=27, **geo, **kw)
    for variant in _variants("conv2d_int8"):
        kernel = make_conv8(weights, in_hw=(h, w), has_skip=skip is not None,
                                  skip_multiplier=-(5 << 26), skip_shift=27, variant=variant, **geo, **kw)
        out = tight(np.zeros_like(expected))
        kernel.run(*((x, out) if skip is None else (x, out, skip)), threads=2)
        np.testing.assert_array_equal(out, expected, err_msg=f"variant {variant}")


@pytest.mark.parametrize("kernel", ["bconv2d", "conv2d_int8"])
def test_int8_epilogue_with_biases_beyond_int32_headroom(kernel):
    """Biases near the int32 limit take the exact 64 x 64-bit multiply path."""
    rng = np.random.default_rng(3)
    cout, cin = 19, 16
    kw = dict(bias=np.array([2 ** 31 - 1, -2 ** 31] * 9 + [5], np.int32),
              multiplier=rng.integers(-2 ** 31, 2 ** 31, cout).astype(np.int32),
              shift=np.full(cout, 40, np.int8))
    geo = dict(strides=(1, 1), dilations=(1, 1), pads=(1, 1, 1, 1), output="int8")
    if kernel == "bconv2d":
        x, w = random_bits(rng, (2, 5, 5), cin), random_bits(rng, (cout, 3, 3), cin)
        expected = ref_conv(ref.bconv2d, x, w, cin=cin, pad_value=1, **geo, **kw)
        make = lambda v: make_bconv(w, cin=cin, pad_value=1, in_hw=(5, 5), variant=v, **geo, **kw)
    else:
        x = rng.integers(-128, 128, (2, 5, 5, cin), dtype=np.int8)
        w = rng.integers(-128, 128, (cout, 3, 3, cin), dtype=np.int8)
        expected = ref_conv(ref.conv2d_int8, x, w, **geo, **kw)
        make = lambda v: make_conv8(w, in_hw=(5, 5), variant=v, **geo, **kw)
    for variant in _variants(kernel):
        out = np.zeros_like(expected)
        make(variant).run(x, out)
        np.testing.assert_array_equal(out, expected, err_msg=variant)


def test_conv2d_int8_dilated():
    rng = np.random.default_rng(9)
    x = rng.integers(-128, 128, (2, 9, 9, 5), dtype=np.int8)
    w = rng.integers(-128, 128, (7, 3, 3, 5), dtype=np.int8)
    geo = dict(strides=(1, 2), dilations=(2, 2), pads=(2, 2, 2, 2), output="int32")
    bias = np.arange(7, dtype=np.int32)
    expected = ref_conv(ref.conv2d_int8, x, w, bias=bias, **geo)
    for variant in _variants("conv2d_int8"):
        out = np.zeros_like(expected)
        make_conv8(w, bias=bias, in_hw=(9, 9), variant=variant, **geo).run(x, out)
        np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("c", CHANNELS + [24, 128, 256])
@pytest.mark.parametrize("n,hw", [(1, (4, 3)), (5, (4, 3)), (3, (32, 31))])
def test_binarize_and_sign_bits(c, n, hw):
    rng = np.random.default_rng(c)
    x = tight(rng.integers(-128, 128, (n,) + hw + (c,), dtype=np.int8))
    t = rng.integers(-130, 130, c).astype(np.int16)
    t[:2] = [-32768, 32767][:c]
    d = np.where(rng.random(c) < 0.5, 1, -1).astype(np.int8)
    expected = ref.binarize(x, thresholds=t, directions=d)
    for variant in [v for v in _variants("binarize") if c % 8 == 0 or v == "scalar"]:
        out = tight(np.zeros(expected.shape, np.uint8))
        _core.Binarize(t, d, variant=variant).run(x, out, threads=2)
        np.testing.assert_array_equal(out, expected, err_msg=variant)
    x, out = x[:, :4, :3], np.zeros((n, 4, 3, packed_bytes(c)), np.uint8)
    f = tight(rng.standard_normal((n, 4, 3, c)).astype(np.float32))
    f.flat[::5] = 0.0
    f.flat[1::9] = -0.0
    f.flat[2::11] = np.nan            # Model.run refuses NaN inputs; a NaN activation is +1
    for variant in _variants("sign_bits"):
        out[...] = 0xFF
        kernel = _core.SignBits(c, variant=variant)
        assert kernel.variant == variant
        kernel.run(f, out, threads=2)
        np.testing.assert_array_equal(out, ref.sign_bits(f, channels=c), err_msg=variant)
    # the per-channel affine (a BatchNorm folded into the sign): negative, zero
    # and tiny multipliers, values exactly at the tie -bias / multiplier
    m = rng.standard_normal(c).astype(np.float32)
    m[::3] *= -1
    m[1::5] = 0.0
    m[2::7] = 1e-30
    b = rng.standard_normal(c).astype(np.float32)
    b[::4] = 0.0
    f[0, 0, 0] = -b / np.where(m == 0, 1, m)
    expected = ref.sign_bits(f, channels=c, multiplier=m, bias=b)
    for variant in _variants("sign_bits"):
        out[...] = 0xFF
        _core.SignBits(c, multiplier=m, bias=b, variant=variant).run(f, out, threads=2)
        np.testing.assert_array_equal(out, expected, err_msg=f"{variant}, affine")
    with pytest.raises(GraphError, match="multiplier and a bias"):
        _core.SignBits(c, multiplier=m)
    with pytest.raises(GraphError, match="bias"):
        _core.SignBits(c, multiplier=m, bias=b[:-1] if c > 1 else np.zeros(2, np.float32))


@pytest.mark.parametrize("scale", [1 / 32, 0.7, 3.0])
def test_quantize(scale):
    rng = np.random.default_rng(0)
    x = tight(rng.standard_normal((3, 5, 7, 3)).astype(np.float32) * 60)
    x.flat[:8] = [0.5 * scale, 1.5 * scale, -0.5 * scale, -2.5 * scale, 1e30, -1e30, 127.5 * scale,
                  -128.5 * scale]      # ties round to even, extremes clamp
    for variant in _variants("quantize"):
        out = tight(np.zeros(x.shape, np.int8))
        kernel = _core.Quantize(3, scale, variant=variant)
        assert kernel.variant == variant
        kernel.run(x, out)
        np.testing.assert_array_equal(out, ref.quantize(x, scale=scale), err_msg=variant)


@pytest.mark.parametrize("c", [1, 17, 64])
def test_add_int8(c):
    rng = np.random.default_rng(c)
    a = tight(rng.integers(-128, 128, (5, 3, 2, c), dtype=np.int8))
    b = tight(rng.integers(-128, 128, (5, 3, 2, c), dtype=np.int8))
    params = dict(a_multiplier=1 << 30, a_shift=30, b_multiplier=-(3 << 29), b_shift=31, clamp=(-100, 90))
    out = np.zeros_like(a)
    _core.AddInt8(**params).run(a, b, out, threads=2)
    np.testing.assert_array_equal(out, ref.add_int8(a, b, **params))


@pytest.mark.parametrize("c", [3, 16, 17, 65])
@pytest.mark.parametrize("k,s,pads", [((2, 2), (2, 2), (0, 0, 0, 0)), ((3, 3), (2, 2), (1, 1, 1, 1)),
                                      ((3, 2), (1, 2), (0, 2, 1, 0))])
def test_maxpool(c, k, s, pads):
    rng = np.random.default_rng(c)
    h, w = 7, 6
    oh, ow = conv_geometry((h, w), k, s, (1, 1), pads)
    x = tight(rng.integers(-128, 128, (2, h, w, c), dtype=np.int8))
    out = np.zeros((2, oh, ow, c), np.int8)
    _core.Pool(kernel=k, strides=s, pads=pads, in_hw=(h, w)).run(x, out)
    np.testing.assert_array_equal(out, ref.maxpool(x, kernel=k, strides=s, pads=pads))
    xb = random_bits(rng, (2, h, w), c)
    outb = np.zeros((2, oh, ow, packed_bytes(c)), np.uint8)
    _core.Pool(kernel=k, strides=s, pads=pads, in_hw=(h, w), channels=c).run(xb, outb)
    np.testing.assert_array_equal(outb, ref.maxpool(xb, kernel=k, strides=s, pads=pads, channels=c))


@pytest.mark.parametrize("c", [3, 17, 64])
@pytest.mark.parametrize("k,s,pads", [((3, 3), (2, 2), (0, 1, 0, 1)), ((3, 3), (2, 2), (1, 1, 1, 1)),
                                      ((3, 2), (1, 2), (0, 2, 1, 0)), ((2, 2), (2, 2), (0, 0, 0, 0))])
def test_float_pools_equal_reference(c, k, s, pads):
    rng = np.random.default_rng(c)
    h, w = 9, 7
    oh, ow = conv_geometry((h, w), k, s, (1, 1), pads)
    x = tight(rng.standard_normal((2, h, w, c)).astype(np.float32))
    x[1, 4, 3, 1] = x[0, 2, 2, c - 1] = np.nan  # propagate through max and mean, as in numpy
    x[0, 5, 5, 0] = np.inf
    for variant in _variants("pool_float"):
        for average, fn in ((False, ref.maxpool_float), (True, ref.avgpool_float)):
            out = np.zeros((2, oh, ow, c), np.float32)
            pool = _core.Pool(kernel=k, strides=s, pads=pads, in_hw=(h, w), dtype="float32", average=average,
                              variant=variant)
            assert pool.variant == variant
            pool.run(x, out, threads=2)
            # same taps, same order, same division: bit-exact
            np.testing.assert_array_equal(out, fn(x, kernel=k, strides=s, pads=pads),
                                          err_msg=f"average={average}, variant {variant}")


def test_pool_rejects_average_of_int8():
    with pytest.raises(GraphError, match="float32 only"):
        _core.Pool(kernel=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0), in_hw=(4, 4), average=True)


@pytest.mark.parametrize("c,h,w", [(1, 1, 1), (64, 8, 8), (17, 5, 3), (300, 4, 3)])
def test_global_avgpool(c, h, w):
    rng = np.random.default_rng(c)
    x = tight(rng.integers(-128, 128, (3, h, w, c), dtype=np.int8))
    params = dict(multiplier=(1 << 30) // (h * w) + 7, shift=30, clamp=(-128, 127))
    out = np.zeros((3, 1, 1, c), np.int8)
    _core.GlobalAvgPool(**params).run(x, out)
    np.testing.assert_array_equal(out, ref.global_avgpool(x, **params))


# ---------------------------------------------------------------------------
# bad arguments: errors, not crashes


def _bconv(**over):
    kw = dict(cin=16, in_hw=(4, 4), strides=(1, 1), dilations=(1, 1), pads=(1, 1, 1, 1), pad_value=1,
              output="int32")
    kw.update(over)
    weights = over.pop("weights", np.zeros((8, 3, 3, 2), np.uint8))
    kw.pop("weights", None)
    return make_bconv(weights, **kw)


@pytest.mark.parametrize("over,match", [
    (dict(weights=np.zeros((8, 3, 3, 3), np.uint8)), "weights must be uint8"),
    (dict(weights=np.zeros((8, 3, 3, 2), np.int8)), "weights must be uint8"),
    (dict(pad_value=2), "pad_value"),
    (dict(strides=(0, 1)), "strides"),
    (dict(pads=(5, 5, 5, 5)), "padding"),
    (dict(output="float"), "unknown output"),
    (dict(output="bits"), "thresholds"),
    (dict(output="int8", bias=np.zeros(8, np.int32), multiplier=np.zeros(8, np.int32),
          shift=np.full(8, 63, np.int8)), r"shift must lie in \[0, 62\]"),
    (dict(has_skip=True), "skip input needs output 'int8'"),
    (dict(variant="avx9000"), "unknown kernel variant"),
])
def test_bad_constants_raise_graph_error(over, match):
    with pytest.raises(GraphError, match=match):
        _bconv(**over)


def test_bad_arrays_raise_input_error():
    k = _bconv()
    x = np.zeros((2, 4, 4, 2), np.uint8)
    out = np.zeros((2, 4, 4, 8), np.int32)
    k.run(x, out)
    ro = out.copy()
    ro.setflags(write=False)
    for arrays, match in [
        ((x.astype(np.int8), out), "dtype int8, expected uint8"),
        ((x[:, :3], out), r"shape \(2, 3, 4, 2\)"),
        ((x, out[:1]), r"output has shape \(1, 4, 4, 8\)"),
        ((x, out.astype(np.int64)), "output has dtype int64"),
        ((x, ro), "read-only"),
        ((np.zeros((2, 4, 8, 2), np.uint8)[:, :, ::2], out), "C-contiguous"),
        ((x,), "takes 2 arrays"),
        (([[1]], out), "4-D"),
    ]:
        with pytest.raises(InputError, match=match):
            k.run(*arrays)
    with pytest.raises(InputError, match="threads"):
        k.run(x, out, threads=0)


def test_disable_simd_forces_scalar(monkeypatch):
    simd = _variants("bconv2d")[:-1]
    monkeypatch.setenv("BNNRT_DISABLE_SIMD", "all")
    assert _bconv().variant == "scalar"
    for variant in simd:
        with pytest.raises(GraphError, match="does not run on this CPU"):
            _bconv(variant=variant)


@pytest.mark.parametrize("cin,cout,k,s,d,mode,groups,act,n,hw", [
    (3, 16, 3, 2, 1, "same-one", 1, "relu", 1, (11, 9)),   # a stem over RGB (TF's asymmetric "same")
    (3, 17, 7, 2, 1, "same-one", 1, "none", 2, (11, 9)),   # a 7x7 stem, odd channels, rows < one block
    (3, 64, 7, 2, 1, "same-one", 1, "relu", 2, (9, 31)),   # BiRealNet's stem: 4-vector blocks, last overlaps
    (4, 40, 3, 1, 1, "torch", 1, "relu6", 1, (5, 29)),     # 2 + 1 vector blocks
    (3, 8, 3, 2, 1, "same-one", 1, "relu", 2, (13, 37)),   # QuickNet's stem: 8-lane blocks, runs of 6
    (3, 7, 3, 1, 1, "torch", 1, "none", 1, (6, 40)),       # stride 1 over RGB: runs of 3
    (8, 8, 3, 2, 1, "same-one", 8, "none", 1, (12, 40)),   # QuickNet's depthwise: one partial vector
    (40, 40, 3, 1, 1, "torch", 40, "relu", 2, (7, 19)),    # depthwise, 2 + 1 vectors, the last partial
    (5, 100, 3, 2, 1, "valid", 1, "none", 3, (8, 27)),     # 4 + 2 + 1 vectors, odd everything
    (1, 5, 3, 1, 2, "valid", 1, "relu6", 3, (11, 9)),      # dilated
    (16, 16, 3, 2, 1, "same-one", 16, "none", 1, (11, 9)),  # depthwise
    (17, 34, 3, 1, 1, "same-one", 17, "relu_n1_to_1", 2, (11, 9)),  # depthwise, multiplier 2
    (64, 64, 5, 1, 1, "torch", 64, "relu", 1, (11, 9)),
])
def test_float_conv_matches_reference(cin, cout, k, s, d, mode, groups, act, n, hw):
    rng = np.random.default_rng(cin * 1000 + cout + k)
    h, w = hw
    pads, _ = _pads(mode, h, w, k, s, d)
    x = tight(rng.standard_normal((n, h, w, cin)).astype(np.float32))
    weights = rng.standard_normal((cout, k, k, cin // groups)).astype(np.float32)
    bias = rng.standard_normal(cout).astype(np.float32)
    geo = dict(strides=(s, s), dilations=(d, d), pads=pads, groups=groups, activation=act)
    expected = ref.conv2d_float(x, weights, bias=bias, **geo)
    for variant in _variants("conv2d_float"):
        kernel = _core.FloatConv(weights, bias, in_hw=(h, w), variant=variant, **geo)
        # NEON has no depthwise kernel with a channel multiplier: those layers run scalar
        assert kernel.variant == ("scalar" if variant == "neon" and groups not in (1, cout) else variant)
        out = tight(np.zeros_like(expected))
        kernel.run(x, out, threads=2)
        # float sums in another order: equal within rounding
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max(),
                                   err_msg=f"variant {variant}")
