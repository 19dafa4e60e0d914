"""Fit the instruction cost model of the int8 C export (tinymnist/export/c/cost.py) on QEMU counts.

Usage: python tools/calibrate_mcu_cost.py [--plans 90] [--residual-plans 30] [--stem-plans 20] [--holdout 20] [--jobs 2]
       [--seed 0] [--data-dir D] [--out src/tinymnist/export/c/cost_coefficients.json] [--refit]

Measures every registered model's network, --plans random PlanNet plans (input max-pool or not,
2-4 stages, dense and separable convs, widths in fours and not, padding 0 and lone 1x1 convs, odd
sizes) and --residual-plans more with residual=True (widths repeated more often, so that each has
shortcuts), and --stem-plans more whose first conv has stride 2 (the stem; no input pool; half of them
with a linear head: head="fc" on a quarter, its 4-bit twin head="fc4" on another), each group
drawn from a generator of its own, so the first plans stay the same whatever the others' number),
each untrained: random weights with BatchNorm statistics settled on a few training batches, so that
the quantized ranges are a trained model's kind (the instruction counts of these kernels do not
depend on weight values). Each is quantized, rendered, built for every build of cost.BUILDS
(arm-none-eabi-gcc) and run on one test image under QEMU with -icount (toolchain.qemu_run, as
benchmarks/mcu.py counts). The coefficients of each build are fitted on all but --holdout of the
plans (chosen at random, seeded; the registered models are always fitted), by non-negative least
squares on relative error; the held-out plans' errors are the model's stated accuracy. Writes --out:
the coefficients, the date, the kernel sources' hash, the compiler and QEMU versions, every plan's
measured and predicted counts and the worst and mean relative error on the fitted and held-out plans
(and on the held-out residual plans alone).

--refit fits again on the measurements --out already holds (same kernel hash), without building or
running anything: for changes to the features. About 4 minutes for the default 129 plans with --jobs 2 on
a 2-core machine (2-3 s a plan per job: most of it the model's quantization, then 4 builds and runs).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from tinymnist.atomic import write_bytes_atomic
from tinymnist.errors import UserError

CALIBRATION_IMAGES = 128  # enough for the ranges' kind: the counts do not depend on them
SETTLE = (2, 256)  # batches x images of training data that set the BatchNorm statistics


def random_plan(rng: np.random.Generator, repeat: float = 0.0, stem: bool = False) -> str:
    """A PlanNet plan for the calibration: shapes and kernels the searches and registered models use,
    and the edge cases (channels not in fours, odd sizes, padding 0, lone 1x1 convs). With `repeat`, a
    3x3 conv after the first keeps the width before it with that probability (a shortcut, residual=True)."""
    tokens: list[str] = []
    size = 28
    if not stem and rng.random() < 0.35:
        tokens.append("M")
        size //= 2
    stages = int(rng.integers(2, 5))
    fours = rng.random() < 0.6  # widths in fours (the SIMD kernels) or anything even
    first = True
    for stage in range(stages):
        if stage:
            if size < 6:
                break
            tokens.append("M")
            size //= 2
        for _ in range(int(rng.integers(1, 4))):
            width = int(rng.choice(np.arange(4, 41, 4) if fours else np.arange(4, 33, 2)))
            if first:
                kind, first = ("d" if stem else "c", False)
                width = int(rng.choice([4, 8, 12, 16] if fours else [4, 6, 8, 10, 12]))
                size = (size + 1) // 2 if stem else size
            else:
                kind = str(rng.choice(["s", "c", "v", "t"], p=[0.72, 0.14, 0.07, 0.07]))
                if kind == "v" and size < 8:
                    kind = "s"
                if kind == "c":
                    width = min(width, 24)
                if repeat and kind in "cs" and rng.random() < repeat:
                    width = int(tokens[-1][1:]) if tokens[-1] != "M" else int(tokens[-2][1:])
            if kind == "v":
                size -= 2
            tokens.append(f"{kind}{width}")
    return " ".join(tokens)


def has_shortcut(plan: str) -> bool:
    """Whether PlanNet(plan, residual=True) has a shortcut: a 3x3 conv ("c", "s") that keeps the width."""
    from tinymnist.models.zoo import parse_plan

    width = 1
    for kind, out in parse_plan(plan):
        if kind != "M":
            if kind in "cs" and out == width:
                return True
            width = out
    return False


def calibration_set(plans: int, seed: int, residual_plans: int = 0, stem_plans: int = 0) -> list[dict[str, Any]]:
    """The registered models, then `plans` random PlanNet plans (dw_bn=False, as the search builds them),
    then `residual_plans` more with residual=True, each with a shortcut at least, then `stem_plans` more
    whose first conv has stride 2 (the runtime's stem)."""
    from tinymnist.models.zoo import model_kwargs, model_names

    cases = [{"name": name, "args": {}, "registered": True} for name in model_names()]
    seen = {json.dumps(model_kwargs(c["name"]), sort_keys=True) for c in cases}
    for count, rng, residual, stem in ((plans, np.random.default_rng(seed), False, False),
                                       (residual_plans, np.random.default_rng([seed, 1]), True, False),
                                       (stem_plans, np.random.default_rng([seed, 2]), False, True)):
        target = len(cases) + count
        while len(cases) < target:
            plan = random_plan(rng, 0.5 if residual else 0.0, stem)
            args = {"plan": plan, "dw_bn": False, "dropout": 0.0, **({"residual": True} if residual else {})}
            draw = rng.random() if stem else 1.0
            if draw < 0.5:  # the linear head on half of them: a quarter with 8-bit weights, a quarter with 4-bit
                args["head"] = "fc" if draw < 0.25 else "fc4"
            key = json.dumps(model_kwargs("separable", args), sort_keys=True)
            if key not in seen and (not residual or has_shortcut(plan)):
                seen.add(key)
                cases.append({"name": "separable", "args": args, "registered": False})
    return cases


_DATA: dict[str, Any] = {}


def _train_images(data_dir: str | None) -> np.ndarray:
    if "train" not in _DATA:
        from tinymnist.data.mnist import load_mnist

        data = load_mnist(data_dir)
        _DATA["train"], _DATA["test"] = data.train_images, data.test_images
    return _DATA["train"]


def settled_model(case: dict[str, Any], train_images: np.ndarray) -> Any:
    """The case's model: random weights (seed 0), BatchNorm statistics from a few training batches."""
    import torch
    from torch import nn

    from tinymnist.data.normalize import normalize
    from tinymnist.models.zoo import create_model

    torch.manual_seed(0)
    model = create_model(case["name"], **case["args"])
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # a plain average over the batches
    model.train()
    with torch.no_grad():
        batches, size = SETTLE
        for i in range(batches):
            x = torch.from_numpy(normalize(np.asarray(train_images[i * size:(i + 1) * size])))
            model(x.reshape(-1, 1, 28, 28))
    return model.eval()


def int_model_of(case: dict[str, Any], train_images: np.ndarray) -> Any:
    from tinymnist.export.c.c_export import quantize_model
    from tinymnist.export.c.quantize import QuantConfig

    return quantize_model(settled_model(case, train_images), train_images, QuantConfig(CALIBRATION_IMAGES))


def measure(job: tuple[dict[str, Any], str | None]) -> dict[str, Any]:
    """One case's QEMU instruction counts for every build (in a worker process)."""
    import torch

    from tinymnist.export.c import codegen, cost, toolchain
    from tinymnist.export.c.c_export import write_files

    case, data_dir = job
    torch.set_num_threads(1)  # one job per core
    train = _train_images(data_dir)
    started = time.perf_counter()
    int_model = int_model_of(case, train)
    counts = {}
    with tempfile.TemporaryDirectory(prefix="tinymnist-calibrate-") as tmp:
        src = Path(tmp)
        header, source = codegen.render(int_model, {"model": case["name"], "source": "calibration"})
        write_files(src, {codegen.HEADER_NAME: header, codegen.SOURCE_NAME: source})
        for cpu, opt in cost.BUILDS:
            target = toolchain.TARGETS[cpu]
            elf = toolchain.arm_build(src, target, src / f"{cpu}{opt}.elf", opt)
            run = toolchain.qemu_run(elf, target, _DATA["test"][:1])
            counts[cost.build_name(cpu, opt)] = int(run.instructions[0])
    feats = {cost.build_name(cpu, opt): cost.features(int_model, cpu) for cpu, opt in cost.BUILDS}
    return {**case, "instructions": counts, "features": feats, "seconds": round(time.perf_counter() - started, 1)}


def _version(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.splitlines()[0].strip()
    except (OSError, subprocess.SubprocessError, IndexError):
        return "?"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fit_and_report(measured: list[dict[str, Any]], holdout: int, seed: int) -> dict[str, Any]:
    """Coefficients per build fitted on the non-held-out cases (their "features" per build), and every
    case's prediction."""
    from tinymnist.export.c import cost

    rng = np.random.default_rng(seed + 1)
    candidates = [i for i, m in enumerate(measured) if not m["registered"]]
    held = set(rng.choice(candidates, size=min(holdout, len(candidates)), replace=False).tolist())
    builds: dict[str, dict[str, float]] = {}
    rows = [dict(m) for m in measured]
    for row in rows:
        row["held_out"] = rows.index(row) in held
        row["predicted"] = {}
    summary = {}
    for cpu, opt in cost.BUILDS:
        name = cost.build_name(cpu, opt)
        feats = [m["features"][name] for m in measured]
        fitted = [i for i in range(len(rows)) if i not in held]
        coefs = cost.fit([feats[i] for i in fitted], [rows[i]["instructions"][name] for i in fitted])
        builds[name] = {k: round(v, 6) for k, v in coefs.items() if v}
        errors: dict[str, list[float]] = {"fitted": [], "held_out": []}
        for i, row in enumerate(rows):
            predicted = sum(coefs[k] * v for k, v in feats[i].items())
            row["predicted"][name] = int(round(predicted))
            errors["held_out" if i in held else "fitted"].append(predicted / row["instructions"][name] - 1)
        errors["held_out_residual"] = [errors["held_out"][j] for j, i in enumerate(sorted(held))
                                       if rows[i]["args"].get("residual")]
        summary[name] = {split: {"plans": len(e), "worst_error": round(float(np.abs(e).max()), 4) if e else None,
                                 "mean_abs_error": round(float(np.abs(e).mean()), 4) if e else None}
                         for split, e in errors.items()}
    return {"builds": builds, "errors": summary, "plans": [
        {"model": r["name"], "args": r["args"], "held_out": r["held_out"], "instructions": r["instructions"],
         "predicted": r["predicted"]} for r in rows]}


def main() -> None:
    from tinymnist.export.c import cost, toolchain

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plans", type=int, default=90, help="random plans beside the registered models (default 90)")
    parser.add_argument("--residual-plans", type=int, default=30,
                        help="random residual=True plans beside those (default 30)")
    parser.add_argument("--stem-plans", type=int, default=20,
                        help="random plans whose first conv has stride 2 beside those (default 20)")
    parser.add_argument("--holdout", type=int, default=20, help="random plans left out of the fit (default 20)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random plans and of the holdout (default 0)")
    parser.add_argument("--data-dir")
    parser.add_argument("--out", type=Path, default=cost.coefficients_path())
    parser.add_argument("--refit", action="store_true", help="fit again on the measurements --out holds")
    args = parser.parse_args()
    if args.plans < 1 or args.residual_plans < 0 or args.stem_plans < 0 or not 0 <= args.holdout < args.plans or args.jobs < 1:
        raise UserError("--plans must be >= 1, --residual-plans and --stem-plans >= 0, --holdout between 0 and --plans - 1, "
                        "--jobs >= 1")
    started = time.perf_counter()
    if args.refit:
        try:
            saved = json.loads(args.out.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"--refit: cannot read {args.out}: {exc}") from None
        if saved.get("kernel_hash") != cost.kernel_hash():
            raise UserError(f"--refit: {args.out} was measured on other kernel sources; run without --refit")
        measured = [{"name": p["model"], "args": p["args"], "registered": not p["args"], "instructions": p["instructions"]}
                    for p in saved["plans"]]
        train = _train_images(args.data_dir)
        for m in measured:  # the features again, from the (re-quantized) models: they are what changed
            int_model = int_model_of(m, train)
            m["features"] = {cost.build_name(cpu, opt): cost.features(int_model, cpu) for cpu, opt in cost.BUILDS}
        args.seed, holdout = saved["seed"], saved["holdout"]
    else:
        missing = [t for t in (toolchain.ARM_CC, toolchain.QEMU) if not toolchain.have(t)]
        if missing:
            raise UserError(f"{', '.join(missing)} not found; install gcc-arm-none-eabi, libnewlib-arm-none-eabi "
                            "and qemu-system-arm")
        _train_images(args.data_dir)  # a missing data set fails here, before any worker starts
        cases = calibration_set(args.plans, args.seed, args.residual_plans, args.stem_plans)
        jobs = [(case, args.data_dir) for case in cases]
        measured = []
        with ProcessPoolExecutor(args.jobs) as pool:
            for i, row in enumerate(pool.map(measure, jobs), 1):
                measured.append(row)
                label = row["args"].get("plan", row["name"])
                print(f"[{i}/{len(jobs)}] {label}: {row['instructions']} ({row['seconds']} s)", flush=True)
        holdout = args.holdout
    report = fit_and_report(measured, holdout, args.seed)
    meta = {"seed": args.seed, "holdout": holdout, "errors": report["errors"],
            "compiler": _version([toolchain.ARM_CC, "--version"]), "qemu": _version([toolchain.QEMU, "--version"]),
            "machine": _cpu(), "counted": "QEMU -icount shift=0 (toolchain.qemu_run), one test image",
            "minutes": round((time.perf_counter() - started) / 60, 1), "plans": report["plans"]}
    coefficients = cost.Coefficients(report["builds"], cost.kernel_hash(), cost.today(), meta)
    write_bytes_atomic(args.out, coefficients.to_json().encode())
    for name, e in report["errors"].items():
        residual = e["held_out_residual"]
        print(f"{name}: fitted {e['fitted']['plans']} plans, worst {100 * e['fitted']['worst_error']:.2f}%; held out "
              f"{e['held_out']['plans']}: worst {100 * (e['held_out']['worst_error'] or 0):.2f}%, mean "
              f"{100 * (e['held_out']['mean_abs_error'] or 0):.2f}% (the {residual['plans']} residual plans: worst "
              f"{100 * (residual['worst_error'] or 0):.2f}%, mean {100 * (residual['mean_abs_error'] or 0):.2f}%)")
    print(f"wrote {args.out} ({meta['minutes']} min)")


if __name__ == "__main__":
    try:
        main()
    except UserError as exc:
        print(f"calibrate_mcu_cost.py: error: {exc}", file=sys.stderr)
        sys.exit(1)
