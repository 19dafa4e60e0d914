/* tm_rows.c - the ring of input rows: which slot holds a row, and copying an arena row into its
 * slot with the zero-point padding, interleaved (the dense 3x3 kernel, a lone 1x1 conv), planar
 * (the SIMD 3x3 kernel: one channel's pixels side by side, four per word) or planar offset by 128
 * (the portable single-channel 3x3 kernel). Contracts in tm_runtime.h. */
#include "tm_runtime.h"

/* The ring slot of input row r (r >= -3): r mod 3, without a division (Cortex-M0 has none). */
TM_PRIVATE int tm_slot_index(int r)
{
    int s = r + 3;
    while (s >= 3) {
        s -= 3;
    }
    return s;
}

TM_PRIVATE int8_t *tm_slot(int r)
{
    return tm_ring + tm_slot_index(r) * TM_SLOT;
}

#if TM_USES(TM_K_ROWS)
/* Copy input row r (-1 and height are padding) into its ring slot, padded left and right. */
static void tm_load_row(const tm_layer *L, int r, int padded_width)
{
    int8_t *slot = tm_slot(r);
    const int8_t *src = tm_arena + r * L->width * L->channels;
    int row_bytes = L->width * L->channels, pad_bytes = L->padding * L->channels, i;
    int8_t zero = L->zero;
    if (r < 0 || r >= L->height) {
        for (i = 0; i < padded_width * L->channels; i++) {
            slot[i] = zero;
        }
        return;
    }
    for (i = 0; i < pad_bytes; i++) {
        slot[i] = zero;
        slot[pad_bytes + row_bytes + i] = zero;
    }
    slot += pad_bytes;
    for (i = 0; i < row_bytes; i++) {
        slot[i] = src[i];
    }
}
#endif

#if TM_USES(TM_K_SINGLE3)
/* n bytes `stride` apart from s to d, each + 128 (as uint8). */
TM_NOINLINE static void tm_bias_bytes(const int8_t *s, uint8_t *d, int n, int stride)
{
    uint8_t *end = d + n;
    do {
        *d++ = (uint8_t)((uint8_t)*s + 128u);
        s += stride;
    } while (d != end);
}

/* The same row planar and offset by 128 (TM_ROWS_BIASED): channel c's padded row at
 * slot + c * padded_width, each byte q + 128. */
static void tm_load_biased_row(const tm_layer *L, int r, int padded_width)
{
    uint8_t *slot = (uint8_t *)tm_slot(r);
    int channels = L->channels, c;
    uint8_t zero = (uint8_t)(L->zero + 128);
    if (r < 0 || r >= L->height) { /* the zero point, stride 0 */
        tm_bias_bytes(&L->zero, slot, channels * padded_width, 0);
        return;
    }
    for (c = 0; c < channels; c++, slot += padded_width) {
        slot[0] = zero; /* the padding, or the first pixel until it is copied */
        slot[padded_width - 1] = zero;
        tm_bias_bytes(tm_arena + r * L->width * channels + c, slot + L->padding, L->width, channels);
    }
}
#endif

#if TM_SIMD && TM_USES(TM_K_PLANAR3)
#if !TM_THUMB2 /* the specification of tm_plane_blocks_m4 (tm_runtime.h) */
static void tm_plane_blocks(const int8_t *src, int8_t *dst, int channels, int plane, int blocks)
{
    for (; blocks > 0; blocks--, src += 4 * channels, dst += 4) {
        const int8_t *s = src;
        int8_t *d = dst;
        int c;
        for (c = 0; c < channels; c += 4, s += 4, d += 4 * plane) {
            uint32_t a = tm_word(s), b = tm_word(s + channels), g = tm_word(s + 2 * channels);
            uint32_t h = tm_word(s + 3 * channels);
            uint32_t ab02 = (a & 0x00ff00ffu) | (b & 0x00ff00ffu) << 8, ab13 = (a >> 8 & 0x00ff00ffu) | (b & 0xff00ff00u);
            uint32_t gh02 = (g & 0x00ff00ffu) | (h & 0x00ff00ffu) << 8, gh13 = (g >> 8 & 0x00ff00ffu) | (h & 0xff00ff00u);
            tm_put_word(d, (ab02 & 0xffffu) | gh02 << 16);
            tm_put_word(d + plane, (ab13 & 0xffffu) | gh13 << 16);
            tm_put_word(d + 2 * plane, ab02 >> 16 | (gh02 & 0xffff0000u));
            tm_put_word(d + 3 * plane, ab13 >> 16 | (gh13 & 0xffff0000u));
        }
    }
}
#endif

/* The same row, planar: channel c's padded row at slot + c * plane (the SIMD 3x3 kernel reads
 * four neighbouring pixels of one channel with one load). Bytes past the padded row are never
 * used in a stored result. */
static void tm_load_plane_row(const tm_layer *L, int r, int plane)
{
    int8_t *slot = tm_slot(r);
    const int8_t *src = tm_arena + r * L->width * L->channels;
    int channels = L->channels, width = L->width, pad = L->padding, c, x;
    int8_t zero = L->zero;
    if (r < 0 || r >= L->height) { /* a padding row: whole words (channels * plane is a multiple of 4) */
        uint32_t z = (uint8_t)zero * 0x01010101u;
        for (x = 0; x < channels * plane; x += 4) {
            tm_put_word(slot + x, z);
        }
        return;
    }
    for (c = 0; c < channels; c++) {
        if (pad) {
            slot[c * plane] = zero;
            slot[c * plane + width + 1] = zero;
        }
    }
    slot += pad;
    x = 0;
    if (channels % 4 == 0) {
        if (width >= 4) { /* four pixels of four channels at a time */
            tm_plane_blocks(src, slot, channels, plane, width / 4);
            x = width & ~3;
        }
        for (; x < width; x++) { /* the rest: one word of four channels to four planes */
            const int8_t *s = src + x * channels;
            int8_t *d = slot + x;
            for (c = 0; c < channels; c += 4, s += 4, d += 4 * plane) {
                uint32_t v = tm_word(s);
                d[0] = (int8_t)(v & 0xff);
                d[plane] = (int8_t)(v >> 8 & 0xff);
                d[2 * plane] = (int8_t)(v >> 16 & 0xff);
                d[3 * plane] = (int8_t)(v >> 24);
            }
        }
        return;
    }
    for (c = 0; c < channels; c++) {
        int8_t *d = slot + c * plane;
        const int8_t *s = src + c;
        for (x = 0; x < width; x++, s += channels) {
            d[x] = *s;
        }
    }
}
#endif

#if TM_USES(TM_K_PLANAR3)
/* Bytes per channel of a planar ring slot (SIMD 3x3 layers): the padded row, the two bytes the
 * last pixel pair's word reaches past it, rounded up to whole words. */
TM_PRIVATE int tm_plane_bytes(int padded_width)
{
    return (padded_width + 2 + 3) & ~3;
}
#endif

TM_PRIVATE void tm_fetch_row(const tm_layer *L, int r, int padded_width, int layout)
{
#if TM_SIMD && TM_USES(TM_K_PLANAR3)
    if (layout == TM_ROWS_PLANAR) {
        tm_load_plane_row(L, r, tm_plane_bytes(padded_width));
        return;
    }
#endif
#if TM_USES(TM_K_SINGLE3)
    if (layout == TM_ROWS_BIASED) {
        tm_load_biased_row(L, r, padded_width);
        return;
    }
#endif
#if TM_USES(TM_K_ROWS)
    tm_load_row(L, r, padded_width);
#endif
    (void)L, (void)r, (void)padded_width, (void)layout;
}
