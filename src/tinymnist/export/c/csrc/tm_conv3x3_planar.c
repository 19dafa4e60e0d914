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

/* One output row of a SIMD 3x3 layer: channels' planes in the ring (input row y - pad + k in the
 * slot tm_slot_index of it), output to `out` (int8, conv_out channels per pixel) or to tm_mid
 * (wide: int16 lanes, mid_channels per pixel). */
TM_PRIVATE void tm_conv3_row_simd(const tm_layer *L, int y, int plane, void *out, int out_width, int wide, int mid_channels)
{
    const tm_requant *q = &L->conv_q;
    tm_conv3_job job;
    int first = tm_slot_index(y - L->padding); /* the slot of kernel row 0 */
    job.w = L->conv_weight;
    job.row0 = 3 * tm_slot_index(-first), job.row1 = 3 * tm_slot_index(1 - first), job.row2 = 3 * tm_slot_index(2 - first);
    job.bias = q->bias, job.multiplier = q->multiplier;
    job.offset = q->offset ? q->offset : &q->zero, job.offset_step = q->offset ? 4 : 0;
    job.in = tm_ring, job.plane_step = L->conv_depthwise ? plane : 0;
    job.out = out, job.stride = wide ? 2 * mid_channels : L->conv_out, job.wide = wide;
    job.o = 0, job.channels = L->conv_out, job.pairs = (out_width + 1) / 2;
    tm_conv3_rows(&job);
}
#endif
