/* tm_head.c - the head: global average pool (as an int32 sum) and a 1x1 conv to the classes, or a
 * linear layer on the whole map (two classes' dot products at a time, TM_DOT2: four int8 lanes a step
 * with SIMD); each class rescaled to one common score unit. Contract in tm_runtime.h. */
#include "tm_runtime.h"

/* A class's int32 sum rescaled to the common score unit. */
static int32_t tm_score(const tm_head *H, int k, int32_t acc)
{
    int64_t scaled = (int64_t)acc * H->multiplier[k] + ((int64_t)1 << (H->shift[k] - 1));
    return (int32_t)(scaled >> H->shift[k]);
}

#if TM_USES(TM_K_FC)
/* Two classes' dot products with the n values of the map (a function of its own: inlined, GCC's
 * bound analysis of the constant tables mistook the arena's size for the loop's). */
TM_NOINLINE static void tm_head_pair(const int8_t *a, const int8_t *b, const int8_t *x, int n, int32_t sums[2])
{
    int32_t sa = sums[0], sb = sums[1];
    TM_DOT2(a, b, x, n, sa, sb);
    sums[0] = sa;
    sums[1] = sb;
}
#endif

TM_PRIVATE void tm_run_head(const tm_head *H, int32_t scores[])
{
    int32_t sums[TM_HEAD_CHANNELS];
    int pixels = H->height * H->width, p, c, k;
#if TM_USES(TM_K_FC)
    if (H->spatial) {
        int n = pixels * H->channels;
        for (k = 0; k < H->classes; k += 2) {
            int l = k + 1 < H->classes ? k + 1 : k; /* an odd count computes the last class twice */
            int32_t acc[2];
            acc[0] = H->bias[k];
            acc[1] = H->bias[l];
            tm_head_pair(H->weight + k * n, H->weight + l * n, tm_arena, n, acc);
            scores[k] = tm_score(H, k, acc[0]);
            scores[l] = tm_score(H, l, acc[1]);
        }
        return;
    }
#endif
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
        for (c = 0; c < H->channels; c++) {
            acc += sums[c] * H->weight[k * H->channels + c];
        }
        scores[k] = tm_score(H, k, acc);
    }
}
