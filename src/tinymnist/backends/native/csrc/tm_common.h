/* Internal helpers shared by the kernel files: an 8-lane float vector (GCC/Clang vector
 * extensions: one ymm register with AVX2/AVX-512, two xmm registers on baseline x86-64, plain
 * code elsewhere), unaligned loads/stores, and the dispatch from a runtime channel stride to a
 * kernel body specialized for it (so that accumulators live in registers). */
#ifndef TM_COMMON_H
#define TM_COMMON_H

#include <string.h>
#include <stddef.h>

/* TM_VL lanes: 16 (one zmm) in the AVX-512 build, 8 otherwise (one ymm with AVX2; two xmm on
 * baseline x86-64). Channel strides are multiples of TM_VL (tm_lanes() tells the caller). */
#ifdef __AVX512F__
#define TM_VL 16
#else
#define TM_VL 8
#endif
typedef float v8 __attribute__((vector_size(4 * TM_VL)));
typedef int vi8 __attribute__((vector_size(4 * TM_VL))); /* lane masks: -1 true, 0 false */

#define TM_INLINE static inline __attribute__((always_inline))
/* Full unrolling of the loops over vectors and pixels of a block keeps the accumulators in registers. */
#define TM_UNROLL _Pragma("GCC unroll 16")

TM_INLINE v8 v8_load(const float *p) { v8 v; memcpy(&v, p, sizeof v); return v; }
TM_INLINE void v8_store(float *p, v8 v) { memcpy(p, &v, sizeof v); }
/* Every lane a, as a plain broadcast so that it folds into the FMA's memory operand. (Not `zero + a`:
 * the compiler must keep that add of 0.0, since it turns -0 into +0, which costs two extra
 * instructions per broadcast in the conv kernels' inner loops.) */
#if TM_VL == 16
TM_INLINE v8 v8_splat(float a) { return (v8){a, a, a, a, a, a, a, a, a, a, a, a, a, a, a, a}; }
#else
TM_INLINE v8 v8_splat(float a) { return (v8){a, a, a, a, a, a, a, a}; }
#endif
TM_INLINE v8 v8_zero(void) { return v8_splat(0.0f); }
TM_INLINE v8 v8_select(vi8 mask, v8 v) { return (v8)((vi8)v & mask); } /* v where mask, else 0 */
TM_INLINE v8 v8_max0(v8 v) { return v8_select(v > v8_zero(), v); }

TM_INLINE int tm_roundv(int c) { return (c + TM_VL - 1) / TM_VL * TM_VL; }
TM_INLINE int tm_min(int a, int b) { return a < b ? a : b; }
TM_INLINE int tm_max(int a, int b) { return a > b ? a : b; }

/* Call BODY(NV) with NV = CS / TM_VL as a compile-time constant (CS a multiple of TM_VL, up to
 * TM_MAX_CHANNELS = 64). */
#if TM_VL == 16
#define TM_DISPATCH_NV(CS, BODY)                                   \
    switch ((CS) / TM_VL) {                                        \
    case 1: BODY(1); break;                                        \
    case 2: BODY(2); break;                                        \
    case 3: BODY(3); break;                                        \
    default: BODY(4); break;                                       \
    }
#else
#define TM_DISPATCH_NV(CS, BODY)                                   \
    switch ((CS) / TM_VL) {                                        \
    case 1: BODY(1); break;                                        \
    case 2: BODY(2); break;                                        \
    case 3: BODY(3); break;                                        \
    case 4: BODY(4); break;                                        \
    case 5: BODY(5); break;                                        \
    case 6: BODY(6); break;                                        \
    case 7: BODY(7); break;                                        \
    default: BODY(8); break;                                       \
    }
#endif

/* Pixels computed together: enough independent accumulator chains (about 8 vectors) to hide
 * the FMA latency, few enough to stay in 16 registers. */
#define TM_PB(NV) ((NV) == 1 ? 8 : (NV) == 2 ? 4 : (NV) <= 4 ? 2 : 1)
/* Longer blocks where rows have no edges (pointwise convs: an image is one row of H*W pixels) and
 * AVX-512's 32 registers hold them: up to 16 accumulators (8 pixels x 2 vectors; one vector
 * of 8 pixels: the fastest block in docs/research.md). */
#if TM_VL == 16
#define TM_PB_LONG(NV) ((NV) <= 2 ? 8 : 4)
#else
#define TM_PB_LONG(NV) TM_PB(NV)
#endif
#define TM_MAX_ACC 16 /* PB x NV: the size of the accumulator blocks */

/* Store one output pixel (ReLU applied when asked) and add it to the row's statistics. */
TM_INLINE void emit(const v8 *acc, float *restrict yp, int ys, int relu, v8 *r1, v8 *r2, const int NV)
{
    TM_UNROLL
    for (int v = 0; v < NV; v++) {
        const v8 o = relu ? v8_max0(acc[v]) : acc[v];
        if (ys == TM_VL * NV) {
            v8_store(yp + TM_VL * v, o);
            r1[v] += o;
            r2[v] += o * o;
        } else {
            for (int l = 0; l < TM_VL && TM_VL * v + l < ys; l++) yp[TM_VL * v + l] = o[l];
        }
    }
}

#define TM_NOINLINE static __attribute__((noinline))

/* An empty barrier on a vector: the compiler cannot fuse the product that produced it into the next
 * addition, so `a = x * w; TM_SEQUENCE(a); a += y * v;` rounds as fma(y, v, x * w) and never as
 * fma(x, w, y * v) (with -ffp-contract=fast either may be chosen). */
#if defined(__AVX__)
#define TM_SEQUENCE(v) __asm__("" : "+v"(v))
#else
#define TM_SEQUENCE(v) ((void)0)
#endif

/* x = z * scale + shift (then max(0, .) when relu): the one expression tm_bn_apply and every kernel
 * that normalizes its input as it reads (tm_act) use, so that both give the same bits. */
TM_INLINE v8 act_vec(v8 z, v8 scale, v8 shift, int relu)
{
    const v8 o = z * scale + shift;
    return relu ? v8_max0(o) : o;
}

/* a = act(z) over `count` pixels of channel stride CS (tm_bn_apply's loop, on the calling thread). */
void tm_act_pixels(const float *z, float *a, const float *scale, const float *shift, int relu, size_t count, int CS);

/* The calling thread's scratch buffer of at least `floats` floats (64-byte aligned; grown as needed,
 * kept for the thread's life): the rows or image a max-pool or the head normalizes as it reads (tm_act). */
float *tm_scratch(size_t floats);
/* The calling thread's row of at least `floats` zeros (never written: the padding row of a 3x3 kernel). */
const float *tm_zeros(size_t floats);

/* The share [*lo, *hi) of `count` items of the calling OpenMP thread (contiguous, static).
 * Kernels run `#pragma omp parallel` around a call of a plain noinline function on that range:
 * code inside an OpenMP-outlined region loses restrict and constant information, and GCC
 * optimizes it far worse than the same loops in an ordinary function. */
void tm_thread_range(size_t count, size_t *lo, size_t *hi);

/* BatchNorm statistics of a conv's output: a row's float sums (r1, r2) go into the image's double
 * sums (s1, s2), and an image's sums into its slot of `stats` (N x 2 x CS doubles). */
TM_INLINE void stats_add_row(double *s1, double *s2, const v8 *r1, const v8 *r2, const int NV)
{
    TM_UNROLL
    for (int v = 0; v < NV; v++)
        TM_UNROLL
        for (int l = 0; l < TM_VL; l++) {
            s1[TM_VL * v + l] += r1[v][l];
            s2[TM_VL * v + l] += r2[v][l];
        }
}

TM_INLINE void stats_store(double *stats, int n, const double *s1, const double *s2, int CS)
{
    for (int c = 0; c < CS; c++) {
        stats[((size_t)n * 2) * CS + c] = s1[c];
        stats[((size_t)n * 2 + 1) * CS + c] = s2[c];
    }
}

/* Sum `n` per-image blocks of `len` floats (stride len) into out, images in index order. */
void tm_reduce_images(const float *partial, float *out, int n, size_t len);

/* dx += dskip over `count` floats, on the calling thread (tm_shortcut_join's loop; residual.c). */
void tm_join_range(float *dx, const float *dskip, size_t count);

#endif
