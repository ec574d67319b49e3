/* Direct float32 convolution for the layers BLAS does badly: stems with few
 * input channels (3x3 over RGB: a GEMM with K = 27) and depthwise convs (no
 * GEMM at all). Each output pixel accumulates in its own output row: for
 * every tap and input channel, one broadcast times a contiguous row of
 * weights, over all output channels, a loop the compiler vectorizes for each
 * target below. Multiply and add round separately (-ffp-contract=off), as
 * numpy does; sums run in tap order, so results match the reference within
 * float rounding, not bit for bit. */
#include "bnn_fconv.h"

struct bnn_fconv {
    bnn_conv_geom g;
    int32_t groups, cin_g, per_group, cout16;   /* cout16: cout rounded up to 16 */
    float *w;            /* dense: [kh][kw][cin][cout16]; depthwise: [kh][kw][cout16] (zero padded) */
    float *bias;         /* [cout16] */
    float *zeros;        /* cin + 16 zeros: what a padded tap reads */
    float lo, hi;        /* the activation as a clamp */
    int variant;
};

/* Output channels go 16 at a time through accumulators of GCC's vector types,
 * kept in registers across all taps and input channels: one 16-lane vector on
 * AVX-512, two 8-lane ones on AVX2, four 4-lane ones elsewhere (SSE2, NEON).
 * Four neighbouring output pixels are computed together: each weight load
 * feeds four multiply-adds, and the four accumulator chains are independent,
 * so the adds' latency overlaps (one chain alone waits on every add). A tap
 * that falls in the padding reads a row of zeros instead of branching.
 * Weights are padded to 16 output channels; only the real ones are stored.
 * FCONV_BLOCK(name, vector type, lanes, pixels) writes one variant. */
#define FB 16
typedef float v16f __attribute__((vector_size(64)));
typedef float v8f __attribute__((vector_size(32)));
typedef float v4f __attribute__((vector_size(16)));

#define FCONV_BLOCK(NAME, VT, L, P)                                                                   \
static inline __attribute__((always_inline)) void NAME(const bnn_fconv *k, const float *in, float *out, \
                                                       int n, int oy, int ox) {                         \
    const bnn_conv_geom *g = &k->g;                                                                   \
    const int cout = g->cout, cin = g->cin, c16 = k->cout16, m = k->per_group;                        \
    const int depthwise = k->groups != 1;                                                             \
    const float lo = k->lo, hi = k->hi;                                                               \
    for (int cb = 0; cb < c16; cb += FB) {                                                            \
        VT acc[P][FB / L], wv, xv;                                                                    \
        for (int p = 0; p < P; p++)                                                                   \
            for (int j = 0; j < FB / L; j++) memcpy(&acc[p][j], k->bias + cb + j * L, sizeof(VT));    \
        const int nreal = cout - cb < FB ? cout - cb : FB;                                            \
        for (int ky = 0; ky < g->kh; ky++) {                                                          \
            int iy = oy * g->sh - g->pad_top + ky * g->dh;                                            \
            if (iy < 0 || iy >= g->in_h) continue;                                                    \
            const float *row = in + ((size_t)n * g->in_h + iy) * g->in_w * cin;                       \
            for (int kx = 0; kx < g->kw; kx++) {                                                      \
                const float *xp[P];                                                                   \
                for (int p = 0; p < P; p++) {                                                         \
                    int ix = (ox + p) * g->sw - g->pad_left + kx * g->dw;                             \
                    xp[p] = (ix >= 0 && ix < g->in_w) ? row + (size_t)ix * cin : k->zeros;            \
                }                                                                                     \
                const float *restrict wt = k->w + ((size_t)ky * g->kw + kx) * (depthwise ? 1 : cin) * c16 + cb; \
                if (!depthwise) {                                                                     \
                    for (int ci = 0; ci < cin; ci++)                                                  \
                        for (int j = 0; j < FB / L; j++) {                                            \
                            memcpy(&wv, wt + (size_t)ci * c16 + j * L, sizeof(VT));                   \
                            for (int p = 0; p < P; p++) acc[p][j] += xp[p][ci] * wv;                  \
                        }                                                                             \
                } else {                                                                              \
                    for (int p = 0; p < P; p++) {                                                     \
                        float xs[FB];                                                                 \
                        const float *xsrc = xp[p] + cb;                                               \
                        if (m != 1 || nreal != FB) {  /* a multiplier, or the last partial block:     \
                                                         never read past the pixel */                 \
                            for (int l = 0; l < FB; l++) xs[l] = l < nreal ? xp[p][(cb + l) / m] : 0.0f; \
                            xsrc = xs;                                                                \
                        }                                                                             \
                        for (int j = 0; j < FB / L; j++) {                                            \
                            memcpy(&xv, xsrc + j * L, sizeof(VT));                                    \
                            memcpy(&wv, wt + j * L, sizeof(VT));                                      \
                            acc[p][j] += xv * wv;                                                     \
                        }                                                                             \
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

FCONV_BLOCK(fconv4_p4, v4f, 4, 4)
FCONV_BLOCK(fconv4_p1, v4f, 4, 1)
#ifdef BNN_X86
FCONV_BLOCK(fconv8_p4, v8f, 8, 4)
FCONV_BLOCK(fconv8_p1, v8f, 8, 1)
FCONV_BLOCK(fconv16_p4, v16f, 16, 4)
FCONV_BLOCK(fconv16_p1, v16f, 16, 1)
#endif

/* One output row; each variant is this loop compiled for its target. The
 * OpenMP loop lives in bnn_fconv_run: an outlined parallel region would be
 * compiled for the base target, whatever function it sits in. */
#define FCONV_ROW(BLOCK4, BLOCK1)                                                                     \
    const bnn_conv_geom *g = &k->g;                                                                   \
    int b = (int)(r / g->out_h), oy = (int)(r % g->out_h), ox = 0;                                    \
    float *o = out + (size_t)r * g->out_w * g->cout;                                                  \
    for (; ox + 4 <= g->out_w; ox += 4) BLOCK4(k, in, o + (size_t)ox * g->cout, b, oy, ox);           \
    for (; ox < g->out_w; ox++) BLOCK1(k, in, o + (size_t)ox * g->cout, b, oy, ox);

static void fconv_row_scalar(const bnn_fconv *k, const float *in, float *out, long r) {
    FCONV_ROW(fconv4_p4, fconv4_p1)
}
#ifdef BNN_X86
BNN_AVX2 static void fconv_row_avx2(const bnn_fconv *k, const float *in, float *out, long r) {
    FCONV_ROW(fconv8_p4, fconv8_p1)
}
BNN_AVX512_BASE static void fconv_row_avx512(const bnn_fconv *k, const float *in, float *out, long r) {
    FCONV_ROW(fconv16_p4, fconv16_p1)
}
#endif

bnn_fconv *bnn_fconv_create(const bnn_conv_geom *g, int32_t groups, const float *weights, const float *bias,
                            float lo, float hi, int variant) {
#ifdef BNN_X86
    static const char *const avx512[] = {"avx512", NULL}, *const avx2[] = {"avx2", NULL};
#endif
    if (variant == BNN_VARIANT_AUTO) {
#ifdef BNN_X86
        variant = bnn_variant_enabled("avx512", avx512) ? BNN_VARIANT_AVX512
                : bnn_variant_enabled("avx2", avx2) ? BNN_VARIANT_AVX2 : BNN_VARIANT_SCALAR;
#else
        variant = BNN_VARIANT_SCALAR;   /* NEON: the scalar loop auto-vectorizes with the base ISA */
#endif
    }
#ifdef BNN_X86
    if ((variant == BNN_VARIANT_AVX512 && !bnn_variant_enabled("avx512", avx512)) ||
        (variant == BNN_VARIANT_AVX2 && !bnn_variant_enabled("avx2", avx2)))
        return NULL;
    if (variant != BNN_VARIANT_SCALAR && variant != BNN_VARIANT_AVX2 && variant != BNN_VARIANT_AVX512)
        return NULL;
#else
    if (variant != BNN_VARIANT_SCALAR) return NULL;
#endif
    bnn_fconv *k = (bnn_fconv *)calloc(1, sizeof(*k));
    if (!k) return NULL;
    k->g = *g;
    k->groups = groups;
    k->cin_g = g->cin / groups;
    k->per_group = g->cout / groups;
    k->lo = lo; k->hi = hi;
    k->variant = variant;
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

const char *bnn_fconv_variant(const bnn_fconv *k) {
    switch (k->variant) {
    case BNN_VARIANT_AVX512: return "avx512";
    case BNN_VARIANT_AVX2: return "avx2";
    default: return "scalar";
    }
}

int bnn_fconv_run(const bnn_fconv *k, const float *in, float *out, int n, int threads) {
    void (*row)(const bnn_fconv *, const float *, float *, long) = fconv_row_scalar;
#ifdef BNN_X86
    if (k->variant == BNN_VARIANT_AVX512) row = fconv_row_avx512;
    else if (k->variant == BNN_VARIANT_AVX2) row = fconv_row_avx2;
#endif
    const long rows = (long)n * k->g.out_h;
    #pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (long r = 0; r < rows; r++) row(k, in, out, r);
    return 0;
}
