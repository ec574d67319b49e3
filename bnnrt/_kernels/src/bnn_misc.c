#include "bnn_misc.h"

void bnn_binarize(const int8_t *x, uint8_t *out, size_t pixels, int32_t c, const int16_t *lo,
                  const int16_t *hi, int threads) {
    size_t cb = ((size_t)c + 7) / 8;
#pragma omp parallel for num_threads(threads) schedule(static) if (pixels > 4096)
    for (size_t p = 0; p < pixels; p++) {
        const int8_t *q = x + p * c;
        uint8_t *o = out + p * cb;
        for (size_t b = 0; b < cb; b++) {
            unsigned byte = 0;
            for (int l = 0; l < 8 && 8 * (int)b + l < c; l++) {
                int ch = 8 * (int)b + l;
                byte |= (unsigned)(q[ch] < lo[ch] || q[ch] > hi[ch]) << l;
            }
            o[b] = (uint8_t)byte;
        }
    }
}

void bnn_sign_bits(const float *x, uint8_t *out, size_t pixels, int32_t c, int threads) {
    size_t cb = ((size_t)c + 7) / 8;
#pragma omp parallel for num_threads(threads) schedule(static) if (pixels > 4096)
    for (size_t p = 0; p < pixels; p++) {
        const float *v = x + p * c;
        for (size_t b = 0; b < cb; b++) {
            unsigned byte = 0;
            for (int l = 0; l < 8 && 8 * (int)b + l < c; l++) byte |= (unsigned)(v[8 * b + l] < 0.0f) << l;
            out[p * cb + b] = (uint8_t)byte;
        }
    }
}

void bnn_add_int8(const int8_t *a, const int8_t *b, int8_t *out, size_t n, int32_t am, int32_t as,
                  int32_t bm, int32_t bs, int32_t lo, int32_t hi, int threads) {
    int64_t ar = bnn_round_of(as), br = bnn_round_of(bs);
#pragma omp parallel for num_threads(threads) schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        int64_t v = bnn_requant(a[i], am, ar, as) + bnn_requant(b[i], bm, br, bs);
        out[i] = (int8_t)(v < lo ? lo : v > hi ? hi : v);
    }
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
#pragma omp parallel for num_threads(threads) schedule(static)
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
    }
}

void bnn_maxpool_bits(const bnn_pool_geom *g, const uint8_t *in, uint8_t *out, int n, int threads) {
    int cb = (g->c + 7) / 8, rows = n * g->out_h;
#pragma omp parallel for num_threads(threads) schedule(static)
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
    }
}

void bnn_global_avgpool(const int8_t *in, int8_t *out, int n, int32_t hw, int32_t c, int32_t m,
                        int32_t shift, int32_t lo, int32_t hi) {
    int64_t rnd = bnn_round_of(shift);
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < c; ch++) {
            int64_t s = 0;
            const int8_t *p = in + (size_t)i * hw * c + ch;
            for (int32_t j = 0; j < hw; j++) s += p[(size_t)j * c];
            int64_t v = bnn_requant(s, m, rnd, shift);
            out[(size_t)i * c + ch] = (int8_t)(v < lo ? lo : v > hi ? hi : v);
        }
}
