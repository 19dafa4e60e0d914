/* ------------------------------------------------------------------------------------------------
 * The int8 runtime: a handful of kernels shared by every layer. Hand-written (tinymnist/deploy/
 * csrc/tm_runtime.c) and copied into each generated model unchanged.
 *
 * Layout: one activation tensor at a time lives in tm_arena, height x width x channels (channels
 * last), int8, real value = scale * (q - zero). Every layer runs in place: it copies the input rows
 * it still needs into tm_ring (three rows, zero-point padded at the borders) just before its output
 * rows overwrite them, top-down when the output is no larger than the input, bottom-up otherwise.
 * The generator checks that the chosen order never overwrites a row before it is copied.
 *
 * Arithmetic: integers only. A layer's accumulator is int32: bias + sum(weight * q) over the taps,
 * with the input zero point folded into the bias (padding taps hold the zero point, real zero).
 * Requantization (tm_requant below): the high word of the int64 product acc * multiplier, then a
 * rounding arithmetic (flooring) right shift, checked below at compile time; the head rounds its
 * int64 product in one shift. The Python integer reference (tinymnist/deploy/reference.py) defines the same results bit for bit.
 * ---------------------------------------------------------------------------------------------- */

/* C99 leaves >> of a negative value to the compiler; every compiler for these targets shifts
 * arithmetically, and this refuses to compile where one does not. */
typedef char tm_requires_arithmetic_shift[((int64_t)-1 >> 1) == -1 ? 1 : -1];

/* Requantization of one layer's outputs, one entry per output channel:
 *   shift 0:       out = clamp(offset + ((acc * multiplier + 2^31) >> 32), low, 127)
 *   shift 1..30:   hi  = (acc * multiplier) >> 32   (the high word of the 64-bit product)
 *                  out = clamp(offset + ((hi + 2^(shift-1)) >> shift), low, 127)
 * both acc * multiplier / 2^(32 + shift) rounded half up (exactly: one rounding). */
typedef struct {
    const int32_t *bias;       /* accumulator units; the input zero point is folded in */
    const int32_t *multiplier; /* fixed point, negative for a negative BatchNorm scale */
    const int8_t *shift;       /* 0..30 */
    const int32_t *offset;     /* output zero point plus the BatchNorm shift; NULL: `zero` */
    int32_t zero;              /* output zero point */
    int8_t low;                /* clamp floor: the zero point under a final ReLU, else -128 */
    uint8_t relu_before;       /* max(acc, 0) before requantizing (conv -> ReLU -> BatchNorm) */
    uint8_t simple;            /* every shift 0, floor -128, no ReLU before: the SIMD kernels' case */
} tm_requant;

/* One in-place layer: a 3x3 conv (dense or depthwise), a 1x1 conv, or a 3x3 depthwise conv
 * followed by a 1x1 conv (a separable block, fused row by row). */
typedef struct {
    uint8_t height, width, channels; /* input tensor */
    uint8_t padding;                 /* 0 or 1, for the 3x3 part */
    int8_t zero;                     /* input zero point: the padding value */
    uint8_t bottom_up;               /* row order that keeps the in-place run safe */
    const int8_t *conv_weight;       /* 3x3 part or NULL: dense [out][3][3][in], depthwise [in][3][3] */
    uint8_t conv_depthwise;
    uint8_t conv_out;                /* output channels of the 3x3 part */
    tm_requant conv_q;
    const int8_t *point_weight;      /* 1x1 part or NULL: [out][in] */
    uint8_t point_out;
    tm_requant point_q;
} tm_layer;

/* Global average pool (as a sum) and a 1x1 conv to the classes. */
typedef struct {
    uint8_t height, width, channels, classes;
    const int8_t *weight;            /* [classes][channels] */
    const int32_t *bias;             /* the input zero point is folded in */
    const int32_t *multiplier;       /* rescales each class to one common score unit */
    const int8_t *shift;             /* score = (acc * multiplier + 2^(shift-1)) >> shift, in int64 */
} tm_head;

static int8_t tm_arena[TM_ARENA_BYTES];
static int8_t tm_ring[TM_RING_BYTES];
#define TM_SLOT (TM_RING_BYTES / 3) /* bytes between the ring's three row slots */
/* One depthwise output row of a separable layer: int8 (portable kernels), or int16 lanes for the
 * SIMD 1x1 conv (see tm_mid_lane). A union for word alignment (the SIMD routine loads pairs of words). */
static union {
    int16_t h[TM_MID_BYTES / 2];
    uint32_t word;
} tm_mid;

/* ---- Requantization ---------------------------------------------------------------------- */

/* One output channel's constants, loaded once per channel rather than once per pixel.
 * - The rounding term and the offset share one addend: ((hi + round) >> s) + offset equals
 *   (hi + round + offset * 2^s) >> s exactly (adding a multiple of 2^s commutes with the shift);
 *   with shift 0 the rounding is in the product (+ 2^31 before taking the high word).
 * - A ReLU before the requantization becomes part of the clamp: f(acc) = (hi + addend) >> s is
 *   monotone in acc (rising for a positive multiplier, falling for a negative one) with
 *   f(0) = offset, so f(max(acc, 0)) = max(f(acc), offset), or min(f(acc), offset). */
typedef struct {
    int32_t bias, multiplier, addend, low, high;
    uint32_t round; /* 2^31 for shift 0 (the high word rounded), else 0 */
    int shift;
} tm_channel;

static tm_channel tm_channel_of(const tm_requant *q, int c)
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

static int8_t tm_output(int32_t acc, const tm_channel *k)
{
    int32_t v = ((int32_t)(((int64_t)acc * k->multiplier + k->round) >> 32) + k->addend) >> k->shift;
    v = v < k->low ? k->low : v;
    return (int8_t)(v > k->high ? k->high : v);
}

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
#if (defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP) || defined(TM_EMULATE_DSP)
#define TM_SIMD 1
#else
#define TM_SIMD 0
#endif

/* The Cortex-M4 build runs the inner loops of the SIMD 1x1 and 3x3 kernels as Thumb-2 routines
 * (the 3x3 one reads the ring slots at immediate offsets, at most 4095). */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define TM_THUMB2 1
#else
#define TM_THUMB2 0
#endif
#define TM_THUMB2_CONV3 (TM_THUMB2 && TM_SLOT * 2 <= 4095)

#if TM_SIMD
static uint32_t tm_word(const int8_t *p)
{
    return (uint32_t)(uint8_t)p[0] | (uint32_t)(uint8_t)p[1] << 8 | (uint32_t)(uint8_t)p[2] << 16
         | (uint32_t)(uint8_t)p[3] << 24; /* one LDR on the Cortex-M4 (unaligned loads allowed) */
}
#if !TM_THUMB2_CONV3
static uint32_t tm_pack(int32_t lo, int32_t hi)
{
    return ((uint32_t)lo & 0xffffu) | (uint32_t)hi << 16;
}
#endif
static void tm_put_word(int8_t *p, uint32_t v) /* one STR on the Cortex-M4 (unaligned stores allowed) */
{
    p[0] = (int8_t)(v & 0xff);
    p[1] = (int8_t)(v >> 8 & 0xff);
    p[2] = (int8_t)(v >> 16 & 0xff);
    p[3] = (int8_t)(v >> 24);
}
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
static uint32_t tm_even(uint32_t x)
{
    uint32_t r;
    __asm__("sxtb16 %0, %1" : "=r"(r) : "r"(x));
    return r;
}
static uint32_t tm_odd(uint32_t x)
{
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
static int32_t tm_smlad(uint32_t a, uint32_t b, int32_t s)
{
    int32_t r;
    __asm__("smlad %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(s));
    return r;
}
#if !TM_THUMB2_CONV3 /* used by the C 3x3 kernel only */
static int32_t tm_smmulr(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
static int32_t tm_ssat8(int32_t x)
{
    int32_t r;
    __asm__("ssat %0, #8, %1" : "=r"(r) : "r"(x));
    return r;
}
#endif
static uint32_t tm_max4(uint32_t a, uint32_t b)
{
    uint32_t r;
    __asm__("ssub8 %0, %1, %2\n\tsel %0, %1, %2" : "=&r"(r) : "r"(a), "r"(b) : "cc");
    return r;
}
#else /* TM_EMULATE_DSP: the same results in C */
static int32_t tm_lo(uint32_t x)
{
    return (int32_t)(x & 0xffffu) - (int32_t)((x & 0x8000u) << 1);
}
static int32_t tm_hi(uint32_t x)
{
    return tm_lo(x >> 16);
}
static uint32_t tm_even(uint32_t x)
{
    return tm_pack((int8_t)(uint8_t)x, (int8_t)(uint8_t)(x >> 16));
}
static uint32_t tm_odd(uint32_t x)
{
    return tm_pack((int8_t)(uint8_t)(x >> 8), (int8_t)(uint8_t)(x >> 24));
}
static int32_t tm_smlad(uint32_t a, uint32_t b, int32_t s)
{
    return s + tm_lo(a) * tm_lo(b) + tm_hi(a) * tm_hi(b);
}
static int32_t tm_smmulr(int32_t a, int32_t b)
{
    return (int32_t)(((int64_t)a * b + 0x80000000u) >> 32);
}
static int32_t tm_ssat8(int32_t x)
{
    return x < -128 ? -128 : (x > 127 ? 127 : x);
}
static uint32_t tm_max4(uint32_t a, uint32_t b)
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

/* ---- Rows ------------------------------------------------------------------------------------ */

/* The ring slot of input row r (r >= -3): r mod 3, without a division (Cortex-M0 has none). */
static int tm_slot_index(int r)
{
    int s = r + 3;
    while (s >= 3) {
        s -= 3;
    }
    return s;
}

static int8_t *tm_slot(int r)
{
    return tm_ring + tm_slot_index(r) * TM_SLOT;
}

/* Copy input row r (-1 and height are padding) into its ring slot, padded left and right. */
static void tm_load_row(const tm_layer *L, int r, int padded_width)
{
    int8_t *slot = tm_slot(r);
    const int8_t *src = tm_arena + r * L->width * L->channels;
    int row_bytes = L->width * L->channels, pad_bytes = L->padding * L->channels, i;
    int8_t zero = L->zero;
    if (r < 0 || r >= L->height) {
        for (i = 0; i < padded_width * L->channels; i++) {
            slot[i] = zero;
        }
        return;
    }
    for (i = 0; i < pad_bytes; i++) {
        slot[i] = zero;
        slot[pad_bytes + row_bytes + i] = zero;
    }
    slot += pad_bytes;
    for (i = 0; i < row_bytes; i++) {
        slot[i] = src[i];
    }
}

#if TM_SIMD
/* The 4 x 4 byte transposes of a planar row load: `blocks` times, four pixels (channels bytes
 * apart) of every four channels from src to four planes (plane bytes apart) at dst, one word to
 * each plane; then the next four pixels. channels: a multiple of 4. The Cortex-M4 build runs it
 * as a Thumb-2 routine (UXTB16 / PKHBT / PKHTB); this C is its specification. */
#if TM_THUMB2
void tm_plane_blocks_m4(const int8_t *src, int8_t *dst, int channels, int plane, int blocks);
__asm__(
    "    .syntax unified\n"
    "    .thumb\n"
    "    .text\n"
    "    .align 2\n"
    "    .type tm_plane_blocks_m4, %function\n"
    "    .thumb_func\n"
    "tm_plane_blocks_m4:\n"               /* r0 src, r1 dst, r2 channels, r3 plane; blocks at [sp] */
    "    push {r4-r11, lr}\n"              /* blocks now at [sp, #36] */
    "1:  add lr, r0, r2\n"                 /* the end of pixel 0's channels */
    "    add r10, r0, r2, lsl #1\n"        /* pixels 2 and 3 */
    "    mov r11, r1\n"                    /* planes c, c + 1 */
    "    add r12, r1, r3, lsl #1\n"        /* planes c + 2, c + 3 */
    "2:  ldr r5, [r0, r2]\n"               /* b: pixel 1, channels c..c+3 */
    "    ldr r4, [r0], #4\n"               /* a: pixel 0 */
    "    ldr r7, [r10, r2]\n"              /* h: pixel 3 */
    "    ldr r6, [r10], #4\n"              /* g: pixel 2 */
    "    uxtb16 r8, r4\n"
    "    uxtb16 r9, r5\n"
    "    orr r8, r8, r9, lsl #8\n"         /* (a0 b0 a2 b2) */
    "    uxtb16 r4, r4, ror #8\n"
    "    uxtb16 r5, r5, ror #8\n"
    "    orr r4, r4, r5, lsl #8\n"         /* (a1 b1 a3 b3) */
    "    uxtb16 r9, r6\n"
    "    uxtb16 r5, r7\n"
    "    orr r9, r9, r5, lsl #8\n"         /* (g0 h0 g2 h2) */
    "    uxtb16 r6, r6, ror #8\n"
    "    uxtb16 r7, r7, ror #8\n"
    "    orr r6, r6, r7, lsl #8\n"         /* (g1 h1 g3 h3) */
    "    pkhbt r5, r8, r9, lsl #16\n"      /* channel c:     (a0 b0 g0 h0) */
    "    pkhtb r8, r9, r8, asr #16\n"      /* channel c + 2: (a2 b2 g2 h2) */
    "    pkhbt r7, r4, r6, lsl #16\n"      /* channel c + 1 */
    "    pkhtb r4, r6, r4, asr #16\n"      /* channel c + 3 */
    "    str r5, [r11]\n"
    "    str r7, [r11, r3]\n"
    "    str r8, [r12]\n"
    "    str r4, [r12, r3]\n"
    "    add r11, r11, r3, lsl #2\n"
    "    add r12, r12, r3, lsl #2\n"
    "    cmp r0, lr\n"
    "    bne 2b\n"
    "    add r0, r0, r2, lsl #1\n"         /* the next four pixels: r0 is at pixel 1 */
    "    add r0, r0, r2\n"
    "    add r1, r1, #4\n"
    "    ldr r4, [sp, #36]\n"
    "    subs r4, r4, #1\n"
    "    str r4, [sp, #36]\n"
    "    bne 1b\n"
    "    pop {r4-r11, pc}\n"
    "    .size tm_plane_blocks_m4, . - tm_plane_blocks_m4\n");
#define tm_plane_blocks tm_plane_blocks_m4
#else
static void tm_plane_blocks(const int8_t *src, int8_t *dst, int channels, int plane, int blocks)
{
    for (; blocks > 0; blocks--, src += 4 * channels, dst += 4) {
        const int8_t *s = src;
        int8_t *d = dst;
        int c;
        for (c = 0; c < channels; c += 4, s += 4, d += 4 * plane) {
            uint32_t a = tm_word(s), b = tm_word(s + channels), g = tm_word(s + 2 * channels);
            uint32_t h = tm_word(s + 3 * channels);
            uint32_t ab02 = (a & 0x00ff00ffu) | (b & 0x00ff00ffu) << 8, ab13 = (a >> 8 & 0x00ff00ffu) | (b & 0xff00ff00u);
            uint32_t gh02 = (g & 0x00ff00ffu) | (h & 0x00ff00ffu) << 8, gh13 = (g >> 8 & 0x00ff00ffu) | (h & 0xff00ff00u);
            tm_put_word(d, (ab02 & 0xffffu) | gh02 << 16);
            tm_put_word(d + plane, (ab13 & 0xffffu) | gh13 << 16);
            tm_put_word(d + 2 * plane, ab02 >> 16 | (gh02 & 0xffff0000u));
            tm_put_word(d + 3 * plane, ab13 >> 16 | (gh13 & 0xffff0000u));
        }
    }
}
#endif

/* The same row, planar: channel c's padded row at slot + c * plane (the SIMD 3x3 kernel reads
 * four neighbouring pixels of one channel with one load). Bytes past the padded row are never
 * used in a stored result. */
static void tm_load_plane_row(const tm_layer *L, int r, int plane)
{
    int8_t *slot = tm_slot(r);
    const int8_t *src = tm_arena + r * L->width * L->channels;
    int channels = L->channels, width = L->width, pad = L->padding, c, x;
    int8_t zero = L->zero;
    if (r < 0 || r >= L->height) { /* a padding row: whole words (channels * plane is a multiple of 4) */
        uint32_t z = (uint8_t)zero * 0x01010101u;
        for (x = 0; x < channels * plane; x += 4) {
            tm_put_word(slot + x, z);
        }
        return;
    }
    for (c = 0; c < channels; c++) {
        if (pad) {
            slot[c * plane] = zero;
            slot[c * plane + width + 1] = zero;
        }
    }
    slot += pad;
    x = 0;
    if (channels % 4 == 0) {
        if (width >= 4) { /* four pixels of four channels at a time */
            tm_plane_blocks(src, slot, channels, plane, width / 4);
            x = width & ~3;
        }
        for (; x < width; x++) { /* the rest: one word of four channels to four planes */
            const int8_t *s = src + x * channels;
            int8_t *d = slot + x;
            for (c = 0; c < channels; c += 4, s += 4, d += 4 * plane) {
                uint32_t v = tm_word(s);
                d[0] = (int8_t)(v & 0xff);
                d[plane] = (int8_t)(v >> 8 & 0xff);
                d[2 * plane] = (int8_t)(v >> 16 & 0xff);
                d[3 * plane] = (int8_t)(v >> 24);
            }
        }
        return;
    }
    for (c = 0; c < channels; c++) {
        int8_t *d = slot + c * plane;
        const int8_t *s = src + c;
        for (x = 0; x < width; x++, s += channels) {
            d[x] = *s;
        }
    }
}

#if !TM_THUMB2_CONV3 /* the C kernels' helpers */
/* The simple requantization (tm_requant.simple): saturate(offset + rounded high word). */
static int8_t tm_simple(int32_t acc, int32_t multiplier, int32_t offset)
{
    return (int8_t)tm_ssat8(tm_smmulr(acc, multiplier) + offset);
}

/* Position of channel c in a pixel's int16 lanes in tm_mid: per four channels the order c0 c2 c1
 * c3, so that the words (c0, c2) and (c1, c3) pair with a weight word's SXTB16 even and odd lanes. */
static int tm_mid_lane(int c)
{
    return (c & ~3) | (c & 1) << 1 | (c >> 1 & 1);
}
#endif

/* 3x3 conv with one input channel per output (depthwise, or a dense conv of a 1-channel input)
 * on planar ring rows (tm_load_plane_row), simple requantization: one output row, a channel at a
 * time, two output pixels per step from one word of each of the three input rows. With a word
 * v = (p0, p1, p2, p3) of a row, e = (p0, p2), d = (p1, p3) (SXTB16) and that row's weights
 * w0 w1 w2, ac = (w0, w2):
 *   out[x]     += e.ac + p1 * w1   (SMLAD, then SMLABB: the bottom lane of d)
 *   out[x + 1] += d.ac + p2 * w1   (SMLAD, then SMLATB: the top lane of e)
 * The input rows are the ring slots 0, 1, 2 at fixed distances TM_SLOT; `row0..row2` name the
 * kernel row each slot holds for this output row (the weights rotate, not the rows). An odd
 * width computes one pixel past the row: the caller passes an output with room for it.
 * The Cortex-M4 build runs it as a Thumb-2 routine (tm_conv3_rows_m4 below); this C is its
 * specification, which the host builds run. Field offsets are fixed: the routine reads them. */
typedef struct {
    const int8_t *w;            /*  0: channel o's weights [3][3] (advanced by the routine) */
    int32_t row0, row1, row2;   /*  4,  8, 12: offsets in w of the kernel rows in ring slots 0, 1, 2 */
    const int32_t *bias;        /* 16: channel o's (advanced) */
    const int32_t *multiplier;  /* 20: channel o's (advanced) */
    const int32_t *offset;      /* 24: channel o's (advanced by offset_step) */
    int32_t offset_step;        /* 28: 4, or 0 (the zero point for every channel) */
    const int8_t *in;           /* 32: channel o's plane in ring slot 0 (advanced by plane_step) */
    int32_t plane_step;         /* 36: bytes between planes, 0 for a one-channel input */
    void *out;                  /* 40: channel 0's output of the row's first pixel */
    int32_t stride;             /* 44: bytes between one channel's output pixels */
    int32_t wide;               /* 48: 1: int16 lanes in tm_mid_lane order; 0: int8, channel o at out + o */
    int32_t o;                  /* 52: the channel, counted up to `channels` */
    int32_t channels;           /* 56 */
    int32_t pairs;              /* 60: output pixel pairs */
} tm_conv3_job;

#define TM_STR2(x) #x
#define TM_STR(x) TM_STR2(x)

#if TM_THUMB2_CONV3
void tm_conv3_rows_m4(tm_conv3_job *job);
__asm__(
    "    .syntax unified\n"
    "    .thumb\n"
    "    .text\n"
    "    .align 2\n"
    "    .type tm_conv3_rows_m4, %function\n"
    "    .thumb_func\n"
    /* The pixel-pair loop. In: r0 the slot-0 input, r1..r3 ac of slots 0..2, r4 the middle
     * weights of slots 0 (bottom) and 1 (top), r5 that of slot 2, lr the bias, r10 the output,
     * r11 its stride, r12 the end of the input; [sp] the multiplier and the offset. */
    "    .macro tm_conv3_pairs store\n"
    "5:  ldr r9, [r0, #" TM_STR(TM_SLOT) "]\n"
    "    sxtb16 r8, r9\n"
    "    sxtb16 r9, r9, ror #8\n"
    "    smlad r6, r8, r2, lr\n"
    "    smlabt r6, r9, r4, r6\n"
    "    smlad r7, r9, r2, lr\n"
    "    smlatt r7, r8, r4, r7\n"
    "    ldr r9, [r0, #(2 * " TM_STR(TM_SLOT) ")]\n"
    "    sxtb16 r8, r9\n"
    "    sxtb16 r9, r9, ror #8\n"
    "    smlad r6, r8, r3, r6\n"
    "    smlabb r6, r9, r5, r6\n"
    "    smlad r7, r9, r3, r7\n"
    "    smlatb r7, r8, r5, r7\n"
    "    ldr r9, [r0], #2\n"
    "    sxtb16 r8, r9\n"
    "    sxtb16 r9, r9, ror #8\n"
    "    smlad r6, r8, r1, r6\n"
    "    smlabb r6, r9, r4, r6\n"
    "    smlad r7, r9, r1, r7\n"
    "    smlatb r7, r8, r4, r7\n"
    "    ldrd r8, r9, [sp]\n"
    "    smmlar r6, r6, r8, r9\n"         /* offset + rounded high word */
    "    smmlar r7, r7, r8, r9\n"
    "    ssat r6, #8, r6\n"
    "    ssat r7, #8, r7\n"
    "    \\store r6, [r10]\n"
    "    \\store r7, [r10, r11]\n"
    "    add r10, r10, r11, lsl #1\n"
    "    cmp r0, r12\n"
    "    bne 5b\n"
    "    .endm\n"
    "tm_conv3_rows_m4:\n"
    "    push {r0, r4-r11, lr}\n"
    "    sub sp, sp, #12\n"                /* [sp] multiplier, [sp, #4] offset, [sp, #8] bias; job at [sp, #12] */
    "1:  ldr r12, [sp, #12]\n"
    "    ldm r12, {r0, r1, r2, r3}\n"      /* weights, the offsets of the slots' kernel rows */
    "    add r1, r1, r0\n"
    "    add r2, r2, r0\n"
    "    add r3, r3, r0\n"
    "    add r0, r0, #9\n"
    "    str r0, [r12]\n"
    "    ldrsb r4, [r1, #1]\n"
    "    ldrsb r5, [r2, #1]\n"
    "    pkhbt r4, r4, r5, lsl #16\n"      /* middle weights of slots 0 and 1 */
    "    ldrsb r6, [r1]\n"
    "    ldrsb r7, [r1, #2]\n"
    "    pkhbt r1, r6, r7, lsl #16\n"      /* ac of slot 0 */
    "    ldrsb r6, [r2]\n"
    "    ldrsb r7, [r2, #2]\n"
    "    pkhbt r2, r6, r7, lsl #16\n"
    "    ldrsb r5, [r3, #1]\n"
    "    ldrsb r6, [r3]\n"
    "    ldrsb r7, [r3, #2]\n"
    "    pkhbt r3, r6, r7, lsl #16\n"
    "    add r0, r12, #16\n"
    "    ldm r0, {r6, r7, r8, r9}\n"      /* bias, multiplier, offset; offset step */
    "    ldr r10, [r6], #4\n"
    "    ldr r11, [r7], #4\n"
    "    ldr lr, [r8]\n"
    "    add r8, r8, r9\n"
    "    stm r0, {r6, r7, r8}\n"
    "    strd r11, lr, [sp]\n"
    "    str r10, [sp, #8]\n"
    "    add r10, r12, #32\n"
    "    ldm r10, {r0, r6, r7, r11}\n"    /* input plane, plane step, output, stride */
    "    ldrd r8, r9, [r10, #16]\n"       /* wide, o */
    "    add r6, r6, r0\n"
    "    str r6, [r12, #32]\n"
    "    add r6, r9, #1\n"
    "    str r6, [r12, #52]\n"
    "    ldr r12, [r12, #60]\n"
    "    add r12, r0, r12, lsl #1\n"      /* the input's end: 2 bytes per pair */
    "    ldr lr, [sp, #8]\n"
    "    cmp r8, #0\n"
    "    beq 3f\n"
    "    eor r6, r9, r9, lsr #1\n"        /* tm_mid_lane(o): swap bits 0 and 1 of o */
    "    and r6, r6, #1\n"
    "    add r6, r6, r6, lsl #1\n"
    "    eor r9, r9, r6\n"
    "    add r10, r7, r9, lsl #1\n"
    "    tm_conv3_pairs strh\n"
    "    b 4f\n"
    "3:  add r10, r7, r9\n"
    "    tm_conv3_pairs strb\n"
    "4:  ldr r12, [sp, #12]\n"
    "    ldrd r6, r7, [r12, #52]\n"       /* o, channels */
    "    cmp r6, r7\n"
    "    bne 1b\n"
    "    add sp, sp, #12\n"
    "    pop {r0, r4-r11, pc}\n"
    "    .purgem tm_conv3_pairs\n"
    "    .size tm_conv3_rows_m4, . - tm_conv3_rows_m4\n");
#define tm_conv3_rows tm_conv3_rows_m4
#else
/* One kernel row's taps (ac = (w0, w2), middle weight b) for pixels x and x + 1 from the input
 * word at p, added to the two sums. */
static void tm_row_taps(const int8_t *p, uint32_t ac, int32_t b, int32_t *sa, int32_t *sb)
{
    uint32_t v = tm_word(p), e = tm_even(v), d = tm_odd(v);
    *sa = tm_smlad(e, ac, *sa) + (int16_t)(d & 0xffff) * b;
    *sb = tm_smlad(d, ac, *sb) + (int16_t)(e >> 16) * b;
}

static void tm_conv3_rows(tm_conv3_job *job)
{
    for (; job->o < job->channels; job->o++) {
        const int8_t *w = job->w, *p = job->in;
        uint32_t ac0 = tm_pack(w[job->row0], w[job->row0 + 2]), ac1 = tm_pack(w[job->row1], w[job->row1 + 2]);
        uint32_t ac2 = tm_pack(w[job->row2], w[job->row2 + 2]);
        int32_t b0 = w[job->row0 + 1], b1 = w[job->row1 + 1], b2 = w[job->row2 + 1];
        int32_t bias = *job->bias++, multiplier = *job->multiplier++, offset = *job->offset;
        int at = job->wide ? 2 * tm_mid_lane(job->o) : job->o, n;
        int8_t *out = (int8_t *)job->out + at;
        job->offset = (const int32_t *)(const void *)((const char *)job->offset + job->offset_step);
        job->w += 9;
        job->in += job->plane_step;
        for (n = 0; n < job->pairs; n++, p += 2, out += 2 * job->stride) {
            int32_t sa = bias, sb = bias;
            tm_row_taps(p + TM_SLOT, ac1, b1, &sa, &sb);
            tm_row_taps(p + 2 * TM_SLOT, ac2, b2, &sa, &sb);
            tm_row_taps(p, ac0, b0, &sa, &sb);
            if (job->wide) {
                int16_t *o16 = (int16_t *)(void *)out;
                o16[0] = tm_simple(sa, multiplier, offset);
                o16[job->stride / 2] = tm_simple(sb, multiplier, offset);
            } else {
                out[0] = tm_simple(sa, multiplier, offset);
                out[job->stride] = tm_simple(sb, multiplier, offset);
            }
        }
    }
}
#endif

/* The pixel-pair loop of the SIMD 1x1 conv, for two output channels a and b: `pairs` times, the
 * four sums (channel a, b x pixel a, b) over the split weights w..w_end (per 4 input channels the
 * words a even, a odd, b even, b odd) and the int16 input lanes (per 4 channels the words
 * (c0, c2), (c1, c3): tm_mid_lane), requantized (simple) and stored; then both pixels advance.
 * The Cortex-M4 build runs it as a Thumb-2 routine (tm_point_pairs_m4 below: the 14 registers
 * of its inner loop are more than GCC keeps out of memory); this C is its specification, which
 * the host builds run. Field offsets are fixed: the routine reads them. */
typedef struct {
    const uint32_t *w;     /*  0 */
    const uint32_t *w_end; /*  4 */
    int32_t next;          /*  8: bytes from pixel a to pixel b in `in`: 2 * cin, or 0 (a pixel twice) */
    int32_t bias_a, bias_b;          /* 12, 16 */
    int32_t multiplier_a, offset_a;  /* 20, 24 */
    int32_t multiplier_b, offset_b;  /* 28, 32 */
    int8_t *out;           /* 36: pixel a's output channel a (advanced by the routine) */
    int32_t next_out;      /* 40: the same in `out`: cout, or 0 */
    int32_t ob;            /* 44: channel b - channel a: 1, or 0 (a channel twice) */
    int32_t out_step;      /* 48: 2 * cout */
    int32_t pairs;         /* 52: counted down to 0 by the routine */
    const int16_t *in;     /* 56: pixel a's int16 input lanes, word aligned (advanced by the routine) */
} tm_pair_job;

#if TM_THUMB2
void tm_point_pairs_m4(tm_pair_job *job);
__asm__(
    "    .syntax unified\n"
    "    .thumb\n"
    "    .text\n"
    "    .align 2\n"
    "    .type tm_point_pairs_m4, %function\n"
    "    .thumb_func\n"
    "tm_point_pairs_m4:\n"
    "    push {r0, r4-r11, lr}\n"          /* the job stays at [sp] */
    "    ldr r0, [r0, #56]\n"              /* r0: pixel a's input lanes */
    "1:  ldr r4, [sp]\n"
    "    ldm r4, {r2, r3, r5, r10, r12}\n" /* weights, their end, next, bias a, bias b */
    "    add r1, r0, r5\n"                 /* r1: pixel b's input lanes */
    "    mov r11, r10\n"                   /* r10, r11: channel a, pixels a and b */
    "    mov lr, r12\n"                    /* r12, lr:  channel b, pixels a and b */
    "2:  ldrd r4, r5, [r0], #8\n"          /* four channels of pixel a: (c0, c2), (c1, c3) */
    "    ldrd r8, r9, [r1], #8\n"          /* and of pixel b */
    "    ldrd r6, r7, [r2], #8\n"          /* channel a's weights: even, odd lanes */
    "    smlad r10, r4, r6, r10\n"
    "    smlad r10, r5, r7, r10\n"
    "    smlad r11, r8, r6, r11\n"
    "    smlad r11, r9, r7, r11\n"
    "    ldrd r6, r7, [r2], #8\n"          /* channel b's */
    "    smlad r12, r4, r6, r12\n"
    "    smlad r12, r5, r7, r12\n"
    "    smlad lr, r8, r6, lr\n"
    "    smlad lr, r9, r7, lr\n"
    "    cmp r2, r3\n"
    "    bne 2b\n"
    "    ldr r9, [sp]\n"
    "    ldr r1, [r9, #8]\n"
    "    add r0, r0, r1\n"                 /* the next pair's pixel a */
    "    add r9, r9, #20\n"
    "    ldm r9!, {r4, r5, r6, r7}\n"      /* multiplier and offset of a, of b: offset + rounded high word */
    "    smmlar r10, r10, r4, r5\n"
    "    ssat r10, #8, r10\n"
    "    smmlar r11, r11, r4, r5\n"
    "    ssat r11, #8, r11\n"
    "    smmlar r12, r12, r6, r7\n"
    "    ssat r12, #8, r12\n"
    "    smmlar lr, lr, r6, r7\n"
    "    ssat lr, #8, lr\n"
    "    ldm r9, {r1, r2, r3, r4, r5}\n"   /* out, next_out, ob, out_step, pairs */
    "    strb r10, [r1]\n"
    "    strb r12, [r1, r3]\n"
    "    add r8, r1, r2\n"
    "    strb r11, [r8]\n"
    "    strb lr, [r8, r3]\n"
    "    add r1, r1, r4\n"
    "    str r1, [r9]\n"
    "    subs r5, r5, #1\n"
    "    str r5, [r9, #16]\n"
    "    bne 1b\n"
    "    pop {r0, r4-r11, pc}\n"
    "    .size tm_point_pairs_m4, . - tm_point_pairs_m4\n");
#define tm_point_pairs tm_point_pairs_m4
#else
static void tm_point_pairs(tm_pair_job *job)
{
    const int16_t *pa = job->in;
    do {
        const int16_t *pb = pa + job->next / 2;
        const uint32_t *pw = job->w;
        int32_t aa = job->bias_a, ab = job->bias_a, ba = job->bias_b, bb = job->bias_b;
        for (; pw != job->w_end; pa += 4, pb += 4, pw += 4) {
            uint32_t a0 = tm_pack(pa[0], pa[1]), a1 = tm_pack(pa[2], pa[3]);
            uint32_t b0 = tm_pack(pb[0], pb[1]), b1 = tm_pack(pb[2], pb[3]);
            aa = tm_smlad(a1, pw[1], tm_smlad(a0, pw[0], aa));
            ab = tm_smlad(b1, pw[1], tm_smlad(b0, pw[0], ab));
            ba = tm_smlad(a1, pw[3], tm_smlad(a0, pw[2], ba));
            bb = tm_smlad(b1, pw[3], tm_smlad(b0, pw[2], bb));
        }
        pa += job->next / 2;
        job->out[0] = tm_simple(aa, job->multiplier_a, job->offset_a);
        job->out[job->ob] = tm_simple(ba, job->multiplier_b, job->offset_b);
        job->out[job->next_out] = tm_simple(ab, job->multiplier_a, job->offset_a);
        job->out[job->next_out + job->ob] = tm_simple(bb, job->multiplier_b, job->offset_b);
        job->out += job->out_step;
    } while (--job->pairs);
}
#endif

/* 1x1 conv of a row of int16 lanes (tm_mid_lane), cin a multiple of 4 (at most TM_POINT_CIN),
 * simple requantization: a 2 x 2 block (two output channels of two pixels) per step. The two channels' weights are split into
 * int16 lanes (SXTB16) once per row, on the stack: per 4 input channels the words
 * (a even, a odd, b even, b odd), which pair with the input words (c0, c2) and (c1, c3). */
static void tm_point_row_simd(const int16_t *in, int8_t *out, int width, int cin, int cout, const int8_t *weight,
                              const tm_requant *q)
{
    uint32_t w[TM_POINT_CIN];
    tm_pair_job job;
    int o, g, groups = cin / 4;
    job.w = w;
    job.w_end = w + 4 * groups;
    job.out_step = 2 * cout;
    for (o = 0; o < cout; o += 2) {
        int ob = o + 1 < cout ? o + 1 : o; /* an odd count computes the last channel twice */
        for (g = 0; g < groups; g++) {
            uint32_t va = tm_word(weight + o * cin + 4 * g), vb = tm_word(weight + ob * cin + 4 * g);
            w[4 * g] = tm_even(va), w[4 * g + 1] = tm_odd(va), w[4 * g + 2] = tm_even(vb), w[4 * g + 3] = tm_odd(vb);
        }
        job.ob = ob - o;
        job.bias_a = q->bias[o], job.bias_b = q->bias[ob];
        job.multiplier_a = q->multiplier[o], job.multiplier_b = q->multiplier[ob];
        job.offset_a = q->offset ? q->offset[o] : q->zero, job.offset_b = q->offset ? q->offset[ob] : q->zero;
        job.in = in, job.out = out + o, job.next = 2 * cin, job.next_out = cout, job.pairs = width / 2;
        if (job.pairs) {
            tm_point_pairs(&job);
        }
        if (width % 2) { /* the last pixel, computed twice */
            job.in = in + (width - 1) * cin, job.next = 0, job.next_out = 0, job.pairs = 1;
            tm_point_pairs(&job);
        }
    }
}
#endif

/* 3x3 conv with one input channel per output (depthwise, or a dense conv of a 1-channel input):
 * rows r0..r2 (padded, `stride` channels per pixel), output channel o reads input channel
 * o * step. A sliding window keeps two columns from one pixel to the next; the weights are read
 * from the table at each pixel (too many to keep in registers along with the window). */
static void tm_conv3_single_row(const int8_t *r0, const int8_t *r1, const int8_t *r2, int8_t *out, int out_width,
                                int stride, int channels, int step, const int8_t *weight, const tm_requant *q)
{
    int o, x;
    for (o = 0; o < channels; o++) {
        const int8_t *w = weight + o * 9;
        const int8_t *p0 = r0 + o * step, *p1 = r1 + o * step, *p2 = r2 + o * step;
        int32_t a0 = p0[0], b0 = p1[0], c0 = p2[0], a1 = p0[stride], b1 = p1[stride], c1 = p2[stride];
        tm_channel k = tm_channel_of(q, o);
        int8_t *dst = out + o;
        p0 += 2 * stride, p1 += 2 * stride, p2 += 2 * stride;
        for (x = 0; x < out_width; x++) {
            int32_t a2 = *p0, b2 = *p1, c2 = *p2;
            int32_t acc = k.bias + w[0] * a0 + w[1] * a1 + w[2] * a2 + w[3] * b0 + w[4] * b1 + w[5] * b2 + w[6] * c0
                        + w[7] * c1 + w[8] * c2;
            *dst = tm_output(acc, &k);
            dst += channels, p0 += stride, p1 += stride, p2 += stride;
            a0 = a1, a1 = a2, b0 = b1, b1 = b2, c0 = c1, c1 = c2;
        }
    }
}

/* Two pixels' dot products with one weight vector, four int8 lanes at a time with the DSP
 * extension: the two running sums stay in registers. A macro rather than a function so that the
 * sums are plain locals of the caller (a function would pass them through memory). */
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

/* Dense 3x3 conv: each output is three dot products of 3 x cin contiguous values. */
static void tm_conv3_dense_row(const int8_t *r0, const int8_t *r1, const int8_t *r2, int8_t *out, int out_width,
                               int cin, int cout, const int8_t *weight, const tm_requant *q)
{
    int o, x, n = 3 * cin;
    for (o = 0; o < cout; o++) {
        const int8_t *w = weight + o * 3 * n;
        tm_channel k = tm_channel_of(q, o);
        for (x = 0; x < out_width; x += 2) {
            int xb = x + 1 < out_width ? x + 1 : x; /* an odd width computes the last pixel twice */
            int32_t a = k.bias, b = k.bias;
            TM_DOT2(r0 + x * cin, r0 + xb * cin, w, n, a, b);
            TM_DOT2(r1 + x * cin, r1 + xb * cin, w + n, n, a, b);
            TM_DOT2(r2 + x * cin, r2 + xb * cin, w + 2 * n, n, a, b);
            out[x * cout + o] = tm_output(a, &k);
            out[xb * cout + o] = tm_output(b, &k);
        }
    }
}

/* 1x1 conv of a row: width pixels of cin channels in `in`, cout channels to `out`. */
static void tm_point_row(const int8_t *in, int8_t *out, int width, int cin, int cout, const int8_t *weight,
                         const tm_requant *q)
{
    int o, x;
    for (o = 0; o < cout; o++) {
        const int8_t *w = weight + o * cin;
        tm_channel k = tm_channel_of(q, o);
        for (x = 0; x < width; x += 2) {
            int xb = x + 1 < width ? x + 1 : x;
            int32_t a = k.bias, b = k.bias;
            TM_DOT2(in + x * cin, in + xb * cin, w, cin, a, b);
            out[x * cout + o] = tm_output(a, &k);
            out[xb * cout + o] = tm_output(b, &k);
        }
    }
}

/* Bytes per channel of a planar ring slot (SIMD 3x3 layers): the padded row, the two bytes the
 * last pixel pair's word reaches past it, rounded up to whole words. */
static int tm_plane_bytes(int padded_width)
{
    return (padded_width + 2 + 3) & ~3;
}

static void tm_fetch_row(const tm_layer *L, int r, int padded_width, int plane)
{
#if TM_SIMD
    if (plane) {
        tm_load_plane_row(L, r, plane);
        return;
    }
#else
    (void)plane;
#endif
    tm_load_row(L, r, padded_width);
}

#if TM_SIMD
/* One output row of a SIMD 3x3 layer: channels' planes in the ring (input row y - pad + k in the
 * slot tm_slot_index of it), output to `out` (int8, conv_out channels per pixel) or to tm_mid
 * (wide: int16 lanes, mid_channels per pixel). */
static void tm_conv3_row_simd(const tm_layer *L, int y, int plane, void *out, int out_width, int wide, int mid_channels)
{
    const tm_requant *q = &L->conv_q;
    tm_conv3_job job;
    int first = tm_slot_index(y - L->padding); /* the slot of kernel row 0 */
    job.w = L->conv_weight;
    job.row0 = 3 * tm_slot_index(-first), job.row1 = 3 * tm_slot_index(1 - first), job.row2 = 3 * tm_slot_index(2 - first);
    job.bias = q->bias, job.multiplier = q->multiplier;
    job.offset = q->offset ? q->offset : &q->zero, job.offset_step = q->offset ? 4 : 0;
    job.in = tm_ring, job.plane_step = L->conv_depthwise ? plane : 0;
    job.out = out, job.stride = wide ? 2 * mid_channels : L->conv_out, job.wide = wide;
    job.o = 0, job.channels = L->conv_out, job.pairs = (out_width + 1) / 2;
    tm_conv3_rows(&job);
}
#endif

static void tm_run_layer(const tm_layer *L)
{
    int has_conv = L->conv_weight != NULL;
    int kernel = has_conv ? 3 : 1;
    int pad = has_conv ? L->padding : 0;
    int out_height = L->height + 2 * pad - kernel + 1;
    int out_width = L->width + 2 * pad - kernel + 1;
    int cin = L->channels;
    int single = has_conv && (L->conv_depthwise || cin == 1); /* one input channel per output */
    int mid_channels = has_conv ? L->conv_out : cin;
    int out_channels = L->point_weight ? L->point_out : mid_channels;
    int padded_width = L->width + 2 * pad;
    /* The SIMD 3x3 kernel (planar ring rows) computes pixel pairs: an odd width writes a pixel
     * past the row, which only tm_mid has room for. */
    int plane = TM_SIMD && single && L->conv_q.simple && (L->point_weight || out_width % 2 == 0)
              ? tm_plane_bytes(padded_width) : 0;
    /* Both SIMD kernels of a separable layer: the depthwise row goes to tm_mid as int16 lanes. */
    int lanes = plane && L->point_weight && L->point_q.simple && mid_channels % 4 == 0;
    int out_row_bytes = out_width * out_channels;
    int step = L->bottom_up ? -1 : 1;
    int y = L->bottom_up ? out_height - 1 : 0;
    int n;
    /* The window's other rows, before the loop loads one new row per output row. */
    for (n = 1; n < kernel; n++) {
        tm_fetch_row(L, L->bottom_up ? y - pad + n : y - pad + n - 1, padded_width, plane);
    }
    for (n = 0; n < out_height; n++, y += step) {
        int8_t *out = tm_arena + y * out_row_bytes;
        int8_t *conv_out = L->point_weight ? (int8_t *)tm_mid.h : out;
        tm_fetch_row(L, L->bottom_up ? y - pad : y - pad + kernel - 1, padded_width, plane);
        if (has_conv) {
            const int8_t *r0 = tm_slot(y - pad), *r1 = tm_slot(y - pad + 1), *r2 = tm_slot(y - pad + 2);
#if TM_SIMD
            if (plane) {
                tm_conv3_row_simd(L, y, plane, conv_out, out_width, lanes, mid_channels);
            } else
#endif
            if (single) {
                tm_conv3_single_row(r0, r1, r2, conv_out, out_width, cin, L->conv_out, L->conv_depthwise ? 1 : 0,
                                    L->conv_weight, &L->conv_q);
            } else {
                tm_conv3_dense_row(r0, r1, r2, conv_out, out_width, cin, L->conv_out, L->conv_weight, &L->conv_q);
            }
        }
        if (L->point_weight) {
            const int8_t *in = has_conv ? (const int8_t *)tm_mid.h : tm_slot(y);
#if TM_SIMD
            if (lanes) {
                tm_point_row_simd(tm_mid.h, out, out_width, mid_channels, L->point_out, L->point_weight, &L->point_q);
                continue;
            }
#else
            (void)lanes;
#endif
            tm_point_row(in, out, out_width, mid_channels, L->point_out, L->point_weight, &L->point_q);
        }
    }
}

/* 2x2 max-pool, stride 2, in place (each output lies at or before the inputs still to be read);
 * with SIMD, four channels per word where the channel count allows. */
static void tm_maxpool(int height, int width, int channels)
{
    int oh = height / 2, ow = width / 2, y, x, c;
    for (y = 0; y < oh; y++) {
        for (x = 0; x < ow; x++) {
            const int8_t *p = tm_arena + ((2 * y) * width + 2 * x) * channels;
            int8_t *out = tm_arena + (y * ow + x) * channels;
            c = 0;
#if TM_SIMD
            for (; c + 4 <= channels; c += 4) {
                tm_put_word(out + c, tm_max4(tm_max4(tm_word(p + c), tm_word(p + channels + c)),
                                             tm_max4(tm_word(p + width * channels + c), tm_word(p + (width + 1) * channels + c))));
            }
#endif
            for (; c < channels; c++) {
                const int8_t *q = p + c;
                int8_t a = q[0] > q[channels] ? q[0] : q[channels];
                int8_t b = q[width * channels] > q[(width + 1) * channels] ? q[width * channels] : q[(width + 1) * channels];
                out[c] = a > b ? a : b;
            }
        }
    }
}

static void tm_run_head(const tm_head *H, int32_t scores[])
{
    int32_t sums[TM_HEAD_CHANNELS];
    int pixels = H->height * H->width, p, c, k;
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
        int64_t scaled;
        for (c = 0; c < H->channels; c++) {
            acc += sums[c] * H->weight[k * H->channels + c];
        }
        scaled = (int64_t)acc * H->multiplier[k] + ((int64_t)1 << (H->shift[k] - 1));
        scores[k] = (int32_t)(scaled >> H->shift[k]);
    }
}

/* The image as int8 (pixel - 128) at the start of the arena. */
static void tm_load_image(const uint8_t image[784])
{
    int i;
    for (i = 0; i < 784; i++) {
        tm_arena[i] = (int8_t)(image[i] - 128);
    }
}
