/* The separable block — depthwise 3x3 (padding 1, no bias, nothing between) then pointwise 1x1 —
 * run image by image: the depthwise output of one image (H x W x CS floats, ~50 KB) lives in a
 * per-thread scratch buffer instead of an N-image tensor, so it is written and read in cache, and
 * the backward recomputes it rather than reading it back. The same kernel bodies, in the same
 * order, as the two layers run separately: the results are identical (tested). A BatchNorm (+ ReLU)
 * right before the block can be applied as the block reads each image (and again in its backward), so
 * that its output tensor is never written. */
#include "tm_kernels.h"
#include "tm_common.h"
#include <stdlib.h>

/* a = max(0, z * scale + shift) (no max when !relu) for one image of P pixels x CS lanes: the BatchNorm
 * before a separable block, applied as the block reads its input (tm_bn_apply's arithmetic). */
static void bn_apply_image(const float *restrict z, float *restrict a, const float *restrict scale,
                           const float *restrict shift, int P, int CS, int relu)
{
    for (int p = 0; p < P; p++)
        for (int c = 0; c < CS; c++) {
            const float o = z[(size_t)p * CS + c] * scale[c] + shift[c];
            a[(size_t)p * CS + c] = relu ? (o > 0.0f ? o : 0.0f) : o;
        }
}

/* The block's input for image n: x itself, or the BatchNorm of it in `scratch`. */
static const float *block_input(const float *x, const tm_bn_in *bn, float *scratch, size_t n, int HW, int CS)
{
    if (!bn) return x + n * HW * CS;
    bn_apply_image(x + n * HW * CS, scratch, bn->scale, bn->shift, HW, CS, bn->relu);
    return scratch;
}

void tm_sep_forward(const float *x, const tm_bn_in *bn, const float *w_dw, const float *w_pw, const float *bias,
                    float *y, double *stats, int N, int H, int W, int Cin, int Cout, int relu)
{
    const int CSi = tm_roundv(Cin), CSo = tm_roundv(Cout), HW = H * W;
    float *wt_dw = tm_dw_pack(w_dw, Cin, 0), *wt_pw = tm_conv_pack(w_pw, bias, Cin, Cout, 1);
    const float *bp = bias ? wt_pw + (size_t)Cin * CSo : NULL;
    #pragma omp parallel
    {
        size_t lo, hi;
        tm_thread_range((size_t)N, &lo, &hi);
        float *d = malloc((size_t)2 * HW * CSi * sizeof(float)), *a = d ? d + (size_t)HW * CSi : NULL;
        for (size_t n = lo; n < hi && d; n++) {
            tm_dw_range(block_input(x, bn, a, n, HW, CSi), wt_dw, d, NULL, 0, 1, H, W, CSi);
            /* pointwise: the image is one row of H*W pixels */
            tm_conv_range(d, CSi, wt_pw, bp, y + n * HW * CSo, CSo, stats ? stats + n * 2 * CSo : NULL, 0, 1, 1, HW,
                          Cin, CSo, 1, 0, relu);
        }
        free(d);
    }
    free(wt_dw);
    free(wt_pw);
}

void tm_sep_backward(const float *x, const tm_bn_in *bn, const float *dy, const tm_bn_out *bn_out, const float *w_dw,
                     const float *w_pw, float *dx, float *dw_dw, float *dw_pw, float *dbias, float *partial,
                     int N, int H, int W, int Cin, int Cout)
{
    const int CSi = tm_roundv(Cin), CSo = tm_roundv(Cout), HW = H * W;
    const size_t len_pw = (size_t)CSi * CSo + CSo, len_dw = (size_t)9 * CSi;
    float *partial_pw = partial, *partial_dw = partial + (size_t)N * len_pw;
    float *wt_dw = tm_dw_pack(w_dw, Cin, 0), *wt_dw_flip = dx ? tm_dw_pack(w_dw, Cin, 1) : NULL;
    float *wt_back = tm_conv_pack_back(w_pw, Cin, Cout, 1);
    #pragma omp parallel
    {
        size_t lo, hi;
        tm_thread_range((size_t)N, &lo, &hi);
        const size_t img_i = (size_t)HW * CSi, img_o = (size_t)HW * CSo;
        float *d = malloc((3 * img_i + img_o) * sizeof(float));
        float *dd = d ? d + img_i : NULL, *a = d ? d + 2 * img_i : NULL, *g = d ? d + 3 * img_i : NULL;
        for (size_t n = lo; n < hi && d; n++) {
            const float *xn = block_input(x, bn, a, n, HW, CSi), *dyn = dy + n * img_o;
            if (bn_out) { /* the next BatchNorm's pass 2 for this image: dL/dy from dL/d(its output) */
                tm_bn_grad_range(bn_out->y + n * img_o, dyn, g, bn_out->scale, bn_out->shift, bn_out->mean, bn_out->k0,
                                 bn_out->k2, 0, (size_t)HW, CSo, bn_out->relu_after, bn_out->relu_before);
                dyn = g;
            }
            tm_dw_range(xn, wt_dw, d, NULL, 0, 1, H, W, CSi); /* the depthwise output, again */
            tm_conv_wgrad_range(d, CSi, dyn, partial_pw + n * len_pw, 0, 1, 1, HW, Cin, CSo, 1, 0);
            tm_conv_range(dyn, CSo, wt_back, NULL, dd, CSi, NULL, 0, 1, 1, HW, Cout, CSi, 1, 0, 0);
            tm_dw_wgrad_range(xn, dd, partial_dw + n * len_dw, 0, 1, H, W, CSi);
            if (!dx) continue;
            tm_dw_range(dd, wt_dw_flip, dx + n * img_i, NULL, 0, 1, H, W, CSi);
            if (bn && bn->partial) /* the previous BatchNorm's pass 1 for this image, while dx is in cache */
                tm_bn_sums_range(x + n * img_i, dx + n * img_i, bn->scale, bn->shift, bn->mean, bn->invstd,
                                 bn->partial + n * 2 * CSi, 0, 1, HW, CSi, bn->relu);
        }
        free(d);
    }
    tm_conv_reduce_grad(partial_pw, dw_pw, dbias, N, CSi, Cin, Cout, 1);
    tm_dw_reduce_grad(partial_dw, dw_dw, N, Cin);
    free(wt_dw);
    free(wt_dw_flip);
    free(wt_back);
}
