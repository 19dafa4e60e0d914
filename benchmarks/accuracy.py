"""Accuracy over seeds, the honest way: full training set, the default 10-epoch schedule, and the
test accuracy of the *final* epoch (nothing selected on the test set).

Usage: python benchmarks/accuracy.py --seeds 5 [--first-seed 0] [--models stepped reference | --config FILE...]
       [--recipe default|article] [--engine auto|native|eager] [--jobs 1] [--data-dir D]
       [--device cpu|auto|cuda|mps]
       [--out benchmarks/results/accuracy.json]

--jobs 2 trains two runs at once, one thread each (on 2 cores: about twice the runs per hour; the
per-run wall time in the table is then that of a 1-thread run).

--config trains saved configurations (a search's best.json, a run's config.json) instead of registered
models: each file's fields, with --seeds/--first-seed/--epochs/--engine on top; rows are named by file.

The `article` recipe is the reference article's training recipe compressed to 10 epochs (Adam,
its per-epoch LR curve, batch 64, rotation +-5 degrees and a mild zoom), on TrainConfig's defaults;
`default` is each model's own: TrainConfig's defaults with the model's registered recipe on top (the
models registered before recipes existed have none). benchmarks/frontier.py measures every model so.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, mnist_once, print_table, run, run_jobs, write_json  # noqa: E402

from tinymnist.backends.device import describe, resolve_device  # noqa: E402
from tinymnist.errors import UserError  # noqa: E402
from tinymnist.models.zoo import DEFAULT_MODEL  # noqa: E402
from tinymnist.training.config import CHOICES, TrainConfig, config_with, read_config_file  # noqa: E402
from tinymnist.training.trainer import train  # noqa: E402

RECIPES = {
    "default": {},
    "article": {"optimizer": "adam", "lr": 0.01, "weight_decay": 0.0, "schedule": "article", "batch_size": 64,
                "rotate": 5.0, "scale": (1.0, 1.085), "translate": 1.0, "clean_epochs": 0},
}


def job_config(job: dict[str, Any]) -> tuple[str, TrainConfig]:
    """A job's row label and training config: its saved config (if any) with its fields on top, over
    the model's own recipe unless the job names another (`own_recipe` False)."""
    fields = {k: v for k, v in job.items() if k not in ("label", "saved", "own_recipe")}
    return job["label"], config_with(job.get("saved", {}), fields, recipe=job.get("own_recipe", True))


def run_one(data_dir: str | None, save_runs: str | None, device: str, job: dict[str, Any]) -> dict[str, Any]:
    """One training run (in a worker process when --jobs > 1); data is loaded once per process."""
    label, cfg = job_config(job)
    out = Path(save_runs) / f"{label.replace('/', '_')}-seed{cfg.seed}" if save_runs else None
    started = time.perf_counter()
    metrics = train(cfg, mnist_once(data_dir), out, device=device)
    return {"model": label, "seed": cfg.seed, "final_test_accuracy": metrics["final_test_accuracy"],
            "seconds": round(time.perf_counter() - started, 1), "params": metrics["params"], "engine": metrics["engine"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--models", nargs="+", default=[DEFAULT_MODEL, "reference"])
    parser.add_argument("--config", nargs="+", metavar="FILE", help="saved configs to train instead of --models")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="default")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--engine", choices=CHOICES["engine"], default="auto",
                        help="training engine (auto: native when built and the model is supported)")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once, 1 thread each when > 1")
    parser.add_argument("--data-dir")
    parser.add_argument("--device", default="cpu", help="cpu (default), or auto|cuda|mps")
    parser.add_argument("--out", default="benchmarks/results/accuracy.json")
    parser.add_argument("--save-runs", metavar="DIR", help="keep each run's directory (checkpoint, history) under DIR")
    args = parser.parse_args()
    device = describe(resolve_device(args.device))  # an unavailable device fails here, in one line
    common = {"epochs": args.epochs, "engine": args.engine, "threads": 1 if args.jobs > 1 else 0}
    if args.config:
        bases = {path: {"saved": read_config_file(path)} for path in args.config}
    else:
        bases = {model: {**RECIPES[args.recipe], "model": model, "own_recipe": args.recipe == "default"}
                 for model in args.models}
    jobs = [{**base, **common, "label": label, "seed": seed}
            for label, base in bases.items() for seed in range(args.first_seed, args.first_seed + args.seeds)]
    for job in jobs:  # a bad config or model fails here, before any training
        try:
            job_config(job)
        except ValueError as exc:
            raise UserError(f"{job['label']}: {exc}") from None
    runs = []
    for result in run_jobs(functools.partial(run_one, args.data_dir, args.save_runs, args.device), jobs, args.jobs):
        runs.append(result)
        print(f"{result['model']} seed {result['seed']}: final test accuracy {result['final_test_accuracy']:.2f}% "
              f"({result['seconds']:.0f} s)", flush=True)
    rows = []
    for model in bases:
        mine = [r for r in runs if r["model"] == model]
        accs, seconds = [r["final_test_accuracy"] for r in mine], [r["seconds"] for r in mine]
        rows.append({"model": model, "engine": mine[0]["engine"].split(" ")[0], "recipe": "saved" if args.config else args.recipe,
                     "params": mine[0]["params"], "seeds": len(accs),
                     "mean %": f"{statistics.mean(accs):.3f}", "worst %": f"{min(accs):.2f}", "best %": f"{max(accs):.2f}",
                     "std": f"{statistics.pstdev(accs):.3f}", "s/run": f"{statistics.mean(seconds):.0f}",
                     ">=99.40": f"{sum(a >= 99.40 for a in accs)}/{len(accs)}"})
    print(f"\nfinal-epoch test accuracy, {args.epochs} epochs, seeds {args.first_seed}..{args.first_seed + args.seeds - 1}\n")
    print_table(rows, ["model", "engine", "recipe", "params", "seeds", "mean %", "worst %", "best %", "std", ">=99.40", "s/run"])
    write_json(args.out, {"machine": {**machine(), "device": device}, "epochs": args.epochs, "recipe": args.recipe,
                          "jobs": args.jobs, "rows": rows, "runs": runs})


if __name__ == "__main__":
    run(main)
