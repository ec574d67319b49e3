/* The convolutions' epilogue: what happens to the accumulator y of a binary
 * or int8 convolution (bnnrt/ops/epilogue.py describes it, bnnrt.reference.
 * epilogue defines it):
 *   int32: y + bias;  bits: +1 iff y >= thresholds;
 *   int8:  clamp(requant(y + bias, multiplier, shift) [+ requant(skip)], output_clamp);
 *   float: float(clamp(y, y_clamp)) * float_multiplier + float_bias [+ skip],
 *          then the activation as a clamp.
 * bnn_epilogue is what the caller hands over; bnn_epi_init prepares it once per
 * kernel (bnn_epilogue.c, with the int32-requantization search); the stores
 * below run in the kernels' hot loops, inlined into each kernel's own
 * translation unit and SIMD target. */
#ifndef BNN_EPILOGUE_H
#define BNN_EPILOGUE_H

#include "bnn_common.h"

enum { BNN_OUT_INT32 = 0, BNN_OUT_BITS = 1, BNN_OUT_INT8 = 2, BNN_OUT_FLOAT = 3 };

typedef struct {            /* bnnrt.ops.epilogue.Epilogue, field for field (validated there; trusted here) */
    int32_t kind;
    const int32_t *thresholds;          /* bits: +1 (bit 0) iff y >= thresholds[c] */
    const int32_t *bias;                /* int8: requant(y + bias); int32: y + bias (NULL: no bias) */
    const int32_t *multiplier;          /* int8 */
    const int8_t *shift;                /* int8 */
    int32_t output_clamp_lo, output_clamp_hi;   /* int8: the output's range */
    const float *float_multiplier, *float_bias; /* float: float(clamp(y)) * float_multiplier + float_bias
                                                   [+ skip: a float tensor, handed over as the skip pointer] */
    int32_t y_clamp_lo, y_clamp_hi;     /* float: the range of y (the int32 range: no clamp) */
    float activation_lo, activation_hi; /* float: the activation after the skip add, as a clamp */
    int32_t has_skip, skip_multiplier, skip_shift;  /* int8: + requant(skip, skip_multiplier, skip_shift) */
} bnn_epilogue;

typedef struct {            /* prepared once: per-channel int64, padded to a multiple of 16 lanes */
    int32_t kind, cout, output_clamp_lo, output_clamp_hi, y_clamp_lo, y_clamp_hi, has_skip, skip_shift;
    int32_t fits32;         /* y + bias always fits int32: a 32x32->64 multiply is exact */
    int64_t skip_multiplier, skip_round;
    int32_t skip_identity;  /* requantize(skip) == skip (multiplier 2^shift) */
    int64_t *thresholds, *bias, *multiplier, *rnd, *shift;
    int32_t *bias32, *multiplier32; /* int32 copies for 32x32->64 multiplies (meaningful when fits32) */
    int64_t *nshift;            /* -shift, for shift-by-register instructions that shift left */
    float *float_multiplier, *float_bias;
    float activation_lo, activation_hi;
    int32_t y_clamps;       /* float: the clamp of y can change a value */
    int32_t activation_clamps;  /* float: the activation can change a value */
    int32_t fast16;         /* int8: |y| < 2^31, so y * multiplier + brnd is the exact requant numerator */
    int64_t *brnd;          /* int8: bias * multiplier + rnd (|.| < 2^63: |bias|, |multiplier| < 2^31, rnd <= 2^61) */
    int32_t lanes32;        /* int8: fast16, and requant(y + bias) and requant(skip) fit int32
                               (|.| < 2^30 each) for every |y| <= max_abs_y */
    int64_t *brnd_eo, *shift_eo;  /* brnd, shift per 16 channels: the 8 even ones, then the 8 odd */
    /* int8 output straight from a count x (the binary conv's popcount sum,
     * y = y0 + dy x): (x * am + ab) >> as in int32 lanes, the parameters
     * found and checked at plan time (bnn_epi_reduce): the same outputs as
     * requant(y + bias) for every possible x */
    int32_t rq32;
    int32_t *am, *ab, *as;
    int32_t skm, skb, sks;      /* with rq32, a skip with its own scale: (s * skm + skb) >> sks */
    int32_t sat8;               /* the output clamp is [-128, 127]: a saturating narrowing does it */
} bnn_epi;

/* Prepare src for cout channels; max_abs_y bounds |y| (the accumulator before
 * the bias) for every input. Returns 0, or -1 when memory runs out. */
int bnn_epi_init(bnn_epi *e, const bnn_epilogue *src, int32_t cout, int64_t max_abs_y);
void bnn_epi_free(bnn_epi *e);
/* Sets e->rq32 when the int8 epilogue of y = y0 + dy x, x a count in
 * [0, xmax], can run in int32 lanes (see bnn_epilogue.c). Returns -1 on
 * allocation failure, else 0 (rq32 may stay 0). */
int bnn_epi_reduce(bnn_epi *e, int64_t y0, int64_t dy, int64_t xmax);

/* Scalar epilogue of one output pixel: y[0..cout) -> out pixel `pix`.
 * Every field is read into a local first: the int8/uint8 stores may alias
 * anything, and would otherwise force a reload of each constant per channel. */
static inline void bnn_epi_pixel(const bnn_epi *e, const int64_t *y, size_t pix, void *out,
                                 const int8_t *skip) {
    const int32_t cout = e->cout;
    const int64_t *restrict bias = e->bias;
    if (e->kind == BNN_OUT_INT32) {
        int32_t *restrict o = (int32_t *)out + pix * cout;
        for (int c = 0; c < cout; c++) o[c] = (int32_t)(y[c] + bias[c]);
    } else if (e->kind == BNN_OUT_BITS) {
        const int64_t *restrict thr = e->thresholds;
        uint8_t *restrict o = (uint8_t *)out + pix * ((cout + 7) / 8);
        for (int c = 0; c < cout; c += 8) {
            unsigned byte = 0;
            for (int l = 0; l < 8 && c + l < cout; l++) byte |= (unsigned)(y[c + l] < thr[c + l]) << l;
            o[c / 8] = (uint8_t)byte;
        }
    } else if (e->kind == BNN_OUT_FLOAT) {
        const float *restrict fm = e->float_multiplier, *restrict fb = e->float_bias;
        const int64_t lo = e->y_clamp_lo, hi = e->y_clamp_hi;
        float *o = (float *)out + pix * cout;          /* o may be the skip (in place): no restrict */
        /* the skip of a float output is float (the residual add), passed as bytes */
        const float *sk = e->has_skip ? (const float *)(const void *)skip + pix * cout : NULL;
        for (int c = 0; c < cout; c++) {
            int64_t v = y[c] < lo ? lo : y[c] > hi ? hi : y[c];
            float t = (float)v * fm[c] + fb[c];
            t = sk ? t + sk[c] : t;
            o[c] = t < e->activation_lo ? e->activation_lo : (t > e->activation_hi ? e->activation_hi : t);
        }
    } else {
        const int64_t *restrict mult = e->multiplier, *restrict rnd = e->rnd, *restrict shift = e->shift;
        const int64_t lo = e->output_clamp_lo, hi = e->output_clamp_hi;
        int8_t *o = (int8_t *)out + pix * cout;        /* o may be the skip (in place): no restrict */
        if (e->has_skip) {
            const int8_t *sk = skip + pix * cout;
            const int64_t sm = e->skip_multiplier, sr = e->skip_round, ss = e->skip_shift;
            for (int c = 0; c < cout; c++) {
                int64_t v = bnn_requant(y[c] + bias[c], mult[c], rnd[c], shift[c]) + bnn_requant(sk[c], sm, sr, ss);
                o[c] = (int8_t)(v < lo ? lo : v > hi ? hi : v);
            }
        } else {
            for (int c = 0; c < cout; c++) {
                int64_t v = bnn_requant(y[c] + bias[c], mult[c], rnd[c], shift[c]);
                o[c] = (int8_t)(v < lo ? lo : v > hi ? hi : v);
            }
        }
    }
}

#ifdef BNN_X86
/* AVX-512 epilogue of 8 channels [c0, c0+8) of one pixel, y in int64 lanes. */
BNN_AVX512_BASE static inline void bnn_epi8_avx512(const bnn_epi *e, __m512i y, int c0, size_t pix,
                                              void *out, const int8_t *skip) {
    int32_t cout = e->cout;
    int n = cout - c0 < 8 ? cout - c0 : 8;
    __mmask8 m = (__mmask8)((1u << n) - 1);
    if (e->kind == BNN_OUT_BITS) {
        __mmask8 neg = _mm512_cmplt_epi64_mask(y, _mm512_load_si512(e->thresholds + c0));
        ((uint8_t *)out)[pix * ((cout + 7) / 8) + c0 / 8] = (uint8_t)(neg & m);
    } else if (e->kind == BNN_OUT_INT32) {
        y = _mm512_add_epi64(y, _mm512_load_si512(e->bias + c0));
        /* narrow in registers, then a plain store: the masked narrowing store
         * (vpmovqd to memory) is microcoded on some cores */
        __m256i y32 = _mm512_cvtepi64_epi32(y);
        if (n == 8) _mm256_storeu_si256((__m256i *)((int32_t *)out + pix * cout + c0), y32);
        else _mm256_mask_storeu_epi32((int32_t *)out + pix * cout + c0, m, y32);
    } else if (e->kind == BNN_OUT_FLOAT) {
        if (e->y_clamps) {
            y = _mm512_max_epi64(y, _mm512_set1_epi64(e->y_clamp_lo));
            y = _mm512_min_epi64(y, _mm512_set1_epi64(e->y_clamp_hi));
        }
        __m256 f = _mm256_cvtepi32_ps(_mm512_cvtepi64_epi32(y));   /* |y| < 2^31: exact narrowing */
        f = _mm256_add_ps(_mm256_mul_ps(f, _mm256_load_ps(e->float_multiplier + c0)), _mm256_load_ps(e->float_bias + c0));
        if (e->has_skip) {
            const float *sk = (const float *)(const void *)skip + pix * cout + c0;
            f = _mm256_add_ps(f, n == 8 ? _mm256_loadu_ps(sk) : _mm256_maskz_loadu_ps(m, sk));
        }
        /* max(lo, f), min(hi, .): a NaN f is the second operand, so it passes (as in C) */
        if (e->activation_clamps) f = _mm256_min_ps(_mm256_set1_ps(e->activation_hi), _mm256_max_ps(_mm256_set1_ps(e->activation_lo), f));
        if (n == 8) _mm256_storeu_ps((float *)out + pix * cout + c0, f);
        else _mm256_mask_storeu_ps((float *)out + pix * cout + c0, m, f);
    } else {
        __m512i t = _mm512_add_epi64(y, _mm512_load_si512(e->bias + c0));
        /* vpmuldq (1 uop) multiplies the low 32 bits of each lane, sign-extended:
         * exact when y + bias fits int32, which the plan proved; else vpmullq */
        t = e->fits32 ? _mm512_mul_epi32(t, _mm512_load_si512(e->multiplier + c0))
                      : _mm512_mullo_epi64(t, _mm512_load_si512(e->multiplier + c0));
        t = _mm512_add_epi64(t, _mm512_load_si512(e->rnd + c0));
        t = _mm512_srav_epi64(t, _mm512_load_si512(e->shift + c0));
        if (e->has_skip) {
            __m128i s8 = n == 8 ? _mm_loadl_epi64((const __m128i *)(skip + pix * cout + c0))
                                : _mm_maskz_loadu_epi8(m, skip + pix * cout + c0);
            __m512i s = _mm512_mul_epi32(_mm512_cvtepi8_epi64(s8), _mm512_set1_epi64(e->skip_multiplier));
            s = _mm512_add_epi64(s, _mm512_set1_epi64(e->skip_round));
            s = _mm512_sra_epi64(s, _mm_cvtsi32_si128(e->skip_shift));
            t = _mm512_add_epi64(t, s);
        }
        t = _mm512_max_epi64(t, _mm512_set1_epi64(e->output_clamp_lo));
        t = _mm512_min_epi64(t, _mm512_set1_epi64(e->output_clamp_hi));
        __m128i b = _mm512_cvtepi64_epi8(t);          /* clamped: truncation is exact */
        if (n == 8) _mm_storel_epi64((__m128i *)((int8_t *)out + pix * cout + c0), b);
        else _mm_mask_storeu_epi8((int8_t *)out + pix * cout + c0, m, b);
    }
}

/* The float (and int32) epilogue of 16 channels [c0, c0+16) of one pixel,
 * y in 16 int32 lanes (|y| < 2^31): the clamp, conversion, multiply, add,
 * skip and activation once per 16 channels instead of twice per 8. Same
 * operations in the same order as bnn_epi8_avx512: bit-identical results. */
BNN_AVX512_BASE static inline void bnn_epi_f32x16_avx512(const bnn_epi *e, __m512i y, int c0, size_t pix,
                                                         void *out, const int8_t *skip) {
    const int32_t cout = e->cout;
    const int n = cout - c0 < 16 ? cout - c0 : 16;
    const __mmask16 m = (__mmask16)((1u << n) - 1);
    if (e->kind == BNN_OUT_INT32) {     /* (int32)(y + bias): the low 32 bits of both, added */
        y = _mm512_add_epi32(y, _mm512_loadu_si512(e->bias32 + c0));
        int32_t *o = (int32_t *)out + pix * cout + c0;
        if (n == 16) _mm512_storeu_si512(o, y);
        else _mm512_mask_storeu_epi32(o, m, y);
        return;
    }
    if (e->y_clamps) {
        y = _mm512_max_epi32(y, _mm512_set1_epi32(e->y_clamp_lo));
        y = _mm512_min_epi32(y, _mm512_set1_epi32(e->y_clamp_hi));
    }
    __m512 f = _mm512_cvtepi32_ps(y);
    f = _mm512_add_ps(_mm512_mul_ps(f, _mm512_loadu_ps(e->float_multiplier + c0)), _mm512_loadu_ps(e->float_bias + c0));
    float *o = (float *)out + pix * cout + c0;
    if (e->has_skip) {
        const float *sk = (const float *)(const void *)skip + pix * cout + c0;
        f = _mm512_add_ps(f, n == 16 ? _mm512_loadu_ps(sk) : _mm512_maskz_loadu_ps(m, sk));
    }
    if (e->activation_clamps) f = _mm512_min_ps(_mm512_set1_ps(e->activation_hi), _mm512_max_ps(_mm512_set1_ps(e->activation_lo), f));
    if (n == 16) _mm512_storeu_ps(o, f);
    else _mm512_mask_storeu_ps(o, m, f);
}

/* The same, y in the int64 lanes of two registers (channels c0..c0+7,
 * c0+8..c0+15), narrowed first (|y| < 2^31: exact). */
BNN_AVX512_BASE static inline void bnn_epi16f_avx512(const bnn_epi *e, __m512i y0, __m512i y1, int c0,
                                                     size_t pix, void *out, const int8_t *skip) {
    __m512i y = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(y0)),
                                   _mm512_cvtepi64_epi32(y1), 1);
    bnn_epi_f32x16_avx512(e, y, c0, pix, out, skip);
}

/* The int8 epilogue of 16 channels [c0, c0+16) (when e->fast16): per 64-bit
 * half, y * mult + (bias * mult + rnd), the arithmetic shift and, for a skip
 * with its own scale, its requantized value; then both halves narrow with
 * signed saturation into 16 int16 lanes, where an identity skip is a
 * saturating add, the clamp and the narrowing to int8 run once. Saturation
 * keeps every value's side of [lo, hi] (|skip| <= 128 against a bound of
 * 2^15), so the result equals bnn_epi8_avx512's exact 64-bit one. */
BNN_AVX512_BASE static inline void bnn_epi16i8_avx512(const bnn_epi *e, __m512i y0, __m512i y1, int c0,
                                                      size_t pix, void *out, const int8_t *skip) {
    const int32_t cout = e->cout;
    const int n = cout - c0 < 16 ? cout - c0 : 16;
    const __mmask16 m = (__mmask16)((1u << n) - 1);
    __m512i t0 = _mm512_add_epi64(_mm512_mul_epi32(y0, _mm512_load_si512(e->multiplier + c0)),
                                  _mm512_load_si512(e->brnd + c0));
    __m512i t1 = _mm512_add_epi64(_mm512_mul_epi32(y1, _mm512_load_si512(e->multiplier + c0 + 8)),
                                  _mm512_load_si512(e->brnd + c0 + 8));
    t0 = _mm512_srav_epi64(t0, _mm512_load_si512(e->shift + c0));
    t1 = _mm512_srav_epi64(t1, _mm512_load_si512(e->shift + c0 + 8));
    const int8_t *sk = e->has_skip ? skip + pix * cout + c0 : NULL;
    if (sk && !e->skip_identity) {
        const __m512i sm = _mm512_set1_epi64(e->skip_multiplier), sr = _mm512_set1_epi64(e->skip_round);
        const __m128i ss = _mm_cvtsi32_si128(e->skip_shift);
        __m128i s8 = n == 16 ? _mm_loadu_si128((const __m128i *)sk) : _mm_maskz_loadu_epi8(m, sk);
        __m512i s0 = _mm512_mul_epi32(_mm512_cvtepi8_epi64(s8), sm);
        __m512i s1 = _mm512_mul_epi32(_mm512_cvtepi8_epi64(_mm_srli_si128(s8, 8)), sm);
        t0 = _mm512_add_epi64(t0, _mm512_sra_epi64(_mm512_add_epi64(s0, sr), ss));
        t1 = _mm512_add_epi64(t1, _mm512_sra_epi64(_mm512_add_epi64(s1, sr), ss));
    }
    __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm512_cvtsepi64_epi16(t0)),
                                        _mm512_cvtsepi64_epi16(t1), 1);
    if (sk && e->skip_identity) {
        __m128i s8 = n == 16 ? _mm_loadu_si128((const __m128i *)sk) : _mm_maskz_loadu_epi8(m, sk);
        v = _mm256_adds_epi16(v, _mm256_cvtepi8_epi16(s8));
    }
    v = _mm256_max_epi16(v, _mm256_set1_epi16((int16_t)e->output_clamp_lo));
    v = _mm256_min_epi16(v, _mm256_set1_epi16((int16_t)e->output_clamp_hi));
    __m128i b = _mm256_cvtepi16_epi8(v);
    int8_t *o = (int8_t *)out + pix * cout + c0;
    if (n == 16) _mm_storeu_si128((__m128i *)o, b);
    else _mm_mask_storeu_epi8(o, m, b);
}
#endif

#ifdef BNN_X86
/* 16 int32 lanes clamped to [output_clamp_lo, output_clamp_hi], narrowed to int8 and stored
 * (the first n). The usual [-128, 127] is the saturating narrowing itself. */
BNN_AVX512_BASE static inline void bnn_store_i8x16_avx512(const bnn_epi *e, __m512i v, int8_t *o, int n,
                                                          __mmask16 m) {
    __m128i b;
    if (e->sat8) {
        b = _mm512_cvtsepi32_epi8(v);
    } else {
        v = _mm512_max_epi32(v, _mm512_set1_epi32(e->output_clamp_lo));
        v = _mm512_min_epi32(v, _mm512_set1_epi32(e->output_clamp_hi));
        b = _mm512_cvtepi32_epi8(v);
    }
    if (n == 16) _mm_storeu_si128((__m128i *)o, b);
    else _mm_mask_storeu_epi8(o, m, b);
}

/* The int8 epilogue of 16 channels [c0, c0+16) with y in 16 int32 lanes (when
 * e->lanes32): vpmuldq multiplies the even lanes, and the odd ones shifted
 * down, into exact int64 numerators; after the shift each result fits int32
 * (proved at build time), so the two halves interleave back into one
 * register with a blend, and the identity skip, clamp and narrowing run on 16
 * int32 lanes. Same values as bnn_epi8_avx512: bit-identical. */
BNN_AVX512_BASE static inline void bnn_epi_i8x16_avx512(const bnn_epi *e, __m512i y, int c0, size_t pix,
                                                        void *out, const int8_t *skip) {
    const int32_t cout = e->cout;
    const int n = cout - c0 < 16 ? cout - c0 : 16;
    const __mmask16 m = (__mmask16)((1u << n) - 1);
    const __m512i mult = _mm512_loadu_si512(e->multiplier32 + c0);
    __m512i ev = _mm512_add_epi64(_mm512_mul_epi32(y, mult), _mm512_load_si512(e->brnd_eo + c0));
    __m512i od = _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(y, 32), _mm512_srli_epi64(mult, 32)),
                                  _mm512_load_si512(e->brnd_eo + c0 + 8));
    ev = _mm512_srav_epi64(ev, _mm512_load_si512(e->shift_eo + c0));
    od = _mm512_srav_epi64(od, _mm512_load_si512(e->shift_eo + c0 + 8));
    __m512i v = _mm512_mask_blend_epi32(0xAAAA, ev, _mm512_slli_epi64(od, 32));
    int8_t *o = (int8_t *)out + pix * cout + c0;
    if (e->has_skip) {
        const int8_t *sk = skip + pix * cout + c0;
        __m128i s8 = n == 16 ? _mm_loadu_si128((const __m128i *)sk) : _mm_maskz_loadu_epi8(m, sk);
        __m512i s = _mm512_cvtepi8_epi32(s8);
        if (!e->skip_identity) {    /* the skip's own scale, even and odd lanes as above */
            const __m512i sm = _mm512_set1_epi64(e->skip_multiplier), sr = _mm512_set1_epi64(e->skip_round);
            const __m128i ss = _mm_cvtsi32_si128(e->skip_shift);
            __m512i se = _mm512_sra_epi64(_mm512_add_epi64(_mm512_mul_epi32(s, sm), sr), ss);
            __m512i so = _mm512_sra_epi64(_mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(s, 32), sm), sr), ss);
            s = _mm512_mask_blend_epi32(0xAAAA, se, _mm512_slli_epi64(so, 32));
        }
        v = _mm512_add_epi32(v, s);
    }
    bnn_store_i8x16_avx512(e, v, o, n, m);
}

/* The int8 epilogue of 16 channels [c0, c0+16) straight from 16 int32 counts
 * (when e->rq32, see bnn_epi_reduce): one 32-bit multiply, add and shift per
 * term instead of the even/odd 64-bit products. Bit-identical by construction. */
BNN_AVX512_BASE static inline void bnn_epi_rq32_avx512(const bnn_epi *e, __m512i x, int c0, size_t pix,
                                                       void *out, const int8_t *skip) {
    const int32_t cout = e->cout;
    const int n = cout - c0 < 16 ? cout - c0 : 16;
    const __mmask16 m = (__mmask16)((1u << n) - 1);
    /* c0 is a multiple of 8, not always of 16 (q64 blocks of 3 groups): unaligned loads */
    __m512i v = _mm512_mullo_epi32(x, _mm512_loadu_si512(e->am + c0));
    v = _mm512_srav_epi32(_mm512_add_epi32(v, _mm512_loadu_si512(e->ab + c0)), _mm512_loadu_si512(e->as + c0));
    int8_t *o = (int8_t *)out + pix * cout + c0;
    if (e->has_skip) {
        const int8_t *sk = skip + pix * cout + c0;
        __m512i s = _mm512_cvtepi8_epi32(n == 16 ? _mm_loadu_si128((const __m128i *)sk) : _mm_maskz_loadu_epi8(m, sk));
        if (!e->skip_identity)
            s = _mm512_sra_epi32(_mm512_add_epi32(_mm512_mullo_epi32(s, _mm512_set1_epi32(e->skm)),
                                                  _mm512_set1_epi32(e->skb)),
                                 _mm_cvtsi32_si128(e->sks));
        v = _mm512_add_epi32(v, s);
    }
    bnn_store_i8x16_avx512(e, v, o, n, m);
}
#endif

#ifdef BNN_X86
/* AVX2 epilogue of 8 channels [c0, c0+8) of one pixel, int32 and float
 * outputs (the others take bnn_epi_pixel), y in the int64 lanes of two
 * registers (channels c0..c0+3, c0+4..c0+7), |y| < 2^31. The same operations
 * in the same order as bnn_epi_pixel: bit-identical results. */
static inline int bnn_epi_avx2_kind(const bnn_epi *e) {
    return e->kind == BNN_OUT_INT32 || e->kind == BNN_OUT_FLOAT;
}
BNN_AVX2 static inline void bnn_epi8_avx2(const bnn_epi *e, __m256i y0, __m256i y1, int c0, size_t pix,
                                          void *out, const int8_t *skip) {
    const int32_t cout = e->cout;
    const int n = cout - c0 < 8 ? cout - c0 : 8;
    /* the low dwords of both: channels in order (|y| < 2^31: exact) */
    __m256i y = _mm256_castps_si256(_mm256_shuffle_ps(_mm256_castsi256_ps(y0), _mm256_castsi256_ps(y1), 0x88));
    y = _mm256_permute4x64_epi64(y, 0xd8);
    const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    if (e->kind == BNN_OUT_INT32) {     /* (int32)(y + bias): the low 32 bits of both, added */
        y = _mm256_add_epi32(y, _mm256_loadu_si256((const __m256i *)(e->bias32 + c0)));
        int32_t *o = (int32_t *)out + pix * cout + c0;
        if (n == 8) _mm256_storeu_si256((__m256i *)o, y);
        else _mm256_maskstore_epi32(o, m, y);
        return;
    }
    if (e->y_clamps) {
        y = _mm256_max_epi32(y, _mm256_set1_epi32(e->y_clamp_lo));
        y = _mm256_min_epi32(y, _mm256_set1_epi32(e->y_clamp_hi));
    }
    __m256 f = _mm256_cvtepi32_ps(y);
    f = _mm256_add_ps(_mm256_mul_ps(f, _mm256_loadu_ps(e->float_multiplier + c0)), _mm256_loadu_ps(e->float_bias + c0));
    float *o = (float *)out + pix * cout + c0;
    if (e->has_skip) {
        const float *sk = (const float *)(const void *)skip + pix * cout + c0;
        f = _mm256_add_ps(f, n == 8 ? _mm256_loadu_ps(sk) : _mm256_maskload_ps(sk, m));
    }
    /* max(lo, f), min(hi, .): a NaN f is the second operand, so it passes (as in C) */
    if (e->activation_clamps) f = _mm256_min_ps(_mm256_set1_ps(e->activation_hi), _mm256_max_ps(_mm256_set1_ps(e->activation_lo), f));
    if (n == 8) _mm256_storeu_ps(o, f);
    else _mm256_maskstore_ps(o, m, f);
}

/* x >> s, arithmetic, in 64-bit lanes (AVX2 shifts 64-bit lanes logically
 * only): ~x >> s is the same floor for negative x, bits flipped back */
BNN_AVX2 static inline __m256i bnn_srav64_avx2(__m256i x, __m256i s) {
    const __m256i neg = _mm256_cmpgt_epi64(_mm256_setzero_si256(), x);
    return _mm256_xor_si256(_mm256_srlv_epi64(_mm256_xor_si256(x, neg), s), neg);
}

/* The skip's bytes of 8 channels [c0, c0+n) as 8 int32 lanes; read before
 * the output is written (it may be the skip itself) */
BNN_AVX2 static inline __m256i bnn_skip8_avx2(const int8_t *sk, int n) {
    int64_t raw = 0;
    if (n == 8) memcpy(&raw, sk, 8);        /* a constant size: one load, no call */
    else memcpy(&raw, sk, (size_t)n);
    return _mm256_cvtepi8_epi32(_mm_cvtsi64_si128(raw));
}

/* Clamp 8 int32 lanes to the output range and store n of them as int8 */
BNN_AVX2 static inline void bnn_store_i8x8_avx2(const bnn_epi *e, __m256i v, int8_t *o, int n) {
    v = _mm256_max_epi32(v, _mm256_set1_epi32((int32_t)e->output_clamp_lo));
    v = _mm256_min_epi32(v, _mm256_set1_epi32((int32_t)e->output_clamp_hi));
    /* in [-128, 127] now: the saturating packs change nothing; lanes 0-3 and 4-7 sit in the two halves */
    __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    int64_t bytes = _mm_cvtsi128_si64(_mm_packs_epi16(w, w));
    if (n == 8) memcpy(o, &bytes, 8);
    else memcpy(o, &bytes, (size_t)n);
}

/* The int8 epilogue of 8 channels [c0, c0+8) (c0 a multiple of 8) with y in
 * 8 int32 lanes, when e->lanes32: AVX-512's bnn_epi_i8x16_avx512 in half the
 * lanes (vpmuldq of the even and of the odd lanes into exact int64
 * numerators, the shift, a blend back into int32 lanes, the skip, the clamp):
 * the scalar epilogue's values, bit for bit. */
BNN_AVX2 static inline void bnn_epi_i8x8_avx2(const bnn_epi *e, __m256i y, int c0, size_t pix, void *out,
                                             const int8_t *skip) {
    const int32_t cout = e->cout;
    const int n = cout - c0 < 8 ? cout - c0 : 8;
    /* brnd_eo and shift_eo hold each 16 channels' 8 even ones, then the 8 odd */
    const size_t eo = (size_t)c0 / 16 * 16 + (size_t)(c0 % 16) / 2;
    const __m256i mult = _mm256_loadu_si256((const __m256i *)(e->multiplier32 + c0));
    __m256i ev = _mm256_add_epi64(_mm256_mul_epi32(y, mult), _mm256_loadu_si256((const __m256i *)(e->brnd_eo + eo)));
    __m256i od = _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(y, 32), _mm256_srli_epi64(mult, 32)),
                                  _mm256_loadu_si256((const __m256i *)(e->brnd_eo + eo + 8)));
    ev = bnn_srav64_avx2(ev, _mm256_loadu_si256((const __m256i *)(e->shift_eo + eo)));
    od = bnn_srav64_avx2(od, _mm256_loadu_si256((const __m256i *)(e->shift_eo + eo + 8)));
    __m256i v = _mm256_blend_epi32(ev, _mm256_slli_epi64(od, 32), 0xAA);
    int8_t *o = (int8_t *)out + pix * cout + c0;
    if (e->has_skip) {
        __m256i s = bnn_skip8_avx2(skip + pix * cout + c0, n);
        if (!e->skip_identity) {    /* the skip's own scale, even and odd lanes as above */
            const __m256i sm = _mm256_set1_epi64x(e->skip_multiplier), sr = _mm256_set1_epi64x(e->skip_round);
            const __m256i ss = _mm256_set1_epi64x(e->skip_shift);
            __m256i se = bnn_srav64_avx2(_mm256_add_epi64(_mm256_mul_epi32(s, sm), sr), ss);
            __m256i so = bnn_srav64_avx2(_mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(s, 32), sm), sr), ss);
            s = _mm256_blend_epi32(se, _mm256_slli_epi64(so, 32), 0xAA);
        }
        v = _mm256_add_epi32(v, s);
    }
    bnn_store_i8x8_avx2(e, v, o, n);
}

/* The int8 epilogue of 8 channels [c0, c0+8) straight from the counts (when
 * e->rq32, see bnn_epi_reduce) in the int64 lanes of x0 (channels c0..c0+3)
 * and x1 (c0+4..c0+7): (x * am + ab) >> as in 8 int32 lanes, the skip's own
 * requantization, the clamp. Bit-identical by construction, as
 * bnn_epi_rq32_avx512. */
BNN_AVX2 static inline void bnn_epi_rq32_avx2(const bnn_epi *e, __m256i x0, __m256i x1, int c0, size_t pix,
                                             void *out, const int8_t *skip) {
    const int32_t cout = e->cout;
    const int n = cout - c0 < 8 ? cout - c0 : 8;
    __m256i x = _mm256_castps_si256(_mm256_shuffle_ps(_mm256_castsi256_ps(x0), _mm256_castsi256_ps(x1), 0x88));
    x = _mm256_permute4x64_epi64(x, 0xd8);
    __m256i v = _mm256_mullo_epi32(x, _mm256_loadu_si256((const __m256i *)(e->am + c0)));
    v = _mm256_srav_epi32(_mm256_add_epi32(v, _mm256_loadu_si256((const __m256i *)(e->ab + c0))),
                          _mm256_loadu_si256((const __m256i *)(e->as + c0)));
    int8_t *o = (int8_t *)out + pix * cout + c0;
    if (e->has_skip) {
        __m256i s = bnn_skip8_avx2(skip + pix * cout + c0, n);
        if (!e->skip_identity)
            s = _mm256_sra_epi32(_mm256_add_epi32(_mm256_mullo_epi32(s, _mm256_set1_epi32(e->skm)),
                                                  _mm256_set1_epi32(e->skb)),
                                 _mm_cvtsi32_si128(e->sks));
        v = _mm256_add_epi32(v, s);
    }
    bnn_store_i8x8_avx2(e, v, o, n);
}
#endif

#ifdef BNN_ARM
/* NEON epilogue of one pixel: the int8 requantize (+ skip) path two channels
 * at a time when y + bias fits int32 (proved at plan time: e->fits32), so a
 * 32x32->64 vmull is exact; AArch64 has no 64-bit min/max, so the sum is
 * narrowed with saturation to int32 (values beyond it clamp the same way)
 * before the clamp. Everything else goes to the scalar epilogue. */
static inline void bnn_epi_pixel_neon(const bnn_epi *e, const int64_t *y, size_t pix, void *out,
                                      const int8_t *skip) {
    if (e->kind != BNN_OUT_INT8 || !e->fits32) { bnn_epi_pixel(e, y, pix, out, skip); return; }
    const int32_t cout = e->cout;
    const int32_t *restrict bias32 = e->bias32, *restrict mult32 = e->multiplier32;
    const int64_t *restrict rnd = e->rnd, *restrict nshift = e->nshift;
    int8_t *o = (int8_t *)out + pix * cout;            /* o may be the skip (in place): no restrict */
    const int8_t *sk = e->has_skip ? skip + pix * cout : NULL;
    const int identity = e->skip_identity;
    const int32x4_t sm = vdupq_n_s32((int32_t)e->skip_multiplier);
    const int64x2_t sr = vdupq_n_s64(e->skip_round), ss = vdupq_n_s64(-(int64_t)e->skip_shift);
    const int32x4_t lo = vdupq_n_s32(e->output_clamp_lo), hi = vdupq_n_s32(e->output_clamp_hi);
    int c = 0;
    for (; c + 4 <= cout; c += 4) {
        /* y + bias in int32 (fits32), times the multiplier into 64-bit lanes on top of the rounding term */
        int32x4_t t = vaddq_s32(vcombine_s32(vmovn_s64(vld1q_s64(y + c)), vmovn_s64(vld1q_s64(y + c + 2))),
                                vld1q_s32(bias32 + c));
        int32x4_t m = vld1q_s32(mult32 + c);
        int64x2_t v0 = vshlq_s64(vmlal_s32(vld1q_s64(rnd + c), vget_low_s32(t), vget_low_s32(m)),
                                 vld1q_s64(nshift + c));
        int64x2_t v1 = vshlq_s64(vmlal_high_s32(vld1q_s64(rnd + c + 2), t, m), vld1q_s64(nshift + c + 2));
        int32x4_t r;
        if (!sk) {
            r = vcombine_s32(vqmovn_s64(v0), vqmovn_s64(v1));
        } else {
            int32_t raw;
            memcpy(&raw, sk + c, 4);
            int32x4_t s32 = vmovl_s16(vget_low_s16(vmovl_s8(vreinterpret_s8_s32(vdup_n_s32(raw)))));
            if (identity) {
                /* |skip| <= 128 and the clamp is an int8 range: a main term saturated
                 * at +-(2^31 - 1) still clamps the same way after the add */
                r = vqaddq_s32(vcombine_s32(vqmovn_s64(v0), vqmovn_s64(v1)), s32);
            } else {
                v0 = vaddq_s64(v0, vshlq_s64(vmlal_s32(sr, vget_low_s32(s32), vget_low_s32(sm)), ss));
                v1 = vaddq_s64(v1, vshlq_s64(vmlal_high_s32(sr, s32, sm), ss));
                r = vcombine_s32(vqmovn_s64(v0), vqmovn_s64(v1));
            }
        }
        r = vminq_s32(vmaxq_s32(r, lo), hi);
        int16x4_t r16 = vmovn_s32(r);
        int8x8_t r8 = vmovn_s16(vcombine_s16(r16, r16));
        vst1_lane_s32((int32_t *)(void *)(o + c), vreinterpret_s32_s8(r8), 0);
    }
    for (; c < cout; c++) {
        int64_t v = bnn_requant(y[c] + e->bias[c], e->multiplier[c], e->rnd[c], e->shift[c]);
        if (sk) v += bnn_requant(sk[c], e->skip_multiplier, e->skip_round, e->skip_shift);
        o[c] = (int8_t)(v < e->output_clamp_lo ? e->output_clamp_lo : v > e->output_clamp_hi ? e->output_clamp_hi : v);
    }
}
#endif

#endif
