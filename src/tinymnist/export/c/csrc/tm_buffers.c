/* The runtime's static buffers: the activation arena, the ring of three input rows, and one
 * depthwise output row (tm_runtime.h states their layouts; the generated model sets their sizes). */
#include "tm_runtime.h"

TM_BUFFER int8_t tm_arena[TM_ARENA_BYTES];
TM_BUFFER int8_t tm_ring[TM_RING_BYTES];
TM_BUFFER tm_mid_row tm_mid;
