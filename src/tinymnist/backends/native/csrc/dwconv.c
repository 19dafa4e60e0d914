/* Depthwise 3x3 convolution, stride 1, padding 1, NHWC with channel stride CS = 8 NV:
 * forward (+ per-image statistics), input gradient (the same kernel, taps flipped) and weight
 * gradient. Vectorized across channels (one 16- or 8-channel group at a time); each output row
 * slides a 3 x 3 window of input vectors along the row, with rows of zeros above and below. */
#include "tm_kernels.h"
#include "tm_common.h"
#include <stdlib.h>

/* The input window of one channel group: the three rows an output row reads (a row of zeros where
 * one lies outside the image), each with the tm_act scale and shift its values are normalized by as
 * they are loaded (zero vectors for a row of zeros, which must stay zeros; unused without ACT). */
typedef struct dw_rows {
    const float *r[3];
    v8 scale[3], shift[3];
} dw_rows;

/* Input column `o` (a float offset) of row k, normalized when ACT: the same expression as
 * tm_bn_apply, so the same bits as reading a normalized tensor. */
TM_INLINE v8 dw_in(const dw_rows *rows, int k, size_t o, int relu, const int ACT)
{
    const v8 x = v8_load(rows->r[k] + o);
    return ACT ? act_vec(x, rows->scale[k], rows->shift[k], relu) : x;
}

/* The window's next column: input column ow + 1 of each row (zeros past the row's end). */
TM_INLINE void dw_next(const dw_rows *rows, int ow, int W, int CS, int relu, v8 *c0, v8 *c1, v8 *c2, const int ACT)
{
    *c0 = *c1 = *c2 = v8_zero();
    if (ow + 1 < W) {
        const size_t o = (size_t)(ow + 1) * CS;
        *c0 = dw_in(rows, 0, o, relu, ACT);
        *c1 = dw_in(rows, 1, o, relu, ACT);
        *c2 = dw_in(rows, 2, o, relu, ACT);
    }
}

/* The rows of output row oh of image xn (channel group at lane offset `lane`); act: see tm_act. */
TM_INLINE dw_rows dw_window(const float *xn, const float *zero, const tm_act *act, int oh, int H, int W, int CS,
                            int lane, const int ACT)
{
    dw_rows rows;
    for (int k = 0; k < 3; k++) {
        const int ih = oh + k - 1;
        const int inside = ih >= 0 && ih < H;
        rows.r[k] = (inside ? xn + (size_t)ih * W * CS : zero) + lane;
        rows.scale[k] = rows.shift[k] = v8_zero();
        if (ACT && inside) {
            rows.scale[k] = v8_load(act->scale + lane);
            rows.shift[k] = v8_load(act->shift + lane);
        }
    }
    return rows;
}

/* One output row of one 16- (or 8-) channel group: y[ow] = sum_{kh,kw} x[kh][ow+kw-1] * w[kh*3+kw],
 * summed in the order kh, kw (the taps outside the image add zeros). A 3 x 3 window of input vectors
 * slides along the row: 3 loads per 9 FMAs (a block of pixels reading every tap would load 9 per 9,
 * and be bound by the machine's load rate). Channel groups are independent in a depthwise conv. */
TM_INLINE void dw_row(const dw_rows *rows, int relu, const v8 *w, float *restrict yrow, int W, int CS, v8 *s1,
                      v8 *s2, int stats, const int ACT)
{
    const v8 z = v8_zero();
    v8 a0 = z, b0 = dw_in(rows, 0, 0, relu, ACT), a1 = z, b1 = dw_in(rows, 1, 0, relu, ACT), a2 = z,
       b2 = dw_in(rows, 2, 0, relu, ACT);
    for (int ow = 0; ow < W; ow++) {
        v8 c0, c1, c2;
        dw_next(rows, ow, W, CS, relu, &c0, &c1, &c2, ACT);
        v8 acc = a0 * w[0];
        TM_SEQUENCE(acc); /* the sum in tap order, one FMA per tap after the first product */
        acc += b0 * w[1];
        acc += c0 * w[2];
        acc += a1 * w[3];
        acc += b1 * w[4];
        acc += c1 * w[5];
        acc += a2 * w[6];
        acc += b2 * w[7];
        acc += c2 * w[8];
        v8_store(yrow + (size_t)ow * CS, acc);
        if (stats) {
            *s1 += acc;
            *s2 += acc * acc;
        }
        a0 = b0, b0 = c0, a1 = b1, b1 = c1, a2 = b2, b2 = c2;
    }
}

/* y[n,oh,ow,c] = sum_{kh,kw} x[n, oh+kh-1, ow+kw-1, c] * wt[kh*3+kw, c];  wt: 9 x CS. */
TM_INLINE void dw_body(const float *restrict x, const tm_act *act, const float *restrict wt, float *restrict y,
                       double *restrict stats, int n0, int n1, int H, int W, const int NV, const int ACT)
{
    const int CS = TM_VL * NV, relu = ACT ? act->relu : 0;
    const float *zero = tm_zeros((size_t)W * CS);
    for (int n = n0; n < n1; n++) {
        double s1[64] = {0}, s2[64] = {0};
        const float *xn = x + (size_t)n * H * W * CS;
        for (int v = 0; v < NV; v++) {
            v8 w[9];
            for (int t = 0; t < 9; t++) w[t] = v8_load(wt + (size_t)t * CS + TM_VL * v);
            for (int oh = 0; oh < H; oh++) {
                const dw_rows rows = dw_window(xn, zero, act, oh, H, W, CS, TM_VL * v, ACT);
                v8 r1s = v8_zero(), r2s = v8_zero();
                dw_row(&rows, relu, w, y + ((size_t)n * H + oh) * W * CS + TM_VL * v, W, CS, &r1s, &r2s, stats != NULL,
                       ACT);
                if (stats) stats_add_row(s1 + TM_VL * v, s2 + TM_VL * v, &r1s, &r2s, 1);
            }
        }
        if (stats) stats_store(stats, n, s1, s2, CS);
    }
}

TM_NOINLINE void dw_range(const float *restrict x, const tm_act *act, const float *restrict wt, float *restrict y,
                          double *restrict stats, int n0, int n1, int H, int W, int CS)
{
#define TM_DW(NV) dw_body(x, act, wt, y, stats, n0, n1, H, W, NV, 0)
#define TM_DW_ACT(NV) dw_body(x, act, wt, y, stats, n0, n1, H, W, NV, 1)
    if (act) {
        TM_DISPATCH_NV(CS, TM_DW_ACT)
    } else {
        TM_DISPATCH_NV(CS, TM_DW)
    }
#undef TM_DW
#undef TM_DW_ACT
}

static void dw_run(const float *x, const tm_act *act, const float *wt, float *y, double *stats, int N, int H, int W,
                   int CS)
{
    #pragma omp parallel
    {
        size_t lo, hi;
        tm_thread_range((size_t)N, &lo, &hi);
        dw_range(x, act, wt, y, stats, (int)lo, (int)hi, H, W, CS);
    }
}

/* wt[t, c] = w[c, flip ? 8 - t : t] */
static float *dw_pack(const float *w, int C, int flip)
{
    const int CS = tm_roundv(C);
    float *wt = calloc((size_t)9 * CS, sizeof(float));
    for (int c = 0; c < C; c++)
        for (int t = 0; t < 9; t++) wt[(size_t)t * CS + c] = w[(size_t)c * 9 + (flip ? 8 - t : t)];
    return wt;
}

void tm_dwconv_forward(const float *x, const tm_act *act, const float *w, float *y, double *stats,
                       int N, int H, int W, int C)
{
    float *wt = dw_pack(w, C, 0);
    dw_run(x, act, wt, y, stats, N, H, W, tm_roundv(C));
    free(wt);
}

/* partial[n, t, :] = sum over output pixels of x[pixel shifted by tap t] * dy[pixel], pixels in
 * row-major order (taps outside the image add zeros). One channel group at a time: 9 accumulators and
 * a sliding 3 x 3 window of input vectors (4 loads per 9 FMAs, as in dw_row); x normalized as read
 * when ACT, as the forward read it. */
TM_INLINE void dw_wgrad_body(const float *restrict x, const tm_act *act, const float *restrict dy,
                             float *restrict partial, int n0, int n1, int H, int W, const int NV, const int ACT)
{
    const int CS = TM_VL * NV, relu = ACT ? act->relu : 0;
    const float *zero = tm_zeros((size_t)W * CS);
    for (int n = n0; n < n1; n++) {
        const float *xn = x + (size_t)n * H * W * CS, *dyn = dy + (size_t)n * H * W * CS;
        float *P = partial + (size_t)n * 9 * CS;
        for (int v = 0; v < NV; v++) {
            v8 acc[9];
            for (int t = 0; t < 9; t++) acc[t] = v8_zero();
            for (int oh = 0; oh < H; oh++) {
                const dw_rows rows = dw_window(xn, zero, act, oh, H, W, CS, TM_VL * v, ACT);
                const float *dr = dyn + (size_t)oh * W * CS + TM_VL * v;
                const v8 z = v8_zero();
                v8 a0 = z, b0 = dw_in(&rows, 0, 0, relu, ACT), a1 = z, b1 = dw_in(&rows, 1, 0, relu, ACT), a2 = z,
                   b2 = dw_in(&rows, 2, 0, relu, ACT);
                for (int ow = 0; ow < W; ow++) {
                    v8 c0, c1, c2;
                    dw_next(&rows, ow, W, CS, relu, &c0, &c1, &c2, ACT);
                    const v8 d = v8_load(dr + (size_t)ow * CS);
                    acc[0] += a0 * d;
                    acc[1] += b0 * d;
                    acc[2] += c0 * d;
                    acc[3] += a1 * d;
                    acc[4] += b1 * d;
                    acc[5] += c1 * d;
                    acc[6] += a2 * d;
                    acc[7] += b2 * d;
                    acc[8] += c2 * d;
                    a0 = b0, b0 = c0, a1 = b1, b1 = c1, a2 = b2, b2 = c2;
                }
            }
            for (int t = 0; t < 9; t++) v8_store(P + (size_t)t * CS + TM_VL * v, acc[t]);
        }
    }
}

TM_NOINLINE void dw_wgrad_range(const float *restrict x, const tm_act *act, const float *restrict dy,
                                float *restrict partial, int n0, int n1, int H, int W, int CS)
{
#define TM_DWG(NV) dw_wgrad_body(x, act, dy, partial, n0, n1, H, W, NV, 0)
#define TM_DWG_ACT(NV) dw_wgrad_body(x, act, dy, partial, n0, n1, H, W, NV, 1)
    if (act) {
        TM_DISPATCH_NV(CS, TM_DWG_ACT)
    } else {
        TM_DISPATCH_NV(CS, TM_DWG)
    }
#undef TM_DWG
#undef TM_DWG_ACT
}

void tm_dwconv_backward(const float *x, const tm_act *act, const float *dy, const float *w, float *dw, float *partial,
                        float *dx, const float *dx_add, const tm_bn_sums_of *sums, int N, int H, int W, int C)
{
    const int CS = tm_roundv(C);
    const size_t image = (size_t)H * W * CS;
    float *wt = dx ? dw_pack(w, C, 1) : NULL;
    #pragma omp parallel
    {
        size_t lo, hi;
        tm_thread_range((size_t)N, &lo, &hi);
        for (size_t n = lo; n < hi; n++) { /* image by image: dy (and x) read from memory once */
            dw_wgrad_range(x, act, dy, partial, (int)n, (int)n + 1, H, W, CS);
            if (!dx) continue;
            dw_range(dy + n * image, NULL, wt, dx + n * image, NULL, 0, 1, H, W, CS);
            if (dx_add) tm_join_range(dx + n * image, dx_add + n * image, image); /* a shortcut's gradient */
            if (sums) tm_bn_sums(sums, dx, (int)n, (int)n + 1, H * W, C);
        }
    }
    free(wt);
    float *sum = malloc((size_t)9 * CS * sizeof(float));
    tm_reduce_images(partial, sum, N, (size_t)9 * CS);
    for (int c = 0; c < C; c++)
        for (int t = 0; t < 9; t++) dw[(size_t)c * 9 + t] = sum[(size_t)t * CS + c];
    free(sum);
}
