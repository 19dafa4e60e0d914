/* A whole network's training pass: the lowered program (tm_layer table) run kernel by kernel, so
 * that one call from Python replaces ~60: the Python and ctypes glue around separate kernel calls
 * is a large share of a step this small. */
#include "tm_kernels.h"
#include "tm_common.h"
#include <omp.h>

size_t tm_layer_size(void) { return sizeof(tm_layer); }
size_t tm_net_size(void) { return sizeof(tm_net); }

/* Layer i is a BatchNorm whose output the next layer normalizes as it reads (tm_act): a depthwise
 * conv (its weight gradient recomputes the input), a max-pool, the head or a shortcut (their backward
 * passes do not read their input). */
static int deferred(const tm_net *net, int i)
{
    if (net->layers[i].kind != TM_BN || i + 1 >= net->count) return 0;
    const int next = net->layers[i + 1].kind;
    return next == TM_DWCONV || next == TM_MAXPOOL || next == TM_HEAD || next == TM_SHORTCUT;
}

/* What layer i reads: its input tensor, and in *act how to normalize it (act->scale NULL: as is). */
static const float *layer_input(const tm_net *net, int i, tm_act *act)
{
    act->scale = act->shift = NULL;
    act->relu = 0;
    if (i == 0) return net->x;
    const tm_layer *prev = &net->layers[i - 1];
    if (!deferred(net, i - 1)) return prev->y;
    act->scale = prev->scale;
    act->shift = prev->shift;
    act->relu = prev->relu;
    return i >= 2 ? net->layers[i - 2].y : net->x; /* the BatchNorm's own input */
}

void tm_net_forward(const tm_net *net)
{
    const int N = net->N;
    for (int i = 0; i < net->count; i++) {
        tm_layer *L = &net->layers[i];
        const int CS = tm_roundv(L->Cin);
        tm_act a;
        const float *cur = layer_input(net, i, &a);
        const tm_act *act = a.scale ? &a : NULL;
        const double started = net->times ? omp_get_wtime() : 0.0;
        switch (L->kind) {
        case TM_CONV:
            if (L->stride == 2)
                tm_conv_s2_forward(cur, L->w, L->bias, L->y, L->stats ? net->stats : NULL, N, L->H, L->W, L->Cout,
                                   L->relu);
            else
                tm_conv_forward(cur, L->xs, L->w, L->bias, L->y, L->stats ? net->stats : NULL, N, L->H, L->W,
                                L->Cin, L->Cout, L->k, L->pad, L->relu);
            break;
        case TM_DWCONV:
            tm_dwconv_forward(cur, act, L->w, L->y, L->stats ? net->stats : NULL, N, L->H, L->W, L->Cin);
            break;
        case TM_BN:
            tm_bn_finalize(net->stats, N, L->H * L->W, L->Cin, L->eps, L->momentum, L->w, L->bias,
                           L->running_mean, L->running_var, L->scale, L->shift, L->mean, L->invstd);
            if (L->num_batches_tracked) *L->num_batches_tracked += 1;
            if (!deferred(net, i)) tm_bn_apply(cur, L->y, L->scale, L->shift, (size_t)N * L->H * L->W, CS, L->relu);
            break;
        case TM_MAXPOOL:
            tm_maxpool2_forward(cur, act, L->y, L->index, N, L->H, L->W, L->xs);
            break;
        case TM_DROPOUT: {
            const size_t count = (size_t)N * L->H * L->W * L->xs;
            #pragma omp parallel for schedule(static)
            for (size_t j = 0; j < count; j++) L->y[j] = cur[j] * L->aux[j];
            break;
        }
        case TM_HEAD:
            tm_head_forward(cur, act, L->w, L->bias, L->aux, L->y, N, L->H * L->W, L->Cin, L->Cout);
            break;
        case TM_FC: /* reads its input as stored: a BatchNorm before it writes its output */
            tm_fc_forward(cur, L->w, L->bias, L->y, N, L->H * L->W, L->Cin, L->Cout);
            break;
        case TM_SHORTCUT: { /* the block's input: what its first layer reads, normalized as that layer does */
            tm_act sa;
            const float *s = layer_input(net, L->from_layer, &sa);
            tm_shortcut_forward(cur, act, s, sa.scale ? &sa : NULL, L->y, (size_t)N * L->H * L->W, CS);
            break;
        }
        default:
            break;
        }
        if (net->times) net->times[2 * i] += omp_get_wtime() - started;
    }
}

/* g *= (y > 0), in place: the ReLU of a conv that no BatchNorm follows. */
static void relu_mask(float *g, const float *y, size_t count)
{
    #pragma omp parallel for schedule(static)
    for (size_t j = 0; j < count; j++) g[j] = y[j] > 0.0f ? g[j] : 0.0f;
}

/* Layer i is a deferred BatchNorm whose consumer (a depthwise conv, a max-pool or a shortcut) takes the
 * first half of its backward (tm_bn_sums) as it writes the gradient, image by image while each is in cache. */
static int sums_by_consumer(const tm_net *net, int i)
{
    if (!deferred(net, i)) return 0;
    const tm_layer *next = &net->layers[i + 1];
    return ((next->kind == TM_DWCONV || next->kind == TM_MAXPOOL) && next->dx) || next->kind == TM_SHORTCUT;
}

/* The gradient along the shortcut that adds layer i's input (layer i is a residual block's first), or NULL. */
static const float *shortcut_grad(const tm_net *net, int i)
{
    for (int j = i + 1; j < net->count; j++)
        if (net->layers[j].kind == TM_SHORTCUT && net->layers[j].from_layer == i) return net->layers[j].dskip;
    return NULL;
}

void tm_net_backward(const tm_net *net, const float *dlogits)
{
    const int N = net->N;
    float *g = (float *)dlogits; /* written only through layers' dx buffers or in-place layers after the head */
    for (int i = net->count - 1; i >= 0 && g; i--) { /* g NULL: no layer below needs a gradient */
        tm_layer *L = &net->layers[i];
        tm_act a;
        const float *in = layer_input(net, i, &a);
        const tm_act *act = a.scale ? &a : NULL;
        /* the BatchNorm before this layer, when this layer takes its sums */
        tm_bn_sums_of sums_of = {0};
        const tm_bn_sums_of *sums = NULL;
        if (i >= 1 && sums_by_consumer(net, i - 1)) {
            const tm_layer *B = &net->layers[i - 1];
            sums_of = (tm_bn_sums_of){in, B->scale, B->shift, B->mean, B->invstd, net->stats, B->relu};
            sums = &sums_of;
        }
        const double started = net->times ? omp_get_wtime() : 0.0;
        switch (L->kind) {
        case TM_HEAD:
            tm_head_backward(g, L->aux, L->w, L->dx, L->dw, L->dbias, N, L->H * L->W, L->Cin, L->Cout);
            g = L->dx;
            break;
        case TM_FC:
            tm_fc_backward(g, in, L->w, L->dx, L->dw, L->dbias, net->partial, N, L->H * L->W, L->Cin, L->Cout);
            g = L->dx;
            break;
        case TM_DROPOUT: {
            const size_t count = (size_t)N * L->H * L->W * L->xs;
            #pragma omp parallel for schedule(static)
            for (size_t j = 0; j < count; j++) g[j] *= L->aux[j];
            break;
        }
        case TM_MAXPOOL:
            if (L->dx) tm_maxpool2_backward(L->index, g, L->dx, sums, N, L->H, L->W, L->xs);
            g = L->dx;
            break;
        case TM_BN:
            if (sums_by_consumer(net, i)) /* the first half ran in the next layer's backward */
                tm_bn_backward_finish(in, g, g, L->scale, L->shift, L->mean, L->invstd, L->dw, L->dbias, net->stats,
                                      N, L->H * L->W, L->Cin, L->relu, L->relu_before);
            else
                tm_bn_backward(in, g, g, L->scale, L->shift, L->mean, L->invstd, L->dw, L->dbias, net->stats, N,
                               L->H * L->W, L->Cin, L->relu, L->relu_before);
            break;
        case TM_CONV:
        case TM_DWCONV: {
            const int s = L->stride > 1 ? L->stride : 1;
            const int Ho = (L->H + 2 * L->pad - L->k) / s + 1, Wo = (L->W + 2 * L->pad - L->k) / s + 1;
            const float *skip = L->dx ? shortcut_grad(net, i) : NULL; /* joins dx when a shortcut adds the input */
            if (L->relu && !L->stats) relu_mask(g, L->y, (size_t)N * Ho * Wo * tm_roundv(L->Cout));
            if (L->kind == TM_DWCONV) {
                tm_dwconv_backward(in, act, g, L->w, L->dw, net->partial, L->dx, skip, sums, N, L->H, L->W, L->Cin);
            } else if (s == 2) { /* the network input's conv: no shortcut around it */
                tm_conv_s2_backward_weight(in, g, L->dw, L->dbias, net->partial, N, L->H, L->W, L->Cout);
                if (L->dx) tm_conv_s2_backward_data(g, L->w, L->dx, N, L->H, L->W, L->Cout);
            } else {
                tm_conv_backward_weight(in, L->xs, g, L->dw, L->dbias, net->partial, N, L->H, L->W, L->Cin, L->Cout,
                                        L->k, L->pad);
                if (L->dx) tm_conv_backward_data(g, L->w, L->dx, L->xs, N, L->H, L->W, L->Cin, L->Cout, L->k, L->pad);
                if (skip) tm_shortcut_join(L->dx, skip, (size_t)N * L->H * L->W * L->xs);
            }
            g = L->dx;
            break;
        }
        case TM_SHORTCUT: /* in place: g masked by the ReLU, and kept in dskip for the block's first layer */
            tm_shortcut_backward(L->y, g, L->dskip, sums, N, L->H * L->W, L->Cin);
            break;
        default:
            break;
        }
        if (net->times) net->times[2 * i + 1] += omp_get_wtime() - started;
    }
}

double tm_net_train_step(tm_net *net, const uint8_t *images, const int64_t *idx, int H, int W, const float *rand,
                         const float *disp, float rotate, float zoom_lo, float zoom_hi, float translate, float mean,
                         float std, const int64_t *labels, float smoothing, float *x, float *dlogits, int *correct)
{
    tm_batch(images, idx, net->N, H, W, rand, disp, rotate, zoom_lo, zoom_hi, translate, mean, std, x);
    net->x = x;
    tm_net_forward(net);
    const tm_layer *head = &net->layers[net->count - 1];
    const double loss = tm_xent(head->y, labels, idx, net->N, head->Cout, smoothing, dlogits, correct);
    tm_net_backward(net, dlogits);
    return loss;
}
