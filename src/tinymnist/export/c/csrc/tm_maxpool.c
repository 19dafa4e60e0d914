/* tm_maxpool.c - 2x2 max-pool, stride 2, int8: of two rows (the fused pool of tm_layer.c, and the
 * layer of its own), with SIMD four channels per word. Contracts in tm_runtime.h. */
#include "tm_runtime.h"

#if TM_USES(TM_K_MAXPOOL | TM_K_POOLED)
/* n channels of one output pixel: out[i] = max(a[i], a[i + step], b[i], b[i + step]). */
TM_NOINLINE static void tm_pool_bytes(const int8_t *a, const int8_t *b, int8_t *out, int n, int step)
{
    int8_t *end = out + n;
    do {
        int32_t m = *a, v = a[step];
        m = v > m ? v : m;
        v = *b;
        m = v > m ? v : m;
        v = b[step];
        *out++ = (int8_t)(v > m ? v : m);
        a++, b++;
    } while (out != end);
}

TM_PRIVATE void tm_pool_rows(const int8_t *a, const int8_t *b, int8_t *out, int width, int channels)
{
    const int8_t *end = a + (width & ~1) * channels;
    for (; a != end; a += 2 * channels, b += 2 * channels, out += channels) {
        int c = 0;
#if TM_SIMD
        for (; c + 4 <= channels; c += 4) {
            tm_put_word(out + c, tm_max4(tm_max4(tm_word(a + c), tm_word(a + channels + c)),
                                         tm_max4(tm_word(b + c), tm_word(b + channels + c))));
        }
        if (c < channels)
#endif
        {
            tm_pool_bytes(a + c, b + c, out + c, channels - c, channels);
        }
    }
}
#endif

#if TM_USES(TM_K_MAXPOOL)
/* In place: output row y lies at or before input row 2y, so each output is written after its
 * inputs are read. */
TM_PRIVATE void tm_maxpool(int height, int width, int channels)
{
    int y, row = width * channels;
    for (y = 0; y < height / 2; y++) {
        const int8_t *a = tm_arena + 2 * y * row;
        tm_pool_rows(a, a + row, tm_arena + y * (width / 2) * channels, width, channels);
    }
}
#endif
