/* tm_conv3x3.c - the portable 3x3 conv kernels: one output row from three interleaved ring rows,
 * general requantization (tm_requant). With SIMD, the dense kernel's dot products take four int8
 * lanes at a time (TM_DOT2); the single-channel one is the fallback of the planar SIMD kernel.
 * Contracts in tm_runtime.h. */
#include "tm_runtime.h"

/* 3x3 conv with one input channel per output (depthwise, or a dense conv of a 1-channel input):
 * rows r0..r2 (padded, `stride` channels per pixel), output channel o reads input channel
 * o * step. A sliding window keeps two columns from one pixel to the next; the weights are read
 * from the table at each pixel (too many to keep in registers along with the window). */
#if TM_USES(TM_K_SINGLE3)
TM_PRIVATE void tm_conv3_single_row(const int8_t *r0, const int8_t *r1, const int8_t *r2, int8_t *out, int out_width,
                                    int stride, int channels, int step, const int8_t *weight, const tm_requant *q)
{
    int o, x;
    for (o = 0; o < channels; o++) {
        const int8_t *w = weight + o * 9;
        const int8_t *p0 = r0 + o * step, *p1 = r1 + o * step, *p2 = r2 + o * step;
        int32_t a0 = p0[0], b0 = p1[0], c0 = p2[0], a1 = p0[stride], b1 = p1[stride], c1 = p2[stride];
        tm_channel k = tm_channel_of(q, o);
        int8_t *dst = out + o;
        p0 += 2 * stride, p1 += 2 * stride, p2 += 2 * stride;
        for (x = 0; x < out_width; x++) {
            int32_t a2 = *p0, b2 = *p1, c2 = *p2;
            int32_t acc = k.bias + w[0] * a0 + w[1] * a1 + w[2] * a2 + w[3] * b0 + w[4] * b1 + w[5] * b2 + w[6] * c0
                        + w[7] * c1 + w[8] * c2;
            *dst = tm_output(acc, &k);
            dst += channels, p0 += stride, p1 += stride, p2 += stride;
            a0 = a1, a1 = a2, b0 = b1, b1 = b2, c0 = c1, c1 = c2;
        }
    }
}
#endif

#if TM_USES(TM_K_DENSE3)
/* Dense 3x3 conv: each output is three dot products of 3 x cin contiguous values. */
TM_PRIVATE void tm_conv3_dense_row(const int8_t *r0, const int8_t *r1, const int8_t *r2, int8_t *out, int out_width,
                                   int cin, int cout, const int8_t *weight, const tm_requant *q)
{
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
            out[x * cout + o] = tm_output(a, &k);
            out[xb * cout + o] = tm_output(b, &k);
        }
    }
}
#endif
