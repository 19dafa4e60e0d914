/* tm_conv1x1.c - the portable 1x1 conv: a row of interleaved pixels, general requantization
 * (tm_requant); with SIMD, four int8 lanes at a time (TM_DOT2); on Thumb-1 the dot products as a
 * routine (tm_point_sums_m0.c). Contract in tm_runtime.h. */
#include "tm_runtime.h"

#if TM_USES(TM_K_POINT)
#if !TM_THUMB1 /* the specification of tm_point_sums_m0 (tm_runtime.h) */
static void tm_point_sums(const int8_t *in, const int8_t *w, int cin, int width, int32_t *sums, int32_t bias)
{
    int x;
    for (x = 0; x < width; x += 2, in += 2 * cin) {
        const int8_t *b = x + 1 < width ? in + cin : in;
        int32_t sa = bias, sb = bias;
        TM_DOT2(in, b, w, cin, sa, sb);
        sums[x] = sa;
        sums[x + 1] = sb;
    }
}
#endif

/* 1x1 conv of a row: width pixels of cin channels in `in`, cout channels to `out`: per output
 * channel one row of sums, then one row of outputs. */
TM_PRIVATE void tm_point_row(const int8_t *in, int8_t *out, int width, int cin, int cout, const int8_t *weight,
                             const tm_requant *q)
{
    int32_t sums[TM_MAX_WIDTH + 1];
    int o;
    for (o = 0; o < cout; o++) {
        tm_channel k = tm_channel_of(q, o);
        tm_point_sums(in, weight + o * cin, cin, width, sums, k.bias);
        tm_output_row(sums, width, out + o, cout, &k);
    }
}
#endif
