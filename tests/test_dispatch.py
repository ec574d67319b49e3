"""The dispatcher (NumPy's test_cpu_dispatcher idea): for every kernel family,
the variant a kernel picks is the best one the CPU's features and
BNNRT_DISABLE_SIMD allow, worked out here from what each variant needs, not
read back from the variant table under test."""

import numpy as np
import pytest

from bnnrt import zoo
from bnnrt._kernels import _core
from bnnrt.ops.epilogue import Epilogue
from bnnrt.errors import GraphError

#: family -> its SIMD variants, best first: (name, the ISA it belongs to, the
#: CPU features it needs). Every family ends with "scalar", which needs nothing.
EXPECTED = {
    "bconv2d": [("avx512", "avx512", {"avx512", "avx512vpopcntdq"}), ("avx2", "avx2", {"avx2", "popcnt"}),
                ("neon", "neon", {"neon"})],
    "conv2d_int8": [("avx512vnni", "avx512", {"avx512", "avx512vnni"}), ("avx2", "avx2", {"avx2"}),
                    ("dotprod", "neon", {"neon", "dotprod"}), ("neon", "neon", {"neon"})],
    "conv2d_float": [("avx512", "avx512", {"avx512"}), ("avx2", "avx2", {"avx2", "fma"}),
                     ("neon", "neon", {"neon"})],
    "binarize": [("avx512", "avx512", {"avx512"}), ("avx2", "avx2", {"avx2"}), ("neon", "neon", {"neon"})],
    "sign_bits": [("avx512", "avx512", {"avx512"}), ("avx2", "avx2", {"avx2"})],
    "quantize": [("avx512", "avx512", {"avx512"})],
    "pool_float": [("avx512", "avx512", {"avx512"}), ("avx2", "avx2", {"avx2"})],
    "maxpool": [],
    "add_int8": [],
    "global_avgpool": [],
    "transpose": [("avx512", "avx512", {"avx512"}), ("avx2", "avx2", {"avx2"}), ("neon", "neon", {"neon"})],
}

#: The AVX-512 binary conv's switches: BNNRT_DISABLE_SIMD names that leave every variant as it is.
SWITCHES = ["avx512-w16", "avx512-d32", "avx512-rq32"]

#: One small kernel of each family, built with ``variant``.
MAKE = {
    "bconv2d": lambda v: _core.BConv2D(np.zeros((8, 1, 1, 1), np.uint8), Epilogue("int32", 8), cin=8,
                                       in_hw=(1, 1), strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0),
                                       variant=v),
    "conv2d_int8": lambda v: _core.Conv2DInt8(np.zeros((16, 1, 1, 4), np.int8),
                                              Epilogue("int32", 16, bias=np.zeros(16, np.int32)), in_hw=(1, 1),
                                              strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0), variant=v),
    "conv2d_float": lambda v: _core.FloatConv(np.zeros((16, 1, 1, 1), np.float32), in_hw=(1, 1), strides=(1, 1),
                                              dilations=(1, 1), pads=(0, 0, 0, 0), variant=v),
    "binarize": lambda v: _core.Binarize(np.zeros(8, np.int16), np.ones(8, np.int8), variant=v),
    "sign_bits": lambda v: _core.SignBits(16, variant=v),
    "quantize": lambda v: _core.Quantize(16, 0.5, variant=v),
    "pool_float": lambda v: _core.Pool(kernel=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0), in_hw=(4, 4),
                                       dtype="float32", variant=v),
    "maxpool": lambda v: _core.Pool(kernel=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0), in_hw=(4, 4), variant=v),
    "add_int8": lambda v: _core.AddInt8(a_multiplier=1, a_shift=0, b_multiplier=1, b_shift=0, variant=v),
    "global_avgpool": lambda v: _core.GlobalAvgPool(multiplier=1, shift=0, variant=v),
    "transpose": lambda v: _core.Transpose((7, 7, 49), "int8", variant=v),
}


def runnable(family, features, disabled):
    """The family's variants that run with these features under
    BNNRT_DISABLE_SIMD=disabled, best first: a variant is off when the list
    names it, its ISA or "all"; scalar always runs."""
    off = {name for name in disabled.replace(" ", ",").split(",") if name}
    return [name for name, isa, needs in EXPECTED[family]
            if needs <= features and not {name, isa, "all"} & off] + ["scalar"]


def _disabled_settings():
    names = {name for rows in EXPECTED.values() for name, _, _ in rows}
    isas = {isa for rows in EXPECTED.values() for _, isa, _ in rows}
    return sorted(names | isas) + SWITCHES + ["all", "scalar", "avx512,avx2", " avx2 , neon,dotprod"]


def test_the_table_says_what_each_variant_needs():
    table = {}
    for row in _core.VARIANT_TABLE:
        table.setdefault(row["family"], []).append((row["variant"], row["isa"], set(row["needs"])))
    assert table == {f: rows + [("scalar", None, set())] for f, rows in EXPECTED.items()}
    assert list(_core.SWITCHES) == SWITCHES


@pytest.mark.parametrize("family", sorted(EXPECTED))
def test_dispatcher_picks_the_best_variant(family, monkeypatch):
    monkeypatch.delenv("BNNRT_DISABLE_SIMD", raising=False)
    info = _core.cpu_info()
    expected = runnable(family, set(info["features"]), "")
    assert info["variants"][family] == expected
    assert info["kernels"][family] == expected[0]
    kernel = MAKE[family](None)
    assert (kernel.family, kernel.variant) == (family, expected[0])


@pytest.mark.parametrize("disabled", _disabled_settings())
def test_disabling_a_variant_picks_the_next_best(disabled, monkeypatch):
    monkeypatch.setenv("BNNRT_DISABLE_SIMD", disabled)
    info = _core.cpu_info()
    assert info["disabled"] == disabled
    features = set(info["features"])
    for family in EXPECTED:
        expected = runnable(family, features, disabled)
        assert info["variants"][family] == expected, family
        assert info["kernels"][family] == expected[0], family
        assert MAKE[family](None).variant == expected[0], family    # built now: reads the setting now
        assert MAKE[family]("auto").variant == expected[0], family


@pytest.mark.parametrize("disabled", ["", "all"])
@pytest.mark.parametrize("family", sorted(EXPECTED))
def test_forcing_a_variant(family, disabled, monkeypatch):
    """A variant that runs here is the one built; one the CPU lacks, or the
    setting switches off, is a GraphError that says which."""
    monkeypatch.setenv("BNNRT_DISABLE_SIMD", disabled)
    features = set(_core.cpu_info()["features"])
    runs = runnable(family, features, disabled)
    for name, _, needs in EXPECTED[family] + [("scalar", None, set())]:
        if name in runs:
            assert MAKE[family](name).variant == name
            continue
        why = f"it lacks .*{min(needs - features)}" if needs - features else "BNNRT_DISABLE_SIMD='all' disables it"
        with pytest.raises(GraphError, match=f"variant '{name}' does not run on this CPU: {why}"):
            MAKE[family](name)


@pytest.mark.parametrize("family", sorted(EXPECTED))
def test_a_variant_of_another_family_is_unknown(family):
    names = {name for rows in EXPECTED.values() for name, _, _ in rows}
    for name in sorted(names - {n for n, _, _ in EXPECTED[family]}) + ["avx512-w16", "AVX2"]:
        with pytest.raises(GraphError, match="unknown kernel variant"):
            MAKE[family](name)


def test_every_layer_of_a_model_runs_a_variant_of_its_family():
    model = zoo.blendnet20(threads=1)
    info = _core.cpu_info()
    seen = set()
    for row, step in zip(model.layers(), model.plan.steps, strict=True):
        family = getattr(step.kernel, "family", None)
        if family is None:                      # numpy ops (dequantize): no C kernel
            assert row["kernel"] in ("numpy", "reference"), row
            continue
        variant = row["kernel"].split("/")[0]   # "avx512/w16": the binary conv's lane layout
        assert variant in [n for n, _, _ in EXPECTED[family]] + ["scalar"], row
        assert variant in info["variants"][family], row
        seen.add(family)
    assert {"bconv2d", "conv2d_int8", "binarize", "quantize", "global_avgpool"} <= seen


def test_a_shape_only_scalar_takes(monkeypatch):
    """The SIMD int8 convs take kh * kw * cin <= 65535: for other shapes the
    choice is scalar, and a forced SIMD variant is a GraphError. The
    binarizers take every channel count (a bit stream when it is a multiple
    of 8, pixel by pixel otherwise)."""
    monkeypatch.delenv("BNNRT_DISABLE_SIMD", raising=False)
    features = set(_core.cpu_info()["features"])
    t, d = np.zeros(12, np.int16), np.ones(12, np.int8)
    assert _core.Binarize(t, d).variant == runnable("binarize", features, "")[0]
    w = np.zeros((16, 1, 1, 65536), np.int8)
    make = lambda v: _core.Conv2DInt8(w, Epilogue("int32", 16, bias=np.zeros(16, np.int32)),  # noqa: E731
                                      in_hw=(1, 1), strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0), variant=v)
    assert make(None).variant == "scalar"
    for name in runnable("conv2d_int8", features, "")[:-1]:
        with pytest.raises(GraphError, match="up to 65535"):
            make(name)
