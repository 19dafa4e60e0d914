"""C kernels vs Numba for the native engine's memory-bound layer (issue 15 asked to decide by
measurement): BatchNorm+ReLU forward (apply) and backward at 64 x 28 x 28 x 16 (NHWC), 2 threads,
same data, medians of alternating timings. Needs numba (not a tinymnist dependency):
    python -m venv /tmp/nb && /tmp/nb/bin/pip install numba numpy
    OMP_NUM_THREADS=2 NUMBA_NUM_THREADS=2 /tmp/nb/bin/python research/numba_vs_c.py src/tinymnist/engine/_tm_avx512*.so
"""

import ctypes
import statistics
import sys
import time

import numba
import numpy as np


@numba.njit(parallel=True, fastmath=True, cache=True)
def nb_apply(z, a, scale, shift):
    n, c = z.shape
    for p in numba.prange(n):
        for j in range(c):
            v = z[p, j] * scale[j] + shift[j]
            a[p, j] = v if v > 0 else 0.0


@numba.njit(parallel=True, fastmath=True, cache=True)
def nb_backward(z, da, dz, scale, shift, mean, invstd, images, hw):
    c = z.shape[1]
    part = np.zeros((images, 2, c), np.float64)
    for n in numba.prange(images):
        s1 = np.zeros(c, np.float32)
        s2 = np.zeros(c, np.float32)
        for p in range(n * hw, (n + 1) * hw):
            for j in range(c):
                d = da[p, j] if z[p, j] * scale[j] + shift[j] > 0 else 0.0
                s1[j] += d
                s2[j] += d * (z[p, j] - mean[j]) * invstd[j]
        part[n, 0] = s1
        part[n, 1] = s2
    gb = part[:, 0].sum(0)
    gg = part[:, 1].sum(0)
    m = images * hw
    k0 = (scale * gb / m).astype(np.float32)
    k2 = (scale * gg / m * invstd).astype(np.float32)
    for p in numba.prange(z.shape[0]):
        for j in range(c):
            d = da[p, j] if z[p, j] * scale[j] + shift[j] > 0 else 0.0
            dz[p, j] = scale[j] * d - k0[j] - (z[p, j] - mean[j]) * k2[j]


def main() -> None:
    lib = ctypes.CDLL(sys.argv[1])
    P = ctypes.c_void_p
    lib.tm_bn_apply.argtypes = [P, P, P, P, ctypes.c_size_t, ctypes.c_int, ctypes.c_int]
    lib.tm_bn_backward.argtypes = [P] * 11 + [ctypes.c_int] * 5
    rng = np.random.default_rng(0)
    n, hw, c = 64, 784, 16
    z = rng.standard_normal((n * hw, c), dtype=np.float32)
    da = rng.standard_normal((n * hw, c), dtype=np.float32)
    a, dz, dz2 = np.empty_like(z), np.empty_like(z), np.empty_like(z)
    mean, invstd = z.mean(0).astype(np.float32), (1 / z.std(0)).astype(np.float32)
    scale, shift = invstd * 1.1, (-mean * invstd).astype(np.float32)
    partial = np.empty((n, 2, c), np.float64)
    dg, db = np.empty(c, np.float32), np.empty(c, np.float32)

    def ptr(x):
        return x.ctypes.data

    runs = {
        "numba apply": lambda: nb_apply(z, a, scale, shift),
        "C apply": lambda: lib.tm_bn_apply(ptr(z), ptr(a), ptr(scale), ptr(shift), n * hw, c, 1),
        "numba backward": lambda: nb_backward(z, da, dz, scale, shift, mean, invstd, n, hw),
        "C backward": lambda: lib.tm_bn_backward(ptr(z), ptr(da), ptr(dz2), ptr(scale), ptr(shift), ptr(mean),
                                                 ptr(invstd), None, ptr(dg), ptr(db), ptr(partial), n, hw, c, 1, 0),
    }
    for fn in runs.values():  # compile / warm up
        fn()
    times = {k: [] for k in runs}
    for _ in range(7):
        for k, fn in runs.items():
            t = time.perf_counter()
            for _ in range(20):
                fn()
            times[k].append((time.perf_counter() - t) / 20 * 1e3)
    print(f"numba {numba.__version__}, threads {numba.get_num_threads()}; 64x28x28x16 float32, median of 7 x 20 calls")
    for k, v in times.items():
        print(f"{k:16s} {statistics.median(v):.3f} ms")
    print("max |dz numba - dz C| =", float(np.abs(dz - dz2).max()))


if __name__ == "__main__":
    main()
