/* transpose: the pixels <-> channels swap the Mixers' token mixing needs
 * (bnnrt.reference.transpose). Plain C, trusted inputs. */
#ifndef BNN_TRANSPOSE_H
#define BNN_TRANSPOSE_H

#include "bnn_common.h"

/* int8 [n][p][c] -> [n][c][p] */
void bnn_transpose_int8(const int8_t *in, int8_t *out, int n, int32_t p, int32_t c, int threads, int variant);
/* bits [n][p][ceil(c/8)] -> bits [n][c][ceil(p/8)]; the padding bits of the
 * output's last byte are 0, the input's are ignored */
void bnn_transpose_bits(const uint8_t *in, uint8_t *out, int n, int32_t p, int32_t c, int threads,
                        int variant);

#endif
