/* Identity shortcuts (residual blocks, ReLU(body(s) + s)), NHWC with channel stride CS: the add and the
 * ReLU at the block's end, reading the body's last BatchNorm and the block's input normalized as read
 * where their BatchNorms are deferred (tm_act, the same expression as tm_bn_apply, so the same bits as
 * reading written tensors); the backward (the ReLU's mask, and a copy of the gradient for the shortcut,
 * with the body's BatchNorm's sums image by image); and the join of the two gradients at the block's input. */
#include "tm_kernels.h"
#include "tm_common.h"

/* y = max(0, act(x) + sact(s)) over `count` pixels of stride CS = TM_VL NV (ACT, SACT: whether each is
 * normalized as read). */
TM_INLINE void shortcut_body(const float *restrict x, const tm_act *act, const float *restrict s, const tm_act *sact,
                             float *restrict y, size_t count, const int NV, const int ACT, const int SACT)
{
    const int CS = TM_VL * NV, relu = ACT ? act->relu : 0, srelu = SACT ? sact->relu : 0;
    v8 sc[8] = {0}, sh[8] = {0}, ssc[8] = {0}, ssh[8] = {0};
    TM_UNROLL
    for (int v = 0; v < NV; v++) {
        if (ACT) {
            sc[v] = v8_load(act->scale + TM_VL * v);
            sh[v] = v8_load(act->shift + TM_VL * v);
        }
        if (SACT) {
            ssc[v] = v8_load(sact->scale + TM_VL * v);
            ssh[v] = v8_load(sact->shift + TM_VL * v);
        }
    }
    for (size_t p = 0; p < count; p++)
        TM_UNROLL
        for (int v = 0; v < NV; v++) {
            const size_t o = p * CS + TM_VL * v;
            v8 a = v8_load(x + o), b = v8_load(s + o);
            if (ACT) a = act_vec(a, sc[v], sh[v], relu);
            if (SACT) b = act_vec(b, ssc[v], ssh[v], srelu);
            v8_store(y + o, v8_max0(a + b));
        }
}

TM_NOINLINE void shortcut_range(const float *restrict x, const tm_act *act, const float *restrict s,
                                const tm_act *sact, float *restrict y, size_t count, int CS)
{
#define TM_SC(NV, A, B) shortcut_body(x, act, s, sact, y, count, NV, A, B)
#define TM_SC00(NV) TM_SC(NV, 0, 0)
#define TM_SC01(NV) TM_SC(NV, 0, 1)
#define TM_SC10(NV) TM_SC(NV, 1, 0)
#define TM_SC11(NV) TM_SC(NV, 1, 1)
    if (act && sact) {
        TM_DISPATCH_NV(CS, TM_SC11)
    } else if (act) {
        TM_DISPATCH_NV(CS, TM_SC10)
    } else if (sact) {
        TM_DISPATCH_NV(CS, TM_SC01)
    } else {
        TM_DISPATCH_NV(CS, TM_SC00)
    }
#undef TM_SC
#undef TM_SC00
#undef TM_SC01
#undef TM_SC10
#undef TM_SC11
}

void tm_shortcut_forward(const float *x, const tm_act *act, const float *s, const tm_act *sact, float *y,
                         size_t count, int CS)
{
    #pragma omp parallel
    {
        size_t lo, hi;
        tm_thread_range(count, &lo, &hi);
        shortcut_range(x + lo * CS, act, s + lo * CS, sact, y + lo * CS, hi - lo, CS);
    }
}

/* g = g * (y > 0), and dskip = the same, over `count` floats (the calling thread's share). */
TM_NOINLINE void shortcut_back_range(const float *restrict y, float *restrict g, float *restrict dskip, size_t count)
{
    for (size_t j = 0; j < count; j++) {
        const float d = y[j] > 0.0f ? g[j] : 0.0f;
        g[j] = d;
        dskip[j] = d;
    }
}

void tm_shortcut_backward(const float *y, float *g, float *dskip, const tm_bn_sums_of *sums, int N, int HW, int C)
{
    const size_t image = (size_t)HW * tm_roundv(C);
    #pragma omp parallel
    {
        size_t lo, hi;
        tm_thread_range((size_t)N, &lo, &hi); /* whole images: the BatchNorm's sums are per image */
        for (size_t n = lo; n < hi; n++) {
            shortcut_back_range(y + n * image, g + n * image, dskip + n * image, image);
            if (sums) tm_bn_sums(sums, g, (int)n, (int)n + 1, HW, C);
        }
    }
}

__attribute__((noinline)) void tm_join_range(float *restrict dx, const float *restrict dskip, size_t count)
{
    for (size_t j = 0; j < count; j++) dx[j] += dskip[j];
}

void tm_shortcut_join(float *dx, const float *dskip, size_t count)
{
    #pragma omp parallel
    {
        size_t lo, hi;
        tm_thread_range(count, &lo, &hi);
        tm_join_range(dx + lo, dskip + lo, hi - lo);
    }
}
