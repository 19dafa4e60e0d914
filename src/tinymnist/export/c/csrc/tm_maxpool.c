/* tm_maxpool.c - 2x2 max-pool, stride 2, int8, in place. Contract in tm_runtime.h. */
#include "tm_runtime.h"

/* 2x2 max-pool, stride 2, in place (each output lies at or before the inputs still to be read);
 * with SIMD, four channels per word where the channel count allows. */
TM_PRIVATE void tm_maxpool(int height, int width, int channels)
{
    int oh = height / 2, ow = width / 2, y, x, c;
    for (y = 0; y < oh; y++) {
        for (x = 0; x < ow; x++) {
            const int8_t *p = tm_arena + ((2 * y) * width + 2 * x) * channels;
            int8_t *out = tm_arena + (y * ow + x) * channels;
            c = 0;
#if TM_SIMD
            for (; c + 4 <= channels; c += 4) {
                tm_put_word(out + c, tm_max4(tm_max4(tm_word(p + c), tm_word(p + channels + c)),
                                             tm_max4(tm_word(p + width * channels + c), tm_word(p + (width + 1) * channels + c))));
            }
#endif
            for (; c < channels; c++) {
                const int8_t *q = p + c;
                int8_t a = q[0] > q[channels] ? q[0] : q[channels];
                int8_t b = q[width * channels] > q[(width + 1) * channels] ? q[width * channels] : q[(width + 1) * channels];
                out[c] = a > b ? a : b;
            }
        }
    }
}
