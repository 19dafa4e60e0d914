/* tm_runtime.h - the contract of the tinymnist int8 runtime: data layout, arithmetic, and every
 * kernel's shapes. One concern per .c file beside this header; a model's generated source
 * (tinymnist_model.c) pastes them all into one translation unit (see tm_config.h).
 *
 * Layout: one activation tensor at a time lives in tm_arena, height x width x channels (channels
 * last), int8, real value = scale * (q - zero). Every layer runs in place: it copies the input rows
 * it still needs into tm_ring (three rows, zero-point padded at the borders) just before its output
 * rows overwrite them, top-down when the output is no larger than the input, bottom-up otherwise.
 * The generator checks that the chosen order never overwrites a row before it is copied. A max-pool
 * after a conv layer can run inside it (two output rows in tm_pool, then the pooled row to the
 * arena), and a model's first max-pool as the image is loaded. A residual block's shortcut runs
 * inside the layer of its body too: each output row gets the same input row added, which is still
 * in the ring then, so the block's input needs no buffer of its own (tm_shortcut).
 *
 * Arithmetic: integers only. A layer's accumulator is int32: bias + sum(weight * q) over the taps,
 * with the input zero point folded into the bias (padding taps hold the zero point, real zero).
 * Requantization (tm_requant): the high word of the int64 product acc * multiplier, then a
 * rounding arithmetic (flooring) right shift, checked below at compile time; the head rounds its
 * int64 product in one shift. The Python integer reference (tinymnist/export/c/reference.py)
 * defines the same results bit for bit.
 *
 * Kernel sets, chosen at compile time (tm_dsp.h): portable C for any compiler, always built and
 * tested; with TM_SIMD, SIMD kernels for the layers that fit them (tm_requant.simple, channels in
 * fours), the others falling back to the portable ones; with TM_THUMB2 (Cortex-M4), the SIMD
 * kernels' inner loops as Thumb-2 routines (*_m4.c); with TM_THUMB1 (Cortex-M0), the portable
 * kernels' inner loops as Thumb-1 routines (*_m0.c); each routine with its C specification beside
 * the kernel that calls it. A model's source compiles only the kernels its layers run (TM_USES).
 */
#ifndef TM_RUNTIME_H
#define TM_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "tm_config.h"
#include "tm_dsp.h"

/* C99 leaves >> of a negative value to the compiler; every compiler for these targets shifts
 * arithmetically, and this refuses to compile where one does not. */
typedef char tm_requires_arithmetic_shift[((int64_t)-1 >> 1) == -1 ? 1 : -1];

/* ---- Which kernels a build compiles -----------------------------------------------------------
 * A model's source sets TM_KERNELS_PORTABLE and TM_KERNELS_SIMD (tm_config.h) to the kernels its
 * layers run in each kernel set (tm_run_layer's choices, made by codegen.kernels in Python too);
 * code for the others is left out. */
#define TM_K_DENSE3 0x01  /* tm_conv3_dense_row */
#define TM_K_SINGLE3 0x02 /* tm_conv3_single_row and its rows, TM_ROWS_BIASED */
#define TM_K_PLANAR3 0x04 /* tm_conv3_row_simd and the planar row load (SIMD builds) */
#define TM_K_POINT 0x08   /* tm_point_row */
#define TM_K_LANES 0x10   /* tm_point_row_simd (SIMD builds) */
#define TM_K_ROWS 0x20    /* TM_ROWS_INTERLEAVED (tm_load_row): the dense 3x3 kernel, a lone 1x1 conv */
#define TM_K_MAXPOOL 0x40 /* tm_maxpool, a layer of its own */
#define TM_K_POOLED 0x80  /* a max-pool fused into a conv layer (tm_pool, tm_pool_rows) */
#define TM_K_SHORTCUT 0x100 /* a residual block's shortcut in its layer (tm_layer.shortcut, tm_shortcut_row) */
#define TM_K_STEM 0x200   /* tm_run_stem: a stride-2 first conv that reads the caller's image (no tm_load_image) */
#define TM_K_FC 0x400     /* tm_run_head's linear head on the whole map (tm_head.spatial) */
#define TM_K_FC4 0x800    /* the linear head with 4-bit weights (tm_head.packed) */
#define TM_USES(k) (((TM_SIMD ? TM_KERNELS_SIMD : TM_KERNELS_PORTABLE) & (k)) != 0)
#define TM_GENERAL_REQUANT TM_USES(TM_K_DENSE3 | TM_K_SINGLE3 | TM_K_POINT | TM_K_STEM) /* tm_channel_of, tm_output */

/* ---- Layer descriptors (the generated tables) ------------------------------------------------ */

/* Requantization of one layer's outputs, one entry per output channel:
 *   shift 0:       out = clamp(offset + ((acc * multiplier + 2^31) >> 32), low, 127)
 *   shift 1..30:   hi  = (acc * multiplier) >> 32   (the high word of the 64-bit product)
 *                  out = clamp(offset + ((hi + 2^(shift-1)) >> shift), low, 127)
 * both acc * multiplier / 2^(32 + shift) rounded half up (exactly: one rounding).
 * The planar 3x3 part of a SIMD build (tm_layer.conv_planar) has only `bias`, as {bias, multiplier}
 * per channel (the kernel loads both with one LDRD), and `zero`: its shifts are 0, its floor -128,
 * its offset the zero point. */
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

/* The identity shortcut of a residual block, ReLU(body(x) + x), whose body is one layer (a dense 3x3
 * conv, or a separable pair; padding 1, as many output channels as input channels): each output
 * row y of the layer, a, as its last part requantized it, plus the same pixels of its input row y,
 * b, as stored (tm_shortcut_row):
 *   out = saturate_int8((addend + a * ma + b * mb) >> shift)
 * ma / 2^shift and mb / 2^shift are a's and b's scales over the output's; the addend holds the
 * rounding, 2^(shift-1), and the three zero points: zero * 2^shift - za * ma - zb * mb. That is
 * zero + round_half_up(((a - za) ma + (b - zb) mb) / 2^shift), one rounding of both terms; the
 * ReLU is the saturation at -128, the output zero point (a ReLU's range starts at 0). The
 * generator checks that no partial sum leaves int32 (rows of q + 128 included). */
typedef struct {
    int32_t ma, mb;  /* a's and b's multipliers */
    int32_t addend;
    int8_t shift;    /* 1..30; 0: the layer has no shortcut */
} tm_shortcut;

/* One in-place layer: a 3x3 conv (dense or depthwise), a 1x1 conv, or a 3x3 depthwise conv
 * followed by a 1x1 conv (a separable block, fused row by row); any of them optionally followed by
 * a 2x2 max-pool, fused too: output rows 2j and 2j + 1 go to tm_pool, then pooled row j to the
 * arena (an odd last row is never computed), so the unpooled output never exists as a whole. */
typedef struct {
    uint8_t height, width, channels; /* input tensor */
    uint8_t padding;                 /* 0 or 1, for the 3x3 part */
    int8_t zero;                     /* input zero point: the padding value */
    uint8_t bottom_up;               /* row order that keeps the in-place run safe */
    uint8_t pool;                    /* 1: the output rows are 2x2 max-pooled in pairs as they are made */
    uint8_t conv_planar;             /* 1 (SIMD builds): the 3x3 part runs on planar rows (tm_conv3_row_simd),
                                      * as the generator chose: one input channel per output, simple
                                      * requantization with one offset, room for an odd width's extra
                                      * pixel (a byte the alignment of conv_weight leaves free) */
    const int8_t *conv_weight;       /* 3x3 part or NULL: dense [out][3][3][in], depthwise [in][3][3] */
    uint8_t conv_depthwise;
    uint8_t conv_out;                /* output channels of the 3x3 part */
    tm_requant conv_q;
    const int8_t *point_weight;      /* 1x1 part or NULL: [out][in] */
    uint8_t point_out;
    tm_requant point_q;
#if TM_USES(TM_K_SHORTCUT)
    tm_shortcut shortcut;            /* a residual block's shortcut (shift 0: none) */
#endif
} tm_layer;

/* Global average pool (as a sum) and a 1x1 conv to the classes; or (spatial) a linear layer on the
 * whole map, each class a dot product of its weights with the height x width x channels values. */
typedef struct {
    uint8_t height, width, channels, classes;
    uint8_t spatial;                 /* 1: a linear layer on the map (no pool) */
    uint8_t packed;                  /* spatial only, 1: 4-bit weights, -7..7, two to a byte (below) */
    const int8_t *weight;            /* [classes][channels], or spatial [classes][height][width][channels];
                                      * packed: each class's n = height * width * channels weights in
                                      * blocks of 8, four bytes a block, byte j of block b holding
                                      * weight 8b + j in its low nibble and 8b + 4 + j in its high one
                                      * (two's complement nibbles; the last block padded with zeros) */
    const int32_t *bias;             /* the input zero point is folded in */
    const int32_t *multiplier;       /* rescales each class to one common score unit */
    const int8_t *shift;             /* score = (acc * multiplier + 2^(shift-1)) >> shift, in int64 */
} tm_head;

/* ---- Buffers (tm_buffers.c) ------------------------------------------------------------------ */

/* One depthwise output row of a separable layer: int8 (portable kernels), or int16 lanes for the
 * SIMD 1x1 conv (see tm_mid_lane). A union for word alignment (the SIMD routine loads pairs of words). */
typedef union {
    int16_t h[TM_MID_BYTES / 2];
    uint32_t word;
} tm_mid_row;

TM_SHARED int8_t tm_arena[TM_ARENA_BYTES]; /* the activation tensor, in place */
TM_SHARED int8_t tm_ring[TM_RING_BYTES];   /* three padded input rows */
TM_SHARED tm_mid_row tm_mid;
#if TM_USES(TM_K_POOLED)
TM_SHARED int8_t tm_pool[TM_POOL_BYTES];   /* two output rows of a layer with a fused max-pool */
#endif
#define TM_SLOT (TM_RING_BYTES / 3) /* bytes between the ring's three row slots */
#define TM_MAX_WIDTH 28             /* the image's: no layer's output row is wider (rows of sums) */

/* Position of channel c in a pixel's int16 lanes in tm_mid: per four channels the order c0 c2 c1
 * c3, so that the words (c0, c2) and (c1, c3) pair with a weight word's SXTB16 even and odd lanes. */
static TM_INLINE int tm_mid_lane(int c)
{
    return (c & ~3) | (c & 1) << 1 | (c >> 1 & 1);
}

/* The image as int8 (pixel - 128) at the start of the arena: 28 x 28, or with TM_INPUT_POOL its
 * 2x2 max-pool, 14 x 14 (the max of the uint8 pixels, then - 128: the shift keeps the order). */
#if !TM_USES(TM_K_STEM)
TM_PRIVATE void tm_load_image(const uint8_t image[784]);
#endif

/* ---- Requantization (tm_requant.c) ----------------------------------------------------------- */

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
#if TM_MUL32
    uint32_t m_low; /* the multiplier's low 16 bits, unsigned */
    int32_t m_high; /* multiplier >> 16 */
#endif
} tm_channel;

#if TM_GENERAL_REQUANT
TM_PRIVATE tm_channel tm_channel_of(const tm_requant *q, int c);
#if !TM_THUMB1
TM_PRIVATE int8_t tm_output(int32_t acc, const tm_channel *k); /* acc requantized by tm_requant's rule */
#endif
/* One output channel of a row: out[x * stride] = tm_output(sums[x], k), x < n (n >= 1; the sums
 * include the bias). The Thumb-1 build runs it as a routine (tm_output_row_m0.c; it reads the
 * tm_channel at fixed offsets); the C in tm_requant.c is its specification. */
#if TM_THUMB1
void tm_output_row_m0(const int32_t *sums, int n, int8_t *out, int stride, const tm_channel *k);
#define tm_output_row tm_output_row_m0
#else
TM_PRIVATE void tm_output_row(const int32_t *sums, int n, int8_t *out, int stride, const tm_channel *k);
#endif
#endif

#if TM_SIMD
/* The simple requantization (tm_requant.simple): saturate(offset + rounded high word). */
static TM_INLINE int8_t tm_simple(int32_t acc, int32_t multiplier, int32_t offset)
{
    return (int8_t)tm_ssat8(tm_smmulr(acc, multiplier) + offset);
}
#endif

/* ---- Input rows: the ring (tm_rows.c) -------------------------------------------------------- */

TM_PRIVATE int tm_slot_index(int r);  /* the ring slot of input row r (r >= -3): r mod 3 */
TM_PRIVATE int8_t *tm_slot(int r);    /* that slot: tm_ring + tm_slot_index(r) * TM_SLOT */
#if TM_USES(TM_K_PLANAR3)
TM_PRIVATE int tm_plane_bytes(int padded_width); /* bytes per channel of a planar slot */
#endif

/* Copy input row r of the arena (-1 and height: padding rows) into its ring slot, zero-point
 * padded, in one of three layouts:
 *   TM_ROWS_INTERLEAVED  [padded_width][channels], int8 (the dense 3x3 kernel, a lone 1x1 conv)
 *   TM_ROWS_PLANAR       channel c's padded row at slot + c * tm_plane_bytes(padded_width), int8
 *                        (the SIMD 3x3 kernel: four neighbouring pixels of a channel per word)
 *   TM_ROWS_BIASED       channel c's padded row at slot + c * padded_width, as uint8 q + 128 (the
 *                        portable single-channel 3x3 kernel: on Thumb-1 an unsigned byte load
 *                        takes an immediate offset, a signed one does not) */
#define TM_ROWS_INTERLEAVED 0
#define TM_ROWS_PLANAR 1
#define TM_ROWS_BIASED 2
TM_PRIVATE void tm_fetch_row(const tm_layer *L, int r, int padded_width, int layout);

/* The 4 x 4 byte transposes of a planar row load: `blocks` times, four pixels (channels bytes
 * apart) of every four channels from src to four planes (plane bytes apart) at dst, one word to
 * each plane; then the next four pixels. channels: a multiple of 4. The Cortex-M4 build runs it
 * as a Thumb-2 routine (tm_plane_blocks_m4.c: UXTB16 / PKHBT / PKHTB); the C in tm_rows.c is its
 * specification. */
#if TM_THUMB2 && TM_USES(TM_K_PLANAR3)
void tm_plane_blocks_m4(const int8_t *src, int8_t *dst, int channels, int plane, int blocks);
#define tm_plane_blocks tm_plane_blocks_m4
#endif

/* ---- 3x3 conv, portable (tm_conv3x3.c) -------------------------------------------------------
 * One output row from the three padded input rows r0..r2 (ring slots), out_width pixels of the
 * given channels to `out` ([out_width][channels]), general requantization. */

/* One input channel per output (depthwise: step 1, or a dense conv of a 1-channel input: step 0)
 * on TM_ROWS_BIASED rows (`plane` bytes per channel); weights [channels][3][3]. */
#if TM_USES(TM_K_SINGLE3)
TM_PRIVATE void tm_conv3_single_row(const uint8_t *r0, const uint8_t *r1, const uint8_t *r2, int plane, int8_t *out,
                                    int out_width, int channels, int step, const int8_t *weight, const tm_requant *q);
#endif
/* One channel's row of sums from three biased planar rows p0..p2 (its 3 x 3 window at p + 0, 1, 2:
 * byte loads with immediate offsets), n >= 1 pixels. The rows hold u = q + 128, so sum(w * q) =
 * sum(w * u) - 128 sum(w): each sum starts at bias - 128 sum(w). The Thumb-1 build runs it as a
 * routine (tm_conv3_sums_m0.c); the C in tm_conv3x3.c is its specification. */
#if TM_THUMB1 && TM_USES(TM_K_SINGLE3)
void tm_conv3_sums_m0(const uint8_t *p0, const uint8_t *p1, const uint8_t *p2, const int8_t *w, int32_t bias,
                      int32_t *sums, int n);
#define tm_conv3_sums tm_conv3_sums_m0
#endif
/* Dense, on TM_ROWS_INTERLEAVED rows: weights [cout][3][3][cin]. */
#if TM_USES(TM_K_DENSE3)
TM_PRIVATE void tm_conv3_dense_row(const int8_t *r0, const int8_t *r1, const int8_t *r2, int8_t *out, int out_width,
                                   int cin, int cout, const int8_t *weight, const tm_requant *q);
#endif

/* ---- 3x3 conv, SIMD on planar rows (tm_conv3x3_planar.c) ---------------------------------------
 * One input channel per output (depthwise, or a dense conv of a 1-channel input), simple
 * requantization with one offset for every channel: one output row, a channel at a time, two
 * output pixels per step from one word of each of the three input rows. With a word
 * v = (p0, p1, p2, p3) of a row, e = (p0, p2), d = (p1, p3) (SXTB16) and that row's weights
 * w0 w1 w2, ac = (w0, w2):
 *   out[x]     += e.ac + p1 * w1   (SMLAD, then SMLABB: the bottom lane of d)
 *   out[x + 1] += d.ac + p2 * w1   (SMLAD, then SMLATB: the top lane of e)
 * A channel's weights [3][3] give both from one word per kernel row k, the four bytes at 3k:
 * SXTB16 is (w0, w2), SXTB16 ROR #8 has w1 in its bottom lane (the last channel's last row reads
 * a byte past its weights: the generator pads the table with one byte in SIMD builds).
 * The input rows are the ring slots 0, 1, 2 at fixed distances TM_SLOT; `row0..row2` name the
 * kernel row each slot holds for this output row (the weights rotate, not the rows). An odd
 * width computes one pixel past the row: the caller passes an output with room for it.
 * tm_conv3_rows is the loop over channels and pixel pairs: the Cortex-M4 build runs it as a
 * Thumb-2 routine (tm_conv3_rows_m4.c; its LDR offsets reach slot 2 only while 2 * TM_SLOT fits
 * in 12 bits); the C in tm_conv3x3_planar.c is its specification, which the host builds run.
 * The job is laid out as the routine's stack frame (it copies its first 13 words there, `wide`
 * replaced by its loop's address, and reloads them with one LDM per channel): field offsets are
 * fixed. Per channel the routine writes back the next channel's `scale` and `w`, the rotated
 * steps, the channel's output and its multiplier (which its pixel loop reads beside the offset). */
typedef struct {
    const int32_t *scale;       /*  0: channel o's bias and multiplier (tm_requant.bias; advanced) */
    const int8_t *w;            /*  4: channel o's weights [3][3] (advanced) */
    uint32_t steps;             /*  8: bytes from channel o's output to o + 1's, then o + 2's ...: signed
                                 *     bytes, the next one lowest (rotated a byte per channel; period 4) */
    void *out;                  /* 12: channel o's output of the row's first pixel (advanced) */
    int32_t multiplier;         /* 16: channel o's (the routine's) */
    int32_t offset;             /* 20: the output zero point, every channel's offset */
    int32_t row0, row1, row2;   /* 24, 28, 32: offsets in w of the kernel rows in ring slots 0, 1, 2 */
    int32_t in_skip;            /* 36: from the end of channel o's input row to channel o + 1's plane */
    int32_t stride;             /* 40: bytes between one channel's output pixels */
    const int32_t *end;         /* 44: `scale` past the last channel */
    int32_t span;               /* 48: input bytes of a channel's row: 2 per output pixel pair */
    int32_t wide;               /* 52: 1: int16 lanes in tm_mid_lane order; 0: int8 (the routine: its loop) */
    const int8_t *in;           /* 56: channel 0's plane in ring slot 0 */
} tm_conv3_job;

#define TM_THUMB2_CONV3 (TM_THUMB2 && TM_SLOT * 2 <= 4095 && TM_USES(TM_K_PLANAR3))
#if TM_THUMB2_CONV3
void tm_conv3_rows_m4(tm_conv3_job *job);
#define tm_conv3_rows tm_conv3_rows_m4
#endif

#if TM_SIMD && TM_USES(TM_K_PLANAR3)
/* Output row y of layer L (its planes, `plane` bytes each, in the ring) to `out`: int8 with
 * conv_out channels per pixel, or (wide) tm_mid's int16 lanes with mid_channels per pixel. */
TM_PRIVATE void tm_conv3_row_simd(const tm_layer *L, int y, int plane, void *out, int out_width, int wide,
                                  int mid_channels);
#endif

/* ---- 1x1 conv, portable (tm_conv1x1.c) -------------------------------------------------------- */

/* width pixels of cin channels in `in` to cout channels in `out`; weights [cout][cin]. */
#if TM_USES(TM_K_POINT)
TM_PRIVATE void tm_point_row(const int8_t *in, int8_t *out, int width, int cin, int cout, const int8_t *weight,
                             const tm_requant *q);
#endif

/* One output channel's sums over a row: sums[x] = bias + sum over i of in[x * cin + i] * w[i],
 * x < width, two pixels at a time (each weight loaded once for both; an odd width's last pixel is
 * computed twice, into sums[width] too). The Thumb-1 build runs it as a routine
 * (tm_point_sums_m0.c: 2 MACs in 9 instructions); the C in tm_conv1x1.c is its specification. */
#if TM_THUMB1 && TM_USES(TM_K_POINT)
void tm_point_sums_m0(const int8_t *in, const int8_t *w, int cin, int width, int32_t *sums, int32_t bias);
#define tm_point_sums tm_point_sums_m0
#endif

/* ---- 1x1 conv, SIMD on int16 lanes (tm_conv1x1_lanes.c) ----------------------------------------
 * Four output channels o..o+3 of a row: first their weights (rows cin apart from `weight`) split
 * into int16 lanes in `lanes` (per 4 input channels the words o even, o odd, o+1 even, ..., o+3
 * odd, which pair with the input words (c0, c2) and (c1, c3): tm_mid_lane); then, pixel by pixel
 * from `in` to `in_end`, the four sums over the int16 input lanes, requantized (simple) and
 * stored to out[0..3], and `out` advanced by cout. The Cortex-M4 build runs it as a Thumb-2
 * routine (tm_point_quads_m4.c: 16 MACs in 13 instructions, the sums and weights in registers);
 * the C in tm_conv1x1_lanes.c is its specification, which the host builds run. Field offsets are
 * fixed: the routine reads them. */
typedef struct {
    int32_t bias[4];        /*  0: the four channels' */
    int32_t scale[8];       /* 16: multiplier, offset of channel o, then o+1, o+2, o+3 */
    const int16_t *in;      /* 48: the first pixel's int16 lanes, word aligned */
    const int16_t *in_end;  /* 52: past the last pixel */
    int8_t *out;            /* 56: the first pixel's output channel o (advanced by the routine) */
    int32_t cout;           /* 60: bytes between output pixels */
    const int8_t *weight;   /* 64: channel o's weights [cin] */
    int32_t cin;            /* 68: a multiple of 4, at most TM_POINT_CIN */
    uint32_t lanes[2 * TM_POINT_CIN]; /* 72: the split weights, written by the routine */
} tm_quad_job;

#if TM_THUMB2 && TM_USES(TM_K_LANES)
void tm_point_quads_m4(tm_quad_job *job);
#define tm_point_quads tm_point_quads_m4
#endif

#if TM_SIMD && TM_USES(TM_K_LANES)
/* width pixels of int16 lanes (tm_mid_lane order, cin a multiple of 4, at most TM_POINT_CIN) to
 * cout int8 channels (at least 4) in `out`; weights [cout][cin]; simple requantization. */
TM_PRIVATE void tm_point_row_simd(const int16_t *in, int8_t *out, int width, int cin, int cout, const int8_t *weight,
                                  const tm_requant *q);
#endif

/* ---- Residual shortcut (tm_shortcut.c) --------------------------------------------------------- */

/* Output row `out` of layer L ([width][channels]) plus the shortcut (L->shortcut) from input row y,
 * read from its ring slot in the layout tm_run_layer chose for the layer's 3x3 part, in place. */
#if TM_USES(TM_K_SHORTCUT)
TM_PRIVATE void tm_shortcut_row(const tm_layer *L, int8_t *out, int y);
#endif

/* ---- Layers (tm_layer.c, tm_maxpool.c, tm_head.c) --------------------------------------------- */

/* One conv layer in place in the arena, row by row (L->bottom_up: the order), choosing each
 * part's kernel; a shortcut, then a fused pool, on each output row as it is made. */
TM_PRIVATE void tm_run_layer(const tm_layer *L);
/* 2x2 max-pool, stride 2, of two rows a and b of width pixels (channels each) to width / 2 pixels
 * at out; out may be a or lie before it (each output is written after its inputs are read). */
#if TM_USES(TM_K_MAXPOOL | TM_K_POOLED)
TM_PRIVATE void tm_pool_rows(const int8_t *a, const int8_t *b, int8_t *out, int width, int channels);
#endif
/* 2x2 max-pool, stride 2, in place: height x width x channels to (height / 2) x (width / 2). */
#if TM_USES(TM_K_MAXPOOL)
TM_PRIVATE void tm_maxpool(int height, int width, int channels);
#endif
/* The stem (tm_stem.c): a dense 3x3 conv with stride 2 and padding 1 of the image (uint8 pixels,
 * L->height x L->width, one channel: q = pixel - 128 with L->zero the input zero point) to
 * ceil(height / 2) x ceil(width / 2) x L->conv_out int8 at the start of the arena; conv_weight
 * [out][3][3], conv_q general. The network's first layer, in place of tm_load_image. */
#if TM_USES(TM_K_STEM)
TM_PRIVATE void tm_run_stem(const tm_layer *L, const uint8_t image[]);
#endif
/* The head on the arena's height x width x channels tensor: classes int32 scores. */
TM_PRIVATE void tm_run_head(const tm_head *H, int32_t scores[]);

#endif /* TM_RUNTIME_H */
