"""Builds tinymnist's native training kernels (plain C + OpenMP, loaded with ctypes) as part of a
normal install. Three variants of the same sources, picked at run time by CPU features: generic
(baseline flags), avx2 and avx512 (x86-64 only). Every extension is optional: without a working
C compiler the package still installs and trains with eager PyTorch (it says so once)."""

import platform

from setuptools import Extension, setup

KERNELS = ("cpu", "conv", "conv_s2", "dwconv", "fc", "batchnorm", "pool", "residual", "net", "batch", "loss")
SOURCES = [f"src/tinymnist/backends/native/csrc/{name}.c" for name in KERNELS]
HEADERS = [f"src/tinymnist/backends/native/csrc/{name}.h" for name in ("tm_kernels", "tm_common")]  # a change rebuilds all
# -ffp-contract=fast: ISO C mode would otherwise forbid fused multiply-adds. -fno-wrapv undoes the -fwrapv
# that Python's own CFLAGS pass to extensions: with signed overflow defined, GCC vectorized the batch
# kernel's sampling loop half as well and the whole step measured 3-5% slower (same results: the kernels
# never overflow an int).
FLAGS = ["-O3", "-std=c11", "-ffp-contract=fast", "-fno-wrapv", "-fopenmp", "-fno-math-errno", "-fno-trapping-math",
         "-Wall", "-Wextra", "-Wno-unknown-pragmas", "-Wno-psabi"]
VARIANTS = {"generic": []}
if platform.machine().lower() in ("x86_64", "amd64"):
    VARIANTS["avx2"] = ["-mavx2", "-mfma"]
    VARIANTS["avx512"] = ["-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq", "-mfma"]

setup(ext_modules=[
    Extension(f"tinymnist.backends.native._tm_{name}", SOURCES, define_macros=[("TM_VARIANT", f'"{name}"')],
              extra_compile_args=FLAGS + extra, extra_link_args=["-fopenmp"], libraries=["m"], optional=True,
              depends=HEADERS)
    for name, extra in VARIANTS.items()
])
