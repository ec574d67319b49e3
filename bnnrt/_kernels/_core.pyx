# cython: language_level=3
"""Thin wrappers over the C kernels in src/.

Each kernel class is built once with its constants (checked here, repacked in
C) and then either ``run(*arrays)`` (checks the arrays every call: for tests)
or ``bind(*arrays)`` (checks once, returns a zero-argument callable that runs
the C kernel with the GIL released: the executor's hot path).

Array order: inputs, then the output, then the optional skip input.
"""

import os

import numpy as np

from bnnrt._shapes import conv_geometry, packed_bytes
from bnnrt.errors import GraphError, InputError

from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t, uint64_t
from libc.stdlib cimport free, malloc


cdef extern from "bnn_variants.h":
    int BNN_VARIANT_AUTO, BNN_VARIANT_SCALAR, BNN_VARIANT_COUNT
    int BNN_FAMILY_BCONV2D, BNN_FAMILY_CONV2D_INT8, BNN_FAMILY_CONV2D_FLOAT, BNN_FAMILY_BINARIZE
    int BNN_FAMILY_SIGN_BITS, BNN_FAMILY_QUANTIZE, BNN_FAMILY_POOL_FLOAT, BNN_FAMILY_MAXPOOL
    int BNN_FAMILY_ADD_INT8, BNN_FAMILY_GLOBAL_AVGPOOL, BNN_FAMILY_TRANSPOSE, BNN_FAMILY_COUNT
    const char *bnn_variant_names[]
    const char *bnn_family_names[]
    ctypedef struct bnn_variant_row:
        int32_t family
        int32_t variant
        const char *isa
        const char *needs[4]
    const bnn_variant_row bnn_variant_table[]
    const int32_t bnn_variant_rows
    int BNN_SWITCH_COUNT
    ctypedef struct bnn_switch_row:
        const char *name
        int32_t family
        int32_t variant
        const char *needs[4]
    const bnn_switch_row bnn_switch_table[]
    const char *bnn_features[]
    int bnn_cpu_has(const char *feature)
    int bnn_select(int32_t family, int32_t requested, int simd_fits)


cdef extern from "bnn_epilogue.h":
    int BNN_OUT_INT32, BNN_OUT_BITS, BNN_OUT_INT8, BNN_OUT_FLOAT
    ctypedef struct bnn_epilogue:
        int32_t kind
        const int32_t *thresholds
        const int32_t *bias
        const int32_t *multiplier
        const int8_t *shift
        int32_t output_clamp_lo, output_clamp_hi
        const float *float_multiplier
        const float *float_bias
        int32_t y_clamp_lo, y_clamp_hi
        float activation_lo, activation_hi
        int32_t has_skip, skip_multiplier, skip_shift


cdef extern from "bnn_conv.h":
    ctypedef struct bnn_conv_geom:
        int32_t in_h, in_w, cin, out_h, out_w, cout
        int32_t kh, kw, sh, sw, dh, dw, pad_top, pad_left
        int32_t pad_value
    ctypedef struct bnn_bconv:
        pass
    ctypedef struct bnn_conv8:
        pass
    bnn_bconv *bnn_bconv_create(const bnn_conv_geom *g, const uint8_t *weights, const bnn_epilogue *e,
                                int variant)
    void bnn_bconv_free(bnn_bconv *k)
    const char *bnn_bconv_variant(const bnn_bconv *k)
    const char *bnn_bconv_layout(const bnn_bconv *k)
    int bnn_bconv_requant32(const bnn_bconv *k)
    int bnn_bconv_run(const bnn_bconv *k, const uint8_t *inp, void *out, const int8_t *skip, int n,
                      int threads) nogil
    bnn_conv8 *bnn_conv8_create(const bnn_conv_geom *g, const int8_t *weights, const bnn_epilogue *e,
                                int variant)
    void bnn_conv8_free(bnn_conv8 *k)
    const char *bnn_conv8_variant(const bnn_conv8 *k)
    int bnn_conv8_run(const bnn_conv8 *k, const int8_t *inp, void *out, const int8_t *skip, int n,
                      int threads) nogil


cdef extern from "bnn_fconv.h":
    ctypedef struct bnn_fconv:
        pass
    bnn_fconv *bnn_fconv_create(const bnn_conv_geom *g, int32_t groups, const float *weights,
                                const float *bias, float lo, float hi, int variant)
    void bnn_fconv_free(bnn_fconv *k)
    const char *bnn_fconv_variant(const bnn_fconv *k)
    int bnn_fconv_run(const bnn_fconv *k, const float *inp, float *out, int n, int threads) nogil


cdef extern from "bnn_misc.h":
    ctypedef struct bnn_binarizer:
        pass
    bnn_binarizer *bnn_binarizer_create(int32_t c, const int16_t *thresholds, const int8_t *directions,
                                        int variant)
    void bnn_binarizer_free(bnn_binarizer *b)
    const char *bnn_binarizer_variant(const bnn_binarizer *b)
    void bnn_binarize(const bnn_binarizer *b, const int8_t *x, uint8_t *out, size_t pixels, int threads) nogil
    void bnn_sign_bits(const float *x, uint8_t *out, size_t pixels, int32_t c, const float *mult,
                       const float *bias, int threads, int variant) nogil
    void bnn_quantize(const float *x, int8_t *out, size_t n, float scale, int threads, int variant) nogil
    void bnn_add_int8(const int8_t *a, const int8_t *b, int8_t *out, size_t n, int32_t am, int32_t ash,
                      int32_t bm, int32_t bsh, int32_t lo, int32_t hi, int threads) nogil
    ctypedef struct bnn_pool_geom:
        int32_t in_h, in_w, c, out_h, out_w, kh, kw, sh, sw, pad_top, pad_left
    void bnn_maxpool_int8(const bnn_pool_geom *g, const int8_t *inp, int8_t *out, int n, int threads) nogil
    void bnn_maxpool_bits(const bnn_pool_geom *g, const uint8_t *inp, uint8_t *out, int n, int threads) nogil
    void bnn_pool_float(const bnn_pool_geom *g, const float *inp, float *out, int n, int average,
                        int threads, int variant) nogil
    void bnn_global_avgpool(const int8_t *inp, int8_t *out, int n, int32_t hw, int32_t c, int32_t m,
                            int32_t shift, int32_t lo, int32_t hi) nogil

cdef extern from "bnn_transpose.h":
    void bnn_transpose_int8(const int8_t *inp, int8_t *out, int n, int32_t p, int32_t c, int threads,
                            int variant) nogil
    void bnn_transpose_bits(const uint8_t *inp, uint8_t *out, int n, int32_t p, int32_t c, int threads,
                            int variant) nogil


# ----------------------------------------------------------------------------
# the variant table (bnn_variants.c): names, codes and rows, read once

cdef tuple _strings(const char * const *arr, Py_ssize_t most=-1):
    """The C strings of an array: up to its first NULL, at most `most` of them (if >= 0)."""
    out = []
    while len(out) != most and arr[len(out)] != NULL:
        out.append(arr[len(out)].decode())
    return tuple(out)


def _variant_name(int code):
    """The name of a variant code (Kernel.variant, cpu_info, BNNRT_DISABLE_SIMD)."""
    return bnn_variant_names[code].decode()


FEATURES = _strings(bnn_features)
FAMILIES = _strings(bnn_family_names, BNN_FAMILY_COUNT)
_CODES = {_variant_name(code): code for code in range(BNN_VARIANT_COUNT)}


cdef tuple _variant_table():
    cdef const bnn_variant_row *r
    rows = []
    for i in range(bnn_variant_rows):
        r = &bnn_variant_table[i]
        rows.append({"family": FAMILIES[r.family], "variant": _variant_name(r.variant),
                     "isa": None if r.isa == NULL else r.isa.decode(), "needs": _strings(r.needs, 4)})
    return tuple(rows)


#: Every kernel family's variants, best first, scalar last: what each needs of
#: the CPU, and the ISA it belongs to (BNNRT_DISABLE_SIMD=<isa> switches off all of them).
VARIANT_TABLE = _variant_table()
#: Switches inside a variant (the AVX-512 binary conv's lane layouts and int32
#: requantization): the names BNNRT_DISABLE_SIMD takes besides the variants'.
SWITCHES = tuple(bnn_switch_table[i].name.decode() for i in range(BNN_SWITCH_COUNT))


def _variant_code(int family, variant, kernel):
    """The code a kernel of `family` is built with: AUTO for None or "auto",
    else that of `variant`, one of the family's rows, which must run here now."""
    if variant is None or variant == "auto":
        return BNN_VARIANT_AUTO
    rows = {r["variant"]: r for r in VARIANT_TABLE if r["family"] == FAMILIES[family]}
    if variant not in rows:
        raise GraphError(f"{kernel}: unknown kernel variant {variant!r}; choose from {['auto', *rows]}")
    code = _CODES[variant]
    if bnn_select(family, code, 1) < 0:
        lacks = [f for f in rows[variant]["needs"] if not bnn_cpu_has(f.encode())]
        why = (f"it lacks {', '.join(lacks)}" if lacks else
               f"BNNRT_DISABLE_SIMD={os.environ.get('BNNRT_DISABLE_SIMD', '')!r} disables it")
        raise GraphError(f"{kernel}: variant {variant!r} does not run on this CPU: {why}")
    return code


# ----------------------------------------------------------------------------
# checks (Python level: they run at construction and bind time only)


def _const(arr, dtype, shape, kernel, name):
    a = np.ascontiguousarray(arr, dtype=dtype) if arr is not None else None
    if a is None or a.shape != tuple(shape):
        raise GraphError(f"{kernel}: constant {name} must be {np.dtype(dtype)} {tuple(shape)}, got "
                         f"{None if arr is None else (np.asarray(arr).dtype, np.asarray(arr).shape)}")
    return a


def _int(value, lo, hi, kernel, name):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not lo <= value <= hi:
        raise GraphError(f"{kernel}: {name} must be an integer in [{lo}, {hi}], got {value!r}")
    return int(value)


def _clamp(clamp, kernel):
    lo, hi = (int(c) for c in clamp)
    if not -128 <= lo <= hi <= 127:
        raise GraphError(f"{kernel}: clamp {clamp} is not an int8 range")
    return lo, hi


def _array(arr, dtype, shape, kernel, name, writable=False):
    if not isinstance(arr, np.ndarray):
        raise InputError(f"{kernel}: {name} must be a numpy array, got {type(arr).__name__}")
    if arr.dtype != np.dtype(dtype):
        raise InputError(f"{kernel}: {name} has dtype {arr.dtype}, expected {np.dtype(dtype)}")
    if arr.shape != tuple(shape):
        raise InputError(f"{kernel}: {name} has shape {arr.shape}, expected {tuple(shape)}")
    if not arr.flags.c_contiguous:
        raise InputError(f"{kernel}: {name} must be C-contiguous")
    if writable and not arr.flags.writeable:
        raise InputError(f"{kernel}: output {name} is read-only")
    return arr


cdef size_t _ptr(arr):
    return <size_t>arr.__array_interface__["data"][0]


def _threads(threads):
    if not isinstance(threads, (int, np.integer)) or threads < 1:
        raise InputError(f"threads must be a positive integer, got {threads!r}")
    return int(threads)


# ----------------------------------------------------------------------------
# kernels


cdef class Kernel:
    """Base of every kernel: ``run`` and ``bind`` over ``_launch``."""
    cdef readonly str variant   # the variant it runs (a row of its family in VARIANT_TABLE)
    cdef readonly str family    # its family in VARIANT_TABLE and cpu_info()
    cdef readonly str name

    def _choose(self, int family, variant):
        """Choose now (plan time) the variant of a kernel without a C plan
        object: record its family and name, return its code for _launch."""
        self.family = FAMILIES[family]
        code = bnn_select(family, _variant_code(family, variant, self.name), 1)
        self.variant = _variant_name(code)
        return code

    cdef int _launch(self, size_t a, size_t b, size_t c, size_t d, int n, int threads) noexcept nogil:
        return 0

    def _check(self, arrays):
        """Validate arrays for this kernel; return (a, b, c, d, batch)."""
        raise InputError(f"{self.name}: no array layout")

    def run(self, *arrays, threads=1):
        cdef size_t a, b, c, d
        cdef int n, t = _threads(threads), rc
        a, b, c, d, n = self._check(arrays)
        with nogil:
            rc = self._launch(a, b, c, d, n, t)
        if rc:
            raise MemoryError(f"{self.name}: out of memory for scratch buffers")

    def bind(self, *arrays, threads=1):
        ptrs = self._check(arrays)
        return Bound(self, ptrs, _threads(threads), arrays)


cdef class Bound:
    """A kernel bound to its arrays: calling it runs the kernel, GIL released."""
    cdef Kernel kernel
    cdef size_t a, b, c, d
    cdef int n, threads
    cdef object keep

    def __cinit__(self, Kernel kernel, ptrs, int threads, keep):
        self.kernel = kernel
        self.a, self.b, self.c, self.d, self.n = ptrs
        self.threads = threads
        self.keep = keep

    def __call__(self):
        cdef int rc
        with nogil:
            rc = self.kernel._launch(self.a, self.b, self.c, self.d, self.n, self.threads)
        if rc:
            raise MemoryError(f"{self.kernel.name}: out of memory for scratch buffers")


cdef struct _Launch:
    void *kernel            # a Kernel, kept alive by the Chain's list of Bound calls
    size_t a, b, c, d
    int n, threads


cdef class Chain:
    """Bound calls run back to back in one release of the GIL.

    A small network's layers take a few microseconds each, and every Python
    call into a kernel costs a fraction of one (attribute lookups, the GIL
    handed back and forth): BlendNet-20 makes 33 of them per image. A chain
    is one Python call for a whole run of kernels."""
    cdef object bounds
    cdef _Launch *calls
    cdef Py_ssize_t count

    def __cinit__(self, bounds):
        self.bounds = list(bounds)
        self.count = len(self.bounds)
        self.calls = <_Launch *>malloc(max(1, self.count) * sizeof(_Launch))
        if self.calls == NULL:
            raise MemoryError("Chain: out of memory")
        cdef Bound b
        for i, b in enumerate(self.bounds):
            self.calls[i].kernel = <void *>b.kernel
            self.calls[i].a, self.calls[i].b, self.calls[i].c, self.calls[i].d = b.a, b.b, b.c, b.d
            self.calls[i].n, self.calls[i].threads = b.n, b.threads

    def __dealloc__(self):
        free(self.calls)

    def __len__(self):
        return self.count

    def __call__(self):
        cdef Py_ssize_t i, failed = -1
        cdef _Launch *c
        with nogil:
            for i in range(self.count):
                c = &self.calls[i]
                if (<Kernel>c.kernel)._launch(c.a, c.b, c.c, c.d, c.n, c.threads):
                    failed = i
                    break
        if failed >= 0:
            raise MemoryError(f"{(<Bound>self.bounds[failed]).kernel.name}: out of memory for scratch buffers")


cdef void _geom(bnn_conv_geom *g, kernel, in_hw, cin, cout, khw, strides, dilations, pads, pad_value) except *:
    for name, v in (("strides", strides), ("dilations", dilations), ("kernel", khw)):
        if len(v) != 2 or min(v) < 1 or max(v) > 65536:
            raise GraphError(f"{kernel}: {name} {tuple(v)} must be two integers in [1, 65536]")
    if len(pads) != 4 or min(pads) < 0 or max(pads) > 65536:
        raise GraphError(f"{kernel}: pads {tuple(pads)} must be four integers in [0, 65536]")
    if len(in_hw) != 2 or min(in_hw) < 1 or max(in_hw) > 1 << 20:
        raise GraphError(f"{kernel}: input size {tuple(in_hw)} is not a positive size")
    oh, ow = conv_geometry(in_hw, khw, strides, dilations, pads)
    g.in_h, g.in_w = in_hw
    g.cin, g.cout = cin, cout
    g.out_h, g.out_w = oh, ow
    g.kh, g.kw = khw
    g.sh, g.sw = strides
    g.dh, g.dw = dilations
    g.pad_top, g.pad_left = pads[0], pads[2]
    g.pad_value = pad_value


cdef class _Conv(Kernel):
    cdef bnn_conv_geom g
    cdef bnn_epilogue e
    cdef object consts      # keeps the epilogue arrays alive while C points at them
    cdef readonly str output
    cdef readonly bint has_skip
    cdef object in_dtype, in_c

    def _set_epilogue(self, epilogue, int32_t cout):
        """Fill the C epilogue from a ``bnnrt.ops.epilogue.Epilogue``, which
        validated it: only what keeps memory safe is checked here (each array
        the C code reads has its dtype and ``cout`` values)."""
        kinds = {"int32": BNN_OUT_INT32, "bits": BNN_OUT_BITS, "int8": BNN_OUT_INT8, "float32": BNN_OUT_FLOAT}
        if epilogue.kind not in kinds or epilogue.cout != cout:
            raise GraphError(f"{self.name}: an epilogue of {epilogue.cout} channels ({epilogue.kind}) for "
                             f"{cout} outputs")
        self.output = epilogue.kind
        self.e.kind = kinds[epilogue.kind]
        keep = {}

        def array(name, dtype):
            arr = getattr(epilogue, name)
            if arr is None:
                return 0
            keep[name] = _const(arr, dtype, (cout,), self.name, name)
            return _ptr(keep[name])
        self.e.thresholds = <const int32_t *><size_t>array("thresholds", np.int32)
        self.e.bias = <const int32_t *><size_t>array("bias", np.int32)
        self.e.multiplier = <const int32_t *><size_t>array("multiplier", np.int32)
        self.e.shift = <const int8_t *><size_t>array("shift", np.int8)
        self.e.float_multiplier = <const float *><size_t>array("float_multiplier", np.float32)
        self.e.float_bias = <const float *><size_t>array("float_bias", np.float32)
        self.e.output_clamp_lo, self.e.output_clamp_hi = epilogue.output_clamp
        self.e.y_clamp_lo, self.e.y_clamp_hi = (-2**31, 2**31 - 1) if epilogue.y_clamp is None else epilogue.y_clamp
        self.e.activation_lo, self.e.activation_hi = FLOAT_CLAMPS[epilogue.activation]
        self.has_skip = bool(epilogue.has_skip)
        self.e.has_skip = self.has_skip
        self.e.skip_multiplier = epilogue.skip_multiplier
        self.e.skip_shift = epilogue.skip_shift
        self.consts = keep

    def _check(self, arrays):
        want = 3 if self.has_skip else 2
        if len(arrays) != want:
            raise InputError(f"{self.name}: takes {want} arrays (input, output{', skip' if self.has_skip else ''}), "
                             f"got {len(arrays)}")
        x = arrays[0]
        if not isinstance(x, np.ndarray) or x.ndim != 4:
            raise InputError(f"{self.name}: input must be a 4-D (N, H, W, C) array")
        n = x.shape[0]
        if n < 1 or n > 1 << 24:
            raise InputError(f"{self.name}: batch of {n}")
        g = self.g
        _array(x, self.in_dtype, (n, g.in_h, g.in_w, self.in_c), self.name, "input")
        if self.output == "bits":
            out_shape, out_dtype = (n, g.out_h, g.out_w, packed_bytes(g.cout)), np.uint8
        else:
            out_shape = (n, g.out_h, g.out_w, g.cout)
            out_dtype = {"int32": np.int32, "int8": np.int8, "float32": np.float32}[self.output]
        out = _array(arrays[1], out_dtype, out_shape, self.name, "output", writable=True)
        skip = 0
        if self.has_skip:
            skip_dtype = np.float32 if self.output == "float32" else np.int8
            skip = _ptr(_array(arrays[2], skip_dtype, (n, g.out_h, g.out_w, g.cout), self.name, "skip"))
        return _ptr(x), _ptr(out), skip, 0, n


cdef class BConv2D(_Conv):
    """Binary convolution with a fused epilogue (see bnnrt.reference.bconv2d)."""
    cdef bnn_bconv *k
    cdef readonly str layout    # the AVX-512 lane layout: q64, d32 or w16 (docs/kernels.md)
    # how an int8 output requantizes on AVX-512 and AVX2 (docs/kernels.md): "int32"
    # from the popcount sums where exact parameters were found, else "int64"
    # (AVX-512's 64-bit products; AVX2's scalar epilogue)
    cdef readonly str requant

    def __init__(self, weights, epilogue, *, cin, in_hw, strides, dilations, pads, pad_value=1, variant=None):
        self.name = "bconv2d"
        w = np.ascontiguousarray(weights)
        cin = _int(cin, 1, 1 << 20, self.name, "cin")
        if w.dtype != np.uint8 or w.ndim != 4 or w.shape[3] != packed_bytes(cin) or w.shape[0] < 1:
            raise GraphError(f"{self.name}: weights must be uint8 (Cout, kh, kw, {packed_bytes(cin)}), "
                             f"got {w.dtype} {w.shape}")
        if pad_value not in (0, 1):
            raise GraphError(f"{self.name}: pad_value must be 0 or 1, got {pad_value!r}")
        cout = w.shape[0]
        if w.shape[1] * w.shape[2] * cin >= 2**31 // 2:
            raise GraphError(f"{self.name}: receptive field of {w.shape[1]}x{w.shape[2]}x{cin} is too large")
        _geom(&self.g, self.name, tuple(in_hw), cin, cout, w.shape[1:3], tuple(strides),
              tuple(dilations), tuple(pads), pad_value)
        self._set_epilogue(epilogue, cout)
        self.in_dtype, self.in_c = np.uint8, packed_bytes(cin)
        self.family = FAMILIES[BNN_FAMILY_BCONV2D]
        code = _variant_code(BNN_FAMILY_BCONV2D, variant, self.name)
        self.k = bnn_bconv_create(&self.g, <const uint8_t *><size_t>_ptr(w), &self.e, code)
        if self.k == NULL:
            raise MemoryError("bconv2d: out of memory")
        self.variant = bnn_bconv_variant(self.k).decode()
        self.layout = bnn_bconv_layout(self.k).decode()
        self.requant = "int32" if bnn_bconv_requant32(self.k) else "int64"

    def __dealloc__(self):
        bnn_bconv_free(self.k)

    cdef int _launch(self, size_t a, size_t b, size_t c, size_t d, int n, int threads) noexcept nogil:
        return bnn_bconv_run(self.k, <const uint8_t *>a, <void *>b, <const int8_t *>c, n, threads)


cdef class Conv2DInt8(_Conv):
    """int8 convolution with a fused epilogue (see bnnrt.reference.conv2d_int8)."""
    cdef bnn_conv8 *k

    def __init__(self, weights, epilogue, *, in_hw, strides, dilations, pads, variant=None):
        self.name = "conv2d_int8"
        w = np.ascontiguousarray(weights)
        if w.dtype != np.int8 or w.ndim != 4 or min(w.shape) < 1:
            raise GraphError(f"{self.name}: weights must be int8 (Cout, kh, kw, Cin), got {w.dtype} {w.shape}")
        cout, cin = w.shape[0], w.shape[3]
        if w.shape[1] * w.shape[2] * cin > 1 << 20:
            raise GraphError(f"{self.name}: receptive field of {w.shape[1]}x{w.shape[2]}x{cin} is too large")
        _geom(&self.g, self.name, tuple(in_hw), cin, cout, w.shape[1:3], tuple(strides),
              tuple(dilations), tuple(pads), 0)
        if epilogue.kind not in ("int32", "bits", "int8"):
            raise GraphError(f"{self.name}: output {epilogue.kind!r} (int32, bits or int8)")
        self._set_epilogue(epilogue, cout)
        self.in_dtype, self.in_c = np.int8, cin
        self.family = FAMILIES[BNN_FAMILY_CONV2D_INT8]
        code = _variant_code(BNN_FAMILY_CONV2D_INT8, variant, self.name)
        self.k = bnn_conv8_create(&self.g, <const int8_t *><size_t>_ptr(w), &self.e, code)
        if self.k == NULL:
            if code != BNN_VARIANT_AUTO and code != BNN_VARIANT_SCALAR:
                raise GraphError(f"{self.name}: variant {variant!r} takes kh * kw * cin up to 65535 "
                                 "(its int32 sums would overflow)")
            raise MemoryError("conv2d_int8: out of memory")
        self.variant = bnn_conv8_variant(self.k).decode()

    def __dealloc__(self):
        bnn_conv8_free(self.k)

    cdef int _launch(self, size_t a, size_t b, size_t c, size_t d, int n, int threads) noexcept nogil:
        return bnn_conv8_run(self.k, <const int8_t *>a, <void *>b, <const int8_t *>c, n, threads)


#: The fused activations the direct float conv applies, as a clamp.
FLOAT_CLAMPS = {"none": (-np.inf, np.inf), "relu": (0.0, np.inf), "relu6": (0.0, 6.0),
                "relu_n1_to_1": (-1.0, 1.0)}


cdef class FloatConv(Kernel):
    """Direct float32 convolution for stems and depthwise layers (see
    bnnrt.reference.conv2d_float; sums in another order: equal within rounding)."""
    cdef bnn_conv_geom g
    cdef bnn_fconv *k

    def __init__(self, weights, bias=None, *, in_hw, strides, dilations, pads, groups=1,
                 activation="none", variant=None):
        self.name = "conv2d_float"
        w = np.ascontiguousarray(weights, dtype=np.float32)
        if w.ndim != 4 or min(w.shape) < 1:
            raise GraphError(f"{self.name}: weights must be float32 (Cout, kh, kw, Cin/groups), got {w.shape}")
        cout, cin_g = w.shape[0], w.shape[3]
        groups = _int(groups, 1, 1 << 20, self.name, "groups")
        if groups != 1 and (cin_g != 1 or cout % groups):
            raise GraphError(f"{self.name}: groups={groups} must be 1 or depthwise (one input channel per group)")
        if activation not in FLOAT_CLAMPS:
            raise GraphError(f"{self.name}: activation {activation!r} is not one of {sorted(FLOAT_CLAMPS)}")
        b = None if bias is None else _const(bias, np.float32, (cout,), self.name, "bias")
        _geom(&self.g, self.name, tuple(in_hw), cin_g * groups, cout, w.shape[1:3], tuple(strides),
              tuple(dilations), tuple(pads), 0)
        lo, hi = FLOAT_CLAMPS[activation]
        self.family = FAMILIES[BNN_FAMILY_CONV2D_FLOAT]
        code = _variant_code(BNN_FAMILY_CONV2D_FLOAT, variant, self.name)
        self.k = bnn_fconv_create(&self.g, groups, <const float *><size_t>_ptr(w),
                                  <const float *><size_t>(0 if b is None else _ptr(b)), lo, hi, code)
        if self.k == NULL:
            raise MemoryError("conv2d_float: out of memory")
        self.variant = bnn_fconv_variant(self.k).decode()

    def __dealloc__(self):
        bnn_fconv_free(self.k)

    def _check(self, arrays):
        if len(arrays) != 2:
            raise InputError(f"{self.name}: takes 2 arrays (input, output), got {len(arrays)}")
        x = arrays[0]
        if not isinstance(x, np.ndarray) or x.ndim != 4:
            raise InputError(f"{self.name}: input must be a 4-D (N, H, W, C) array")
        n = x.shape[0]
        if n < 1 or n > 1 << 24:
            raise InputError(f"{self.name}: batch of {n}")
        g = self.g
        _array(x, np.float32, (n, g.in_h, g.in_w, g.cin), self.name, "input")
        _array(arrays[1], np.float32, (n, g.out_h, g.out_w, g.cout), self.name, "output", writable=True)
        return _ptr(x), _ptr(arrays[1]), 0, 0, n

    cdef int _launch(self, size_t a, size_t b, size_t c, size_t d, int n, int threads) noexcept nogil:
        return bnn_fconv_run(self.k, <const float *>a, <float *>b, n, threads)


cdef class _Pixelwise(Kernel):
    """Kernels mapping (N, H, W, C) to (N, H, W, C') pixel by pixel."""
    cdef int32_t c
    cdef object in_dtype, out_dtype, out_c

    def _check(self, arrays):
        if len(arrays) != 2:
            raise InputError(f"{self.name}: takes 2 arrays (input, output), got {len(arrays)}")
        x = arrays[0]
        if not isinstance(x, np.ndarray) or x.ndim < 2:
            raise InputError(f"{self.name}: input must be an (N, ..., C) array")
        _array(x, self.in_dtype, x.shape[:-1] + (self.c,), self.name, "input")
        _array(arrays[1], self.out_dtype, x.shape[:-1] + (self.out_c,), self.name, "output", writable=True)
        pixels = x.size // self.c if self.c else 0
        return _ptr(x), _ptr(arrays[1]), pixels, 0, x.shape[0]


cdef class Binarize(_Pixelwise):
    """int8 -> bits per channel threshold and direction (bnnrt.reference.binarize)."""
    cdef bnn_binarizer *b

    def __init__(self, thresholds, directions, variant=None):
        self.name = "binarize"
        t = np.asarray(thresholds)
        d = np.asarray(directions)
        if t.ndim != 1 or d.shape != t.shape or t.size < 1 or t.size > 1 << 20:
            raise GraphError(f"{self.name}: thresholds and directions must be two (C,) arrays")
        if not np.all(np.abs(d) == 1):
            raise GraphError(f"{self.name}: directions must be +1 or -1")
        if t.min() < -32768 or t.max() > 32767:
            raise GraphError(f"{self.name}: thresholds must fit int16")
        t = np.ascontiguousarray(t, dtype=np.int16)
        d = np.ascontiguousarray(d, dtype=np.int8)
        self.c = t.size
        self.in_dtype, self.out_dtype, self.out_c = np.int8, np.uint8, packed_bytes(self.c)
        self.family = FAMILIES[BNN_FAMILY_BINARIZE]
        code = _variant_code(BNN_FAMILY_BINARIZE, variant, self.name)
        self.b = bnn_binarizer_create(self.c, <const int16_t *><size_t>_ptr(t),
                                      <const int8_t *><size_t>_ptr(d), code)
        if self.b == NULL:
            if code != BNN_VARIANT_AUTO and code != BNN_VARIANT_SCALAR:
                raise GraphError(f"{self.name}: variant {variant!r} does not run here")
            raise MemoryError("binarize: out of memory")
        self.variant = bnn_binarizer_variant(self.b).decode()

    def __dealloc__(self):
        bnn_binarizer_free(self.b)

    cdef int _launch(self, size_t a, size_t b, size_t c, size_t d, int n, int threads) noexcept nogil:
        bnn_binarize(self.b, <const int8_t *>a, <uint8_t *>b, c, threads)
        return 0


cdef class SignBits(_Pixelwise):
    """float32 -> bits, -1 where x < 0, or with a per-channel ``multiplier``
    and ``bias`` where x * multiplier + bias < 0 (bnnrt.reference.sign_bits)."""

    cdef int code
    cdef object _mult, _bias          # float32 [c], kept alive for the pointers
    cdef const float *mult
    cdef const float *bias

    def __init__(self, channels, multiplier=None, bias=None, variant=None):
        self.name = "sign_bits"
        self.c = _int(channels, 1, 1 << 24, self.name, "channels")
        self.in_dtype, self.out_dtype, self.out_c = np.float32, np.uint8, packed_bytes(self.c)
        self.code = self._choose(BNN_FAMILY_SIGN_BITS, variant)
        self.mult = self.bias = NULL
        if (multiplier is None) != (bias is None):
            raise GraphError(f"{self.name}: a multiplier and a bias, or neither")
        if multiplier is not None:
            self._mult = _const(multiplier, np.float32, (self.c,), self.name, "multiplier")
            self._bias = _const(bias, np.float32, (self.c,), self.name, "bias")
            self.mult = <const float *><size_t>_ptr(self._mult)
            self.bias = <const float *><size_t>_ptr(self._bias)

    cdef int _launch(self, size_t a, size_t b, size_t c, size_t d, int n, int threads) noexcept nogil:
        bnn_sign_bits(<const float *>a, <uint8_t *>b, c, self.c, self.mult, self.bias, threads, self.code)
        return 0


cdef class Quantize(_Pixelwise):
    """float32 -> int8, clamp(rint(x / scale)) (bnnrt.reference.quantize)."""
    cdef float scale
    cdef int code

    def __init__(self, channels, scale, variant=None):
        self.name = "quantize"
        self.c = _int(channels, 1, 1 << 24, self.name, "channels")
        s = np.float32(scale)
        if not np.isfinite(s) or s <= 0:
            raise GraphError(f"{self.name}: scale must be a positive number, got {scale!r}")
        self.scale = s
        self.in_dtype, self.out_dtype, self.out_c = np.float32, np.int8, self.c
        self.code = self._choose(BNN_FAMILY_QUANTIZE, variant)

    cdef int _launch(self, size_t a, size_t b, size_t c, size_t d, int n, int threads) noexcept nogil:
        bnn_quantize(<const float *>a, <int8_t *>b, c * self.c, self.scale, threads, self.code)
        return 0


cdef class AddInt8(Kernel):
    """The clipping add (bnnrt.reference.add_int8)."""
    cdef int32_t am, ash, bm, bsh, lo, hi

    def __init__(self, *, a_multiplier, a_shift, b_multiplier, b_shift, clamp=(-128, 127), variant=None):
        self.name = "add_int8"
        self.am = _int(a_multiplier, -2**31, 2**31 - 1, self.name, "a_multiplier")
        self.bm = _int(b_multiplier, -2**31, 2**31 - 1, self.name, "b_multiplier")
        self.ash = _int(a_shift, 0, 62, self.name, "a_shift")
        self.bsh = _int(b_shift, 0, 62, self.name, "b_shift")
        self.lo, self.hi = _clamp(clamp, self.name)
        self._choose(BNN_FAMILY_ADD_INT8, variant)

    def _check(self, arrays):
        if len(arrays) != 3:
            raise InputError(f"{self.name}: takes 3 arrays (a, b, output), got {len(arrays)}")
        a = arrays[0]
        if not isinstance(a, np.ndarray) or a.ndim < 1:
            raise InputError(f"{self.name}: a must be an array")
        _array(a, np.int8, a.shape, self.name, "a")
        _array(arrays[1], np.int8, a.shape, self.name, "b")
        _array(arrays[2], np.int8, a.shape, self.name, "output", writable=True)
        return _ptr(a), _ptr(arrays[1]), _ptr(arrays[2]), a.size, a.shape[0]

    cdef int _launch(self, size_t a, size_t b, size_t c, size_t d, int n, int threads) noexcept nogil:
        bnn_add_int8(<const int8_t *>a, <const int8_t *>b, <int8_t *>c, d, self.am, self.ash,
                     self.bm, self.bsh, self.lo, self.hi, threads)
        return 0


cdef class Pool(Kernel):
    """Max pooling of int8, bit or float32 tensors, average pooling of float32
    ones (bnnrt.reference.maxpool, maxpool_float, avgpool_float): padded taps
    are ignored."""
    cdef bnn_pool_geom g
    cdef str dtype
    cdef int kind           # the dtype for _launch, which runs without the GIL: 0 int8, 1 bits, 2 float32
    cdef int code           # the float pools' variant
    cdef bint average
    cdef int32_t cstore

    def __init__(self, *, kernel, strides, pads, in_hw, channels=None, dtype=None, average=False,
                 variant=None):
        self.name = "avgpool_float" if average else "maxpool"
        cdef bnn_conv_geom cg
        _geom(&cg, self.name, tuple(in_hw), 1, 1, tuple(kernel), tuple(strides), (1, 1), tuple(pads), 0)
        self.g.in_h, self.g.in_w, self.g.out_h, self.g.out_w = cg.in_h, cg.in_w, cg.out_h, cg.out_w
        self.g.kh, self.g.kw, self.g.sh, self.g.sw = cg.kh, cg.kw, cg.sh, cg.sw
        self.g.pad_top, self.g.pad_left = cg.pad_top, cg.pad_left
        # channels given: a bit tensor of that many channels (the only way to know it)
        self.dtype = dtype or ("bits" if channels is not None else "int8")
        if self.dtype not in ("int8", "bits", "float32"):
            raise GraphError(f"{self.name}: dtype {self.dtype!r} is not int8, bits or float32")
        if (self.dtype == "bits") != (channels is not None):
            raise GraphError(f"{self.name}: a bit tensor needs its channel count, other dtypes none")
        self.kind = ("int8", "bits", "float32").index(self.dtype)
        self.average = bool(average)
        if self.average and self.dtype != "float32":
            raise GraphError(f"{self.name}: average pooling is float32 only")
        self.g.c = 0
        if self.dtype == "bits":
            self.g.c = _int(channels, 1, 1 << 24, self.name, "channels")
            self.cstore = packed_bytes(self.g.c)
        self.code = self._choose(BNN_FAMILY_POOL_FLOAT if self.kind == 2 else BNN_FAMILY_MAXPOOL, variant)

    def _check(self, arrays):
        if len(arrays) != 2:
            raise InputError(f"{self.name}: takes 2 arrays (input, output), got {len(arrays)}")
        x = arrays[0]
        if not isinstance(x, np.ndarray) or x.ndim != 4 or x.shape[0] < 1:
            raise InputError(f"{self.name}: input must be a 4-D (N, H, W, C) array")
        dtype = {"bits": np.uint8, "int8": np.int8, "float32": np.float32}[self.dtype]
        c = self.cstore if self.dtype == "bits" else x.shape[3]
        if self.dtype != "bits":
            if c < 1 or c > 1 << 24:
                raise InputError(f"{self.name}: {c} channels")
            self.g.c = c
        _array(x, dtype, (x.shape[0], self.g.in_h, self.g.in_w, c), self.name, "input")
        _array(arrays[1], dtype, (x.shape[0], self.g.out_h, self.g.out_w, c), self.name, "output",
               writable=True)
        return _ptr(x), _ptr(arrays[1]), 0, 0, x.shape[0]

    cdef int _launch(self, size_t a, size_t b, size_t c, size_t d, int n, int threads) noexcept nogil:
        if self.kind == 1:
            bnn_maxpool_bits(&self.g, <const uint8_t *>a, <uint8_t *>b, n, threads)
        elif self.kind == 0:
            bnn_maxpool_int8(&self.g, <const int8_t *>a, <int8_t *>b, n, threads)
        else:
            bnn_pool_float(&self.g, <const float *>a, <float *>b, n, self.average, threads, self.code)
        return 0


cdef class GlobalAvgPool(Kernel):
    """int8 (N, H, W, C) -> (N, 1, 1, C) (bnnrt.reference.global_avgpool)."""
    cdef int32_t m, shift, lo, hi

    def __init__(self, *, multiplier, shift, clamp=(-128, 127), variant=None):
        self.name = "global_avgpool"
        self.m = _int(multiplier, -2**31, 2**31 - 1, self.name, "multiplier")
        self.shift = _int(shift, 0, 62, self.name, "shift")
        self.lo, self.hi = _clamp(clamp, self.name)
        self._choose(BNN_FAMILY_GLOBAL_AVGPOOL, variant)

    def _check(self, arrays):
        if len(arrays) != 2:
            raise InputError(f"{self.name}: takes 2 arrays (input, output), got {len(arrays)}")
        x = arrays[0]
        if not isinstance(x, np.ndarray) or x.ndim != 4 or x.shape[0] < 1:
            raise InputError(f"{self.name}: input must be a 4-D (N, H, W, C) array")
        n, h, w, c = x.shape
        if h * w > 1 << 24:
            raise InputError(f"{self.name}: {h}x{w} pixels are too many to average exactly")
        _array(x, np.int8, x.shape, self.name, "input")
        _array(arrays[1], np.int8, (n, 1, 1, c), self.name, "output", writable=True)
        return _ptr(x), _ptr(arrays[1]), h * w, c, n

    cdef int _launch(self, size_t a, size_t b, size_t c, size_t d, int n, int threads) noexcept nogil:
        bnn_global_avgpool(<const int8_t *>a, <int8_t *>b, n, <int32_t>c, <int32_t>d, self.m,
                           self.shift, self.lo, self.hi)
        return 0


cdef class Transpose(Kernel):
    """int8 or bits (N, H, W, C) -> (N, 1, C, H*W): pixels and channels swap
    (bnnrt.reference.transpose)."""
    cdef int32_t p, c
    cdef int code
    cdef bint bits
    cdef object in_shape, out_shape

    def __init__(self, in_shape, dtype, variant=None):
        self.name = "transpose"
        if dtype not in ("int8", "bits"):
            raise GraphError(f"{self.name}: dtype {dtype!r} is not int8 or bits")
        h, w, c = (_int(d, 1, 1 << 24, self.name, "shape") for d in in_shape)
        if h * w > 1 << 24:
            raise GraphError(f"{self.name}: {h}x{w} pixels are too many")
        self.p, self.c, self.bits = h * w, c, dtype == "bits"
        store = packed_bytes if self.bits else (lambda n: n)
        self.in_shape, self.out_shape = (h, w, store(c)), (1, c, store(self.p))
        self.code = self._choose(BNN_FAMILY_TRANSPOSE, variant)

    def _check(self, arrays):
        if len(arrays) != 2:
            raise InputError(f"{self.name}: takes 2 arrays (input, output), got {len(arrays)}")
        x = arrays[0]
        if not isinstance(x, np.ndarray) or x.ndim != 4 or x.shape[0] < 1:
            raise InputError(f"{self.name}: input must be a 4-D (N, H, W, C) array")
        dtype = np.uint8 if self.bits else np.int8
        _array(x, dtype, (x.shape[0],) + self.in_shape, self.name, "input")
        _array(arrays[1], dtype, (x.shape[0],) + self.out_shape, self.name, "output", writable=True)
        return _ptr(x), _ptr(arrays[1]), 0, 0, x.shape[0]

    cdef int _launch(self, size_t a, size_t b, size_t c, size_t d, int n, int threads) noexcept nogil:
        if self.bits:
            bnn_transpose_bits(<const uint8_t *>a, <uint8_t *>b, n, self.p, self.c, threads, self.code)
        else:
            bnn_transpose_int8(<const int8_t *>a, <int8_t *>b, n, self.p, self.c, threads, self.code)
        return 0


def cpu_info():
    """Architecture, detected CPU features, and for each kernel family the
    variant a kernel built now runs ("kernels") and every variant that could
    run, best first ("variants"): the variant table under BNNRT_DISABLE_SIMD."""
    import platform
    variants = {f: [] for f in FAMILIES}
    for r in VARIANT_TABLE:
        if bnn_select(FAMILIES.index(r["family"]), _CODES[r["variant"]], 1) >= 0:
            variants[r["family"]].append(r["variant"])
    return {
        "arch": platform.machine(),
        "features": [f for f in FEATURES if bnn_cpu_has(f.encode())],
        "kernels": {f: _variant_name(bnn_select(i, BNN_VARIANT_AUTO, 1)) for i, f in enumerate(FAMILIES)},
        "variants": variants,
        "disabled": os.environ.get("BNNRT_DISABLE_SIMD", ""),
        "max_threads": os.cpu_count(),
    }
