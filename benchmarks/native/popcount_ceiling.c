/* The ceiling a binary convolution can reach on this core: XOR + POPCNT + ADD
 * over L1-resident bits, nothing else (anchors.md: "measure the ceiling on your
 * own machine with a 20-line C loop of the same three instructions").
 * Prints binary MACs per second for the AVX-512 VPOPCNTQ loop, the AVX2
 * nibble-table loop (the AVX2 kernels' popcount) and the scalar 64-bit POPCNT
 * loop. Build: cc -O3 popcount_ceiling.c -o ceiling (no -march: each SIMD loop
 * has its own target attribute and runs only if the CPU has it). */
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

/* AVX2 has no vector popcount: bytes are counted by two 16-entry table
 * lookups (VPSHUFB on the low and high nibbles), summed in byte lanes and
 * folded into 64-bit lanes by VPSADBW every 31 words (31 * 8 < 256). Blocked
 * as the AVX2 kernel: 4 weight vectors (16 words) in registers, 2 broadcast
 * activation words, 8 byte accumulators. */
__attribute__((target("avx2"))) static uint64_t avx2(int reps) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f), zero = _mm256_setzero_si256();
    __m256i wv[4], acc[2][4], sums = zero;
    for (int q = 0; q < 4; q++) wv[q] = _mm256_load_si256((const __m256i *)(w + 4 * q));
    for (int r = 0; r < reps; r++)
        for (int i0 = 0; i0 + 62 <= WORDS; i0 += 62) {
            for (int p = 0; p < 2; p++)
                for (int q = 0; q < 4; q++) acc[p][q] = zero;
            for (int i = i0; i < i0 + 62; i += 2)
                for (int p = 0; p < 2; p++) {
                    __m256i x = _mm256_set1_epi64x((long long)a[i + p]);
                    for (int q = 0; q < 4; q++) {
                        __m256i v = _mm256_xor_si256(x, wv[q]);
                        __m256i c = _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_and_si256(v, low)),
                                                    _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(v, 4), low)));
                        acc[p][q] = _mm256_add_epi8(acc[p][q], c);
                    }
                }
            for (int p = 0; p < 2; p++)
                for (int q = 0; q < 4; q++) sums = _mm256_add_epi64(sums, _mm256_sad_epu8(acc[p][q], zero));
        }
    uint64_t out[4];
    _mm256_storeu_si256((__m256i *)out, sums);
    return out[0] + out[1] + out[2] + out[3];
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
    if (__builtin_cpu_supports("avx2")) {
        int r = reps / 8;
        for (int k = 0; k < 5; k++) { double t = now(); sink = avx2(r); t = now() - t; if (t < best) best = t; }
        printf("avx2_nibble_lut %.1f G binary MAC/s\n", (double)r * (WORDS / 62 * 62) * 4 * 256 / best / 1e9);
    }
    best = 1e30;
    for (int k = 0; k < 5; k++) { double t = now(); sink = scalar(reps / 4); t = now() - t; if (t < best) best = t; }
    printf("scalar_popcnt %.1f G binary MAC/s\n", (double)reps / 4 * WORDS * 64 / best / 1e9);
    (void)sink;
    return 0;
}
