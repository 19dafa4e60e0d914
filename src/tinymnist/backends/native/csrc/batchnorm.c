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
    const int CS = tm_roundv(C);
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

/* a = act(z) over `count` pixels of channel stride CS = TM_VL NV. */
TM_INLINE void act_pixels(const float *restrict z, float *restrict a, const float *restrict scale,
                          const float *restrict shift, int relu, size_t count, const int NV)
{
    const int CS = TM_VL * NV;
    v8 sc[8] = {0}, sh[8] = {0};
    TM_UNROLL
    for (int v = 0; v < NV; v++) {
        sc[v] = v8_load(scale + TM_VL * v);
        sh[v] = v8_load(shift + TM_VL * v);
    }
    for (size_t p = 0; p < count; p++)
        TM_UNROLL
        for (int v = 0; v < NV; v++)
            v8_store(a + p * CS + TM_VL * v, act_vec(v8_load(z + p * CS + TM_VL * v), sc[v], sh[v], relu));
}

__attribute__((noinline)) void tm_act_pixels(const float *restrict z, float *restrict a, const float *restrict scale,
                                             const float *restrict shift, int relu, size_t count, int CS)
{
#define TM_ACT(NV) act_pixels(z, a, scale, shift, relu, count, NV)
    TM_DISPATCH_NV(CS, TM_ACT)
#undef TM_ACT
}

void tm_bn_apply(const float *z, float *a, const float *scale, const float *shift, size_t count, int CS, int relu)
{
    #pragma omp parallel
    {
        size_t lo, hi;
        tm_thread_range(count, &lo, &hi);
        tm_act_pixels(z + lo * CS, a + lo * CS, scale, shift, relu, hi - lo, CS);
    }
}

/* dY = da, masked by the forward ReLU (z * scale + shift > 0) when relu_after;
 * dz = scale * (dY - mean(dY) - yhat * mean(dY * yhat)), yhat = (z - mean) * invstd;
 * then masked by z > 0 when relu_before. */
/* Pass 1, images n0..n1-1: partial[n] = (sum of dY, sum of dY * yhat) per lane. */
TM_INLINE void bn_sums_body(const float *restrict z, const float *restrict da, const float *restrict scale,
                            const float *restrict shift, const float *restrict mean, const float *restrict invstd,
                            double *restrict partial, int n0, int n1, int HW, int relu_after, const int NV)
{
    const int CS = TM_VL * NV;
    for (int n = n0; n < n1; n++) {
        v8 sdy[8] = {0}, sdyx[8] = {0};
        for (size_t p = (size_t)n * HW; p < (size_t)(n + 1) * HW; p++) {
            TM_UNROLL
            for (int v = 0; v < NV; v++) {
                const v8 zz = v8_load(z + p * CS + TM_VL * v);
                v8 d = v8_load(da + p * CS + TM_VL * v);
                if (relu_after) d = v8_select(zz * v8_load(scale + TM_VL * v) + v8_load(shift + TM_VL * v) > v8_zero(), d);
                sdy[v] += d;
                sdyx[v] += d * ((zz - v8_load(mean + TM_VL * v)) * v8_load(invstd + TM_VL * v));
            }
        }
        for (int v = 0; v < NV; v++)
            for (int l = 0; l < TM_VL; l++) {
                partial[((size_t)n * 2) * CS + TM_VL * v + l] = sdy[v][l];
                partial[((size_t)n * 2 + 1) * CS + TM_VL * v + l] = sdyx[v][l];
            }
    }
}

/* Pass 2, pixels p0..p1-1: dz = scale * dY - k0 - (z - mean) * k2 (masked by z > 0 if relu_before).
 * dz may alias da. */
TM_INLINE void bn_grad_body(const float *z, const float *da, float *dz, const float *restrict scale,
                            const float *restrict shift, const float *restrict mean, const float *restrict k0,
                            const float *restrict k2, size_t p0, size_t p1, int relu_after, int relu_before, const int NV)
{
    const int CS = TM_VL * NV;
    for (size_t p = p0; p < p1; p++) {
        TM_UNROLL
        for (int v = 0; v < NV; v++) {
            const v8 zz = v8_load(z + p * CS + TM_VL * v), sc = v8_load(scale + TM_VL * v);
            v8 d = v8_load(da + p * CS + TM_VL * v);
            if (relu_after) d = v8_select(zz * sc + v8_load(shift + TM_VL * v) > v8_zero(), d);
            v8 g = sc * d - v8_load(k0 + TM_VL * v) - (zz - v8_load(mean + TM_VL * v)) * v8_load(k2 + TM_VL * v);
            if (relu_before) g = v8_select(zz > v8_zero(), g);
            v8_store(dz + p * CS + TM_VL * v, g);
        }
    }
}

TM_NOINLINE void bn_sums_range(const float *restrict z, const float *restrict da, const float *restrict scale,
                               const float *restrict shift, const float *restrict mean, const float *restrict invstd,
                               double *restrict partial, int n0, int n1, int HW, int CS, int relu_after)
{
#define TM_SUMS(NV) bn_sums_body(z, da, scale, shift, mean, invstd, partial, n0, n1, HW, relu_after, NV)
    TM_DISPATCH_NV(CS, TM_SUMS)
#undef TM_SUMS
}

TM_NOINLINE void bn_grad_range(const float *z, const float *da, float *dz, const float *restrict scale,
                               const float *restrict shift, const float *restrict mean, const float *restrict k0,
                               const float *restrict k2, size_t p0, size_t p1, int CS, int relu_after, int relu_before)
{
#define TM_GRAD(NV) bn_grad_body(z, da, dz, scale, shift, mean, k0, k2, p0, p1, relu_after, relu_before, NV)
    TM_DISPATCH_NV(CS, TM_GRAD)
#undef TM_GRAD
}

void tm_bn_sums(const tm_bn_sums_of *bn, const float *da, int n0, int n1, int HW, int C)
{
    bn_sums_range(bn->z, da, bn->scale, bn->shift, bn->mean, bn->invstd, bn->partial, n0, n1, HW, tm_roundv(C),
                  bn->relu_after);
}

void tm_bn_backward(const float *z, const float *da, float *dz, const float *scale, const float *shift,
                    const float *mean, const float *invstd, float *dgamma, float *dbeta,
                    double *partial, int N, int HW, int C, int relu_after, int relu_before)
{
    const int CS = tm_roundv(C);
    #pragma omp parallel
    {
        size_t lo, hi;
        tm_thread_range((size_t)N, &lo, &hi);
        bn_sums_range(z, da, scale, shift, mean, invstd, partial, (int)lo, (int)hi, HW, CS, relu_after);
    }
    tm_bn_backward_finish(z, da, dz, scale, shift, mean, invstd, dgamma, dbeta, partial, N, HW, C, relu_after,
                          relu_before);
}

void tm_bn_backward_finish(const float *z, const float *da, float *dz, const float *scale, const float *shift,
                           const float *mean, const float *invstd, float *dgamma, float *dbeta,
                           const double *partial, int N, int HW, int C, int relu_after, int relu_before)
{
    const int CS = tm_roundv(C);
    float k0[64] = {0}, k2[64] = {0};
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
        k0[c] = (float)(s * gb / M);
        k2[c] = (float)(s * gg / M * invstd[c]);
    }
    const size_t count = (size_t)N * HW;
    #pragma omp parallel
    {
        size_t lo, hi;
        tm_thread_range(count, &lo, &hi);
        bn_grad_range(z, da, dz, scale, shift, mean, k0, k2, lo, hi, CS, relu_after, relu_before);
    }
}
