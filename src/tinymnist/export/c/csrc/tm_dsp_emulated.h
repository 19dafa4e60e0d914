/* tm_dsp_emulated.h - the DSP primitives of tm_dsp.h in plain C (-DTM_EMULATE_DSP without the DSP
 * extension): the same integer results as the instructions, so that a host build runs the SIMD
 * kernels and the C specifications of the Thumb-2 routines. Included by tm_dsp.h only. */
#ifndef TM_DSP_EMULATED_H
#define TM_DSP_EMULATED_H

#include <stdint.h>

#if TM_SIMD && !TM_THUMB2
static TM_INLINE int32_t tm_lo(uint32_t x) /* the low int16 lane, sign-extended */
{
    return (int32_t)(x & 0xffffu) - (int32_t)((x & 0x8000u) << 1);
}

static TM_INLINE int32_t tm_hi(uint32_t x)
{
    return tm_lo(x >> 16);
}

static TM_INLINE uint32_t tm_even(uint32_t x)
{
    return tm_pack((int8_t)(uint8_t)x, (int8_t)(uint8_t)(x >> 16));
}

static TM_INLINE uint32_t tm_odd(uint32_t x)
{
    return tm_pack((int8_t)(uint8_t)(x >> 8), (int8_t)(uint8_t)(x >> 24));
}

static TM_INLINE int32_t tm_smlad(uint32_t a, uint32_t b, int32_t s)
{
    return s + tm_lo(a) * tm_lo(b) + tm_hi(a) * tm_hi(b);
}

static TM_INLINE int32_t tm_smmulr(int32_t a, int32_t b)
{
    return (int32_t)(((int64_t)a * b + 0x80000000u) >> 32);
}

static TM_INLINE int32_t tm_ssat8(int32_t x)
{
    return x < -128 ? -128 : (x > 127 ? 127 : x);
}

static TM_INLINE uint32_t tm_max4(uint32_t a, uint32_t b)
{
    uint32_t r = 0;
    int i;
    for (i = 0; i < 32; i += 8) {
        int8_t x = (int8_t)(a >> i & 0xff), y = (int8_t)(b >> i & 0xff);
        r |= (uint32_t)(uint8_t)(x > y ? x : y) << i;
    }
    return r;
}
#endif

#endif /* TM_DSP_EMULATED_H */
