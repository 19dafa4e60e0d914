"""The int8 C runtime (export/c/csrc/): every file compiles on its own for each target, and the
generated model source pastes all of them in unchanged, with every build setting the model's."""

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tinymnist.export.c import codegen, reference, toolchain
from tinymnist.export.c.quantize import IntHead, IntModel, IntShortcut, QParams, shortcut_multipliers

# Where each runtime file must compile alone: the host (portable kernels, and the SIMD kernels with
# the DSP instructions emulated), Cortex-M0, and Cortex-M4 (the Thumb-2 routines) with the soft and
# the hard float ABI.
TARGETS = {
    "host": ("gcc", ["-O2"]),
    "host-emulated-dsp": ("gcc", ["-O2", "-DTM_EMULATE_DSP"]),
    "cortex-m0": (toolchain.ARM_CC, ["-Os", *toolchain.TARGETS["cortex-m0"].flags]),
    "cortex-m4": (toolchain.ARM_CC, ["-Os", *toolchain.TARGETS["cortex-m4"].flags]),
    "cortex-m4-hard-float": (toolchain.ARM_CC, ["-Os", *toolchain.TARGETS["cortex-m4"].flags, "-mfloat-abi=hard",
                                                "-mfpu=fpv4-sp-d16"]),
}


def csrc() -> Path:
    return toolchain.runtime_dir()


def test_every_runtime_file_is_pasted_into_the_model():
    assert sorted(p.name for p in csrc().glob("*.c")) == sorted(codegen.RUNTIME_FILES)
    runtime = codegen.runtime_source()
    for path in sorted(csrc().glob("*.[ch]")):
        for part in re.split(r"^#include [<\"].*\n", path.read_text(), flags=re.M):  # verbatim between the includes
            assert re.sub(r"\n{3,}", "\n\n", part).strip("\n") in runtime, path.name
    assert not re.search(r"^#include", runtime, flags=re.M)


def test_the_model_sets_every_runtime_setting():
    """tm_config.h's defaults are there only for compiling a file alone: a model defines each one."""
    settings = re.findall(r"^#ifndef (TM_\w+)$", (csrc() / "tm_config.h").read_text(), flags=re.M)
    settings.remove("TM_CONFIG_H")
    head = IntHead(1, 1, 4, 10, np.zeros((10, 4), np.int8), np.zeros(10, np.int32), np.ones(10, np.int32),
                   np.ones(10, np.int8), QParams(1.0, 0), 1.0)
    _, source = codegen.render(IntModel((head,), QParams(1.0, 0)), {"float_accuracy": 0, "int8_accuracy": 0})
    defined = re.findall(r"^#define (TM_\w+)", source.split("tm_runtime.h - ")[0], flags=re.M)
    assert set(settings) | {"TM_ONE_FILE"} == set(defined)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_each_runtime_file_compiles_alone(target, tmp_path):
    compiler, flags = TARGETS[target]
    if not shutil.which(compiler):
        pytest.skip(f"{compiler} not installed (Debian: gcc-arm-none-eabi)")
    for source in sorted(csrc().glob("*.c")):
        done = subprocess.run([compiler, *toolchain.WARNINGS, *flags, "-c", str(source), "-o", str(tmp_path / "x.o")],
                              capture_output=True, text=True)
        assert done.returncode == 0 and not done.stderr, f"{source.name} for {target}:\n{done.stderr}"


# A driver for tm_requant.c alone: one channel's (acc, multiplier, shift, offset, low, relu_before) a
# line on stdin, its tm_output on stdout.
REQUANT_DRIVER = r"""
#include <stdio.h>
#include "tm_runtime.h"
int main(void)
{
    long acc, multiplier, shift, offset, low, relu;
    while (scanf("%ld %ld %ld %ld %ld %ld", &acc, &multiplier, &shift, &offset, &low, &relu) == 6) {
        int32_t bias = 0, m = (int32_t)multiplier, off = (int32_t)offset;
        int8_t s = (int8_t)shift;
        tm_requant q = {&bias, &m, &s, &off, 0, (int8_t)low, (uint8_t)relu, 0};
        tm_channel k = tm_channel_of(&q, 0);
        printf("%d\n", tm_output((int32_t)acc, &k));
    }
    return 0;
}
"""


def _requant_cases(n: int = 4000) -> np.ndarray:
    """(acc, multiplier, shift, offset, low, relu_before) rows as the scheme makes them: shift 0 with
    |multiplier| >= 2^15, or shift 1..30 with a 31-bit one; accumulators random and at the edges of
    int32 and of the 16-bit halves."""
    rng = np.random.default_rng(0)
    edges = np.array([-(2**31), 2**31 - 1, 0, 1, -1, 2**16, -(2**16), 2**16 - 1, 1 - 2**16, 2**15, -(2**15)])
    acc = np.concatenate([rng.choice(edges, n // 2), rng.integers(-(2**31), 2**31, n // 2)])
    shift = np.where(rng.random(n) < 0.5, 0, rng.integers(1, 31, n))
    magnitude = np.where(shift == 0, rng.integers(2**15, 2**31, n), rng.integers(2**30, 2**31, n))
    magnitude[:8] = [2**31 - 1, 2**15, 2**31 - 1, 2**16 - 1, 2**31 - 1, 2**15, 2**30, 2**31 - 1]
    multiplier = np.where(rng.random(n) < 0.5, -magnitude, magnitude)
    offset = np.where(shift > 10, 0, rng.integers(-200, 200, n))  # the runtime's addend stays within int32
    low = np.where(rng.random(n) < 0.5, -128, rng.integers(-128, 100, n))
    relu = rng.integers(0, 2, n)
    return np.stack([acc, multiplier, shift, offset, low, relu], axis=1).astype(np.int64)


@pytest.mark.parametrize("mul32", [0, 1], ids=["int64", "16-bit-halves"])
def test_requantization_matches_the_reference(mul32, tmp_path):
    """tm_output, with the 64-bit product and with the 16-bit halves of cores without one (TM_MUL32,
    e.g. Cortex-M0), against the reference's rule on edge and random values."""
    (tmp_path / "driver.c").write_text(REQUANT_DRIVER)
    exe = tmp_path / "requant"
    subprocess.run(["gcc", *toolchain.WARNINGS, "-O2", f"-DTM_MUL32={mul32}", f"-I{csrc()}", str(tmp_path / "driver.c"),
                    str(csrc() / "tm_requant.c"), "-o", str(exe)], check=True)
    cases = _requant_cases()
    lines = "\n".join(" ".join(str(v) for v in row) for row in cases)
    got = np.array(subprocess.run([str(exe)], input=lines, capture_output=True, text=True, check=True).stdout.split(),
                   dtype=np.int64)
    acc, multiplier, shift, offset, low, relu = cases.T
    acc = np.where(relu == 1, np.maximum(acc, 0), acc)
    products = [int(a) * int(m) for a, m in zip(acc, multiplier, strict=True)]  # Python integers: exact
    expected = [min(max(int(o) + (p + 2 ** (31 + int(s))) // 2 ** (32 + int(s)), int(lo)), 127)
                for p, s, o, lo in zip(products, shift, offset, low, strict=True)]
    assert got.tolist() == expected


# A driver for tm_shortcut.c with the ring of tm_rows.c: per line a layer (conv_depthwise, conv_planar,
# width, channels), its shortcut (ma, mb, addend, shift), its output row (a) and its input row (b),
# [width][channels] each; b goes to the arena as input row 1 and into its ring slot by tm_fetch_row, in
# the layout the layer's 3x3 part reads; prints the output row plus the shortcut.
SHORTCUT_DRIVER = r"""
#include <stdio.h>
#include "tm_runtime.h"
static long next(void)
{
    long v = 0;
    return scanf("%ld", &v) == 1 ? v : 0;
}
int main(void)
{
    long depthwise, planar, width, channels, ma, mb, addend, shift, i, n;
    while (scanf("%ld %ld %ld %ld %ld %ld %ld %ld", &depthwise, &planar, &width, &channels, &ma, &mb, &addend, &shift)
           == 8) {
        tm_layer L = {0};
        int8_t out[256];
        n = width * channels;
        L.height = 3, L.width = (uint8_t)width, L.channels = (uint8_t)channels, L.padding = 1;
        L.conv_depthwise = (uint8_t)depthwise, L.conv_planar = (uint8_t)planar;
        L.shortcut.ma = (int32_t)ma, L.shortcut.mb = (int32_t)mb, L.shortcut.addend = (int32_t)addend;
        L.shortcut.shift = (int8_t)shift;
        for (i = 0; i < n; i++) {
            out[i] = (int8_t)next();
        }
        for (i = 0; i < n; i++) {
            tm_arena[n + i] = (int8_t)next();
        }
        tm_fetch_row(&L, 1, (int)width + 2, planar ? TM_ROWS_PLANAR : depthwise ? TM_ROWS_BIASED : TM_ROWS_INTERLEAVED);
        tm_shortcut_row(&L, out, 1);
        for (i = 0; i < n; i++) {
            printf("%d ", out[i]);
        }
        printf("\n");
    }
    return 0;
}
"""


def _shortcut_cases(n: int = 60) -> list[tuple[IntShortcut, np.ndarray, np.ndarray]]:
    """(shortcut, a, b) with a, b int8 rows of 7 pixels x 12 channels: first the largest sums of either
    sign the scheme allows (multipliers of 20 bits at the largest shift it accepts, zero points and
    values at opposite extremes: partial sums of 3/4 of int32's range), then ratios as a ReLU's sum has
    them (the larger 1/2 or more) and small ones, with zero points and values random or extreme."""
    rng = np.random.default_rng(0)
    ma, mb, shift = shortcut_multipliers(0.1249, 0.1249)
    cases = []
    for zero, value in ((127, -128), (-128, 127)):
        op = IntShortcut(0, 1, 7, 12, ma, mb, shift, QParams(1.0, zero), QParams(1.0, zero), QParams(1.0, -128))
        cases.append((op, np.full(84, value, np.int8), np.full(84, value, np.int8)))
    ratios = [(0.07, 1e-4), (3.9, 3.9), (1.0, 0.5), (0.5, 1.0)]
    ratios += [tuple(rng.uniform(0.25, 2.0, 2)) for _ in range(n - len(ratios) - len(cases))]
    for k, (real_a, real_b) in enumerate(ratios):
        ma, mb, shift = shortcut_multipliers(real_a, real_b)
        za, zb = (int(rng.choice([-128, 127])) if k % 2 else int(rng.integers(-128, 128)) for _ in range(2))
        op = IntShortcut(0, 1, 7, 12, ma, mb, shift, QParams(1.0, za), QParams(1.0, zb), QParams(1.0, -128))
        a, b = (rng.choice(np.array([-128, 127]), 84) if k % 3 == 0 else rng.integers(-128, 128, 84) for _ in range(2))
        cases.append((op, a.astype(np.int8), b.astype(np.int8)))
    return cases


@pytest.mark.parametrize("layout", ["interleaved", "biased", "planar"])
def test_shortcut_rows_match_the_reference(layout, tmp_path):
    """tm_shortcut_row on each ring layout (a dense 3x3 layer's interleaved rows; a depthwise one's
    biased rows in the portable build and planar rows with SIMD), against the reference's rule at the
    edges of its int32 bound."""
    (tmp_path / "driver.c").write_text(SHORTCUT_DRIVER)
    exe = tmp_path / "shortcut"
    sources = [str(csrc() / name) for name in ("tm_shortcut.c", "tm_rows.c", "tm_buffers.c")]
    simd = ["-DTM_EMULATE_DSP"] if layout == "planar" else []
    subprocess.run(["gcc", *toolchain.WARNINGS, "-O2", *simd, f"-I{csrc()}", str(tmp_path / "driver.c"), *sources, "-o",
                    str(exe)], check=True)
    cases = _shortcut_cases()
    flags = {"interleaved": "0 0", "biased": "1 0", "planar": "1 1"}[layout]
    lines = [f"{flags} 7 12 {op.multiplier_a} {op.multiplier_b} {op.addend} {op.shift} {' '.join(map(str, a))} "
             f"{' '.join(map(str, b))}" for op, a, b in cases]
    got = subprocess.run([str(exe)], input="\n".join(lines), capture_output=True, text=True, check=True).stdout
    for (op, a, b), row in zip(cases, got.splitlines(), strict=True):
        expected = reference.shortcut(a.reshape(1, 1, 7, 12), b.reshape(1, 1, 7, 12), op).reshape(-1)
        assert [int(v) for v in row.split()] == expected.tolist()
