/* The input: an MNIST image (uint8, 0 = background) as int8 at the start of the arena.
 * q = pixel - 128. */
#include "tm_runtime.h"

/* The image as int8 (pixel - 128) at the start of the arena. */
TM_FN void tm_load_image(const uint8_t image[784])
{
    int i;
    for (i = 0; i < 784; i++) {
        tm_arena[i] = (int8_t)(image[i] - 128);
    }
}
