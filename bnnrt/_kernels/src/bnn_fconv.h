/* Direct float32 convolution (stems with few input channels, depthwise). */
#ifndef BNN_FCONV_H
#define BNN_FCONV_H

#include "bnn_conv.h"

typedef struct bnn_fconv bnn_fconv;

/* weights float (Cout, kh, kw, Cin/groups); groups is 1 or Cin with Cin/groups == 1
 * (depthwise); bias float[Cout] or NULL; the output is clamped to [lo, hi] (the
 * activation: -inf..inf, 0..inf, 0..6, -1..1). NULL if out of memory or the
 * variant cannot run here. Everything handed in is trusted. */
bnn_fconv *bnn_fconv_create(const bnn_conv_geom *g, int32_t groups, const float *weights, const float *bias,
                            float lo, float hi, int variant);
void bnn_fconv_free(bnn_fconv *k);
const char *bnn_fconv_variant(const bnn_fconv *k);
/* in float [n][in_h][in_w][cin], out float [n][out_h][out_w][cout]. Thread-safe. */
int bnn_fconv_run(const bnn_fconv *k, const float *in, float *out, int n, int threads);

#endif
