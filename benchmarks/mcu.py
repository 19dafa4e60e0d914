"""Microcontroller deployment figures for any list of models (by default every bundled model).

For each model: float and int8 test accuracy (all 10,000 images), mismatches between the generated C
(compiled with the host gcc: the portable kernels for the Cortex-M0 rows, the SIMD kernels with the
DSP instructions emulated for the Cortex-M4 rows) and the Python integer reference over all 10,000
(must be 0); for Cortex-M0 and Cortex-M4 at -Os and -O2: flash (text + data of the model object,
arm-none-eabi-size), RAM (static buffers + worst-case stack over GCC's call graph, and the stack
high-water mark painted under QEMU), instructions per inference under QEMU (-icount shift=0, SysTick;
the harness's empty call subtracted; median over the sample) beside the instruction cost model's
prediction (export/c/cost.py, from layer shapes) and its error, for the Cortex-M4 rows the estimated
cycles of one inference (export/c/cycles.py: QEMU's executed instructions priced with the Cortex-M4
TRM's cycle table; an estimate: zero wait states, no bus contention, branch refill 2), and the
sample's QEMU scores checked against the reference.

--models takes bundled model names (`tinymnist models`), checkpoint paths or run directories, and
`reference`, which is trained here (seed 0, 10 epochs) unless --reference-checkpoint names one.
Calibration uses training images only. Writes --json and --plot: int8 accuracy against Cortex-M4
instructions (log scale), each model at -O2 with its estimated cycles beside it, and the public
microcontroller figures of ../shared/ANCHORS.md marked as what they are: cycles measured by others on
other cores (RV32, Cortex-M0+).

    python benchmarks/mcu.py [--data-dir DIR] [--models separable,tiny4k,PATH] [--reference-checkpoint RUN]
                             [--qemu-images 50] [--json benchmarks/results/mcu.json] [--plot benchmarks/results/mcu.png]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, print_table, run, write_json  # noqa: E402

from tinymnist.atomic import write_bytes_atomic  # noqa: E402
from tinymnist.data.mnist import load_mnist  # noqa: E402
from tinymnist.errors import UserError  # noqa: E402
from tinymnist.export.c import codegen, cost, cycles, reference, toolchain  # noqa: E402
from tinymnist.export.c.c_export import accuracies, quantize_model, write_files  # noqa: E402
from tinymnist.models.bundled import pretrained_names, pretrained_path  # noqa: E402
from tinymnist.models.zoo import DEFAULT_MODEL, count_parameters  # noqa: E402
from tinymnist.training.checkpoint import load_checkpoint, model_from_checkpoint  # noqa: E402
from tinymnist.training.config import TrainConfig  # noqa: E402
from tinymnist.training.trainer import train  # noqa: E402

GOALS = {"int8_accuracy": 99.30, "flash": 12 * 1024, "ram": 32 * 1024, "instructions": 2_000_000}
STRETCH = {"ram": 16 * 1024, "instructions": 1_000_000}
# Issue #30's two microcontroller models: accuracy, Cortex-M4 instructions, flash and RAM in one M4 build
# (and, for mcu-tiny, Cortex-M0 instructions in one M0 build of the same flash and RAM).
ISSUE30 = {"mcu-fast": {"int8": 99.40, "m4": 1_000_000, "flash": 12 * 1024, "ram": 16 * 1024, "m0": None},
           "mcu-tiny": {"int8": 99.0, "m4": 250_000, "flash": 8 * 1024, "ram": 4 * 1024, "m0": 1_500_000}}

# Public microcontroller figures (../shared/ANCHORS.md): cycles measured by others on other cores, so
# they sit beside our Cortex-M4 instructions and estimated cycles as a reference, not a comparison.
ANCHORS = [
    {"label": "BitNetMCU fully connected, 4-bit", "accuracy": 99.02, "cycles": (510_000, 650_000), "core": "RV32"},
    {"label": "BitNetMCU depthwise CNN, width 16", "accuracy": 99.06, "cycles": 790_000, "core": "RV32"},
    {"label": "width 32", "accuracy": 99.28, "cycles": 1_430_000, "core": "RV32"},
    {"label": "width 48", "accuracy": 99.44, "cycles": 2_080_000, "core": "RV32"},
    {"label": "width 64", "accuracy": 99.55, "cycles": 2_740_000, "core": "RV32"},
    {"label": "TinyMaix 4-8-16 CNN (accuracy not published)", "accuracy": None, "cycles": 1_150_000,
     "core": "Cortex-M0+, 18 ms at 64 MHz"},
]


def reference_checkpoint(arg: str | None, data, work: Path) -> Path:
    if arg:
        return Path(arg)
    out = work / "reference-run"  # not work / "reference": measure() writes the C export there
    print("training the reference model (seed 0, 10 epochs) ...", flush=True)
    train(TrainConfig(model="reference", seed=0), data, out)
    return out / "last.pt"


def resolve_models(spec: str | None, reference_arg: str | None, data, work: Path) -> list[tuple[str, Path]]:
    """(label, checkpoint) for each entry of --models: a bundled model's name, `reference` (trained here
    unless --reference-checkpoint), or a checkpoint / run directory. Default: every bundled model."""
    names = [n.strip() for n in spec.split(",") if n.strip()] if spec else pretrained_names()
    if not names:
        raise UserError("--models names no model")
    models = []
    for name in names:
        if name == "reference":
            models.append(("reference", reference_checkpoint(reference_arg, data, work)))
        elif name in pretrained_names():
            models.append((f"{name} (default)" if name == DEFAULT_MODEL else name, pretrained_path(name)))
        elif Path(name).exists():
            path = Path(name)
            models.append((path.parent.name if path.name == "last.pt" else path.stem if path.is_file() else path.name,
                           path / "last.pt" if path.is_dir() else path))
        else:
            raise UserError(f"--models: {name!r} is neither a bundled model ({', '.join(pretrained_names())}), "
                            "reference, nor an existing checkpoint or run directory")
    return models


def measure(name: str, checkpoint: Path, data, qemu_images: int, work: Path, estimate_cycles: bool = True) -> list[dict]:
    ckpt = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt).float()
    int_model = quantize_model(model, data.train_images)
    expected = reference.scores(int_model, data.test_images)  # all 10,000, computed once
    acc = accuracies(model, expected.argmax(1), data)
    meta = {"model": ckpt["model_name"], "params": count_parameters(model), **acc, "source": checkpoint.name}
    src = work / name.split()[0]
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
            instructions = int(np.median(qemu.instructions))
            predicted = cost.predict(int_model, cpu, opt) if (cpu, opt) in cost.BUILDS else None
            estimate = cycles.estimated_cycles(elf, target, sample[0]) if estimate_cycles and target.simd else None
            rows.append({
                "model": name, "params": meta["params"], "float %": round(acc["float_accuracy"], 2),
                "int8 %": round(acc["int8_accuracy"], 2), "C != ref (10k)": mismatches[target.simd],
                "cpu": cpu, "opt": opt,
                "flash B": size.flash, "RAM B": plan.ram_bytes + size.stack, "static B": plan.ram_bytes,
                "stack B (static / QEMU)": f"{size.stack} / {qemu.stack_bytes}",
                "instructions": instructions,
                "predicted": predicted if predicted is not None else "-",
                "pred err %": f"{100 * (predicted / instructions - 1):+.1f}" if predicted else "-",
                "cycles (est.)": estimate.cycles if estimate else "-",
                "QEMU == ref": bool(np.array_equal(qemu.scores, sample_expected)),
                "_size": {"text": size.text, "data": size.data, "bss": size.bss, "stack": size.stack},
                "_qemu_stack": qemu.stack_bytes, "_agreement": acc["agreement"],
                "_cycles": None if estimate is None else {
                    "cycles": estimate.cycles, "instructions": estimate.instructions, "cpi": round(estimate.cpi, 3),
                    "by_class": estimate.class_cycles, "counts": estimate.counts,
                    "address_stalls": estimate.address_stalls, "taken_branches": estimate.taken_branches,
                    "refill_1_to_3": [estimate.at_refill(p) for p in (1, 2, 3)]},
            })
    return rows


def issue30(rows: list[dict]) -> dict[str, dict[str, bool]]:
    """For each model: which of issue #30's models (mcu-fast, mcu-tiny) its measured builds meet."""
    out = {}
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        met = {}
        for goal, g in ISSUE30.items():
            def fits(r: dict, limit: int | None, g: dict = g) -> bool:
                return limit is not None and r["instructions"] <= limit and r["flash B"] <= g["flash"] \
                    and r["RAM B"] <= g["ram"]
            m4 = any(fits(r, g["m4"]) for r in mine if r["cpu"] == "cortex-m4")
            m0 = g["m0"] is None or any(fits(r, g["m0"]) for r in mine if r["cpu"] == "cortex-m0")
            met[goal] = mine[0]["int8 %"] >= g["int8"] and m4 and m0
        out[model] = met
    return out


def plot(rows: list[dict], title: str = "") -> bytes:
    """PNG: int8 test accuracy against Cortex-M4 -O2 instructions per inference (log x), each model's
    estimated cycles beside it, the public figures of ANCHORS marked as cycles on other cores."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, ax = plt.subplots(figsize=(10, 6))
    ours = [r for r in rows if r["cpu"] == "cortex-m4" and r["opt"] == "-O2"]
    for r in ours:
        x, y = r["instructions"], r["int8 %"]
        ax.plot(x, y, "o", color="tab:blue", markersize=8, zorder=3)
        if isinstance(r.get("cycles (est.)"), int):
            ax.plot([x, r["cycles (est.)"]], [y, y], "-", color="tab:blue", alpha=0.5, linewidth=1)
            ax.plot(r["cycles (est.)"], y, "o", markerfacecolor="none", color="tab:blue", markersize=8, zorder=3)
        ax.annotate(r["model"], (x, y), textcoords="offset points", xytext=(0, 9), ha="center", fontsize=8,
                    color="tab:blue")
    for a in ANCHORS:
        low, high = a["cycles"] if isinstance(a["cycles"], tuple) else (a["cycles"], a["cycles"])
        if a["accuracy"] is None:
            ax.axvline(low, color="tab:gray", linestyle=":", linewidth=1.2)
            ax.annotate(f"{a['label'].split(' (')[0]}\n{low / 1e6:.2f} M cycles\n({a['core']})", (low, 0.4),
                        xycoords=("data", "axes fraction"), xytext=(4, 0), textcoords="offset points", fontsize=7,
                        color="tab:gray", va="bottom")
            continue
        if high > low:
            ax.plot([low, high], [a["accuracy"]] * 2, "-", color="tab:orange", linewidth=3, alpha=0.6)
        ax.plot((low * high) ** 0.5, a["accuracy"], "D", color="tab:orange", markersize=6)
        ax.annotate(f"{a['label']} ({a['core']})", ((low * high) ** 0.5, a["accuracy"]), textcoords="offset points",
                    xytext=(6, -10), fontsize=7, color="tab:orange")
    ax.plot([], [], "o", color="tab:blue", label="tinymnist int8 C: Cortex-M4 -O2 instructions (QEMU)")
    ax.plot([], [], "o", markerfacecolor="none", color="tab:blue",
            label="the same: estimated Cortex-M4 cycles (TRM cycle table, zero wait states)")
    ax.plot([], [], "D", color="tab:orange", label="BitNetMCU: cycles measured by others on an RV32 core")
    ax.plot([], [], ":", color="tab:gray", label="TinyMaix: cycles on a Cortex-M0+, accuracy not published")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1e6:g} M"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v / 1e6:g} M" if f"{v:.0e}"[0] in "2357" else ""))
    ax.set_xlabel("instructions or cycles per inference (log scale)")
    ax.set_ylabel("int8 test accuracy % (all 10,000 images)")
    low_y = min([r["int8 %"] for r in ours] + [a["accuracy"] for a in ANCHORS if a["accuracy"] is not None])
    ax.set_ylim(low_y - 0.15, None)
    ax.grid(alpha=0.3, which="both")
    # Below the axes: any corner inside would cover some model as the zoo changes.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=8)
    ax.set_title(title or "Accuracy against cost on a microcontroller")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir")
    parser.add_argument("--models", help="comma-separated bundled model names, checkpoints or run directories, and "
                        "`reference` (trained here unless --reference-checkpoint); default: every bundled model")
    parser.add_argument("--reference-checkpoint", help="a trained reference model (default: train one, seed 0)")
    parser.add_argument("--qemu-images", type=int, default=50, help="test images run under QEMU per build (default 50)")
    parser.add_argument("--no-cycles", action="store_true", help="skip the cycle estimates (a QEMU trace per M4 build)")
    parser.add_argument("--json", default="benchmarks/results/mcu.json")
    parser.add_argument("--plot", default="benchmarks/results/mcu.png")
    args = parser.parse_args()
    missing = [t for t in ("gcc", toolchain.ARM_CC, toolchain.ARM_SIZE, toolchain.QEMU, cycles.OBJDUMP)
               if not toolchain.have(t)]
    if missing:
        sys.exit(f"mcu.py: error: {', '.join(missing)} not found; install gcc-arm-none-eabi, libnewlib-arm-none-eabi "
                 "and qemu-system-arm")
    data = load_mnist(args.data_dir)
    coefficients = cost.load_coefficients()
    with tempfile.TemporaryDirectory(prefix="tinymnist-mcu-") as tmp:
        work = Path(tmp)
        rows = []
        for name, checkpoint in resolve_models(args.models, args.reference_checkpoint, data, work):
            rows += measure(name, checkpoint, data, args.qemu_images, work, not args.no_cycles)
    columns = ["model", "params", "float %", "int8 %", "C != ref (10k)", "cpu", "opt", "flash B", "RAM B", "static B",
               "stack B (static / QEMU)", "instructions", "predicted", "pred err %", "cycles (est.)", "QEMU == ref"]
    print_table(rows, columns)
    goals: dict[str, bool] = {}
    default_m4 = [r for r in rows if r["model"].startswith(DEFAULT_MODEL) and r["cpu"] == "cortex-m4"]
    if default_m4:  # the default model's deployment goals (README)
        best = min(default_m4, key=lambda r: r["instructions"])
        smallest = min(default_m4, key=lambda r: r["flash B"])
        goals = {
            "int8 >= 99.30% (default)": best["int8 %"] >= GOALS["int8_accuracy"],
            "C == reference on all 10,000 (every model)": all(r["C != ref (10k)"] == 0 for r in rows),
            "flash <= 12 KB (default, -Os)": smallest["flash B"] <= GOALS["flash"],
            "RAM <= 32 KB (default)": smallest["RAM B"] <= GOALS["ram"],
            "RAM <= 16 KB, stretch (default)": smallest["RAM B"] <= STRETCH["ram"],
            f"<= 2 M instructions on Cortex-M4 (default, best: {best['opt']})": best["instructions"] <= GOALS["instructions"],
            "<= 1 M instructions, stretch": best["instructions"] <= STRETCH["instructions"],
        }
        # The goals above may be met by different builds; say whether one build meets flash, RAM and instructions.
        whole = [r["opt"] for r in default_m4 if r["flash B"] <= GOALS["flash"] and r["RAM B"] <= GOALS["ram"]
                 and r["instructions"] <= GOALS["instructions"]]
        goals[f"flash, RAM and instruction goals in one Cortex-M4 build (default{', ' + whole[0] if whole else ''})"] = \
            bool(whole)
        for goal, met in goals.items():
            print(f"{'met    ' if met else 'NOT met'}  {goal}")
    frontier = issue30(rows)
    for model, met in frontier.items():
        print(f"{model}: issue #30 " + ", ".join(f"{goal} {'met' if ok else 'not met'}" for goal, ok in met.items()))
    stale = coefficients.staleness()
    if stale:
        print(f"warning: {stale}")
    write_json(args.json, {"machine": machine(), "qemu_images": args.qemu_images, "rows": rows, "goals": goals,
                           "issue30": frontier, "anchors": ANCHORS,
                           "cost_model": {"fitted": coefficients.fitted, "kernel_hash": coefficients.kernel_hash,
                                          "stale": coefficients.stale},
                           "cycle_model": {"refill": cycles.CycleModel().refill, "divide": cycles.CycleModel().divide,
                                           "note": "estimated Cortex-M4 cycles of one inference (the first image of "
                                                   "the sample): QEMU's executed instructions priced with the "
                                                   "Cortex-M4 TRM's cycle table; zero wait states, no bus contention"},
                           "note": "instructions: QEMU -icount shift=0, SysTick at 25 MHz = 40 instructions per tick; "
                                   "Cortex-M0 builds run on the AN385 board's Cortex-M3 (ARMv6-M code is a subset)."})
    write_bytes_atomic(Path(args.plot), plot(rows, f"int8 accuracy against cost per inference ({machine()['date']})"))
    print(f"wrote {args.plot}")


if __name__ == "__main__":
    run(main)
