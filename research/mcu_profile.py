"""Where a plan's Cortex-M instructions go: runs one inference of the plan's int8 C (untrained
weights, as research/mcu_probe.py builds it) under QEMU with every instruction traced
(-singlestep -d exec,nochain), then attributes each executed instruction to its source line and
chain of inlined runtime functions (addr2line -i). Exact counts, no SysTick reads in the code.

    python research/mcu_profile.py "M c8 s12 M s16 s24 M s32" --cpu cortex-m0 --opt -Os [--lines 30]

Traces one tinymnist_scores call (export/c/cycles.py's trace). Prints the total, then instructions by
function with its chain of inlined callers (innermost first), and the busiest source lines.
"""
from __future__ import annotations

import argparse
import collections
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from tinymnist.data.mnist import MNIST, load_mnist
from tinymnist.data.normalize import normalize
from tinymnist.export.c import codegen, cycles, toolchain
from tinymnist.export.c.c_export import quantize_model, write_files
from tinymnist.models.zoo import PlanNet


def build_source(plan: str, data: MNIST, out: Path) -> None:
    """The plan's generated C in `out`: untrained weights, BatchNorm statistics from five training
    batches (as research/mcu_probe.py makes them; instruction counts do not depend on the values)."""
    torch.manual_seed(0)
    model = PlanNet(plan, dw_bn=False)
    model.train()
    with torch.no_grad():
        for i in range(5):
            x = torch.from_numpy(normalize(np.array(data.train_images[i * 512:(i + 1) * 512])))
            model(x.reshape(-1, 1, 28, 28))
    model.eval()
    header, source = codegen.render(quantize_model(model, data.train_images), {"model": "profile", "source": "profile"})
    write_files(out, {codegen.HEADER_NAME: header, codegen.SOURCE_NAME: source})


def debug_build(src: Path, target: toolchain.Target, opt: str, work: Path) -> Path:
    """toolchain.arm_build's build with -g (debug information does not change the code)."""
    h, elf = toolchain.harness_dir(), work / "model.elf"
    subprocess.run([toolchain.ARM_CC, *target.flags, *toolchain.WARNINGS, opt, "-g", "-ffreestanding", "-ffunction-sections",
                    "-fdata-sections", "-nostdlib", f"-I{src}", str(src / codegen.SOURCE_NAME), str(h / "arm_main.c"),
                    str(h / "arm_startup.c"), "-T", str(h / "arm.ld"), "-Wl,--gc-sections", "-lgcc", "-o", str(elf)],
                   check=True)
    return elf


def symbolize(elf: Path, pcs: list[int]) -> dict[int, list[tuple[str, str]]]:
    """pc -> inline chain, innermost first: (function, file:line)."""
    out = subprocess.run(["arm-none-eabi-addr2line", "-i", "-f", "-a", "-e", str(elf)],
                         input="\n".join(hex(pc) for pc in pcs), capture_output=True, text=True, check=True).stdout
    chains: dict[int, list[tuple[str, str]]] = {}
    pc = None
    lines = out.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("0x"):
            pc = int(lines[i], 16)
            chains[pc] = []
            i += 1
            continue
        func, where = lines[i], lines[i + 1] if i + 1 < len(lines) else "?"
        chains[pc].append((func, Path(where.split(" ")[0]).name))
        i += 2
    return chains


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("plan")
    p.add_argument("--cpu", default="cortex-m4")
    p.add_argument("--opt", default="-O2")
    p.add_argument("--lines", type=int, default=25)
    p.add_argument("--pcs", help="also list this function's instructions one by one (e.g. an assembly routine)")
    p.add_argument("--src", type=Path, help="a folder with generated C to profile instead (the plan only labels it)")
    a = p.parse_args()
    data = load_mnist(None)
    target = toolchain.TARGETS[a.cpu]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        src = a.src or work
        if a.src is None:
            build_source(a.plan, data, work)
        elf = debug_build(src, target, a.opt, work)
        counts = collections.Counter(cycles.trace(elf, target, data.test_images[0])[0])  # one tinymnist_scores call
        chains = symbolize(elf, sorted(counts))
    by_chain: collections.Counter = collections.Counter()
    by_line: collections.Counter = collections.Counter()
    total = 0
    for pc, n in counts.items():
        chain = chains.get(pc, [("?", "?")])  # the compiler's helpers (e.g. __aeabi_lmul) count with the model
        total += n
        by_chain[" < ".join(f for f, _ in chain)] += n
        by_line[f"{chain[0][1]} ({chain[0][0]})"] += n
    print(f"{a.plan}  {a.cpu} {a.opt}: {total:,} instructions in tinymnist_scores")
    for name, n in by_chain.most_common():
        print(f"{n:>10,}  {name}")
    if a.pcs:
        print(f"{a.pcs}, by address:")
        for pc in sorted(pc for pc in counts if chains.get(pc, [("?", "")])[0][0] == a.pcs):
            print(f"{counts[pc]:>10,}  {pc:#x}")
    print("busiest lines:")
    for name, n in by_line.most_common(a.lines):
        print(f"{n:>10,}  {name}")


if __name__ == "__main__":
    main()
