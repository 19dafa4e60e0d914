/* Softmax cross-entropy with label smoothing, and its gradient, for the N x K logits of a step. */
#include "tm_kernels.h"
#include <math.h>

double tm_xent(const float *logits, const int64_t *labels, const int64_t *idx, int N, int K, float smoothing,
               float *dlogits, int *correct)
{
    double total = 0.0;
    int right = 0;
    for (int n = 0; n < N; n++) {
        const float *z = logits + (size_t)n * K;
        float *d = dlogits + (size_t)n * K;
        const int y = (int)labels[idx ? idx[n] : n];
        int best = 0;
        for (int k = 1; k < K; k++)
            if (z[k] > z[best]) best = k;
        right += best == y;
        const double zmax = z[best];
        double sum = 0.0, zsum = 0.0;
        for (int k = 0; k < K; k++) {
            sum += exp((double)z[k] - zmax);
            zsum += (double)z[k];
        }
        const double lse = zmax + log(sum);
        /* -log p_y weighted 1 - s, plus s times the mean over classes of -log p_k */
        total += (1.0 - smoothing) * (lse - z[y]) + smoothing * (lse - zsum / K);
        for (int k = 0; k < K; k++) {
            const double p = exp((double)z[k] - lse);
            const double target = (k == y ? 1.0 - smoothing : 0.0) + (double)smoothing / K;
            d[k] = (float)((p - target) / N);
        }
    }
    *correct = right;
    return total / N;
}
