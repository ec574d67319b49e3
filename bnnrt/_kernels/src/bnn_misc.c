#include "bnn_misc.h"

#include <math.h>

/* Per channel, -1 iff q < lo or q > hi or always: direction +1 is "q < t"
 * (lo = t, hi = 127, which nothing exceeds), direction -1 is "q > t"; a t
 * beyond the int8 range turns the channel constant. When c is a multiple of 8
 * the output is one flat bit stream over the input bytes, so the AVX-512 path
 * compares 64 bytes at a time and stores the two compare masks as 8 output
 * bytes; the per-channel constants repeat with period lcm(c, 64) bytes.
 * Other channel counts go pixel by pixel (BINARIZE_PIXELS). */
struct bnn_binarizer {
    int32_t c, period;      /* period: lcm(c, 64) bytes, when c % 8 == 0 */
    int8_t *lo, *hi;        /* [period] */
    uint64_t *always;       /* [period / 64] bit patterns of the constant -1 channels */
    int variant;
};

void bnn_binarizer_free(bnn_binarizer *b) {
    if (!b) return;
    free(b->lo); free(b->hi); free(b->always); free(b);
}

const char *bnn_binarizer_variant(const bnn_binarizer *b) { return bnn_variant_names[b->variant]; }

static int32_t gcd32(int32_t a, int32_t b) { while (b) { int32_t t = a % b; a = b; b = t; } return a; }

bnn_binarizer *bnn_binarizer_create(int32_t c, const int16_t *t, const int8_t *d, int variant) {
    variant = bnn_select(BNN_FAMILY_BINARIZE, variant, 1);
    if (variant < 0) return NULL;
    bnn_binarizer *b = (bnn_binarizer *)calloc(1, sizeof(*b));
    if (!b) return NULL;
    b->c = c;
    b->variant = variant;
    b->period = c / gcd32(c, 64) * 64;
    b->lo = (int8_t *)malloc((size_t)b->period);
    b->hi = (int8_t *)malloc((size_t)b->period);
    b->always = (uint64_t *)calloc((size_t)b->period / 64, sizeof(uint64_t));
    if (!b->lo || !b->hi || !b->always) { bnn_binarizer_free(b); return NULL; }
    for (int32_t i = 0; i < b->period; i++) {
        int32_t ch = i % c, ti = t[ch];
        int always;
        if (d[ch] > 0) {            /* q < t */
            b->lo[i] = (int8_t)(ti < -128 ? -128 : ti > 127 ? 127 : ti);
            b->hi[i] = 127;
            always = ti > 127;
        } else {                    /* q > t */
            b->lo[i] = -128;
            b->hi[i] = (int8_t)(ti < -128 ? -128 : ti > 127 ? 127 : ti);
            always = ti < -128;
        }
        if (always) b->always[i / 64] |= (uint64_t)1 << (i % 64);
    }
    return b;
}

static inline int bin_bit(const bnn_binarizer *b, int8_t q, int32_t i /* index into the period */) {
    return q < b->lo[i] || q > b->hi[i] || ((b->always[i / 64] >> (i % 64)) & 1);
}

#ifdef BNN_X86
BNN_AVX512_BASE static void binarize_avx512(const bnn_binarizer *b, const int8_t *x, uint8_t *out,
                                            size_t n /* bytes, multiple of 8 */) {
    size_t i = 0, nvec = (size_t)b->period / 64, v = 0;
    for (; i + 64 <= n; i += 64) {
        __m512i q = _mm512_loadu_si512(x + i);
        __mmask64 m = _mm512_cmplt_epi8_mask(q, _mm512_loadu_si512(b->lo + 64 * v)) |
                      _mm512_cmpgt_epi8_mask(q, _mm512_loadu_si512(b->hi + 64 * v));
        m |= b->always[v];
        memcpy(out + i / 8, &m, 8);
        if (++v == nvec) v = 0;
    }
    if (i < n) {   /* tail: a partial vector, masked loads so nothing past the end is read */
        __mmask64 live = ~(__mmask64)0 >> (64 - (n - i));
        __m512i q = _mm512_maskz_loadu_epi8(live, x + i);
        __mmask64 m = _mm512_cmplt_epi8_mask(q, _mm512_loadu_si512(b->lo + 64 * v)) |
                      _mm512_cmpgt_epi8_mask(q, _mm512_loadu_si512(b->hi + 64 * v));
        m = (m | b->always[v]) & live;
        memcpy(out + i / 8, &m, (n - i) / 8);
    }
}
#endif

#ifdef BNN_X86
/* AVX2: the same stream 32 bytes per compare; the two masks of a 64-byte
 * block (vpmovmskb) are its 8 output bytes. */
BNN_AVX2 static inline uint64_t bits64_avx2(const int8_t *q, const int8_t *lo, const int8_t *hi) {
    uint64_t m = 0;
    for (int h = 0; h < 2; h++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(q + 32 * h));
        __m256i neg = _mm256_or_si256(_mm256_cmpgt_epi8(_mm256_loadu_si256((const __m256i *)(lo + 32 * h)), v),
                                      _mm256_cmpgt_epi8(v, _mm256_loadu_si256((const __m256i *)(hi + 32 * h))));
        m |= (uint64_t)(uint32_t)_mm256_movemask_epi8(neg) << (32 * h);
    }
    return m;
}

BNN_AVX2 static void binarize_avx2(const bnn_binarizer *b, const int8_t *x, uint8_t *out,
                                   size_t n /* bytes, multiple of 8 */) {
    size_t i = 0, nvec = (size_t)b->period / 64, v = 0;
    for (; i + 64 <= n; i += 64) {
        uint64_t m = bits64_avx2(x + i, b->lo + 64 * v, b->hi + 64 * v) | b->always[v];
        memcpy(out + i / 8, &m, 8);
        if (++v == nvec) v = 0;
    }
    if (i < n) {   /* tail: copied into a full block, so nothing past the end is read */
        int8_t tail[64] = {0};
        memcpy(tail, x + i, n - i);
        uint64_t m = bits64_avx2(tail, b->lo + 64 * v, b->hi + 64 * v) | b->always[v];
        memcpy(out + i / 8, &m, (n - i) / 8);
    }
}
#endif

#ifdef BNN_ARM
/* 64 int8 values -> 64 bits: compare (the 0xFF/0x00 lanes), keep each lane's
 * bit weight, and three rounds of pairwise adds gather 8 lanes per byte. */
static inline uint64_t bits64_neon(const int8_t *q, const int8_t *lo, const int8_t *hi) {
    static const uint8_t w[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t wv = vld1q_u8(w);
    uint8x16_t t[4];
    for (int k = 0; k < 4; k++) {
        int8x16_t v = vld1q_s8(q + 16 * k);
        uint8x16_t m = vorrq_u8(vcltq_s8(v, vld1q_s8(lo + 16 * k)), vcgtq_s8(v, vld1q_s8(hi + 16 * k)));
        t[k] = vandq_u8(m, wv);
    }
    uint8x16_t s = vpaddq_u8(vpaddq_u8(t[0], t[1]), vpaddq_u8(t[2], t[3]));
    s = vpaddq_u8(s, s);
    return vgetq_lane_u64(vreinterpretq_u64_u8(s), 0);
}

static void binarize_neon(const bnn_binarizer *b, const int8_t *x, uint8_t *out, size_t n /* multiple of 8 */) {
    size_t i = 0, nvec = (size_t)b->period / 64, v = 0;
    for (; i + 64 <= n; i += 64) {
        uint64_t m = bits64_neon(x + i, b->lo + 64 * v, b->hi + 64 * v) | b->always[v];
        memcpy(out + i / 8, &m, 8);
        if (++v == nvec) v = 0;
    }
    if (i < n) {   /* tail: copied into a full block, so nothing past the end is read */
        int8_t tail[64] = {0};
        memcpy(tail, x + i, n - i);
        uint64_t m = bits64_neon(tail, b->lo + 64 * v, b->hi + 64 * v) | b->always[v];
        memcpy(out + i / 8, &m, (n - i) / 8);
    }
}
#endif

/* c % 8 != 0 (a Mixer's 49 tokens): pixel by pixel, 64 channels per
 * compare. Entries [0, c) of the period arrays are channels 0..c-1, and the
 * period (a multiple of 64, >= c) covers every block read. */
#define BINARIZE_PIXELS(NAME, ATTR, BITS64)                                                       \
    ATTR static void NAME(const bnn_binarizer *b, const int8_t *x, uint8_t *out, size_t p0,      \
                          size_t p1) {                                                           \
        int32_t c = b->c;                                                                       \
        size_t cb = ((size_t)c + 7) / 8;                                                        \
        for (size_t p = p0; p < p1; p++) {                                                      \
            const int8_t *q = x + p * (size_t)c;                                                \
            for (int32_t j = 0; j < c; j += 64) {                                               \
                int32_t n = c - j < 64 ? c - j : 64;                                            \
                int8_t blk[64] = {0};                                                           \
                const int8_t *src = q + j;                                                      \
                if (n < 64) { memcpy(blk, src, (size_t)n); src = blk; }                         \
                uint64_t m = BITS64(src, b->lo + j, b->hi + j) | b->always[j / 64];             \
                if (n < 64) m &= ((uint64_t)1 << n) - 1;                                        \
                memcpy(out + p * cb + (size_t)j / 8, &m, (size_t)(n + 7) / 8);                  \
            }                                                                                   \
        }                                                                                       \
    }

#ifdef BNN_X86
/* AVX-512: masked loads read a pixel's partial block in place, and with
 * c <= 64 (a Mixer's tokens) the constants stay in registers */
BNN_AVX512_BASE static void binarize_pixels_avx512(const bnn_binarizer *b, const int8_t *x, uint8_t *out,
                                                   size_t p0, size_t p1) {
    int32_t c = b->c;
    size_t cb = ((size_t)c + 7) / 8;
    for (int32_t j = 0; j < c; j += 64) {
        int32_t n = c - j < 64 ? c - j : 64;
        __mmask64 live = n == 64 ? ~(__mmask64)0 : ((__mmask64)1 << n) - 1;
        __m512i lo = _mm512_loadu_si512(b->lo + j), hi = _mm512_loadu_si512(b->hi + j);
        uint64_t always = b->always[j / 64] & live;
        size_t nbytes = (size_t)(n + 7) / 8;
        for (size_t p = p0; p < p1; p++) {
            __m512i v = _mm512_maskz_loadu_epi8(live, x + p * (size_t)c + j);
            uint64_t m = ((_mm512_cmplt_epi8_mask(v, lo) | _mm512_cmpgt_epi8_mask(v, hi)) & live) | always;
            memcpy(out + p * cb + (size_t)j / 8, &m, nbytes);
        }
    }
}
BINARIZE_PIXELS(binarize_pixels_avx2, BNN_AVX2, bits64_avx2)
#endif
#ifdef BNN_ARM
BINARIZE_PIXELS(binarize_pixels_neon, , bits64_neon)
#endif

void bnn_binarize(const bnn_binarizer *b, const int8_t *x, uint8_t *out, size_t pixels, int threads) {
    int32_t c = b->c;
    size_t cb = ((size_t)c + 7) / 8;
    if (c % 8 && b->variant != BNN_VARIANT_SCALAR) {
        void (*run)(const bnn_binarizer *, const int8_t *, uint8_t *, size_t, size_t) = NULL;
#ifdef BNN_X86
        run = b->variant == BNN_VARIANT_AVX512 ? binarize_pixels_avx512 : binarize_pixels_avx2;
#endif
#ifdef BNN_ARM
        run = binarize_pixels_neon;
#endif
        size_t block = 256, nblocks = (pixels + block - 1) / block;
        BNN_PARALLEL_FOR(threads > 1 && nblocks > 8,
            for (size_t k = 0; k < nblocks; k++)
                run(b, x, out, k * block, (k + 1) * block < pixels ? (k + 1) * block : pixels););
        return;
    }
#ifdef BNN_X86
    if (b->variant == BNN_VARIANT_AVX512 || b->variant == BNN_VARIANT_AVX2) {
        /* chunks start at multiples of the period, so the patterns line up */
        size_t total = pixels * (size_t)c, chunk = (size_t)b->period * 64;
        size_t nchunks = (total + chunk - 1) / chunk;
        void (*run)(const bnn_binarizer *, const int8_t *, uint8_t *, size_t) =
            b->variant == BNN_VARIANT_AVX512 ? binarize_avx512 : binarize_avx2;
        BNN_PARALLEL_FOR(threads > 1 && nchunks > 8,
            for (size_t k = 0; k < nchunks; k++) {
                size_t start = k * chunk, len = total - start < chunk ? total - start : chunk;
                run(b, x + start, out + start / 8, len);
            });
        return;
    }
#endif
#ifdef BNN_ARM
    if (b->variant == BNN_VARIANT_NEON) {
        size_t total = pixels * (size_t)c, chunk = (size_t)b->period * 64;
        size_t nchunks = (total + chunk - 1) / chunk;
        BNN_PARALLEL_FOR(threads > 1 && nchunks > 8,
            for (size_t k = 0; k < nchunks; k++) {
                size_t start = k * chunk, len = total - start < chunk ? total - start : chunk;
                binarize_neon(b, x + start, out + start / 8, len);
            });
        return;
    }
#endif
    BNN_PARALLEL_FOR(threads > 1 && pixels > 4096,
        for (size_t p = 0; p < pixels; p++) {
            const int8_t *q = x + p * c;
            uint8_t *o = out + p * cb;
            int32_t base = (int32_t)((p * (size_t)c) % (size_t)b->period);
            for (size_t byte_i = 0; byte_i < cb; byte_i++) {
                unsigned byte = 0;
                for (int l = 0; l < 8 && 8 * (int)byte_i + l < c; l++) {
                    int32_t ch = 8 * (int)byte_i + l;
                    byte |= (unsigned)bin_bit(b, q[ch], (base + ch) % b->period) << l;
                }
                o[byte_i] = (uint8_t)byte;
            }
        });
}

#ifdef BNN_X86
/* 16 floats at a time: divide (not multiply by a reciprocal: bit-exact with
 * numpy), clamp, convert with the default round-half-to-even mode, narrow. */
BNN_AVX512_BASE static void quantize_avx512(const float *x, int8_t *out, size_t n, float scale) {
    const __m512 s = _mm512_set1_ps(scale), lo = _mm512_set1_ps(-128.0f), hi = _mm512_set1_ps(127.0f);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 live = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_div_ps(_mm512_maskz_loadu_ps(live, x + i), s);
        v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);            /* NaN -> -128 here, 0 in C */
        _mm512_mask_cvtsepi32_storeu_epi8(out + i, live, _mm512_cvtps_epi32(v));
    }
}
#endif

void bnn_quantize(const float *x, int8_t *out, size_t n, float scale, int threads, int variant) {
    (void)threads;   /* an image is a few thousand values: one thread is faster than waking more */
#ifdef BNN_X86
    if (variant == BNN_VARIANT_AVX512) { quantize_avx512(x, out, n, scale); return; }
#endif
    (void)variant;
    /* clamp first (rint is monotonic and the bounds are integers), then round
     * half to even with the 1.5 * 2^23 trick: exact for |v| <= 2^22 */
    const float magic = 12582912.0f;
    for (size_t i = 0; i < n; i++) {
        float v = x[i] / scale;
        v = v > 127.0f ? 127.0f : v;
        v = v >= -128.0f ? v : -128.0f;     /* NaN becomes -128 too (Model.run refuses NaN) */
        out[i] = (int8_t)(int)((v + magic) - magic);
    }
}

/* With a per-channel affine (mult, bias non-NULL) the sign is that of
 * x * mult + bias, rounded as two float32 operations (no FMA: the build's
 * -ffp-contract=off), exactly what mul_float then add_float compute. */
static void sign_bits_scalar(const float *x, uint8_t *out, size_t pixels, int32_t c, const float *mult,
                             const float *bias, int threads) {
    size_t cb = ((size_t)c + 7) / 8;
    BNN_PARALLEL_FOR(threads > 1 && pixels > 4096,
        for (size_t p = 0; p < pixels; p++) {
            const float *v = x + p * c;
            for (size_t b = 0; b < cb; b++) {
                unsigned byte = 0;
                for (int l = 0; l < 8 && 8 * (int)b + l < c; l++) {
                    size_t i = 8 * b + l;
                    float f = mult ? v[i] * mult[i] + bias[i] : v[i];
                    byte |= (unsigned)(f < 0.0f) << l;
                }
                out[p * cb + b] = (uint8_t)byte;
            }
        });
}

#ifdef BNN_X86
/* 16 channels per compare: the sign mask is the bit pattern itself (LSB =
 * lowest channel). Ordered less-than: NaN and -0.0 give +1, as x < 0 does. */
BNN_AVX512_BASE static inline __m512 affine16(__m512 v, const float *mult, const float *bias, int at,
                                              __mmask16 lanes) {
    return mult ? _mm512_add_ps(_mm512_mul_ps(v, _mm512_maskz_loadu_ps(lanes, mult + at)),
                                _mm512_maskz_loadu_ps(lanes, bias + at)) : v;
}

BNN_AVX512_BASE static void sign_bits_avx512(const float *x, uint8_t *out, size_t pixels, int32_t c,
                                              const float *mult, const float *bias, int threads) {
    const size_t cb = ((size_t)c + 7) / 8;
    const int full = c / 16, rest = c % 16;
    const __mmask16 tail = (__mmask16)((1u << rest) - 1);
    const __m512 zero = _mm512_setzero_ps();
    if (!mult && rest == 0) {
        /* no affine, whole 16s: the pixels' bits are one stream, 64 channels
         * to one 8-byte store (the byte stores would alias every pointer) */
        const size_t n = pixels * (size_t)full, n4 = n / 4;
        BNN_PARALLEL_FOR(threads > 1 && pixels > 4096,
            for (size_t i = 0; i < n4; i++) {
                const float *v = x + 64 * i;
                uint64_t m = (uint64_t)_mm512_cmp_ps_mask(_mm512_loadu_ps(v), zero, _CMP_LT_OQ) |
                             (uint64_t)_mm512_cmp_ps_mask(_mm512_loadu_ps(v + 16), zero, _CMP_LT_OQ) << 16 |
                             (uint64_t)_mm512_cmp_ps_mask(_mm512_loadu_ps(v + 32), zero, _CMP_LT_OQ) << 32 |
                             (uint64_t)_mm512_cmp_ps_mask(_mm512_loadu_ps(v + 48), zero, _CMP_LT_OQ) << 48;
                memcpy(out + 8 * i, &m, 8);
            });
        for (size_t i = 4 * n4; i < n; i++) {
            __mmask16 m = _mm512_cmp_ps_mask(_mm512_loadu_ps(x + 16 * i), zero, _CMP_LT_OQ);
            memcpy(out + 2 * i, &m, 2);
        }
        return;
    }
    BNN_PARALLEL_FOR(threads > 1 && pixels > 4096,
        for (size_t p = 0; p < pixels; p++) {
            const float *v = x + p * c;
            uint8_t *o = out + p * cb;
            for (int g = 0; g < full; g++) {
                __m512 f = affine16(_mm512_loadu_ps(v + 16 * g), mult, bias, 16 * g, (__mmask16)0xffff);
                __mmask16 m = _mm512_cmp_ps_mask(f, zero, _CMP_LT_OQ);
                memcpy(o + 2 * g, &m, 2);
            }
            if (rest) {
                __m512 f = affine16(_mm512_maskz_loadu_ps(tail, v + 16 * full), mult, bias, 16 * full, tail);
                __mmask16 m = _mm512_mask_cmp_ps_mask(tail, f, zero, _CMP_LT_OQ);
            o[2 * full] = (uint8_t)m;
            if (rest > 8) o[2 * full + 1] = (uint8_t)(m >> 8);
        }
    });
}
#endif

#ifdef BNN_X86
/* AVX2: 8 channels per compare, the sign mask (vmovmskps) is the byte itself;
 * the channels past the last whole 8 load through a mask (nothing past the
 * pixel is read). Ordered less-than, as the scalar x < 0. */
BNN_AVX2 static inline __m256 affine8(__m256 v, const float *mult, const float *bias, int at, __m256i lanes) {
    return mult ? _mm256_add_ps(_mm256_mul_ps(v, _mm256_maskload_ps(mult + at, lanes)),
                                _mm256_maskload_ps(bias + at, lanes)) : v;
}

BNN_AVX2 static void sign_bits_avx2(const float *x, uint8_t *out, size_t pixels, int32_t c, const float *mult,
                                    const float *bias, int threads) {
    const size_t cb = ((size_t)c + 7) / 8;
    const int full = c / 8, rest = c % 8;
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32(rest), lanes);
    const __m256i all = _mm256_set1_epi32(-1);
    const __m256 zero = _mm256_setzero_ps();
    BNN_PARALLEL_FOR(threads > 1 && pixels > 4096,
        for (size_t p = 0; p < pixels; p++) {
            const float *v = x + p * c;
            uint8_t *o = out + p * cb;
            for (int g = 0; g < full; g++)
                o[g] = (uint8_t)_mm256_movemask_ps(_mm256_cmp_ps(affine8(_mm256_loadu_ps(v + 8 * g), mult, bias,
                                                                         8 * g, all), zero, _CMP_LT_OQ));
            if (rest)
                o[full] = (uint8_t)(_mm256_movemask_ps(_mm256_cmp_ps(affine8(_mm256_maskload_ps(v + 8 * full, tail),
                                                                             mult, bias, 8 * full, tail),
                                                                     zero, _CMP_LT_OQ)) & ((1 << rest) - 1));
        });
}
#endif

void bnn_sign_bits(const float *x, uint8_t *out, size_t pixels, int32_t c, const float *mult, const float *bias,
                   int threads, int variant) {
#ifdef BNN_X86
    if (variant == BNN_VARIANT_AVX512) { sign_bits_avx512(x, out, pixels, c, mult, bias, threads); return; }
    if (variant == BNN_VARIANT_AVX2) { sign_bits_avx2(x, out, pixels, c, mult, bias, threads); return; }
#endif
    (void)variant;
    sign_bits_scalar(x, out, pixels, c, mult, bias, threads);
}

void bnn_add_int8(const int8_t *a, const int8_t *b, int8_t *out, size_t n, int32_t am, int32_t as,
                  int32_t bm, int32_t bs, int32_t lo, int32_t hi, int threads) {
    int64_t ar = bnn_round_of(as), br = bnn_round_of(bs);
    BNN_PARALLEL_FOR(threads > 1 && n > 65536,
        for (size_t i = 0; i < n; i++) {
            int64_t v = bnn_requant(a[i], am, ar, as) + bnn_requant(b[i], bm, br, bs);
            out[i] = (int8_t)(v < lo ? lo : v > hi ? hi : v);
        });
}

/* Window bounds clipped to the input: padded taps are ignored. */
static inline void window(const bnn_pool_geom *g, int oy, int ox, int *y0, int *y1, int *x0, int *x1) {
    int ys = oy * g->sh - g->pad_top, xs = ox * g->sw - g->pad_left;
    *y0 = ys < 0 ? 0 : ys;
    *y1 = ys + g->kh > g->in_h ? g->in_h : ys + g->kh;
    *x0 = xs < 0 ? 0 : xs;
    *x1 = xs + g->kw > g->in_w ? g->in_w : xs + g->kw;
}

void bnn_maxpool_int8(const bnn_pool_geom *g, const int8_t *in, int8_t *out, int n, int threads) {
    int rows = n * g->out_h;
    BNN_PARALLEL_FOR(threads > 1,
        for (int r = 0; r < rows; r++) {
            int i = r / g->out_h, oy = r % g->out_h;
            const int8_t *img = in + (size_t)i * g->in_h * g->in_w * g->c;
            for (int ox = 0; ox < g->out_w; ox++) {
                int y0, y1, x0, x1;
                window(g, oy, ox, &y0, &y1, &x0, &x1);
                int8_t *o = out + (((size_t)i * g->out_h + oy) * g->out_w + ox) * g->c;
                for (int ch = 0; ch < g->c; ch++) o[ch] = -128;
                for (int y = y0; y < y1; y++)
                    for (int x = x0; x < x1; x++) {
                        const int8_t *p = img + ((size_t)y * g->in_w + x) * g->c;
                        for (int ch = 0; ch < g->c; ch++) o[ch] = p[ch] > o[ch] ? p[ch] : o[ch];
                    }
            }
        });
}

/* float32: max (NaN propagates, as np.maximum) or average over the valid taps
 * (summed in tap order, then divided by their count: TFLite's average, and
 * the reference's arithmetic, so the result is bit-exact). Output pixels go
 * 16 channels at a time, the running max or sum held in registers across the
 * taps. MAXPS (m > v ? m : v) lets a later tap replace a NaN, so NaN taps
 * are also or-ed into a mask applied at the end; GCC's generic vectors do not
 * lower that to vector code, hence intrinsics for x86. Elsewhere the scalar
 * loop (vectorized by the compiler where it can). */
#define FPOOL_BLOCKS(...)                                                                          \
    int i = r / g->out_h, oy = r % g->out_h;                                                          \
    const float *img = in + (size_t)i * g->in_h * g->in_w * g->c;                                     \
    for (int ox = 0; ox < g->out_w; ox++) {                                                           \
        int y0, y1, x0, x1;                                                                           \
        window(g, oy, ox, &y0, &y1, &x0, &x1);                                                        \
        float *o = out + (((size_t)i * g->out_h + oy) * g->out_w + ox) * g->c;                        \
        const float count = (float)((y1 - y0) * (x1 - x0));                                           \
        for (int c0 = 0; c0 < g->c; c0 += 16) {                                                       \
            const int nc = g->c - c0 < 16 ? g->c - c0 : 16;                                          \
            __VA_ARGS__                                                                               \
        }                                                                                             \
    }
#define FPOOL_TAPS(...)                                                                              \
    for (int y = y0; y < y1; y++)                                                                     \
        for (int x = x0; x < x1; x++) {                                                               \
            const float *p = img + ((size_t)y * g->in_w + x) * g->c + c0;                             \
            __VA_ARGS__                                                                               \
        }

/* up to 16 channels of one output pixel, one at a time */
static inline __attribute__((always_inline)) void pool_float_lanes(const bnn_pool_geom *g, const float *img,
                                                                   float *o, int average, int y0, int y1,
                                                                   int x0, int x1, int c0, int nc, float count) {
    float m[16];
    for (int ch = 0; ch < nc; ch++) m[ch] = average ? 0.0f : -INFINITY;
    if (average) {
        FPOOL_TAPS(for (int ch = 0; ch < nc; ch++) m[ch] += p[ch];)
        for (int ch = 0; ch < nc; ch++) o[c0 + ch] = m[ch] / count;
    } else {
        FPOOL_TAPS(for (int ch = 0; ch < nc; ch++) m[ch] = (m[ch] > p[ch] || m[ch] != m[ch]) ? m[ch] : p[ch];)
        for (int ch = 0; ch < nc; ch++) o[c0 + ch] = m[ch];
    }
}

static void pool_float_scalar(const bnn_pool_geom *g, const float *in, float *out, int average, int r) {
    FPOOL_BLOCKS(pool_float_lanes(g, img, o, average, y0, y1, x0, x1, c0, nc, count);)
}

#ifdef BNN_X86
BNN_AVX2 static void pool_float_avx2(const bnn_pool_geom *g, const float *in, float *out, int average, int r) {
    FPOOL_BLOCKS(
        if (nc < 16) {  /* the last channels */
            pool_float_lanes(g, img, o, average, y0, y1, x0, x1, c0, nc, count);
            continue;
        }
        __m256 m0 = _mm256_set1_ps(average ? 0.0f : -INFINITY), m1 = m0;
        if (average) {
            FPOOL_TAPS(m0 = _mm256_add_ps(m0, _mm256_loadu_ps(p)); m1 = _mm256_add_ps(m1, _mm256_loadu_ps(p + 8));)
            const __m256 cnt = _mm256_set1_ps(count);
            m0 = _mm256_div_ps(m0, cnt);
            m1 = _mm256_div_ps(m1, cnt);
        } else {  /* MAXPS lets a NaN tap through but not stay: NaN taps are or-ed into a mask */
            __m256 nan0 = _mm256_setzero_ps(), nan1 = nan0;
            FPOOL_TAPS(
                const __m256 v0 = _mm256_loadu_ps(p), v1 = _mm256_loadu_ps(p + 8);
                m0 = _mm256_max_ps(m0, v0);
                m1 = _mm256_max_ps(m1, v1);
                nan0 = _mm256_or_ps(nan0, _mm256_cmp_ps(v0, v0, _CMP_UNORD_Q));
                nan1 = _mm256_or_ps(nan1, _mm256_cmp_ps(v1, v1, _CMP_UNORD_Q));)
            m0 = _mm256_blendv_ps(m0, _mm256_set1_ps(NAN), nan0);
            m1 = _mm256_blendv_ps(m1, _mm256_set1_ps(NAN), nan1);
        }
        _mm256_storeu_ps(o + c0, m0);
        _mm256_storeu_ps(o + c0 + 8, m1);)
}

BNN_AVX512_BASE static void pool_float_avx512(const bnn_pool_geom *g, const float *in, float *out, int average,
                                              int r) {
    FPOOL_BLOCKS(
        const __mmask16 k = (__mmask16)((1u << nc) - 1);
        __m512 m = _mm512_set1_ps(average ? 0.0f : -INFINITY);
        if (average) {
            FPOOL_TAPS(m = _mm512_add_ps(m, _mm512_maskz_loadu_ps(k, p));)
            m = _mm512_div_ps(m, _mm512_set1_ps(count));
        } else {  /* MAXPS lets a NaN tap through but not stay: NaN taps are or-ed into a mask */
            __mmask16 nan = 0;
            FPOOL_TAPS(
                const __m512 v = _mm512_maskz_loadu_ps(k, p);
                m = _mm512_max_ps(m, v);
                nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);)
            m = _mm512_mask_blend_ps(nan, m, _mm512_set1_ps(NAN));
        }
        _mm512_mask_storeu_ps(o + c0, k, m);)
}
#endif

void bnn_pool_float(const bnn_pool_geom *g, const float *in, float *out, int n, int average, int threads,
                    int variant) {
    void (*row)(const bnn_pool_geom *, const float *, float *, int, int) = pool_float_scalar;
#ifdef BNN_X86
    if (variant == BNN_VARIANT_AVX512) row = pool_float_avx512;
    else if (variant == BNN_VARIANT_AVX2) row = pool_float_avx2;
#endif
    (void)variant;
    int rows = n * g->out_h;
    BNN_PARALLEL_FOR(threads > 1,
        for (int r = 0; r < rows; r++) row(g, in, out, average, r););
}

void bnn_maxpool_bits(const bnn_pool_geom *g, const uint8_t *in, uint8_t *out, int n, int threads) {
    int cb = (g->c + 7) / 8, rows = n * g->out_h;
    BNN_PARALLEL_FOR(threads > 1,
        for (int r = 0; r < rows; r++) {
            int i = r / g->out_h, oy = r % g->out_h;
            const uint8_t *img = in + (size_t)i * g->in_h * g->in_w * cb;
            for (int ox = 0; ox < g->out_w; ox++) {
                int y0, y1, x0, x1;
                window(g, oy, ox, &y0, &y1, &x0, &x1);
                uint8_t *o = out + (((size_t)i * g->out_h + oy) * g->out_w + ox) * cb;
                for (int b = 0; b < cb; b++) o[b] = 0xFF;
                for (int y = y0; y < y1; y++)
                    for (int x = x0; x < x1; x++) {
                        const uint8_t *p = img + ((size_t)y * g->in_w + x) * cb;
                        for (int b = 0; b < cb; b++) o[b] &= p[b];   /* -1 (bit 1) survives only if all are -1 */
                    }
                if (g->c % 8) o[cb - 1] &= (uint8_t)((1u << (g->c % 8)) - 1);
            }
        });
}

void bnn_global_avgpool(const int8_t *in, int8_t *out, int n, int32_t hw, int32_t c, int32_t m,
                        int32_t shift, int32_t lo, int32_t hi) {
    int64_t rnd = bnn_round_of(shift);
    /* pixels outer, a block of channels inner: the sums walk the tensor in
     * memory order (not with a stride of c per channel) and the inner loop
     * vectorizes; int32 sums are exact: GlobalAvgPool
     * refuses more than 2^24 pixels (-2^31 <= sum < 2^31) */
    enum { BLOCK = 256 };
    int32_t acc[BLOCK];
    for (int i = 0; i < n; i++) {
        const int8_t *img = in + (size_t)i * hw * c;
        for (int32_t c0 = 0; c0 < c; c0 += BLOCK) {
            int32_t nc = c - c0 < BLOCK ? c - c0 : BLOCK;
            for (int32_t ch = 0; ch < nc; ch++) acc[ch] = 0;
            for (int32_t j = 0; j < hw; j++) {
                const int8_t *p = img + (size_t)j * c + c0;
                for (int32_t ch = 0; ch < nc; ch++) acc[ch] += p[ch];
            }
            for (int32_t ch = 0; ch < nc; ch++) {
                int64_t v = bnn_requant(acc[ch], m, rnd, shift);
                out[(size_t)i * c + c0 + ch] = (int8_t)(v < lo ? lo : v > hi ? hi : v);
            }
        }
    }
}
