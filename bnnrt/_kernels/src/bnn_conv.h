/* Convolutions: binary (bits x bits, popcount) and int8 (int8 x int8).
 * Plain C: pointers, integers and a geometry struct; no Python types. */
#ifndef BNN_CONV_H
#define BNN_CONV_H

#include "bnn_epilogue.h"

typedef struct {
    int32_t in_h, in_w, cin, out_h, out_w, cout;
    int32_t kh, kw, sh, sw, dh, dw, pad_top, pad_left;
    int32_t pad_value;   /* binary: 1 pads with +1 (bit 0), 0 pads with 0 (corrected); int8: 0 */
} bnn_conv_geom;

typedef struct bnn_bconv bnn_bconv;
typedef struct bnn_conv8 bnn_conv8;

/* Build once: repack weights and epilogue constants. variant: BNN_VARIANT_*;
 * AUTO picks the best the CPU runs. NULL if memory runs out or the variant
 * cannot run here. Everything handed in is trusted: the caller validated it. */
bnn_bconv *bnn_bconv_create(const bnn_conv_geom *g, const uint8_t *weights /* [cout][kh][kw][ceil(cin/8)] */,
                            const bnn_epilogue *e, int variant);
void bnn_bconv_free(bnn_bconv *k);
const char *bnn_bconv_variant(const bnn_bconv *k);
/* The AVX-512 variant's lane layout: "q64", "d32" or "w16" (bnn_bconv.c); "q64" for other variants. */
const char *bnn_bconv_layout(const bnn_bconv *k);
/* Whether an int8 output requantizes in int32 lanes (bnn_epi_reduce found exact parameters). */
int bnn_bconv_requant32(const bnn_bconv *k);
/* in: uint8 [n][in_h][in_w][ceil(cin/8)]; out: per epilogue; skip: int8 [n][oh][ow][cout] or NULL.
 * Returns 0, or -1 if scratch memory could not be allocated. Safe to call from
 * several threads at once on the same kernel. */
int bnn_bconv_run(const bnn_bconv *k, const uint8_t *in, void *out, const int8_t *skip, int n, int threads);

bnn_conv8 *bnn_conv8_create(const bnn_conv_geom *g, const int8_t *weights /* [cout][kh][kw][cin] */,
                            const bnn_epilogue *e, int variant);
void bnn_conv8_free(bnn_conv8 *k);
const char *bnn_conv8_variant(const bnn_conv8 *k);
int bnn_conv8_run(const bnn_conv8 *k, const int8_t *in, void *out, const int8_t *skip, int n, int threads);

#endif
