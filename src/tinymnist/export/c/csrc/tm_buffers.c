/* tm_buffers.c - the runtime's static memory (sizes in tm_config.h, layout in tm_runtime.h) and
 * the image load that starts every inference. */
#include "tm_runtime.h"

TM_PRIVATE int8_t tm_arena[TM_ARENA_BYTES];
TM_PRIVATE int8_t tm_ring[TM_RING_BYTES];
TM_PRIVATE tm_mid_row tm_mid;

TM_PRIVATE void tm_load_image(const uint8_t image[784])
{
    int i;
    for (i = 0; i < 784; i++) {
        tm_arena[i] = (int8_t)(image[i] - 128);
    }
}
