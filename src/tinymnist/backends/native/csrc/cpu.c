/* Build variant, run-time CPU features, thread count, and the ordered per-image reduction. */
#include "tm_kernels.h"
#include "tm_common.h"
#include <omp.h>
#include <stdlib.h>

#ifndef TM_VARIANT
#define TM_VARIANT "generic"
#endif

const char *tm_variant(void) { return TM_VARIANT; }

int tm_cpu_features(void)
{
    int f = 0;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) f |= 1;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")) f |= 2;
#endif
    return f;
}

int tm_lanes(void) { return TM_VL; }

void tm_thread_range(size_t count, size_t *lo, size_t *hi)
{
    const size_t t = (size_t)omp_get_thread_num(), nt = (size_t)omp_get_num_threads();
    *lo = count * t / nt;
    *hi = count * (t + 1) / nt;
}

void tm_reduce_images(const float *partial, float *out, int n, size_t len)
{
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < len; i++) {
        float s = 0.0f;
        for (int img = 0; img < n; img++) s += partial[(size_t)img * len + i];
        out[i] = s;
    }
}

/* Grow a thread's buffer to at least `floats` floats (64-byte aligned); returns 1 when it was (re)allocated. */
static int grow(float **buffer, size_t *capacity, size_t floats)
{
    if (floats <= *capacity) return 0;
    free(*buffer);
    *capacity = (floats + 1023) / 1024 * 1024; /* a multiple of 64 bytes, as aligned_alloc requires */
    *buffer = aligned_alloc(64, *capacity * sizeof(float));
    if (!*buffer) abort(); /* a few hundred KB at most: out of memory is not recoverable here */
    return 1;
}

float *tm_scratch(size_t floats)
{
    static _Thread_local float *buffer;
    static _Thread_local size_t capacity;
    grow(&buffer, &capacity, floats);
    return buffer;
}

const float *tm_zeros(size_t floats)
{
    static _Thread_local float *buffer;
    static _Thread_local size_t capacity;
    if (grow(&buffer, &capacity, floats)) memset(buffer, 0, capacity * sizeof(float));
    return buffer;
}
