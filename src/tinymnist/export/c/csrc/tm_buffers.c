/* tm_buffers.c - the runtime's static memory (sizes in tm_config.h, layout in tm_runtime.h) and
 * the image load that starts every inference. */
#include "tm_runtime.h"

TM_PRIVATE int8_t tm_arena[TM_ARENA_BYTES];
TM_PRIVATE int8_t tm_ring[TM_RING_BYTES];
TM_PRIVATE tm_mid_row tm_mid;
#if TM_USES(TM_K_POOLED)
TM_PRIVATE int8_t tm_pool[TM_POOL_BYTES];
#endif

#if !TM_USES(TM_K_STEM) /* a model with a stem reads the image where the caller keeps it (tm_run_stem) */
#if TM_SIMD
/* Four pixels as int8 (pixel - 128 is pixel ^ 0x80 in each byte). */
static uint32_t tm_pixels(const uint8_t *p)
{
    return tm_word((const int8_t *)(const void *)p) ^ 0x80808080u;
}
#endif

TM_PRIVATE void tm_load_image(const uint8_t image[784])
{
    int i;
#if TM_INPUT_POOL
    for (i = 0; i < 14; i++) { /* output row i from image rows 2i and 2i + 1 */
        const uint8_t *a = image + 56 * i, *b = a + 28;
        int8_t *out = tm_arena + 14 * i;
        int x;
#if TM_SIMD
        for (x = 0; x < 28; x += 4, out += 2) { /* four pixels of both rows: two outputs */
            uint32_t v = tm_max4(tm_pixels(a + x), tm_pixels(b + x));
            v = tm_max4(v, v >> 8); /* bytes 0 and 2: the maxima of pixels 0, 1 and of 2, 3 */
            out[0] = (int8_t)(v & 0xff);
            out[1] = (int8_t)(v >> 16 & 0xff);
        }
#else
        for (x = 0; x < 28; x += 2) {
            uint8_t m = a[x] > a[x + 1] ? a[x] : a[x + 1], n = b[x] > b[x + 1] ? b[x] : b[x + 1];
            *out++ = (int8_t)((m > n ? m : n) - 128);
        }
#endif
    }
#else
    i = 0;
#if TM_SIMD
    for (; i < 784; i += 4) {
        tm_put_word(tm_arena + i, tm_pixels(image + i));
    }
#endif
    for (; i < 784; i++) {
        tm_arena[i] = (int8_t)(image[i] - 128);
    }
#endif
}
#endif
