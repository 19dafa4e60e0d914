/* tm_conv1x1_lanes.c - the SIMD 1x1 conv of a separable layer: the depthwise row's int16 lanes in
 * tm_mid (tm_mid_lane order) to int8 outputs, simple requantization, four output channels of one
 * pixel per step. Contract and the routine's job layout in tm_runtime.h. */
#include "tm_runtime.h"

#if TM_SIMD && TM_USES(TM_K_LANES)
#if !TM_THUMB2 /* the specification of tm_point_quads_m4 */
static void tm_point_quads(tm_quad_job *job)
{
    const int8_t *w = job->weight;
    const uint32_t *end = job->lanes + 2 * job->cin;
    const int16_t *in = job->in;
    uint32_t *lane = job->lanes;
    int k;
    for (; lane != end; w += 4) { /* per 4 input channels: (even, odd) of channel o, o+1, o+2, o+3 */
        for (k = 0; k < 4; k++) {
            uint32_t v = tm_word(w + k * job->cin);
            *lane++ = tm_even(v);
            *lane++ = tm_odd(v);
        }
    }
    do {
        const uint32_t *pw = job->lanes;
        int32_t sum[4];
        for (k = 0; k < 4; k++) {
            sum[k] = job->bias[k];
        }
        for (; pw != end; in += 4, pw += 8) {
            uint32_t e = tm_pack(in[0], in[1]), d = tm_pack(in[2], in[3]); /* (c0, c2), (c1, c3) */
            for (k = 0; k < 4; k++) {
                sum[k] = tm_smlad(d, pw[2 * k + 1], tm_smlad(e, pw[2 * k], sum[k]));
            }
        }
        for (k = 0; k < 4; k++) {
            job->out[k] = tm_simple(sum[k], job->scale[2 * k], job->scale[2 * k + 1]);
        }
        job->out += job->cout;
    } while (in != job->in_end);
}
#endif

/* Four output channels at a time; where cout is not a multiple of 4 the last four overlap the
 * ones before (those channels are computed twice, to the same values). */
TM_PRIVATE void tm_point_row_simd(const int16_t *in, int8_t *out, int width, int cin, int cout, const int8_t *weight,
                                  const tm_requant *q)
{
    tm_quad_job job;
    /* The tables in locals: the job's int32 stores could alias them, forcing reloads. */
    const int32_t *bias = q->bias, *multiplier = q->multiplier, *offset = q->offset ? q->offset : &q->zero;
    int o = 0, step = q->offset ? 1 : 0;
    job.in_end = in + width * cin;
    job.cout = cout;
    job.cin = cin;
    for (;;) {
        const int32_t *b = bias + o, *m = multiplier + o, *f = offset + o * step;
        job.bias[0] = b[0], job.bias[1] = b[1], job.bias[2] = b[2], job.bias[3] = b[3];
        job.scale[0] = m[0], job.scale[2] = m[1], job.scale[4] = m[2], job.scale[6] = m[3];
        job.scale[1] = f[0], job.scale[3] = f[step], job.scale[5] = f[2 * step], job.scale[7] = f[3 * step];
        job.in = in, job.out = out + o, job.weight = weight + o * cin;
        tm_point_quads(&job);
        if (o + 4 == cout) {
            return;
        }
        o = o + 8 <= cout ? o + 4 : cout - 4;
    }
}
#endif
