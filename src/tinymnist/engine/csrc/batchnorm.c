/* Training-mode BatchNorm (+ ReLU) over NHWC tensors with channel stride CS = round_up(C, 8).
 * The statistics come from the producing conv (per-image sums, tm_conv_forward's `stats`), so the
 * forward pass reads its input once more only to normalize; the backward pass reads it twice
 * (per-image gradient sums, then the input gradient). Sums over images run in index order. */
#include "tm_kernels.h"
#include "tm_common.h"
#include <math.h>

void tm_bn_finalize(const double *stats, int N, int HW, int C, double eps, double momentum,
                    const float *gamma, const float *beta, float *running_mean, float *running_var,
                    float *scale, float *shift, float *mean, float *invstd)
{
    const int CS = tm_round8(C);
    const double M = (double)N * HW;
    for (int c = 0; c < CS; c++) {
        scale[c] = shift[c] = mean[c] = invstd[c] = 0.0f;
        if (c >= C) continue;
        double s1 = 0.0, s2 = 0.0;
        for (int n = 0; n < N; n++) {
            s1 += stats[((size_t)n * 2) * CS + c];
            s2 += stats[((size_t)n * 2 + 1) * CS + c];
        }
        const double mu = s1 / M;
        double var = s2 / M - mu * mu;
        if (var < 0.0) var = 0.0;
        const double is = 1.0 / sqrt(var + eps);
        const double g = gamma ? gamma[c] : 1.0, b = beta ? beta[c] : 0.0;
        mean[c] = (float)mu;
        invstd[c] = (float)is;
        scale[c] = (float)(g * is);
        shift[c] = (float)(b - mu * g * is);
        if (running_mean) running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * mu);
        if (running_var) running_var[c] = (float)((1.0 - momentum) * running_var[c] + momentum * var * (M > 1 ? M / (M - 1) : 1.0));
    }
}

TM_INLINE void apply_body(const float *z, float *a, const float *scale, const float *shift, size_t count, int relu, const int NV)
{
    const int CS = 8 * NV;
    v8 sc[8], sh[8];
    for (int v = 0; v < NV; v++) {
        sc[v] = v8_load(scale + 8 * v);
        sh[v] = v8_load(shift + 8 * v);
    }
    #pragma omp parallel for schedule(static)
    for (size_t p = 0; p < count; p++)
        for (int v = 0; v < NV; v++) {
            const v8 o = v8_load(z + p * CS + 8 * v) * sc[v] + sh[v];
            v8_store(a + p * CS + 8 * v, relu ? v8_max0(o) : o);
        }
}

void tm_bn_apply(const float *z, float *a, const float *scale, const float *shift, size_t count, int CS, int relu)
{
#define TM_APPLY(NV) apply_body(z, a, scale, shift, count, relu, NV)
    TM_DISPATCH_NV(CS, TM_APPLY)
#undef TM_APPLY
}

/* dY = da, masked by the forward ReLU (z * scale + shift > 0) when relu_after;
 * dz = scale * (dY - mean(dY) - yhat * mean(dY * yhat)), yhat = (z - mean) * invstd;
 * then masked by z > 0 when relu_before. */
TM_INLINE void bn_backward_body(const float *z, const float *da, float *dz, const float *scale, const float *shift,
                                const float *mean, const float *invstd, const float *gamma, float *dgamma, float *dbeta,
                                double *partial, int N, int HW, int C, int relu_after, int relu_before, const int NV)
{
    const int CS = 8 * NV;
    v8 sc[8], sh[8], mu[8], is[8];
    for (int v = 0; v < NV; v++) {
        sc[v] = v8_load(scale + 8 * v);
        sh[v] = v8_load(shift + 8 * v);
        mu[v] = v8_load(mean + 8 * v);
        is[v] = v8_load(invstd + 8 * v);
    }
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        v8 sdy[8], sdyx[8];
        for (int v = 0; v < NV; v++) sdy[v] = sdyx[v] = v8_zero();
        for (size_t p = (size_t)n * HW; p < (size_t)(n + 1) * HW; p++)
            for (int v = 0; v < NV; v++) {
                const v8 zz = v8_load(z + p * CS + 8 * v);
                v8 d = v8_load(da + p * CS + 8 * v);
                if (relu_after) d = v8_select(zz * sc[v] + sh[v] > v8_zero(), d);
                sdy[v] += d;
                sdyx[v] += d * ((zz - mu[v]) * is[v]);
            }
        for (int v = 0; v < NV; v++)
            for (int l = 0; l < 8; l++) {
                partial[((size_t)n * 2) * CS + 8 * v + l] = sdy[v][l];
                partial[((size_t)n * 2 + 1) * CS + 8 * v + l] = sdyx[v][l];
            }
    }
    /* per-channel coefficients: dz = k1 * dY - k0 - (z - mean) * k2 */
    float k0a[64] = {0}, k2a[64] = {0};
    const double M = (double)N * HW;
    for (int c = 0; c < C; c++) {
        double gb = 0.0, gg = 0.0;
        for (int n = 0; n < N; n++) {
            gb += partial[((size_t)n * 2) * CS + c];
            gg += partial[((size_t)n * 2 + 1) * CS + c];
        }
        if (dbeta) dbeta[c] = (float)gb;
        if (dgamma) dgamma[c] = (float)gg;
        const double s = (double)scale[c];
        k0a[c] = (float)(s * gb / M);
        k2a[c] = (float)(s * gg / M * invstd[c]);
    }
    (void)gamma;
    v8 k0[8], k2[8];
    for (int v = 0; v < NV; v++) {
        k0[v] = v8_load(k0a + 8 * v);
        k2[v] = v8_load(k2a + 8 * v);
    }
    const size_t count = (size_t)N * HW;
    #pragma omp parallel for schedule(static)
    for (size_t p = 0; p < count; p++)
        for (int v = 0; v < NV; v++) {
            const v8 zz = v8_load(z + p * CS + 8 * v);
            v8 d = v8_load(da + p * CS + 8 * v);
            if (relu_after) d = v8_select(zz * sc[v] + sh[v] > v8_zero(), d);
            v8 g = sc[v] * d - k0[v] - (zz - mu[v]) * k2[v];
            if (relu_before) g = v8_select(zz > v8_zero(), g);
            v8_store(dz + p * CS + 8 * v, g);
        }
}

void tm_bn_backward(const float *z, const float *da, float *dz, const float *scale, const float *shift,
                    const float *mean, const float *invstd, const float *gamma, float *dgamma, float *dbeta,
                    double *partial, int N, int HW, int C, int relu_after, int relu_before)
{
    const int CS = tm_round8(C);
#define TM_BNB(NV) bn_backward_body(z, da, dz, scale, shift, mean, invstd, gamma, dgamma, dbeta, partial, N, HW, C, \
                                    relu_after, relu_before, NV)
    TM_DISPATCH_NV(CS, TM_BNB)
#undef TM_BNB
}
