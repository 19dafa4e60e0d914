/* tm_conv1x1.c - the portable 1x1 conv: a row of interleaved pixels, general requantization
 * (tm_requant); with SIMD, four int8 lanes at a time (TM_DOT2). Contract in tm_runtime.h. */
#include "tm_runtime.h"

/* 1x1 conv of a row: width pixels of cin channels in `in`, cout channels to `out`. */
#if TM_USES(TM_K_POINT)
TM_PRIVATE void tm_point_row(const int8_t *in, int8_t *out, int width, int cin, int cout, const int8_t *weight,
                             const tm_requant *q)
{
    int o, x;
    for (o = 0; o < cout; o++) {
        const int8_t *w = weight + o * cin;
        tm_channel k = tm_channel_of(q, o);
        for (x = 0; x < width; x += 2) {
            int xb = x + 1 < width ? x + 1 : x;
            int32_t a = k.bias, b = k.bias;
            TM_DOT2(in + x * cin, in + xb * cin, w, cin, a, b);
            out[x * cout + o] = tm_output(a, &k);
            out[xb * cout + o] = tm_output(b, &k);
        }
    }
}
#endif
