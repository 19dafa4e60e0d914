"""Microcontroller deployment figures for the default and the reference model.

For each model: float and int8 test accuracy (all 10,000 images), mismatches between the generated C
(compiled with the host gcc: the portable kernels for the Cortex-M0 rows, the SIMD kernels with the
DSP instructions emulated for the Cortex-M4 rows) and the Python integer reference over all 10,000
(must be 0); for
Cortex-M0 and Cortex-M4 at -Os and -O2: flash (text + data of the model object, arm-none-eabi-size),
RAM (static buffers + worst-case stack over GCC's call graph, and the stack high-water mark painted
under QEMU), instructions per inference under QEMU (-icount shift=0, SysTick; the harness's empty
call subtracted; median over the sample), and the sample's QEMU scores checked against the reference.

The default model is the bundled pretrained checkpoint; the reference model is trained here (seed 0,
10 epochs) unless --reference-checkpoint names one. Calibration uses training images only.

    python benchmarks/mcu.py [--data-dir DIR] [--reference-checkpoint RUN] [--qemu-images 50]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, print_table, run, write_json  # noqa: E402

from tinymnist.data.mnist import load_mnist  # noqa: E402
from tinymnist.export.c import codegen, reference, toolchain  # noqa: E402
from tinymnist.export.c.c_export import accuracies, quantize_model, write_files  # noqa: E402
from tinymnist.models.bundled import pretrained_path  # noqa: E402
from tinymnist.models.zoo import count_parameters  # noqa: E402
from tinymnist.training.checkpoint import load_checkpoint, model_from_checkpoint  # noqa: E402
from tinymnist.training.config import TrainConfig  # noqa: E402
from tinymnist.training.trainer import train  # noqa: E402

GOALS = {"int8_accuracy": 99.30, "flash": 12 * 1024, "ram": 32 * 1024, "instructions": 2_000_000}
STRETCH = {"ram": 16 * 1024, "instructions": 1_000_000}


def reference_checkpoint(arg: str | None, data, work: Path) -> Path:
    if arg:
        return Path(arg)
    out = work / "reference-run"  # not work / "reference": measure() writes the C export there
    print("training the reference model (seed 0, 10 epochs) ...", flush=True)
    train(TrainConfig(model="reference", seed=0), data, out)
    return out / "last.pt"


def measure(name: str, checkpoint: Path, data, qemu_images: int, work: Path) -> list[dict]:
    ckpt = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt).float()
    int_model = quantize_model(model, data.train_images)
    expected = reference.scores(int_model, data.test_images)  # all 10,000, computed once
    acc = accuracies(model, expected.argmax(1), data)
    meta = {"model": ckpt["model_name"], "params": count_parameters(model), **acc, "source": checkpoint.name}
    src = work / name
    src.mkdir()
    header, source = codegen.render(int_model, meta)
    write_files(src, {codegen.HEADER_NAME: header, codegen.SOURCE_NAME: source})
    mismatches = {}  # per kernel set: the portable C (Cortex-M0 rows) and the SIMD kernels (M4 rows, DSP emulated)
    for simd in (False, True):
        exe = toolchain.host_build(src, src / f"host-{int(simd)}", simd=simd)
        host_scores, host_digits = toolchain.host_scores(exe, data.test_images)
        mismatches[simd] = int((host_scores != expected).any(1).sum() + (host_digits != expected.argmax(1)).sum())
    picked = np.random.default_rng(0).choice(len(data.test_images), qemu_images, replace=False)
    sample, sample_expected = data.test_images[picked], expected[picked]
    plan = codegen.plan(int_model)
    rows = []
    for cpu, target in toolchain.TARGETS.items():
        for opt in ("-Os", "-O2"):
            size = toolchain.model_size(src, target, opt)
            elf = toolchain.arm_build(src, target, src / f"{cpu}{opt}.elf", opt)
            qemu = toolchain.qemu_run(elf, target, sample)
            rows.append({
                "model": name, "params": meta["params"], "float %": round(acc["float_accuracy"], 2),
                "int8 %": round(acc["int8_accuracy"], 2), "C != ref (10k)": mismatches[target.simd],
                "cpu": cpu, "opt": opt,
                "flash B": size.flash, "RAM B": plan.ram_bytes + size.stack, "static B": plan.ram_bytes,
                "stack B (static / QEMU)": f"{size.stack} / {qemu.stack_bytes}",
                "instructions": int(np.median(qemu.instructions)),
                "QEMU == ref": bool(np.array_equal(qemu.scores, sample_expected)),
                "_size": {"text": size.text, "data": size.data, "bss": size.bss, "stack": size.stack},
                "_qemu_stack": qemu.stack_bytes, "_agreement": acc["agreement"],
            })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir")
    parser.add_argument("--reference-checkpoint", help="a trained reference model (default: train one, seed 0)")
    parser.add_argument("--qemu-images", type=int, default=50, help="test images run under QEMU per build (default 50)")
    parser.add_argument("--json", default="benchmarks/results/mcu.json")
    args = parser.parse_args()
    missing = [t for t in ("gcc", toolchain.ARM_CC, toolchain.ARM_SIZE, toolchain.QEMU) if not toolchain.have(t)]
    if missing:
        sys.exit(f"mcu.py: error: {', '.join(missing)} not found; install gcc-arm-none-eabi, libnewlib-arm-none-eabi "
                 "and qemu-system-arm")
    data = load_mnist(args.data_dir)
    with tempfile.TemporaryDirectory(prefix="tinymnist-mcu-") as tmp:
        work = Path(tmp)
        rows = measure("separable (default)", pretrained_path(), data, args.qemu_images, work)
        rows += measure("reference", reference_checkpoint(args.reference_checkpoint, data, work), data, args.qemu_images,
                        work)
    columns = ["model", "params", "float %", "int8 %", "C != ref (10k)", "cpu", "opt", "flash B", "RAM B", "static B",
               "stack B (static / QEMU)", "instructions", "QEMU == ref"]
    print_table(rows, columns)
    default_m4 = [r for r in rows if r["model"].startswith("separable") and r["cpu"] == "cortex-m4"]
    best = min(default_m4, key=lambda r: r["instructions"])
    smallest = min(default_m4, key=lambda r: r["flash B"])
    goals = {
        "int8 >= 99.30% (default)": best["int8 %"] >= GOALS["int8_accuracy"],
        "C == reference on all 10,000 (both models)": all(r["C != ref (10k)"] == 0 for r in rows),
        "flash <= 12 KB (default, -Os)": smallest["flash B"] <= GOALS["flash"],
        "RAM <= 32 KB (default)": smallest["RAM B"] <= GOALS["ram"],
        "RAM <= 16 KB, stretch (default)": smallest["RAM B"] <= STRETCH["ram"],
        f"<= 2 M instructions on Cortex-M4 (default, best: {best['opt']})": best["instructions"] <= GOALS["instructions"],
        "<= 1 M instructions, stretch": best["instructions"] <= STRETCH["instructions"],
    }
    # The goals above may be met by different builds; say whether one build meets flash, RAM and instructions.
    whole = [r["opt"] for r in default_m4 if r["flash B"] <= GOALS["flash"] and r["RAM B"] <= GOALS["ram"]
             and r["instructions"] <= GOALS["instructions"]]
    goals[f"flash, RAM and instruction goals in one Cortex-M4 build (default{', ' + whole[0] if whole else ''})"] = bool(whole)
    for goal, met in goals.items():
        print(f"{'met    ' if met else 'NOT met'}  {goal}")
    write_json(args.json, {"machine": machine(), "qemu_images": args.qemu_images, "rows": rows, "goals": goals,
                           "note": "instructions: QEMU -icount shift=0, SysTick at 25 MHz = 40 instructions per tick; "
                                   "Cortex-M0 builds run on the AN385 board's Cortex-M3 (ARMv6-M code is a subset)."})


if __name__ == "__main__":
    run(main)
