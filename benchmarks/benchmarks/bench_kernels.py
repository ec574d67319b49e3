"""Per-kernel timings (single thread, batch 1) through the bound-call path
the executor uses. Each has an ``isa`` axis: "auto" is the kernel this CPU
gets, "avx2" the AVX2 one (the kernel most x86 machines people deploy on
run), skipped where the CPU lacks it or the family has none."""

import os

import numpy as np

from .common import BCONV_SHAPES, random_bits, rng

ISAS = ["auto", "avx2"]


def variant_of(family: str, isa: str):
    """The ``variant=`` of a kernel of ``family`` for the ``isa`` axis; asv
    skips the benchmark (NotImplementedError) where it cannot run here."""
    if isa == "auto":
        return None
    from bnnrt._kernels import _core
    if isa not in _core.cpu_info()["variants"].get(family, []):
        raise NotImplementedError(f"no {isa} {family} kernel on this CPU")
    return isa


#: what each ``layout`` value of BConv2D switches off (BNNRT_DISABLE_SIMD)
DISABLED = {"auto": None, "q64": "avx512-w16,avx512-d32", "int64-requant": "avx512-rq32"}


class BConv2D:
    """``layout``: "auto" is what the shape gets; "q64" switches the AVX-512
    d32/w16 lane layouts off, "int64-requant" the int8 epilogue's int32
    requantization of the popcount sums, to see what each gains
    (docs/kernels.md). "int8+skip" is a ResNet block's output: scales near
    1/sqrt(K), a 0.7-scaled skip."""
    params = [sorted(BCONV_SHAPES), ["int32", "bits", "int8", "int8+skip", "float32"],
              list(DISABLED), ISAS]
    param_names = ["shape", "output", "layout", "isa"]

    def setup(self, shape, output, layout, isa):
        from bnnrt._kernels import _core
        if isa != "auto" and layout != "auto":
            raise NotImplementedError("the lane layouts are the AVX-512 kernel's")
        variant = variant_of("bconv2d", isa)
        from bnnrt._shapes import conv_geometry
        h, w, cin, cout, k, s, pads, pad_value = BCONV_SHAPES[shape]
        r = rng()
        weights = random_bits((cout, k, k), cin)
        skip = None
        oh, ow = conv_geometry((h, w), (k, k), (s, s), (1, 1), pads)
        from bnnrt.ops.epilogue import Epilogue
        geo = dict(cin=cin, in_hw=(h, w), strides=(s, s), dilations=(1, 1), pads=pads, pad_value=pad_value)
        if output == "bits":
            ep = Epilogue("bits", cout, thresholds=r.integers(-20, 20, cout).astype(np.int32))
            out = np.empty((1, oh, ow, (cout + 7) // 8), np.uint8)
        elif output == "int8":
            ep = Epilogue("int8", cout, bias=np.zeros(cout, np.int32), multiplier=np.full(cout, 1 << 30, np.int32),
                          shift=np.full(cout, 33, np.int8))
            out = np.empty((1, oh, ow, cout), np.int8)
        elif output == "int8+skip":
            from bnnrt.quant import quantize_multiplier, quantize_multipliers
            m, sh = quantize_multipliers(r.uniform(0.5, 2.0, cout) * 32 / np.sqrt(k * k * cin))
            sm, ss = quantize_multiplier(0.7)
            ep = Epilogue("int8", cout, bias=r.integers(-20, 20, cout).astype(np.int32), multiplier=m,
                          shift=sh.astype(np.int8), has_skip=True, skip_multiplier=sm, skip_shift=ss)
            out = np.empty((1, oh, ow, cout), np.int8)
            skip = r.integers(-128, 128, (1, oh, ow, cout)).astype(np.int8)
        elif output == "float32":         # LCE's float epilogue (imported Larq models)
            ep = Epilogue("float32", cout, float_multiplier=r.uniform(-1, 1, cout).astype(np.float32),
                          float_bias=r.uniform(-1, 1, cout).astype(np.float32))
            out = np.empty((1, oh, ow, cout), np.float32)
        else:
            ep = Epilogue("int32", cout)
            out = np.empty((1, oh, ow, cout), np.int32)
        saved = os.environ.get("BNNRT_DISABLE_SIMD")
        os.environ["BNNRT_DISABLE_SIMD"] = DISABLED[layout] or saved or ""
        try:
            self.kernel = _core.BConv2D(weights, ep, variant=variant, **geo)
        finally:
            if saved is None:
                del os.environ["BNNRT_DISABLE_SIMD"]
            else:
                os.environ["BNNRT_DISABLE_SIMD"] = saved
        self.x = random_bits((1, h, w), cin)
        arrays = (self.x, out) if skip is None else (self.x, out, skip)
        self.call = self.kernel.bind(*arrays, threads=1)

    def time_bconv2d(self, shape, output, layout, isa):
        self.call()


class Conv2DInt8:
    params = [["32x32x3-16-3x3", "16x16x16-32-1x1-s2", "1x1x256-10-dense"], ISAS]
    param_names = ["shape", "isa"]
    SHAPES = {"32x32x3-16-3x3": (32, 32, 3, 16, 3, 1, (1, 1, 1, 1)),
              "16x16x16-32-1x1-s2": (16, 16, 16, 32, 1, 2, (0, 0, 0, 0)),
              "1x1x256-10-dense": (1, 1, 256, 10, 1, 1, (0, 0, 0, 0))}

    def setup(self, shape, isa):
        from bnnrt._kernels import _core
        from bnnrt._shapes import conv_geometry
        variant = variant_of("conv2d_int8", isa)
        h, w, cin, cout, k, s, pads = self.SHAPES[shape]
        r = rng()
        oh, ow = conv_geometry((h, w), (k, k), (s, s), (1, 1), pads)
        from bnnrt.ops.epilogue import Epilogue
        ep = Epilogue("int8", cout, bias=np.zeros(cout, np.int32), multiplier=np.full(cout, 1 << 30, np.int32),
                      shift=np.full(cout, 40, np.int8))
        self.kernel = _core.Conv2DInt8(r.integers(-127, 128, (cout, k, k, cin), dtype=np.int8), ep,
                                       in_hw=(h, w), strides=(s, s), dilations=(1, 1), pads=pads,
                                       variant=variant)
        x = r.integers(-128, 128, (1, h, w, cin), dtype=np.int8)
        self.call = self.kernel.bind(x, np.empty((1, oh, ow, cout), np.int8), threads=1)

    def time_conv2d_int8(self, shape, isa):
        self.call()


class Binarize:
    # (1, 128, 49): a Mixer's token mixing binarizes 49 channels (pixel by pixel)
    params = [[(32, 32, 16), (56, 56, 64), (1, 128, 49)], ISAS]
    param_names = ["shape", "isa"]

    def setup(self, shape, isa):
        from bnnrt._kernels import _core
        r = rng()
        c = shape[-1]
        self.kernel = _core.Binarize(r.integers(-5, 5, c).astype(np.int16), np.ones(c, np.int8),
                                     variant=variant_of("binarize", isa))
        x = r.integers(-128, 128, (1,) + shape, dtype=np.int8)
        out = np.empty((1,) + shape[:2] + ((c + 7) // 8,), np.uint8)
        self.call = self.kernel.bind(x, out, threads=1)

    def time_binarize(self, shape, isa):
        self.call()


class Transpose:
    """A Mixer's token tensor (7x7 patches of 128 channels) to tokens-as-channels and back."""
    params = [[(7, 7, 128), (1, 128, 49)], ["int8", "bits"], ISAS]
    param_names = ["shape", "dtype", "isa"]

    def setup(self, shape, dtype, isa):
        from bnnrt._kernels import _core
        h, w, c = shape
        self.kernel = _core.Transpose(shape, dtype, variant=variant_of("transpose", isa))
        if dtype == "int8":
            x = rng().integers(-128, 128, (1,) + shape, dtype=np.int8)
            out = np.empty((1, 1, c, h * w), np.int8)
        else:
            x = random_bits((1,) + shape[:2], c)
            out = np.empty((1, 1, c, (h * w + 7) // 8), np.uint8)
        self.call = self.kernel.bind(x, out, threads=1)

    def time_transpose(self, shape, dtype, isa):
        self.call()


class SignBits:
    """LceQuantize: float32 -> bits."""
    params = [[(56, 56, 64), (14, 14, 256)], ISAS]
    param_names = ["shape", "isa"]

    def setup(self, shape, isa):
        from bnnrt._kernels import _core
        c = shape[-1]
        self.kernel = _core.SignBits(c, variant=variant_of("sign_bits", isa))
        x = rng().standard_normal((1,) + shape).astype(np.float32)
        self.call = self.kernel.bind(x, np.empty((1,) + shape[:2] + ((c + 7) // 8,), np.uint8), threads=1)

    def time_sign_bits(self, shape, isa):
        self.call()


class FloatConv:
    """The direct float conv of imported models: stems over RGB (QuickNet's
    3x3 -> 8 and -> 32, BiRealNet's 7x7 -> 64), depthwise, a 1x1 shortcut."""
    #: name -> (input size, Cin, Cout, groups, kernel, stride, pads)
    SHAPES = {"224x224x3-8-3x3-s2": (224, 3, 8, 1, 3, 2, (0, 1, 0, 1)),
              "224x224x3-32-3x3-s2": (224, 3, 32, 1, 3, 2, (0, 1, 0, 1)),
              "224x224x3-64-7x7-s2": (224, 3, 64, 1, 7, 2, (2, 3, 2, 3)),
              "112x112x8-dw3x3-s2": (112, 8, 8, 8, 3, 2, (0, 1, 0, 1)),
              "112x112x32-dw3x3-s2": (112, 32, 32, 32, 3, 2, (0, 1, 0, 1)),
              "28x28x128-dw3x3-s2": (28, 128, 128, 128, 3, 2, (0, 1, 0, 1)),
              "32x32x64-128-1x1-s2": (32, 64, 128, 1, 1, 2, (0, 0, 0, 0))}
    params = [list(SHAPES), ISAS]
    param_names = ["shape", "isa"]

    def setup(self, shape, isa):
        from bnnrt._kernels import _core
        from bnnrt._shapes import conv_geometry
        variant = variant_of("conv2d_float", isa)
        hw, cin, cout, groups, k, s, pads = self.SHAPES[shape]
        r = rng()
        w = r.standard_normal((cout, k, k, cin // groups)).astype(np.float32)
        self.kernel = _core.FloatConv(w, None, in_hw=(hw, hw), strides=(s, s), dilations=(1, 1),
                                      pads=pads, groups=groups, activation="relu", variant=variant)
        oh, ow = conv_geometry((hw, hw), (k, k), (s, s), (1, 1), pads)
        x = r.standard_normal((1, hw, hw, cin)).astype(np.float32)
        self.call = self.kernel.bind(x, np.empty((1, oh, ow, cout), np.float32), threads=1)

    def time_float_conv(self, shape, isa):
        self.call()


class FloatPool:
    """Max and average pooling of float tensors (BiRealNet's 3x3 s2 max pool)."""
    params = [["max", "avg"], ISAS]
    param_names = ["kind", "isa"]

    def setup(self, kind, isa):
        from bnnrt._kernels import _core
        self.kernel = _core.Pool(kernel=(3, 3), strides=(2, 2), pads=(0, 1, 0, 1), in_hw=(112, 112),
                                 dtype="float32", average=kind == "avg", variant=variant_of("pool_float", isa))
        x = rng().standard_normal((1, 112, 112, 64)).astype(np.float32)
        self.call = self.kernel.bind(x, np.empty((1, 56, 56, 64), np.float32), threads=1)

    def time_pool(self, kind, isa):
        self.call()
