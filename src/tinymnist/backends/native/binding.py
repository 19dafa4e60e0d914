"""The ctypes binding of the native kernels (csrc/tm_kernels.h states each kernel's contract).

Three builds of the same C sources may sit beside this file (generic, avx2, avx512); the best one
the CPU supports is picked at run time, from the CPU's own feature bits, never from the build
machine's. `TINYMNIST_NATIVE_VARIANT=generic|avx2|avx512` forces one (tests, benchmarks).
The library is loaded after torch, so it shares torch's OpenMP runtime (libgomp.so.1) and
torch.set_num_threads() sets its thread count too.
"""

from __future__ import annotations

import ctypes
import functools
import os
from ctypes import c_double, c_int, c_size_t, c_void_p
from pathlib import Path

import torch  # noqa: F401  (loads torch's libgomp first: the kernels then share its thread pool)

HERE = Path(__file__).parent
VARIANTS = ("avx512", "avx2", "generic")  # best first
FEATURE_BITS = {"avx2": 1, "avx512": 2, "generic": 0}

P, INT, D, S = c_void_p, c_int, c_double, c_size_t
SIGNATURES: dict[str, tuple[object, list[object]]] = {
    "tm_variant": (ctypes.c_char_p, []),
    "tm_cpu_features": (INT, []),
    "tm_lanes": (INT, []),
    "tm_conv_forward": (None, [P, INT, P, P, P, P, INT, INT, INT, INT, INT, INT, INT, INT]),
    "tm_conv_backward_data": (None, [P, P, P, INT, INT, INT, INT, INT, INT, INT, INT]),
    "tm_conv_backward_weight": (None, [P, INT, P, P, P, P, INT, INT, INT, INT, INT, INT, INT]),
    "tm_dwconv_forward": (None, [P, P, P, P, P, INT, INT, INT, INT]),
    "tm_dwconv_backward": (None, [P, P, P, P, P, P, P, P, P, INT, INT, INT, INT]),
    "tm_bn_finalize": (None, [P, INT, INT, INT, D, D, P, P, P, P, P, P, P, P]),
    "tm_bn_apply": (None, [P, P, P, P, S, INT, INT]),
    "tm_bn_backward": (None, [P, P, P, P, P, P, P, P, P, P, INT, INT, INT, INT, INT]),
    "tm_maxpool2_forward": (None, [P, P, P, P, INT, INT, INT, INT]),
    "tm_maxpool2_backward": (None, [P, P, P, P, INT, INT, INT, INT]),
    "tm_head_forward": (None, [P, P, P, P, P, P, INT, INT, INT, INT]),
    "tm_head_backward": (None, [P, P, P, P, P, P, INT, INT, INT, INT]),
    "tm_shortcut_forward": (None, [P, P, P, P, P, S, INT]),
    "tm_shortcut_backward": (None, [P, P, P, P, INT, INT, INT]),
    "tm_shortcut_join": (None, [P, P, S]),
    "tm_layer_size": (S, []),
    "tm_net_size": (S, []),
    "tm_net_forward": (None, [P]),
    "tm_net_backward": (None, [P, P]),
    "tm_batch": (None, [P, P, INT, INT, INT, P, P, ctypes.c_float, ctypes.c_float, ctypes.c_float, ctypes.c_float,
                        ctypes.c_float, ctypes.c_float, P]),
    "tm_xent": (D, [P, P, P, INT, INT, ctypes.c_float, P, P]),
    "tm_net_train_step": (D, [P, P, P, INT, INT, P, P] + [ctypes.c_float] * 6 + [P, ctypes.c_float, P, P, P]),
}


# tm_layer.kind (enum in csrc/tm_kernels.h)
TM_CONV, TM_DWCONV, TM_BN, TM_MAXPOOL, TM_DROPOUT, TM_HEAD, TM_SHORTCUT, TM_FC = range(1, 9)


class Layer(ctypes.Structure):
    """Mirror of tm_layer (csrc/tm_kernels.h); checked against the library's sizeof when it is opened."""

    _fields_ = [(name, c_int) for name in ("kind", "H", "W", "Cin", "Cout", "k", "pad", "xs", "relu", "relu_before",
                                            "stats", "from_layer", "stride")] + \
        [(name, P) for name in ("y", "dx", "w", "bias", "dw", "dbias")] + \
        [("eps", D), ("momentum", D)] + \
        [(name, P) for name in ("running_mean", "running_var", "scale", "shift", "mean", "invstd",
                                "num_batches_tracked", "aux", "index", "dskip")]


class Net(ctypes.Structure):
    """Mirror of tm_net."""

    _fields_ = [("N", c_int), ("count", c_int), ("layers", ctypes.POINTER(Layer)), ("x", P), ("stats", P),
                ("partial", P), ("times", P)]


MIRRORS = {"tm_layer": Layer, "tm_net": Net}


class NativeUnavailable(RuntimeError):
    """The native kernels are not built, or not usable on this CPU."""


def library_path(variant: str) -> Path | None:
    found = sorted(HERE.glob(f"_tm_{variant}*.so")) + sorted(HERE.glob(f"_tm_{variant}*.pyd"))
    return found[0] if found else None


def open_library(path: Path, strict: bool = True) -> ctypes.CDLL:
    """`strict=False` skips the functions a build lacks (research/engine_ab.py compares builds of other
    commits, whose kernel entry points differ; the whole-network passes it calls are in every build)."""
    lib = ctypes.CDLL(str(path))
    for name, (restype, argtypes) in SIGNATURES.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            if not strict:
                continue
            raise NativeUnavailable(f"{path.name} is an older build without {name}; reinstall tinymnist") from None
        fn.restype, fn.argtypes = restype, argtypes
    for name, mirror in MIRRORS.items():
        if getattr(lib, f"{name}_size")() != ctypes.sizeof(mirror):
            raise NativeUnavailable(f"{path.name} lays out {name} differently from this binding; reinstall tinymnist")
    return lib


def usable_variants() -> list[str]:
    """The built variants this CPU can run, best first."""
    built = {v: library_path(v) for v in VARIANTS}
    present = [p for p in built.values() if p is not None]
    if not present:
        return []
    features = open_library(present[0]).tm_cpu_features()
    return [v for v, p in built.items() if p is not None and (FEATURE_BITS[v] == 0 or features & FEATURE_BITS[v])]


@functools.cache
def open_variant(name: str) -> ctypes.CDLL:
    """One build by name; raises NativeUnavailable when it is not built or this CPU cannot run it."""
    if name not in VARIANTS:
        raise NativeUnavailable(f"unknown native build {name!r}; builds: {', '.join(VARIANTS)}")
    usable = usable_variants()
    if name not in usable:
        raise NativeUnavailable(f"the {name} build of the native kernels is not usable here "
                                f"(usable: {', '.join(usable) or 'none'})")
    path = library_path(name)
    assert path is not None
    return open_library(path)


@functools.cache
def load() -> ctypes.CDLL:
    """The best usable build of the kernels (or the one TINYMNIST_NATIVE_VARIANT names); raises
    NativeUnavailable saying why there is none."""
    if not any(library_path(v) for v in VARIANTS):
        raise NativeUnavailable(f"the native kernels are not built (no _tm_*.so in {HERE}); "
                                "reinstall tinymnist with a C compiler (gcc or clang with OpenMP)")
    forced = os.environ.get("TINYMNIST_NATIVE_VARIANT", "")
    if forced:
        return open_variant(forced)
    usable = usable_variants()
    if not usable:
        raise NativeUnavailable("no build of the native kernels runs on this CPU")
    return open_variant(usable[0])


def variant() -> str:
    return load().tm_variant().decode()
