/* tm_stem.c - the stem: a dense 3x3 conv with stride 2 and padding 1 of the caller's image, the
 * network's first layer. It reads the image where the caller keeps it (no copy into the arena), so
 * it writes its output to the arena from the start, top-down, without an in-place order to keep.
 * Per output row y: image rows 2y - 1 .. 2y + 1, padded, in a ring of three (row 2y + 1 is the next
 * output row's first, so two rows are copied per output row); then per channel a row of sums and its
 * requantization. With SIMD, a row's three taps are one word load: SXTB16 splits q[2x..2x+3] into
 * (q[2x], q[2x+2]), which one SMLAD weighs with the outer taps, and (q[2x+1], q[2x+3]), whose low
 * half is the middle tap (the middle taps of rows 0 and 1 paired for another SMLAD); a channel with
 * simple requantization (tm_requant.simple) is requantized as its sums are made. Contract in
 * tm_runtime.h. */
#include "tm_runtime.h"

#if TM_USES(TM_K_STEM)
/* A padded row: the padding byte, the width's pixels, the padding, and room for the SIMD word loads.
 * int8 q = pixel - 128 (SIMD) or uint8 q + 128 = the pixel (portable); the padding holds the input
 * zero point. */
#define TM_STEM_ROW (TM_MAX_WIDTH + 4)

#if TM_SIMD
/* The sums of one channel over n outputs from rows r0, r1, r2 (2 bytes a step); with `out`, each is
 * requantized the simple way (saturate(offset + rounded high word of sum * m)) and stored at out,
 * out + stride, ..., else stored in sums. */
TM_NOINLINE static void tm_stem_sums(const int8_t *r0, const int8_t *r1, const int8_t *r2, const int8_t *w,
                                     int32_t start, int32_t *sums, int n, int8_t *out, int stride, int32_t m,
                                     int32_t offset)
{
    uint32_t a0 = tm_pack(w[0], w[2]), a1 = tm_pack(w[3], w[5]), a2 = tm_pack(w[6], w[8]);
    uint32_t b = tm_pack(w[1], w[4]);
    int32_t w7 = w[7];
    int x;
    for (x = 0; x < n; x++, r0 += 2, r1 += 2, r2 += 2) {
        uint32_t p0 = tm_word(r0), p1 = tm_word(r1), p2 = tm_word(r2);
        int32_t acc = tm_smlad(tm_even(p0), a0, start);
        acc = tm_smlad(tm_even(p1), a1, acc);
        acc = tm_smlad(tm_even(p2), a2, acc);
        acc = tm_smlad(tm_pack((int16_t)tm_odd(p0), (int16_t)tm_odd(p1)), b, acc);
        acc += w7 * (int16_t)tm_odd(p2);
        if (out) {
            out[x * stride] = (int8_t)tm_ssat8(offset + tm_smmulr(acc, m));
        } else {
            sums[x] = acc;
        }
    }
}
#endif

/* Image row `source` into ring slot `slot`, padded (a row outside the image: the padding only). */
static void tm_stem_row(const tm_layer *L, const uint8_t image[], int source, void *slot)
{
    int width = L->width, x;
#if TM_SIMD
    int8_t *row = (int8_t *)slot, pad = L->zero;
#else
    uint8_t *row = (uint8_t *)slot, pad = (uint8_t)(L->zero + 128);
#endif
    if (source < 0 || source >= L->height) {
        for (x = 0; x < TM_STEM_ROW; x++) {
            row[x] = pad;
        }
        return;
    }
    row[0] = pad;
    for (x = width + 1; x < TM_STEM_ROW; x++) {
        row[x] = pad;
    }
    image += source * width;
#if TM_SIMD
    for (x = 0; x + 4 <= width; x += 4) { /* q = pixel - 128 is pixel ^ 0x80 in each byte */
        tm_put_word(row + 1 + x, tm_word((const int8_t *)(const void *)(image + x)) ^ 0x80808080u);
    }
    for (; x < width; x++) {
        row[1 + x] = (int8_t)(image[x] - 128);
    }
#else
    for (x = 0; x < width; x++) {
        row[1 + x] = image[x];
    }
#endif
}

TM_PRIVATE void tm_run_stem(const tm_layer *L, const uint8_t image[])
{
#if TM_SIMD
    int8_t ring[3][TM_STEM_ROW];
#else
    uint8_t ring[3][TM_STEM_ROW];
#endif
    int32_t sums[TM_MAX_WIDTH];
    int channels = L->conv_out, out_height = (L->height + 1) / 2, out_width = (L->width + 1) / 2;
    int y, o;
    tm_stem_row(L, image, -1, ring[0]);
    for (y = 0; y < out_height; y++) {
        int s0 = (2 * y) % 3, s1 = (2 * y + 1) % 3, s2 = (2 * y + 2) % 3; /* slots of rows 2y - 1, 2y, 2y + 1 */
        int8_t *out = tm_arena + y * out_width * channels;
        tm_stem_row(L, image, 2 * y, ring[s1]);
        tm_stem_row(L, image, 2 * y + 1, ring[s2]);
        for (o = 0; o < channels; o++) {
            const int8_t *w = L->conv_weight + 9 * o;
#if TM_SIMD
            if (L->conv_q.simple) { /* sum of w * (q - zero): the folded bias holds - zero * sum(w) */
                int32_t offset = L->conv_q.offset ? L->conv_q.offset[o] : L->conv_q.zero;
                tm_stem_sums(ring[s0], ring[s1], ring[s2], w, L->conv_q.bias[o], sums, out_width, out + o, channels,
                             L->conv_q.multiplier[o], offset);
            } else {
                tm_channel k = tm_channel_of(&L->conv_q, o);
                tm_stem_sums(ring[s0], ring[s1], ring[s2], w, k.bias, sums, out_width, NULL, 0, 0, 0);
                tm_output_row(sums, out_width, out + o, channels, &k);
            }
#else
            /* the same with pixels, q + 128: 128 * sum(w) less */
            tm_channel k = tm_channel_of(&L->conv_q, o);
            int32_t start = k.bias - 128 * (w[0] + w[1] + w[2] + w[3] + w[4] + w[5] + w[6] + w[7] + w[8]);
            const uint8_t *p0 = ring[s0], *p1 = ring[s1], *p2 = ring[s2];
            int x;
            for (x = 0; x < out_width; x++, p0 += 2, p1 += 2, p2 += 2) {
                sums[x] = start + w[0] * p0[0] + w[1] * p0[1] + w[2] * p0[2] + w[3] * p1[0] + w[4] * p1[1]
                        + w[5] * p1[2] + w[6] * p2[0] + w[7] * p2[1] + w[8] * p2[2];
            }
            tm_output_row(sums, out_width, out + o, channels, &k);
#endif
        }
    }
}
#endif
