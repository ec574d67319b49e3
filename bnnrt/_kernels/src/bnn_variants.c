/* The variant table, run-time CPU feature detection and BNNRT_DISABLE_SIMD
 * (bnn_variants.h). */
#include "bnn_common.h"

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

const char *const bnn_variant_names[BNN_VARIANT_COUNT] = {
    [BNN_VARIANT_AUTO] = "auto", [BNN_VARIANT_SCALAR] = "scalar", [BNN_VARIANT_AVX512] = "avx512",
    [BNN_VARIANT_AVX2] = "avx2", [BNN_VARIANT_NEON] = "neon", [BNN_VARIANT_DOTPROD] = "dotprod",
    [BNN_VARIANT_AVX512VNNI] = "avx512vnni",
};

const char *const bnn_family_names[BNN_FAMILY_COUNT] = {
    [BNN_FAMILY_BCONV2D] = "bconv2d", [BNN_FAMILY_CONV2D_INT8] = "conv2d_int8",
    [BNN_FAMILY_CONV2D_FLOAT] = "conv2d_float", [BNN_FAMILY_BINARIZE] = "binarize",
    [BNN_FAMILY_SIGN_BITS] = "sign_bits", [BNN_FAMILY_QUANTIZE] = "quantize",
    [BNN_FAMILY_POOL_FLOAT] = "pool_float", [BNN_FAMILY_MAXPOOL] = "maxpool",
    [BNN_FAMILY_ADD_INT8] = "add_int8", [BNN_FAMILY_GLOBAL_AVGPOOL] = "global_avgpool",
    [BNN_FAMILY_TRANSPOSE] = "transpose",
};

#define ROW(fam, var, isa, ...) {BNN_FAMILY_##fam, BNN_VARIANT_##var, isa, {__VA_ARGS__, NULL}}
#define SCALAR_ROW(fam) {BNN_FAMILY_##fam, BNN_VARIANT_SCALAR, NULL, {NULL}}

const bnn_variant_row bnn_variant_table[] = {
    ROW(BCONV2D, AVX512, "avx512", "avx512", "avx512vpopcntdq"),
    ROW(BCONV2D, AVX2, "avx2", "avx2", "popcnt"),
    ROW(BCONV2D, NEON, "neon", "neon"),
    SCALAR_ROW(BCONV2D),
    ROW(CONV2D_INT8, AVX512VNNI, "avx512", "avx512", "avx512vnni"),
    ROW(CONV2D_INT8, AVX2, "avx2", "avx2"),
    ROW(CONV2D_INT8, DOTPROD, "neon", "neon", "dotprod"),     /* SDOT is an Advanced SIMD instruction */
    ROW(CONV2D_INT8, NEON, "neon", "neon"),
    SCALAR_ROW(CONV2D_INT8),
    ROW(CONV2D_FLOAT, AVX512, "avx512", "avx512"),
    ROW(CONV2D_FLOAT, AVX2, "avx2", "avx2", "fma"),
    ROW(CONV2D_FLOAT, NEON, "neon", "neon"),
    SCALAR_ROW(CONV2D_FLOAT),
    ROW(BINARIZE, AVX512, "avx512", "avx512"),              /* a bit stream, or pixel by pixel (bnn_misc.c) */
    ROW(BINARIZE, AVX2, "avx2", "avx2"),
    ROW(BINARIZE, NEON, "neon", "neon"),
    SCALAR_ROW(BINARIZE),
    ROW(SIGN_BITS, AVX512, "avx512", "avx512"),
    ROW(SIGN_BITS, AVX2, "avx2", "avx2"),
    SCALAR_ROW(SIGN_BITS),
    ROW(QUANTIZE, AVX512, "avx512", "avx512"),
    SCALAR_ROW(QUANTIZE),
    ROW(POOL_FLOAT, AVX512, "avx512", "avx512"),
    ROW(POOL_FLOAT, AVX2, "avx2", "avx2"),
    SCALAR_ROW(POOL_FLOAT),
    ROW(TRANSPOSE, AVX512, "avx512", "avx512"),            /* byte tiles 64, 32, 16 wide (bnn_transpose.c) */
    ROW(TRANSPOSE, AVX2, "avx2", "avx2"),
    ROW(TRANSPOSE, NEON, "neon", "neon"),
    SCALAR_ROW(TRANSPOSE),
    /* plain loops the compiler vectorizes with the base ISA */
    SCALAR_ROW(MAXPOOL),
    SCALAR_ROW(ADD_INT8),
    SCALAR_ROW(GLOBAL_AVGPOOL),
};
const int32_t bnn_variant_rows = sizeof(bnn_variant_table) / sizeof(bnn_variant_table[0]);

const bnn_switch_row bnn_switch_table[BNN_SWITCH_COUNT] = {
    [BNN_SWITCH_W16] = {"avx512-w16", BNN_FAMILY_BCONV2D, BNN_VARIANT_AVX512, {"avx512bitalg", NULL}},
    [BNN_SWITCH_D32] = {"avx512-d32", BNN_FAMILY_BCONV2D, BNN_VARIANT_AVX512, {NULL}},
    [BNN_SWITCH_RQ32] = {"avx512-rq32", BNN_FAMILY_BCONV2D, BNN_VARIANT_AVX512, {NULL}},
};

const char *const bnn_features[] = {"popcnt", "avx2", "fma", "avx512", "avx512vpopcntdq", "avx512vnni",
                                    "avx512bitalg", "neon", "dotprod", NULL};

int bnn_cpu_has(const char *f) {
#ifdef BNN_X86
    /* libgcc's checks include the OS's XSAVE support for the AVX/AVX-512 state */
    __builtin_cpu_init();
    if (!strcmp(f, "popcnt")) return __builtin_cpu_supports("popcnt");
    if (!strcmp(f, "avx2")) return __builtin_cpu_supports("avx2");
    if (!strcmp(f, "fma")) return __builtin_cpu_supports("fma");
    if (!strcmp(f, "avx512"))
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    if (!strcmp(f, "avx512vpopcntdq")) return __builtin_cpu_supports("avx512vpopcntdq");
    if (!strcmp(f, "avx512vnni")) return __builtin_cpu_supports("avx512vnni");
    if (!strcmp(f, "avx512bitalg")) return __builtin_cpu_supports("avx512bitalg");
    return 0;
#elif defined(__aarch64__)
    if (!strcmp(f, "neon")) return 1;
#if defined(__linux__)
    if (!strcmp(f, "dotprod")) return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#endif
    return 0;
#else
    (void)f;
    return 0;
#endif
}

/* Whether a comma (or space) separated list holds `name`; NULL names nothing. */
static int listed(const char *list, const char *name) {
    if (!list || !name) return 0;
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        while (*p == ',' || *p == ' ') p++;
        const char *q = p;
        while (*q && *q != ',' && *q != ' ') q++;
        if ((size_t)(q - p) == n && !strncmp(p, name, n)) return 1;
        p = q;
    }
    return 0;
}

static int has_all(const char *const *needs) {
    for (; *needs; needs++)
        if (!bnn_cpu_has(*needs)) return 0;
    return 1;
}

/* The scalar variant is the fallback every family has: nothing disables it. */
static int row_runs(const bnn_variant_row *r, const char *disabled) {
    if (r->variant == BNN_VARIANT_SCALAR) return 1;
    if (listed(disabled, "all") || listed(disabled, bnn_variant_names[r->variant]) || listed(disabled, r->isa))
        return 0;
    return has_all(r->needs);
}

int bnn_select(int32_t family, int32_t requested, int simd_fits) {
    const char *disabled = getenv("BNNRT_DISABLE_SIMD");
    for (int32_t i = 0; i < bnn_variant_rows; i++) {
        const bnn_variant_row *r = &bnn_variant_table[i];
        if (r->family != family || (requested != BNN_VARIANT_AUTO && r->variant != requested)) continue;
        if ((simd_fits || r->variant == BNN_VARIANT_SCALAR) && row_runs(r, disabled)) return r->variant;
        if (requested != BNN_VARIANT_AUTO) return -1;
    }
    return -1;
}

int bnn_switch_enabled(int32_t sw) {
    const bnn_switch_row *s = &bnn_switch_table[sw];
    const char *disabled = getenv("BNNRT_DISABLE_SIMD");
    return bnn_select(s->family, s->variant, 1) == s->variant && !listed(disabled, s->name) &&
           has_all(s->needs);
}
