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

/* A layer input that is normalized as it is read: the kernel receives a BatchNorm's input z and
 * uses x = z * scale + shift per channel (then max(0, .) when relu) wherever it reads x, computed
 * exactly as tm_bn_apply computes it (the same float operations, so the same bits). NULL where a
 * kernel takes `const tm_act *act`: the input is x itself. Saves the BatchNorm's pass over memory
 * (write x, read it back) for the layers whose backward does not need x or recomputes it. */
typedef struct tm_act {
    const float *scale, *shift; /* CS floats each */
    int relu;
} tm_act;

/* A BatchNorm's backward inputs, for the kernel that produces the gradient of its output (da) and
 * takes the first half of its backward (tm_bn_sums) image by image, while each image is in cache. */
typedef struct tm_bn_sums_of {
    const float *z, *scale, *shift, *mean, *invstd; /* as tm_bn_backward takes them */
    double *partial;                                /* N x 2 x CS: each image's sums */
    int relu_after;
} tm_bn_sums_of;

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

/* Dense 3x3 convolution with stride 2 and padding 1 of a one-channel input stored at stride 1 (the
 * network input): x: N x H x W; w: Cout x 1 x 3 x 3; bias: Cout or NULL; y: N x Ho x Wo x round_up(Cout, L)
 * with Ho = TM_S2_OUT(H) = (H - 1) / 2 + 1; relu and stats as in tm_conv_forward. The backward: dx
 * (N x H x W) from dy, and dw / dbias (partial: N * 10 * round_up(Cout, L) floats of scratch). */
#define TM_S2_OUT(n) (((n) - 1) / 2 + 1)
void tm_conv_s2_forward(const float *x, const float *w, const float *bias, float *y, double *stats,
                        int N, int H, int W, int Cout, int relu);
void tm_conv_s2_backward_data(const float *dy, const float *w, float *dx, int N, int H, int W, int Cout);
void tm_conv_s2_backward_weight(const float *x, const float *dy, float *dw, float *dbias, float *partial,
                                int N, int H, int W, int Cout);

/* Depthwise 3x3 convolution, padding 1: x, y: N x H x W x round_up(C, L); w: C x 1 x 3 x 3.
 * stats as in tm_conv_forward; act: x normalized as read (see tm_act), or NULL. */
void tm_dwconv_forward(const float *x, const tm_act *act, const float *w, float *y, double *stats,
                       int N, int H, int W, int C);
/* Backward, image by image (so that each image's dy is read from memory once): the weight gradient
 * dw (C x 1 x 3 x 3; partial: N * 9 * round_up(C, L) floats of scratch; x and act as the forward read
 * them), then, unless dx is NULL, the input gradient dx (N x H x W x round_up(C, L)), to which each
 * image's dx_add is added when dx_add is not NULL (a shortcut's gradient, of dx's shape: see
 * tm_shortcut_backward); sums: NULL, or the BatchNorm whose output x is, whose tm_bn_sums of dx are
 * taken as each image's dx is written. */
void tm_dwconv_backward(const float *x, const tm_act *act, const float *dy, const float *w, float *dw, float *partial,
                        float *dx, const float *dx_add, const tm_bn_sums_of *sums, int N, int H, int W, int C);

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
/* tm_bn_backward in two halves, so that the kernel that produces da can take the first while each
 * image's da is still in cache: tm_bn_sums writes images n0..n1-1's sums into bn->partial on the
 * calling thread (the same loops as tm_bn_backward's first pass, so the same bits);
 * tm_bn_backward_finish is the rest, given every image's sums. tm_bn_sums_of: above. */
void tm_bn_sums(const tm_bn_sums_of *bn, const float *da, int n0, int n1, int HW, int C);
void tm_bn_backward_finish(const float *z, const float *da, float *dz, const float *scale, const float *shift,
                           const float *mean, const float *invstd, float *dgamma, float *dbeta,
                           const double *partial, int N, int HW, int C, int relu_after, int relu_before);

/* 2x2 max-pool, stride 2 (floor): x: N x H x W x CS -> y: N x H/2 x W/2 x CS, and index (same shape as
 * y, bytes): the position of each window's first maximum in row-major order (0, 1 top; 2, 3 bottom).
 * CS = round_up(C, L), or 1 for the network input (a max-pool of the image; act must then be NULL). */
void tm_maxpool2_forward(const float *x, const tm_act *act, float *y, uint8_t *index, int N, int H, int W, int CS);
/* dx (N x H x W x CS, written whole) from dy: each window's gradient goes to the position in index.
 * sums: NULL, or the BatchNorm whose output x is (tm_bn_sums of dx, image by image). */
void tm_maxpool2_backward(const uint8_t *index, const float *dy, float *dx, const tm_bn_sums_of *sums,
                          int N, int H, int W, int CS);

/* Global average pool + linear head (the 1x1 conv to K classes, which commutes with the mean):
 * x: N x HW x CS; w: K x C (x 1 x 1); bias: K; pooled: N x CS (kept for the backward); logits: N x K. */
void tm_head_forward(const float *x, const tm_act *act, const float *w, const float *bias, float *pooled, float *logits,
                     int N, int HW, int C, int K);
/* dlogits: N x K -> dx: N x HW x CS, dw: K x C, dbias: K. */
void tm_head_backward(const float *dlogits, const float *pooled, const float *w, float *dx, float *dw, float *dbias,
                      int N, int HW, int C, int K);

/* A linear head on the whole map: x: N x HW x round_up(C, L); w: K x (C * HW) in PyTorch's flatten order
 * (channel major, then pixel); bias: K or NULL; logits: N x K. The backward: dx (N x HW x round_up(C, L), or
 * NULL), dw (K x C * HW) and dbias (K or NULL), partial: N * (K * C * HW + K) floats of scratch. */
void tm_fc_forward(const float *x, const float *w, const float *bias, float *logits, int N, int HW, int C, int K);
void tm_fc_backward(const float *dlogits, const float *x, const float *w, float *dx, float *dw, float *dbias,
                    float *partial, int N, int HW, int C, int K);

/* Identity shortcut (the end of a residual block, ReLU(body(s) + s)): y = max(0, x + s) over `count` pixels
 * of channel stride CS, x the body's output and s the block's input, each normalized as read when its
 * act is given (see tm_act: x is then the body's last BatchNorm's input, s the input of the BatchNorm
 * before the block). x, s, y: count x CS. */
void tm_shortcut_forward(const float *x, const tm_act *act, const float *s, const tm_act *sact, float *y,
                         size_t count, int CS);
/* Its backward, in place: g (N x HW x round_up(C, L), the gradient of y on entry) becomes g * (y > 0),
 * the gradient of both x and s, and the same values are written to dskip (the shortcut's share, to be
 * added to the gradient of the block's input: tm_shortcut_join, or tm_dwconv_backward's dx_add).
 * sums: NULL, or the BatchNorm whose output x is (tm_bn_sums of g, image by image). */
void tm_shortcut_backward(const float *y, float *g, float *dskip, const tm_bn_sums_of *sums, int N, int HW, int C);
/* dx += dskip over `count` floats: the shortcut's gradient joins the body's at the block's input. */
void tm_shortcut_join(float *dx, const float *dskip, size_t count);

/* ---- A whole network: the lowered program (engine/program.py) run layer by layer ----------------------
 *
 * tm_net_forward / tm_net_backward call the kernels above in program order, so one call from
 * Python runs a whole pass (the same kernels, in the same order, as calling them one by one: the
 * results are identical). A BatchNorm followed by a depthwise conv, a max-pool or the head does not
 * write its output: that layer normalizes its input as it reads it (tm_act), and the depthwise weight
 * gradient does so again; the BatchNorm's y buffer is then left unused. A BatchNorm followed by a
 * shortcut is not written either: the shortcut normalizes it as it reads it, and reads the block's input
 * as the block's first layer does (normalized as read when that input is such a BatchNorm's output, to
 * the same bits). A residual block is its body's layers
 * (a conv first), then a TM_SHORTCUT layer whose from_layer is the index of that first conv: its forward
 * adds that conv's input; its backward keeps the gradient for the shortcut in dskip, which that conv's
 * backward adds to its dx (blocks do not nest). Every pointer is set up by the caller and stays valid
 * between calls. */
enum { TM_CONV = 1, TM_DWCONV = 2, TM_BN = 3, TM_MAXPOOL = 4, TM_DROPOUT = 5, TM_HEAD = 6, TM_SHORTCUT = 7, TM_FC = 8 };

typedef struct tm_layer {
    int kind;
    int H, W;           /* input height and width */
    int Cin, Cout;      /* input channels; output channels (conv) or classes (head); BN/pool/dropout/shortcut: Cin */
    int k, pad;         /* conv kernel (1 or 3) and padding */
    int xs;             /* channel stride of the input (conv, pool, dropout): 1 for the network input and the
                         * max-pools and dropouts of it, else round_up(Cin, L) */
    int relu;           /* conv: ReLU on its output; BN: ReLU after the affine map */
    int relu_before;    /* BN: its input is a ReLU output */
    int stats;          /* conv: a BatchNorm follows (accumulate its statistics into net->stats) */
    int from_layer;     /* shortcut: the layer whose input it adds (its block's first, a conv) */
    int stride;         /* conv: 1, or 2 (tm_conv_s2_*: k 3, pad 1, one input channel at stride 1) */
    float *y;           /* output: N x Ho x Wo x round_up(Cout, L); head: N x K logits */
    float *dx;          /* gradient w.r.t. the input (conv, pool, head); NULL where not needed: from the first
                         * layer with parameters down, unless the caller wants the network input's (BN,
                         * dropout and shortcut backward passes work in place) */
    const float *w, *bias;   /* parameters in PyTorch layouts (BN: gamma, beta); NULL when absent */
    float *dw, *dbias;       /* their gradients, overwritten by tm_net_backward; NULL when absent */
    double eps, momentum;    /* BN */
    float *running_mean, *running_var, *scale, *shift, *mean, *invstd;  /* BN: C and CS floats */
    int64_t *num_batches_tracked;  /* BN: incremented by each forward; may be NULL */
    float *aux;         /* dropout: the N x H x W x CS mask (already scaled by 1/(1-p)); head: N x CS pooled */
    uint8_t *index;     /* max-pool: the winners, as tm_maxpool2_forward writes them */
    float *dskip;       /* shortcut: N x H x W x CS, the gradient along the shortcut (tm_shortcut_backward);
                         * shortcuts whose blocks do not overlap may share it */
} tm_layer;

typedef struct tm_net {
    int N, count;       /* batch size, layers */
    tm_layer *layers;
    const float *x;     /* the network input: N x H x W x 1 */
    double *stats;      /* scratch: N x 2 x (largest CS) doubles */
    float *partial;     /* scratch for weight gradients: the largest `partial` of the conv kernels */
    double *times;      /* NULL, or count x 2 doubles: each layer's forward / backward seconds are added (profiling) */
} tm_net;

/* sizeof(tm_layer) and sizeof(tm_net): the binding checks its mirror of the structs against them. */
size_t tm_layer_size(void);
size_t tm_net_size(void);
/* The forward pass in training mode: BatchNorm with batch statistics, running statistics updated;
 * the logits are in the last layer's y. */
void tm_net_forward(const tm_net *net);
/* The backward pass of the last forward, from dlogits (N x K): every layer's dw/dbias, and the input
 * gradient of the first layer when its dx is not NULL (the pass stops after the last layer, in backward
 * order, whose dx is NULL). Activation gradients use the layers' dx buffers (which may be shared
 * between layers that are not adjacent). */
void tm_net_backward(const tm_net *net, const float *dlogits);

/* ---- The batch and the loss ------------------------------------------------------------------------------ */

#define TM_BATCH_MAX_SIDE 64
/* x (N x H x W floats, H and W at most TM_BATCH_MAX_SIDE) = (augment(images[idx[n]] / 255) - mean) / std.
 * images: H x W uint8 each, idx: N indices (the caller checks their range). rand: N x 4 uniform
 * [0, 1) draws, or NULL for no augmentation; with them, image n is rotated by (2 r0 - 1) rotate
 * radians, zoomed by zoom_lo + r1 (zoom_hi - zoom_lo) and shifted by (2 r2 - 1, 2 r3 - 1) translate
 * pixels, sampled bilinearly with zeros outside: what augment.random_affine computes with
 * affine_grid + grid_sample (align_corners=False), to float rounding. disp: NULL, or (used only with
 * rand) N x H x W x 2 floats added to each output pixel's (x, y) source coordinate after the affine
 * map, in affine_grid's normalized units (an elastic distortion: augment.elastic_field). */
void tm_batch(const uint8_t *images, const int64_t *idx, int N, int H, int W, const float *rand, const float *disp,
              float rotate, float zoom_lo, float zoom_hi, float translate, float mean, float std, float *x);

/* Mean softmax cross-entropy with label smoothing s over N x K logits (PyTorch's
 * F.cross_entropy(logits, labels, label_smoothing=s)); row n's label is labels[idx[n]] (labels[n] when
 * idx is NULL), in 0..K-1. Writes dlogits (N x K), the gradient of that mean, and *correct, the number
 * of rows whose first maximum is the label. Returns the loss (NaN or inf when the logits are not finite). */
double tm_xent(const float *logits, const int64_t *labels, const int64_t *idx, int N, int K, float smoothing,
               float *dlogits, int *correct);

/* ---- A whole training step ------------------------------------------------------------------------------ */

/* tm_batch into x (N x H x W; net->x is set to it), tm_net_forward, tm_xent into dlogits (N x K, K the
 * last layer's Cout: the network must end in its head) and tm_net_backward, in one call: the same
 * kernels in the same order as calling them one by one. Returns the loss; *correct as tm_xent. */
double tm_net_train_step(tm_net *net, const uint8_t *images, const int64_t *idx, int H, int W, const float *rand,
                         const float *disp, float rotate, float zoom_lo, float zoom_hi, float translate, float mean,
                         float std, const int64_t *labels, float smoothing, float *x, float *dlogits, int *correct);

#endif
