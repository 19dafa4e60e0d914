/* DSP primitives of the SIMD kernels, or their emulation in C. Included by tm_runtime.h. */
#ifndef TM_DSP_H
#define TM_DSP_H

/* ---- SIMD primitives -------------------------------------------------------------------------
 * With the Cortex-M4/M7/M33 DSP extension (TM_SIMD 1): four int8 or two int16 lanes per word.
 * -DTM_EMULATE_DSP gives the same operations in plain C, so that a host build runs the SIMD
 * kernels and is checked against the integer reference bit for bit.
 *   tm_word(p)         the four int8 at p (any alignment) as one word, p[0] in the low byte
 *   tm_put_word(p, v)  the reverse
 *   tm_pack(lo, hi)    two int16 values as the lanes of one word
 *   tm_even(x)         SXTB16:        int8 lanes 0 and 2 of x as two int16 lanes (lane 0 low)
 *   tm_odd(x)          SXTB16 ROR #8: int8 lanes 1 and 3
 *   tm_smlad(a, b, s)  SMLAD:  s + a.lo * b.lo + a.hi * b.hi
 *   tm_smmulr(a, b)    SMMULR: (a * b + 2^31) >> 32, the rounded high word of the 64-bit product
 *   tm_ssat8(x)        SSAT #8: x saturated to -128..127
 *   tm_max4(a, b)      SSUB8 then SEL: the larger of each pair of int8 lanes
 * Integer additions commute, so any order of SMLADs gives the portable kernels' sums exactly. */
#if TM_SIMD
TM_PRIM uint32_t tm_word(const int8_t *p)
{
    return (uint32_t)(uint8_t)p[0] | (uint32_t)(uint8_t)p[1] << 8 | (uint32_t)(uint8_t)p[2] << 16
         | (uint32_t)(uint8_t)p[3] << 24; /* one LDR on the Cortex-M4 (unaligned loads allowed) */
}
#if !TM_THUMB2_CONV3
TM_PRIM uint32_t tm_pack(int32_t lo, int32_t hi)
{
    return ((uint32_t)lo & 0xffffu) | (uint32_t)hi << 16;
}
#endif
TM_PRIM void tm_put_word(int8_t *p, uint32_t v) /* one STR on the Cortex-M4 (unaligned stores allowed) */
{
    p[0] = (int8_t)(v & 0xff);
    p[1] = (int8_t)(v >> 8 & 0xff);
    p[2] = (int8_t)(v >> 16 & 0xff);
    p[3] = (int8_t)(v >> 24);
}
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
TM_PRIM uint32_t tm_even(uint32_t x)
{
    uint32_t r;
    __asm__("sxtb16 %0, %1" : "=r"(r) : "r"(x));
    return r;
}
TM_PRIM uint32_t tm_odd(uint32_t x)
{
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
TM_PRIM int32_t tm_smlad(uint32_t a, uint32_t b, int32_t s)
{
    int32_t r;
    __asm__("smlad %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(s));
    return r;
}
#if !TM_THUMB2_CONV3 /* used by the C 3x3 kernel only */
TM_PRIM int32_t tm_smmulr(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
TM_PRIM int32_t tm_ssat8(int32_t x)
{
    int32_t r;
    __asm__("ssat %0, #8, %1" : "=r"(r) : "r"(x));
    return r;
}
#endif
TM_PRIM uint32_t tm_max4(uint32_t a, uint32_t b)
{
    uint32_t r;
    __asm__("ssub8 %0, %1, %2\n\tsel %0, %1, %2" : "=&r"(r) : "r"(a), "r"(b) : "cc");
    return r;
}
#else /* TM_EMULATE_DSP: the same results in C */
TM_PRIM int32_t tm_lo(uint32_t x)
{
    return (int32_t)(x & 0xffffu) - (int32_t)((x & 0x8000u) << 1);
}
TM_PRIM int32_t tm_hi(uint32_t x)
{
    return tm_lo(x >> 16);
}
TM_PRIM uint32_t tm_even(uint32_t x)
{
    return tm_pack((int8_t)(uint8_t)x, (int8_t)(uint8_t)(x >> 16));
}
TM_PRIM uint32_t tm_odd(uint32_t x)
{
    return tm_pack((int8_t)(uint8_t)(x >> 8), (int8_t)(uint8_t)(x >> 24));
}
TM_PRIM int32_t tm_smlad(uint32_t a, uint32_t b, int32_t s)
{
    return s + tm_lo(a) * tm_lo(b) + tm_hi(a) * tm_hi(b);
}
TM_PRIM int32_t tm_smmulr(int32_t a, int32_t b)
{
    return (int32_t)(((int64_t)a * b + 0x80000000u) >> 32);
}
TM_PRIM int32_t tm_ssat8(int32_t x)
{
    return x < -128 ? -128 : (x > 127 ? 127 : x);
}
TM_PRIM uint32_t tm_max4(uint32_t a, uint32_t b)
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
#endif

#endif /* TM_DSP_H */
