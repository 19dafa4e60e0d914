/* Depthwise 3x3 convolution, stride 1, padding 1, NHWC with channel stride CS = 8 NV:
 * forward (+ per-image statistics), input gradient (the same kernel, taps flipped) and weight
 * gradient. Vectorized across channels; interior pixels in blocks without edge checks. */
#include "tm_kernels.h"
#include "tm_common.h"
#include <stdlib.h>

/* y[n,oh,ow,c] = sum_{kh,kw} x[n, oh+kh-1, ow+kw-1, c] * wt[kh*3+kw, c];  wt: 9 x CS. */
TM_INLINE void dw_body(const float *restrict x, const float *restrict wt, float *restrict y, double *restrict stats,
                       int n0, int n1, int H, int W, const int NV)
{
    const int CS = TM_VL * NV, PB = TM_PB(NV);
    for (int n = n0; n < n1; n++) {
        double s1[64] = {0}, s2[64] = {0};
        for (int oh = 0; oh < H; oh++) {
            const int kh0 = oh == 0 ? 1 : 0, kh1 = oh == H - 1 ? 2 : 3;
            float *yrow = y + ((size_t)n * H + oh) * W * CS;
            v8 r1[8] = {0}, r2[8] = {0};
            TM_UNROLL
            for (int v = 0; v < NV; v++) r1[v] = r2[v] = v8_zero();
            int ow = 0;
            while (ow < W) {
                if (ow >= 1 && ow + PB <= W - 1) {
                    v8 acc[8] = {0}; /* PB x NV <= 8 accumulators, flattened so that they stay in registers */
                    TM_UNROLL
                    for (int p = 0; p < PB; p++)
                        TM_UNROLL
                        for (int v = 0; v < NV; v++) acc[p * NV + v] = v8_zero();
                    for (int kh = kh0; kh < kh1; kh++) {
                        const float *xrow = x + ((size_t)n * H + oh + kh - 1) * W * CS;
                        TM_UNROLL
                        for (int kw = 0; kw < 3; kw++) {
                            v8 wv[8] = {0};
                            TM_UNROLL
                            for (int v = 0; v < NV; v++) wv[v] = v8_load(wt + (size_t)(kh * 3 + kw) * CS + TM_VL * v);
                            TM_UNROLL
                            for (int p = 0; p < PB; p++)
                                TM_UNROLL
                                for (int v = 0; v < NV; v++)
                                    acc[p * NV + v] += v8_load(xrow + (size_t)(ow + p + kw - 1) * CS + TM_VL * v) * wv[v];
                        }
                    }
                    TM_UNROLL
                    for (int p = 0; p < PB; p++) emit(acc + p * NV, yrow + (size_t)(ow + p) * CS, CS, 0, r1, r2, NV);
                    ow += PB;
                } else {
                    v8 acc[8] = {0};
                    TM_UNROLL
                    for (int v = 0; v < NV; v++) acc[v] = v8_zero();
                    for (int kh = kh0; kh < kh1; kh++) {
                        const float *xrow = x + ((size_t)n * H + oh + kh - 1) * W * CS;
                        TM_UNROLL
                        for (int kw = 0; kw < 3; kw++) {
                            const int iw = ow + kw - 1;
                            if (iw < 0 || iw >= W) continue;
                            TM_UNROLL
                            for (int v = 0; v < NV; v++)
                                acc[v] += v8_load(xrow + (size_t)iw * CS + TM_VL * v) * v8_load(wt + (size_t)(kh * 3 + kw) * CS + TM_VL * v);
                        }
                    }
                    emit(acc, yrow + (size_t)ow * CS, CS, 0, r1, r2, NV);
                    ow += 1;
                }
            }
            if (stats) stats_add_row(s1, s2, r1, r2, NV);
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

/* partial[n, t, :] = sum over output pixels of x[pixel shifted by tap t] * dy[pixel]: pixels outer,
 * the 9 taps inner (9 NV accumulator chains; dy read once), edge pixels with bounds checks. */
TM_INLINE void dw_wgrad_body(const float *restrict x, const float *restrict dy, float *restrict partial,
                             int n0, int n1, int H, int W, const int NV)
{
    const int CS = TM_VL * NV;
    for (int n = n0; n < n1; n++) {
        const float *xn = x + (size_t)n * H * W * CS, *dyn = dy + (size_t)n * H * W * CS;
        float *P = partial + (size_t)n * 9 * CS;
        for (int v0 = 0; v0 < NV; v0 += 2) { /* at most 2 lane groups at a time: 18 accumulators */
            const int nv = NV - v0 < 2 ? NV - v0 : 2;
            v8 acc[18] = {0};
            for (int oh = 0; oh < H; oh++)
                for (int ow = 0; ow < W; ow++) {
                    const float *dp = dyn + ((size_t)oh * W + ow) * CS + TM_VL * v0;
                    const v8 d0 = v8_load(dp), d1 = nv == 2 ? v8_load(dp + TM_VL) : v8_zero();
                    const float *xc = xn + ((size_t)(oh - 1) * W + (ow - 1)) * CS + TM_VL * v0; /* tap (0, 0) */
                    if (oh >= 1 && oh + 1 < H && ow >= 1 && ow + 1 < W) {
                        TM_UNROLL
                        for (int t = 0; t < 9; t++) {
                            const float *xt = xc + ((size_t)(t / 3) * W + t % 3) * CS;
                            acc[2 * t] += v8_load(xt) * d0;
                            if (nv == 2) acc[2 * t + 1] += v8_load(xt + TM_VL) * d1;
                        }
                    } else {
                        for (int t = 0; t < 9; t++) {
                            const int ih = oh + t / 3 - 1, iw = ow + t % 3 - 1;
                            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                            const float *xt = xc + ((size_t)(t / 3) * W + t % 3) * CS;
                            acc[2 * t] += v8_load(xt) * d0;
                            if (nv == 2) acc[2 * t + 1] += v8_load(xt + TM_VL) * d1;
                        }
                    }
                }
            for (int t = 0; t < 9; t++) {
                v8_store(P + (size_t)t * CS + TM_VL * v0, acc[2 * t]);
                if (nv == 2) v8_store(P + (size_t)t * CS + TM_VL * (v0 + 1), acc[2 * t + 1]);
            }
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
