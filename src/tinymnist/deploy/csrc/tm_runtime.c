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
 *   hi  = (acc * multiplier) >> 32              (the high word of the 64-bit product)
 *   out = clamp(offset + ((hi + 2^(shift-1)) >> shift), low, 127)
 * which is acc * multiplier / 2^(32 + shift) rounded half up (exactly: one rounding). */
typedef struct {
    const int32_t *bias;       /* accumulator units; the input zero point is folded in */
    const int32_t *multiplier; /* 31-bit fixed point, negative for a negative BatchNorm scale */
    const int8_t *shift;       /* 1..30 */
    const int32_t *offset;     /* output zero point plus the BatchNorm shift; NULL: `zero` */
    int32_t zero;              /* output zero point */
    int8_t low;                /* clamp floor: the zero point under a final ReLU, else -128 */
    uint8_t relu_before;       /* max(acc, 0) before requantizing (conv -> ReLU -> BatchNorm) */
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
static int8_t tm_mid[TM_MID_BYTES];

/* ---- Requantization ---------------------------------------------------------------------- */

/* One output channel's constants, loaded once per channel rather than once per pixel.
 * - The rounding term and the offset share one addend: ((hi + round) >> s) + offset equals
 *   (hi + round + offset * 2^s) >> s exactly (adding a multiple of 2^s commutes with the shift).
 * - A ReLU before the requantization becomes part of the clamp: f(acc) = (hi + addend) >> s is
 *   monotone in acc (rising for a positive multiplier, falling for a negative one) with
 *   f(0) = offset, so f(max(acc, 0)) = max(f(acc), offset), or min(f(acc), offset). */
typedef struct {
    int32_t bias, multiplier, addend, low, high;
    int shift;
} tm_channel;

static tm_channel tm_channel_of(const tm_requant *q, int c)
{
    tm_channel k;
    int32_t offset = q->offset ? q->offset[c] : q->zero;
    k.bias = q->bias[c];
    k.multiplier = q->multiplier[c];
    k.shift = q->shift[c];
    k.addend = ((int32_t)1 << (k.shift - 1)) + offset * ((int32_t)1 << k.shift);
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
    int32_t v = ((int32_t)(((int64_t)acc * k->multiplier) >> 32) + k->addend) >> k->shift;
    v = v < k->low ? k->low : v;
    return (int8_t)(v > k->high ? k->high : v);
}

/* ---- Dot products -------------------------------------------------------------------------
 * With the Cortex-M4/M7/M33 DSP extension, four int8 products at a time: SXTB16 splits a word
 * of four int8 into two pairs of int16 (bytes 0,2 and 1,3), SMLAD multiplies pairs and adds both
 * products. The portable loop gives the same integers: the order of integer additions is free. */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define TM_DSP 1
static uint32_t tm_word(const int8_t *p) /* unaligned 32-bit load (allowed on these cores) */
{
    return (uint32_t)(uint8_t)p[0] | (uint32_t)(uint8_t)p[1] << 8 | (uint32_t)(uint8_t)p[2] << 16
         | (uint32_t)(uint8_t)p[3] << 24;
}
static uint32_t tm_even(uint32_t x) /* int8 lanes 0 and 2 as int16 */
{
    uint32_t r;
    __asm__("sxtb16 %0, %1" : "=r"(r) : "r"(x));
    return r;
}
static uint32_t tm_odd(uint32_t x) /* int8 lanes 1 and 3 as int16 */
{
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
static int32_t tm_smlad(uint32_t a, uint32_t b, int32_t acc)
{
    int32_t r;
    __asm__("smlad %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
}
#else
#define TM_DSP 0
#endif

/* ---- Rows ------------------------------------------------------------------------------------ */

/* The ring slot of input row r (r >= -1): r mod 3, without a division (Cortex-M0 has none). */
static int8_t *tm_slot(int r, int slot_bytes)
{
    int s = r + 3;
    while (s >= 3) {
        s -= 3;
    }
    return tm_ring + s * slot_bytes;
}

/* Copy input row r (-1 and height are padding) into its ring slot, padded left and right. */
static void tm_load_row(const tm_layer *L, int r, int padded_width, int slot_bytes)
{
    int8_t *slot = tm_slot(r, slot_bytes);
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
#if TM_DSP
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

static void tm_run_layer(const tm_layer *L)
{
    int has_conv = L->conv_weight != NULL;
    int kernel = has_conv ? 3 : 1;
    int pad = has_conv ? L->padding : 0;
    int out_height = L->height + 2 * pad - kernel + 1;
    int out_width = L->width + 2 * pad - kernel + 1;
    int cin = L->channels;
    int mid_channels = has_conv ? L->conv_out : cin;
    int out_channels = L->point_weight ? L->point_out : mid_channels;
    int padded_width = L->width + 2 * pad;
    int slot_bytes = padded_width * cin;
    int out_row_bytes = out_width * out_channels;
    int step = L->bottom_up ? -1 : 1;
    int y = L->bottom_up ? out_height - 1 : 0;
    int n;
    /* The window's other rows, before the loop loads one new row per output row. */
    for (n = 1; n < kernel; n++) {
        tm_load_row(L, L->bottom_up ? y - pad + n : y - pad + n - 1, padded_width, slot_bytes);
    }
    for (n = 0; n < out_height; n++, y += step) {
        int8_t *out = tm_arena + y * out_row_bytes;
        int8_t *conv_out = L->point_weight ? tm_mid : out;
        tm_load_row(L, L->bottom_up ? y - pad : y - pad + kernel - 1, padded_width, slot_bytes);
        if (has_conv) {
            const int8_t *r0 = tm_slot(y - pad, slot_bytes);
            const int8_t *r1 = tm_slot(y - pad + 1, slot_bytes);
            const int8_t *r2 = tm_slot(y - pad + 2, slot_bytes);
            if (L->conv_depthwise || cin == 1) {
                tm_conv3_single_row(r0, r1, r2, conv_out, out_width, cin, L->conv_out, L->conv_depthwise ? 1 : 0,
                                    L->conv_weight, &L->conv_q);
            } else {
                tm_conv3_dense_row(r0, r1, r2, conv_out, out_width, cin, L->conv_out, L->conv_weight, &L->conv_q);
            }
        }
        if (L->point_weight) {
            const int8_t *in = has_conv ? tm_mid : tm_slot(y, slot_bytes);
            tm_point_row(in, out, out_width, mid_channels, L->point_out, L->point_weight, &L->point_q);
        }
    }
}

/* 2x2 max-pool, stride 2, in place (each output lies at or before the inputs still to be read). */
static void tm_maxpool(int height, int width, int channels)
{
    int oh = height / 2, ow = width / 2, y, x, c;
    for (y = 0; y < oh; y++) {
        for (x = 0; x < ow; x++) {
            for (c = 0; c < channels; c++) {
                const int8_t *p = tm_arena + ((2 * y) * width + 2 * x) * channels + c;
                int8_t a = p[0] > p[channels] ? p[0] : p[channels];
                int8_t b = p[width * channels] > p[(width + 1) * channels] ? p[width * channels] : p[(width + 1) * channels];
                tm_arena[(y * ow + x) * channels + c] = a > b ? a : b;
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
