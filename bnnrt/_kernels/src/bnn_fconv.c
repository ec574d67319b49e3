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
    int32_t groups, cin_g, per_group;
    float *w;            /* dense: [kh][kw][cin][cout]; depthwise: [kh][kw][cout] */
    float *bias;         /* [cout] */
    float lo, hi;        /* the activation as a clamp */
    int variant;
};

static inline __attribute__((always_inline)) void fconv_pixel(const bnn_fconv *k, const float *in, float *o,
                                                              int n, int oy, int ox) {
    const bnn_conv_geom *g = &k->g;
    const int cout = g->cout, cin = g->cin;
    const float *restrict bias = k->bias;
    for (int c = 0; c < cout; c++) o[c] = bias[c];
    for (int ky = 0; ky < g->kh; ky++) {
        int iy = oy * g->sh - g->pad_top + ky * g->dh;
        if (iy < 0 || iy >= g->in_h) continue;
        for (int kx = 0; kx < g->kw; kx++) {
            int ix = ox * g->sw - g->pad_left + kx * g->dw;
            if (ix < 0 || ix >= g->in_w) continue;
            const float *restrict xp = in + (((size_t)n * g->in_h + iy) * g->in_w + ix) * cin;
            if (k->groups == 1) {
                const float *restrict wt = k->w + ((size_t)ky * g->kw + kx) * cin * cout;
                for (int ci = 0; ci < cin; ci++) {
                    const float xv = xp[ci];
                    const float *restrict wr = wt + (size_t)ci * cout;
                    for (int c = 0; c < cout; c++) o[c] += xv * wr[c];
                }
            } else {
                const float *restrict wr = k->w + ((size_t)ky * g->kw + kx) * cout;
                const int m = k->per_group;
                if (m == 1) {
                    for (int c = 0; c < cout; c++) o[c] += xp[c] * wr[c];
                } else {
                    for (int c = 0; c < cout; c++) o[c] += xp[c / m] * wr[c];
                }
            }
        }
    }
    const float lo = k->lo, hi = k->hi;
    for (int c = 0; c < cout; c++) o[c] = o[c] < lo ? lo : (o[c] > hi ? hi : o[c]);
}

static inline __attribute__((always_inline)) void fconv_rows(const bnn_fconv *k, const float *in, float *out,
                                                             int n, int threads) {
    const bnn_conv_geom *g = &k->g;
    const long rows = (long)n * g->out_h;
    #pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (long r = 0; r < rows; r++) {
        int b = (int)(r / g->out_h), oy = (int)(r % g->out_h);
        for (int ox = 0; ox < g->out_w; ox++)
            fconv_pixel(k, in, out + ((size_t)r * g->out_w + ox) * g->cout, b, oy, ox);
    }
}

static void fconv_scalar(const bnn_fconv *k, const float *in, float *out, int n, int threads) {
    fconv_rows(k, in, out, n, threads);
}
#ifdef BNN_X86
BNN_AVX2 static void fconv_avx2(const bnn_fconv *k, const float *in, float *out,
                                                              int n, int threads) {
    fconv_rows(k, in, out, n, threads);
}
BNN_AVX512_BASE static void fconv_avx512(const bnn_fconv *k, const float *in, float *out, int n, int threads) {
    fconv_rows(k, in, out, n, threads);
}
#endif

bnn_fconv *bnn_fconv_create(const bnn_conv_geom *g, int32_t groups, const float *weights, const float *bias,
                            float lo, float hi, int variant) {
    static const char *const avx512[] = {"avx512", NULL}, *const avx2[] = {"avx2", NULL};
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
    k->w = (float *)malloc((size_t)taps * cin_g * (groups == 1 ? cout : cout) * sizeof(float));
    k->bias = (float *)malloc((size_t)cout * sizeof(float));
    if (!k->w || !k->bias) { bnn_fconv_free(k); return NULL; }
    /* weights arrive (Cout, kh, kw, Cin/groups); repack tap-major, output channels innermost */
    for (int o = 0; o < cout; o++)
        for (int t = 0; t < taps; t++)
            for (int ci = 0; ci < cin_g; ci++) {
                float v = weights[((size_t)o * taps + t) * cin_g + ci];
                if (groups == 1) k->w[((size_t)t * cin_g + ci) * cout + o] = v;
                else k->w[(size_t)t * cout + o] = v;      /* depthwise: cin_g == 1 */
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
#ifdef BNN_X86
    if (k->variant == BNN_VARIANT_AVX512) { fconv_avx512(k, in, out, n, threads); return 0; }
    if (k->variant == BNN_VARIANT_AVX2) { fconv_avx2(k, in, out, n, threads); return 0; }
#endif
    fconv_scalar(k, in, out, n, threads);
    return 0;
}
