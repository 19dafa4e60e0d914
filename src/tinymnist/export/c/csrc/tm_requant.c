/* tm_requant.c - requantization of an int32 accumulator to an int8 output, one output channel's
 * constants at a time (rules in tm_runtime.h: tm_requant, tm_channel). */
#include "tm_runtime.h"

#if TM_GENERAL_REQUANT
TM_PRIVATE tm_channel tm_channel_of(const tm_requant *q, int c)
{
    tm_channel k;
    int32_t offset = q->offset ? q->offset[c] : q->zero;
    k.bias = q->bias[c];
    k.multiplier = q->multiplier[c];
    k.shift = q->shift[c];
#if TM_MUL32
    k.m_low = (uint32_t)k.multiplier & 0xffffu;
    k.m_high = k.multiplier >> 16;
#endif
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

#if !TM_THUMB1 /* tm_output_row_m0 does the same */
#if TM_MUL32
/* (acc * multiplier + round) >> 32 from 16-bit halves, a = acc, m = multiplier:
 *   a = a1 * 2^16 + a0, m = m1 * 2^16 + m0 (a0, m0 in 0..2^16-1; a1, m1 in -2^15..2^15-1)
 *   a * m + round = a1 m1 2^32 + (a1 m0 + a0 m1) 2^16 + a0 m0 + r 2^16   (round = r 2^16, r 0 or 2^15)
 *   u = a1 m0 + (a0 m0 >> 16) + r     in -2^31 + 2^15 .. 2^31 - 1: no int32 overflow
 *   v = a0 m1 + (u & 0xffff)           in -2^31 + 2^15 .. 2^31 - 2^15
 *   result = a1 m1 + (u >> 16) + (v >> 16), exactly (each step splits off whole multiples of 2^16).
 * Four 32-bit multiplies (MULS) and a few shifts instead of a call to __aeabi_lmul. */
static TM_INLINE int32_t tm_high_word(int32_t acc, const tm_channel *k)
{
    uint32_t a0 = (uint32_t)acc & 0xffffu;
    int32_t a1 = acc >> 16;
    int32_t u = a1 * (int32_t)k->m_low + (int32_t)((a0 * k->m_low) >> 16) + (int32_t)(k->round >> 16);
    int32_t v = (int32_t)a0 * k->m_high + (u & 0xffff);
    return a1 * k->m_high + (u >> 16) + (v >> 16);
}
#else
static TM_INLINE int32_t tm_high_word(int32_t acc, const tm_channel *k) /* one SMULL where the core has it */
{
    return (int32_t)(((int64_t)acc * k->multiplier + k->round) >> 32);
}
#endif

TM_PRIVATE int8_t tm_output(int32_t acc, const tm_channel *k)
{
    int32_t v = (tm_high_word(acc, k) + k->addend) >> k->shift;
    v = v < k->low ? k->low : v;
    return (int8_t)(v > k->high ? k->high : v);
}

/* The specification of tm_output_row_m0. */
TM_PRIVATE void tm_output_row(const int32_t *sums, int n, int8_t *out, int stride, const tm_channel *k)
{
    const int32_t *end = sums + n;
    tm_channel c = *k; /* a copy: the stores through out could alias *k, forcing a reload per output */
    do {
        *out = tm_output(*sums++, &c);
        out += stride;
    } while (sums != end);
}
#endif
#endif
