/* Binary convolution: plan, padded input and word planes, scalar, AVX-512,
 * AVX2 and NEON micro-kernels, fused epilogues.
 *
 * Data flow (docs/kernels.md):
 *  1. The input image is copied into a zero-filled padded buffer, so border
 *     taps read bit 0 (+1): "same-one" padding is free and no read leaves the
 *     buffer. Each padded row has 8 bytes of slack for the last partial word.
 *     The AVX-512 q64 and AVX2 kernels expand each padded row further into
 *     word planes (repack_planes), a band of rows at a time.
 *  2. A "row" is a run of input bytes a window reads contiguously: kw taps of
 *     ceil(cin/8) bytes each when dilation_w == 1 (so 16 channels x 3 taps fill
 *     48 of 64 bits instead of 16), else one tap. Weights are repacked once into
 *     rows of 64-bit words, zero-padded, interleaved 8 output channels per
 *     group: w[group][row][word][lane].
 *  3. acc = sum popcount(a ^ w) over the words; the bits the last word of a
 *     row reads past its end are masked off the activation word (and are zero
 *     in the weights), so they add nothing.
 *  4. y = K - 2*acc, minus, for "same-zero" border pixels, the +1 pads'
 *     contribution; then the epilogue (int32 / threshold bits / requant+skip).
 *     That contribution depends only on which taps of the window fall outside
 *     the image, so it is tabled per border class at plan time (a border row's
 *     pattern times a border column's): one vector subtraction per pixel, and
 *     bit outputs compare the sums against the class's own thresholds.
 */
#include "bnn_conv.h"

#ifdef _OPENMP
#include <omp.h>
#endif

struct bnn_bconv {
    bnn_conv_geom g;
    bnn_epi e;
    int32_t cb, nrows, row_bytes, rw, groups, K, hp, wp, rs;
    uint64_t last_mask;
    int32_t *roff;           /* [nrows] byte offset of each row from the window origin */
    uint64_t *w;             /* [groups][nrows][rw][8] */
    int64_t *tapc;           /* [kh*kw][groups*8]: contribution of a +1 pad at that tap */
    int variant;
    /* AVX-512 lane layout (see bnn_bconv_layout): 64 (the words above), 32 or 16 */
    int lanes;
    int32_t g16, rw4, ntaps; /* groups of 16 channels; dwords per row; taps per window */
    uint32_t last_mask32;
    int32_t *toff;           /* lanes 16: [ntaps] byte offset of each tap from the window origin */
    void *wl;                /* lanes 32: uint32 [g16][nrows][rw4][16]; lanes 16: uint16 [g16][ntaps][16][2] */
    /* same-zero border classes (pad_value 0): class rcls[oy] * ncc + ccls[ox], 0 for a
     * pixel whose window is inside the image; corr: y's correction (minus the +1 pads).
     * NULL tables (same-one, no padding, or pads so large that the table would pass
     * BORDER_TABLE_MAX): one class, and border pixels take the per-tap loop (slow_border). */
    int32_t *rcls, *ccls;    /* [out_h], [out_w] */
    int32_t slow_borders;    /* same-zero padding without tables: some pixels take slow_border */
    int32_t nclass, ncc;
    int64_t *corr;           /* [nclass][groups*8] */
    int32_t *corr32;         /* [nclass][g16*16] (d32, w16) */
    /* lanes 64 (AVX-512) and AVX2: the input as word planes, see repack_planes */
    int32_t ncol, nsteps, gstep, band;   /* band: output rows whose planes are built at a time */
    size_t prb;              /* bytes of one padded row's planes: ncol * rw planes of out_w words */
    int64_t *soff;           /* [nsteps] byte offset of step s's plane from the output row's first one */
    uint64_t *wq;            /* [groups / gstep][nsteps][gstep][8], the last block of groups % gstep;
                              * AVX2: [groups][nsteps][low, high nibbles][8] (nibble_weights) */
    /* bits output: y = K - c - 2 acc < thr (c: the class's correction) exactly when
     * acc >= athr = floor((K - c - thr') / 2) + 1, thr' the threshold clamped to
     * [-K-1, K+1] (every |y| <= K keeps its side), so the epilogue compares the
     * popcount sums themselves: one instruction per register, border or not */
    int64_t *athr;           /* [nclass][groups*8] (q64); padded lanes K + 1: never set */
    int32_t *athr32;         /* [nclass][g16*16] (d32, w16) */
};

/* Border classes times channels beyond which the tables are not built (a
 * hostile pad of hundreds of pixels): 512 KiB of corrections. */
enum { BORDER_TABLE_MAX = 1 << 16 };

/* Planes are built a band of output rows at a time, the band's padded rows
 * within PLANES_BAND bytes (L2-sized, so that the band's planes are still in
 * the cache when the rows read them); a window whose rows alone would pass
 * PLANES_MAX (hundreds of dilated rows of a wide image) reads padded rows
 * instead (d32 on AVX-512, the scalar kernel where AVX2 was asked for). */
enum { PLANES_BAND = 512 << 10 };
#define PLANES_MAX ((size_t)64 << 20)

#define load64 bnn_load64

static int choose_lanes(const bnn_bconv *k, const bnn_conv_geom *g);

/* Bytes of one padded row's planes (see repack_planes), pw words per output
 * column in each plane (plane_words) */
static size_t plane_row_bytes(const bnn_conv_geom *g, int pw) {
    size_t cb = ((size_t)g->cin + 7) / 8;
    if (g->dw == 1) return ((g->kw * cb + 7) / 8) * 8 * (size_t)g->out_w * pw;
    return (size_t)g->kw * ((cb + 7) / 8) * 8 * (size_t)g->out_w * pw;
}
/* Whether the planes of one output row's window stay within PLANES_MAX */
static int planes_fit(const bnn_conv_geom *g, int pw) {
    return ((size_t)(g->kh - 1) * g->dh + 1) * plane_row_bytes(g, pw) <= PLANES_MAX;
}
/* Words per output column in a plane: on AVX2 a word's two nibble halves
 * (nibble_weights), else 1 */
static int plane_words(int variant) { return variant == BNN_VARIANT_AVX2 ? 2 : 1; }

/* The popcount-sum threshold of channel c given y's correction corr (see
 * athr); K + 1 (never) past cout. */
static int64_t acc_threshold(const bnn_bconv *k, int32_t c, int64_t corr) {
    if (c >= k->g.cout || k->e.kind != BNN_OUT_BITS) return (int64_t)k->K + 1;
    int64_t t = k->e.thresholds[c];
    t = t < -(int64_t)k->K - 1 ? -(int64_t)k->K - 1 : t > k->K + 1 ? k->K + 1 : t;
    return (((int64_t)k->K - corr - t) >> 1) + 1;      /* arithmetic shift: floor */
}
static int border_tables(bnn_bconv *k);
static int repack_lanes(bnn_bconv *k, const uint8_t *weights);
static int repack_planes(bnn_bconv *k);

void bnn_bconv_free(bnn_bconv *k) {
    if (!k) return;
    free(k->roff); free(k->w); free(k->tapc); free(k->toff); free(k->wl); free(k->athr); free(k->athr32);
    free(k->rcls); free(k->ccls); free(k->corr); free(k->corr32); free(k->soff); free(k->wq);
    bnn_epi_free(&k->e);
    free(k);
}

bnn_bconv *bnn_bconv_create(const bnn_conv_geom *g, const uint8_t *weights, const bnn_epilogue *e,
                            int variant) {
    variant = bnn_select(BNN_FAMILY_BCONV2D, variant, 1);
    if (variant < 0) return NULL;
    if (variant == BNN_VARIANT_AVX2 && !planes_fit(g, plane_words(variant))) variant = BNN_VARIANT_SCALAR;
    bnn_bconv *k = (bnn_bconv *)calloc(1, sizeof(*k));
    if (!k) return NULL;
    k->g = *g;
    k->variant = variant;
    k->cb = (g->cin + 7) / 8;
    int contiguous = g->dw == 1;
    k->nrows = contiguous ? g->kh : g->kh * g->kw;
    k->row_bytes = contiguous ? g->kw * k->cb : k->cb;
    k->rw = (k->row_bytes + 7) / 8;
    int tail = k->row_bytes - 8 * (k->rw - 1);
    k->last_mask = tail == 8 ? ~(uint64_t)0 : (((uint64_t)1 << (8 * tail)) - 1);
    k->groups = (g->cout + 7) / 8;
    k->K = g->kh * g->kw * g->cin;
    k->ntaps = g->kh * g->kw;
    k->g16 = (g->cout + 15) / 16;
    k->rw4 = (k->row_bytes + 3) / 4;
    k->last_mask32 = k->row_bytes % 4 ? (((uint32_t)1 << (8 * (k->row_bytes % 4))) - 1) : ~(uint32_t)0;
    k->hp = (g->out_h - 1) * g->sh + (g->kh - 1) * g->dh + 1;
    k->wp = (g->out_w - 1) * g->sw + (g->kw - 1) * g->dw + 1;
    k->rs = ((k->wp * k->cb + 8) + 63) / 64 * 64;
    k->ncol = contiguous ? 1 : g->kw;
    k->nsteps = k->nrows * k->rw;
    k->prb = plane_row_bytes(g, plane_words(variant));
    k->lanes = 64;
    if (variant == BNN_VARIANT_AVX512) k->lanes = choose_lanes(k, g);
    size_t nlanes = (size_t)k->groups * 8;
    k->roff = (int32_t *)calloc(k->nrows, sizeof(int32_t));
    k->w = (uint64_t *)aligned_alloc(64, ((size_t)k->groups * k->nrows * k->rw * 8 * 8 + 63) / 64 * 64);
    k->tapc = (int64_t *)calloc((size_t)g->kh * g->kw * nlanes, sizeof(int64_t));
    k->nclass = 1;
    if (!k->roff || !k->w || !k->tapc || bnn_epi_init(&k->e, e, g->cout, (int64_t)g->kh * g->kw * g->cin)) {
        bnn_bconv_free(k);
        return NULL;
    }
    for (int r = 0; r < k->nrows; r++) {
        int ky = contiguous ? r : r / g->kw, kx = contiguous ? 0 : r % g->kw;
        k->roff[r] = ky * g->dh * k->rs + kx * g->dw * k->cb;
    }
    /* repack weights row by row into zero-padded words */
    memset(k->w, 0, (size_t)k->groups * k->nrows * k->rw * 8 * 8);
    for (int c = 0; c < g->cout; c++) {
        const uint8_t *wc = weights + (size_t)c * g->kh * g->kw * k->cb;
        for (int r = 0; r < k->nrows; r++) {
            const uint8_t *src = wc + (size_t)r * k->row_bytes;   /* rows tile [kh][kw][cb] in order */
            for (int j = 0; j < k->rw; j++) {
                uint64_t word = 0;
                int n = k->row_bytes - 8 * j < 8 ? k->row_bytes - 8 * j : 8;
                memcpy(&word, src + 8 * j, n);
                k->w[(((size_t)(c / 8) * k->nrows + r) * k->rw + j) * 8 + c % 8] = word;
            }
        }
        for (int t = 0; t < g->kh * g->kw; t++) {
            int pc = 0;
            for (int b = 0; b < k->cb; b++) pc += __builtin_popcount(wc[(size_t)t * k->cb + b]);
            k->tapc[(size_t)t * nlanes + c] = g->cin - 2 * pc;
        }
    }
    if (border_tables(k)) {
        bnn_bconv_free(k);
        return NULL;
    }
    /* AVX-512 and AVX2 int8 outputs: requantize the popcount sums (y = K -
     * 2 acc) in int32 lanes where every sum's result checks out
     * (bnn_epi_reduce); BNNRT_DISABLE_SIMD=avx512-rq32 keeps AVX-512's 64-bit
     * products (AVX2 has none: without rq32 it takes the scalar epilogue) */
    if (((variant == BNN_VARIANT_AVX512 && bnn_switch_enabled(BNN_SWITCH_RQ32)) || variant == BNN_VARIANT_AVX2) &&
        bnn_epi_reduce(&k->e, k->K, -2, k->K)) {
        bnn_bconv_free(k);
        return NULL;
    }
    if ((variant == BNN_VARIANT_AVX2 || (variant == BNN_VARIANT_AVX512 && k->lanes == 64)) && repack_planes(k)) {
        bnn_bconv_free(k);
        return NULL;
    }
    if (k->lanes != 64 && repack_lanes(k, weights)) {
        bnn_bconv_free(k);
        return NULL;
    }
    return k;
}

const char *bnn_bconv_variant(const bnn_bconv *k) { return bnn_variant_names[k->variant]; }

const char *bnn_bconv_layout(const bnn_bconv *k) {
    return k->lanes == 32 ? "d32" : k->lanes == 16 ? "w16" : "q64";
}

int bnn_bconv_requant32(const bnn_bconv *k) { return k->e.rq32; }

/* ---- lane layouts of the AVX-512 kernel --------------------------------------
 * A 512-bit XOR + VPOPCNT + ADD does the same work whatever its lane width, so
 * the lane width is chosen to waste the fewest bits on a window's rows:
 *  q64: lanes are 64-bit words, 8 output channels per register, a row of
 *       kw*ceil(cin/8) bytes read in words (64 channels: 3 taps = 3 full words).
 *  d32: lanes are 32-bit words, 16 channels per register, the row read in
 *       dwords: 32 channels x 3 taps = 12 bytes is 3 dwords instead of 2 words
 *       (25% fewer popcounts), and y arrives as 16 int32, the epilogue's width.
 *  w16: 9..16 channels, stride 1: one tap is one 16-bit word and the taps of
 *       two neighbouring pixels are adjacent, so one broadcast dword feeds two
 *       pixels (even word lanes one pixel, odd lanes the next) x 16 channels,
 *       VPOPCNTW (BITALG) into int16 lanes. Every bit counted is a MAC, where
 *       rows of 3 taps fill 48 of 64 bits; the accumulators are int16, exact
 *       while K <= 32767.
 * Each can be switched off (BNNRT_DISABLE_SIMD=avx512-d32,avx512-w16), which
 * is how the tests run every layout a shape could take against the reference. */
static int choose_lanes(const bnn_bconv *k, const bnn_conv_geom *g) {
    if (k->cb == 2 && g->sw == 1 && k->K <= 32767 && bnn_switch_enabled(BNN_SWITCH_W16)) return 16;
    if (4 * k->rw4 < 8 * k->rw && bnn_switch_enabled(BNN_SWITCH_D32)) return 32;
    return planes_fit(g, plane_words(BNN_VARIANT_AVX512)) ? 64 : 32;
}

static int repack_lanes(bnn_bconv *k, const uint8_t *weights) {
    const bnn_conv_geom *g = &k->g;
    size_t n16 = (size_t)k->g16 * 16;
    size_t bytes = k->lanes == 16 ? n16 * k->ntaps * 2 * sizeof(uint16_t)
                                  : n16 * k->nrows * k->rw4 * sizeof(uint32_t);
    k->wl = aligned_alloc(64, (bytes + 63) / 64 * 64);
    k->athr32 = (int32_t *)aligned_alloc(64, (size_t)k->nclass * n16 * sizeof(int32_t));
    k->corr32 = (int32_t *)aligned_alloc(64, (size_t)k->nclass * n16 * sizeof(int32_t));
    k->toff = (int32_t *)calloc(k->ntaps, sizeof(int32_t));
    if (!k->wl || !k->athr32 || !k->corr32 || !k->toff) return -1;
    /* the q64 tables' rows, cut at n16 channels (both are zero past cout) */
    for (size_t cls = 0; cls < (size_t)k->nclass; cls++)
        for (size_t c = 0; c < n16; c++) {
            int64_t corr = c < (size_t)k->groups * 8 ? k->corr[cls * k->groups * 8 + c] : 0;
            k->corr32[cls * n16 + c] = (int32_t)corr;
            k->athr32[cls * n16 + c] = (int32_t)acc_threshold(k, (int32_t)c, corr);
        }
    memset(k->wl, 0, (bytes + 63) / 64 * 64);
    for (int t = 0; t < k->ntaps; t++)
        k->toff[t] = (t / g->kw) * g->dh * k->rs + (t % g->kw) * g->dw * k->cb;
    for (int c = 0; c < g->cout; c++) {
        const uint8_t *wc = weights + (size_t)c * k->ntaps * k->cb;
        size_t grp = (size_t)c / 16, l = (size_t)c % 16;
        if (k->lanes == 16) {
            uint16_t *w = (uint16_t *)k->wl;
            for (int t = 0; t < k->ntaps; t++) {
                uint16_t tap = (uint16_t)(wc[2 * t] | (wc[2 * t + 1] << 8));
                w[((grp * k->ntaps + t) * 16 + l) * 2] = w[((grp * k->ntaps + t) * 16 + l) * 2 + 1] = tap;
            }
        } else {
            uint32_t *w = (uint32_t *)k->wl;
            for (int r = 0; r < k->nrows; r++)
                for (int j = 0; j < k->rw4; j++) {
                    uint32_t word = 0;
                    int n = k->row_bytes - 4 * j < 4 ? k->row_bytes - 4 * j : 4;
                    memcpy(&word, wc + (size_t)r * k->row_bytes + 4 * j, n);
                    w[((grp * k->nrows + r) * k->rw4 + j) * 16 + l] = word;
                }
        }
    }
    return 0;
}

/* ---- word planes (q64 on AVX-512) --------------------------------------------
 * A block of P pixels reads word j of each pixel's row r. In the padded
 * buffer those words lie P different strides apart, so the block needs a
 * pointer per pixel, more than the registers left beside 24 accumulators
 * (the compiler spilled them, and accumulators with them). The q64 kernel
 * therefore first expands every padded row into planes: plane (cx, j) of
 * padded row y holds, for each output column ox, word j of the row that
 * starts at tap column cx of ox's window, its bits past the row masked off.
 * The P pixels of a step are then P consecutive words of one plane, at
 * constant offsets from one pointer, and the mask is gone from the hot loop.
 * A step s = (r, j) of a window is a plane of padded row oy*sh + ky*dh:
 * soff[s] is its offset from row oy*sh's planes. Weights are blocked to
 * match: [block of gstep groups][s][group][8 lanes]. */
/* AVX2 counts a word's bits with a 16-entry table per nibble, and
 * (a ^ w) & 0x0f.. = (a & 0x0f..) ^ (w & 0x0f..) (likewise the high nibbles,
 * shifted down): the planes and the weights hold both halves already split,
 * so the hot loop does XOR and lookup only, with no shift or mask (12 vector
 * operations per pixel and 8 channels instead of 16). wq: [groups][nsteps]
 * [low nibbles of 8 lanes][high nibbles of 8 lanes]. */
static const uint64_t NIBBLES = 0x0f0f0f0f0f0f0f0full;

static int nibble_weights(bnn_bconv *k) {
    size_t words = (size_t)k->groups * k->nsteps * 8;
    k->wq = (uint64_t *)aligned_alloc(64, words * 2 * sizeof(uint64_t));
    if (!k->wq) return -1;
    for (size_t i = 0; i < words; i++) {
        k->wq[(i / 8) * 16 + i % 8] = k->w[i] & NIBBLES;
        k->wq[(i / 8) * 16 + 8 + i % 8] = (k->w[i] >> 4) & NIBBLES;
    }
    return 0;
}

static int repack_planes(bnn_bconv *k) {
    const bnn_conv_geom *g = &k->g;
    const int contiguous = g->dw == 1;
    /* 4 groups when the channels are a multiple of 32 (a split in 3s leaves
     * a group of 1 or 2 whose blocks pay a broadcast per 8 or 16 channels:
     * docs/performance.md); else rows whose width is a multiple of 8 take
     * 8 pixels x 3 groups, so no pixel falls into a narrow block */
    k->gstep = k->variant == BNN_VARIANT_AVX2 ? 1 : k->groups % 4 == 0 ? 4 : g->out_w % 8 == 0 ? 3 : 4;
    /* the rows of B output rows: (B - 1) sh + (kh - 1) dh + 1 */
    int64_t fit = (int64_t)(PLANES_BAND / k->prb) - (int64_t)(g->kh - 1) * g->dh - 1;
    k->band = fit < 0 ? 1 : fit / g->sh + 1 > g->out_h ? g->out_h : (int32_t)(fit / g->sh + 1);
    k->soff = (int64_t *)malloc((size_t)k->nsteps * sizeof(int64_t));
    if (!k->soff) return -1;
    for (int r = 0; r < k->nrows; r++) {
        int ky = contiguous ? r : r / g->kw, cx = contiguous ? 0 : r % g->kw;
        for (int j = 0; j < k->rw; j++)
            k->soff[r * k->rw + j] = (int64_t)ky * g->dh * (int64_t)k->prb +
                                     ((int64_t)cx * k->rw + j) * g->out_w * 8 * plane_words(k->variant);
    }
    if (k->variant == BNN_VARIANT_AVX2) return nibble_weights(k);
    /* int32 corrections for the 16-lane epilogues (as repack_lanes makes them) */
    size_t n16 = (size_t)k->g16 * 16, nl = (size_t)k->groups * 8;
    k->corr32 = (int32_t *)aligned_alloc(64, (size_t)k->nclass * n16 * sizeof(int32_t));
    if (!k->corr32) return -1;
    for (size_t cls = 0; cls < (size_t)k->nclass; cls++)
        for (size_t c = 0; c < n16; c++) k->corr32[cls * n16 + c] = c < nl ? (int32_t)k->corr[cls * nl + c] : 0;
    k->wq = (uint64_t *)aligned_alloc(64, (size_t)k->groups * k->nsteps * 64);
    if (!k->wq) return -1;
    for (int b = 0; b * k->gstep < k->groups; b++) {
        int grp0 = b * k->gstep, G = k->groups - grp0 < k->gstep ? k->groups - grp0 : k->gstep;
        uint64_t *dst = k->wq + (size_t)grp0 * k->nsteps * 8;
        for (int s = 0; s < k->nsteps; s++)
            for (int q = 0; q < G; q++)
                memcpy(dst + ((size_t)s * G + q) * 8, k->w + ((size_t)(grp0 + q) * k->nsteps + s) * 8, 64);
    }
    return 0;
}

/* ---- shared pieces -------------------------------------------------------- */

/* Row r of an image's padded buffer. One row at a time, so that the threads
 * share the padding of a single image (batch 1) instead of one of them doing
 * it all while the others wait. With a 1-row kernel at stride sh > 1 only
 * every sh-th row is ever read: the others are left alone. */
static inline int row_unread(const bnn_bconv *k, int r) {
    return k->g.kh == 1 && k->g.sh > 1 && r % k->g.sh;
}

static void pad_row(const bnn_bconv *k, const uint8_t *img, uint8_t *dst /* rs bytes */, int r) {
    const bnn_conv_geom *g = &k->g;
    if (row_unread(k, r)) return;
    memset(dst, 0, (size_t)k->rs);
    int ncols = g->in_w < k->wp - g->pad_left ? g->in_w : k->wp - g->pad_left;
    int iy = r - g->pad_top;
    if (ncols <= 0 || iy < 0 || iy >= g->in_h) return;
    memcpy(dst + (size_t)g->pad_left * k->cb, img + (size_t)iy * g->in_w * k->cb, (size_t)ncols * k->cb);
}

/* The last word of a row reads past it (into the next pixel's bits). Masking
 * those activation bits off (weights are zero there too) makes them add
 * nothing: one AND per word load, shared by nothing else. */
static inline uint64_t word_mask(const bnn_bconv *k, int j) {
    return j == k->rw - 1 ? k->last_mask : ~(uint64_t)0;
}

/* The planes of padded row r (see repack_planes), from the row itself. */
static void plane_row(const bnn_bconv *k, const uint8_t *row /* rs bytes */, uint64_t *dst /* prb bytes */, int r) {
    const bnn_conv_geom *g = &k->g;
    if (row_unread(k, r)) return;
    const size_t pstride = (size_t)g->sw * k->cb;
    for (int cx = 0; cx < k->ncol; cx++)
        for (int j = 0; j < k->rw; j++) {
            const uint8_t *src = row + (size_t)cx * g->dw * k->cb + 8 * j;
            const uint64_t m = word_mask(k, j);
            if (k->variant == BNN_VARIANT_AVX2) {           /* nibble halves (nibble_weights) */
                for (int ox = 0; ox < g->out_w; ox++) {
                    uint64_t a = load64(src + ox * pstride) & m;
                    *dst++ = a & NIBBLES;
                    *dst++ = (a >> 4) & NIBBLES;
                }
                continue;
            }
            if (pstride == 8 && m == ~(uint64_t)0) {     /* 64 channels at stride 1: a copy */
                memcpy(dst, src, (size_t)g->out_w * 8);
                dst += g->out_w;
                continue;
            }
            for (int ox = 0; ox < g->out_w; ox++) *dst++ = load64(src + ox * pstride) & m;
        }
}

/* ---- same-zero borders ------------------------------------------------------
 * Padded taps read bit 0 (+1); with pad_value 0 they must add nothing, so y
 * loses each out-of-image tap's weight sum (tapc). */
static inline int row_border(const bnn_conv_geom *g, int oy) {
    int y0 = oy * g->sh - g->pad_top;
    return y0 < 0 || y0 + (g->kh - 1) * g->dh >= g->in_h;
}
static inline int col_border(const bnn_conv_geom *g, int ox) {
    int x0 = ox * g->sw - g->pad_left;
    return x0 < 0 || x0 + (g->kw - 1) * g->dw >= g->in_w;
}

/* The border class of a pixel (0: no correction, or no tables). */
static inline int border_class(const bnn_bconv *k, int oy, int ox) {
    return k->rcls ? k->rcls[oy] * k->ncc + k->ccls[ox] : 0;
}
/* A same-zero border pixel without tables: the per-tap loop corrects it. */
static inline int slow_border(const bnn_bconv *k, int oy, int ox) {
    return k->g.pad_value == 0 && !k->rcls && (row_border(&k->g, oy) || col_border(&k->g, ox));
}

/* y[c] -= the +1 pads' contribution at (oy, ox), tap by tap. */
static void pad_taps_fix(const bnn_bconv *k, int oy, int ox, int64_t *y /* [groups*8] */) {
    const bnn_conv_geom *g = &k->g;
    size_t nl = (size_t)k->groups * 8;
    for (int ky = 0; ky < g->kh; ky++) {
        int iy = oy * g->sh - g->pad_top + ky * g->dh;
        for (int kx = 0; kx < g->kw; kx++) {
            int ix = ox * g->sw - g->pad_left + kx * g->dw;
            if (iy >= 0 && iy < g->in_h && ix >= 0 && ix < g->in_w) continue;
            const int64_t *t = k->tapc + (size_t)(ky * g->kw + kx) * nl;
            for (size_t c = 0; c < nl; c++) y[c] -= t[c];
        }
    }
}

/* y of one pixel (all groups), corrected where it is a same-zero border pixel */
static inline void border_fix(const bnn_bconv *k, int oy, int ox, int64_t *y) {
    size_t nl = (size_t)k->groups * 8;
    int cls = border_class(k, oy, ox);
    if (cls) {
        const int64_t *c = k->corr + (size_t)cls * nl;
        for (size_t i = 0; i < nl; i++) y[i] -= c[i];
    } else if (slow_border(k, oy, ox)) {
        pad_taps_fix(k, oy, ox, y);
    }
}

/* The class tables (see rcls), and the bit thresholds of every class. */
static int border_tables(bnn_bconv *k) {
    const bnn_conv_geom *g = &k->g;
    size_t nl = (size_t)k->groups * 8;
    int nr = 0, nc = 0;
    if (g->pad_value == 0) {
        for (int oy = 0; oy < g->out_h; oy++) nr += row_border(g, oy);
        for (int ox = 0; ox < g->out_w; ox++) nc += col_border(g, ox);
    }
    size_t classes = (size_t)(nr + 1) * (nc + 1);
    if ((nr || nc) && classes * nl <= BORDER_TABLE_MAX) {
        k->rcls = (int32_t *)calloc(g->out_h, sizeof(int32_t));
        k->ccls = (int32_t *)calloc(g->out_w, sizeof(int32_t));
        int32_t *rep_y = (int32_t *)malloc((nr + 1) * sizeof(int32_t));
        int32_t *rep_x = (int32_t *)malloc((nc + 1) * sizeof(int32_t));
        k->corr = (int64_t *)aligned_alloc(64, classes * nl * sizeof(int64_t));
        if (!k->rcls || !k->ccls || !rep_y || !rep_x || !k->corr) { free(rep_y); free(rep_x); return -1; }
        /* class 0 of rows (columns): every interior one; a border one its own */
        for (int i = 0; i <= nr; i++) rep_y[i] = -1;
        for (int i = 0; i <= nc; i++) rep_x[i] = -1;
        for (int oy = 0, n = 0; oy < g->out_h; oy++) {
            k->rcls[oy] = row_border(g, oy) ? ++n : 0;
            rep_y[k->rcls[oy]] = oy;
        }
        for (int ox = 0, n = 0; ox < g->out_w; ox++) {
            k->ccls[ox] = col_border(g, ox) ? ++n : 0;
            rep_x[k->ccls[ox]] = ox;
        }
        k->nclass = (int32_t)classes;
        k->ncc = nc + 1;
        memset(k->corr, 0, classes * nl * sizeof(int64_t));
        for (int rc = 0; rc <= nr; rc++)
            for (int cc = 0; cc <= nc; cc++)
                if (rep_y[rc] >= 0 && rep_x[cc] >= 0 && (rc || cc)) {
                    int64_t *c = k->corr + ((size_t)rc * k->ncc + cc) * nl;
                    pad_taps_fix(k, rep_y[rc], rep_x[cc], c);
                    for (size_t i = 0; i < nl; i++) c[i] = -c[i];      /* subtracted from y */
                }
        free(rep_y);
        free(rep_x);
    } else {
        k->slow_borders = nr || nc;
        k->corr = (int64_t *)aligned_alloc(64, nl * sizeof(int64_t));
        if (!k->corr) return -1;
        memset(k->corr, 0, nl * sizeof(int64_t));
    }
    k->athr = (int64_t *)aligned_alloc(64, (size_t)k->nclass * nl * sizeof(int64_t));
    if (!k->athr) return -1;
    for (size_t cls = 0; cls < (size_t)k->nclass; cls++)
        for (size_t c = 0; c < nl; c++)
            k->athr[cls * nl + c] = acc_threshold(k, (int32_t)c, k->corr[cls * nl + c]);
    return 0;
}

/* ---- scalar kernel -------------------------------------------------------- */

static void row_scalar(const bnn_bconv *k, const uint8_t *buf, int oy, size_t out_row, void *out,
                       const int8_t *skip, int64_t *y /* scratch [groups*8] */) {
    const bnn_conv_geom *g = &k->g;
    size_t nl = (size_t)k->groups * 8;
    for (int ox = 0; ox < g->out_w; ox++) {
        const uint8_t *org = buf + (size_t)oy * g->sh * k->rs + (size_t)ox * g->sw * k->cb;
        for (size_t c = 0; c < nl; c++) y[c] = 0;
        for (int r = 0; r < k->nrows; r++) {
            const uint8_t *row = org + k->roff[r];
            for (int j = 0; j < k->rw; j++) {
                uint64_t a = load64(row + 8 * j) & word_mask(k, j);
                for (int grp = 0; grp < k->groups; grp++) {
                    const uint64_t *w = k->w + (((size_t)grp * k->nrows + r) * k->rw + j) * 8;
                    int64_t *yy = y + grp * 8;
                    for (int l = 0; l < 8; l++) yy[l] += __builtin_popcountll(a ^ w[l]);
                }
            }
        }
        for (size_t c = 0; c < nl; c++) y[c] = k->K - 2 * y[c];
        border_fix(k, oy, ox, y);
        bnn_epi_pixel(&k->e, y, out_row + ox, out, skip);
    }
}

/* ---- AVX-512 kernel --------------------------------------------------------- */
#ifdef BNN_X86
#define AVX512 BNN_AVX512_POPCNT

/* same-zero border pixels without tables only: out of line, so the hot block stays small */
AVX512 static __attribute__((noinline)) __m512i pad_taps_fix_avx512(const bnn_bconv *k, int oy, int ox, int grp,
                                                                    __m512i y) {
    const bnn_conv_geom *g = &k->g;
    int64_t tmp[8] __attribute__((aligned(64)));
    _mm512_store_si512(tmp, y);
    for (int ky = 0; ky < g->kh; ky++) {
        int iy = oy * g->sh - g->pad_top + ky * g->dh;
        for (int kx = 0; kx < g->kw; kx++) {
            int ix = ox * g->sw - g->pad_left + kx * g->dw;
            if (iy >= 0 && iy < g->in_h && ix >= 0 && ix < g->in_w) continue;
            const int64_t *t = k->tapc + (size_t)(ky * g->kw + kx) * k->groups * 8 + grp * 8;
            for (int l = 0; l < 8; l++) tmp[l] -= t[l];
        }
    }
    return _mm512_load_si512(tmp);
}

/* y of group grp of a pixel of class cls, corrected where it is a same-zero border pixel */
AVX512 static inline __attribute__((always_inline)) __m512i
border_fix_avx512(const bnn_bconv *k, int oy, int ox, int cls, int slow, int grp, __m512i y) {
    if (cls) return _mm512_sub_epi64(y, _mm512_load_si512(k->corr + (size_t)cls * k->groups * 8 + grp * 8));
    return slow ? pad_taps_fix_avx512(k, oy, ox, grp, y) : y;
}

/* G groups' bit masks as the G bytes of one integer, little-endian, joined
 * in the mask registers (kunpck; shifting the masks as integers came out
 * wrong under GCC 12's -fsanitize=undefined) */
AVX512 static inline __attribute__((always_inline)) uint32_t group_bytes(const __mmask8 b[4], const int G) {
    __mmask16 lo = G > 1 ? _mm512_kunpackb(b[1], b[0]) : (__mmask16)b[0];
    if (G <= 2) return _cvtmask16_u32(lo);
    __mmask16 hi = G > 3 ? _mm512_kunpackb(b[3], b[2]) : (__mmask16)b[2];
    return _cvtmask32_u32(_mm512_kunpackw(hi, lo));
}

/* P pixels x G groups of 8 output channels, accumulators in registers; the
 * pixels' words are consecutive in a plane, the groups' weights in wq. */
AVX512 static inline __attribute__((always_inline)) void
block_avx512(const bnn_bconv *k, const uint8_t *planes /* of padded row oy * sh */, int oy, int ox0, int grp0,
             size_t out_row, void *out, const int8_t *skip, const int P, const int G) {
    __m512i acc[8][4];
    const uint8_t *base = planes + (size_t)ox0 * 8;
    const uint64_t *w = k->wq + (size_t)grp0 * k->nsteps * 8;
#pragma GCC unroll 8
    for (int p = 0; p < P; p++)
#pragma GCC unroll 4
        for (int q = 0; q < G; q++) acc[p][q] = _mm512_setzero_si512();
    for (int s = 0; s < k->nsteps; s++, w += G * 8) {
        const uint64_t *a = (const uint64_t *)(base + k->soff[s]);
        __m512i wv[4];
#pragma GCC unroll 4
        for (int q = 0; q < G; q++) wv[q] = _mm512_load_si512(w + q * 8);
#pragma GCC unroll 8
        for (int p = 0; p < P; p++) {
            __m512i x = _mm512_set1_epi64((long long)a[p]);
#pragma GCC unroll 4
            for (int q = 0; q < G; q++)
                acc[p][q] = _mm512_add_epi64(acc[p][q], _mm512_popcnt_epi64(_mm512_xor_si512(x, wv[q])));
        }
    }
    const __m512i K = _mm512_set1_epi64(k->K);
    if (k->e.kind == BNN_OUT_BITS && !k->slow_borders) {
        /* one compare of the sums (athr) per group; a pixel's G bytes in one
         * store, made after every load (a byte store may alias them all) */
        const size_t nl = (size_t)k->groups * 8, ng = (size_t)k->groups;
        const int64_t *athr = k->athr + grp0 * 8;
        uint8_t *o = (uint8_t *)out + (out_row + ox0) * ng + grp0;
        uint32_t m[8];
#pragma GCC unroll 8
        for (int p = 0; p < P; p++) {
            const int64_t *t = athr + (size_t)border_class(k, oy, ox0 + p) * nl;
            __mmask8 b[4];
#pragma GCC unroll 4
            for (int q = 0; q < G; q++) b[q] = _mm512_cmpge_epi64_mask(acc[p][q], _mm512_load_si512(t + q * 8));
            m[p] = group_bytes(b, G);
        }
#pragma GCC unroll 8
        for (int p = 0; p < P; p++) memcpy(o + p * ng, &m[p], G);
        return;
    }
    /* float and int8 outputs go through the epilogue 16 channels (two groups)
     * at a time; bits and int32 8 at a time, each group's y as it comes (the
     * same loop with all y first costs the bit output 10%) */
    const int lanes32 = k->e.kind == BNN_OUT_FLOAT || k->e.kind == BNN_OUT_INT32;
    const int pairs = lanes32 || k->e.fast16 ? G / 2 : 0;
    if (!pairs) {
#pragma GCC unroll 8
        for (int p = 0; p < P; p++) {
            int ox = ox0 + p;
            const int cls = border_class(k, oy, ox), slow = slow_border(k, oy, ox);
            const int64_t *athr = k->athr + (size_t)cls * k->groups * 8;
#pragma GCC unroll 4
            for (int q = 0; q < G; q++) {
                if (k->e.kind == BNN_OUT_BITS && !slow) {    /* one compare of the sums (athr) */
                    ((uint8_t *)out)[(out_row + ox) * k->groups + grp0 + q] =
                        (uint8_t)_mm512_cmpge_epi64_mask(acc[p][q], _mm512_load_si512(athr + (grp0 + q) * 8));
                    continue;
                }
                __m512i y = _mm512_sub_epi64(K, _mm512_slli_epi64(acc[p][q], 1));
                y = border_fix_avx512(k, oy, ox, cls, slow, grp0 + q, y);
                bnn_epi8_avx512(&k->e, y, (grp0 + q) * 8, out_row + ox, out, skip);
            }
        }
        return;
    }
    /* the low dwords of two groups' int64 sums: 16 int32 counts, channels in order */
    const __m512i evens = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
#pragma GCC unroll 8
    for (int p = 0; p < P; p++) {
        int ox = ox0 + p;
        const int cls = border_class(k, oy, ox), slow = slow_border(k, oy, ox);
        if (lanes32 && !slow) {     /* y = K - 2 acc in int32 lanes (|y| <= K), less the class's correction */
            const int32_t *corr = k->corr32 + (size_t)cls * k->g16 * 16;
#pragma GCC unroll 2
            for (int h = 0; h < pairs; h++) {
                const int c0 = (grp0 + 2 * h) * 8;
                __m512i x = _mm512_permutex2var_epi32(acc[p][2 * h], evens, acc[p][2 * h + 1]);
                __m512i y = _mm512_sub_epi32(_mm512_set1_epi32(k->K), _mm512_slli_epi32(x, 1));
                if (cls) y = _mm512_sub_epi32(y, _mm512_loadu_si512(corr + c0));
                bnn_epi_f32x16_avx512(&k->e, y, c0, out_row + ox, out, skip);
            }
            if (G % 2)
                bnn_epi8_avx512(&k->e, border_fix_avx512(k, oy, ox, cls, 0, grp0 + G - 1,
                                                         _mm512_sub_epi64(K, _mm512_slli_epi64(acc[p][G - 1], 1))),
                                (grp0 + G - 1) * 8, out_row + ox, out, skip);
            continue;
        }
        if (k->e.rq32 && !cls && !slow) {
#pragma GCC unroll 2
            for (int h = 0; h < pairs; h++)
                bnn_epi_rq32_avx512(&k->e, _mm512_permutex2var_epi32(acc[p][2 * h], evens, acc[p][2 * h + 1]),
                                    (grp0 + 2 * h) * 8, out_row + ox, out, skip);
            if (G % 2)
                bnn_epi8_avx512(&k->e, _mm512_sub_epi64(K, _mm512_slli_epi64(acc[p][G - 1], 1)),
                                (grp0 + G - 1) * 8, out_row + ox, out, skip);
            continue;
        }
        __m512i y[4];
#pragma GCC unroll 4
        for (int q = 0; q < G; q++) {
            y[q] = _mm512_sub_epi64(K, _mm512_slli_epi64(acc[p][q], 1));
            y[q] = border_fix_avx512(k, oy, ox, cls, slow, grp0 + q, y[q]);
        }
#pragma GCC unroll 2
        for (int h = 0; h < pairs; h++) {
            if (lanes32)
                bnn_epi16f_avx512(&k->e, y[2 * h], y[2 * h + 1], (grp0 + 2 * h) * 8, out_row + ox, out, skip);
            else
                bnn_epi16i8_avx512(&k->e, y[2 * h], y[2 * h + 1], (grp0 + 2 * h) * 8, out_row + ox, out, skip);
        }
#pragma GCC unroll 4
        for (int q = 2 * pairs; q < G; q++)
            bnn_epi8_avx512(&k->e, y[q], (grp0 + q) * 8, out_row + ox, out, skip);
    }
}

AVX512 static void row_avx512(const bnn_bconv *k, const uint8_t *planes, int oy, size_t out_row,
                              void *out, const int8_t *skip) {
    const int ow = k->g.out_w;
    /* P pixels x G groups, P*G <= 24 accumulators (+ G weights + 1 broadcast
     * of 32 registers); 4 x 4 rather than 6 x 4: the float and int8
     * epilogues then keep their temporaries in registers (float out 1.2-1.3x
     * faster, bits the same: docs/performance.md), and rows of a multiple of
     * 4 pixels leave no remainder. The remainder goes 4, 2, 1 pixels at a time */
    for (int grp = 0; grp < k->groups; grp += k->gstep) {
        int G = k->groups - grp < k->gstep ? k->groups - grp : k->gstep;
        int ox = 0;
#define BNN_STEP(p, G) block_avx512(k, planes, oy, ox, grp, out_row, out, skip, p, G)
#define BNN_BLOCKS(P, G) BNN_SPAN(ox, ow, P, BNN_STEP, G)
        BNN_GROUP_SWITCH(G, BNN_BLOCKS, 8, 8, 8, 4)
#undef BNN_BLOCKS
#undef BNN_STEP
    }
}
#endif

#ifdef BNN_X86
/* ---- AVX-512, d32 and w16 lane layouts ------------------------------------- */
#define AVX512_BITALG __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,popcnt,avx512vpopcntdq,avx512bitalg")))

/* The epilogue of 16 channels [c0, c0+16) of one pixel, given the popcount
 * sums as 16 int32 lanes (lanes past cout hold junk and are never stored).
 * Bit outputs compare the sums against athr32 (padded lanes never set); the
 * rest take y = K - 2 acc, int8 on int32 lanes where it provably fits, else
 * widened to int64 halves for the q64 epilogues. */
AVX512 static inline __attribute__((always_inline)) void
epi16_lanes(const bnn_bconv *k, __m512i acc, int c0, int oy, int ox, size_t pix, void *out, const int8_t *skip) {
    const bnn_epi *e = &k->e;
    const int cout = k->g.cout;
    const int cls = border_class(k, oy, ox), slow = slow_border(k, oy, ox);
    const size_t row = (size_t)cls * k->g16 * 16;
    if (e->kind == BNN_OUT_BITS && !slow) {
        unsigned bits = _mm512_cmpge_epi32_mask(acc, _mm512_load_si512(k->athr32 + row + c0));
        uint8_t *o = (uint8_t *)out + pix * ((cout + 7) / 8) + c0 / 8;
        if (cout - c0 >= 16) {
            uint16_t v = (uint16_t)bits;
            memcpy(o, &v, 2);
        } else {
            o[0] = (uint8_t)bits;
            if (cout - c0 > 8) o[1] = (uint8_t)(bits >> 8);
        }
        return;
    }
    if (e->kind == BNN_OUT_INT8 && e->rq32 && !cls && !slow) {
        bnn_epi_rq32_avx512(e, acc, c0, pix, out, skip);
        return;
    }
    __m512i y = _mm512_sub_epi32(_mm512_set1_epi32(k->K), _mm512_slli_epi32(acc, 1));
    /* a corrected y is the y of a window with fewer taps: still within [-K, K] */
    if (cls) y = _mm512_sub_epi32(y, _mm512_load_si512(k->corr32 + row + c0));
    if (e->kind == BNN_OUT_INT8 && e->lanes32 && !slow) {
        bnn_epi_i8x16_avx512(e, y, c0, pix, out, skip);
        return;
    }
    __m512i y0 = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(y));
    __m512i y1 = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(y, 1));
    const int second = c0 + 8 < cout;
    if (slow) {
        y0 = pad_taps_fix_avx512(k, oy, ox, c0 / 8, y0);
        if (second) y1 = pad_taps_fix_avx512(k, oy, ox, c0 / 8 + 1, y1);
    }
    if (e->kind == BNN_OUT_FLOAT) {
        bnn_epi16f_avx512(e, y0, y1, c0, pix, out, skip);
    } else if (e->kind == BNN_OUT_INT8 && e->fast16) {
        bnn_epi16i8_avx512(e, y0, y1, c0, pix, out, skip);
    } else {
        bnn_epi8_avx512(e, y0, c0, pix, out, skip);
        if (second) bnn_epi8_avx512(e, y1, c0 + 8, pix, out, skip);
    }
}

/* d32: P pixels x G groups of 16 channels, rows read in dwords; the last
 * dword's bytes past the row are masked off in the XOR (vpternlogd: (a^w)&m). */
AVX512 static inline __attribute__((always_inline)) void
block_d32(const bnn_bconv *k, const uint8_t *buf, int oy, int ox0, int grp0, size_t out_row,
          void *out, const int8_t *skip, const int P, const int G, const int MASKED) {
    const bnn_conv_geom *g = &k->g;
    __m512i acc[8][4];
    const uint8_t *org = buf + (size_t)oy * g->sh * k->rs + (size_t)ox0 * g->sw * k->cb;
    const size_t pstride = (size_t)g->sw * k->cb;
    const size_t gstride = (size_t)k->nrows * k->rw4 * 16;
#pragma GCC unroll 8
    for (int p = 0; p < P; p++)
#pragma GCC unroll 4
        for (int q = 0; q < G; q++) acc[p][q] = _mm512_setzero_si512();
    for (int r = 0; r < k->nrows; r++) {
        const uint8_t *row = org + k->roff[r];
        const uint32_t *w = (const uint32_t *)k->wl + ((size_t)grp0 * k->nrows + r) * k->rw4 * 16;
        for (int j = 0; j < k->rw4; j++) {
            __m512i wv[4];
            const __m512i m = _mm512_set1_epi32((int)(j == k->rw4 - 1 ? k->last_mask32 : ~(uint32_t)0));
#pragma GCC unroll 4
            for (int q = 0; q < G; q++) wv[q] = _mm512_load_si512(w + q * gstride + j * 16);
#pragma GCC unroll 8
            for (int p = 0; p < P; p++) {
                __m512i a = _mm512_set1_epi32((int)bnn_load32(row + p * pstride + 4 * j));
#pragma GCC unroll 4
                for (int q = 0; q < G; q++) {
                    __m512i x = MASKED ? _mm512_ternarylogic_epi32(a, wv[q], m, 0x28) : _mm512_xor_si512(a, wv[q]);
                    acc[p][q] = _mm512_add_epi32(acc[p][q], _mm512_popcnt_epi32(x));
                }
            }
        }
    }
#pragma GCC unroll 8
    for (int p = 0; p < P; p++)
#pragma GCC unroll 4
        for (int q = 0; q < G; q++)
            epi16_lanes(k, acc[p][q], (grp0 + q) * 16, oy, ox0 + p, out_row + ox0 + p, out, skip);
}

AVX512 static void row_d32(const bnn_bconv *k, const uint8_t *buf, int oy, size_t out_row, void *out,
                           const int8_t *skip) {
    const int ow = k->g.out_w, masked = k->last_mask32 != ~(uint32_t)0;
    for (int grp = 0; grp < k->g16; grp += 4) {
        int G = k->g16 - grp < 4 ? k->g16 - grp : 4;
        int ox = 0;
#define BNN_STEP(p, G, M) block_d32(k, buf, oy, ox, grp, out_row, out, skip, p, G, M)
#define BNN_BLOCKS(P, G) if (masked) { BNN_SPAN(ox, ow, P, BNN_STEP, G, 1) } else { BNN_SPAN(ox, ow, P, BNN_STEP, G, 0) }
        BNN_GROUP_SWITCH(G, BNN_BLOCKS, 8, 8, 6, 6)
#undef BNN_BLOCKS
#undef BNN_STEP
    }
}

/* w16: P pixel pairs x G groups of 16 channels. Word lane 2c + h holds channel
 * c of pixel 2p + h; one vpermw per pair and group puts each pixel's 16
 * channels in one half for the epilogue. The second pixel of the last pair of
 * an odd row is computed from bytes inside the padded row and not stored. */
AVX512_BITALG static inline __attribute__((always_inline)) void
block_w16(const bnn_bconv *k, const uint8_t *buf, int oy, int ox0, int grp0, size_t out_row,
          void *out, const int8_t *skip, const int P, const int G) {
    const bnn_conv_geom *g = &k->g;
    __m512i acc[8][4];
    const uint8_t *org = buf + (size_t)oy * g->sh * k->rs + (size_t)ox0 * 2;
    const size_t gstride = (size_t)k->ntaps * 32;
#pragma GCC unroll 8
    for (int p = 0; p < P; p++)
#pragma GCC unroll 4
        for (int q = 0; q < G; q++) acc[p][q] = _mm512_setzero_si512();
    const uint16_t *w = (const uint16_t *)k->wl + (size_t)grp0 * gstride;
    for (int t = 0; t < k->ntaps; t++) {
        const uint8_t *tap = org + k->toff[t];
        __m512i wv[4];
#pragma GCC unroll 4
        for (int q = 0; q < G; q++) wv[q] = _mm512_load_si512(w + q * gstride + t * 32);
#pragma GCC unroll 8
        for (int p = 0; p < P; p++) {
            __m512i a = _mm512_set1_epi32((int)bnn_load32(tap + 4 * p));
#pragma GCC unroll 4
            for (int q = 0; q < G; q++)
                acc[p][q] = _mm512_add_epi16(acc[p][q], _mm512_popcnt_epi16(_mm512_xor_si512(a, wv[q])));
        }
    }
    const __m512i split = _mm512_set_epi16(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1,
                                           30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const int ow = g->out_w;
#pragma GCC unroll 8
    for (int p = 0; p < P; p++)
#pragma GCC unroll 4
        for (int q = 0; q < G; q++) {
            __m512i a = _mm512_permutexvar_epi16(split, acc[p][q]);   /* sums <= K < 2^15 */
            int ox = ox0 + 2 * p;
            epi16_lanes(k, _mm512_cvtepu16_epi32(_mm512_castsi512_si256(a)), (grp0 + q) * 16, oy, ox,
                        out_row + ox, out, skip);
            if (ox + 1 < ow)
                epi16_lanes(k, _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(a, 1)), (grp0 + q) * 16, oy,
                            ox + 1, out_row + ox + 1, out, skip);
        }
}

AVX512_BITALG static void row_w16(const bnn_bconv *k, const uint8_t *buf, int oy, size_t out_row,
                                  void *out, const int8_t *skip) {
    const int pairs = (k->g.out_w + 1) / 2;
    for (int grp = 0; grp < k->g16; grp += 4) {
        int G = k->g16 - grp < 4 ? k->g16 - grp : 4;
        int pr = 0;
#define BNN_STEP(p, G) block_w16(k, buf, oy, 2 * pr, grp, out_row, out, skip, p, G)
#define BNN_PAIRS(P, G) BNN_SPAN(pr, pairs, P, BNN_STEP, G)
        BNN_GROUP_SWITCH(G, BNN_PAIRS, 8, 8, 6, 6)
#undef BNN_PAIRS
#undef BNN_STEP
    }
}
#endif

#ifdef BNN_X86
/* ---- AVX2 kernel -------------------------------------------------------------
 * No vector popcount: bytes are counted with two 16-entry table lookups
 * (vpshufb on the low and high nibbles, which the planes and the weights hold
 * already split: nibble_weights) and summed into byte accumulators,
 * which vpsadbw folds into the 64-bit lanes every 31 words (8 * 31 < 256).
 * Lanes are output channels as in the AVX-512 kernel (4 per register, a group
 * of 8 in two registers); P pixels, consecutive words of the planes as on
 * AVX-512, share each weight load. Bit outputs compare the sums against athr
 * in the registers (as the AVX-512 kernel does); the other epilogues are the
 * scalar ones. */
#define AVX2 BNN_AVX2
enum { AVX2_P = 3, AVX2_FLUSH = 31 };   /* 6 byte accumulators + 4 weights + lut + 2 inputs + 2 temporaries: 15 registers */

/* Steps [s0, s1) of P pixels x one group of 8 channels, s1 - s0 <= AVX2_FLUSH:
 * the popcount sums in 64-bit lanes (vpsadbw of the byte counts) */
AVX2 static inline __attribute__((always_inline)) void
steps_avx2(const bnn_bconv *k, const uint8_t *base, const uint64_t *w, int s0, int s1, __m256i s[AVX2_P][2],
           const int P) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i zero = _mm256_setzero_si256();
    __m256i sb[AVX2_P][2];
#pragma GCC unroll 4
    for (int p = 0; p < P; p++) sb[p][0] = sb[p][1] = zero;
    for (int st = s0; st < s1; st++) {
        const uint64_t *a = (const uint64_t *)(base + k->soff[st]);   /* [P][low, high] */
        const uint64_t *ws = w + 16 * st;
        __m256i w0l = _mm256_load_si256((const __m256i *)ws), w1l = _mm256_load_si256((const __m256i *)(ws + 4));
        __m256i w0h = _mm256_load_si256((const __m256i *)(ws + 8)), w1h = _mm256_load_si256((const __m256i *)(ws + 12));
#pragma GCC unroll 4
        for (int p = 0; p < P; p++) {
            /* (pre-broadcast planes, 4x the stores, measured 3-5% slower on Zen 3) */
            __m256i xl = _mm256_set1_epi64x((long long)a[2 * p]), xh = _mm256_set1_epi64x((long long)a[2 * p + 1]);
            sb[p][0] = _mm256_add_epi8(_mm256_add_epi8(sb[p][0], _mm256_shuffle_epi8(lut, _mm256_xor_si256(xl, w0l))),
                                       _mm256_shuffle_epi8(lut, _mm256_xor_si256(xh, w0h)));
            sb[p][1] = _mm256_add_epi8(_mm256_add_epi8(sb[p][1], _mm256_shuffle_epi8(lut, _mm256_xor_si256(xl, w1l))),
                                       _mm256_shuffle_epi8(lut, _mm256_xor_si256(xh, w1h)));
        }
    }
#pragma GCC unroll 4
    for (int p = 0; p < P; p++)
        for (int h = 0; h < 2; h++) s[p][h] = _mm256_sad_epu8(sb[p][h], zero);
}

/* All steps: one chunk when they fit (the sums straight from the byte
 * counts), else chunk by chunk, the running sums kept apart from the chunk's
 * registers */
AVX2 static inline __attribute__((always_inline)) void
block_avx2(const bnn_bconv *k, const uint8_t *base, const uint64_t *w, __m256i s[AVX2_P][2], const int P) {
    if (k->nsteps <= AVX2_FLUSH) {
        steps_avx2(k, base, w, 0, k->nsteps, s, P);
        return;
    }
    __m256i total[AVX2_P][2];
    steps_avx2(k, base, w, 0, AVX2_FLUSH, total, P);
    for (int s0 = AVX2_FLUSH; s0 < k->nsteps; s0 += AVX2_FLUSH) {
        steps_avx2(k, base, w, s0, k->nsteps - s0 < AVX2_FLUSH ? k->nsteps : s0 + AVX2_FLUSH, s, P);
        for (int p = 0; p < P; p++)
            for (int h = 0; h < 2; h++) total[p][h] = _mm256_add_epi64(total[p][h], s[p][h]);
    }
    for (int p = 0; p < P; p++) s[p][0] = total[p][0], s[p][1] = total[p][1];
}

AVX2 static inline __attribute__((always_inline)) void
pixels_avx2(const bnn_bconv *k, const uint8_t *planes, int oy, int ox0, size_t out_row, void *out,
            const int8_t *skip, int64_t *y /* scratch [AVX2_P][groups*8] */, const int P) {
    const size_t nl = (size_t)k->groups * 8;
    const uint8_t *base = planes + (size_t)ox0 * 16;     /* two words per column: nibble halves */
    const int bits = k->e.kind == BNN_OUT_BITS, vec = bnn_epi_avx2_kind(&k->e);
    /* int8 from the sums in int32 lanes: rq32's parameters hold for y = K - 2 acc, class 0 */
    const int rq = k->e.kind == BNN_OUT_INT8 && k->e.rq32;
    /* in_regs: the output done in the registers (bits compare the sums themselves) */
    int cls[AVX2_P], in_regs[AVX2_P];
    for (int p = 0; p < P; p++) {
        cls[p] = border_class(k, oy, ox0 + p);
        in_regs[p] = (bits || vec || (rq && !cls[p])) && !slow_border(k, oy, ox0 + p);
    }
    const __m256i K = _mm256_set1_epi64x(k->K);
    for (int q = 0; q < k->groups; q++) {
        __m256i s[AVX2_P][2];
        block_avx2(k, base, k->wq + (size_t)q * k->nsteps * 16, s, P);
#pragma GCC unroll 4
        for (int p = 0; p < P; p++) {
            if (in_regs[p] && rq) {
                bnn_epi_rq32_avx2(&k->e, s[p][0], s[p][1], q * 8, out_row + ox0 + p, out, skip);
                continue;
            }
            if (in_regs[p] && vec) {    /* y = K - 2 acc, less the border class's correction */
                const int64_t *c = k->corr + (size_t)cls[p] * nl + q * 8;
                __m256i y0 = _mm256_sub_epi64(_mm256_sub_epi64(K, _mm256_slli_epi64(s[p][0], 1)),
                                              _mm256_loadu_si256((const __m256i *)c));
                __m256i y1 = _mm256_sub_epi64(_mm256_sub_epi64(K, _mm256_slli_epi64(s[p][1], 1)),
                                              _mm256_loadu_si256((const __m256i *)(c + 4)));
                bnn_epi8_avx2(&k->e, y0, y1, q * 8, out_row + ox0 + p, out, skip);
                continue;
            }
            if (in_regs[p]) {       /* bit set iff acc >= athr, i.e. not athr > acc */
                const int64_t *t = k->athr + (size_t)cls[p] * nl + q * 8;
                __m256i lt0 = _mm256_cmpgt_epi64(_mm256_loadu_si256((const __m256i *)t), s[p][0]);
                __m256i lt1 = _mm256_cmpgt_epi64(_mm256_loadu_si256((const __m256i *)(t + 4)), s[p][1]);
                int below = _mm256_movemask_pd(_mm256_castsi256_pd(lt0)) |
                            _mm256_movemask_pd(_mm256_castsi256_pd(lt1)) << 4;
                ((uint8_t *)out)[(out_row + ox0 + p) * k->groups + q] = (uint8_t)~below;
                continue;
            }
            _mm256_storeu_si256((__m256i *)(y + p * nl + q * 8), s[p][0]);
            _mm256_storeu_si256((__m256i *)(y + p * nl + q * 8 + 4), s[p][1]);
        }
    }
    for (int p = 0; p < P; p++) {
        if (in_regs[p]) continue;
        int64_t *yp = y + p * nl;
        for (size_t c = 0; c < nl; c++) yp[c] = k->K - 2 * yp[c];
        border_fix(k, oy, ox0 + p, yp);
        bnn_epi_pixel(&k->e, yp, out_row + ox0 + p, out, skip);
    }
}

AVX2 static void row_avx2(const bnn_bconv *k, const uint8_t *planes, int oy, size_t out_row, void *out,
                          const int8_t *skip, int64_t *y) {
    int ox = 0;
#define BNN_STEP(p) pixels_avx2(k, planes, oy, ox, out_row, out, skip, y, p)
    for (; ox + AVX2_P <= k->g.out_w; ox += AVX2_P) BNN_STEP(AVX2_P);
    for (; ox + 2 <= k->g.out_w; ox += 2) BNN_STEP(2);
    for (; ox < k->g.out_w; ox++) BNN_STEP(1);
#undef BNN_STEP
}
#endif

#ifdef BNN_ARM
/* ---- NEON kernel ---------------------------------------------------------------
 * Data flow after Vorabbi et al.: XOR, vcnt (popcount of each byte), then
 * vpadal pairwise-adds the byte counts into 16-bit lanes, so one register
 * accumulates 8 partial sums instead of 2 and no widening is needed in the
 * inner loop. A u16 lane gains at most 16 per word: flushed into 32-bit lanes
 * every 2048 words (2048 * 16 = 32768 < 65536). Lanes: a group of 8 output
 * channels is 4 registers of 2 x 64-bit weight words; P pixels share each
 * weight load (P * 4 accumulators + 4 weights + 1 input of 32 registers).
 * The epilogue is the scalar one. */
enum { NEON_P = 4, NEON_FLUSH = 2048 };

/* words [j0, j1) of one row for np pixels (np == NEON_P: fully unrolled, all
 * 16 accumulators and 4 weights in registers) */
static inline __attribute__((always_inline)) void
words_neon(const bnn_bconv *k, const uint8_t *row, const uint64_t *w, size_t pstride, int j0, int j1,
           uint16x8_t a16[NEON_P][4], const int np, const int MASKED) {
    for (int j = j0; j < j1; j++) {
        uint8x16_t wv[4];
        /* masking in the vector domain: a dup from a general register costs more on A72 */
        const uint8x16_t m = vreinterpretq_u8_u64(vdupq_n_u64(MASKED ? word_mask(k, j) : ~(uint64_t)0));
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) wv[q] = vreinterpretq_u8_u64(vld1q_u64(w + 8 * j + 2 * q));
#pragma GCC unroll 4
        for (int p = 0; p < np; p++) {
            uint8x16_t a = vreinterpretq_u8_u64(vdupq_n_u64(load64(row + p * pstride + 8 * j)));
            if (MASKED) a = vandq_u8(a, m);
#pragma GCC unroll 4
            for (int q = 0; q < 4; q++) a16[p][q] = vpadalq_u8(a16[p][q], vcntq_u8(veorq_u8(a, wv[q])));
        }
    }
}

static void row_neon(const bnn_bconv *k, const uint8_t *buf, int oy, size_t out_row, void *out,
                     const int8_t *skip, int64_t *y /* scratch [NEON_P][groups*8] */) {
    const bnn_conv_geom *g = &k->g;
    const size_t pstride = (size_t)g->sw * k->cb, nl = (size_t)k->groups * 8;
    const int masked = k->last_mask != ~(uint64_t)0;
    for (int ox0 = 0; ox0 < g->out_w; ox0 += NEON_P) {
        int np = g->out_w - ox0 < NEON_P ? g->out_w - ox0 : NEON_P;
        const uint8_t *org = buf + (size_t)oy * g->sh * k->rs + (size_t)ox0 * pstride;
        for (int grp = 0; grp < k->groups; grp++) {
            uint16x8_t a16[NEON_P][4];
            uint32x4_t a32[NEON_P][4];
            for (int p = 0; p < NEON_P; p++)
                for (int q = 0; q < 4; q++) { a16[p][q] = vdupq_n_u16(0); a32[p][q] = vdupq_n_u32(0); }
            int pending = 0;
            for (int r = 0; r < k->nrows; r++) {
                const uint8_t *row = org + k->roff[r];
                const uint64_t *w = k->w + ((size_t)grp * k->nrows + r) * k->rw * 8;
                for (int j0 = 0; j0 < k->rw; j0 += NEON_FLUSH) {
                    int j1 = k->rw - j0 < NEON_FLUSH ? k->rw : j0 + NEON_FLUSH;
                    if (pending + (j1 - j0) > NEON_FLUSH) {       /* u16 lanes could overflow: widen */
                        for (int p = 0; p < NEON_P; p++)
                            for (int q = 0; q < 4; q++) {
                                a32[p][q] = vpadalq_u16(a32[p][q], a16[p][q]);
                                a16[p][q] = vdupq_n_u16(0);
                            }
                        pending = 0;
                    }
                    if (np == NEON_P && !masked) words_neon(k, row, w, pstride, j0, j1, a16, NEON_P, 0);
                    else if (np == NEON_P) words_neon(k, row, w, pstride, j0, j1, a16, NEON_P, 1);
                    else words_neon(k, row, w, pstride, j0, j1, a16, np, 1);
                    pending += j1 - j0;
                }
            }
            for (int p = 0; p < np; p++)
                for (int q = 0; q < 4; q++) {
                    uint64x2_t s = vpaddlq_u32(vpadalq_u16(a32[p][q], a16[p][q]));
                    y[p * nl + grp * 8 + 2 * q] = (int64_t)vgetq_lane_u64(s, 0);
                    y[p * nl + grp * 8 + 2 * q + 1] = (int64_t)vgetq_lane_u64(s, 1);
                }
        }
        for (int p = 0; p < np; p++) {
            int ox = ox0 + p;
            int64_t *yp = y + p * nl;
            for (size_t c = 0; c < nl; c++) yp[c] = k->K - 2 * yp[c];
            border_fix(k, oy, ox, yp);
            bnn_epi_pixel_neon(&k->e, yp, out_row + ox, out, skip);
        }
    }
}
#endif

/* ---- driver ----------------------------------------------------------------- */

/* Whether the kernel reads word planes (repack_planes) instead of padded rows. */
static inline int uses_planes(const bnn_bconv *k) {
    return (k->variant == BNN_VARIANT_AVX512 && k->lanes == 64) || k->variant == BNN_VARIANT_AVX2;
}

/* The work of one call. Called by each thread of a parallel region (the omp
 * for loops share the work out), or alone on the calling thread. Plane
 * kernels go band by band: build the band's planes, then its output rows.
 * The others pad every image, then do every output row. scratch: per thread,
 * 4 pixels of channel sums, then a padded row for the planes. */
static void bconv_work(const bnn_bconv *k, const uint8_t *in, void *out, const int8_t *skip, int n,
                       uint8_t *bufs, size_t buf_bytes, int64_t *scratch, size_t per_thread) {
    const bnn_conv_geom *g = &k->g;
    size_t img_bytes = (size_t)g->in_h * g->in_w * k->cb;
#ifdef _OPENMP
    int tid = omp_get_thread_num();
#else
    int tid = 0;
#endif
    int64_t *mine = scratch + (size_t)tid * per_thread;
    if (uses_planes(k)) {
        uint8_t *row = (uint8_t *)(mine + (size_t)k->groups * 8 * 4);
        for (int i = 0; i < n; i++)
            for (int r0 = 0; r0 < g->out_h; r0 += k->band) {
                const int r1 = g->out_h - r0 < k->band ? g->out_h : r0 + k->band;
                const int y0 = r0 * g->sh, y1 = (r1 - 1) * g->sh + (g->kh - 1) * g->dh + 1;
#pragma omp for schedule(static)
                for (int y = y0; y < y1; y++) {
                    pad_row(k, in + (size_t)i * img_bytes, row, y);
                    plane_row(k, row, (uint64_t *)(bufs + (size_t)(y - y0) * k->prb), y);
                }
#pragma omp for schedule(static)
                for (int oy = r0; oy < r1; oy++) {
                    const uint8_t *planes = bufs + (size_t)(oy * g->sh - y0) * k->prb;
                    size_t out_row = ((size_t)i * g->out_h + oy) * g->out_w;
#ifdef BNN_X86
                    if (k->variant == BNN_VARIANT_AVX512) row_avx512(k, planes, oy, out_row, out, skip);
                    else row_avx2(k, planes, oy, out_row, out, skip, mine);
#endif
                }
            }
        return;
    }
#pragma omp for schedule(static)
    for (int pr = 0; pr < n * k->hp; pr++)
        pad_row(k, in + (size_t)(pr / k->hp) * img_bytes, bufs + (size_t)(pr / k->hp) * buf_bytes +
                (size_t)(pr % k->hp) * k->rs, pr % k->hp);
#pragma omp for schedule(static)
    for (int ri = 0; ri < n * g->out_h; ri++) {
        int i = ri / g->out_h, oy = ri % g->out_h;
        const uint8_t *buf = bufs + (size_t)i * buf_bytes;
        size_t out_row = ((size_t)i * g->out_h + oy) * g->out_w;
#ifdef BNN_X86
        if (k->variant == BNN_VARIANT_AVX512) {
            if (k->lanes == 16) row_w16(k, buf, oy, out_row, out, skip);
            else row_d32(k, buf, oy, out_row, out, skip);
            continue;
        }
#endif
#ifdef BNN_ARM
        if (k->variant == BNN_VARIANT_NEON) { row_neon(k, buf, oy, out_row, out, skip, mine); continue; }
#endif
        row_scalar(k, buf, oy, out_row, out, skip, mine);
    }
}

int bnn_bconv_run(const bnn_bconv *k, const uint8_t *in, void *out, const int8_t *skip, int n, int threads) {
    /* planes: one band's rows; else every image's padded rows (rs is a multiple of 64) */
    const int planes = uses_planes(k);
    size_t band_rows = (size_t)(k->band - 1) * k->g.sh + (size_t)(k->g.kh - 1) * k->g.dh + 1;
    size_t buf_bytes = planes ? (band_rows * k->prb + 63) / 64 * 64 : (size_t)k->hp * k->rs;
    if (threads < 1) threads = 1;
    uint8_t *bufs = (uint8_t *)aligned_alloc(64, planes ? buf_bytes : (size_t)n * buf_bytes);
    /* up to 4 pixels of channel sums, then a padded row (rs: a multiple of 64) */
    size_t per_thread = (size_t)k->groups * 8 * 4 + (size_t)k->rs / 8;
    int64_t *scratch = (int64_t *)malloc(sizeof(int64_t) * per_thread * threads);
    if (!bufs || !scratch) { free(bufs); free(scratch); return -1; }
    if (threads > 1 && n * k->g.out_h > 1) {
#pragma omp parallel num_threads(threads)
        bconv_work(k, in, out, skip, n, bufs, buf_bytes, scratch, per_thread);
    } else {
        bconv_work(k, in, out, skip, n, bufs, buf_bytes, scratch, per_thread);
    }
    free(scratch);
    free(bufs);
    return 0;
}
