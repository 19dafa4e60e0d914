/* 2x2 max-pool (stride 2) and the head (global average pool + linear to the classes), NHWC with
 * channel stride CS (the max-pool also takes the network input: CS = 1). The forward records each
 * window's winner (first maximum in row-major window order, as PyTorch) as one byte per output value,
 * so that the backward reads 1/16 of the input's bytes instead of the input itself (which is cold in
 * cache by then inside a training step). */
#include "tm_kernels.h"
#include "tm_common.h"

TM_INLINE v8 v8_blend(vi8 mask, v8 a, v8 b) { return (v8)(((vi8)a & mask) | ((vi8)b & ~mask)); } /* a where mask, else b */

TM_NOINLINE void maxpool_range(const float *restrict x, const tm_act *act, float *restrict y, uint8_t *restrict index,
                               size_t r0, size_t r1, int H, int W, int CS)
{
    const int Ho = H / 2, Wo = W / 2;
    const vi8 one = (vi8){0} + 1, two = one + 1, three = two + 1;
    float *rows = act ? tm_scratch((size_t)2 * W * CS) : NULL;
    for (size_t r = r0; r < r1; r++) { /* r = n * Ho + oh: one output row */
        const size_t n = r / Ho, oh = r % Ho;
        const float *in = x + (n * H + 2 * oh) * W * CS; /* the window's two input rows */
        if (act) { /* normalized as read: the two rows through the thread's scratch */
            tm_act_pixels(in, rows, act->scale, act->shift, act->relu, (size_t)2 * W, CS);
            in = rows;
        }
        for (int ow = 0; ow < Wo; ow++) {
            const float *q0 = in + (size_t)2 * ow * CS, *q2 = q0 + (size_t)W * CS;
            const size_t o = (r * Wo + ow) * CS;
            for (int c = 0; c < CS; c += TM_VL) {
                const v8 a = v8_load(q0 + c), b = v8_load(q0 + CS + c), d = v8_load(q2 + c), e = v8_load(q2 + CS + c);
                /* strict > keeps the earlier position on ties: the first maximum in window order, as PyTorch */
                vi8 gt = b > a;
                v8 m = v8_blend(gt, b, a);
                vi8 at = gt & one;
                gt = d > m;
                m = v8_blend(gt, d, m);
                at = (vi8)v8_blend(gt, (v8)two, (v8)at);
                gt = e > m;
                v8_store(y + o + c, v8_blend(gt, e, m));
                at = (vi8)v8_blend(gt, (v8)three, (v8)at);
                for (int l = 0; l < TM_VL; l++) index[o + c + l] = (uint8_t)at[l];
            }
        }
    }
}

/* maxpool_range for the network input, one float per pixel (CS = 1: a max-pool of the image). The same
 * comparisons in the same order, so the same winners; as selects, which GCC vectorizes along the row. */
TM_NOINLINE void maxpool_image_range(const float *restrict x, float *restrict y, uint8_t *restrict index,
                                     size_t r0, size_t r1, int H, int W)
{
    const int Ho = H / 2, Wo = W / 2;
    for (size_t r = r0; r < r1; r++) { /* r = n * Ho + oh: one output row */
        const size_t n = r / Ho, oh = r % Ho;
        const float *top = x + (n * H + 2 * oh) * W, *bottom = top + W;
        float *yr = y + r * Wo;
        uint8_t *ir = index + r * Wo;
        for (int ow = 0; ow < Wo; ow++) {
            const float a = top[2 * ow], b = top[2 * ow + 1], d = bottom[2 * ow], e = bottom[2 * ow + 1];
            /* strict >: the first maximum wins ties */
            float m = a;
            uint8_t at = 0;
            at = b > m ? 1 : at;
            m = b > m ? b : m;
            at = d > m ? 2 : at;
            m = d > m ? d : m;
            at = e > m ? 3 : at;
            m = e > m ? e : m;
            yr[ow] = m;
            ir[ow] = at;
        }
    }
}

void tm_maxpool2_forward(const float *x, const tm_act *act, float *y, uint8_t *index, int N, int H, int W, int CS)
{
    #pragma omp parallel
    {
        size_t lo, hi;
        tm_thread_range((size_t)N * (H / 2), &lo, &hi);
        if (CS == 1) /* the image (never normalized as read: no BatchNorm precedes it) */
            maxpool_image_range(x, y, index, lo, hi, H, W);
        else
            maxpool_range(x, act, y, index, lo, hi, H, W, CS);
    }
}

TM_NOINLINE void maxpool_back_range(const uint8_t *restrict index, const float *restrict dy, float *restrict dx,
                                    size_t r0, size_t r1, int H, int W, int CS)
{
    const int Ho = H / 2, Wo = W / 2;
    for (size_t r = r0; r < r1; r++) { /* r = n * H + ih: one input row */
        const size_t n = r / H, ih = r % H, oh = ih / 2;
        float *d = dx + r * W * CS;
        if ((int)oh >= Ho) { /* the last row of an odd height is in no window */
            for (size_t i = 0; i < (size_t)W * CS; i++) d[i] = 0.0f;
            continue;
        }
        const int left_at = ih % 2 ? 2 : 0; /* window positions of this row's pair: 0, 1 (top) or 2, 3 */
        for (int ow = 0; ow < Wo; ow++) {
            const size_t o = ((n * Ho + oh) * Wo + ow) * CS;
            for (int c = 0; c < CS; c += TM_VL) {
                vi8 at;
                for (int l = 0; l < TM_VL; l++) at[l] = index[o + c + l];
                const v8 g = v8_load(dy + o + c);
                v8_store(d + (size_t)(2 * ow) * CS + c, v8_select(at == left_at, g));
                v8_store(d + (size_t)(2 * ow + 1) * CS + c, v8_select(at == left_at + 1, g));
            }
        }
        for (int iw = 2 * Wo; iw < W; iw++) /* the last column of an odd width */
            for (int c = 0; c < CS; c++) d[(size_t)iw * CS + c] = 0.0f;
    }
}

/* maxpool_back_range for the image (CS = 1): image n's dx zeroed, then each window's gradient written at
 * its winner. */
TM_NOINLINE void maxpool_image_back(const uint8_t *restrict index, const float *restrict dy, float *restrict dx,
                                    size_t n, int H, int W)
{
    const int Ho = H / 2, Wo = W / 2;
    float *d = dx + n * H * W;
    for (size_t i = 0; i < (size_t)H * W; i++) d[i] = 0.0f;
    for (int oh = 0; oh < Ho; oh++)
        for (int ow = 0; ow < Wo; ow++) {
            const size_t o = (n * Ho + oh) * Wo + ow;
            const int at = index[o]; /* 0, 1 top; 2, 3 bottom */
            d[(size_t)(2 * oh + at / 2) * W + 2 * ow + at % 2] = dy[o];
        }
}

void tm_maxpool2_backward(const uint8_t *index, const float *dy, float *dx, const tm_bn_sums_of *sums,
                          int N, int H, int W, int CS)
{
    #pragma omp parallel
    {
        size_t lo, hi;
        tm_thread_range((size_t)N, &lo, &hi); /* whole images: the BatchNorm's sums are per image */
        for (size_t n = lo; n < hi; n++) {
            if (CS == 1)
                maxpool_image_back(index, dy, dx, n, H, W);
            else
                maxpool_back_range(index, dy, dx, n * H, (n + 1) * H, H, W, CS);
            if (sums) tm_bn_sums(sums, dx, (int)n, (int)n + 1, H * W, CS);
        }
    }
}

void tm_head_forward(const float *x, const tm_act *act, const float *w, const float *bias, float *pooled, float *logits,
                     int N, int HW, int C, int K)
{
    const int CS = tm_roundv(C);
    float *a = act ? tm_scratch((size_t)HW * CS) : NULL;
    for (int n = 0; n < N; n++) {
        float *g = pooled + (size_t)n * CS;
        const float *xn = x + (size_t)n * HW * CS;
        if (act) { /* normalized as read */
            tm_act_pixels(xn, a, act->scale, act->shift, act->relu, (size_t)HW, CS);
            xn = a;
        }
        for (int c = 0; c < CS; c++) g[c] = 0.0f;
        for (size_t p = 0; p < (size_t)HW; p++)
            for (int c = 0; c < CS; c++) g[c] += xn[p * CS + c];
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
    const int CS = tm_roundv(C);
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
