"""The int8 C runtime (export/c/csrc/): every file compiles on its own for each target, and the
generated model source pastes all of them in unchanged, with every build setting the model's."""

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tinymnist.export.c import codegen, toolchain
from tinymnist.export.c.quantize import IntHead, IntModel, QParams

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
