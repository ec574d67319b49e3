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
    float lo, hi;        /* the activation as a clamp */
    int variant;
};

/* Output channels go 16 at a time through accumulators of GCC's vector types,
 * kept in registers across all taps and input channels: one 16-lane vector on
 * AVX-512, two 8-lane ones on AVX2, four 4-lane ones elsewhere (SSE2, NEON).
 * Weights are padded to 16 so every block is full; only the real channels are
 * stored. FCONV_PIXEL(name, vector type, lanes) writes one variant. */
#define FB 16
typedef float v16f __attribute__((vector_size(64)));
typedef float v8f __attribute__((vector_size(32)));
typedef float v4f __attribute__((vector_size(16)));

#define FCONV_PIXEL(NAME, VT, L)                                                                      \
static inline __attribute__((always_inline)) void NAME(const bnn_fconv *k, const float *in, float *o,  \
                                                       int n, int oy, int ox) {                         \
    const bnn_conv_geom *g = &k->g;                                                                   \
    const int cout = g->cout, cin = g->cin, c16 = k->cout16, m = k->per_group;                        \
    const int depthwise = k->groups != 1;                                                             \
    const float lo = k->lo, hi = k->hi;                                                               \
    for (int cb = 0; cb < c16; cb += FB) {                                                            \
        VT acc[FB / L], wv, xv;                                                                       \
        for (int j = 0; j < FB / L; j++) memcpy(&acc[j], k->bias + cb + j * L, sizeof(VT));          \
        const int nreal = cout - cb < FB ? cout - cb : FB;                                            \
        for (int ky = 0; ky < g->kh; ky++) {                                                          \
            int iy = oy * g->sh - g->pad_top + ky * g->dh;                                            \
            if (iy < 0 || iy >= g->in_h) continue;                                                    \
            for (int kx = 0; kx < g->kw; kx++) {                                                      \
                int ix = ox * g->sw - g->pad_left + kx * g->dw;                                       \
                if (ix < 0 || ix >= g->in_w) continue;                                                \
                const float *restrict xp = in + (((size_t)n * g->in_h + iy) * g->in_w + ix) * cin;   \
                const float *restrict wt = k->w + ((size_t)ky * g->kw + kx) * (depthwise ? 1 : cin) * c16 + cb; \
                if (!depthwise) {                                                                     \
                    for (int ci = 0; ci < cin; ci++) {                                                \
                        const float x1 = xp[ci];                                                      \
                        for (int j = 0; j < FB / L; j++) {                                            \
                            memcpy(&wv, wt + (size_t)ci * c16 + j * L, sizeof(VT));                   \
                            acc[j] += x1 * wv;                                                        \
                        }                                                                             \
                    }                                                                                 \
                } else {                                                                              \
                    float xs[FB];                                                                     \
                    const float *xsrc = xp + cb;                                                      \
                    if (m != 1 || nreal != FB) {  /* a multiplier, or the last partial block:         \
                                                     never read past the pixel */                     \
                        for (int l = 0; l < FB; l++) xs[l] = l < nreal ? xp[(cb + l) / m] : 0.0f;    \
                        xsrc = xs;                                                                    \
                    }                                                                                 \
                    for (int j = 0; j < FB / L; j++) {                                                \
                        memcpy(&xv, xsrc + j * L, sizeof(VT));                                        \
                        memcpy(&wv, wt + j * L, sizeof(VT));                                          \
                        acc[j] += xv * wv;                                                            \
                    }                                                                                 \
                }                                                                                     \
            }                                                                                         \
        }                                                                                             \
        float r[FB];                                                                                  \
        memcpy(r, acc, sizeof(r));                                                                    \
        for (int l = 0; l < nreal; l++) o[cb + l] = r[l] < lo ? lo : (r[l] > hi ? hi : r[l]);        \
    }                                                                                                 \
}

FCONV_PIXEL(fconv_pixel4, v4f, 4)
#ifdef BNN_X86
FCONV_PIXEL(fconv_pixel8, v8f, 8)
FCONV_PIXEL(fconv_pixel16, v16f, 16)
#endif

/* One output row; each variant is this loop compiled for its target. The
 * OpenMP loop lives in bnn_fconv_run: an outlined parallel region would be
 * compiled for the base target, whatever function it sits in. */
#define FCONV_ROW(PIXEL)                                                                              \
    const bnn_conv_geom *g = &k->g;                                                                   \
    int b = (int)(r / g->out_h), oy = (int)(r % g->out_h);                                            \
    for (int ox = 0; ox < g->out_w; ox++)                                                             \
        PIXEL(k, in, out + ((size_t)r * g->out_w + ox) * g->cout, b, oy, ox);

static void fconv_row_scalar(const bnn_fconv *k, const float *in, float *out, long r) {
    FCONV_ROW(fconv_pixel4)
}
#ifdef BNN_X86
BNN_AVX2 static void fconv_row_avx2(const bnn_fconv *k, const float *in, float *out, long r) {
    FCONV_ROW(fconv_pixel8)
}
BNN_AVX512_BASE static void fconv_row_avx512(const bnn_fconv *k, const float *in, float *out, long r) {
    FCONV_ROW(fconv_pixel16)
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
    if (!k->w || !k->bias) { bnn_fconv_free(k); return NULL; }
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
    free(k->w); free(k->bias); free(k);
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
