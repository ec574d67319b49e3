/* Shared by every kernel: target attributes of the SIMD variants, CPU
 * feature detection, the OpenMP helper, unaligned loads and the integer
 * requantization. Header-only (static inline) so each kernel's translation
 * unit, including its SIMD functions, inlines its own copy. The convolutions'
 * epilogue has its own header, bnn_epilogue.h. */
#ifndef BNN_COMMON_H
#define BNN_COMMON_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define BNN_X86 1
/* Each SIMD function carries its own target attribute (never -march): the
 * base AVX-512 set for shared helpers, plus what each kernel needs. */
#define BNN_AVX512_BASE __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,popcnt")))
#define BNN_AVX512_POPCNT __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,popcnt,avx512vpopcntdq")))
#define BNN_AVX512_VNNI __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,popcnt,avx512vnni")))
#define BNN_AVX2 __attribute__((target("avx2,popcnt")))
#elif defined(__aarch64__)
#include <arm_neon.h>
#define BNN_ARM 1
/* NEON is part of the AArch64 base; SDOT (Armv8.2 dot product) is optional:
 * its functions carry the target attribute and run only where HWCAP says so. */
#define BNN_DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))
#endif

#include "bnn_variants.h"    /* the variant table every kernel selects from */

/* ---- threads ----
 * Entering an OpenMP parallel region costs a futex round trip in libgomp even
 * for a team of one (`if (0)`), a large part of a small layer's time
 * (docs/performance.md). Kernels open a region only when it has work for several threads.
 * BNN_PARALLEL_FOR(cond, for (...) body) runs the loop on `threads` (a
 * variable in scope) threads when cond holds, else on the calling thread. */
#define BNN_PARALLEL_FOR(cond, ...)                                                         \
    do {                                                                                    \
        if (cond) {                                                                         \
            _Pragma("omp parallel for num_threads(threads) schedule(static)") __VA_ARGS__ \
        } else {                                                                            \
            __VA_ARGS__                                                                     \
        }                                                                                   \
    } while (0)

/* ---- register blocking of the AVX-512 kernels ----
 * A block of P output pixels x G channel groups keeps P * G accumulators (and
 * G weights and a broadcast) in the 32 registers; each (P, G) is its own
 * fully unrolled instantiation. BNN_GROUP_SWITCH runs BLOCKS(P, G) for the
 * run-time group count G in 1..4, with that count's pixel count P1..P4;
 * BNN_SPAN runs STEP(p, ...) over i in [i, end): blocks of P, then 4, 2 and 1. */
#define BNN_GROUP_SWITCH(G, BLOCKS, P1, P2, P3, P4) \
    switch (G) {                                    \
    case 1: BLOCKS(P1, 1) break;                    \
    case 2: BLOCKS(P2, 2) break;                    \
    case 3: BLOCKS(P3, 3) break;                    \
    default: BLOCKS(P4, 4) break;                   \
    }
#define BNN_SPAN(i, end, P, STEP, ...)                          \
    for (; i + P <= end; i += P) STEP(P, __VA_ARGS__);          \
    for (; i + 4 <= end; i += 4) STEP(4, __VA_ARGS__);          \
    for (; i + 2 <= end; i += 2) STEP(2, __VA_ARGS__);          \
    for (; i < end; i++) STEP(1, __VA_ARGS__);

/* ---- unaligned loads without undefined behaviour ---- */
typedef struct { uint64_t v; } __attribute__((packed, may_alias)) bnn_u64u;
typedef struct { uint32_t v; } __attribute__((packed, may_alias)) bnn_u32u;
static inline uint64_t bnn_load64(const uint8_t *p) { return ((const bnn_u64u *)p)->v; }
static inline uint32_t bnn_load32(const uint8_t *p) { return ((const bnn_u32u *)p)->v; }

/* round_half_up(x * m / 2^shift), exact in 64 bits for int32 x and m (quant.requantize) */
static inline int64_t bnn_requant(int64_t x, int64_t m, int64_t rnd, int64_t shift) {
    return (x * m + rnd) >> shift;
}
static inline int64_t bnn_round_of(int64_t shift) { return shift > 0 ? (int64_t)1 << (shift - 1) : 0; }

#endif
