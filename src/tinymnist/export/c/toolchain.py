"""Build and run generated C: the host compiler for bit-exactness on many images, arm-none-eabi-gcc
and qemu-system-arm for Cortex-M0 / M4 bare metal (semihosting), arm-none-eabi-size and GCC's
call-graph stack report for the flash and RAM figures. Every function raises ToolError (with the
tool's own message) when a step fails; callers decide whether a missing tool skips or fails."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from tinymnist.export.c.codegen import SOURCE_NAME

WARNINGS = ["-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror"]
ARM_CC, ARM_SIZE, QEMU = "arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm"
SYSTICK_HZ = 25_000_000  # the MPS2 boards' core clock in QEMU
INSTRUCTIONS_PER_TICK = 1_000_000_000 // SYSTICK_HZ  # -icount shift=0: one instruction per nanosecond


@dataclass(frozen=True)
class Target:
    cpu: str
    machine: str  # the QEMU board that runs it (an M0 build runs on the AN385's Cortex-M3: v6-M is a subset)
    flags: tuple[str, ...]
    simd: bool  # has the DSP extension: the generated C runs its SIMD kernels (host_build(simd=True) emulates them)


TARGETS = {
    "cortex-m0": Target("cortex-m0", "mps2-an385", ("-mcpu=cortex-m0", "-mthumb"), simd=False),
    "cortex-m4": Target("cortex-m4", "mps2-an386", ("-mcpu=cortex-m4", "-mthumb"), simd=True),
}


class ToolError(RuntimeError):
    pass


def have(*tools: str) -> bool:
    return all(shutil.which(t) for t in tools)


def harness_dir() -> Path:
    return Path(str(resources.files("tinymnist.export.c").joinpath("harness")))


def runtime_dir() -> Path:
    """The runtime's sources (csrc/), which the generated model source pastes in."""
    return Path(str(resources.files("tinymnist.export.c").joinpath("csrc")))


def _run(cmd: list[str], cwd: Path | None = None, stdin: bytes | None = None, timeout: float = 600) -> bytes:
    try:
        done = subprocess.run(cmd, cwd=cwd, input=stdin, capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolError(f"{cmd[0]} failed: {exc}") from None
    if done.returncode != 0:
        raise ToolError(f"{' '.join(cmd[:3])} ... exited {done.returncode}: {done.stderr.decode(errors='replace')[-2000:]}")
    if done.stderr.strip() and cmd[0] in ("gcc", ARM_CC):
        raise ToolError(f"{cmd[0]} printed warnings: {done.stderr.decode(errors='replace')[-2000:]}")
    return done.stdout


def host_build(src: Path, exe: Path, opt: str = "-O2", simd: bool = False) -> Path:
    """The host build; simd=True compiles the SIMD kernels with the DSP instructions emulated in C
    (-DTM_EMULATE_DSP), the same integer operations a Cortex-M4 build runs."""
    defines = ["-DTM_EMULATE_DSP"] if simd else []
    _run(["gcc", *WARNINGS, opt, *defines, f"-I{src}", str(src / SOURCE_NAME), str(harness_dir() / "host_main.c"), "-o",
          str(exe)])
    return exe


def host_scores(exe: Path, images: np.ndarray, classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(int32 scores N x classes, predicted digits N) from the host build, for uint8 N x 28 x 28."""
    raw = _run([str(exe)], stdin=np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    n = len(images)
    scores = np.frombuffer(raw[: n * classes * 4], dtype=np.int32).reshape(n, classes)
    return scores, np.frombuffer(raw[n * classes * 4:], dtype=np.uint8).astype(np.int64)


def arm_build(src: Path, target: Target, elf: Path, opt: str = "-Os") -> Path:
    h = harness_dir()
    _run([ARM_CC, *target.flags, *WARNINGS, opt, "-ffreestanding", "-ffunction-sections", "-fdata-sections", "-nostdlib",
          f"-I{src}", str(src / SOURCE_NAME), str(h / "arm_main.c"), str(h / "arm_startup.c"), "-T", str(h / "arm.ld"),
          "-Wl,--gc-sections", "-lgcc", "-o", str(elf)])
    return elf


@dataclass(frozen=True)
class QemuRun:
    scores: np.ndarray  # int32 N x classes
    instructions: np.ndarray  # per image, the harness's empty call subtracted
    stack_bytes: int  # deepest stack tinymnist_scores used (painted-stack high-water mark)


def qemu_run(elf: Path, target: Target, images: np.ndarray, classes: int = 10, timeout: float = 600) -> QemuRun:
    """Run the bare-metal harness on `images` under QEMU with -icount shift=0 (see arm_main.c)."""
    with tempfile.TemporaryDirectory(prefix="tinymnist-qemu-") as tmp:
        work = Path(tmp)
        (work / "images.bin").write_bytes(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
        _run([QEMU, "-M", target.machine, "-nographic", "-monitor", "none", "-serial", "none",
              "-semihosting-config", "enable=on,target=native", "-icount", "shift=0", "-kernel", str(elf.resolve())],
             cwd=work, timeout=timeout)
        out = work / "scores.bin"
        if not out.exists():
            raise ToolError("the QEMU run wrote no scores.bin")
        record = np.fromfile(out, dtype=np.int32).reshape(-1, classes + 3)
    if len(record) != len(images):
        raise ToolError(f"the QEMU run scored {len(record)} of {len(images)} images")
    ticks = record[:, classes].astype(np.int64) - record[:, classes + 1]
    return QemuRun(record[:, :classes].copy(), ticks * INSTRUCTIONS_PER_TICK, int(record[:, classes + 2].max()))


@dataclass(frozen=True)
class Size:
    text: int  # code + const tables (arm-none-eabi-size's text)
    data: int
    bss: int  # static buffers
    stack: int  # worst case over the call graph from tinymnist_predict (GCC -fstack-usage)

    @property
    def flash(self) -> int:
        return self.text + self.data

    @property
    def ram(self) -> int:
        return self.data + self.bss + self.stack


def _worst_stack(ci: str, root: str = "tinymnist_predict") -> int:
    """Deepest stack over the call graph GCC wrote with -fcallgraph-info=su (a VCG file)."""
    frames = {}
    for m in re.finditer(r'node: \{ title: "(?:[^"]*:)?([^":]+)" label: "[^"]*?(\d+) bytes', ci):
        frames[m[1]] = int(m[2])
    edges: dict[str, set[str]] = {}
    for m in re.finditer(r'edge: \{ sourcename: "(?:[^"]*:)?([^":]+)" targetname: "(?:[^"]*:)?([^":]+)"', ci):
        edges.setdefault(m[1], set()).add(m[2])

    def depth(node: str, seen: frozenset[str]) -> int:
        if node in seen:
            raise ToolError(f"recursion through {node}: no static stack bound")
        return frames.get(node, 0) + max((depth(c, seen | {node}) for c in edges.get(node, ())), default=0)

    return depth(root, frozenset())


def model_size(src: Path, target: Target, opt: str = "-Os") -> Size:
    """Flash and RAM of the model object alone (the harness excluded)."""
    with tempfile.TemporaryDirectory(prefix="tinymnist-size-") as tmp:
        obj = Path(tmp) / "model.o"
        _run([ARM_CC, *target.flags, *WARNINGS, opt, "-ffunction-sections", "-fdata-sections", "-fstack-usage",
              "-fcallgraph-info=su", f"-I{src}", "-c", str(src / SOURCE_NAME), "-o", str(obj)])
        ci = obj.with_suffix(".ci").read_text()
        fields = _run([ARM_SIZE, str(obj)]).decode().splitlines()[-1].split()
    return Size(int(fields[0]), int(fields[1]), int(fields[2]), _worst_stack(ci))
