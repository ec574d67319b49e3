/* The ceiling a binary convolution can reach on this core: XOR + POPCNT + ADD
 * over L1-resident bits, nothing else (anchors.md: "measure the ceiling on your
 * own machine with a 20-line C loop of the same three instructions").
 * Prints binary MACs per second for the AVX-512 VPOPCNTQ loop and the scalar
 * 64-bit POPCNT loop. Build: cc -O3 popcount_ceiling.c -o ceiling (no -march:
 * the AVX-512 loop has its own target attribute and runs only if the CPU has it). */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#define WORDS 1024 /* 8 KiB of activations and 8 KiB of weights: L1 */
static uint64_t a[WORDS] __attribute__((aligned(64))), w[WORDS] __attribute__((aligned(64)));

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }

/* Register-blocked as a convolution would be at best: 4 weight vectors stay
 * in registers, each broadcast 64-bit activation word meets all 4, 24
 * independent accumulators hide VPOPCNTQ's latency. Per vector: one XOR (its
 * broadcast load folded in), one VPOPCNTQ, one VPADDQ. */
__attribute__((target("avx512f,avx512vpopcntdq"))) static uint64_t avx512(int reps) {
    __m512i acc[6][4], wv[4];
    for (int p = 0; p < 6; p++)
        for (int q = 0; q < 4; q++) acc[p][q] = _mm512_setzero_si512();
    for (int q = 0; q < 4; q++) wv[q] = _mm512_load_si512(w + 8 * q);
    for (int r = 0; r < reps; r++)
        for (int i = 0; i + 6 <= WORDS; i += 6)
            for (int p = 0; p < 6; p++) {
                __m512i x = _mm512_set1_epi64((long long)a[i + p]);
                for (int q = 0; q < 4; q++)
                    acc[p][q] = _mm512_add_epi64(acc[p][q], _mm512_popcnt_epi64(_mm512_xor_si512(x, wv[q])));
            }
    uint64_t s = 0;
    for (int p = 0; p < 6; p++)
        for (int q = 0; q < 4; q++) s += _mm512_reduce_add_epi64(acc[p][q]);
    return s;
}

__attribute__((target("popcnt"))) static uint64_t scalar(int reps) {
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (int r = 0; r < reps; r++)
        for (int i = 0; i < WORDS; i += 4) {
            s0 += __builtin_popcountll(a[i] ^ w[i]);         s1 += __builtin_popcountll(a[i + 1] ^ w[i + 1]);
            s2 += __builtin_popcountll(a[i + 2] ^ w[i + 2]); s3 += __builtin_popcountll(a[i + 3] ^ w[i + 3]);
        }
    return s0 + s1 + s2 + s3;
}

int main(void) {
    for (int i = 0; i < WORDS; i++) { a[i] = 0x9E3779B97F4A7C15ull * (i + 1); w[i] = a[i] * 0xBF58476D1CE4E5B9ull; }
    __builtin_cpu_init();
    int reps = 200000;
    volatile uint64_t sink;
    double best = 1e30;
    if (__builtin_cpu_supports("avx512vpopcntdq")) {
        int r = reps / 16;
        for (int k = 0; k < 5; k++) { double t = now(); sink = avx512(r); t = now() - t; if (t < best) best = t; }
        printf("avx512_vpopcntq %.1f G binary MAC/s\n", (double)r * (WORDS / 6 * 6) * 4 * 512 / best / 1e9);
    }
    best = 1e30;
    for (int k = 0; k < 5; k++) { double t = now(); sink = scalar(reps / 4); t = now() - t; if (t < best) best = t; }
    printf("scalar_popcnt %.1f G binary MAC/s\n", (double)reps / 4 * WORDS * 64 / best / 1e9);
    (void)sink;
    return 0;
}
