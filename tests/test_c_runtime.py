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
