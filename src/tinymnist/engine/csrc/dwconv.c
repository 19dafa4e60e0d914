/* Depthwise 3x3 convolution, stride 1, padding 1, NHWC with channel stride CS = 8 NV:
 * forward (+ per-image statistics), input gradient (the same kernel, taps flipped) and weight
 * gradient. Vectorized across channels (one 16- or 8-channel group at a time); each output row
 * slides a 3 x 3 window of input vectors along the row, with rows of zeros above and below. */
#include "tm_kernels.h"
#include "tm_common.h"
#include <stdlib.h>

/* One output row of one 16- (or 8-) channel group: y[ow] = sum_{kh,kw} rows[kh][ow+kw-1] * w[kh*3+kw],
 * rows[kh] the input rows oh-1, oh, oh+1 (a row of zeros where one lies outside the image), summed
 * in the order kh, kw (the taps outside the image add zeros). A 3 x 3 window of input vectors slides
 * along the row: 3 loads per 9 FMAs (a block of pixels reading every tap loaded 9 per 9, and the
 * kernel ran at the machine's load rate). Channel groups are independent in a depthwise conv. */
TM_INLINE void dw_row(const float *restrict r0, const float *restrict r1, const float *restrict r2,
                      const v8 *w, float *restrict yrow, int W, int CS, v8 *s1, v8 *s2, int stats)
{
    const v8 z = v8_zero();
    v8 a0 = z, b0 = v8_load(r0), a1 = z, b1 = v8_load(r1), a2 = z, b2 = v8_load(r2);
    for (int ow = 0; ow < W; ow++) {
        v8 c0 = z, c1 = z, c2 = z;
        if (ow + 1 < W) {
            const size_t o = (size_t)(ow + 1) * CS;
            c0 = v8_load(r0 + o);
            c1 = v8_load(r1 + o);
            c2 = v8_load(r2 + o);
        }
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
TM_INLINE void dw_body(const float *restrict x, const float *restrict wt, float *restrict y, double *restrict stats,
                       int n0, int n1, int H, int W, const int NV)
{
    const int CS = TM_VL * NV;
    const float *zero = tm_zeros((size_t)W * CS);
    for (int n = n0; n < n1; n++) {
        double s1[64] = {0}, s2[64] = {0};
        const float *xn = x + (size_t)n * H * W * CS;
        for (int v = 0; v < NV; v++) {
            v8 w[9];
            for (int t = 0; t < 9; t++) w[t] = v8_load(wt + (size_t)t * CS + TM_VL * v);
            for (int oh = 0; oh < H; oh++) {
                const float *r0 = oh > 0 ? xn + (size_t)(oh - 1) * W * CS : zero;
                const float *r1 = xn + (size_t)oh * W * CS;
                const float *r2 = oh + 1 < H ? xn + (size_t)(oh + 1) * W * CS : zero;
                v8 r1s = v8_zero(), r2s = v8_zero();
                dw_row(r0 + TM_VL * v, r1 + TM_VL * v, r2 + TM_VL * v, w, y + ((size_t)n * H + oh) * W * CS + TM_VL * v,
                       W, CS, &r1s, &r2s, stats != NULL);
                if (stats)
                    for (int l = 0; l < TM_VL; l++) {
                        s1[TM_VL * v + l] += r1s[l];
                        s2[TM_VL * v + l] += r2s[l];
                    }
            }
        }
        if (stats) stats_store(stats, n, s1, s2, CS);
    }
}

TM_NOINLINE void dw_range(const float *restrict x, const float *restrict wt, float *restrict y, double *restrict stats,
                          int n0, int n1, int H, int W, int CS)
{
#define TM_DW(NV) dw_body(x, wt, y, stats, n0, n1, H, W, NV)
    TM_DISPATCH_NV(CS, TM_DW)
#undef TM_DW
}

/* dw_range on images n0..n1-1 of z normalized as read: each image goes through the thread's scratch
 * (an L2-sized buffer), not through a whole-batch tensor in memory. */
static void dw_range_act(const float *z, const tm_act *act, const float *wt, float *y, double *stats,
                         int n0, int n1, int H, int W, int CS)
{
    const size_t image = (size_t)H * W * CS;
    float *a = tm_scratch(image);
    for (int n = n0; n < n1; n++) {
        tm_act_pixels(z + n * image, a, act->scale, act->shift, act->relu, (size_t)H * W, CS);
        dw_range(a, wt, y + n * image, stats ? stats + (size_t)n * 2 * CS : NULL, 0, 1, H, W, CS);
    }
}

static void dw_run(const float *x, const tm_act *act, const float *wt, float *y, double *stats, int N, int H, int W,
                   int CS)
{
    #pragma omp parallel
    {
        size_t lo, hi;
        tm_thread_range((size_t)N, &lo, &hi);
        if (act)
            dw_range_act(x, act, wt, y, stats, (int)lo, (int)hi, H, W, CS);
        else
            dw_range(x, wt, y, stats, (int)lo, (int)hi, H, W, CS);
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

void tm_dwconv_backward_data(const float *dy, const float *w, float *dx, const tm_bn_sums_of *sums,
                             int N, int H, int W, int C)
{
    float *wt = dw_pack(w, C, 1);
    const int CS = tm_roundv(C);
    if (!sums) {
        dw_run(dy, NULL, wt, dx, NULL, N, H, W, CS);
    } else {
        const size_t image = (size_t)H * W * CS;
        #pragma omp parallel
        {
            size_t lo, hi;
            tm_thread_range((size_t)N, &lo, &hi);
            for (size_t n = lo; n < hi; n++) { /* the BatchNorm's sums of each image while it is in cache */
                dw_range(dy + n * image, wt, dx + n * image, NULL, 0, 1, H, W, CS);
                tm_bn_sums(sums, dx, (int)n, (int)n + 1, H * W, C);
            }
        }
    }
    free(wt);
}

/* partial[n, t, :] = sum over output pixels of x[pixel shifted by tap t] * dy[pixel], pixels in
 * row-major order (taps outside the image add zeros). One channel group at a time: 9 accumulators and
 * a sliding 3 x 3 window of input vectors (4 loads per 9 FMAs, as in dw_row). */
TM_INLINE void dw_wgrad_body(const float *restrict x, const float *restrict dy, float *restrict partial,
                             int n0, int n1, int H, int W, const int NV)
{
    const int CS = TM_VL * NV;
    const float *zero = tm_zeros((size_t)W * CS);
    for (int n = n0; n < n1; n++) {
        const float *xn = x + (size_t)n * H * W * CS, *dyn = dy + (size_t)n * H * W * CS;
        float *P = partial + (size_t)n * 9 * CS;
        for (int v = 0; v < NV; v++) {
            v8 acc[9];
            for (int t = 0; t < 9; t++) acc[t] = v8_zero();
            for (int oh = 0; oh < H; oh++) {
                const float *r0 = (oh > 0 ? xn + (size_t)(oh - 1) * W * CS : zero) + TM_VL * v;
                const float *r1 = xn + (size_t)oh * W * CS + TM_VL * v;
                const float *r2 = (oh + 1 < H ? xn + (size_t)(oh + 1) * W * CS : zero) + TM_VL * v;
                const float *dr = dyn + (size_t)oh * W * CS + TM_VL * v;
                const v8 z = v8_zero();
                v8 a0 = z, b0 = v8_load(r0), a1 = z, b1 = v8_load(r1), a2 = z, b2 = v8_load(r2);
                for (int ow = 0; ow < W; ow++) {
                    v8 c0 = z, c1 = z, c2 = z;
                    if (ow + 1 < W) {
                        const size_t o = (size_t)(ow + 1) * CS;
                        c0 = v8_load(r0 + o);
                        c1 = v8_load(r1 + o);
                        c2 = v8_load(r2 + o);
                    }
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

TM_NOINLINE void dw_wgrad_range(const float *restrict x, const float *restrict dy, float *restrict partial,
                                int n0, int n1, int H, int W, int CS)
{
#define TM_DWG(NV) dw_wgrad_body(x, dy, partial, n0, n1, H, W, NV)
    TM_DISPATCH_NV(CS, TM_DWG)
#undef TM_DWG
}

void tm_dwconv_backward_weight(const float *x, const tm_act *act, const float *dy, float *dw, float *partial,
                               int N, int H, int W, int C)
{
    const int CS = tm_roundv(C);
    #pragma omp parallel
    {
        size_t lo, hi;
        tm_thread_range((size_t)N, &lo, &hi);
        if (act) { /* x recomputed image by image from z, as the forward read it */
            const size_t image = (size_t)H * W * CS;
            float *a = tm_scratch(image);
            for (size_t n = lo; n < hi; n++) {
                tm_act_pixels(x + n * image, a, act->scale, act->shift, act->relu, (size_t)H * W, CS);
                dw_wgrad_range(a, dy + n * image, partial + n * 9 * CS, 0, 1, H, W, CS);
            }
        } else {
            dw_wgrad_range(x, dy, partial, (int)lo, (int)hi, H, W, CS);
        }
    }
    float *sum = malloc((size_t)9 * CS * sizeof(float));
    tm_reduce_images(partial, sum, N, (size_t)9 * CS);
    for (int c = 0; c < C; c++)
        for (int t = 0; t < 9; t++) dw[(size_t)c * 9 + t] = sum[(size_t)t * CS + c];
    free(sum);
}
