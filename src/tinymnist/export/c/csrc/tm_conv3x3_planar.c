/* tm_conv3x3_planar.c - the SIMD 3x3 conv with one input channel per output (the depthwise convs
 * and a first conv of a 1-channel image) on planar ring rows, simple requantization: two output
 * pixels per input word. The layer's channels come as tm_conv3_channel records (weights packed in
 * words, the per-channel constants beside them). Contract and the routine's job layout in
 * tm_runtime.h. */
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
    const int8_t *p = job->in;
    int8_t *out = (int8_t *)job->out;
    uint32_t steps = job->steps;
    const tm_conv3_channel *ch;
    for (ch = job->channel; ch != job->end; ch++) {
        /* The weight words of the kernel rows in slots 0, 1, 2; the middle weights of slots 0 and
         * 1 both come from slot 0's word (its top byte is the next kernel row's). */
        uint32_t w0 = tm_word((const int8_t *)ch + job->row0), w1 = tm_word((const int8_t *)ch + job->row1);
        uint32_t w2 = tm_word((const int8_t *)ch + job->row2), b01 = tm_odd(w0);
        int32_t b0 = (int16_t)(b01 & 0xffff), b1 = (int16_t)(b01 >> 16), b2 = (int16_t)(tm_odd(w2) & 0xffff);
        const int8_t *end = p + job->span;
        int8_t *o = out;
        for (; p != end; p += 2, o += 2 * job->stride) {
            int32_t sa = ch->bias, sb = ch->bias;
            tm_row_taps(p + TM_SLOT, tm_even(w1), b1, &sa, &sb);
            tm_row_taps(p + 2 * TM_SLOT, tm_even(w2), b2, &sa, &sb);
            tm_row_taps(p, tm_even(w0), b0, &sa, &sb);
            if (job->wide) {
                int16_t *o16 = (int16_t *)(void *)o;
                o16[0] = tm_simple(sa, ch->multiplier, job->offset);
                o16[job->stride / 2] = tm_simple(sb, ch->multiplier, job->offset);
            } else {
                o[0] = tm_simple(sa, ch->multiplier, job->offset);
                o[job->stride] = tm_simple(sb, ch->multiplier, job->offset);
            }
        }
        p += job->in_skip;
        out += (int8_t)(steps & 0xff);
        steps = steps >> 8 | steps << 24;
    }
}
#endif

/* Byte steps between the outputs of channels o and o + 1 (tm_conv3_job.steps): int8 outputs are
 * next to each other; int16 lanes in tm_mid_lane order put channels 0..3 at bytes 0, 4, 2, 6. */
#define TM_BYTE_STEPS 0x01010101u
#define TM_LANE_STEPS 0x0204fe04u /* +4, -2, +4, +2 */

/* One output row of a SIMD 3x3 layer: channels' planes in the ring (input row y - pad + k in the
 * slot tm_slot_index of it), output to `out` (int8, conv_out channels per pixel) or to tm_mid
 * (wide: int16 lanes, mid_channels per pixel). */
TM_PRIVATE void tm_conv3_row_simd(const tm_layer *L, int y, int plane, void *out, int out_width, int wide, int mid_channels)
{
    const tm_conv3_channel *channels = L->conv_weight;
    tm_conv3_job job;
    int first = tm_slot_index(y - L->padding); /* the slot of kernel row 0 */
    int k0 = first ? 3 - first : 0;            /* the kernel row in slot 0; slots 1, 2 hold the next ones */
    int k1 = k0 == 2 ? 0 : k0 + 1, k2 = k1 == 2 ? 0 : k1 + 1;
    int span = (out_width + 1) & ~1;
    job.channel = channels, job.end = channels + L->conv_out;
    job.steps = wide ? TM_LANE_STEPS : TM_BYTE_STEPS;
    job.out = out, job.stride = wide ? 2 * mid_channels : L->conv_out, job.wide = wide;
    job.multiplier = 0, job.offset = L->conv_q.zero;
    job.row0 = (int32_t)offsetof(tm_conv3_channel, w) + 4 * k0;
    job.row1 = (int32_t)offsetof(tm_conv3_channel, w) + 4 * k1;
    job.row2 = (int32_t)offsetof(tm_conv3_channel, w) + 4 * k2;
    job.in = tm_ring, job.span = span, job.in_skip = (L->conv_depthwise ? plane : 0) - span;
    tm_conv3_rows(&job);
}
#endif
