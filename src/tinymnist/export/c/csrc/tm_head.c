/* tm_head.c - the head: global average pool (as an int32 sum) and a 1x1 conv to the classes, each
 * class rescaled to one common score unit. Contract in tm_runtime.h. */
#include "tm_runtime.h"

TM_PRIVATE void tm_run_head(const tm_head *H, int32_t scores[])
{
    int32_t sums[TM_HEAD_CHANNELS];
    int pixels = H->height * H->width, p, c, k;
    for (c = 0; c < H->channels; c++) {
        sums[c] = 0;
    }
    for (p = 0; p < pixels; p++) {
        for (c = 0; c < H->channels; c++) {
            sums[c] += tm_arena[p * H->channels + c];
        }
    }
    for (k = 0; k < H->classes; k++) {
        int32_t acc = H->bias[k];
        int64_t scaled;
        for (c = 0; c < H->channels; c++) {
            acc += sums[c] * H->weight[k * H->channels + c];
        }
        scaled = (int64_t)acc * H->multiplier[k] + ((int64_t)1 << (H->shift[k] - 1));
        scores[k] = (int32_t)(scaled >> H->shift[k]);
    }
}
