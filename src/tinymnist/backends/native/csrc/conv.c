/* Dense k x k convolution (k = 3, or k = 1: the pointwise conv of a separable block), stride 1,
 * NHWC with padded channel strides: forward (+ ReLU, + per-image BatchNorm statistics), input
 * gradient (the same kernel on the flipped, transposed weights) and weight gradient. */
#include "tm_kernels.h"
#include "tm_common.h"
#include <stdlib.h>

/* The register-blocked outer product: acc[j][v] += a[j * stride] * vec[v] for j < rows, v < NV. */
TM_INLINE void outer_acc(v8 *acc, const float *a, size_t stride, const v8 *vec, const int rows, const int NV)
{
    TM_UNROLL
    for (int j = 0; j < rows; j++) {
        const v8 s = v8_splat(a[(size_t)j * stride]);
        TM_UNROLL
        for (int v = 0; v < NV; v++) acc[j * NV + v] += s * vec[v];
    }
}

/* y[n,oh,ow,:] = bias + sum_{kh,kw,ci} x[n, oh+kh-pad, ow+kw-pad, ci] * wt[kh,kw,ci,:]
 * x: N x H x W x xs (Cin real channels read); wt: K*K x Cin x 8NV; y: N x Ho x Wo x ys, where
 * ys = 8NV (all lanes stored, stats allowed) or ys < 8NV (the first ys lanes stored, no stats). */
TM_INLINE void conv_body(const float *restrict x, int xs, const float *restrict wt, const float *restrict bias,
                         float *restrict y, int ys, double *restrict stats, int n0, int n1, int H, int W, int Cin,
                         int pad, int relu, const int K, const int NV)
{
    const int CS = TM_VL * NV, PB = K == 1 ? TM_PB_LONG(NV) : TM_PB(NV);
    const int Ho = H + 2 * pad - K + 1, Wo = W + 2 * pad - K + 1;
    const int lo = pad, hi = W + pad - K; /* output columns whose K taps all lie inside the row */
    for (int n = n0; n < n1; n++) {
        double s1[64] = {0}, s2[64] = {0};
        for (int oh = 0; oh < Ho; oh++) {
            const int kh0 = tm_max(0, pad - oh), kh1 = tm_min(K, H + pad - oh);
            float *yrow = y + ((size_t)n * Ho + oh) * Wo * ys;
            v8 r1[8] = {0}, r2[8] = {0};
            TM_UNROLL
            for (int v = 0; v < NV; v++) r1[v] = r2[v] = v8_zero();
            int ow = 0;
            while (ow < Wo) {
                if (ow >= lo && ow + PB - 1 <= hi) { /* PB interior pixels: no column checks */
                    v8 acc[TM_MAX_ACC] = {0}; /* PB x NV accumulators, flattened so that they stay in registers */
                    TM_UNROLL
                    for (int p = 0; p < PB; p++)
                        TM_UNROLL
                        for (int v = 0; v < NV; v++) acc[p * NV + v] = bias ? v8_load(bias + TM_VL * v) : v8_zero();
                    for (int kh = kh0; kh < kh1; kh++) {
                        const float *xrow = x + ((size_t)n * H + oh + kh - pad) * W * xs;
                        TM_UNROLL
                        for (int kw = 0; kw < K; kw++) {
                            const float *xp = xrow + (size_t)(ow + kw - pad) * xs;
                            const float *wp = wt + (size_t)(kh * K + kw) * Cin * CS;
                            for (int ci = 0; ci < Cin; ci++) {
                                v8 wv[8] = {0};
                                TM_UNROLL
                                for (int v = 0; v < NV; v++) wv[v] = v8_load(wp + (size_t)ci * CS + TM_VL * v);
                                outer_acc(acc, xp + ci, xs, wv, PB, NV); /* PB pixels x NV vectors */
                            }
                        }
                    }
                    TM_UNROLL
                    for (int p = 0; p < PB; p++) emit(acc + p * NV, yrow + (size_t)(ow + p) * ys, ys, relu, r1, r2, NV);
                    ow += PB;
                } else { /* one edge pixel, taps outside the row skipped */
                    v8 acc[TM_MAX_ACC] = {0};
                    TM_UNROLL
                    for (int v = 0; v < NV; v++) acc[v] = bias ? v8_load(bias + TM_VL * v) : v8_zero();
                    for (int kh = kh0; kh < kh1; kh++) {
                        const float *xrow = x + ((size_t)n * H + oh + kh - pad) * W * xs;
                        TM_UNROLL
                        for (int kw = 0; kw < K; kw++) {
                            const int iw = ow + kw - pad;
                            if (iw < 0 || iw >= W) continue;
                            const float *xp = xrow + (size_t)iw * xs;
                            const float *wp = wt + (size_t)(kh * K + kw) * Cin * CS;
                            for (int ci = 0; ci < Cin; ci++) {
                                const v8 a = v8_splat(xp[ci]);
                                TM_UNROLL
                                for (int v = 0; v < NV; v++) acc[v] += a * v8_load(wp + (size_t)ci * CS + TM_VL * v);
                            }
                        }
                    }
                    emit(acc, yrow + (size_t)ow * ys, ys, relu, r1, r2, NV);
                    ow += 1;
                }
            }
            if (stats) stats_add_row(s1, s2, r1, r2, NV);
        }
        if (stats) stats_store(stats, n, s1, s2, CS);
    }
}

/* conv_body for one input channel and a 3x3 kernel (the network's first conv), output stride CS: each
 * output row of each 16- (or 8-) channel group slides a 3 x 3 window of input values along zero-padded
 * copies of its three input rows (3 new values per 9 FMAs, where conv_body broadcasts every tap of
 * every pixel), the 9 tap weights in registers. The same sum in the same order as conv_body (bias or 0,
 * then the taps kh, kw; a tap outside the image adds a zero). */
TM_INLINE void conv1ch_body(const float *restrict x, const float *restrict wt, const float *restrict bias,
                            float *restrict y, double *restrict stats, int n0, int n1, int H, int W, int pad, int relu,
                            const int NV)
{
    const int CS = TM_VL * NV, Ho = H + 2 * pad - 2, Wo = W + 2 * pad - 2;
    float rows[3][TM_BATCH_MAX_SIDE + 2]; /* input rows oh-pad .. oh-pad+2, each with `pad` zeros either side */
    for (int n = n0; n < n1; n++) {
        double s1[64] = {0}, s2[64] = {0};
        const float *xn = x + (size_t)n * H * W;
        for (int oh = 0; oh < Ho; oh++) {
            for (int kh = 0; kh < 3; kh++) {
                const int ih = oh + kh - pad;
                for (int c = 0; c < W + 2 * pad; c++) {
                    const int iw = c - pad;
                    rows[kh][c] = ih >= 0 && ih < H && iw >= 0 && iw < W ? xn[(size_t)ih * W + iw] : 0.0f;
                }
            }
            float *yrow = y + ((size_t)n * Ho + oh) * Wo * CS;
            for (int v = 0; v < NV; v++) {
                v8 w[9];
                for (int t = 0; t < 9; t++) w[t] = v8_load(wt + (size_t)t * CS + TM_VL * v);
                const v8 b0 = bias ? v8_load(bias + TM_VL * v) : v8_zero();
                v8 r1 = v8_zero(), r2 = v8_zero();
                for (int ow = 0; ow < Wo; ow++) {
                    v8 acc = b0;
                    TM_UNROLL
                    for (int t = 0; t < 9; t++) acc += v8_splat(rows[t / 3][ow + t % 3]) * w[t];
                    if (relu) acc = v8_max0(acc);
                    v8_store(yrow + (size_t)ow * CS + TM_VL * v, acc);
                    r1 += acc;
                    r2 += acc * acc;
                }
                if (stats) stats_add_row(s1 + TM_VL * v, s2 + TM_VL * v, &r1, &r2, 1);
            }
        }
        if (stats) stats_store(stats, n, s1, s2, CS);
    }
}

TM_NOINLINE void conv_range(const float *restrict x, int xs, const float *restrict wt, const float *restrict bias,
                            float *restrict y, int ys, double *restrict stats, int n0, int n1, int H, int W, int Cin,
                            int CS, int k, int pad, int relu)
{
#define TM_CONV1(NV) conv_body(x, xs, wt, bias, y, ys, stats, n0, n1, H, W, Cin, pad, relu, 1, NV)
#define TM_CONV3(NV) conv_body(x, xs, wt, bias, y, ys, stats, n0, n1, H, W, Cin, pad, relu, 3, NV)
#define TM_CONV3_1CH(NV) conv1ch_body(x, wt, bias, y, stats, n0, n1, H, W, pad, relu, NV)
    if (k == 1) {
        TM_DISPATCH_NV(CS, TM_CONV1)
    } else if (xs == 1 && Cin == 1 && ys == CS && W + 2 * pad <= TM_BATCH_MAX_SIDE + 2) {
        TM_DISPATCH_NV(CS, TM_CONV3_1CH)
    } else {
        TM_DISPATCH_NV(CS, TM_CONV3)
    }
#undef TM_CONV1
#undef TM_CONV3
#undef TM_CONV3_1CH
}

/* y (channel stride ys, CS = round_up(channels, TM_VL) lanes computed) = conv(x, wt) over all images. */
static void conv_run(const float *x, int xs, const float *wt, const float *bias, float *y, int ys, double *stats,
                     int N, int H, int W, int Cin, int CS, int k, int pad, int relu)
{
    if (k == 1) { /* pointwise: an image is one row of H*W pixels, blocks never meet an edge */
        W *= H;
        H = 1;
    }
    #pragma omp parallel
    {
        size_t lo, hi;
        tm_thread_range((size_t)N, &lo, &hi);
        conv_range(x, xs, wt, bias, y, ys, stats, (int)lo, (int)hi, H, W, Cin, CS, k, pad, relu);
    }
}

void tm_conv_forward(const float *x, int xs, const float *w, const float *bias, float *y, double *stats,
                     int N, int H, int W, int Cin, int Cout, int k, int pad, int relu)
{
    const int CS = tm_roundv(Cout), taps = k * k;
    float *wt = calloc((size_t)taps * Cin * CS + CS, sizeof(float));
    float *bp = wt + (size_t)taps * Cin * CS;
    for (int co = 0; co < Cout; co++) {
        for (int ci = 0; ci < Cin; ci++)
            for (int t = 0; t < taps; t++) wt[((size_t)t * Cin + ci) * CS + co] = w[((size_t)co * Cin + ci) * taps + t];
        if (bias) bp[co] = bias[co];
    }
    conv_run(x, xs, wt, bias ? bp : NULL, y, CS, stats, N, H, W, Cin, CS, k, pad, relu);
    free(wt);
}

void tm_conv_backward_data(const float *dy, const float *w, float *dx, int dxs,
                           int N, int H, int W, int Cin, int Cout, int k, int pad)
{
    /* dx = correlation of dy (padded by k-1-pad) with the kernel flipped in space, Cin <-> Cout. */
    const int CS = tm_roundv(Cin), taps = k * k, Ho = H + 2 * pad - k + 1, Wo = W + 2 * pad - k + 1;
    float *wt = calloc((size_t)taps * Cout * CS, sizeof(float));
    for (int co = 0; co < Cout; co++)
        for (int ci = 0; ci < Cin; ci++)
            for (int t = 0; t < taps; t++)
                wt[((size_t)(taps - 1 - t) * Cout + co) * CS + ci] = w[((size_t)co * Cin + ci) * taps + t];
    /* dy is the input here: Cout real channels at stride round_up(Cout, TM_VL). */
    conv_run(dy, tm_roundv(Cout), wt, NULL, dx, dxs, NULL, N, Ho, Wo, Cout, CS, k, k - 1 - pad, 0);
    free(wt);
}

/* partial[n] = [ K*K x xs x CS weight sums | CS bias sums ] of image n. */
TM_INLINE void wgrad_body(const float *restrict x, int xs, const float *restrict dy, float *restrict partial,
                          int n0, int n1, int H, int W, int Cin, int pad, const int K, const int NV)
{
    const int CS = TM_VL * NV, Ho = H + 2 * pad - K + 1, Wo = W + 2 * pad - K + 1;
    const int CB = K == 1 ? TM_PB_LONG(NV) : TM_PB(NV); /* input channels per register block */
    const size_t len = (size_t)K * K * xs * CS + CS;
    for (int n = n0; n < n1; n++) {
        float *P = partial + (size_t)n * len;
        const float *dyn = dy + (size_t)n * Ho * Wo * CS;
        const float *xn = x + (size_t)n * H * W * xs;
        memset(P, 0, len * sizeof(float));
        if (xs == 1 && K == 3 && NV <= 2) { /* one input channel: the 9 taps of a pixel at once, 9 NV chains */
            v8 acc[18] = {0};
            for (int oh = 0; oh < Ho; oh++)
                for (int ow = 0; ow < Wo; ow++) {
                    v8 d[2] = {0};
                    TM_UNROLL
                    for (int v = 0; v < NV; v++) d[v] = v8_load(dyn + ((size_t)oh * Wo + ow) * CS + TM_VL * v);
                    if (oh >= pad && oh + 2 - pad < H && ow >= pad && ow + 2 - pad < W) {
                        const float *xc = xn + ((size_t)(oh - pad) * W + (ow - pad)); /* tap (0, 0) */
                        TM_UNROLL
                        for (int t = 0; t < 9; t++) {
                            const v8 a = v8_splat(xc[(t / 3) * W + t % 3]);
                            TM_UNROLL
                            for (int v = 0; v < NV; v++) acc[t * NV + v] += a * d[v];
                        }
                    } else {
                        for (int t = 0; t < 9; t++) {
                            const int ih = oh + t / 3 - pad, iw = ow + t % 3 - pad;
                            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                            const v8 a = v8_splat(xn[(size_t)ih * W + iw]);
                            for (int v = 0; v < NV; v++) acc[t * NV + v] += a * d[v];
                        }
                    }
                }
            for (int t = 0; t < 9; t++)
                for (int v = 0; v < NV; v++) v8_store(P + (size_t)t * CS + TM_VL * v, acc[t * NV + v]);
        } else
        for (int kh = 0; kh < K; kh++)
            TM_UNROLL
            for (int kw = 0; kw < K; kw++) {
                const int oh0 = tm_max(0, pad - kh), oh1 = tm_min(Ho, H + pad - kh);
                const int ow0 = tm_max(0, pad - kw), ow1 = tm_min(Wo, W + pad - kw);
                float *Pt = P + (size_t)(kh * K + kw) * xs * CS;
                const int cb = xs >= CB ? CB : 1;
                for (int ci = 0; ci < Cin; ci += cb) { /* cb divides xs: padded lanes read as zeros */
                    v8 acc[TM_MAX_ACC] = {0}; /* PB x NV accumulators, flattened so that they stay in registers */
                    TM_UNROLL
                    for (int j = 0; j < cb; j++)
                        TM_UNROLL
                        for (int v = 0; v < NV; v++) acc[j * NV + v] = v8_zero();
                    for (int oh = oh0; oh < oh1; oh++) {
                        const float *xr = xn + ((size_t)(oh + kh - pad) * W + (kw - pad)) * xs + ci;
                        const float *dr = dyn + (size_t)oh * Wo * CS;
                        if (cb == CB) {
                            for (int ow = ow0; ow < ow1; ow++) {
                                v8 d[8] = {0};
                                TM_UNROLL
                                for (int v = 0; v < NV; v++) d[v] = v8_load(dr + (size_t)ow * CS + TM_VL * v);
                                outer_acc(acc, xr + (size_t)ow * xs, 1, d, CB, NV); /* CB channels x NV */
                            }
                        } else {
                            for (int ow = ow0; ow < ow1; ow++) {
                                const v8 a = v8_splat(xr[(size_t)ow * xs]);
                                TM_UNROLL
                                for (int v = 0; v < NV; v++) acc[v] += a * v8_load(dr + (size_t)ow * CS + TM_VL * v);
                            }
                        }
                    }
                    TM_UNROLL
                    for (int j = 0; j < cb; j++)
                        TM_UNROLL
                        for (int v = 0; v < NV; v++) v8_store(Pt + (size_t)(ci + j) * CS + TM_VL * v, acc[j * NV + v]);
                }
            }
        float *Pb = P + (size_t)K * K * xs * CS;
        v8 b[8] = {0};
        TM_UNROLL
        for (int v = 0; v < NV; v++) b[v] = v8_zero();
        for (size_t p = 0; p < (size_t)Ho * Wo; p++)
            TM_UNROLL
            for (int v = 0; v < NV; v++) b[v] += v8_load(dyn + p * CS + TM_VL * v);
        TM_UNROLL
        for (int v = 0; v < NV; v++) v8_store(Pb + TM_VL * v, b[v]);
    }
}

TM_NOINLINE void wgrad_range(const float *restrict x, int xs, const float *restrict dy, float *restrict partial,
                             int n0, int n1, int H, int W, int Cin, int CS, int k, int pad)
{
#define TM_WG1(NV) wgrad_body(x, xs, dy, partial, n0, n1, H, W, Cin, pad, 1, NV)
#define TM_WG3(NV) wgrad_body(x, xs, dy, partial, n0, n1, H, W, Cin, pad, 3, NV)
    if (k == 1) {
        TM_DISPATCH_NV(CS, TM_WG1)
    } else {
        TM_DISPATCH_NV(CS, TM_WG3)
    }
#undef TM_WG1
#undef TM_WG3
}

void tm_conv_backward_weight(const float *x, int xs, const float *dy, float *dw, float *dbias, float *partial,
                             int N, int H, int W, int Cin, int Cout, int k, int pad)
{
    const int CS = tm_roundv(Cout), taps = k * k;
    const size_t len = (size_t)taps * xs * CS + CS;
    const int Hr = k == 1 ? 1 : H, Wr = k == 1 ? H * W : W; /* pointwise: one row per image */
    #pragma omp parallel
    {
        size_t lo, hi;
        tm_thread_range((size_t)N, &lo, &hi);
        wgrad_range(x, xs, dy, partial, (int)lo, (int)hi, Hr, Wr, Cin, CS, k, pad);
    }
    float *sum = malloc(len * sizeof(float));
    tm_reduce_images(partial, sum, N, len);
    for (int co = 0; co < Cout; co++) {
        for (int ci = 0; ci < Cin; ci++)
            for (int t = 0; t < taps; t++) dw[((size_t)co * Cin + ci) * taps + t] = sum[((size_t)t * xs + ci) * CS + co];
        if (dbias) dbias[co] = sum[(size_t)taps * xs * CS + co];
    }
    free(sum);
}
