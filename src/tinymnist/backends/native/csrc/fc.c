/* A linear head on the whole last map (PlanNet head="fc"): logits from every value of an NHWC map
 * with padded channel stride, the weights in PyTorch's order (nn.Linear after nn.Flatten of N x C x H x W:
 * channel major, then pixel). Forward, input gradient and weight gradient. */
#include "tm_kernels.h"
#include "tm_common.h"
#include <stdlib.h>
#include <string.h>

static void forward_range(const float *restrict x, const float *restrict w, const float *restrict bias,
                          float *restrict logits, int n0, int n1, int HW, int C, int K)
{
    const int CS = tm_roundv(C);
    for (int n = n0; n < n1; n++) {
        const float *xn = x + (size_t)n * HW * CS;
        for (int k = 0; k < K; k++) {
            const float *wk = w + (size_t)k * C * HW;
            float s = bias ? bias[k] : 0.0f;
            for (int c = 0; c < C; c++)
                for (int p = 0; p < HW; p++) s += xn[(size_t)p * CS + c] * wk[(size_t)c * HW + p];
            logits[(size_t)n * K + k] = s;
        }
    }
}

void tm_fc_forward(const float *x, const float *w, const float *bias, float *logits, int N, int HW, int C, int K)
{
    #pragma omp parallel
    {
        size_t lo, hi;
        tm_thread_range((size_t)N, &lo, &hi);
        forward_range(x, w, bias, logits, (int)lo, (int)hi, HW, C, K);
    }
}

/* Image by image: dx (unless NULL) and the image's weight and bias sums into partial[n]. */
static void backward_range(const float *restrict dlogits, const float *restrict x, const float *restrict w,
                           float *restrict dx, float *restrict partial, int n0, int n1, int HW, int C, int K)
{
    const int CS = tm_roundv(C);
    const size_t len = (size_t)K * C * HW + K;
    for (int n = n0; n < n1; n++) {
        const float *xn = x + (size_t)n * HW * CS, *d = dlogits + (size_t)n * K;
        float *P = partial + (size_t)n * len;
        for (int k = 0; k < K; k++) {
            float *Pk = P + (size_t)k * C * HW;
            for (int c = 0; c < C; c++)
                for (int p = 0; p < HW; p++) Pk[(size_t)c * HW + p] = d[k] * xn[(size_t)p * CS + c];
            P[(size_t)K * C * HW + k] = d[k];
        }
        if (!dx) continue;
        float *dxn = dx + (size_t)n * HW * CS;
        memset(dxn, 0, (size_t)HW * CS * sizeof(float)); /* padded lanes stay zero */
        for (int k = 0; k < K; k++) {
            const float *wk = w + (size_t)k * C * HW;
            for (int c = 0; c < C; c++)
                for (int p = 0; p < HW; p++) dxn[(size_t)p * CS + c] += d[k] * wk[(size_t)c * HW + p];
        }
    }
}

void tm_fc_backward(const float *dlogits, const float *x, const float *w, float *dx, float *dw, float *dbias,
                    float *partial, int N, int HW, int C, int K)
{
    const size_t wlen = (size_t)K * C * HW, len = wlen + K;
    #pragma omp parallel
    {
        size_t lo, hi;
        tm_thread_range((size_t)N, &lo, &hi);
        backward_range(dlogits, x, w, dx, partial, (int)lo, (int)hi, HW, C, K);
    }
    float *sum = malloc(len * sizeof(float));
    tm_reduce_images(partial, sum, N, len);
    memcpy(dw, sum, wlen * sizeof(float));
    if (dbias) memcpy(dbias, sum + wlen, (size_t)K * sizeof(float));
    free(sum);
}
