/* The variant table: every kernel family's variants, best first, what each
 * needs of the CPU, and the one function that picks among them
 * (bnn_variants.c). Kernels call bnn_select once, when they are built, and
 * keep its answer; cpu_info() reads the same table. */
#ifndef BNN_VARIANTS_H
#define BNN_VARIANTS_H

#include <stdint.h>

/* A variant code names one implementation, the same in every family. */
enum { BNN_VARIANT_AUTO = 0, BNN_VARIANT_SCALAR = 1, BNN_VARIANT_AVX512 = 2, BNN_VARIANT_AVX2 = 3,
       BNN_VARIANT_NEON = 4, BNN_VARIANT_DOTPROD = 5, BNN_VARIANT_AVX512VNNI = 6, BNN_VARIANT_COUNT };
/* "auto", "scalar", "avx512", ...: the names Kernel.variant, cpu_info() and
 * BNNRT_DISABLE_SIMD use, indexed by code */
extern const char *const bnn_variant_names[BNN_VARIANT_COUNT];

enum { BNN_FAMILY_BCONV2D, BNN_FAMILY_CONV2D_INT8, BNN_FAMILY_CONV2D_FLOAT, BNN_FAMILY_BINARIZE,
       BNN_FAMILY_SIGN_BITS, BNN_FAMILY_QUANTIZE, BNN_FAMILY_POOL_FLOAT, BNN_FAMILY_MAXPOOL,
       BNN_FAMILY_ADD_INT8, BNN_FAMILY_GLOBAL_AVGPOOL, BNN_FAMILY_TRANSPOSE, BNN_FAMILY_COUNT };
/* "bconv2d", "conv2d_int8", ...: the keys of cpu_info()'s "kernels", indexed by family */
extern const char *const bnn_family_names[BNN_FAMILY_COUNT];

typedef struct {
    int32_t family;         /* BNN_FAMILY_* */
    int32_t variant;        /* BNN_VARIANT_*: what the kernel stores */
    const char *isa;        /* the instruction set it belongs to (NULL for scalar): BNNRT_DISABLE_SIMD
                               naming it disables every variant of it (avx512: also avx512vnni) */
    const char *needs[4];   /* bnn_cpu_has features, NULL-terminated */
} bnn_variant_row;

/* Every family's rows, best first, scalar last: bnn_select takes the first that runs. */
extern const bnn_variant_row bnn_variant_table[];
extern const int32_t bnn_variant_rows;

/* Switches inside a variant: the AVX-512 binary conv's lane layouts and its
 * int32 requantization (bnn_bconv.c). On when the variant they refine runs,
 * the CPU has their own needs too, and BNNRT_DISABLE_SIMD names neither them
 * nor "all". */
enum { BNN_SWITCH_W16, BNN_SWITCH_D32, BNN_SWITCH_RQ32, BNN_SWITCH_COUNT };
typedef struct {
    const char *name;       /* what BNNRT_DISABLE_SIMD calls it */
    int32_t family, variant;
    const char *needs[4];
} bnn_switch_row;
extern const bnn_switch_row bnn_switch_table[BNN_SWITCH_COUNT];

/* Whether this CPU and OS support a feature of bnn_features ("avx512" is F+BW+DQ+VL). */
int bnn_cpu_has(const char *feature);
extern const char *const bnn_features[];     /* NULL-terminated */

/* The variant a kernel of `family` runs: `requested` when it is one of the
 * family's rows and runs here now (the CPU has what it needs and
 * BNNRT_DISABLE_SIMD names neither it, nor its ISA, nor "all"); for
 * BNN_VARIANT_AUTO the first such row; -1 otherwise. simd_fits = 0: the
 * plan's shape is one only the scalar variant takes (AUTO gives scalar, any
 * other request -1). Reads the environment: kernels call it when they are
 * built, never per run. */
int bnn_select(int32_t family, int32_t requested, int simd_fits);
int bnn_switch_enabled(int32_t sw);

#endif
