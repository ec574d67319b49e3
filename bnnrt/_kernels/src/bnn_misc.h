/* The small ops between convolutions: binarize, sign, clipping add, pools.
 * Memory-bound; plain loops the compiler vectorizes. Plain C, trusted inputs. */
#ifndef BNN_MISC_H
#define BNN_MISC_H

#include "bnn_common.h"

/* int8 [pixels][c] -> bits [pixels][ceil(c/8)]: -1 iff q < t[c] (direction +1)
 * or q > t[c] (direction -1); t outside int8 makes constant channels. */
typedef struct bnn_binarizer bnn_binarizer;
bnn_binarizer *bnn_binarizer_create(int32_t c, const int16_t *thresholds, const int8_t *directions,
                                    int variant);
void bnn_binarizer_free(bnn_binarizer *b);
const char *bnn_binarizer_variant(const bnn_binarizer *b);
void bnn_binarize(const bnn_binarizer *b, const int8_t *x, uint8_t *out, size_t pixels, int threads);
/* The functions below without a plan object take `variant`: what bnn_select
 * chose for their family when the caller's kernel was built (trusted). */
/* float -> int8: clamp(rint(x / scale)), rint rounding half to even (numpy's) */
void bnn_quantize(const float *x, int8_t *out, size_t n, float scale, int threads, int variant);
/* float [pixels][c] -> bits: -1 iff x < 0, or with mult and bias ([c] each,
 * both or neither) iff x * mult + bias < 0 */
void bnn_sign_bits(const float *x, uint8_t *out, size_t pixels, int32_t c, const float *mult, const float *bias,
                   int threads, int variant);
/* clamp(requant(a) + requant(b)) elementwise */
void bnn_add_int8(const int8_t *a, const int8_t *b, int8_t *out, size_t n, int32_t am, int32_t as,
                  int32_t bm, int32_t bs, int32_t lo, int32_t hi, int threads);

typedef struct {
    int32_t in_h, in_w, c, out_h, out_w, kh, kw, sh, sw, pad_top, pad_left;
} bnn_pool_geom;
/* max over the valid taps of each window; bits: a pixel is -1 only where every tap is -1 */
void bnn_maxpool_int8(const bnn_pool_geom *g, const int8_t *in, int8_t *out, int n, int threads);
void bnn_maxpool_bits(const bnn_pool_geom *g, const uint8_t *in, uint8_t *out, int n, int threads);
/* float32 max (average != 0: mean) over the valid taps of each window */
void bnn_pool_float(const bnn_pool_geom *g, const float *in, float *out, int n, int average, int threads,
                    int variant);
/* int8 [n][hw][c] -> int8 [n][c]: clamp(requant(sum over hw)) */
void bnn_global_avgpool(const int8_t *in, int8_t *out, int n, int32_t hw, int32_t c, int32_t m,
                        int32_t shift, int32_t lo, int32_t hi);
#endif
