/* The optimizer step of the native engine: SGD with Nesterov momentum and L2 weight decay over every
 * parameter tensor of a network in one call, on the calling thread (a few thousand values: a parallel
 * region would cost more than the arithmetic, and PyTorch's optimizer, run right after a step that
 * swept megabytes through the caches, took 0.25-0.3 ms per step in its Python and dispatch code). */
#include "tm_kernels.h"

size_t tm_sgd_size(void) { return sizeof(tm_sgd); }
size_t tm_sgd_tensor_size(void) { return sizeof(tm_sgd_tensor); }

void tm_sgd_step(const tm_sgd *opt)
{
    const float mom = opt->momentum;
    for (int i = 0; i < opt->count; i++) {
        const tm_sgd_tensor *t = &opt->tensors[i];
        const float lr = opt->lr[t->group], wd = opt->weight_decay[t->group];
        float *restrict p = t->param, *restrict buf = t->momentum_buffer;
        const float *restrict g = t->grad;
        /* PyTorch's order: d = g + wd p; buf = mom buf + d; d += mom buf; p -= lr d. */
        for (size_t j = 0; j < t->size; j++) {
            const float d = wd != 0.0f ? g[j] + wd * p[j] : g[j];
            const float b = mom * buf[j] + d;
            buf[j] = b;
            p[j] -= lr * (d + mom * b);
        }
    }
}
