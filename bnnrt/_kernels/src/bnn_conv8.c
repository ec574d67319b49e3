/* int8 convolution (stem, skip path, dense head), int32 accumulation, zero
 * padding, fused epilogue (bnn_epilogue.h).
 *
 * Same data flow as the binary convolution (bnn_bconv.c): the image is copied
 * into a padded buffer, a window reads contiguous "rows" of kw*cin bytes, and
 * weights are repacked once into rows of 4-byte words interleaved 16 output
 * channels per group: w[group][row][word][lane][4].
 * The buffer holds x + 128 as unsigned bytes (pads: 128, i.e. x = 0), which is
 * what VNNI's u8 x s8 dot product (vpdpbusd) takes; the 128 * sum(w) it adds
 * per channel is subtracted once. Bytes a row reads past its end meet zero
 * weights and add nothing.
 */
#include "bnn_conv.h"

#ifdef _OPENMP
#include <omp.h>
#endif

struct bnn_conv8 {
    bnn_conv_geom g;
    bnn_epi e;
    int32_t nrows, row_bytes, rw, groups, hp, wp, rs;
    int32_t *roff;      /* [nrows] byte offset of each row from the window origin */
    int8_t *w;          /* [groups][nrows][rw][16][4] */
    int64_t *corr;      /* [groups*16]: 128 * sum of the channel's weights */
    int32_t *corr32;    /* the same in int32 (exact when e.lanes32: |corr| <= 2^14 K < 2^31) */
    int variant;
    /* AVX2 variant: int16 activations (vpmaddwd is exact where vpmaddubsw
     * would saturate: 255 * 128 * 2 > 32767), pairs of taps per 32-bit lane */
    int32_t rw2, rs16, groups8;
    int16_t *w16;       /* [groups8][nrows][rw2][8][2] */
};

void bnn_conv8_free(bnn_conv8 *k) {
    if (!k) return;
    free(k->roff); free(k->w); free(k->corr); free(k->corr32); free(k->w16);
    bnn_epi_free(&k->e);
    free(k);
}

const char *bnn_conv8_variant(const bnn_conv8 *k) { return bnn_variant_names[k->variant]; }

bnn_conv8 *bnn_conv8_create(const bnn_conv_geom *g, const int8_t *weights, const bnn_epilogue *e,
                            int variant) {
    /* the SIMD sums reach 255 * 128 * K in int32 lanes: beyond int32 for K > 65535 */
    int64_t K = (int64_t)g->kh * g->kw * g->cin;
    variant = bnn_select(BNN_FAMILY_CONV2D_INT8, variant, K <= 65535);
    if (variant < 0) return NULL;
    bnn_conv8 *k = (bnn_conv8 *)calloc(1, sizeof(*k));
    if (!k) return NULL;
    k->g = *g;
    k->variant = variant;
    int contiguous = g->dw == 1;
    k->nrows = contiguous ? g->kh : g->kh * g->kw;
    k->row_bytes = contiguous ? g->kw * g->cin : g->cin;
    k->rw = (k->row_bytes + 3) / 4;
    k->groups = (g->cout + 15) / 16;
    k->hp = (g->out_h - 1) * g->sh + (g->kh - 1) * g->dh + 1;
    k->wp = (g->out_w - 1) * g->sw + (g->kw - 1) * g->dw + 1;
    k->rs = (k->wp * g->cin + 4 + 63) / 64 * 64;
    size_t wbytes = (size_t)k->groups * k->nrows * k->rw * 64;
    k->roff = (int32_t *)calloc(k->nrows, sizeof(int32_t));
    k->w = (int8_t *)aligned_alloc(64, (wbytes + 63) / 64 * 64);
    k->corr = (int64_t *)calloc((size_t)k->groups * 16, sizeof(int64_t));
    k->corr32 = (int32_t *)calloc((size_t)k->groups * 16, sizeof(int32_t));
    if (!k->roff || !k->w || !k->corr || !k->corr32 || bnn_epi_init(&k->e, e, g->cout, K * 128 * 128)) {
        bnn_conv8_free(k);
        return NULL;
    }
    for (int r = 0; r < k->nrows; r++) {
        int ky = contiguous ? r : r / g->kw, kx = contiguous ? 0 : r % g->kw;
        k->roff[r] = ky * g->dh * k->rs + kx * g->dw * g->cin;
    }
    memset(k->w, 0, wbytes);
    for (int c = 0; c < g->cout; c++) {
        const int8_t *wc = weights + (size_t)c * g->kh * g->kw * g->cin;
        int64_t sum = 0;
        for (int r = 0; r < k->nrows; r++)
            for (int b = 0; b < k->row_bytes; b++) {
                int8_t v = wc[(size_t)r * k->row_bytes + b];
                sum += v;
                k->w[((((size_t)(c / 16) * k->nrows + r) * k->rw + b / 4) * 16 + c % 16) * 4 + b % 4] = v;
            }
        k->corr[c] = 128 * sum;
        k->corr32[c] = (int32_t)(k->e.lanes32 ? k->corr[c] : 0);
    }
    if (variant == BNN_VARIANT_AVX2) {
        k->rw2 = (k->row_bytes + 1) / 2;
        k->groups8 = (g->cout + 7) / 8;
        k->rs16 = ((k->wp * g->cin + 2) + 31) / 32 * 32;
        size_t n16 = (size_t)k->groups8 * k->nrows * k->rw2 * 16;
        k->w16 = (int16_t *)aligned_alloc(64, (n16 * 2 + 63) / 64 * 64);
        if (!k->w16) { bnn_conv8_free(k); return NULL; }
        memset(k->w16, 0, n16 * 2);
        for (int r = 0; r < k->nrows; r++) {
            int ky = contiguous ? r : r / g->kw, kx = contiguous ? 0 : r % g->kw;
            k->roff[r] = ky * g->dh * k->rs16 + kx * g->dw * g->cin;     /* in int16 elements */
        }
        for (int c = 0; c < g->cout; c++)
            for (int r = 0; r < k->nrows; r++)
                for (int b = 0; b < k->row_bytes; b++)
                    k->w16[((((size_t)(c / 8) * k->nrows + r) * k->rw2 + b / 2) * 8 + c % 8) * 2 + b % 2] =
                        weights[((size_t)c * k->nrows + r) * k->row_bytes + b];
    }
    return k;
}

/* Row r of an image's padded buffer, holding x + 128 (pads 128: x = 0). Per
 * row, so that the threads share a single image's padding; with a 1-row
 * kernel at stride sh > 1 only every sh-th row is ever read. */
static void pad_row8(const bnn_conv8 *k, const int8_t *img, uint8_t *buf, int r) {
    const bnn_conv_geom *g = &k->g;
    if (g->kh == 1 && g->sh > 1 && r % g->sh) return;
    /* locals: a byte store may alias the geometry, which would reload it per byte */
    const size_t rs = (size_t)k->rs;
    uint8_t *restrict dst = buf + (size_t)r * rs;
    memset(dst, 128, rs);
    int ncols = g->in_w < k->wp - g->pad_left ? g->in_w : k->wp - g->pad_left;
    int iy = r - g->pad_top;
    if (ncols <= 0 || iy < 0 || iy >= g->in_h) return;
    const size_t n = (size_t)ncols * g->cin;
    const int8_t *restrict src = img + (size_t)iy * g->in_w * g->cin;
    dst += (size_t)g->pad_left * g->cin;
    for (size_t i = 0; i < n; i++) dst[i] = (uint8_t)(src[i] ^ 0x80);
}

static void row_scalar8(const bnn_conv8 *k, const uint8_t *buf, int oy, size_t out_row, void *out,
                        const int8_t *skip, int64_t *y) {
    const bnn_conv_geom *g = &k->g;
    size_t nl = (size_t)k->groups * 16;
    for (int ox = 0; ox < g->out_w; ox++) {
        const uint8_t *org = buf + (size_t)oy * g->sh * k->rs + (size_t)ox * g->sw * g->cin;
        for (size_t c = 0; c < nl; c++) y[c] = -k->corr[c];
        for (int r = 0; r < k->nrows; r++) {
            const uint8_t *row = org + k->roff[r];
            for (int j = 0; j < k->rw; j++) {
                const uint8_t *a = row + 4 * j;
                for (int grp = 0; grp < k->groups; grp++) {
                    const int8_t *w = k->w + (((size_t)grp * k->nrows + r) * k->rw + j) * 64;
                    int64_t *yy = y + grp * 16;
                    for (int l = 0; l < 16; l++)
                        yy[l] += a[0] * w[4 * l] + a[1] * w[4 * l + 1] + a[2] * w[4 * l + 2] + a[3] * w[4 * l + 3];
                }
            }
        }
        bnn_epi_pixel(&k->e, y, out_row + ox, out, skip);
    }
}

#ifdef BNN_X86
static void pad_image16(const bnn_conv8 *k, const int8_t *img, int16_t *buf) {
    const bnn_conv_geom *g = &k->g;
    memset(buf, 0, (size_t)k->hp * k->rs16 * sizeof(int16_t));
    int ncols = g->in_w < k->wp - g->pad_left ? g->in_w : k->wp - g->pad_left;
    if (ncols <= 0) return;
    for (int r = 0; r < k->hp; r++) {
        int iy = r - g->pad_top;
        if (iy < 0 || iy >= g->in_h) continue;
        const int8_t *src = img + (size_t)iy * g->in_w * g->cin;
        int16_t *dst = buf + (size_t)r * k->rs16 + (size_t)g->pad_left * g->cin;
        for (size_t i = 0; i < (size_t)ncols * g->cin; i++) dst[i] = src[i];
    }
}

/* AVX2: 8 int32 lanes = 8 output channels; each lane sums pairs of taps with
 * vpmaddwd; 4 pixels share each weight load. int8 outputs whose requantized
 * values fit int32 (e.lanes32) take the epilogue in the registers
 * (bnn_epi_i8x8_avx2), the others the scalar one. */
BNN_AVX2 static void row_avx2_8(const bnn_conv8 *k, const int16_t *buf, int oy, size_t out_row,
                                void *out, const int8_t *skip, int64_t *y /* [4][groups8*8] */) {
    const bnn_conv_geom *g = &k->g;
    enum { P = 4 };
    const size_t pstride = (size_t)g->sw * g->cin, nl = (size_t)k->groups8 * 8;
    const int vec = k->e.kind == BNN_OUT_INT8 && k->e.lanes32;
    for (int ox0 = 0; ox0 < g->out_w; ox0 += P) {
        int np = g->out_w - ox0 < P ? g->out_w - ox0 : P;
        const int16_t *org = buf + (size_t)oy * g->sh * k->rs16 + (size_t)ox0 * pstride;
        for (int q = 0; q < k->groups8; q++) {
            __m256i acc[P];
            for (int p = 0; p < P; p++) acc[p] = _mm256_setzero_si256();
            for (int r = 0; r < k->nrows; r++) {
                const int16_t *row = org + k->roff[r];
                const int16_t *w = k->w16 + ((size_t)q * k->nrows + r) * k->rw2 * 16;
                for (int j = 0; j < k->rw2; j++) {
                    __m256i wv = _mm256_load_si256((const __m256i *)(w + 16 * j));
                    for (int p = 0; p < np; p++) {
                        __m256i a = _mm256_set1_epi32((int)bnn_load32((const uint8_t *)(row + p * pstride + 2 * j)));
                        acc[p] = _mm256_add_epi32(acc[p], _mm256_madd_epi16(a, wv));
                    }
                }
            }
            if (vec) {
                for (int p = 0; p < np; p++) bnn_epi_i8x8_avx2(&k->e, acc[p], q * 8, out_row + ox0 + p, out, skip);
                continue;
            }
            for (int p = 0; p < np; p++) {
                __m256i lo = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(acc[p]));
                __m256i hi = _mm256_cvtepi32_epi64(_mm256_extracti128_si256(acc[p], 1));
                _mm256_storeu_si256((__m256i *)(y + p * nl + q * 8), lo);
                _mm256_storeu_si256((__m256i *)(y + p * nl + q * 8 + 4), hi);
            }
        }
        if (!vec)
            for (int p = 0; p < np; p++) bnn_epi_pixel(&k->e, y + p * nl, out_row + ox0 + p, out, skip);
    }
}

BNN_AVX512_VNNI static inline __attribute__((always_inline)) void
block8_avx512(const bnn_conv8 *k, const uint8_t *buf, int oy, int ox0, int grp0, size_t out_row,
              void *out, const int8_t *skip, const int P, const int G) {
    const bnn_conv_geom *g = &k->g;
    __m512i acc[8][4];
    const uint8_t *org = buf + (size_t)oy * g->sh * k->rs + (size_t)ox0 * g->sw * g->cin;
    const size_t pstride = (size_t)g->sw * g->cin;
    const size_t gstride = (size_t)k->nrows * k->rw * 64;
#pragma GCC unroll 8
    for (int p = 0; p < P; p++)
#pragma GCC unroll 4
        for (int q = 0; q < G; q++) acc[p][q] = _mm512_setzero_si512();
    for (int r = 0; r < k->nrows; r++) {
        const uint8_t *row = org + k->roff[r];
        const int8_t *w = k->w + ((size_t)grp0 * k->nrows + r) * k->rw * 64;
        for (int j = 0; j < k->rw; j++) {
            __m512i wv[4];
#pragma GCC unroll 4
            for (int q = 0; q < G; q++) wv[q] = _mm512_load_si512(w + q * gstride + j * 64);
#pragma GCC unroll 8
            for (int p = 0; p < P; p++) {
                __m512i a = _mm512_set1_epi32((int)bnn_load32(row + p * pstride + 4 * j));
#pragma GCC unroll 4
                for (int q = 0; q < G; q++) acc[p][q] = _mm512_dpbusd_epi32(acc[p][q], a, wv[q]);
            }
        }
    }
#pragma GCC unroll 8
    for (int p = 0; p < P; p++)
#pragma GCC unroll 4
        for (int q = 0; q < G; q++) {
            int c0 = (grp0 + q) * 16;
            if (k->e.lanes32) {     /* int8 output, y = acc - corr fits int32: no widening */
                bnn_epi_i8x16_avx512(&k->e, _mm512_sub_epi32(acc[p][q], _mm512_loadu_si512(k->corr32 + c0)),
                                     c0, out_row + ox0 + p, out, skip);
                continue;
            }
            __m512i lo = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(acc[p][q]));
            __m512i hi = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(acc[p][q], 1));
            lo = _mm512_sub_epi64(lo, _mm512_loadu_si512(k->corr + c0));
            hi = _mm512_sub_epi64(hi, _mm512_loadu_si512(k->corr + c0 + 8));
            if (k->e.fast16) {      /* int8 output: all 16 channels in one pass */
                bnn_epi16i8_avx512(&k->e, lo, hi, c0, out_row + ox0 + p, out, skip);
                continue;
            }
            bnn_epi8_avx512(&k->e, lo, c0, out_row + ox0 + p, out, skip);
            if (c0 + 8 < g->cout) bnn_epi8_avx512(&k->e, hi, c0 + 8, out_row + ox0 + p, out, skip);
        }
}

BNN_AVX512_VNNI static void row_avx512_8(const bnn_conv8 *k, const uint8_t *buf, int oy, size_t out_row,
                                         void *out, const int8_t *skip) {
    int ow = k->g.out_w;
    for (int grp = 0; grp < k->groups; grp += 4) {
        int G = k->groups - grp < 4 ? k->groups - grp : 4;
        int ox = 0;
#define BNN_BLOCKS(P, G)                                                                \
    for (; ox + P <= ow; ox += P) block8_avx512(k, buf, oy, ox, grp, out_row, out, skip, P, G); \
    for (; ox < ow; ox++) block8_avx512(k, buf, oy, ox, grp, out_row, out, skip, 1, G);
        BNN_GROUP_SWITCH(G, BNN_BLOCKS, 8, 8, 6, 6)
#undef BNN_BLOCKS
    }
}
#endif

#ifdef BNN_ARM
/* ---- NEON kernels ------------------------------------------------------------
 * Both read the u8 buffer (x + 128) and flip it back to signed x with one
 * scalar XOR per 4-byte word before broadcasting it, so no correction term is
 * needed. A weight register holds 4 output channels x 4 taps (the repacked
 * layout); P pixels share each weight load; scalar epilogue. */
static inline int8x16_t bcast_signed(const uint8_t *p) {
    return vreinterpretq_s8_u32(vdupq_n_u32(bnn_load32(p) ^ 0x80808080u));
}

/* Plain NEON: vmull_s8 (int8 x int8 -> int16, exact) then vpadal into int32
 * lanes holding pairs of taps; a final vpadd folds the pairs per channel. */
enum { NEON8_P = 2, DOT_P = 4 };

/* one row of rw words for np pixels (np constant after inlining: unrolled) */
static inline __attribute__((always_inline)) void
words_neon8(const uint8_t *row, const int8_t *w, size_t pstride, int rw, int32x4_t acc[NEON8_P][8], const int np) {
    for (int j = 0; j < rw; j++) {
        int8x16_t wv[4];
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) wv[q] = vld1q_s8(w + 64 * j + 16 * q);
#pragma GCC unroll 2
        for (int p = 0; p < np; p++) {
            int8x16_t a = bcast_signed(row + p * pstride + 4 * j);
#pragma GCC unroll 4
            for (int q = 0; q < 4; q++) {
                acc[p][2 * q] = vpadalq_s16(acc[p][2 * q], vmull_s8(vget_low_s8(a), vget_low_s8(wv[q])));
                acc[p][2 * q + 1] = vpadalq_s16(acc[p][2 * q + 1], vmull_high_s8(a, wv[q]));
            }
        }
    }
}

BNN_DOTPROD static inline __attribute__((always_inline)) void
words_dot8(const uint8_t *row, const int8_t *w, size_t pstride, int rw, int32x4_t acc[DOT_P][4], const int np) {
    for (int j = 0; j < rw; j++) {
        int8x16_t wv[4];
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) wv[q] = vld1q_s8(w + 64 * j + 16 * q);
#pragma GCC unroll 4
        for (int p = 0; p < np; p++) {
            int8x16_t a = bcast_signed(row + p * pstride + 4 * j);
#pragma GCC unroll 4
            for (int q = 0; q < 4; q++) acc[p][q] = vdotq_s32(acc[p][q], a, wv[q]);
        }
    }
}
/* One output row for every group of 16 channels, P pixels at a time: the
 * accumulators of a group (NACC per pixel) stay in registers across the
 * window, WORDS adds one row of taps, SUM4(acc, q) gives channels 4q..4q+3.
 * The plain NEON and the SDOT kernels are this row, instantiated twice. */
#define BNN_CONV8_ROW_NEON(NAME, ATTR, P, NACC, WORDS, SUM4)                                             \
ATTR static void NAME(const bnn_conv8 *k, const uint8_t *buf, int oy, size_t out_row, void *out,           \
                      const int8_t *skip, int64_t *y /* [4][groups*16] */) {                                \
    const bnn_conv_geom *g = &k->g;                                                                       \
    const size_t pstride = (size_t)g->sw * g->cin, nl = (size_t)k->groups * 16;                           \
    for (int ox0 = 0; ox0 < g->out_w; ox0 += P) {                                                         \
        int np = g->out_w - ox0 < P ? g->out_w - ox0 : P;                                                 \
        const uint8_t *org = buf + (size_t)oy * g->sh * k->rs + (size_t)ox0 * pstride;                   \
        for (int grp = 0; grp < k->groups; grp++) {                                                       \
            int32x4_t acc[P][NACC];                                                                       \
            for (int p = 0; p < P; p++)                                                                   \
                for (int q = 0; q < NACC; q++) acc[p][q] = vdupq_n_s32(0);                                \
            for (int r = 0; r < k->nrows; r++) {                                                          \
                const uint8_t *row = org + k->roff[r];                                                    \
                const int8_t *w = k->w + ((size_t)grp * k->nrows + r) * k->rw * 64;                       \
                if (np == P) WORDS(row, w, pstride, k->rw, acc, P);                                       \
                else WORDS(row, w, pstride, k->rw, acc, np);                                              \
            }                                                                                             \
            for (int p = 0; p < np; p++)                                                                  \
                for (int q = 0; q < 4; q++) {                                                             \
                    int32x4_t s = SUM4(acc[p], q);                                                        \
                    int64_t *yy = y + p * nl + grp * 16 + 4 * q;                                          \
                    vst1q_s64(yy, vmovl_s32(vget_low_s32(s)));                                            \
                    vst1q_s64(yy + 2, vmovl_high_s32(s));                                                 \
                }                                                                                         \
        }                                                                                                 \
        for (int p = 0; p < np; p++) bnn_epi_pixel_neon(&k->e, y + p * nl, out_row + ox0 + p, out, skip); \
    }                                                                                                     \
}

/* plain NEON: lanes hold pairs of taps of two channels, a pairwise add folds them */
#define BNN_SUM4_PAIRS(a, q) vpaddq_s32((a)[2 * (q)], (a)[2 * (q) + 1])
/* SDOT: one lane per channel already */
#define BNN_SUM4_LANES(a, q) ((a)[q])
BNN_CONV8_ROW_NEON(row_neon8, , NEON8_P, 8, words_neon8, BNN_SUM4_PAIRS)
/* Armv8.2 dot product: one SDOT adds 4 taps into each of 4 channel lanes. */
BNN_CONV8_ROW_NEON(row_dot8, BNN_DOTPROD, DOT_P, 4, words_dot8, BNN_SUM4_LANES)
#endif

/* The work of one call (see bconv_work): pad, then every output row. */
static void conv8_work(const bnn_conv8 *k, const int8_t *in, void *out, const int8_t *skip, int n,
                       uint8_t *bufs, size_t buf_bytes, int64_t *scratch, size_t per_thread) {
    const bnn_conv_geom *g = &k->g;
    size_t img_bytes = (size_t)g->in_h * g->in_w * g->cin;
#ifdef BNN_X86
    int wide = k->variant == BNN_VARIANT_AVX2;          /* int16 buffer */
#endif
    int rows = n * g->out_h;
#pragma omp for schedule(static)
    for (int pr = 0; pr < n * k->hp; pr++) {
        size_t i = (size_t)(pr / k->hp);
#ifdef BNN_X86
        if (wide) {
            if (pr % k->hp == 0) pad_image16(k, in + i * img_bytes, (int16_t *)(bufs + i * buf_bytes));
            continue;
        }
#endif
        pad_row8(k, in + i * img_bytes, bufs + i * buf_bytes, pr % k->hp);
    }
#ifdef _OPENMP
    int tid = omp_get_thread_num();
#else
    int tid = 0;
#endif
#pragma omp for schedule(static)
    for (int ri = 0; ri < rows; ri++) {
        int i = ri / g->out_h, oy = ri % g->out_h;
        const uint8_t *buf = bufs + (size_t)i * buf_bytes;
        size_t out_row = ((size_t)i * g->out_h + oy) * g->out_w;
        int64_t *mine = scratch + (size_t)tid * per_thread;
#ifdef BNN_X86
        if (k->variant == BNN_VARIANT_AVX512VNNI) { row_avx512_8(k, buf, oy, out_row, out, skip); continue; }
        if (wide) { row_avx2_8(k, (const int16_t *)buf, oy, out_row, out, skip, mine); continue; }
#endif
#ifdef BNN_ARM
        if (k->variant == BNN_VARIANT_DOTPROD) { row_dot8(k, buf, oy, out_row, out, skip, mine); continue; }
        if (k->variant == BNN_VARIANT_NEON) { row_neon8(k, buf, oy, out_row, out, skip, mine); continue; }
#endif
        row_scalar8(k, buf, oy, out_row, out, skip, mine);
    }
}

int bnn_conv8_run(const bnn_conv8 *k, const int8_t *in, void *out, const int8_t *skip, int n, int threads) {
    const bnn_conv_geom *g = &k->g;
    int wide = k->variant == BNN_VARIANT_AVX2;          /* int16 buffer */
    size_t buf_bytes = wide ? (size_t)k->hp * k->rs16 * sizeof(int16_t) : (size_t)k->hp * k->rs;
    if (threads < 1) threads = 1;
    uint8_t *bufs = (uint8_t *)aligned_alloc(64, ((size_t)n * buf_bytes + 63) / 64 * 64);
    size_t per_thread = (size_t)k->groups * 16 * 4;     /* up to 4 pixels of channel sums */
    int64_t *scratch = (int64_t *)malloc(sizeof(int64_t) * per_thread * threads);
    if (!bufs || !scratch) { free(bufs); free(scratch); return -1; }
    if (threads > 1 && n * g->out_h > 1) {
#pragma omp parallel num_threads(threads)
        conv8_work(k, in, out, skip, n, bufs, buf_bytes, scratch, per_thread);
    } else {
        conv8_work(k, in, out, skip, n, bufs, buf_bytes, scratch, per_thread);
    }
    free(scratch);
    free(bufs);
    return 0;
}
