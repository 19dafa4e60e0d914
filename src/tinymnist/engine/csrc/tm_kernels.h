/* tinymnist native engine: float32 training kernels for tiny CNNs, channels-last.
 *
 * Every activation is NHWC float32 with a *padded channel stride*: CS = round_up(C, L), L = tm_lanes() (the network
 * input, C = 1, is the one tensor stored with stride 1). Lanes C..CS-1 hold zeros in the forward
 * pass and in every gradient; kernels compute them (padded weights are zero) but nothing reads them.
 * Weights, biases and their gradients are in PyTorch's own layouts (conv: Cout x Cin x k x k).
 *
 * Determinism: every reduction over the batch (BatchNorm statistics, weight gradients) is first
 * reduced per image into a caller-provided partial buffer, then summed over images in index order,
 * so results do not depend on the thread count or on thread timing.
 *
 * Threads: OpenMP across images; the library links the same libgomp as PyTorch, so
 * torch.set_num_threads() sets the team size. Channel counts up to TM_MAX_CHANNELS.
 */
#ifndef TM_KERNELS_H
#define TM_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#define TM_MAX_CHANNELS 64

/* Which build variant this library is ("generic", "avx2", "avx512") and what the CPU offers
 * (bit 0: AVX2+FMA, bit 1: AVX-512F/VL/BW/DQ), detected at run time. */
const char *tm_variant(void);
int tm_cpu_features(void);
/* The channel-stride unit of this build (8 or 16): every CS below is round_up(C, tm_lanes()). */
int tm_lanes(void);

/* Dense k x k convolution (k = 1 or 3), stride 1, zero padding `pad` (0 or 1).
 * x: N x H x W x xs (xs = 1 for the network input, else round_up(Cin, L)); w: Cout x Cin x k x k;
 * bias: Cout or NULL; y: N x Ho x Wo x round_up(Cout, L), Ho = H + 2 pad - k + 1.
 * relu != 0 applies max(0, .) to y (conv -> ReLU -> BatchNorm order).
 * stats: NULL, or N x 2 x round_up(Cout, L) doubles receiving each image's sum and sum of squares of y. */
void tm_conv_forward(const float *x, int xs, const float *w, const float *bias, float *y, double *stats,
                     int N, int H, int W, int Cin, int Cout, int k, int pad, int relu);

/* Input gradient of tm_conv_forward: dx (N x H x W x dxs, dxs = 1 or round_up(Cin, L)) from
 * dy (N x Ho x Wo x round_up(Cout, L)); a convolution with the flipped, transposed kernel. */
void tm_conv_backward_data(const float *dy, const float *w, float *dx, int dxs,
                           int N, int H, int W, int Cin, int Cout, int k, int pad);

/* Weight (and bias) gradient of tm_conv_forward. dw: Cout x Cin x k x k; dbias: Cout or NULL.
 * partial: scratch of N * k * k * xs * round_up(Cout, L) floats. */
void tm_conv_backward_weight(const float *x, int xs, const float *dy, float *dw, float *dbias, float *partial,
                             int N, int H, int W, int Cin, int Cout, int k, int pad);

/* Depthwise 3x3 convolution, padding 1: x, y: N x H x W x round_up(C, L); w: C x 1 x 3 x 3.
 * stats as in tm_conv_forward. */
void tm_dwconv_forward(const float *x, const float *w, float *y, double *stats, int N, int H, int W, int C);
void tm_dwconv_backward_data(const float *dy, const float *w, float *dx, int N, int H, int W, int C);
/* dw: C x 1 x 3 x 3; partial: N * 9 * round_up(C, L) floats. */
void tm_dwconv_backward_weight(const float *x, const float *dy, float *dw, float *partial, int N, int H, int W, int C);

/* Training-mode BatchNorm from per-image stats (N x 2 x CS doubles, CS = round_up(C, L)) over
 * M = N * HW values per channel: writes scale = gamma / sqrt(var + eps), shift = beta - mean * scale,
 * mean and invstd (CS floats each, zero in padded lanes) and updates running_mean / running_var
 * (C floats, unbiased variance) with `momentum`. gamma/beta NULL means 1/0 (affine=False). */
void tm_bn_finalize(const double *stats, int N, int HW, int C, double eps, double momentum,
                    const float *gamma, const float *beta, float *running_mean, float *running_var,
                    float *scale, float *shift, float *mean, float *invstd);
/* a = z * scale + shift, then max(0, .) when relu; z, a: count x CS. */
void tm_bn_apply(const float *z, float *a, const float *scale, const float *shift, size_t count, int CS, int relu);
/* Gradient of tm_bn_apply + batch statistics: dz from da (may alias: dz == da works).
 * relu_after: the forward applied ReLU after the affine map; relu_before: z itself is a ReLU output
 * and dz is masked by z > 0. scale (= gamma * invstd) carries gamma. dgamma/dbeta (C floats) may be NULL. partial: N x 2 x CS doubles. */
void tm_bn_backward(const float *z, const float *da, float *dz, const float *scale, const float *shift,
                    const float *mean, const float *invstd, float *dgamma, float *dbeta,
                    double *partial, int N, int HW, int C, int relu_after, int relu_before);

/* 2x2 max-pool, stride 2 (floor): x: N x H x W x CS -> y: N x H/2 x W/2 x CS. */
void tm_maxpool2_forward(const float *x, float *y, int N, int H, int W, int CS);
/* dx (N x H x W x CS, written whole) from dy: each window's gradient goes to its first maximum in
 * row-major order (as PyTorch), found again from the forward's x and y. */
void tm_maxpool2_backward(const float *x, const float *y, const float *dy, float *dx, int N, int H, int W, int CS);

/* Global average pool + linear head (the 1x1 conv to K classes, which commutes with the mean):
 * x: N x HW x CS; w: K x C (x 1 x 1); bias: K; pooled: N x CS (kept for the backward); logits: N x K. */
void tm_head_forward(const float *x, const float *w, const float *bias, float *pooled, float *logits,
                     int N, int HW, int C, int K);
/* dlogits: N x K -> dx: N x HW x CS, dw: K x C, dbias: K. */
void tm_head_backward(const float *dlogits, const float *pooled, const float *w, float *dx, float *dw, float *dbias,
                      int N, int HW, int C, int K);

#endif
