/* A whole network's training pass: the lowered program (tm_layer table) run kernel by kernel, so
 * that one call from Python replaces ~60 (measured: the Python and ctypes glue around the kernels
 * was a fifth of the native step). */
#include "tm_kernels.h"
#include "tm_common.h"
#include <omp.h>

size_t tm_layer_size(void) { return sizeof(tm_layer); }
size_t tm_net_size(void) { return sizeof(tm_net); }

/* Layer j's input tensor. */
static const float *input_of(const tm_net *net, int j) { return j > 0 ? net->layers[j - 1].y : net->x; }

/* Whether the separable block whose depthwise conv is layer d applies the BatchNorm before it. */
static int in_bn(const tm_net *net, int d) { return d > 0 && net->layers[d - 1].kind == TM_BN && net->layers[d - 1].fused; }

/* What the separable block whose depthwise conv is layer d reads: the depthwise conv's input, or, when
 * the BatchNorm before it is fused, that BatchNorm's input (and *bn its affine map). */
static const float *block_input(const tm_net *net, int d, tm_bn_in *bn)
{
    if (!in_bn(net, d)) return input_of(net, d);
    const tm_layer *B = &net->layers[d - 1];
    *bn = (tm_bn_in){B->scale, B->shift, B->relu, B->mean, B->invstd, net->stats};
    return input_of(net, d - 1);
}

/* Whether layer i is the pointwise conv of a separable block (its depthwise conv fused into it). */
static int is_block(const tm_net *net, int i)
{
    return i >= 1 && net->layers[i].kind == TM_CONV && net->layers[i - 1].kind == TM_DWCONV && net->layers[i - 1].fused;
}

/* Whether the BatchNorm at layer b leaves its backward's pass 2 to the separable block that produces
 * its input (that block's backward turns dL/d(BN output) into dL/d(BN input) image by image). */
static int bn_pass2_in_block(const tm_net *net, int b) { return net->layers[b].kind == TM_BN && is_block(net, b - 1); }

void tm_net_forward(const tm_net *net)
{
    const int N = net->N;
    const float *cur = net->x;
    for (int i = 0; i < net->count; i++) {
        tm_layer *L = &net->layers[i];
        const int CS = tm_roundv(L->Cin);
        const double started = net->times ? omp_get_wtime() : 0.0;
        switch (L->kind) {
        case TM_CONV:
            if (i > 0 && net->layers[i - 1].fused) { /* the separable block: from the depthwise conv's input */
                tm_bn_in bn;
                const float *in = block_input(net, i - 1, &bn);
                tm_sep_forward(in, in_bn(net, i - 1) ? &bn : NULL, net->layers[i - 1].w, L->w, L->bias, L->y,
                               L->stats ? net->stats : NULL, N, L->H, L->W, L->Cin, L->Cout, L->relu);
            } else {
                tm_conv_forward(cur, L->xs, L->w, L->bias, L->y, L->stats ? net->stats : NULL, N, L->H, L->W,
                                L->Cin, L->Cout, L->k, L->pad, L->relu);
            }
            break;
        case TM_DWCONV:
            if (!L->fused) tm_dwconv_forward(cur, L->w, L->y, L->stats ? net->stats : NULL, N, L->H, L->W, L->Cin);
            break;
        case TM_BN:
            tm_bn_finalize(net->stats, N, L->H * L->W, L->Cin, L->eps, L->momentum, L->w, L->bias,
                           L->running_mean, L->running_var, L->scale, L->shift, L->mean, L->invstd);
            if (L->num_batches_tracked) *L->num_batches_tracked += 1;
            if (!L->fused) tm_bn_apply(cur, L->y, L->scale, L->shift, (size_t)N * L->H * L->W, CS, L->relu);
            break;
        case TM_MAXPOOL:
            tm_maxpool2_forward(cur, L->y, N, L->H, L->W, CS);
            break;
        case TM_DROPOUT: {
            const size_t count = (size_t)N * L->H * L->W * CS;
            #pragma omp parallel for schedule(static)
            for (size_t j = 0; j < count; j++) L->y[j] = cur[j] * L->aux[j];
            break;
        }
        case TM_HEAD:
            tm_head_forward(cur, L->w, L->bias, L->aux, L->y, N, L->H * L->W, L->Cin, L->Cout);
            break;
        default:
            break;
        }
        if (net->times) net->times[2 * i] += omp_get_wtime() - started;
        cur = L->y;
    }
}

/* g *= (y > 0), in place: the ReLU of a conv that no BatchNorm follows. */
static void relu_mask(float *g, const float *y, size_t count)
{
    #pragma omp parallel for schedule(static)
    for (size_t j = 0; j < count; j++) g[j] = y[j] > 0.0f ? g[j] : 0.0f;
}

void tm_net_backward(const tm_net *net, const float *dlogits)
{
    const int N = net->N;
    float *g = (float *)dlogits; /* written only through layers' dx buffers or in-place layers after the head */
    for (int i = net->count - 1; i >= 0; i--) {
        tm_layer *L = &net->layers[i];
        const float *in = input_of(net, i);
        const int CS = tm_roundv(L->Cin);
        const double started = net->times ? omp_get_wtime() : 0.0;
        switch (L->kind) {
        case TM_HEAD:
            tm_head_backward(g, L->aux, L->w, L->dx, L->dw, L->dbias, N, L->H * L->W, L->Cin, L->Cout);
            g = L->dx;
            break;
        case TM_DROPOUT: {
            const size_t count = (size_t)N * L->H * L->W * CS;
            #pragma omp parallel for schedule(static)
            for (size_t j = 0; j < count; j++) g[j] *= L->aux[j];
            break;
        }
        case TM_MAXPOOL:
            tm_maxpool2_backward(in, L->y, g, L->dx, N, L->H, L->W, CS);
            g = L->dx;
            break;
        case TM_BN:
            if (!L->fused && !bn_pass2_in_block(net, i)) {
                tm_bn_backward(in, g, g, L->scale, L->shift, L->mean, L->invstd, L->dw, L->dbias, net->stats, N,
                               L->H * L->W, L->Cin, L->relu, L->relu_before);
                break;
            }
            if (!L->fused) { /* pass 1 here; else the block after it ran pass 1 as it wrote g */
                #pragma omp parallel
                {
                    size_t lo, hi;
                    tm_thread_range((size_t)N, &lo, &hi);
                    tm_bn_sums_range(in, g, L->scale, L->shift, L->mean, L->invstd, net->stats, (int)lo, (int)hi,
                                     L->H * L->W, CS, L->relu);
                }
            }
            tm_bn_backward_finish(net->stats, N, L->H * L->W, L->Cin, L->scale, L->invstd, L->dw, L->dbias, L->k0, L->k2);
            if (!bn_pass2_in_block(net, i)) /* else the block before it applies pass 2 as it reads g */
                tm_bn_backward_apply(in, g, g, L->scale, L->shift, L->mean, L->k0, L->k2, N, L->H * L->W, L->Cin,
                                     L->relu, L->relu_before);
            break;
        case TM_CONV:
        case TM_DWCONV: {
            const int Ho = L->H + 2 * L->pad - L->k + 1, Wo = L->W + 2 * L->pad - L->k + 1;
            if (L->relu && !L->stats) relu_mask(g, L->y, (size_t)N * Ho * Wo * tm_roundv(L->Cout));
            if (L->kind == TM_DWCONV && L->fused) break; /* done by the pointwise layer after it */
            if (is_block(net, i)) {
                tm_layer *D = &net->layers[i - 1];
                tm_bn_in bn;
                const float *block_in = block_input(net, i - 1, &bn);
                tm_bn_out out;
                const int next_bn = i + 1 < net->count && bn_pass2_in_block(net, i + 1);
                if (next_bn) {
                    const tm_layer *B = &net->layers[i + 1];
                    out = (tm_bn_out){L->y, B->scale, B->shift, B->mean, B->k0, B->k2, B->relu, B->relu_before};
                }
                tm_sep_backward(block_in, in_bn(net, i - 1) ? &bn : NULL, g, next_bn ? &out : NULL, D->w, L->w, D->dx,
                                D->dw, L->dw, L->dbias, net->partial, N, L->H, L->W, L->Cin, L->Cout);
                g = D->dx;
                break;
            }
            if (L->kind == TM_DWCONV) {
                tm_dwconv_backward_weight(in, g, L->dw, net->partial, N, L->H, L->W, L->Cin);
                if (L->dx) tm_dwconv_backward_data(g, L->w, L->dx, N, L->H, L->W, L->Cin);
            } else {
                tm_conv_backward_weight(in, L->xs, g, L->dw, L->dbias, net->partial, N, L->H, L->W, L->Cin, L->Cout,
                                        L->k, L->pad);
                if (L->dx) tm_conv_backward_data(g, L->w, L->dx, L->xs, N, L->H, L->W, L->Cin, L->Cout, L->k, L->pad);
            }
            g = L->dx;
            break;
        }
        default:
            break;
        }
        if (net->times) net->times[2 * i + 1] += omp_get_wtime() - started;
    }
}
