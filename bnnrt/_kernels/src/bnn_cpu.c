/* Run-time CPU feature detection and the BNNRT_DISABLE_SIMD override. */
#include "bnn_common.h"

#include <stdio.h>

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

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

static int listed(const char *list, const char *name) {
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        while (*p == ',' || *p == ' ') p++;
        const char *q = p;
        while (*q && *q != ',' && *q != ' ') q++;
        if ((size_t)(q - p) == n && !strncmp(p, name, n)) return 1;
        if ((size_t)(q - p) == 3 && !strncmp(p, "all", 3)) return 1;
        p = q;
    }
    return 0;
}

int bnn_variant_enabled(const char *name, const char *const *features) {
    const char *env = getenv("BNNRT_DISABLE_SIMD");
    if (env && listed(env, name)) return 0;
    for (; *features; features++)
        if (!bnn_cpu_has(*features)) return 0;
    return 1;
}
