/* tm_dsp.h - SIMD primitives: the instructions of the Cortex-M4/M7/M33 DSP extension as C
 * functions, four int8 or two int16 lanes per word.
 *
 * TM_SIMD is 1 where the SIMD kernels are built: with the DSP extension (__ARM_FEATURE_DSP), or
 * with -DTM_EMULATE_DSP, which gives the same operations in plain C (tm_dsp_emulated.h) so that a
 * host build runs the SIMD kernels and is checked against the integer reference bit for bit.
 * TM_THUMB2 is 1 with the real instructions: the kernels' inner loops then run as the Thumb-2
 * routines of the *_m4.c files instead of their C specifications.
 * TM_THUMB1 is 1 on Thumb-1-only cores (ARMv6-M, e.g. Cortex-M0/M0+, and ARMv8-M Baseline): the
 * portable kernels' inner loops then run as the Thumb-1 routines of the *_m0.c files (GCC keeps
 * too few of their values in the 8 low registers). TM_MUL32 is 1 there too: the only multiply is
 * 32 x 32 -> 32 bits, so the requantization's 64-bit product is built from 16-bit halves
 * (tm_requant.c) instead of a call to the compiler's 64-bit multiply; -DTM_MUL32=1 builds that
 * path on any compiler, for its tests.
 *
 *   tm_word(p)         the four int8 at p (any alignment) as one word, p[0] in the low byte
 *   tm_put_word(p, v)  the reverse
 *   tm_pack(lo, hi)    two int16 values as the lanes of one word
 *   tm_even(x)         SXTB16:        int8 lanes 0 and 2 of x as two int16 lanes (lane 0 low)
 *   tm_odd(x)          SXTB16 ROR #8: int8 lanes 1 and 3
 *   tm_smlad(a, b, s)  SMLAD:  s + a.lo * b.lo + a.hi * b.hi
 *   tm_smmulr(a, b)    SMMULR: (a * b + 2^31) >> 32, the rounded high word of the 64-bit product
 *   tm_ssat8(x)        SSAT #8: x saturated to -128..127
 *   tm_max4(a, b)      SSUB8 then SEL: the larger of each pair of int8 lanes
 *   TM_DOT2            two pixels' dot products with one weight vector (SMLADs, or plain C)
 * Integer additions commute, so any order of SMLADs gives the portable kernels' sums exactly.
 */
#ifndef TM_DSP_H
#define TM_DSP_H

#include <stdint.h>

#include "tm_config.h"

#if (defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP) || defined(TM_EMULATE_DSP)
#define TM_SIMD 1
#else
#define TM_SIMD 0
#endif

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define TM_THUMB2 1
#else
#define TM_THUMB2 0
#endif

#if defined(__ARM_ARCH_ISA_THUMB) && __ARM_ARCH_ISA_THUMB == 1 && !defined(__ARM_ARCH_ISA_ARM)
#define TM_THUMB1 1
#else
#define TM_THUMB1 0
#endif

#ifndef TM_MUL32
#define TM_MUL32 TM_THUMB1
#endif

#if TM_SIMD
static TM_INLINE uint32_t tm_word(const int8_t *p)
{
    return (uint32_t)(uint8_t)p[0] | (uint32_t)(uint8_t)p[1] << 8 | (uint32_t)(uint8_t)p[2] << 16
         | (uint32_t)(uint8_t)p[3] << 24; /* one LDR on the Cortex-M4 (unaligned loads allowed) */
}

static TM_INLINE uint32_t tm_pack(int32_t lo, int32_t hi)
{
    return ((uint32_t)lo & 0xffffu) | (uint32_t)hi << 16;
}

static TM_INLINE void tm_put_word(int8_t *p, uint32_t v) /* one STR on the Cortex-M4 (unaligned stores allowed) */
{
    p[0] = (int8_t)(v & 0xff);
    p[1] = (int8_t)(v >> 8 & 0xff);
    p[2] = (int8_t)(v >> 16 & 0xff);
    p[3] = (int8_t)(v >> 24);
}
#endif

#if TM_THUMB2
static TM_INLINE uint32_t tm_even(uint32_t x)
{
    uint32_t r;
    __asm__("sxtb16 %0, %1" : "=r"(r) : "r"(x));
    return r;
}

static TM_INLINE uint32_t tm_odd(uint32_t x)
{
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}

static TM_INLINE int32_t tm_smlad(uint32_t a, uint32_t b, int32_t s)
{
    int32_t r;
    __asm__("smlad %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(s));
    return r;
}

static TM_INLINE int32_t tm_smmulr(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

static TM_INLINE int32_t tm_ssat8(int32_t x)
{
    int32_t r;
    __asm__("ssat %0, #8, %1" : "=r"(r) : "r"(x));
    return r;
}

static TM_INLINE uint32_t tm_max4(uint32_t a, uint32_t b)
{
    uint32_t r;
    __asm__("ssub8 %0, %1, %2\n\tsel %0, %1, %2" : "=&r"(r) : "r"(a), "r"(b) : "cc");
    return r;
}
#endif

#include "tm_dsp_emulated.h"

/* Two pixels' dot products with one weight vector, four int8 lanes at a time with SIMD: the two
 * running sums stay in registers. A macro rather than a function so that the sums are plain
 * locals of the caller (a function would pass them through memory). */
#if TM_SIMD
#define TM_DOT2(a, b, w, n, sa, sb)                                                                   \
    do {                                                                                              \
        int i_ = 0;                                                                                   \
        for (; i_ + 4 <= (n); i_ += 4) {                                                              \
            uint32_t wv_ = tm_word((w) + i_), av_ = tm_word((a) + i_), bv_ = tm_word((b) + i_);        \
            uint32_t w02_ = tm_even(wv_), w13_ = tm_odd(wv_);                                         \
            sa = tm_smlad(tm_even(av_), w02_, tm_smlad(tm_odd(av_), w13_, sa));                       \
            sb = tm_smlad(tm_even(bv_), w02_, tm_smlad(tm_odd(bv_), w13_, sb));                       \
        }                                                                                             \
        for (; i_ < (n); i_++) {                                                                      \
            sa += (int32_t)(a)[i_] * (w)[i_];                                                         \
            sb += (int32_t)(b)[i_] * (w)[i_];                                                         \
        }                                                                                             \
    } while (0)
#else
#define TM_DOT2(a, b, w, n, sa, sb)                                                                   \
    do {                                                                                              \
        int i_;                                                                                       \
        for (i_ = 0; i_ < (n); i_++) {                                                                \
            sa += (int32_t)(a)[i_] * (w)[i_];                                                         \
            sb += (int32_t)(b)[i_] * (w)[i_];                                                         \
        }                                                                                             \
    } while (0)
#endif

#endif /* TM_DSP_H */
