/* transpose (bnn_transpose.h): int8 and bit tensors, pixels <-> channels.
 *
 * Both work on byte tiles of 16 rows. Interleaving row i with row i + 8
 * byte by byte (unpacklo/unpackhi, zip1/zip2), for i < 8, moves the byte at
 * (row r, column c) of a 16x16 tile to the position whose 8-bit index
 * (r3 r2 r1 r0 c3 c2 c1 c0) is the old one rotated left by one; four such
 * rounds swap the row and column nibbles: the tile is transposed. The
 * instructions work within 128-bit lanes, so one round on 256-bit (AVX2) or
 * 512-bit (AVX-512) rows transposes 2 or 4 tiles side by side. Edge tiles go
 * through a zero-padded 16x16 copy.
 *
 * Bits: the packed bytes [p][ceil(c/8)] are transposed as bytes, 16 pixels x
 * 16 bytes at a time; byte row j of the result holds channels 8j..8j+7 of 16
 * pixels, and its bit b across the 16 bytes (one movemask after a shift) is
 * two output bytes of channel 8j + b. */
#include "bnn_transpose.h"

/* a 16-row x W-column byte tile at src (row stride ss) -> W rows x 16 at dst (row stride ds) */
typedef void (*tile_fn)(const uint8_t *src, size_t ss, uint8_t *dst, size_t ds);
/* bit b of 16 bytes -> 16 bits (byte k's bit is bit k) */
typedef uint32_t (*bitrow_fn)(const uint8_t *bytes, int b);

static void tile16_scalar(const uint8_t *src, size_t ss, uint8_t *dst, size_t ds) {
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 16; c++) dst[(size_t)c * ds + r] = src[(size_t)r * ss + c];
}

static uint32_t bitrow_scalar(const uint8_t *bytes, int b) {
    uint32_t m = 0;
    for (int k = 0; k < 16; k++) m |= (uint32_t)((bytes[k] >> b) & 1) << k;
    return m;
}

#define TILE_ROUNDS(V, LO, HI)                                      \
    do {                                                            \
        V t_[16];                                                   \
        for (int rd = 0; rd < 4; rd++) {                            \
            for (int i = 0; i < 8; i++) {                           \
                t_[2 * i] = LO(r[i], r[i + 8]);                     \
                t_[2 * i + 1] = HI(r[i], r[i + 8]);                 \
            }                                                       \
            for (int i = 0; i < 16; i++) r[i] = t_[i];              \
        }                                                           \
    } while (0)

#ifdef BNN_X86
/* SSE2, the x86-64 base: the 16-wide tile both x86 variants use at the edges */
static void tile16_sse(const uint8_t *src, size_t ss, uint8_t *dst, size_t ds) {
    __m128i r[16];
    for (int i = 0; i < 16; i++) r[i] = _mm_loadu_si128((const __m128i *)(src + (size_t)i * ss));
    TILE_ROUNDS(__m128i, _mm_unpacklo_epi8, _mm_unpackhi_epi8);
    for (int i = 0; i < 16; i++) _mm_storeu_si128((__m128i *)(dst + (size_t)i * ds), r[i]);
}

static uint32_t bitrow_sse(const uint8_t *bytes, int b) {
    /* shifting 16-bit lanes left by 7 - b brings bit b of every byte to its
     * top bit (the low byte's bits never cross into the high byte's top) */
    __m128i v = _mm_loadu_si128((const __m128i *)bytes);
    return (uint32_t)_mm_movemask_epi8(_mm_sll_epi16(v, _mm_cvtsi32_si128(7 - b)));
}

BNN_AVX2 static void tile32_avx2(const uint8_t *src, size_t ss, uint8_t *dst, size_t ds) {
    __m256i r[16];
    for (int i = 0; i < 16; i++) r[i] = _mm256_loadu_si256((const __m256i *)(src + (size_t)i * ss));
    TILE_ROUNDS(__m256i, _mm256_unpacklo_epi8, _mm256_unpackhi_epi8);
    for (int i = 0; i < 16; i++) {
        _mm_storeu_si128((__m128i *)(dst + (size_t)i * ds), _mm256_castsi256_si128(r[i]));
        _mm_storeu_si128((__m128i *)(dst + (size_t)(16 + i) * ds), _mm256_extracti128_si256(r[i], 1));
    }
}

BNN_AVX512_BASE static void tile64_avx512(const uint8_t *src, size_t ss, uint8_t *dst, size_t ds) {
    __m512i r[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_si512(src + (size_t)i * ss);
    TILE_ROUNDS(__m512i, _mm512_unpacklo_epi8, _mm512_unpackhi_epi8);
    for (int i = 0; i < 16; i++) {
        _mm_storeu_si128((__m128i *)(dst + (size_t)i * ds), _mm512_extracti32x4_epi32(r[i], 0));
        _mm_storeu_si128((__m128i *)(dst + (size_t)(16 + i) * ds), _mm512_extracti32x4_epi32(r[i], 1));
        _mm_storeu_si128((__m128i *)(dst + (size_t)(32 + i) * ds), _mm512_extracti32x4_epi32(r[i], 2));
        _mm_storeu_si128((__m128i *)(dst + (size_t)(48 + i) * ds), _mm512_extracti32x4_epi32(r[i], 3));
    }
}
#endif

#ifdef BNN_ARM
static void tile16_neon(const uint8_t *src, size_t ss, uint8_t *dst, size_t ds) {
    uint8x16_t r[16];
    for (int i = 0; i < 16; i++) r[i] = vld1q_u8(src + (size_t)i * ss);
    TILE_ROUNDS(uint8x16_t, vzip1q_u8, vzip2q_u8);
    for (int i = 0; i < 16; i++) vst1q_u8(dst + (size_t)i * ds, r[i]);
}

static uint32_t bitrow_neon(const uint8_t *bytes, int b) {
    static const uint8_t w[8] = {1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x8_t wv = vld1_u8(w);
    uint8x16_t set = vtstq_u8(vld1q_u8(bytes), vdupq_n_u8((uint8_t)(1u << b)));
    return (uint32_t)vaddv_u8(vand_u8(vget_low_u8(set), wv)) |
           (uint32_t)vaddv_u8(vand_u8(vget_high_u8(set), wv)) << 8;
}
#endif

typedef struct {
    tile_fn wide;           /* W-column tiles (NULL: only 16) */
    int32_t width;
    tile_fn tile16;
    bitrow_fn bitrow;
} kit;

static kit kit_of(int variant) {
    kit k = {NULL, 16, tile16_scalar, bitrow_scalar};
#ifdef BNN_X86
    if (variant == BNN_VARIANT_AVX512) k = (kit){tile64_avx512, 64, tile16_sse, bitrow_sse};
    if (variant == BNN_VARIANT_AVX2) k = (kit){tile32_avx2, 32, tile16_sse, bitrow_sse};
#endif
#ifdef BNN_ARM
    if (variant == BNN_VARIANT_NEON) k = (kit){NULL, 16, tile16_neon, bitrow_neon};
#endif
    (void)variant;
    return k;
}

static inline int32_t min32(int32_t a, int32_t b) { return a < b ? a : b; }

/* rows x cols (<= 16 each) of src -> their transpose at dst, through a zero-padded tile */
static void edge_tile(const kit *k, const uint8_t *src, size_t ss, int32_t rows, int32_t cols, uint8_t *dst,
                      size_t ds) {
    uint8_t a[256] = {0}, b[256];
    for (int32_t r = 0; r < rows; r++) memcpy(a + 16 * r, src + (size_t)r * ss, (size_t)cols);
    k->tile16(a, 16, b, 16);
    for (int32_t c = 0; c < cols; c++) memcpy(dst + (size_t)c * ds, b + 16 * c, (size_t)rows);
}

static void bytes_image(const kit *k, const uint8_t *in, uint8_t *out, int32_t p, int32_t c) {
    for (int32_t r0 = 0; r0 < p; r0 += 16) {
        int32_t rows = min32(16, p - r0), c0 = 0;
        const uint8_t *src = in + (size_t)r0 * c;
        uint8_t *dst = out + r0;
        if (rows == 16) {
            if (k->wide)
                for (; c0 + k->width <= c; c0 += k->width) k->wide(src + c0, (size_t)c, dst + (size_t)c0 * p, (size_t)p);
            for (; c0 + 16 <= c; c0 += 16) k->tile16(src + c0, (size_t)c, dst + (size_t)c0 * p, (size_t)p);
        }
        for (; c0 < c; c0 += 16)
            edge_tile(k, src + c0, (size_t)c, rows, min32(16, c - c0), dst + (size_t)c0 * p, (size_t)p);
    }
}

static void bits_image(const kit *k, const uint8_t *in, uint8_t *out, int32_t p, int32_t c) {
    int32_t cb = (c + 7) / 8, pb = (p + 7) / 8;
    uint8_t t[256];     /* t[16 j + r]: byte j0 + j of pixel r0 + r */
    for (int32_t r0 = 0; r0 < p; r0 += 16) {
        int32_t rows = min32(16, p - r0), nbytes = (rows + 7) / 8;
        for (int32_t j0 = 0; j0 < cb; j0 += 16) {
            int32_t cols = min32(16, cb - j0);
            const uint8_t *src = in + (size_t)r0 * cb + j0;
            if (rows == 16 && cols == 16) k->tile16(src, (size_t)cb, t, 16);
            else {  /* padded pixels give 0 bits */
                memset(t, 0, sizeof t);
                edge_tile(k, src, (size_t)cb, rows, cols, t, 16);
            }
            for (int32_t j = 0; j < cols; j++)
                for (int b = 0; b < 8; b++) {
                    int32_t ch = 8 * (j0 + j) + b;
                    if (ch >= c) break;
                    uint32_t m = k->bitrow(t + 16 * j, b);
                    uint8_t *o = out + (size_t)ch * pb + r0 / 8;
                    o[0] = (uint8_t)m;
                    if (nbytes > 1) o[1] = (uint8_t)(m >> 8);
                }
        }
    }
}

void bnn_transpose_int8(const int8_t *in, int8_t *out, int n, int32_t p, int32_t c, int threads, int variant) {
    kit k = kit_of(variant);
    size_t image = (size_t)p * c;
    BNN_PARALLEL_FOR(threads > 1 && n > 1 && image * n > (1 << 16),
        for (int i = 0; i < n; i++)
            bytes_image(&k, (const uint8_t *)in + i * image, (uint8_t *)out + i * image, p, c););
}

void bnn_transpose_bits(const uint8_t *in, uint8_t *out, int n, int32_t p, int32_t c, int threads,
                        int variant) {
    kit k = kit_of(variant);
    size_t in_image = (size_t)p * ((c + 7) / 8), out_image = (size_t)c * ((p + 7) / 8);
    BNN_PARALLEL_FOR(threads > 1 && n > 1 && in_image * n > (1 << 14),
        for (int i = 0; i < n; i++) bits_image(&k, in + i * in_image, out + i * out_image, p, c););
}
