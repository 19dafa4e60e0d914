/* tm_conv3x3.c - the portable 3x3 conv kernels: one output row from three ring rows (biased planar
 * for one input channel per output, interleaved for the dense kernel), general requantization
 * (tm_requant). With SIMD, the dense kernel's dot products take four int8 lanes at a time
 * (TM_DOT2); the single-channel one is the fallback of the planar SIMD kernel. Contracts in
 * tm_runtime.h. */
#include "tm_runtime.h"

/* 3x3 conv with one input channel per output (depthwise, or a dense conv of a 1-channel input):
 * rows r0..r2 (padded, `stride` channels per pixel), output channel o reads input channel
 * o * step. A sliding window keeps two columns from one pixel to the next; the weights are read
 * from the table at each pixel (too many to keep in registers along with the window). */
#if TM_USES(TM_K_SINGLE3)
#if !TM_THUMB1 /* the specification of tm_conv3_sums_m0 (tm_runtime.h) */
TM_NOINLINE static void tm_conv3_sums(const uint8_t *p0, const uint8_t *p1, const uint8_t *p2, const int8_t *w,
                                      int32_t bias, int32_t *sums, int n)
{
    int32_t w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6], w7 = w[7], w8 = w[8];
    int32_t start = bias - 128 * (w0 + w1 + w2 + w3 + w4 + w5 + w6 + w7 + w8);
    int32_t *end = sums + n;
    do {
        *sums++ = start + w0 * p0[0] + w1 * p0[1] + w2 * p0[2] + w3 * p1[0] + w4 * p1[1] + w5 * p1[2] + w6 * p2[0]
                + w7 * p2[1] + w8 * p2[2];
        p0++, p1++, p2++;
    } while (sums != end);
}
#endif

/* 3x3 conv with one input channel per output (depthwise, or a dense conv of a 1-channel input) on
 * biased planar rows: channel o reads plane o * step. One row of sums, then one row of outputs,
 * per channel. */
TM_PRIVATE void tm_conv3_single_row(const uint8_t *r0, const uint8_t *r1, const uint8_t *r2, int plane, int8_t *out,
                                    int out_width, int channels, int step, const int8_t *weight, const tm_requant *q)
{
    int32_t sums[TM_MAX_WIDTH];
    int o;
    for (o = 0; o < channels; o++) {
        int at = o * step * plane;
        tm_channel k = tm_channel_of(q, o);
        tm_conv3_sums(r0 + at, r1 + at, r2 + at, weight + 9 * o, k.bias, sums, out_width);
        tm_output_row(sums, out_width, out + o, channels, &k);
    }
}
#endif

#if TM_USES(TM_K_DENSE3)
/* Dense 3x3 conv: each output is three dot products of 3 x cin contiguous values. */
TM_PRIVATE void tm_conv3_dense_row(const int8_t *r0, const int8_t *r1, const int8_t *r2, int8_t *out, int out_width,
                                   int cin, int cout, const int8_t *weight, const tm_requant *q)
{
    int32_t sums[TM_MAX_WIDTH + 1];
    int o, x, n = 3 * cin;
    for (o = 0; o < cout; o++) {
        const int8_t *w = weight + o * 3 * n;
        tm_channel k = tm_channel_of(q, o);
        for (x = 0; x < out_width; x += 2) {
            int xb = x + 1 < out_width ? x + 1 : x; /* an odd width computes the last pixel twice */
            int32_t a = k.bias, b = k.bias;
            TM_DOT2(r0 + x * cin, r0 + xb * cin, w, n, a, b);
            TM_DOT2(r1 + x * cin, r1 + xb * cin, w + n, n, a, b);
            TM_DOT2(r2 + x * cin, r2 + xb * cin, w + 2 * n, n, a, b);
            sums[x] = a;
            sums[x + 1] = b;
        }
        tm_output_row(sums, out_width, out + o, cout, &k);
    }
}
#endif
