/* tm_conv1x1_lanes.c - the SIMD 1x1 conv of a separable layer: the depthwise row's int16 lanes in
 * tm_mid (tm_mid_lane order) to int8 outputs, simple requantization, a 2 x 2 block (two output
 * channels of two pixels) per step. Contract and the routine's job layout in tm_runtime.h. */
#include "tm_runtime.h"

#if TM_SIMD
#if !TM_THUMB2 /* the specification of tm_point_pairs_m4 */
static void tm_point_pairs(tm_pair_job *job)
{
    const int16_t *pa = job->in;
    do {
        const int16_t *pb = pa + job->next / 2;
        const uint32_t *pw = job->w;
        int32_t aa = job->bias_a, ab = job->bias_a, ba = job->bias_b, bb = job->bias_b;
        for (; pw != job->w_end; pa += 4, pb += 4, pw += 4) {
            uint32_t a0 = tm_pack(pa[0], pa[1]), a1 = tm_pack(pa[2], pa[3]);
            uint32_t b0 = tm_pack(pb[0], pb[1]), b1 = tm_pack(pb[2], pb[3]);
            aa = tm_smlad(a1, pw[1], tm_smlad(a0, pw[0], aa));
            ab = tm_smlad(b1, pw[1], tm_smlad(b0, pw[0], ab));
            ba = tm_smlad(a1, pw[3], tm_smlad(a0, pw[2], ba));
            bb = tm_smlad(b1, pw[3], tm_smlad(b0, pw[2], bb));
        }
        pa += job->next / 2;
        job->out[0] = tm_simple(aa, job->multiplier_a, job->offset_a);
        job->out[job->ob] = tm_simple(ba, job->multiplier_b, job->offset_b);
        job->out[job->next_out] = tm_simple(ab, job->multiplier_a, job->offset_a);
        job->out[job->next_out + job->ob] = tm_simple(bb, job->multiplier_b, job->offset_b);
        job->out += job->out_step;
    } while (--job->pairs);
}
#endif

/* Two output channels at a time: their weights are split into int16 lanes (SXTB16) once per row,
 * on the stack: per 4 input channels the words (a even, a odd, b even, b odd), which pair with the
 * input words (c0, c2) and (c1, c3); then tm_point_pairs runs the row's pixel pairs. */
TM_PRIVATE void tm_point_row_simd(const int16_t *in, int8_t *out, int width, int cin, int cout, const int8_t *weight,
                                  const tm_requant *q)
{
    uint32_t w[TM_POINT_CIN];
    tm_pair_job job;
    int o, g, groups = cin / 4;
    job.w = w;
    job.w_end = w + 4 * groups;
    job.out_step = 2 * cout;
    for (o = 0; o < cout; o += 2) {
        int ob = o + 1 < cout ? o + 1 : o; /* an odd count computes the last channel twice */
        for (g = 0; g < groups; g++) {
            uint32_t va = tm_word(weight + o * cin + 4 * g), vb = tm_word(weight + ob * cin + 4 * g);
            w[4 * g] = tm_even(va), w[4 * g + 1] = tm_odd(va), w[4 * g + 2] = tm_even(vb), w[4 * g + 3] = tm_odd(vb);
        }
        job.ob = ob - o;
        job.bias_a = q->bias[o], job.bias_b = q->bias[ob];
        job.multiplier_a = q->multiplier[o], job.multiplier_b = q->multiplier[ob];
        job.offset_a = q->offset ? q->offset[o] : q->zero, job.offset_b = q->offset ? q->offset[ob] : q->zero;
        job.in = in, job.out = out + o, job.next = 2 * cin, job.next_out = cout, job.pairs = width / 2;
        if (job.pairs) {
            tm_point_pairs(&job);
        }
        if (width % 2) { /* the last pixel, computed twice */
            job.in = in + (width - 1) * cin, job.next = 0, job.next_out = 0, job.pairs = 1;
            tm_point_pairs(&job);
        }
    }
}
#endif
