"""The int8 C runtime's files (export/c/csrc): each compiles on its own for every target, and the
generated model holds every one of them."""

import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pytest

from tinymnist.export.c import codegen, toolchain

CSRC = Path(str(resources.files("tinymnist.export.c").joinpath("csrc")))
TARGETS = {
    "host": ["gcc"],
    "host-dsp-emulated": ["gcc", "-DTM_EMULATE_DSP"],
    "cortex-m0": [toolchain.ARM_CC, *toolchain.TARGETS["cortex-m0"].flags],
    "cortex-m4": [toolchain.ARM_CC, *toolchain.TARGETS["cortex-m4"].flags],
    "cortex-m4-hard-float": [toolchain.ARM_CC, *toolchain.TARGETS["cortex-m4"].flags, "-mfloat-abi=hard",
                             "-mfpu=fpv4-sp-d16"],
}


def test_the_generated_model_holds_every_runtime_file():
    on_disk = {p.name for p in CSRC.iterdir() if p.suffix in (".c", ".h")}
    assert on_disk == set(codegen.RUNTIME_HEADERS) | set(codegen.RUNTIME_FILES)
    source = codegen._runtime_source()
    assert '#include "tm_' not in source  # pasted in, not included: the export is two files
    for name in codegen.RUNTIME_FILES:  # each file's first line (its contract) is in the model
        assert (CSRC / name).read_text().splitlines()[0] in source, name


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("name", codegen.RUNTIME_FILES)
def test_each_runtime_file_compiles_on_its_own(name, target, tmp_path):
    compiler = TARGETS[target]
    if shutil.which(compiler[0]) is None:
        pytest.skip(f"{compiler[0]} is not installed")
    cmd = [*compiler, *toolchain.WARNINGS, "-Os", f"-I{CSRC}", "-c", str(CSRC / name), "-o", str(tmp_path / "x.o")]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
