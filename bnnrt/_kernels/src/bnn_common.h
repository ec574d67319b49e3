/* Shared by every kernel: portable helpers, CPU feature detection, and the
 * fused epilogue (int32 / threshold bits / requantize + skip add + clamp) that
 * both convolutions end with. Header-only (static inline) so each kernel's
 * translation unit, including its SIMD functions, inlines its own copy. */
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
 * for a team of one (`if (0)`): about 0.3 us a call, a tenth of a small
 * layer. Kernels open a region only when it has work for several threads.
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

/* ---- the epilogue ---- */
enum { BNN_OUT_INT32 = 0, BNN_OUT_BITS = 1, BNN_OUT_INT8 = 2, BNN_OUT_FLOAT = 3 };

typedef struct {            /* what the caller hands over (trusted, validated in Python) */
    int32_t kind;
    const int32_t *thresholds;          /* bits: +1 (bit 0) iff y >= thresholds[c] */
    const int32_t *bias, *multiplier;   /* int8: requant(y + bias) ; int32: y + bias */
    const int8_t *shift;
    const float *fmult, *fbias;         /* float: float(clamp(y)) * fmult + fbias (LCE's epilogue)
                                           [+ skip: a float tensor, handed over as the skip pointer],
                                           then clamped to [flo, fhi] (the fused add's activation) */
    float flo, fhi;
    int32_t clamp_lo, clamp_hi;         /* int8: the output range; float: the range of y */
    int32_t has_skip, skip_multiplier, skip_shift;
} bnn_epilogue;

typedef struct {            /* prepared once: per-channel int64, padded to a multiple of 16 lanes */
    int32_t kind, cout, clamp_lo, clamp_hi, has_skip, skip_shift;
    int32_t fits32;         /* y + bias always fits int32: a 32x32->64 multiply is exact */
    int64_t skip_mult, skip_round;
    int32_t skip_identity;  /* requantize(skip) == skip (multiplier 2^shift) */
    int64_t *thr, *bias, *mult, *rnd, *shift;
    int32_t *bias32, *mult32;   /* int32 copies for 32x32->64 multiplies (meaningful when fits32) */
    int64_t *nshift;            /* -shift, for shift-by-register instructions that shift left */
    float *fmult, *fbias;
    float flo, fhi;
    int32_t yclamp, fclamp; /* float: whether the clamp of y / of the result can change a value */
    int32_t fast16;         /* int8: |y| < 2^31, so y * mult + brnd is the exact requant numerator */
    int64_t *brnd;          /* int8: bias * mult + rnd (|.| < 2^63: |bias|, |mult| < 2^31, rnd <= 2^61) */
    int32_t lanes32;        /* int8: fast16, and requant(y + bias) and requant(skip) fit int32
                               (|.| < 2^30 each) for every |y| <= max_abs_y */
    int64_t *brnd_eo, *shift_eo;  /* brnd, shift per 16 channels: the 8 even ones, then the 8 odd */
    /* int8 output straight from a count x (the binary conv's popcount sum,
     * y = y0 + dy x): (x * am + ab) >> as in int32 lanes, the parameters
     * found and checked at plan time (bnn_epi_reduce): the same outputs as
     * requant(y + bias) for every possible x */
    int32_t rq32;
    int32_t *am, *ab, *as;
    int32_t skm, skb, sks;      /* with rq32, a skip with its own scale: (s * skm + skb) >> sks */
    int32_t sat8;               /* the clamp is [-128, 127]: a saturating narrowing does it */
} bnn_epi;

static inline void bnn_epi_free(bnn_epi *e) {
    free(e->thr); free(e->bias); free(e->mult); free(e->rnd); free(e->shift); free(e->brnd_eo); free(e->shift_eo);
    free(e->bias32); free(e->mult32); free(e->nshift); free(e->fmult); free(e->fbias); free(e->brnd);
    free(e->am); free(e->ab); free(e->as);
}

/* max_abs_y bounds |y| (the accumulator before the bias) for every input. */
static inline int bnn_epi_init(bnn_epi *e, const bnn_epilogue *src, int32_t cout, int64_t max_abs_y) {
    size_t n = ((size_t)cout + 15) / 16 * 16;
    memset(e, 0, sizeof(*e));
    e->kind = src->kind; e->cout = cout;
    e->clamp_lo = src->clamp_lo; e->clamp_hi = src->clamp_hi;
    e->flo = src->flo; e->fhi = src->fhi;
    e->has_skip = src->has_skip; e->skip_shift = src->skip_shift;
    e->skip_mult = src->skip_multiplier; e->skip_round = bnn_round_of(src->skip_shift);
    int64_t **arrs[9] = {&e->thr, &e->bias, &e->mult, &e->rnd, &e->shift, &e->nshift, &e->brnd,
                         &e->brnd_eo, &e->shift_eo};
    for (int i = 0; i < 9; i++) {
        *arrs[i] = (int64_t *)aligned_alloc(64, n * sizeof(int64_t));
        if (!*arrs[i]) { bnn_epi_free(e); return -1; }
    }
    e->bias32 = (int32_t *)aligned_alloc(64, n * sizeof(int32_t));
    e->mult32 = (int32_t *)aligned_alloc(64, n * sizeof(int32_t));
    e->fmult = (float *)aligned_alloc(64, n * sizeof(float));
    e->fbias = (float *)aligned_alloc(64, n * sizeof(float));
    if (!e->bias32 || !e->mult32 || !e->fmult || !e->fbias) { bnn_epi_free(e); return -1; }
    for (size_t c = 0; c < n; c++) {
        int real = (int32_t)c < cout;
        /* padded lanes: threshold below every y, so their bits stay 0 */
        e->thr[c] = (real && src->thresholds) ? src->thresholds[c] : INT64_MIN;
        e->bias[c] = (real && src->bias) ? src->bias[c] : 0;
        e->mult[c] = (real && src->multiplier) ? src->multiplier[c] : 0;
        e->shift[c] = (real && src->shift) ? src->shift[c] : 0;
        e->rnd[c] = bnn_round_of(e->shift[c]);
        e->brnd[c] = e->bias[c] * e->mult[c] + e->rnd[c];
        e->nshift[c] = -e->shift[c];
        e->bias32[c] = (int32_t)e->bias[c];      /* exact: bias is int32 on the way in */
        e->mult32[c] = (int32_t)e->mult[c];
        e->fmult[c] = (real && src->fmult) ? src->fmult[c] : 0.0f;
        e->fbias[c] = (real && src->fbias) ? src->fbias[c] : 0.0f;
    }
    e->skip_identity = e->skip_shift >= 0 && e->skip_shift < 31 &&
                       e->skip_mult == ((int64_t)1 << e->skip_shift);
    int64_t max_bias = 0;
    for (int32_t c = 0; c < cout; c++) max_bias = e->bias[c] < 0 ? (-e->bias[c] > max_bias ? -e->bias[c] : max_bias)
                                                                  : (e->bias[c] > max_bias ? e->bias[c] : max_bias);
    e->fits32 = max_abs_y + max_bias < ((int64_t)1 << 31);
    /* |y| <= max_abs_y: a clamp wider than that is the identity, skipped */
    e->yclamp = e->clamp_lo > -max_abs_y || e->clamp_hi < max_abs_y;
    e->fclamp = !(e->flo == -INFINITY && e->fhi == INFINITY);
    /* requant(y + bias) = (y * mult + brnd) >> shift exactly; y * mult by the
     * 32x32->64 vpmuldq needs y in int32 */
    e->fast16 = e->kind == BNN_OUT_INT8 && max_abs_y < ((int64_t)1 << 31);
    e->lanes32 = e->fast16;
    if (e->has_skip) {      /* |requant(skip)| <= (128 |skip_mult| + skip_round) >> skip_shift */
        __int128 sm = e->skip_mult < 0 ? -(__int128)e->skip_mult : e->skip_mult;
        if (((128 * sm + e->skip_round) >> e->skip_shift) >= ((__int128)1 << 30)) e->lanes32 = 0;
    }
    for (size_t c = 0; c < n; c++) {
        size_t at = c / 16 * 16 + (c % 2) * 8 + (c % 16) / 2;
        e->brnd_eo[at] = e->brnd[c];
        e->shift_eo[at] = e->shift[c];
        /* |y * mult + brnd| <= max_abs_y * |mult| + |brnd| < 2^94: exact in 128 bits */
        __int128 m = e->mult[c] < 0 ? -(__int128)e->mult[c] : e->mult[c];
        __int128 b = e->brnd[c] < 0 ? -(__int128)e->brnd[c] : e->brnd[c];
        if ((((__int128)max_abs_y * m + b) >> e->shift[c]) >= ((__int128)1 << 30)) e->lanes32 = 0;
    }
    e->sat8 = e->clamp_lo == -128 && e->clamp_hi == 127;
    return 0;
}

/* floor((x * M + B) / 2^S), exactly */
static inline __int128 bnn_floor_lin(__int128 M, __int128 B, int S, int64_t x) { return (x * M + B) >> S; }

/* int32 parameters (m, b, s) with (x * m + b) >> s == floor((x * M + B) / 2^S)
 * for every integer x in [xlo, xhi], computed in int32 lanes: m and b fit
 * int32 and |x * m + b| < 2^30 at every x in [elo, ehi], a range holding
 * [xlo, xhi] (the multiply may wrap, the sum then lands on the exact value). Every x is checked: for a candidate m
 * (M 2^s / 2^S rounded down or up, the largest s whose results fit first),
 * the b that work form an interval, the intersection over x of
 * [T(x) 2^s - x m, (T(x) + 1) 2^s - x m); any b in it is exact by
 * construction. Returns 0 when found, -1 when none of the first few s is or
 * the budget of counts to check runs out (the caller keeps its 64-bit path). */
static inline int bnn_fit_requant32(__int128 M, __int128 B, int S, int64_t xlo, int64_t xhi,
                                    int64_t elo, int64_t ehi, int32_t *m, int32_t *b, int32_t *s,
                                    int64_t *budget /* counts left to check; -1 when spent */) {
    /* m, b fit int32; x * m + b stays within +-2^30, so the result and a skip
     * term of the same bound add up without overflow */
    const __int128 LIM = (__int128)1 << 31, SUM = (__int128)1 << 30;
    const __int128 t0 = bnn_floor_lin(M, B, S, elo), t1 = bnn_floor_lin(M, B, S, ehi);
    int tried = 0;
    for (int sh = 31; sh >= 0 && tried < 12; sh--) {
        const __int128 one = (__int128)1 << sh;
        /* the results at the ends times 2^s must fit, with room for b's slack */
        if ((t0 < 0 ? -t0 : t0 + 1) * one >= SUM || (t1 < 0 ? -t1 : t1 + 1) * one >= SUM) continue;
        tried++;
        const __int128 q = S >= sh ? (M >> (S - sh)) : M * ((__int128)1 << (sh - S));
        for (int up = 0; up < 2; up++) {
            const __int128 mm = q + up;
            if (mm >= LIM || mm < -LIM) continue;
            __int128 lo = -LIM, hi = LIM - 1;
            if ((*budget -= xhi - xlo + 1) < 0) return -1;
            for (int64_t x = xlo; x <= xhi && lo <= hi; x++) {
                __int128 v = bnn_floor_lin(M, B, S, x) * one - x * mm;   /* lowest b for this x */
                if (v > lo) lo = v;
                if (v + one - 1 < hi) hi = v + one - 1;
            }
            if (lo > hi) continue;
            const __int128 e0 = elo * mm + lo, e1 = ehi * mm + lo;      /* linear in x: the ends bound it */
            if (e0 >= SUM || e0 < -SUM || e1 >= SUM || e1 < -SUM) continue;
            *m = (int32_t)mm; *b = (int32_t)lo; *s = sh;
            return 0;
        }
    }
    return -1;
}

/* Sets e->rq32 when the int8 epilogue of y = y0 + dy x, x a count in
 * [0, xmax], can run in int32 lanes (bnn_epi_rq32_avx512):
 *   out = clamp(requant(y + bias) + requant(skip), lo, hi).
 * requant(skip) lies in [smin, smax], so wherever requant(y + bias) <= lo - smax
 * the output is lo whatever the skip, and >= hi - smin gives hi. Per channel,
 * (x * am + ab) >> as must equal requant(y + bias) only on [xa, xb], from the
 * last count that always gives lo (or hi) to the first that always gives the
 * other end: being monotone in x, it then pins every count outside at the
 * same end, as long as no count overflows int32 (checked at 0 and xmax).
 * Without that window, all 2305 counts of a 256-channel 3x3 conv often find
 * no exact int32 parameters. The skip's requant reduces over s in [-128, 127].
 * Returns -1 on allocation failure, else 0 (rq32 may stay 0). */
static inline int bnn_epi_reduce(bnn_epi *e, int64_t y0, int64_t dy, int64_t xmax) {
    e->rq32 = 0;
    if (e->kind != BNN_OUT_INT8) return 0;
    size_t n = ((size_t)e->cout + 15) / 16 * 16;
    int32_t **arrs[3] = {&e->am, &e->ab, &e->as};
    for (int i = 0; i < 3; i++) {
        free(*arrs[i]);
        *arrs[i] = (int32_t *)aligned_alloc(64, n * sizeof(int32_t));
        if (!*arrs[i]) return -1;
        memset(*arrs[i], 0, n * sizeof(int32_t));      /* padded lanes: 0, never stored */
    }
    if (xmax >= ((int64_t)1 << 31)) return 0;
    /* the counts checked, over all channels and candidates: under a million
     * (a few ms) for the 256-channel layers of ResNet-20; a pathological
     * layer gives up at 2^24 (~50 ms) */
    int64_t budget = (int64_t)1 << 24;
    __int128 smin = 0, smax = 0;
    if (e->has_skip) {
        smin = -128; smax = 127;
        if (!e->skip_identity) {
            if (bnn_fit_requant32(e->skip_mult, e->skip_round, e->skip_shift, -128, 127, -128, 127,
                                  &e->skm, &e->skb, &e->sks, &budget))
                return 0;
            __int128 a = bnn_floor_lin(e->skip_mult, e->skip_round, e->skip_shift, -128),
                     b = bnn_floor_lin(e->skip_mult, e->skip_round, e->skip_shift, 127);
            smin = a < b ? a : b; smax = a < b ? b : a;       /* monotone in s */
            if (smin <= -((__int128)1 << 30) || smax >= ((__int128)1 << 30)) return 0;
        }
    }
    const __int128 rlo = e->clamp_lo - smax, rhi = e->clamp_hi - smin;
    for (int32_t c = 0; c < e->cout; c++) {
        /* requant(y + bias) = ((y0 + bias + dy x) mult + rnd) >> shift: monotone in x */
        const __int128 M = (__int128)dy * e->mult[c], B = (__int128)(y0 + e->bias[c]) * e->mult[c] + e->rnd[c];
        const int S = (int)e->shift[c];
        int64_t xa = 0, xb = 0;
        if (M != 0) {
            /* up: the counts at which the output is pinned at the low end come first */
            const int up = M > 0;
            /* xa: the last x pinned at the first end (0 if none); binary search, monotone */
            int64_t l = 0, h = xmax;
            if (up ? bnn_floor_lin(M, B, S, 0) <= rlo : bnn_floor_lin(M, B, S, 0) >= rhi) {
                while (l < h) {
                    int64_t mid = l + (h - l + 1) / 2;
                    __int128 r = bnn_floor_lin(M, B, S, mid);
                    if (up ? r <= rlo : r >= rhi) l = mid; else h = mid - 1;
                }
                xa = l;
            }
            /* xb: the first x pinned at the other end (xmax if none) */
            l = xa; h = xmax;
            while (l < h) {
                int64_t mid = l + (h - l) / 2;
                __int128 r = bnn_floor_lin(M, B, S, mid);
                if (up ? r >= rhi : r <= rlo) h = mid; else l = mid + 1;
            }
            xb = l;
        }
        if (bnn_fit_requant32(M, B, S, xa, xb, 0, xmax, &e->am[c], &e->ab[c], &e->as[c], &budget)) return 0;
    }
    e->rq32 = 1;
    return 0;
}

/* Scalar epilogue of one output pixel: y[0..cout) -> out pixel `pix`.
 * Every field is read into a local first: the int8/uint8 stores may alias
 * anything, and would otherwise force a reload of each constant per channel. */
static inline void bnn_epi_pixel(const bnn_epi *e, const int64_t *y, size_t pix, void *out,
                                 const int8_t *skip) {
    const int32_t cout = e->cout;
    const int64_t *restrict bias = e->bias;
    if (e->kind == BNN_OUT_INT32) {
        int32_t *restrict o = (int32_t *)out + pix * cout;
        for (int c = 0; c < cout; c++) o[c] = (int32_t)(y[c] + bias[c]);
    } else if (e->kind == BNN_OUT_BITS) {
        const int64_t *restrict thr = e->thr;
        uint8_t *restrict o = (uint8_t *)out + pix * ((cout + 7) / 8);
        for (int c = 0; c < cout; c += 8) {
            unsigned byte = 0;
            for (int l = 0; l < 8 && c + l < cout; l++) byte |= (unsigned)(y[c + l] < thr[c + l]) << l;
            o[c / 8] = (uint8_t)byte;
        }
    } else if (e->kind == BNN_OUT_FLOAT) {
        const float *restrict fm = e->fmult, *restrict fb = e->fbias;
        const int64_t lo = e->clamp_lo, hi = e->clamp_hi;
        float *o = (float *)out + pix * cout;          /* o may be the skip (in place): no restrict */
        /* the skip of a float output is float (the residual add), passed as bytes */
        const float *sk = e->has_skip ? (const float *)(const void *)skip + pix * cout : NULL;
        for (int c = 0; c < cout; c++) {
            int64_t v = y[c] < lo ? lo : y[c] > hi ? hi : y[c];
            float t = (float)v * fm[c] + fb[c];
            t = sk ? t + sk[c] : t;
            o[c] = t < e->flo ? e->flo : (t > e->fhi ? e->fhi : t);
        }
    } else {
        const int64_t *restrict mult = e->mult, *restrict rnd = e->rnd, *restrict shift = e->shift;
        const int64_t lo = e->clamp_lo, hi = e->clamp_hi;
        int8_t *o = (int8_t *)out + pix * cout;        /* o may be the skip (in place): no restrict */
        if (e->has_skip) {
            const int8_t *sk = skip + pix * cout;
            const int64_t sm = e->skip_mult, sr = e->skip_round, ss = e->skip_shift;
            for (int c = 0; c < cout; c++) {
                int64_t v = bnn_requant(y[c] + bias[c], mult[c], rnd[c], shift[c]) + bnn_requant(sk[c], sm, sr, ss);
                o[c] = (int8_t)(v < lo ? lo : v > hi ? hi : v);
            }
        } else {
            for (int c = 0; c < cout; c++) {
                int64_t v = bnn_requant(y[c] + bias[c], mult[c], rnd[c], shift[c]);
                o[c] = (int8_t)(v < lo ? lo : v > hi ? hi : v);
            }
        }
    }
}

#ifdef BNN_X86
/* AVX-512 epilogue of 8 channels [c0, c0+8) of one pixel, y in int64 lanes. */
BNN_AVX512_BASE static inline void bnn_epi8_avx512(const bnn_epi *e, __m512i y, int c0, size_t pix,
                                              void *out, const int8_t *skip) {
    int32_t cout = e->cout;
    int n = cout - c0 < 8 ? cout - c0 : 8;
    __mmask8 m = (__mmask8)((1u << n) - 1);
    if (e->kind == BNN_OUT_BITS) {
        __mmask8 neg = _mm512_cmplt_epi64_mask(y, _mm512_load_si512(e->thr + c0));
        ((uint8_t *)out)[pix * ((cout + 7) / 8) + c0 / 8] = (uint8_t)(neg & m);
    } else if (e->kind == BNN_OUT_INT32) {
        y = _mm512_add_epi64(y, _mm512_load_si512(e->bias + c0));
        /* narrow in registers, then a plain store: the masked narrowing store
         * (vpmovqd to memory) is microcoded on some cores */
        __m256i y32 = _mm512_cvtepi64_epi32(y);
        if (n == 8) _mm256_storeu_si256((__m256i *)((int32_t *)out + pix * cout + c0), y32);
        else _mm256_mask_storeu_epi32((int32_t *)out + pix * cout + c0, m, y32);
    } else if (e->kind == BNN_OUT_FLOAT) {
        if (e->yclamp) {
            y = _mm512_max_epi64(y, _mm512_set1_epi64(e->clamp_lo));
            y = _mm512_min_epi64(y, _mm512_set1_epi64(e->clamp_hi));
        }
        __m256 f = _mm256_cvtepi32_ps(_mm512_cvtepi64_epi32(y));   /* |y| < 2^31: exact narrowing */
        f = _mm256_add_ps(_mm256_mul_ps(f, _mm256_load_ps(e->fmult + c0)), _mm256_load_ps(e->fbias + c0));
        if (e->has_skip) {
            const float *sk = (const float *)(const void *)skip + pix * cout + c0;
            f = _mm256_add_ps(f, n == 8 ? _mm256_loadu_ps(sk) : _mm256_maskz_loadu_ps(m, sk));
        }
        /* max(lo, f), min(hi, .): a NaN f is the second operand, so it passes (as in C) */
        if (e->fclamp) f = _mm256_min_ps(_mm256_set1_ps(e->fhi), _mm256_max_ps(_mm256_set1_ps(e->flo), f));
        if (n == 8) _mm256_storeu_ps((float *)out + pix * cout + c0, f);
        else _mm256_mask_storeu_ps((float *)out + pix * cout + c0, m, f);
    } else {
        __m512i t = _mm512_add_epi64(y, _mm512_load_si512(e->bias + c0));
        /* vpmuldq (1 uop) multiplies the low 32 bits of each lane, sign-extended:
         * exact when y + bias fits int32, which the plan proved; else vpmullq */
        t = e->fits32 ? _mm512_mul_epi32(t, _mm512_load_si512(e->mult + c0))
                      : _mm512_mullo_epi64(t, _mm512_load_si512(e->mult + c0));
        t = _mm512_add_epi64(t, _mm512_load_si512(e->rnd + c0));
        t = _mm512_srav_epi64(t, _mm512_load_si512(e->shift + c0));
        if (e->has_skip) {
            __m128i s8 = n == 8 ? _mm_loadl_epi64((const __m128i *)(skip + pix * cout + c0))
                                : _mm_maskz_loadu_epi8(m, skip + pix * cout + c0);
            __m512i s = _mm512_mul_epi32(_mm512_cvtepi8_epi64(s8), _mm512_set1_epi64(e->skip_mult));
            s = _mm512_add_epi64(s, _mm512_set1_epi64(e->skip_round));
            s = _mm512_sra_epi64(s, _mm_cvtsi32_si128(e->skip_shift));
            t = _mm512_add_epi64(t, s);
        }
        t = _mm512_max_epi64(t, _mm512_set1_epi64(e->clamp_lo));
        t = _mm512_min_epi64(t, _mm512_set1_epi64(e->clamp_hi));
        __m128i b = _mm512_cvtepi64_epi8(t);          /* clamped: truncation is exact */
        if (n == 8) _mm_storel_epi64((__m128i *)((int8_t *)out + pix * cout + c0), b);
        else _mm_mask_storeu_epi8((int8_t *)out + pix * cout + c0, m, b);
    }
}

/* The float epilogue of 16 channels [c0, c0+16) of one pixel, y in the int64
 * lanes of two registers (channels c0..c0+7, c0+8..c0+15): narrowed to one
 * register of int32 first, so the clamp, conversion, multiply, add, skip and
 * activation run once per 16 channels instead of twice per 8. Same operations
 * in the same order as bnn_epi8_avx512: bit-identical results. */
BNN_AVX512_BASE static inline void bnn_epi16f_avx512(const bnn_epi *e, __m512i y0, __m512i y1, int c0,
                                                     size_t pix, void *out, const int8_t *skip) {
    const int32_t cout = e->cout;
    const int n = cout - c0 < 16 ? cout - c0 : 16;
    const __mmask16 m = (__mmask16)((1u << n) - 1);
    __m512i y = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(y0)),
                                   _mm512_cvtepi64_epi32(y1), 1);       /* |y| < 2^31: exact */
    if (e->yclamp) {
        y = _mm512_max_epi32(y, _mm512_set1_epi32(e->clamp_lo));
        y = _mm512_min_epi32(y, _mm512_set1_epi32(e->clamp_hi));
    }
    __m512 f = _mm512_cvtepi32_ps(y);
    f = _mm512_add_ps(_mm512_mul_ps(f, _mm512_loadu_ps(e->fmult + c0)), _mm512_loadu_ps(e->fbias + c0));
    float *o = (float *)out + pix * cout + c0;
    if (e->has_skip) {
        const float *sk = (const float *)(const void *)skip + pix * cout + c0;
        f = _mm512_add_ps(f, n == 16 ? _mm512_loadu_ps(sk) : _mm512_maskz_loadu_ps(m, sk));
    }
    if (e->fclamp) f = _mm512_min_ps(_mm512_set1_ps(e->fhi), _mm512_max_ps(_mm512_set1_ps(e->flo), f));
    if (n == 16) _mm512_storeu_ps(o, f);
    else _mm512_mask_storeu_ps(o, m, f);
}

/* The int8 epilogue of 16 channels [c0, c0+16) (when e->fast16): per 64-bit
 * half, y * mult + (bias * mult + rnd), the arithmetic shift and, for a skip
 * with its own scale, its requantized value; then both halves narrow with
 * signed saturation into 16 int16 lanes, where an identity skip is a
 * saturating add, the clamp and the narrowing to int8 run once. Saturation
 * keeps every value's side of [lo, hi] (|skip| <= 128 against a bound of
 * 2^15), so the result equals bnn_epi8_avx512's exact 64-bit one. */
BNN_AVX512_BASE static inline void bnn_epi16i8_avx512(const bnn_epi *e, __m512i y0, __m512i y1, int c0,
                                                      size_t pix, void *out, const int8_t *skip) {
    const int32_t cout = e->cout;
    const int n = cout - c0 < 16 ? cout - c0 : 16;
    const __mmask16 m = (__mmask16)((1u << n) - 1);
    __m512i t0 = _mm512_add_epi64(_mm512_mul_epi32(y0, _mm512_load_si512(e->mult + c0)),
                                  _mm512_load_si512(e->brnd + c0));
    __m512i t1 = _mm512_add_epi64(_mm512_mul_epi32(y1, _mm512_load_si512(e->mult + c0 + 8)),
                                  _mm512_load_si512(e->brnd + c0 + 8));
    t0 = _mm512_srav_epi64(t0, _mm512_load_si512(e->shift + c0));
    t1 = _mm512_srav_epi64(t1, _mm512_load_si512(e->shift + c0 + 8));
    const int8_t *sk = e->has_skip ? skip + pix * cout + c0 : NULL;
    if (sk && !e->skip_identity) {
        const __m512i sm = _mm512_set1_epi64(e->skip_mult), sr = _mm512_set1_epi64(e->skip_round);
        const __m128i ss = _mm_cvtsi32_si128(e->skip_shift);
        __m128i s8 = n == 16 ? _mm_loadu_si128((const __m128i *)sk) : _mm_maskz_loadu_epi8(m, sk);
        __m512i s0 = _mm512_mul_epi32(_mm512_cvtepi8_epi64(s8), sm);
        __m512i s1 = _mm512_mul_epi32(_mm512_cvtepi8_epi64(_mm_srli_si128(s8, 8)), sm);
        t0 = _mm512_add_epi64(t0, _mm512_sra_epi64(_mm512_add_epi64(s0, sr), ss));
        t1 = _mm512_add_epi64(t1, _mm512_sra_epi64(_mm512_add_epi64(s1, sr), ss));
    }
    __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm512_cvtsepi64_epi16(t0)),
                                        _mm512_cvtsepi64_epi16(t1), 1);
    if (sk && e->skip_identity) {
        __m128i s8 = n == 16 ? _mm_loadu_si128((const __m128i *)sk) : _mm_maskz_loadu_epi8(m, sk);
        v = _mm256_adds_epi16(v, _mm256_cvtepi8_epi16(s8));
    }
    v = _mm256_max_epi16(v, _mm256_set1_epi16((int16_t)e->clamp_lo));
    v = _mm256_min_epi16(v, _mm256_set1_epi16((int16_t)e->clamp_hi));
    __m128i b = _mm256_cvtepi16_epi8(v);
    int8_t *o = (int8_t *)out + pix * cout + c0;
    if (n == 16) _mm_storeu_si128((__m128i *)o, b);
    else _mm_mask_storeu_epi8(o, m, b);
}
#endif

#ifdef BNN_X86
/* 16 int32 lanes clamped to [clamp_lo, clamp_hi], narrowed to int8 and stored
 * (the first n). The usual [-128, 127] is the saturating narrowing itself. */
BNN_AVX512_BASE static inline void bnn_store_i8x16_avx512(const bnn_epi *e, __m512i v, int8_t *o, int n,
                                                          __mmask16 m) {
    __m128i b;
    if (e->sat8) {
        b = _mm512_cvtsepi32_epi8(v);
    } else {
        v = _mm512_max_epi32(v, _mm512_set1_epi32(e->clamp_lo));
        v = _mm512_min_epi32(v, _mm512_set1_epi32(e->clamp_hi));
        b = _mm512_cvtepi32_epi8(v);
    }
    if (n == 16) _mm_storeu_si128((__m128i *)o, b);
    else _mm_mask_storeu_epi8(o, m, b);
}

/* The int8 epilogue of 16 channels [c0, c0+16) with y in 16 int32 lanes (when
 * e->lanes32): vpmuldq multiplies the even lanes, and the odd ones shifted
 * down, into exact int64 numerators; after the shift each result fits int32
 * (proved at build time), so the two halves interleave back into one
 * register with a blend, and the identity skip, clamp and narrowing run on 16
 * int32 lanes. Same values as bnn_epi8_avx512: bit-identical. */
BNN_AVX512_BASE static inline void bnn_epi_i8x16_avx512(const bnn_epi *e, __m512i y, int c0, size_t pix,
                                                        void *out, const int8_t *skip) {
    const int32_t cout = e->cout;
    const int n = cout - c0 < 16 ? cout - c0 : 16;
    const __mmask16 m = (__mmask16)((1u << n) - 1);
    const __m512i mult = _mm512_loadu_si512(e->mult32 + c0);
    __m512i ev = _mm512_add_epi64(_mm512_mul_epi32(y, mult), _mm512_load_si512(e->brnd_eo + c0));
    __m512i od = _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(y, 32), _mm512_srli_epi64(mult, 32)),
                                  _mm512_load_si512(e->brnd_eo + c0 + 8));
    ev = _mm512_srav_epi64(ev, _mm512_load_si512(e->shift_eo + c0));
    od = _mm512_srav_epi64(od, _mm512_load_si512(e->shift_eo + c0 + 8));
    __m512i v = _mm512_mask_blend_epi32(0xAAAA, ev, _mm512_slli_epi64(od, 32));
    int8_t *o = (int8_t *)out + pix * cout + c0;
    if (e->has_skip) {
        const int8_t *sk = skip + pix * cout + c0;
        __m128i s8 = n == 16 ? _mm_loadu_si128((const __m128i *)sk) : _mm_maskz_loadu_epi8(m, sk);
        __m512i s = _mm512_cvtepi8_epi32(s8);
        if (!e->skip_identity) {    /* the skip's own scale, even and odd lanes as above */
            const __m512i sm = _mm512_set1_epi64(e->skip_mult), sr = _mm512_set1_epi64(e->skip_round);
            const __m128i ss = _mm_cvtsi32_si128(e->skip_shift);
            __m512i se = _mm512_sra_epi64(_mm512_add_epi64(_mm512_mul_epi32(s, sm), sr), ss);
            __m512i so = _mm512_sra_epi64(_mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(s, 32), sm), sr), ss);
            s = _mm512_mask_blend_epi32(0xAAAA, se, _mm512_slli_epi64(so, 32));
        }
        v = _mm512_add_epi32(v, s);
    }
    bnn_store_i8x16_avx512(e, v, o, n, m);
}

/* The int8 epilogue of 16 channels [c0, c0+16) straight from 16 int32 counts
 * (when e->rq32, see bnn_epi_reduce): one 32-bit multiply, add and shift per
 * term instead of the even/odd 64-bit products. Bit-identical by construction. */
BNN_AVX512_BASE static inline void bnn_epi_rq32_avx512(const bnn_epi *e, __m512i x, int c0, size_t pix,
                                                       void *out, const int8_t *skip) {
    const int32_t cout = e->cout;
    const int n = cout - c0 < 16 ? cout - c0 : 16;
    const __mmask16 m = (__mmask16)((1u << n) - 1);
    /* c0 is a multiple of 8, not always of 16 (q64 blocks of 3 groups): unaligned loads */
    __m512i v = _mm512_mullo_epi32(x, _mm512_loadu_si512(e->am + c0));
    v = _mm512_srav_epi32(_mm512_add_epi32(v, _mm512_loadu_si512(e->ab + c0)), _mm512_loadu_si512(e->as + c0));
    int8_t *o = (int8_t *)out + pix * cout + c0;
    if (e->has_skip) {
        const int8_t *sk = skip + pix * cout + c0;
        __m512i s = _mm512_cvtepi8_epi32(n == 16 ? _mm_loadu_si128((const __m128i *)sk) : _mm_maskz_loadu_epi8(m, sk));
        if (!e->skip_identity)
            s = _mm512_sra_epi32(_mm512_add_epi32(_mm512_mullo_epi32(s, _mm512_set1_epi32(e->skm)),
                                                  _mm512_set1_epi32(e->skb)),
                                 _mm_cvtsi32_si128(e->sks));
        v = _mm512_add_epi32(v, s);
    }
    bnn_store_i8x16_avx512(e, v, o, n, m);
}
#endif

#ifdef BNN_ARM
/* NEON epilogue of one pixel: the int8 requantize (+ skip) path two channels
 * at a time when y + bias fits int32 (proved at plan time: e->fits32), so a
 * 32x32->64 vmull is exact; AArch64 has no 64-bit min/max, so the sum is
 * narrowed with saturation to int32 (values beyond it clamp the same way)
 * before the clamp. Everything else goes to the scalar epilogue. */
static inline void bnn_epi_pixel_neon(const bnn_epi *e, const int64_t *y, size_t pix, void *out,
                                      const int8_t *skip) {
    if (e->kind != BNN_OUT_INT8 || !e->fits32) { bnn_epi_pixel(e, y, pix, out, skip); return; }
    const int32_t cout = e->cout;
    const int32_t *restrict bias32 = e->bias32, *restrict mult32 = e->mult32;
    const int64_t *restrict rnd = e->rnd, *restrict nshift = e->nshift;
    int8_t *o = (int8_t *)out + pix * cout;            /* o may be the skip (in place): no restrict */
    const int8_t *sk = e->has_skip ? skip + pix * cout : NULL;
    const int identity = e->skip_identity;
    const int32x4_t sm = vdupq_n_s32((int32_t)e->skip_mult);
    const int64x2_t sr = vdupq_n_s64(e->skip_round), ss = vdupq_n_s64(-(int64_t)e->skip_shift);
    const int32x4_t lo = vdupq_n_s32(e->clamp_lo), hi = vdupq_n_s32(e->clamp_hi);
    int c = 0;
    for (; c + 4 <= cout; c += 4) {
        /* y + bias in int32 (fits32), times the multiplier into 64-bit lanes on top of the rounding term */
        int32x4_t t = vaddq_s32(vcombine_s32(vmovn_s64(vld1q_s64(y + c)), vmovn_s64(vld1q_s64(y + c + 2))),
                                vld1q_s32(bias32 + c));
        int32x4_t m = vld1q_s32(mult32 + c);
        int64x2_t v0 = vshlq_s64(vmlal_s32(vld1q_s64(rnd + c), vget_low_s32(t), vget_low_s32(m)),
                                 vld1q_s64(nshift + c));
        int64x2_t v1 = vshlq_s64(vmlal_high_s32(vld1q_s64(rnd + c + 2), t, m), vld1q_s64(nshift + c + 2));
        int32x4_t r;
        if (!sk) {
            r = vcombine_s32(vqmovn_s64(v0), vqmovn_s64(v1));
        } else {
            int32_t raw;
            memcpy(&raw, sk + c, 4);
            int32x4_t s32 = vmovl_s16(vget_low_s16(vmovl_s8(vreinterpret_s8_s32(vdup_n_s32(raw)))));
            if (identity) {
                /* |skip| <= 128 and the clamp is an int8 range: a main term saturated
                 * at +-(2^31 - 1) still clamps the same way after the add */
                r = vqaddq_s32(vcombine_s32(vqmovn_s64(v0), vqmovn_s64(v1)), s32);
            } else {
                v0 = vaddq_s64(v0, vshlq_s64(vmlal_s32(sr, vget_low_s32(s32), vget_low_s32(sm)), ss));
                v1 = vaddq_s64(v1, vshlq_s64(vmlal_high_s32(sr, s32, sm), ss));
                r = vcombine_s32(vqmovn_s64(v0), vqmovn_s64(v1));
            }
        }
        r = vminq_s32(vmaxq_s32(r, lo), hi);
        int16x4_t r16 = vmovn_s32(r);
        int8x8_t r8 = vmovn_s16(vcombine_s16(r16, r16));
        vst1_lane_s32((int32_t *)(void *)(o + c), vreinterpret_s32_s8(r8), 0);
    }
    for (; c < cout; c++) {
        int64_t v = bnn_requant(y[c] + e->bias[c], e->mult[c], e->rnd[c], e->shift[c]);
        if (sk) v += bnn_requant(sk[c], e->skip_mult, e->skip_round, e->skip_shift);
        o[c] = (int8_t)(v < e->clamp_lo ? e->clamp_lo : v > e->clamp_hi ? e->clamp_hi : v);
    }
}
#endif

#endif
