/* tm_requant.c - requantization of an int32 accumulator to an int8 output, one output channel's
 * constants at a time (rules in tm_runtime.h: tm_requant, tm_channel). */
#include "tm_runtime.h"

TM_PRIVATE tm_channel tm_channel_of(const tm_requant *q, int c)
{
    tm_channel k;
    int32_t offset = q->offset ? q->offset[c] : q->zero;
    k.bias = q->bias[c];
    k.multiplier = q->multiplier[c];
    k.shift = q->shift[c];
    k.round = k.shift ? 0u : 0x80000000u;
    k.addend = k.shift ? ((int32_t)1 << (k.shift - 1)) + offset * ((int32_t)1 << k.shift) : offset;
    k.low = q->low;
    k.high = 127;
    if (q->relu_before && k.multiplier > 0) {
        k.low = offset > k.low ? offset : k.low;
    } else if (q->relu_before) {
        k.high = offset > k.low ? (offset < 127 ? offset : 127) : k.low;
    }
    return k;
}

TM_PRIVATE int8_t tm_output(int32_t acc, const tm_channel *k)
{
    int32_t v = ((int32_t)(((int64_t)acc * k->multiplier + k->round) >> 32) + k->addend) >> k->shift;
    v = v < k->low ? k->low : v;
    return (int8_t)(v > k->high ? k->high : v);
}
