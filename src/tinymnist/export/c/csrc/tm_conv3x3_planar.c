/* tm_conv3x3_planar.c - the SIMD 3x3 conv with one input channel per output (the depthwise convs
 * and a first conv of a 1-channel image) on planar ring rows, simple requantization: two output
 * pixels per input word. Contract and the routine's job layout in tm_runtime.h. */
#include "tm_runtime.h"

#if TM_SIMD && TM_USES(TM_K_PLANAR3)
#if !TM_THUMB2_CONV3 /* the specification of tm_conv3_rows_m4 */
/* One kernel row's taps (ac = (w0, w2), middle weight b) for pixels x and x + 1 from the input
 * word at p, added to the two sums. */
static void tm_row_taps(const int8_t *p, uint32_t ac, int32_t b, int32_t *sa, int32_t *sb)
{
    uint32_t v = tm_word(p), e = tm_even(v), d = tm_odd(v);
    *sa = tm_smlad(e, ac, *sa) + (int16_t)(d & 0xffff) * b;
    *sb = tm_smlad(d, ac, *sb) + (int16_t)(e >> 16) * b;
}

static void tm_conv3_rows(tm_conv3_job *job)
{
    const int8_t *p = job->in, *w = job->w;
    int8_t *out = (int8_t *)job->out;
    uint32_t steps = job->steps;
    const int32_t *scale;
    for (scale = job->scale; scale != job->end; scale += 2, w += 9) {
        /* The words of the kernel rows in slots 0, 1, 2 (tm_runtime.h: SXTB16 gives ac, SXTB16
         * ROR #8 the middle weight in its bottom lane). */
        uint32_t w0 = tm_word(w + job->row0), w1 = tm_word(w + job->row1), w2 = tm_word(w + job->row2);
        int32_t b0 = (int16_t)(tm_odd(w0) & 0xffff), b1 = (int16_t)(tm_odd(w1) & 0xffff);
        int32_t b2 = (int16_t)(tm_odd(w2) & 0xffff), bias = scale[0], multiplier = scale[1];
        const int8_t *end = p + job->span;
        int8_t *o = out;
        for (; p != end; p += 2, o += 2 * job->stride) {
            int32_t sa = bias, sb = bias;
            tm_row_taps(p + TM_SLOT, tm_even(w1), b1, &sa, &sb);
            tm_row_taps(p + 2 * TM_SLOT, tm_even(w2), b2, &sa, &sb);
            tm_row_taps(p, tm_even(w0), b0, &sa, &sb);
            if (job->wide) {
                int16_t *o16 = (int16_t *)(void *)o;
                o16[0] = tm_simple(sa, multiplier, job->offset);
                o16[job->stride / 2] = tm_simple(sb, multiplier, job->offset);
            } else {
                o[0] = tm_simple(sa, multiplier, job->offset);
                o[job->stride] = tm_simple(sb, multiplier, job->offset);
            }
        }
        p += job->in_skip;
        out += (int8_t)(steps & 0xff);
        steps = steps >> 8 | steps << 24;
    }
}
#endif

/* Output steps between channels (tm_conv3_job.steps): int8 outputs lie side by side; the int16
 * lanes of tm_mid_lane order put channels 0, 1, 2, 3 at bytes 0, 4, 2, 6, then 8 ... */
#define TM_BYTE_STEPS 0x01010101u
#define TM_LANE_STEPS 0x0204fe04u /* +4, -2, +4, +2 */

/* One output row of a SIMD 3x3 layer: channels' planes in the ring (input row y - pad + k in the
 * slot tm_slot_index of it), output to `out` (int8, conv_out channels per pixel) or to tm_mid
 * (wide: int16 lanes, mid_channels per pixel). */
TM_PRIVATE void tm_conv3_row_simd(const tm_layer *L, int y, int plane, void *out, int out_width, int wide, int mid_channels)
{
    tm_conv3_job job;
    int first = tm_slot_index(y - L->padding); /* the slot of kernel row 0 */
    int row0 = first ? 9 - 3 * first : 0;      /* 3 x the kernel row in slot 0; slots 1, 2 hold the next ones */
    int span = (out_width + 1) & ~1;
    job.scale = L->conv_q.bias, job.end = L->conv_q.bias + 2 * L->conv_out, job.w = L->conv_weight;
    job.steps = wide ? TM_LANE_STEPS : TM_BYTE_STEPS;
    job.out = out, job.stride = wide ? 2 * mid_channels : L->conv_out, job.wide = wide;
    job.offset = L->conv_q.zero; /* job.multiplier: the routine's */
    job.row0 = row0, job.row1 = row0 == 6 ? 0 : row0 + 3, job.row2 = row0 == 0 ? 6 : row0 - 3;
    job.in = tm_ring, job.span = span, job.in_skip = (L->conv_depthwise ? plane : 0) - span;
    tm_conv3_rows(&job);
}
#endif
