/* tm_head.c - the head: global average pool (as an int32 sum) and a 1x1 conv to the classes, or a
 * linear layer on the whole map (two classes' dot products at a time, TM_DOT2: four int8 lanes a step
 * with SIMD; or 4-bit weights, eight a word); each class rescaled to one common score unit. Contract
 * in tm_runtime.h. */
#include "tm_runtime.h"

/* A class's int32 sum rescaled to the common score unit. */
static int32_t tm_score(const tm_head *H, int k, int32_t acc)
{
    int64_t scaled = (int64_t)acc * H->multiplier[k] + ((int64_t)1 << (H->shift[k] - 1));
    return (int32_t)(scaled >> H->shift[k]);
}

#if TM_USES(TM_K_FC)
/* Two classes' dot products with the n values of the map (a function of its own: inlined, GCC's
 * bound analysis of the constant tables mistook the arena's size for the loop's). */
TM_NOINLINE static void tm_head_pair(const int8_t *a, const int8_t *b, const int8_t *x, int n, int32_t sums[2])
{
    int32_t sa = sums[0], sb = sums[1];
    TM_DOT2(a, b, x, n, sa, sb);
    sums[0] = sa;
    sums[1] = sb;
}
#endif

#if TM_USES(TM_K_FC4)
/* A 4-bit weight from its nibble (0..15), two's complement. */
static TM_INLINE int32_t tm_nibble(uint32_t v)
{
    return (int32_t)(v & 7u) - (int32_t)(v & 8u);
}

/* The dot products of one block of two packed rows (its first n <= 8 weights) with x: plain C, the
 * portable kernel for every block and the SIMD one for a last block that is not whole. */
static void tm_head_tail4(const int8_t *a, const int8_t *b, const int8_t *x, int n, int32_t sums[2])
{
    int j;
    for (j = 0; j < n; j++) {
        int byte = j & 3, shift = j < 4 ? 0 : 4;
        sums[0] += tm_nibble((uint32_t)(uint8_t)a[byte] >> shift) * x[j];
        sums[1] += tm_nibble((uint32_t)(uint8_t)b[byte] >> shift) * x[j];
    }
}

/* Two classes' dot products with the n values of the map, their weights packed (tm_head.packed). With
 * SIMD, a block of 8 is one word of weights and two of x: the high nibbles masked in place are 16 times
 * weights 4..7 in byte lanes, the low ones shifted up are 16 times weights 0..3, and SXTB16 (tm_even,
 * tm_odd) spreads each into int16 lanes matching x's; the sums, 16 times the true ones, are divided
 * exactly at the end. */
TM_NOINLINE static void tm_head_pair4(const int8_t *a, const int8_t *b, const int8_t *x, int n, int32_t sums[2])
{
    int blocks = n / 8, i;
#if TM_SIMD
    int32_t sa = 0, sb = 0;
    for (i = 0; i < blocks; i++) {
        uint32_t x0 = tm_word(x + 8 * i), x1 = tm_word(x + 8 * i + 4);
        uint32_t x0e = tm_even(x0), x0o = tm_odd(x0), x1e = tm_even(x1), x1o = tm_odd(x1);
        uint32_t wa = tm_word(a + 4 * i), wb = tm_word(b + 4 * i);
        uint32_t ha = wa & 0xf0f0f0f0u, la = (wa << 4) & 0xf0f0f0f0u;
        uint32_t hb = wb & 0xf0f0f0f0u, lb = (wb << 4) & 0xf0f0f0f0u;
        sa = tm_smlad(tm_even(la), x0e, tm_smlad(tm_odd(la), x0o, sa));
        sa = tm_smlad(tm_even(ha), x1e, tm_smlad(tm_odd(ha), x1o, sa));
        sb = tm_smlad(tm_even(lb), x0e, tm_smlad(tm_odd(lb), x0o, sb));
        sb = tm_smlad(tm_even(hb), x1e, tm_smlad(tm_odd(hb), x1o, sb));
    }
    sums[0] += sa / 16;
    sums[1] += sb / 16;
#else
    for (i = 0; i < blocks; i++) {
        tm_head_tail4(a + 4 * i, b + 4 * i, x + 8 * i, 8, sums);
    }
#endif
    if (n % 8) {
        tm_head_tail4(a + 4 * blocks, b + 4 * blocks, x + 8 * blocks, n % 8, sums);
    }
}
#endif

#if TM_USES(TM_K_FC | TM_K_FC4)
/* A linear head's bytes per class and its kernel for two classes: 8-bit or packed 4-bit weights. A
 * build compiles the kinds its model uses (one), so the choice costs nothing at run time. */
static TM_INLINE int tm_head_row(const tm_head *H, int n)
{
#if TM_USES(TM_K_FC) && TM_USES(TM_K_FC4)
    return H->packed ? (n + 7) / 8 * 4 : n;
#elif TM_USES(TM_K_FC4)
    (void)H;
    return (n + 7) / 8 * 4;
#else
    (void)H;
    return n;
#endif
}

static TM_INLINE void tm_head_pairs(const tm_head *H, const int8_t *a, const int8_t *b, int n, int32_t acc[2])
{
#if TM_USES(TM_K_FC) && TM_USES(TM_K_FC4)
    if (H->packed) {
        tm_head_pair4(a, b, tm_arena, n, acc);
    } else {
        tm_head_pair(a, b, tm_arena, n, acc);
    }
#elif TM_USES(TM_K_FC4)
    (void)H;
    tm_head_pair4(a, b, tm_arena, n, acc);
#else
    (void)H;
    tm_head_pair(a, b, tm_arena, n, acc);
#endif
}
#endif

TM_PRIVATE void tm_run_head(const tm_head *H, int32_t scores[])
{
    int32_t sums[TM_HEAD_CHANNELS];
    int pixels = H->height * H->width, p, c, k;
#if TM_USES(TM_K_FC | TM_K_FC4)
    if (H->spatial) {
        int n = pixels * H->channels, row = tm_head_row(H, n);
        for (k = 0; k < H->classes; k += 2) {
            int l = k + 1 < H->classes ? k + 1 : k; /* an odd count computes the last class twice */
            int32_t acc[2];
            acc[0] = H->bias[k];
            acc[1] = H->bias[l];
            tm_head_pairs(H, H->weight + k * row, H->weight + l * row, n, acc);
            scores[k] = tm_score(H, k, acc[0]);
            scores[l] = tm_score(H, l, acc[1]);
        }
        return;
    }
#endif
    for (c = 0; c < H->channels; c++) {
        sums[c] = 0;
    }
    for (p = 0; p < pixels; p++) {
        for (c = 0; c < H->channels; c++) {
            sums[c] += tm_arena[p * H->channels + c];
        }
    }
    for (k = 0; k < H->classes; k++) {
        int32_t acc = H->bias[k];
        for (c = 0; c < H->channels; c++) {
            acc += sums[c] * H->weight[k * H->channels + c];
        }
        scores[k] = tm_score(H, k, acc);
    }
}
