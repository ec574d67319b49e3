/* Direct float32 convolution for the layers BLAS does badly: stems with few
 * input channels (7x7 over RGB: a GEMM with K = 147 and an im2col buffer 49x
 * the input) and depthwise convs (no GEMM at all). Dense convs accumulate
 * outer products of input pixels and weight rows in registers; depthwise ones
 * multiply channel vectors. Sums run in tap order, not numpy's, so results
 * match the reference within float rounding, not bit for bit. */
#include "bnn_fconv.h"

struct bnn_fconv {
    bnn_conv_geom g;
    int32_t groups, cin_g, per_group, cout16;   /* cout16: cout rounded up to 16 */
    float *w;            /* dense: [kh][kw][cin][cout16]; depthwise: [kh][kw][cout16] (zero padded) */
    float *bias;         /* [cout16] */
    float *zeros;        /* cin + 16 zeros: what a padded tap reads */
    float lo, hi;        /* the activation as a clamp */
    int variant;
    int narrow;          /* AVX-512 with <= 8 output channels: 8-lane blocks */
};

#define FB 16
typedef float v16f __attribute__((vector_size(64)));
typedef float v8f __attribute__((vector_size(32)));
typedef float v4f __attribute__((vector_size(16)));

/* ---- dense convs (groups == 1): register-blocked outer products ----------
 * A block of P neighbouring output pixels times NV vectors of L output
 * channels keeps P*NV accumulators in registers across every tap and input
 * channel. Per (tap, input channel) it loads NV weight vectors and broadcasts
 * P input values: NV + P loads feed P*NV fused multiply-adds, so the loop runs
 * at the FMA units' rate instead of the load ports' (the 7x7 RGB stem of
 * BiRealNet does 147 such steps per pixel). Block sizes fill the register
 * file: AVX-512 and NEON (32 registers) 4x6 or 2x12 or 1x12, AVX2 and SSE2 (16)
 * 2x5 or 1x8. A tap in the padding reads a row of zeros. The last block of a
 * row overlaps the previous one instead of falling back to single pixels
 * (recomputing a pixel writes the same value).
 * FMA here rounds once where numpy rounds twice: the kernel already sums in
 * another order than the reference, so results agree within float rounding,
 * which is the contract for float layers (numerics.md). */
/* The activation clamp and the store of a block's P x NV accumulators; a
 * partial last vector goes through a buffer. */
#define FCONV_STORE_BLOCK(VT, L, NV, P, CLAMP, STORE)                                                 \
    for (int p = 0; p < P; p++)                                                                       \
        for (int j = 0; j < NV; j++) {                                                                \
            const int c0 = cb + j * L;                                                                \
            const VT v = CLAMP(acc[p][j], vlo, vhi);                                                  \
            if (c0 + L <= cout) {                                                                     \
                STORE(out + (size_t)p * cout + c0, v);                                                \
            } else {                                                                                  \
                float t[L];                                                                           \
                STORE(t, v);                                                                          \
                for (int l = 0; l < cout - c0; l++) out[(size_t)p * cout + c0 + l] = t[l];            \
            }                                                                                         \
        }

/* One window row of a block whose windows lie inside the image: `run`
 * contiguous (tap, channel) inputs per pixel, pixel p's at x0 + p * STEP. */
#define FCONV_FLAT_RUN(VT, L, NV, P, LOAD, BCAST, FMA, STEP)                                          \
    for (int t = 0; t < run; t++, wt += c16) {                                                        \
        VT w[NV];                                                                                     \
        for (int j = 0; j < NV; j++) w[j] = LOAD(wt + j * L);                                         \
        for (int p = 0; p < P; p++) {                                                                 \
            const VT x = BCAST(x0[(size_t)p * (STEP) + t]);                                           \
            for (int j = 0; j < NV; j++) acc[p][j] = FMA(x, w[j], acc[p][j]);                         \
        }                                                                                             \
    }

#define FCONV_DENSE(NAME, VT, L, NV, P, LOAD, BCAST, FMA, CLAMP, STORE)                               \
static inline __attribute__((always_inline)) void NAME(const bnn_fconv *k, const float *in, float *out, \
                                                       int n, int oy, int ox, int cb, VT vlo, VT vhi) {  \
    const bnn_conv_geom *g = &k->g;                                                                   \
    const int cin = g->cin, c16 = k->cout16, cout = g->cout;                                          \
    VT acc[P][NV];                                                                                    \
    for (int j = 0; j < NV; j++) {                                                                    \
        VT b = LOAD(k->bias + cb + j * L);                                                            \
        for (int p = 0; p < P; p++) acc[p][j] = b;                                                    \
    }                                                                                                 \
    /* a block whose windows lie inside the row reads each window row as one   \
       run of kw * cin floats (the weights are stored in that order too) */      \
    const int x_first = ox * g->sw - g->pad_left;                                                     \
    const int flat = g->dw == 1 && x_first >= 0 && x_first + (P - 1) * g->sw + g->kw <= g->in_w;     \
    for (int ky = 0; ky < g->kh; ky++) {                                                              \
        const int iy = oy * g->sh - g->pad_top + ky * g->dh;                                          \
        if (iy < 0 || iy >= g->in_h) continue;                                                        \
        const float *row = in + ((size_t)n * g->in_h + iy) * g->in_w * cin;                           \
        if (flat) {                                                                                   \
            const float *x0 = row + (size_t)x_first * cin;                                            \
            const float *wt = k->w + (size_t)ky * g->kw * cin * c16 + cb;                             \
            const int run = g->kw * cin, step = g->sw * cin;                                          \
            /* pixel p's run starts at x0 + p * step: a constant step for RGB    \
               stems (stride 1 or 2) makes every input one base register plus   \
               a displacement, instead of P pointers that spill */               \
            if (step == 6) FCONV_FLAT_RUN(VT, L, NV, P, LOAD, BCAST, FMA, 6)                          \
            else if (step == 3) FCONV_FLAT_RUN(VT, L, NV, P, LOAD, BCAST, FMA, 3)                     \
            else FCONV_FLAT_RUN(VT, L, NV, P, LOAD, BCAST, FMA, step)                                 \
            continue;                                                                                 \
        }                                                                                             \
        for (int kx = 0; kx < g->kw; kx++) {                                                          \
            const float *xp[P];                                                                       \
            for (int p = 0; p < P; p++) {                                                             \
                const int ix = (ox + p) * g->sw - g->pad_left + kx * g->dw;                           \
                xp[p] = (ix >= 0 && ix < g->in_w) ? row + (size_t)ix * cin : k->zeros;                \
            }                                                                                         \
            const float *wt = k->w + ((size_t)ky * g->kw + kx) * cin * c16 + cb;                      \
            for (int ci = 0; ci < cin; ci++, wt += c16) {                                             \
                VT w[NV];                                                                             \
                for (int j = 0; j < NV; j++) w[j] = LOAD(wt + j * L);                                 \
                for (int p = 0; p < P; p++) {                                                         \
                    const VT x = BCAST(xp[p][ci]);                                                    \
                    for (int j = 0; j < NV; j++) acc[p][j] = FMA(x, w[j], acc[p][j]);                 \
                }                                                                                     \
            }                                                                                         \
        }                                                                                             \
    }                                                                                                 \
    FCONV_STORE_BLOCK(VT, L, NV, P, CLAMP, STORE)                                                     \
}

/* One row's pixels in blocks of P (the last one overlapping), for the
 * channel block starting at cb. */
#define FCONV_DENSE_SPAN(BLOCK, BLOCK1, P)                                                            \
    if (g->out_w >= (P)) {                                                                            \
        for (int ox = 0; ox < g->out_w; ox += (P)) {                                                  \
            const int x0 = ox + (P) <= g->out_w ? ox : g->out_w - (P);                                \
            BLOCK(k, in, o + (size_t)x0 * g->cout, b, oy, x0, cb, vlo, vhi);                          \
        }                                                                                             \
    } else {                                                                                          \
        for (int ox = 0; ox < g->out_w; ox++)                                                         \
            BLOCK1(k, in, o + (size_t)ox * g->cout, b, oy, ox, cb, vlo, vhi);                         \
    }

/* A dense row with up to three channel-block widths (NV = 4, 2, 1 vectors; a
 * target with 16 registers passes 0 for the 4-wide one). */
#define FCONV_DENSE_ROW(VT, L, SPLAT, B4, B4_1, P4, B2, B2_1, P2, B1, B1_1, P1)                       \
    const bnn_conv_geom *g = &k->g;                                                                   \
    const int b = (int)(r / g->out_h), oy = (int)(r % g->out_h);                                      \
    float *o = out + (size_t)r * g->out_w * g->cout;                                                  \
    const VT vlo = SPLAT(k->lo), vhi = SPLAT(k->hi);                                                  \
    const int nvec = (g->cout + L - 1) / L;                                                           \
    for (int v = 0; v < nvec;) {                                                                      \
        const int cb = v * L, left = nvec - v;                                                        \
        if (P4 && left >= 4) { FCONV_DENSE_SPAN(B4, B4_1, P4) v += 4; }                               \
        else if (left >= 2) { FCONV_DENSE_SPAN(B2, B2_1, P2) v += 2; }                                \
        else { FCONV_DENSE_SPAN(B1, B1_1, P1) v += 1; }                                               \
    }

/* portable: GCC vector types, separate multiply and add (SSE2 has no FMA) */
#define V4_LOAD(p) ({ v4f v_; memcpy(&v_, (p), sizeof v_); v_; })
#define V4_STORE(p, v) do { v4f s_ = (v); memcpy((p), &s_, sizeof s_); } while (0)
#define V4_SPLAT(s) ((v4f){0, 0, 0, 0} + (s))
#define V4_MULADD(x, w, a) ((a) + (x) * (w))
#define V4_LOADN(p, n) ({ v4f v_ = {0, 0, 0, 0}; memcpy(&v_, (p), (size_t)(n) * sizeof(float)); v_; })
#define V4_CLAMP(v, lo, hi) ({ v4f c_ = (v); float t_[4]; memcpy(t_, &c_, sizeof t_);           \
        for (int i_ = 0; i_ < 4; i_++) t_[i_] = t_[i_] < (lo)[i_] ? (lo)[i_] : (t_[i_] > (hi)[i_] ? (hi)[i_] : t_[i_]); \
        memcpy(&c_, t_, sizeof c_); c_; })

#ifdef BNN_ARM
/* NEON: 32 registers and a fused multiply-add, blocked like AVX-512 */
#define N_LOAD(p) vld1q_f32(p)
#define N_STORE(p, v) vst1q_f32((p), (v))
#define N_SPLAT(s) vdupq_n_f32(s)
#define N_FMA(x, w, a) vfmaq_f32((a), (x), (w))
#define N_LOADN(p, n) ({ float t_[4] = {0, 0, 0, 0}; memcpy(t_, (p), (size_t)(n) * sizeof(float)); vld1q_f32(t_); })
#define N_CLAMP(v, lo, hi) vbslq_f32(vcgtq_f32((v), (hi)), (hi), vbslq_f32(vcltq_f32((v), (lo)), (lo), (v)))
FCONV_DENSE(fdense_n4x6, float32x4_t, 4, 4, 6, N_LOAD, N_SPLAT, N_FMA, N_CLAMP, N_STORE)
FCONV_DENSE(fdense_n4x1, float32x4_t, 4, 4, 1, N_LOAD, N_SPLAT, N_FMA, N_CLAMP, N_STORE)
FCONV_DENSE(fdense_n2x12, float32x4_t, 4, 2, 12, N_LOAD, N_SPLAT, N_FMA, N_CLAMP, N_STORE)
FCONV_DENSE(fdense_n2x1, float32x4_t, 4, 2, 1, N_LOAD, N_SPLAT, N_FMA, N_CLAMP, N_STORE)
FCONV_DENSE(fdense_n1x12, float32x4_t, 4, 1, 12, N_LOAD, N_SPLAT, N_FMA, N_CLAMP, N_STORE)
FCONV_DENSE(fdense_n1x1, float32x4_t, 4, 1, 1, N_LOAD, N_SPLAT, N_FMA, N_CLAMP, N_STORE)
static void fdense_row_neon(const bnn_fconv *k, const float *in, float *out, long r) {
    FCONV_DENSE_ROW(float32x4_t, 4, N_SPLAT, fdense_n4x6, fdense_n4x1, 6, fdense_n2x12, fdense_n2x1, 12,
                    fdense_n1x12, fdense_n1x1, 12)
}
#endif
/* the portable variant (SSE2 on x86, the compiler's choice elsewhere) */
FCONV_DENSE(fdense_v2x5, v4f, 4, 2, 5, V4_LOAD, V4_SPLAT, V4_MULADD, V4_CLAMP, V4_STORE)
FCONV_DENSE(fdense_v2x1, v4f, 4, 2, 1, V4_LOAD, V4_SPLAT, V4_MULADD, V4_CLAMP, V4_STORE)
FCONV_DENSE(fdense_v1x8, v4f, 4, 1, 8, V4_LOAD, V4_SPLAT, V4_MULADD, V4_CLAMP, V4_STORE)
FCONV_DENSE(fdense_v1x1, v4f, 4, 1, 1, V4_LOAD, V4_SPLAT, V4_MULADD, V4_CLAMP, V4_STORE)
static void fdense_row_scalar(const bnn_fconv *k, const float *in, float *out, long r) {
    FCONV_DENSE_ROW(v4f, 4, V4_SPLAT, fdense_v2x5, fdense_v2x1, 0, fdense_v2x5, fdense_v2x1, 5,
                    fdense_v1x8, fdense_v1x1, 8)
}

#ifdef BNN_X86
#define A2_LOAD(p) _mm256_loadu_ps(p)
#define A2_STORE(p, v) _mm256_storeu_ps((p), (v))
#define A2_SPLAT(s) _mm256_set1_ps(s)
#define A2_FMA(x, w, a) _mm256_fmadd_ps((x), (w), (a))
#define A2_LOADN(p, n) _mm256_maskload_ps((p), _mm256_cmpgt_epi32(_mm256_set1_epi32(n),                   \
                                                                  _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)))
/* max(lo, v) and min(hi, .) return v when it is NaN (the second operand wins) */
#define A2_CLAMP(v, lo, hi) _mm256_min_ps((hi), _mm256_max_ps((lo), (v)))
#define BNN_AVX2_FMA __attribute__((target("avx2,fma")))
#define A5_LOAD(p) _mm512_loadu_ps(p)
#define A5_STORE(p, v) _mm512_storeu_ps((p), (v))
#define A5_SPLAT(s) _mm512_set1_ps(s)
#define A5_FMA(x, w, a) _mm512_fmadd_ps((x), (w), (a))
#define A5_LOADN(p, n) _mm512_maskz_loadu_ps((__mmask16)((1u << (n)) - 1), (p))
#define A5_CLAMP(v, lo, hi) _mm512_min_ps((hi), _mm512_max_ps((lo), (v)))

#define FCONV_DENSE_AT(ATTR, ...) ATTR FCONV_DENSE(__VA_ARGS__)
FCONV_DENSE_AT(BNN_AVX2_FMA, fdense_a2_2x5, __m256, 8, 2, 5, A2_LOAD, A2_SPLAT, A2_FMA, A2_CLAMP, A2_STORE)
FCONV_DENSE_AT(BNN_AVX2_FMA, fdense_a2_2x4, __m256, 8, 2, 4, A2_LOAD, A2_SPLAT, A2_FMA, A2_CLAMP, A2_STORE)
FCONV_DENSE_AT(BNN_AVX2_FMA, fdense_a2_2x1, __m256, 8, 2, 1, A2_LOAD, A2_SPLAT, A2_FMA, A2_CLAMP, A2_STORE)
FCONV_DENSE_AT(BNN_AVX2_FMA, fdense_a2_1x8, __m256, 8, 1, 8, A2_LOAD, A2_SPLAT, A2_FMA, A2_CLAMP, A2_STORE)
FCONV_DENSE_AT(BNN_AVX2_FMA, fdense_a2_1x1, __m256, 8, 1, 1, A2_LOAD, A2_SPLAT, A2_FMA, A2_CLAMP, A2_STORE)
FCONV_DENSE_AT(BNN_AVX512_BASE, fdense_a5_4x6, __m512, 16, 4, 6, A5_LOAD, A5_SPLAT, A5_FMA, A5_CLAMP, A5_STORE)
FCONV_DENSE_AT(BNN_AVX512_BASE, fdense_a5_4x1, __m512, 16, 4, 1, A5_LOAD, A5_SPLAT, A5_FMA, A5_CLAMP, A5_STORE)
FCONV_DENSE_AT(BNN_AVX512_BASE, fdense_a5_2x12, __m512, 16, 2, 12, A5_LOAD, A5_SPLAT, A5_FMA, A5_CLAMP, A5_STORE)
FCONV_DENSE_AT(BNN_AVX512_BASE, fdense_a5_2x1, __m512, 16, 2, 1, A5_LOAD, A5_SPLAT, A5_FMA, A5_CLAMP, A5_STORE)
FCONV_DENSE_AT(BNN_AVX512_BASE, fdense_a5_1x12, __m512, 16, 1, 12, A5_LOAD, A5_SPLAT, A5_FMA, A5_CLAMP, A5_STORE)
FCONV_DENSE_AT(BNN_AVX512_BASE, fdense_a5_1x1, __m512, 16, 1, 1, A5_LOAD, A5_SPLAT, A5_FMA, A5_CLAMP, A5_STORE)
/* eight or fewer output channels (a narrow stem) waste half of a 16-lane
 * vector: they take 8-lane ones, with AVX-512's 32 registers for 16 pixels
 * (every AVX-512 CPU has FMA; bnn_fconv_create checks it all the same) */
#define BNN_AVX512_FMA __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,popcnt,fma")))
FCONV_DENSE_AT(BNN_AVX512_FMA, fdense_a5y_1x16, __m256, 8, 1, 16, A2_LOAD, A2_SPLAT, A2_FMA, A2_CLAMP, A2_STORE)
FCONV_DENSE_AT(BNN_AVX512_FMA, fdense_a5y_1x1, __m256, 8, 1, 1, A2_LOAD, A2_SPLAT, A2_FMA, A2_CLAMP, A2_STORE)
BNN_AVX512_FMA static void fdense_row_avx512_narrow(const bnn_fconv *k, const float *in, float *out, long r) {
    FCONV_DENSE_ROW(__m256, 8, A2_SPLAT, fdense_a5y_1x16, fdense_a5y_1x1, 0, fdense_a5y_1x16, fdense_a5y_1x1, 16,
                    fdense_a5y_1x16, fdense_a5y_1x1, 16)
}
BNN_AVX2_FMA static void fdense_row_avx2(const bnn_fconv *k, const float *in, float *out, long r) {
    /* rows of a multiple of 4 pixels (16, 32: no multiple of 5) take blocks of
     * 4, which the 5-pixel blocks would cover with a quarter recomputed */
    if (k->g.out_w % 4 == 0 && k->g.out_w % 5 != 0) {
        FCONV_DENSE_ROW(__m256, 8, A2_SPLAT, fdense_a2_2x4, fdense_a2_2x1, 0, fdense_a2_2x4, fdense_a2_2x1, 4,
                        fdense_a2_1x8, fdense_a2_1x1, 8)
    } else {
        FCONV_DENSE_ROW(__m256, 8, A2_SPLAT, fdense_a2_2x5, fdense_a2_2x1, 0, fdense_a2_2x5, fdense_a2_2x1, 5,
                        fdense_a2_1x8, fdense_a2_1x1, 8)
    }
}
BNN_AVX512_BASE static void fdense_row_avx512(const bnn_fconv *k, const float *in, float *out, long r) {
    FCONV_DENSE_ROW(__m512, 16, A5_SPLAT, fdense_a5_4x6, fdense_a5_4x1, 6, fdense_a5_2x12, fdense_a5_2x1, 12,
                    fdense_a5_1x12, fdense_a5_1x1, 12)
}
#endif

/* ---- depthwise convs (one input channel per output channel) ---------------
 * Output channel c reads input channel c, so a vector of channels is a vector
 * of inputs: per tap, NV weight vectors and P*NV input vectors feed P*NV
 * fused multiply-adds, accumulated in registers as in the dense kernel (same
 * blocking, same overlapping last block). The last vector of a row of
 * channels may be partial: its input is read with a masked (or copied) load,
 * never past the pixel. Padded taps read zeros. */
#define FCONV_DWV(NAME, VT, L, NV, P, LOAD, LOADN, FMA, CLAMP, STORE)                                 \
static inline __attribute__((always_inline)) void NAME(const bnn_fconv *k, const float *in, float *out, \
                                                       int n, int oy, int ox, int cb, VT vlo, VT vhi) {  \
    const bnn_conv_geom *g = &k->g;                                                                   \
    const int cin = g->cin, c16 = k->cout16, cout = g->cout;                                          \
    VT acc[P][NV];                                                                                    \
    int left[NV];                                                                                     \
    for (int j = 0; j < NV; j++) {                                                                    \
        left[j] = cout - (cb + j * L);                                                                \
        VT b = LOAD(k->bias + cb + j * L);                                                            \
        for (int p = 0; p < P; p++) acc[p][j] = b;                                                    \
    }                                                                                                 \
    for (int ky = 0; ky < g->kh; ky++) {                                                              \
        const int iy = oy * g->sh - g->pad_top + ky * g->dh;                                          \
        if (iy < 0 || iy >= g->in_h) continue;                                                        \
        const float *row = in + ((size_t)n * g->in_h + iy) * g->in_w * cin;                           \
        for (int kx = 0; kx < g->kw; kx++) {                                                          \
            const float *xp[P];                                                                       \
            for (int p = 0; p < P; p++) {                                                             \
                const int ix = (ox + p) * g->sw - g->pad_left + kx * g->dw;                           \
                xp[p] = ((ix >= 0 && ix < g->in_w) ? row + (size_t)ix * cin : k->zeros) + cb;         \
            }                                                                                         \
            const float *wt = k->w + ((size_t)ky * g->kw + kx) * c16 + cb;                            \
            VT w[NV];                                                                                 \
            for (int j = 0; j < NV; j++) w[j] = LOAD(wt + j * L);                                     \
            for (int p = 0; p < P; p++)                                                               \
                for (int j = 0; j < NV; j++) {                                                        \
                    const VT x = left[j] >= L ? LOAD(xp[p] + j * L) : LOADN(xp[p] + j * L, left[j]);  \
                    acc[p][j] = FMA(x, w[j], acc[p][j]);                                              \
                }                                                                                     \
        }                                                                                             \
    }                                                                                                 \
    FCONV_STORE_BLOCK(VT, L, NV, P, CLAMP, STORE)                                                     \
}

#ifdef BNN_ARM
FCONV_DWV(fdwv_n4x6, float32x4_t, 4, 4, 6, N_LOAD, N_LOADN, N_FMA, N_CLAMP, N_STORE)
FCONV_DWV(fdwv_n4x1, float32x4_t, 4, 4, 1, N_LOAD, N_LOADN, N_FMA, N_CLAMP, N_STORE)
FCONV_DWV(fdwv_n2x8, float32x4_t, 4, 2, 8, N_LOAD, N_LOADN, N_FMA, N_CLAMP, N_STORE)
FCONV_DWV(fdwv_n2x1, float32x4_t, 4, 2, 1, N_LOAD, N_LOADN, N_FMA, N_CLAMP, N_STORE)
FCONV_DWV(fdwv_n1x8, float32x4_t, 4, 1, 8, N_LOAD, N_LOADN, N_FMA, N_CLAMP, N_STORE)
FCONV_DWV(fdwv_n1x1, float32x4_t, 4, 1, 1, N_LOAD, N_LOADN, N_FMA, N_CLAMP, N_STORE)
static void fdwv_row_neon(const bnn_fconv *k, const float *in, float *out, long r) {
    FCONV_DENSE_ROW(float32x4_t, 4, N_SPLAT, fdwv_n4x6, fdwv_n4x1, 6, fdwv_n2x8, fdwv_n2x1, 8,
                    fdwv_n1x8, fdwv_n1x1, 8)
}
#endif
FCONV_DWV(fdwv_v2x5, v4f, 4, 2, 5, V4_LOAD, V4_LOADN, V4_MULADD, V4_CLAMP, V4_STORE)
FCONV_DWV(fdwv_v2x1, v4f, 4, 2, 1, V4_LOAD, V4_LOADN, V4_MULADD, V4_CLAMP, V4_STORE)
FCONV_DWV(fdwv_v1x8, v4f, 4, 1, 8, V4_LOAD, V4_LOADN, V4_MULADD, V4_CLAMP, V4_STORE)
FCONV_DWV(fdwv_v1x1, v4f, 4, 1, 1, V4_LOAD, V4_LOADN, V4_MULADD, V4_CLAMP, V4_STORE)
static void fdwv_row_scalar(const bnn_fconv *k, const float *in, float *out, long r) {
    FCONV_DENSE_ROW(v4f, 4, V4_SPLAT, fdwv_v2x5, fdwv_v2x1, 0, fdwv_v2x5, fdwv_v2x1, 5,
                    fdwv_v1x8, fdwv_v1x1, 8)
}
#ifdef BNN_X86
#define FCONV_DWV_AT(ATTR, ...) ATTR FCONV_DWV(__VA_ARGS__)
FCONV_DWV_AT(BNN_AVX2_FMA, fdwv_a2_2x5, __m256, 8, 2, 5, A2_LOAD, A2_LOADN, A2_FMA, A2_CLAMP, A2_STORE)
FCONV_DWV_AT(BNN_AVX2_FMA, fdwv_a2_2x1, __m256, 8, 2, 1, A2_LOAD, A2_LOADN, A2_FMA, A2_CLAMP, A2_STORE)
FCONV_DWV_AT(BNN_AVX2_FMA, fdwv_a2_1x8, __m256, 8, 1, 8, A2_LOAD, A2_LOADN, A2_FMA, A2_CLAMP, A2_STORE)
FCONV_DWV_AT(BNN_AVX2_FMA, fdwv_a2_1x1, __m256, 8, 1, 1, A2_LOAD, A2_LOADN, A2_FMA, A2_CLAMP, A2_STORE)
FCONV_DWV_AT(BNN_AVX512_BASE, fdwv_a5_4x6, __m512, 16, 4, 6, A5_LOAD, A5_LOADN, A5_FMA, A5_CLAMP, A5_STORE)
FCONV_DWV_AT(BNN_AVX512_BASE, fdwv_a5_4x1, __m512, 16, 4, 1, A5_LOAD, A5_LOADN, A5_FMA, A5_CLAMP, A5_STORE)
FCONV_DWV_AT(BNN_AVX512_BASE, fdwv_a5_2x8, __m512, 16, 2, 8, A5_LOAD, A5_LOADN, A5_FMA, A5_CLAMP, A5_STORE)
FCONV_DWV_AT(BNN_AVX512_BASE, fdwv_a5_2x1, __m512, 16, 2, 1, A5_LOAD, A5_LOADN, A5_FMA, A5_CLAMP, A5_STORE)
FCONV_DWV_AT(BNN_AVX512_BASE, fdwv_a5_1x8, __m512, 16, 1, 8, A5_LOAD, A5_LOADN, A5_FMA, A5_CLAMP, A5_STORE)
FCONV_DWV_AT(BNN_AVX512_BASE, fdwv_a5_1x1, __m512, 16, 1, 1, A5_LOAD, A5_LOADN, A5_FMA, A5_CLAMP, A5_STORE)
BNN_AVX2_FMA static void fdwv_row_avx2(const bnn_fconv *k, const float *in, float *out, long r) {
    FCONV_DENSE_ROW(__m256, 8, A2_SPLAT, fdwv_a2_2x5, fdwv_a2_2x1, 0, fdwv_a2_2x5, fdwv_a2_2x1, 5,
                    fdwv_a2_1x8, fdwv_a2_1x1, 8)
}
BNN_AVX512_BASE static void fdwv_row_avx512(const bnn_fconv *k, const float *in, float *out, long r) {
    FCONV_DENSE_ROW(__m512, 16, A5_SPLAT, fdwv_a5_4x6, fdwv_a5_4x1, 6, fdwv_a5_2x8, fdwv_a5_2x1, 8,
                    fdwv_a5_1x8, fdwv_a5_1x1, 8)
}
#endif

/* ---- depthwise convs with a channel multiplier (rare): gathered inputs ------
 * Output channels go 16 at a time through accumulators of GCC's vector types,
 * kept in registers across all taps: one 16-lane vector on AVX-512, two 8-lane
 * ones on AVX2, four 4-lane ones elsewhere (SSE2, NEON). Four neighbouring
 * output pixels are computed together so the four accumulator chains overlap
 * their latency. A tap that falls in the padding reads a row of zeros. Weights
 * are padded to 16 output channels; only the real ones are stored.
 * FCONV_DW(name, vector type, lanes, pixels) writes one variant. */
#define FCONV_DW(NAME, VT, L, P)                                                                      \
static inline __attribute__((always_inline)) void NAME(const bnn_fconv *k, const float *in, float *out, \
                                                       int n, int oy, int ox) {                         \
    const bnn_conv_geom *g = &k->g;                                                                   \
    const int cout = g->cout, c16 = k->cout16, m = k->per_group;                                      \
    const float lo = k->lo, hi = k->hi;                                                               \
    for (int cb = 0; cb < c16; cb += FB) {                                                            \
        VT acc[P][FB / L], wv, xv;                                                                    \
        for (int p = 0; p < P; p++)                                                                   \
            for (int j = 0; j < FB / L; j++) memcpy(&acc[p][j], k->bias + cb + j * L, sizeof(VT));    \
        const int nreal = cout - cb < FB ? cout - cb : FB;                                            \
        for (int ky = 0; ky < g->kh; ky++) {                                                          \
            int iy = oy * g->sh - g->pad_top + ky * g->dh;                                            \
            if (iy < 0 || iy >= g->in_h) continue;                                                    \
            const float *row = in + ((size_t)n * g->in_h + iy) * g->in_w * g->cin;                    \
            for (int kx = 0; kx < g->kw; kx++) {                                                      \
                const float *xp[P];                                                                   \
                for (int p = 0; p < P; p++) {                                                         \
                    int ix = (ox + p) * g->sw - g->pad_left + kx * g->dw;                             \
                    xp[p] = (ix >= 0 && ix < g->in_w) ? row + (size_t)ix * g->cin : k->zeros;         \
                }                                                                                     \
                const float *restrict wt = k->w + ((size_t)ky * g->kw + kx) * c16 + cb;               \
                for (int p = 0; p < P; p++) {                                                         \
                    float xs[FB];                                                                     \
                    const float *xsrc = xp[p] + cb;                                                   \
                    if (m != 1 || nreal != FB) {  /* a multiplier, or the last partial block:         \
                                                     never read past the pixel */                     \
                        for (int l = 0; l < FB; l++) xs[l] = l < nreal ? xp[p][(cb + l) / m] : 0.0f;  \
                        xsrc = xs;                                                                    \
                    }                                                                                 \
                    for (int j = 0; j < FB / L; j++) {                                                \
                        memcpy(&xv, xsrc + j * L, sizeof(VT));                                        \
                        memcpy(&wv, wt + j * L, sizeof(VT));                                          \
                        acc[p][j] += xv * wv;                                                         \
                    }                                                                                 \
                }                                                                                     \
            }                                                                                         \
        }                                                                                             \
        for (int p = 0; p < P; p++) {                                                                 \
            float r[FB], *o = out + (size_t)p * cout;                                                 \
            memcpy(r, acc[p], sizeof(r));                                                             \
            for (int l = 0; l < nreal; l++) o[cb + l] = r[l] < lo ? lo : (r[l] > hi ? hi : r[l]);     \
        }                                                                                             \
    }                                                                                                 \
}

FCONV_DW(fdw4_p4, v4f, 4, 4)
FCONV_DW(fdw4_p1, v4f, 4, 1)
#ifdef BNN_X86
FCONV_DW(fdw8_p4, v8f, 8, 4)
FCONV_DW(fdw8_p1, v8f, 8, 1)
FCONV_DW(fdw16_p4, v16f, 16, 4)
FCONV_DW(fdw16_p1, v16f, 16, 1)
#endif

/* One depthwise output row; each variant is this loop compiled for its target.
 * The OpenMP loop lives in bnn_fconv_run: an outlined parallel region would be
 * compiled for the base target, whatever function it sits in. */
#define FCONV_DW_ROW(BLOCK4, BLOCK1)                                                                  \
    const bnn_conv_geom *g = &k->g;                                                                   \
    int b = (int)(r / g->out_h), oy = (int)(r % g->out_h), ox = 0;                                    \
    float *o = out + (size_t)r * g->out_w * g->cout;                                                  \
    for (; ox + 4 <= g->out_w; ox += 4) BLOCK4(k, in, o + (size_t)ox * g->cout, b, oy, ox);           \
    for (; ox < g->out_w; ox++) BLOCK1(k, in, o + (size_t)ox * g->cout, b, oy, ox);

static void fdw_row_scalar(const bnn_fconv *k, const float *in, float *out, long r) {
    FCONV_DW_ROW(fdw4_p4, fdw4_p1)
}
#ifdef BNN_X86
BNN_AVX2 static void fdw_row_avx2(const bnn_fconv *k, const float *in, float *out, long r) {
    FCONV_DW_ROW(fdw8_p4, fdw8_p1)
}
BNN_AVX512_BASE static void fdw_row_avx512(const bnn_fconv *k, const float *in, float *out, long r) {
    FCONV_DW_ROW(fdw16_p4, fdw16_p1)
}
#endif

bnn_fconv *bnn_fconv_create(const bnn_conv_geom *g, int32_t groups, const float *weights, const float *bias,
                            float lo, float hi, int variant) {
    variant = bnn_select(BNN_FAMILY_CONV2D_FLOAT, variant, 1);
    if (variant < 0) return NULL;
    bnn_fconv *k = (bnn_fconv *)calloc(1, sizeof(*k));
    if (!k) return NULL;
    k->g = *g;
    k->groups = groups;
    k->cin_g = g->cin / groups;
    k->per_group = g->cout / groups;
    k->lo = lo; k->hi = hi;
    /* NEON has no kernel for depthwise with a channel multiplier: those layers run
     * (and report) the scalar rows */
    k->variant = variant == BNN_VARIANT_NEON && groups != 1 && k->per_group != 1 ? BNN_VARIANT_SCALAR : variant;
#ifdef BNN_X86
    k->narrow = variant == BNN_VARIANT_AVX512 && groups == 1 && g->cout <= 8 && bnn_cpu_has("fma");
#endif
    const int cout = g->cout, taps = g->kh * g->kw, cin_g = k->cin_g;
    const int c16 = k->cout16 = (cout + FB - 1) / FB * FB;
    k->w = (float *)calloc((size_t)taps * cin_g * c16, sizeof(float));
    k->bias = (float *)calloc((size_t)c16, sizeof(float));
    k->zeros = (float *)calloc((size_t)g->cin + FB, sizeof(float));
    if (!k->w || !k->bias || !k->zeros) { bnn_fconv_free(k); return NULL; }
    /* weights arrive (Cout, kh, kw, Cin/groups); repack tap-major, output channels innermost */
    for (int o = 0; o < cout; o++)
        for (int t = 0; t < taps; t++)
            for (int ci = 0; ci < cin_g; ci++) {
                float v = weights[((size_t)o * taps + t) * cin_g + ci];
                if (groups == 1) k->w[((size_t)t * cin_g + ci) * c16 + o] = v;
                else k->w[(size_t)t * c16 + o] = v;      /* depthwise: cin_g == 1 */
            }
    for (int o = 0; o < cout; o++) k->bias[o] = bias ? bias[o] : 0.0f;
    return k;
}

void bnn_fconv_free(bnn_fconv *k) {
    if (!k) return;
    free(k->w); free(k->bias); free(k->zeros); free(k);
}

const char *bnn_fconv_variant(const bnn_fconv *k) { return bnn_variant_names[k->variant]; }

int bnn_fconv_run(const bnn_fconv *k, const float *in, float *out, int n, int threads) {
    /* dense, depthwise, depthwise with a channel multiplier */
    const int kind = k->groups == 1 ? 0 : k->per_group == 1 ? 1 : 2;
    void (*row)(const bnn_fconv *, const float *, float *, long) =
        kind == 0 ? fdense_row_scalar : kind == 1 ? fdwv_row_scalar : fdw_row_scalar;
#ifdef BNN_X86
    if (k->variant == BNN_VARIANT_AVX512)
        row = kind == 0 ? (k->narrow ? fdense_row_avx512_narrow : fdense_row_avx512)
            : kind == 1 ? fdwv_row_avx512 : fdw_row_avx512;
    else if (k->variant == BNN_VARIANT_AVX2)
        row = kind == 0 ? fdense_row_avx2 : kind == 1 ? fdwv_row_avx2 : fdw_row_avx2;
#endif
#ifdef BNN_ARM
    if (k->variant == BNN_VARIANT_NEON) row = kind == 0 ? fdense_row_neon : fdwv_row_neon;
#endif
    const long rows = (long)n * k->g.out_h;
    BNN_PARALLEL_FOR(threads > 1 && rows > 1, for (long r = 0; r < rows; r++) row(k, in, out, r););
    return 0;
}
