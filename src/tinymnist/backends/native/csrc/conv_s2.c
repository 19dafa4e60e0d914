/* Dense 3x3 convolution with stride 2 and padding 1 of a one-channel input stored at stride 1 (the
 * network input: a PlanNet "d" conv first): forward (+ ReLU, + per-image BatchNorm statistics), input
 * gradient and weight gradient. The first layer's maps are small (Ho x Wo x Cout, a quarter of a
 * stride-1 conv's), so these are plain loops over the channel lanes, vectorized by the compiler. */
#include "tm_kernels.h"
#include "tm_common.h"
#include <stdlib.h>
#include <string.h>

/* Input value at (ih, iw) of image xn, zero outside (the padding). */
static inline float tap(const float *xn, int H, int W, int ih, int iw)
{
    return ih >= 0 && ih < H && iw >= 0 && iw < W ? xn[(size_t)ih * W + iw] : 0.0f;
}

static void forward_range(const float *restrict x, const float *restrict wt, const float *restrict bias,
                          float *restrict y, double *restrict stats, int n0, int n1, int H, int W, int CS, int relu)
{
    const int Ho = TM_S2_OUT(H), Wo = TM_S2_OUT(W);
    for (int n = n0; n < n1; n++) {
        const float *xn = x + (size_t)n * H * W;
        double s1[TM_MAX_CHANNELS] = {0}, s2[TM_MAX_CHANNELS] = {0};
        for (int oh = 0; oh < Ho; oh++)
            for (int ow = 0; ow < Wo; ow++) {
                float acc[TM_MAX_CHANNELS];
                for (int c = 0; c < CS; c++) acc[c] = bias ? bias[c] : 0.0f;
                for (int t = 0; t < 9; t++) { /* bias or 0, then the taps kh, kw in order */
                    const float a = tap(xn, H, W, 2 * oh - 1 + t / 3, 2 * ow - 1 + t % 3);
                    for (int c = 0; c < CS; c++) acc[c] += a * wt[t * CS + c];
                }
                float *yp = y + (((size_t)n * Ho + oh) * Wo + ow) * CS;
                for (int c = 0; c < CS; c++) {
                    const float v = relu && acc[c] < 0.0f ? 0.0f : acc[c];
                    yp[c] = v;
                    s1[c] += v;
                    s2[c] += (double)v * v;
                }
            }
        if (stats) stats_store(stats, n, s1, s2, CS);
    }
}

void tm_conv_s2_forward(const float *x, const float *w, const float *bias, float *y, double *stats,
                        int N, int H, int W, int Cout, int relu)
{
    const int CS = tm_roundv(Cout);
    float *wt = calloc((size_t)10 * CS, sizeof(float)); /* [tap][channel], then the bias */
    float *bp = wt + (size_t)9 * CS;
    for (int co = 0; co < Cout; co++) {
        for (int t = 0; t < 9; t++) wt[(size_t)t * CS + co] = w[(size_t)co * 9 + t];
        if (bias) bp[co] = bias[co];
    }
    #pragma omp parallel
    {
        size_t lo, hi;
        tm_thread_range((size_t)N, &lo, &hi);
        forward_range(x, wt, bias ? bp : NULL, y, stats, (int)lo, (int)hi, H, W, CS, relu);
    }
    free(wt);
}

static void data_range(const float *restrict dy, const float *restrict w, float *restrict dx, int n0, int n1,
                       int H, int W, int Cout)
{
    const int CS = tm_roundv(Cout), Ho = TM_S2_OUT(H), Wo = TM_S2_OUT(W);
    for (int n = n0; n < n1; n++) {
        float *dxn = dx + (size_t)n * H * W;
        memset(dxn, 0, (size_t)H * W * sizeof(float));
        for (int oh = 0; oh < Ho; oh++)
            for (int ow = 0; ow < Wo; ow++) {
                const float *d = dy + (((size_t)n * Ho + oh) * Wo + ow) * CS;
                for (int t = 0; t < 9; t++) {
                    const int ih = 2 * oh - 1 + t / 3, iw = 2 * ow - 1 + t % 3;
                    if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                    float s = 0.0f;
                    for (int co = 0; co < Cout; co++) s += w[(size_t)co * 9 + t] * d[co];
                    dxn[(size_t)ih * W + iw] += s;
                }
            }
    }
}

void tm_conv_s2_backward_data(const float *dy, const float *w, float *dx, int N, int H, int W, int Cout)
{
    #pragma omp parallel
    {
        size_t lo, hi;
        tm_thread_range((size_t)N, &lo, &hi);
        data_range(dy, w, dx, (int)lo, (int)hi, H, W, Cout);
    }
}

/* partial[n] = [ 9 x CS weight sums | CS bias sums ] of image n. */
static void wgrad_range(const float *restrict x, const float *restrict dy, float *restrict partial, int n0, int n1,
                        int H, int W, int CS)
{
    const int Ho = TM_S2_OUT(H), Wo = TM_S2_OUT(W);
    for (int n = n0; n < n1; n++) {
        const float *xn = x + (size_t)n * H * W;
        float *P = partial + (size_t)n * 10 * CS;
        memset(P, 0, (size_t)10 * CS * sizeof(float));
        for (int oh = 0; oh < Ho; oh++)
            for (int ow = 0; ow < Wo; ow++) {
                const float *d = dy + (((size_t)n * Ho + oh) * Wo + ow) * CS;
                for (int t = 0; t < 9; t++) {
                    const float a = tap(xn, H, W, 2 * oh - 1 + t / 3, 2 * ow - 1 + t % 3);
                    for (int c = 0; c < CS; c++) P[t * CS + c] += a * d[c];
                }
                for (int c = 0; c < CS; c++) P[9 * CS + c] += d[c];
            }
    }
}

void tm_conv_s2_backward_weight(const float *x, const float *dy, float *dw, float *dbias, float *partial,
                                int N, int H, int W, int Cout)
{
    const int CS = tm_roundv(Cout);
    const size_t len = (size_t)10 * CS;
    #pragma omp parallel
    {
        size_t lo, hi;
        tm_thread_range((size_t)N, &lo, &hi);
        wgrad_range(x, dy, partial, (int)lo, (int)hi, H, W, CS);
    }
    float *sum = malloc(len * sizeof(float));
    tm_reduce_images(partial, sum, N, len);
    for (int co = 0; co < Cout; co++) {
        for (int t = 0; t < 9; t++) dw[(size_t)co * 9 + t] = sum[(size_t)t * CS + co];
        if (dbias) dbias[co] = sum[(size_t)9 * CS + co];
    }
    free(sum);
}
