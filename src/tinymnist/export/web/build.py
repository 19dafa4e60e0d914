"""Compile a generated model (export/c: tinymnist_model.h and .c) to WebAssembly with clang's wasm32
target and wasm-ld: no Emscripten and no C library (-nostdlib), so the module imports nothing. The
interface is wasm/tinymnist_wasm.c (see its header comment, and the README's "In any browser").

Two builds of the same C: scalar, which every browser with WebAssembly runs, and `simd` (wasm
simd128, clang's auto-vectorizer over the same portable kernels), which needs a browser from 2021
or later. Both give the reference's scores bit for bit (tests/test_web_export.py)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from tinymnist.export.c import codegen
from tinymnist.export.c.c_export import write_files
from tinymnist.export.c.quantize import IntModel

CLANG, WASM_LD = "clang", "wasm-ld"
GLUE = "tinymnist_wasm.c"
# -Os: the bundled model's module is 12.0 KB, and in Chromium as fast as at -O2 (14.3 KB) or -O3
# (17.5 KB): 0.658, 0.662, 0.686 ms a digit (benchmarks/web.py); -Oz (11.4 KB) was 60% slower in Node.js.
# -Wno-unused-function: the pasted runtime keeps static helpers that only the SIMD kernels call.
OPT = "-Os"
FLAGS = ("--target=wasm32", "-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", "-Wno-unused-function",
         "-ffreestanding", "-nostdlib")
# The stack first, so that an overflow traps (below address 0) instead of writing over the model's
# buffers; 16 KiB is many times what the model uses (688 bytes on a Cortex-M4).
LINK = ("-Wl,--no-entry", "-Wl,--stack-first", "-Wl,-z,stack-size=16384", "-Wl,--strip-all")


class BuildError(RuntimeError):
    pass


def missing_tools() -> list[str]:
    """The tools the build needs that are not on PATH."""
    return [tool for tool in (CLANG, WASM_LD) if not shutil.which(tool)]


def wasm_dir() -> Path:
    return Path(str(resources.files("tinymnist.export.web").joinpath("wasm")))


def compile_source(src: Path, out: Path, simd: bool = False, opt: str = OPT) -> bytes:
    """The .wasm of the model in `src` (tinymnist_model.h and .c), written to `out` and returned."""
    cmd = [CLANG, *FLAGS, opt, *(["-msimd128"] if simd else []), f"-I{src}", str(src / codegen.SOURCE_NAME),
           str(wasm_dir() / GLUE), *LINK, "-o", str(out)]
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"{CLANG} failed: {exc}") from None
    if done.returncode != 0:
        raise BuildError(f"{CLANG} --target=wasm32 exited {done.returncode}: {first_error(done.stderr.decode(errors='replace'))}")
    return out.read_bytes()


def first_error(stderr: str) -> str:
    """The line of a compiler's output that says what went wrong (an error message is one line)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return next((line for line in lines if "error" in line), lines[-1] if lines else "no message")


def compile_model(model: IntModel, meta: dict, simd: bool = False, opt: str = OPT) -> bytes:
    """The .wasm of an integer model: its C source rendered as `export --format c` writes it, compiled."""
    header, source = codegen.render(model, meta)
    with tempfile.TemporaryDirectory(prefix="tinymnist-wasm-") as tmp:
        work = Path(tmp)
        write_files(work, {codegen.HEADER_NAME: header, codegen.SOURCE_NAME: source})
        return compile_source(work, work / "model.wasm", simd, opt)
