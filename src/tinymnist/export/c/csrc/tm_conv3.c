/* 3x3 convs: the SIMD kernel's C specification (planar rows, one input channel per output) and
 * the portable kernels (one input channel per output; dense). */
#include "tm_runtime.h"

#if TM_SIMD && !TM_THUMB2_CONV3
/* Position of channel c in a pixel's int16 lanes in tm_mid: per four channels the order c0 c2 c1
 * c3, so that the words (c0, c2) and (c1, c3) pair with a weight word's SXTB16 even and odd lanes. */
TM_FN int tm_mid_lane(int c)
{
    return (c & ~3) | (c & 1) << 1 | (c >> 1 & 1);
}

/* One kernel row's taps (ac = (w0, w2), middle weight b) for pixels x and x + 1 from the input
 * word at p, added to the two sums. */
static void tm_row_taps(const int8_t *p, uint32_t ac, int32_t b, int32_t *sa, int32_t *sb)
{
    uint32_t v = tm_word(p), e = tm_even(v), d = tm_odd(v);
    *sa = tm_smlad(e, ac, *sa) + (int16_t)(d & 0xffff) * b;
    *sb = tm_smlad(d, ac, *sb) + (int16_t)(e >> 16) * b;
}

TM_FN void tm_conv3_rows(tm_conv3_job *job)
{
    for (; job->o < job->channels; job->o++) {
        const int8_t *w = job->w, *p = job->in;
        uint32_t ac0 = tm_pack(w[job->row0], w[job->row0 + 2]), ac1 = tm_pack(w[job->row1], w[job->row1 + 2]);
        uint32_t ac2 = tm_pack(w[job->row2], w[job->row2 + 2]);
        int32_t b0 = w[job->row0 + 1], b1 = w[job->row1 + 1], b2 = w[job->row2 + 1];
        int32_t bias = *job->bias++, multiplier = *job->multiplier++, offset = *job->offset;
        int at = job->wide ? 2 * tm_mid_lane(job->o) : job->o, n;
        int8_t *out = (int8_t *)job->out + at;
        job->offset = (const int32_t *)(const void *)((const char *)job->offset + job->offset_step);
        job->w += 9;
        job->in += job->plane_step;
        for (n = 0; n < job->pairs; n++, p += 2, out += 2 * job->stride) {
            int32_t sa = bias, sb = bias;
            tm_row_taps(p + TM_SLOT, ac1, b1, &sa, &sb);
            tm_row_taps(p + 2 * TM_SLOT, ac2, b2, &sa, &sb);
            tm_row_taps(p, ac0, b0, &sa, &sb);
            if (job->wide) {
                int16_t *o16 = (int16_t *)(void *)out;
                o16[0] = tm_simple(sa, multiplier, offset);
                o16[job->stride / 2] = tm_simple(sb, multiplier, offset);
            } else {
                out[0] = tm_simple(sa, multiplier, offset);
                out[job->stride] = tm_simple(sb, multiplier, offset);
            }
        }
    }
}
#endif

/* 3x3 conv with one input channel per output (depthwise, or a dense conv of a 1-channel input):
 * rows r0..r2 (padded, `stride` channels per pixel), output channel o reads input channel
 * o * step. A sliding window keeps two columns from one pixel to the next; the weights are read
 * from the table at each pixel (too many to keep in registers along with the window). */
TM_FN void tm_conv3_single_row(const int8_t *r0, const int8_t *r1, const int8_t *r2, int8_t *out, int out_width,
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

/* Dense 3x3 conv: each output is three dot products of 3 x cin contiguous values. */
TM_FN void tm_conv3_dense_row(const int8_t *r0, const int8_t *r1, const int8_t *r2, int8_t *out, int out_width,
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
