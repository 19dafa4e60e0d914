/* 2x2 max-pool (stride 2) and the head (global average pool + linear to the classes), NHWC with
 * channel stride CS. */
#include "tm_kernels.h"
#include "tm_common.h"

void tm_maxpool2_forward(const float *x, float *y, uint8_t *arg, int N, int H, int W, int CS)
{
    const int Ho = H / 2, Wo = W / 2;
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int oh = 0; oh < Ho; oh++)
            for (int ow = 0; ow < Wo; ow++) {
                const float *q[4];
                for (int t = 0; t < 4; t++) q[t] = x + (((size_t)n * H + 2 * oh + t / 2) * W + 2 * ow + t % 2) * CS;
                const size_t o = (((size_t)n * Ho + oh) * Wo + ow) * CS;
                for (int c = 0; c < CS; c++) {
                    float m = q[0][c];
                    uint8_t a = 0;
                    for (uint8_t t = 1; t < 4; t++)
                        if (q[t][c] > m) {
                            m = q[t][c];
                            a = t;
                        }
                    y[o + c] = m;
                    arg[o + c] = a;
                }
            }
}

void tm_maxpool2_backward(const float *dy, const uint8_t *arg, float *dx, int N, int H, int W, int CS)
{
    const int Ho = H / 2, Wo = W / 2;
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int ih = 0; ih < H; ih++)
            for (int iw = 0; iw < W; iw++) {
                float *d = dx + (((size_t)n * H + ih) * W + iw) * CS;
                const int oh = ih / 2, ow = iw / 2;
                if (oh >= Ho || ow >= Wo) {
                    for (int c = 0; c < CS; c++) d[c] = 0.0f;
                    continue;
                }
                const uint8_t t = (uint8_t)((ih % 2) * 2 + iw % 2);
                const size_t o = (((size_t)n * Ho + oh) * Wo + ow) * CS;
                for (int c = 0; c < CS; c++) d[c] = arg[o + c] == t ? dy[o + c] : 0.0f;
            }
}

void tm_head_forward(const float *x, const float *w, const float *bias, float *pooled, float *logits,
                     int N, int HW, int C, int K)
{
    const int CS = tm_round8(C);
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *g = pooled + (size_t)n * CS;
        for (int c = 0; c < CS; c++) g[c] = 0.0f;
        for (size_t p = 0; p < (size_t)HW; p++)
            for (int c = 0; c < CS; c++) g[c] += x[((size_t)n * HW + p) * CS + c];
        for (int c = 0; c < CS; c++) g[c] /= (float)HW;
        for (int k = 0; k < K; k++) {
            float s = bias ? bias[k] : 0.0f;
            for (int c = 0; c < C; c++) s += w[(size_t)k * C + c] * g[c];
            logits[(size_t)n * K + k] = s;
        }
    }
}

void tm_head_backward(const float *dlogits, const float *pooled, const float *w, float *dx, float *dw, float *dbias,
                      int N, int HW, int C, int K)
{
    const int CS = tm_round8(C);
    for (int k = 0; k < K; k++) {
        float sb = 0.0f;
        for (int n = 0; n < N; n++) sb += dlogits[(size_t)n * K + k];
        if (dbias) dbias[k] = sb;
        for (int c = 0; c < C; c++) {
            float s = 0.0f;
            for (int n = 0; n < N; n++) s += dlogits[(size_t)n * K + k] * pooled[(size_t)n * CS + c];
            dw[(size_t)k * C + c] = s;
        }
    }
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float g[64] = {0};
        for (int c = 0; c < C; c++) {
            float s = 0.0f;
            for (int k = 0; k < K; k++) s += dlogits[(size_t)n * K + k] * w[(size_t)k * C + c];
            g[c] = s / (float)HW;
        }
        for (size_t p = 0; p < (size_t)HW; p++)
            for (int c = 0; c < CS; c++) dx[((size_t)n * HW + p) * CS + c] = g[c];
    }
}
