"""The tiny-model frontier: every registered model trained as `tinymnist train --model NAME` trains it
(TrainConfig's defaults with the model's own recipe), over several seeds, judged by the test accuracy
of its final epoch on all 10,000 test images after training on all 60,000 training images. Nothing is
chosen on the test set: the seeds and recipes are fixed before the runs.

Usage: python benchmarks/frontier.py [--models a,b] [--seeds 10] [--first-seed 0] [--jobs 1]
       [--engine auto] [--data-dir D] [--device cpu] [--log benchmarks/results/frontier.jsonl]
       [--out benchmarks/results/frontier.json] [--plot benchmarks/results/frontier.png] [--update-package]
       [--rerun] [--save-runs DIR] [--epochs E] [--subset N --test-subset N: smoke runs only]

Each run is appended to --log as one JSON line the moment it ends, so a benchmark that is killed
keeps every finished run; running the same command again skips the runs the log already holds with
the same configuration (--rerun trains them again). At the end it prints the table (params, MACs,
mean, worst, best, std over seeds, minutes per run), writes --out (JSON) and --plot (accuracy against
parameters, each model's mean with a line down to its worst seed, the public claims beside them,
labelled with how they were measured). --update-package also writes the package's measured results
(src/tinymnist/pretrained/frontier.json), the only source of the figures `tinymnist models` shows; it
refuses the smoke options, so that those figures are always full runs of the models as registered.

--jobs 2 trains two runs at once, one thread each (on 2 cores: about twice the runs per hour; minutes
per run are then those of a 1-thread run).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import io
import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, mnist_once, print_table, run, run_jobs  # noqa: E402

from tinymnist.atomic import write_bytes_atomic  # noqa: E402
from tinymnist.backends.device import describe, resolve_device  # noqa: E402
from tinymnist.errors import UserError  # noqa: E402
from tinymnist.models.bundled import measured_path  # noqa: E402
from tinymnist.models.summary import summarize  # noqa: E402
from tinymnist.models.zoo import create_model, model_kwargs, model_names, model_recipe  # noqa: E402
from tinymnist.training.config import ADDED_LATER, CHOICES, TrainConfig, config_with  # noqa: E402
from tinymnist.training.trainer import train  # noqa: E402

RESULTS = Path(__file__).parent / "results"

# The best public claims under each budget (../shared/ANCHORS.md), with how they were measured: most
# are one seed, some the best epoch or the best of many runs picked on the test set.
CLAIMS = [
    {"params": 3762, "accuracy": 99.52, "how": "final epoch of 15, one seed"},
    {"params": 1936, "accuracy": 99.10, "how": "final of 75 epochs, one seed, no augmentation"},
    {"params": 997, "accuracy": 99.05, "how": "best of 223 runs, early stopping on the test set", "mean": 98.76},
]


def normalized(value: Any) -> Any:
    """`value` as JSON gives it back (tuples as lists): what a log line holds, to compare with."""
    return json.loads(json.dumps(value))


def job_configs(models: list[str], seeds: list[int], overrides: dict[str, Any]) -> list[dict[str, Any]]:
    """One job per model and seed: the model's own config (defaults < recipe) with `overrides` on top."""
    jobs = []
    for model in models:
        for seed in seeds:
            cfg = config_with({}, {**overrides, "model": model, "seed": seed})
            jobs.append({"model": model, "seed": seed, "model_args": normalized(model_kwargs(model)),
                         "config": normalized(dataclasses.asdict(cfg))})
    return jobs


def run_one(data_dir: str | None, device: str, save_runs: Path | None, job: dict[str, Any]) -> dict[str, Any]:
    """One training run (in a worker process when --jobs > 1): its log line. With `save_runs`, the run's
    directory (checkpoint, history) is kept as SAVE_RUNS/MODEL-seedN, e.g. for tools/package_pretrained.py."""
    cfg = TrainConfig.from_dict(job["config"])
    started = time.perf_counter()
    out = save_runs / f"{job['model']}-seed{job['seed']}" if save_runs else None
    metrics = train(cfg, mnist_once(data_dir), out, device=device)
    where = machine()
    return {"model": job["model"], "seed": job["seed"], "final_test_accuracy": metrics["final_test_accuracy"],
            "params": metrics["params"], "seconds": round(time.perf_counter() - started, 1),
            "engine": metrics["engine"], "threads": metrics["threads"],
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "cpu": where["cpu"], "cores": where["cores"], "torch": where["torch"], "model_args": job["model_args"],
            "config": job["config"]}


def read_log(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The runs a log holds and how many of its lines could not be read (a line cut off by a kill)."""
    if not path.exists():
        return [], 0
    runs, bad = [], 0
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            bad += line.strip() != ""
            continue
        if isinstance(entry, dict) and {"model", "seed", "config", "final_test_accuracy"} <= set(entry):
            runs.append(entry)
        else:
            bad += 1
    return runs, bad


def append_line(path: Path, entry: dict[str, Any]) -> None:
    """One run as one line, flushed as soon as the run ends. A line a kill cut off is ended first, so
    that it spoils only itself."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cut = False
    if path.exists() and path.stat().st_size > 0:
        with path.open("rb") as handle:
            handle.seek(-1, 2)
            cut = handle.read(1) != b"\n"
    with path.open("a") as handle:
        handle.write(("\n" if cut else "") + json.dumps(entry) + "\n")
        handle.flush()


def key(entry: dict[str, Any]) -> str:
    """What makes two runs the same run: model, seed, the network's registered arguments (a model whose
    plan changed is another network) and the whole resolved configuration (its recipe included)."""
    # A run logged before a config field existed trained with the value that field now gives it.
    config = {**ADDED_LATER, **entry["config"]}
    return json.dumps([entry["model"], entry["seed"], entry.get("model_args"), config], sort_keys=True)


def summarize_model(model: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """A model's row: its cost (computed from the model) and its accuracy over the runs' seeds."""
    runs = sorted(runs, key=lambda r: r["seed"])
    accs = [r["final_test_accuracy"] for r in runs]
    summary = summarize(create_model(model))
    if summary.params != runs[0]["params"]:
        raise UserError(f"{model}: the log's runs have {runs[0]['params']:,} parameters, the registered model "
                        f"{summary.params:,}; measure it again (--rerun)")
    config = {k: v for k, v in runs[0]["config"].items() if k not in ("seed", "threads")}
    dates = sorted(r["finished"][:10] for r in runs)
    return {"params": summary.params, "macs": summary.macs, "model_args": normalized(model_kwargs(model)),
            "recipe": normalized(model_recipe(model)), "epochs": config["epochs"], "seeds": [r["seed"] for r in runs],
            "accuracies": accs, "mean": round(statistics.mean(accs), 4), "worst": min(accs), "best": max(accs),
            "std": round(statistics.pstdev(accs), 4),
            "minutes_per_run": round(statistics.mean(r["seconds"] for r in runs) / 60, 2),
            "engine": runs[0]["engine"].split(" ")[0], "cpus": sorted({r["cpu"] for r in runs}),
            "runs_from": dates[0], "runs_to": dates[-1], "train_subset": config["train_subset"],
            "test_subset": config["test_subset"], "config": config, **teacher_of(model)}


def teacher_of(model: str) -> dict[str, Any]:
    """{"teacher": its name, parameters and MACs} for a model whose recipe distils from a registered model
    (its figures are then not from scratch, and the teacher's cost belongs beside them); {} otherwise."""
    spec = model_recipe(model).get("teacher")
    if not spec:
        return {}
    if spec not in model_names():
        return {"teacher": {"name": spec}}
    cost = summarize(create_model(spec))
    return {"teacher": {"name": spec, "params": cost.params, "macs": cost.macs}}


def table_rows(models: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"model": name, "params": f"{m['params']:,}", "MACs": f"{m['macs']:,}", "mean %": f"{m['mean']:.3f}",
             "worst %": f"{m['worst']:.2f}", "best %": f"{m['best']:.2f}", "std": f"{m['std']:.3f}",
             "seeds": len(m["seeds"]), "min/run": f"{m['minutes_per_run']:.1f}"} for name, m in models.items()]


def plot(models: dict[str, dict[str, Any]], title: str) -> bytes:
    """Test accuracy against parameters (log x): each model's mean (dot) with a line down to its worst
    seed, and the public claims as diamonds labelled with how they were measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullFormatter, StrMethodFormatter

    fig, ax = plt.subplots(figsize=(10, 6))
    # Two models of nearly the same size (mcu-fast and separable) take their labels to either side.
    order = sorted(models, key=lambda n: models[n]["params"])
    side = {name: 0 for name in models}
    for left, right in itertools.pairwise(order):
        if models[right]["params"] < 1.1 * models[left]["params"]:
            side[left], side[right] = -1, 1
    for name, m in models.items():
        distilled = "teacher" in m  # hollow: not from scratch
        ax.vlines(m["params"], m["worst"], m["mean"], color="tab:blue", linewidth=2)
        ax.plot(m["params"], m["mean"], "o", color="tab:blue", markersize=7,
                markerfacecolor="white" if distilled else "tab:blue")
        ax.plot(m["params"], m["worst"], "_", color="tab:blue", markersize=12, markeredgewidth=2)
        # Under the worst-seed mark, centred: neighbours a fifth of a decade apart stay legible.
        label = f"{name}\n{m['mean']:.2f}" + (f"\ndistilled from {m['teacher']['name']}" if distilled else "")
        ax.annotate(label, (m["params"], m["worst"]), textcoords="offset points", xytext=(5 * side[name], -6),
                    ha={-1: "right", 0: "center", 1: "left"}[side[name]], va="top", fontsize=8, color="tab:blue")
    for claim in CLAIMS:
        ax.plot(claim["params"], claim["accuracy"], "D", color="tab:orange", markersize=7)
        label = f"{claim['accuracy']:.2f}% at {claim['params']:,}: {claim['how']}"
        if "mean" in claim:
            ax.vlines(claim["params"], claim["mean"], claim["accuracy"], color="tab:orange", linestyles=":")
            ax.plot(claim["params"], claim["mean"], "D", markerfacecolor="none", color="tab:orange", markersize=7)
            ax.annotate(f"their mean over the runs {claim['mean']:.2f}%", (claim["params"], claim["mean"]),
                        textcoords="offset points", xytext=(7, 0), va="center", fontsize=7, color="tab:orange")
        ax.annotate(label.replace(": ", ":\n", 1), (claim["params"], claim["accuracy"]), textcoords="offset points",
                    xytext=(0, 9), ha="center", va="bottom", fontsize=7, color="tab:orange")
    ax.plot([], [], "o-", color="tab:blue", label="tinymnist, final epoch: mean over seeds, line down to the worst seed")
    ax.plot([], [], "D", color="tab:orange", label="public claims, each labelled with how it was measured")
    ax.set_xscale("log")
    params = [m["params"] for m in models.values()] + [c["params"] for c in CLAIMS]
    ax.set_xlim(min(params) / 1.5, max(params) * 1.5)
    accs = [m["worst"] for m in models.values()] + [m["mean"] for m in models.values()] + \
        [c.get("mean", c["accuracy"]) for c in CLAIMS] + [c["accuracy"] for c in CLAIMS]
    ax.set_ylim(min(accs) - 0.15, max(accs) + 0.15)  # room below for the models' labels, above for the claims
    ax.xaxis.set_major_locator(FixedLocator([500, 1000, 2000, 3000, 4000, 5000, 7000, 10000]))
    ax.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("parameters (log scale)")
    ax.set_ylabel("MNIST test accuracy, %")
    ax.set_title(title, fontsize=10, wrap=True)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def write(path: Path, data: bytes) -> None:
    write_bytes_atomic(path, data)  # whole or not at all
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(model_names()), help="comma-separated (default: every registered model)")
    parser.add_argument("--seeds", type=int, default=10, help="number of seeds (default 10)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once, 1 thread each when > 1")
    parser.add_argument("--engine", choices=CHOICES["engine"], default="auto")
    parser.add_argument("--data-dir")
    parser.add_argument("--device", default="cpu", help="cpu (default), or auto|cuda|mps")
    parser.add_argument("--log", type=Path, default=RESULTS / "frontier.jsonl", help="one JSON line per finished run")
    parser.add_argument("--out", type=Path, default=RESULTS / "frontier.json")
    parser.add_argument("--plot", type=Path, default=RESULTS / "frontier.png")
    parser.add_argument("--update-package", nargs="?", type=Path, const=measured_path(), metavar="PATH",
                        help=f"also write the package's measured results (default path: {measured_path()})")
    parser.add_argument("--save-runs", type=Path, metavar="DIR",
                        help="keep each run's directory (checkpoint, history) as DIR/MODEL-seedN")
    parser.add_argument("--rerun", action="store_true", help="train runs the log already holds again")
    parser.add_argument("--epochs", type=int, help="epochs instead of each model's own (smoke runs, or issue 29's "
                        "5-epoch stretch with its own --log/--out/--plot)")
    parser.add_argument("--subset", type=int, default=0, help="smoke runs only: the first N training images")
    parser.add_argument("--test-subset", type=int, default=0, help="smoke runs only: the first N test images")
    args = parser.parse_args()

    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in model_names()]
    if unknown or not models:
        raise UserError(f"unknown model(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(model_names())}")
    if args.seeds < 1 or args.first_seed < 0 or args.jobs < 1:
        raise UserError("--seeds and --jobs must be at least 1, --first-seed at least 0")
    smoke = {k: v for k, v in {"epochs": args.epochs, "train_subset": args.subset, "test_subset": args.test_subset}.items() if v}
    if args.update_package and smoke:
        raise UserError("--update-package records full runs of the models as registered: leave out --epochs, --subset "
                        "and --test-subset")
    device = describe(resolve_device(args.device))  # an unavailable device fails here, in one line
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    try:
        jobs = job_configs(models, seeds, {**smoke, "engine": args.engine, "threads": 1 if args.jobs > 1 else 0})
    except ValueError as exc:
        raise UserError(f"bad configuration: {exc}") from None

    logged, bad = read_log(args.log)
    if bad:
        print(f"frontier.py: {args.log}: {bad} unreadable line(s) skipped (a run cut off by a kill)", file=sys.stderr)
    done = {} if args.rerun else {key(r): r for r in logged}
    pending = [job for job in jobs if key(job) not in done]
    print(f"{len(jobs)} runs: {len(jobs) - len(pending)} already in {args.log}, {len(pending)} to train "
          f"({args.jobs} at a time, {device})", flush=True)
    results = {key(job): done[key(job)] for job in jobs if key(job) in done}
    if pending:
        mnist_once(args.data_dir)  # missing data fails here, in one line, before any worker starts
    worker = functools.partial(run_one, args.data_dir, args.device, args.save_runs)
    for result in run_jobs(worker, pending, args.jobs, ordered=False):
        append_line(args.log, result)
        results[key(result)] = result
        print(f"{result['model']} seed {result['seed']}: final test accuracy {result['final_test_accuracy']:.2f}% "
              f"({result['seconds'] / 60:.1f} min)", flush=True)

    summary = {m: summarize_model(m, [r for r in results.values() if r["model"] == m]) for m in models}
    epochs = sorted({s["epochs"] for s in summary.values()})
    images = f"{args.subset or 60000:,} training, {args.test_subset or 10000:,} test images"
    title = (f"MNIST test accuracy at the final epoch ({'/'.join(map(str, epochs))} epochs, {images}), "
             f"seeds {seeds[0]}-{seeds[-1]}, each model with its own recipe")
    print(f"\n{title}\n")
    print_table(table_rows(summary), ["model", "params", "MACs", "mean %", "worst %", "best %", "std", "seeds", "min/run"])
    when = max(s["runs_to"] for s in summary.values())
    payload = {"benchmark": "benchmarks/frontier.py", "command": " ".join(["python", *sys.argv]), "date": when,
               "machine": {**{k: v for k, v in machine().items() if k != "date"}, "device": device},
               "jobs": args.jobs, "seeds": seeds,
               "train_images": args.subset or 60000, "test_images": args.test_subset or 10000,
               "judged": "test accuracy of the final epoch; std over seeds is the population std",
               "models": summary, "claims": CLAIMS}
    write(args.out, (json.dumps(payload, indent=2) + "\n").encode())
    write(args.plot, plot(summary, title))
    if args.update_package:
        write(args.update_package, (json.dumps(payload, indent=2) + "\n").encode())


if __name__ == "__main__":
    run(main)
