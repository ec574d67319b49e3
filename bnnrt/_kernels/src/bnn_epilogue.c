/* The epilogue's plan-time work (bnn_epilogue.h): per-channel constants
 * widened and padded for the SIMD stores, and the search for exact int32
 * requantization parameters of the binary conv's popcount sums. */
#include "bnn_epilogue.h"

void bnn_epi_free(bnn_epi *e) {
    free(e->thresholds); free(e->bias); free(e->multiplier); free(e->rnd); free(e->shift); free(e->brnd_eo); free(e->shift_eo);
    free(e->bias32); free(e->multiplier32); free(e->nshift); free(e->float_multiplier); free(e->float_bias); free(e->brnd);
    free(e->am); free(e->ab); free(e->as);
}

int bnn_epi_init(bnn_epi *e, const bnn_epilogue *src, int32_t cout, int64_t max_abs_y) {
    size_t n = ((size_t)cout + 15) / 16 * 16;
    memset(e, 0, sizeof(*e));
    e->kind = src->kind; e->cout = cout;
    e->output_clamp_lo = src->output_clamp_lo; e->output_clamp_hi = src->output_clamp_hi;
    e->y_clamp_lo = src->y_clamp_lo; e->y_clamp_hi = src->y_clamp_hi;
    e->activation_lo = src->activation_lo; e->activation_hi = src->activation_hi;
    e->has_skip = src->has_skip; e->skip_shift = src->skip_shift;
    e->skip_multiplier = src->skip_multiplier; e->skip_round = bnn_round_of(src->skip_shift);
    int64_t **arrs[9] = {&e->thresholds, &e->bias, &e->multiplier, &e->rnd, &e->shift, &e->nshift, &e->brnd,
                         &e->brnd_eo, &e->shift_eo};
    for (int i = 0; i < 9; i++) {
        *arrs[i] = (int64_t *)aligned_alloc(64, n * sizeof(int64_t));
        if (!*arrs[i]) { bnn_epi_free(e); return -1; }
    }
    e->bias32 = (int32_t *)aligned_alloc(64, n * sizeof(int32_t));
    e->multiplier32 = (int32_t *)aligned_alloc(64, n * sizeof(int32_t));
    e->float_multiplier = (float *)aligned_alloc(64, n * sizeof(float));
    e->float_bias = (float *)aligned_alloc(64, n * sizeof(float));
    if (!e->bias32 || !e->multiplier32 || !e->float_multiplier || !e->float_bias) { bnn_epi_free(e); return -1; }
    for (size_t c = 0; c < n; c++) {
        int real = (int32_t)c < cout;
        /* padded lanes: threshold below every y, so their bits stay 0 */
        e->thresholds[c] = (real && src->thresholds) ? src->thresholds[c] : INT64_MIN;
        e->bias[c] = (real && src->bias) ? src->bias[c] : 0;
        e->multiplier[c] = (real && src->multiplier) ? src->multiplier[c] : 0;
        e->shift[c] = (real && src->shift) ? src->shift[c] : 0;
        e->rnd[c] = bnn_round_of(e->shift[c]);
        e->brnd[c] = e->bias[c] * e->multiplier[c] + e->rnd[c];
        e->nshift[c] = -e->shift[c];
        e->bias32[c] = (int32_t)e->bias[c];      /* exact: bias is int32 on the way in */
        e->multiplier32[c] = (int32_t)e->multiplier[c];
        e->float_multiplier[c] = (real && src->float_multiplier) ? src->float_multiplier[c] : 0.0f;
        e->float_bias[c] = (real && src->float_bias) ? src->float_bias[c] : 0.0f;
    }
    e->skip_identity = e->skip_shift >= 0 && e->skip_shift < 31 &&
                       e->skip_multiplier == ((int64_t)1 << e->skip_shift);
    int64_t max_bias = 0;
    for (int32_t c = 0; c < cout; c++) max_bias = e->bias[c] < 0 ? (-e->bias[c] > max_bias ? -e->bias[c] : max_bias)
                                                                  : (e->bias[c] > max_bias ? e->bias[c] : max_bias);
    e->fits32 = max_abs_y + max_bias < ((int64_t)1 << 31);
    /* |y| <= max_abs_y: a clamp wider than that is the identity, skipped */
    e->y_clamps = e->y_clamp_lo > -max_abs_y || e->y_clamp_hi < max_abs_y;
    e->activation_clamps = !(e->activation_lo == -INFINITY && e->activation_hi == INFINITY);
    /* requant(y + bias) = (y * mult + brnd) >> shift exactly; y * mult by the
     * 32x32->64 vpmuldq needs y in int32 */
    e->fast16 = e->kind == BNN_OUT_INT8 && max_abs_y < ((int64_t)1 << 31);
    e->lanes32 = e->fast16;
    if (e->has_skip) {      /* |requant(skip)| <= (128 |skip_mult| + skip_round) >> skip_shift */
        __int128 sm = e->skip_multiplier < 0 ? -(__int128)e->skip_multiplier : e->skip_multiplier;
        if (((128 * sm + e->skip_round) >> e->skip_shift) >= ((__int128)1 << 30)) e->lanes32 = 0;
    }
    for (size_t c = 0; c < n; c++) {
        size_t at = c / 16 * 16 + (c % 2) * 8 + (c % 16) / 2;
        e->brnd_eo[at] = e->brnd[c];
        e->shift_eo[at] = e->shift[c];
        /* |y * mult + brnd| <= max_abs_y * |mult| + |brnd| < 2^94: exact in 128 bits */
        __int128 m = e->multiplier[c] < 0 ? -(__int128)e->multiplier[c] : e->multiplier[c];
        __int128 b = e->brnd[c] < 0 ? -(__int128)e->brnd[c] : e->brnd[c];
        if ((((__int128)max_abs_y * m + b) >> e->shift[c]) >= ((__int128)1 << 30)) e->lanes32 = 0;
    }
    e->sat8 = e->output_clamp_lo == -128 && e->output_clamp_hi == 127;
    return 0;
}

/* floor((x * M + B) / 2^S), exactly */
static __int128 floor_lin(__int128 M, __int128 B, int S, int64_t x) { return (x * M + B) >> S; }

/* int32 parameters (m, b, s) with (x * m + b) >> s == floor((x * M + B) / 2^S)
 * for every integer x in [xlo, xhi], computed in int32 lanes: m and b fit
 * int32 and |x * m + b| < 2^30 at every x in [elo, ehi], a range holding
 * [xlo, xhi] (the multiply may wrap, the sum then lands on the exact value). Every x is checked: for a candidate m
 * (M 2^s / 2^S rounded down or up, the largest s whose results fit first),
 * the b that work form an interval, the intersection over x of
 * [T(x) 2^s - x m, (T(x) + 1) 2^s - x m); any b in it is exact by
 * construction. Returns 0 when found, -1 when none of the first few s is or
 * the budget of counts to check runs out (the caller keeps its 64-bit path). */
static int fit_requant32(__int128 M, __int128 B, int S, int64_t xlo, int64_t xhi,
                                    int64_t elo, int64_t ehi, int32_t *m, int32_t *b, int32_t *s,
                                    int64_t *budget /* counts left to check; -1 when spent */) {
    /* m, b fit int32; x * m + b stays within +-2^30, so the result and a skip
     * term of the same bound add up without overflow */
    const __int128 LIM = (__int128)1 << 31, SUM = (__int128)1 << 30;
    const __int128 t0 = floor_lin(M, B, S, elo), t1 = floor_lin(M, B, S, ehi);
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
                __int128 v = floor_lin(M, B, S, x) * one - x * mm;   /* lowest b for this x */
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
int bnn_epi_reduce(bnn_epi *e, int64_t y0, int64_t dy, int64_t xmax) {
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
     * for the 256-channel layers of ResNet-20; a pathological layer gives up
     * at 2^24, a bounded plan time */
    int64_t budget = (int64_t)1 << 24;
    __int128 smin = 0, smax = 0;
    if (e->has_skip) {
        smin = -128; smax = 127;
        if (!e->skip_identity) {
            if (fit_requant32(e->skip_multiplier, e->skip_round, e->skip_shift, -128, 127, -128, 127,
                                  &e->skm, &e->skb, &e->sks, &budget))
                return 0;
            __int128 a = floor_lin(e->skip_multiplier, e->skip_round, e->skip_shift, -128),
                     b = floor_lin(e->skip_multiplier, e->skip_round, e->skip_shift, 127);
            smin = a < b ? a : b; smax = a < b ? b : a;       /* monotone in s */
            if (smin <= -((__int128)1 << 30) || smax >= ((__int128)1 << 30)) return 0;
        }
    }
    const __int128 rlo = e->output_clamp_lo - smax, rhi = e->output_clamp_hi - smin;
    for (int32_t c = 0; c < e->cout; c++) {
        /* requant(y + bias) = ((y0 + bias + dy x) mult + rnd) >> shift: monotone in x */
        const __int128 M = (__int128)dy * e->multiplier[c], B = (__int128)(y0 + e->bias[c]) * e->multiplier[c] + e->rnd[c];
        const int S = (int)e->shift[c];
        int64_t xa = 0, xb = 0;
        if (M != 0) {
            /* up: the counts at which the output is pinned at the low end come first */
            const int up = M > 0;
            /* xa: the last x pinned at the first end (0 if none); binary search, monotone */
            int64_t l = 0, h = xmax;
            if (up ? floor_lin(M, B, S, 0) <= rlo : floor_lin(M, B, S, 0) >= rhi) {
                while (l < h) {
                    int64_t mid = l + (h - l + 1) / 2;
                    __int128 r = floor_lin(M, B, S, mid);
                    if (up ? r <= rlo : r >= rhi) l = mid; else h = mid - 1;
                }
                xa = l;
            }
            /* xb: the first x pinned at the other end (xmax if none) */
            l = xa; h = xmax;
            while (l < h) {
                int64_t mid = l + (h - l) / 2;
                __int128 r = floor_lin(M, B, S, mid);
                if (up ? r >= rhi : r <= rlo) h = mid; else l = mid + 1;
            }
            xb = l;
        }
        if (fit_requant32(M, B, S, xa, xb, 0, xmax, &e->am[c], &e->ab[c], &e->as[c], &budget)) return 0;
    }
    e->rq32 = 1;
    return 0;
}

