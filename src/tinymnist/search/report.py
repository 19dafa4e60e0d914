"""What a search leaves in --out: trials.csv (every trial), best.json (the winner as a TrainConfig),
pareto.png (validation accuracy against parameters, MACs and, with a target, predicted instructions; Pareto
front marked) and search.md
(what was searched, the budgets, trials by status, the finalists on fresh seeds, the winner)."""

from __future__ import annotations

import csv
import datetime
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tinymnist.atomic import write_bytes_atomic
from tinymnist.search import space
from tinymnist.search.config import SearchConfig
from tinymnist.search.finalists import Finalist
from tinymnist.search.trials import TRAINED, last_val_accuracy, status_counts, trial_status
from tinymnist.training.config import TrainConfig

if TYPE_CHECKING:
    from matplotlib.figure import Figure

KNOBS = ("lr", "warmup", "weight_decay", "label_smoothing", "augment", "clean_epochs", "batch_size")
CSV_FIELDS = ("number", "status", "plan", *KNOBS, "params", "macs", "ram_kb", "instructions", "val_accuracy",
              "epochs_trained", "seconds", "reason", "retry_of", "baseline")


def trial_row(trial: Any) -> dict[str, Any]:
    """A trials.csv row."""
    a = trial.user_attrs
    row = {"number": trial.number, "status": trial_status(trial), "plan": a.get("plan", ""),
           "params": a.get("params", ""), "macs": a.get("macs", ""), "ram_kb": a.get("ram_kb", ""),
           "instructions": a.get("instructions") or "",
           "val_accuracy": last_val_accuracy(trial) if last_val_accuracy(trial) is not None else "",
           "epochs_trained": len(a.get("val_history") or []), "seconds": a.get("seconds", ""),
           "reason": a.get("reason", ""), "retry_of": trial.system_attrs.get("failed_trial", ""),
           "baseline": bool(a.get("baseline", False))}
    row.update({k: trial.params.get(k, "") for k in KNOBS})
    if row["ram_kb"] is None:
        row["ram_kb"] = ""
    return row


def trials_csv(trials: list[Any]) -> str:
    """trials.csv: one row per trial, by number."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for t in sorted(trials, key=lambda t: t.number):
        writer.writerow(trial_row(t))
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# Pareto


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points (cost, accuracy) that no other point beats: as cheap or cheaper and as
    accurate or more, better in one. Sorted by cost."""
    front = [i for i, (c, a) in enumerate(points)
             if not any(c2 <= c and a2 >= a and (c2 < c or a2 > a) for c2, a2 in points)]
    return sorted(front, key=lambda i: points[i])


def pareto_figure(trials: list[Any], cfg: SearchConfig, winner: Finalist | None) -> Figure:
    """Validation accuracy of the complete trials against parameters and MACs, front and winner marked."""
    from tinymnist.analysis import plots

    plt = plots.plt
    complete = [t for t in trials if trial_status(t) == "complete"]
    panels = [("params", "parameters", cfg.max_params), ("macs", "MACs per image", cfg.max_macs)]
    if cfg.build is not None:
        panels.append(("instructions", f"predicted {' '.join(cfg.build)} instructions per image", cfg.max_instructions))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), sharey=True)
    for ax, (key, label, limit) in zip(axes, panels, strict=True):
        points = [(float(t.user_attrs[key]), float(t.value)) for t in complete if t.user_attrs.get(key) is not None]
        ax.scatter([p[0] for p in points], [p[1] for p in points], s=14, alpha=0.5, color="tab:blue", label="complete trial")
        front = pareto_front(points)
        if front:
            ax.step([points[i][0] for i in front], [points[i][1] for i in front], where="post", color="tab:orange")
            ax.scatter([points[i][0] for i in front], [points[i][1] for i in front], s=30, color="tab:orange",
                       label="Pareto front", zorder=3)
        x = getattr(winner, key) if winner is not None else None
        if winner is not None and x is not None:
            ax.scatter([x], [winner.search_accuracy], marker="*", s=220, color="tab:red", zorder=4,
                       label=f"winner (trial {winner.number}, best fresh-seed mean)")
        if limit is not None:
            ax.axvline(limit, color="grey", linestyle="--", linewidth=1, label="budget")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"validation accuracy % ({cfg.epochs} epoch{'s' if cfg.epochs > 1 else ''})")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"search: {len(complete)} complete trials")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# search.md


def _budget_lines(cfg: SearchConfig) -> list[str]:
    ram = (f"at most {cfg.max_ram_kb:g} KiB" if cfg.max_ram_kb is not None else "no limit")
    lines = [f"- parameters: at most {cfg.max_params:,}",
             f"- MACs per image: {f'at most {cfg.max_macs:,}' if cfg.max_macs is not None else 'no limit'}",
             f"- int8 RAM: {ram} (the static buffers of `tinymnist export --format c`: the in-place activation arena, "
             "the input row ring and one depthwise row, computed from layer shapes; the stack, about 0.5 KB, comes on top)"]
    if cfg.build is not None:
        limit = f"at most {cfg.max_instructions:,}" if cfg.max_instructions is not None else "no limit"
        lines.append(f"- instructions per inference on {' '.join(cfg.build)}: {limit}, {_cost_model_line(cfg.build)}")
    return lines + ["", "Every candidate's costs were computed from its untrained network; one over a budget was "
                        "rejected before any training."]


def _cost_model_line(build: tuple[str, str]) -> str:
    """How the instruction counts were predicted and how far to trust them."""
    from tinymnist.export.c import cost

    try:
        coefficients = cost.load_coefficients()
    except (OSError, ValueError) as exc:
        return f"predicted by the instruction cost model, whose coefficients could not be read ({exc})"
    errors = coefficients.meta.get("errors", {}).get(cost.build_name(*build), {}).get("held_out", {})
    worst = errors.get("worst_error")
    accuracy = (f"within {100 * worst:.1f}% of QEMU's counts on the {errors.get('plans')} plans held out of its fit"
                if worst is not None else "accuracy not measured")
    stale = coefficients.staleness()
    return (f"predicted from layer shapes by the instruction cost model (export/c/cost.py, fitted {coefficients.fitted}: "
            f"{accuracy})" + (f". **Warning: {stale}**" if stale else ""))


def _baseline_lines(trials: list[Any]) -> list[str]:
    """Where the default model (the study's baseline trial) ranks; nothing when the study has none."""
    baseline = next((t for t in trials if t.user_attrs.get("baseline")), None)
    if baseline is None:
        return []
    value = last_val_accuracy(baseline)
    complete = sorted((t.value for t in trials if trial_status(t) == "complete"), reverse=True)
    rank = (f", rank {complete.index(baseline.value) + 1} of {len(complete)} complete trials"
            if trial_status(baseline) == "complete" else "")
    shown = f"validation {value:.2f}%" if value is not None else "no epoch finished"
    return ["## Baseline", "", f"Trial {baseline.number} is the default model (`{baseline.user_attrs.get('plan', '?')}`, "
            f"{baseline.user_attrs.get('params', 0):,} parameters) with the default recipe: {trial_status(baseline)}, "
            f"{shown}{rank}.", ""]


def _finalist_table(finalists: list[Finalist], cfg: SearchConfig) -> list[str]:
    mcu = cfg.build is not None
    lines = ["| rank | trial | plan | params | MACs | RAM KiB | " + ("instructions predicted | QEMU | " if mcu else "")
             + "search % | fresh seeds % | mean % | worst % |",
             "| ---: | ---: | --- | ---: | ---: | ---: | " + ("---: | ---: | " if mcu else "") + "---: | --- | ---: | ---: |"]
    for rank, f in enumerate(finalists, 1):
        seeds = ", ".join(f"{a:.2f}" for a in f.accuracies) or "-"
        ram = f"{f.ram_kb:.1f}" if f.ram_kb is not None else "-"
        counts = ""
        if mcu:
            measured = "-"
            if f.measured_instructions:
                measured = f"{f.measured_instructions:,}"
                if f.instructions:
                    measured += f" ({100 * (f.instructions / f.measured_instructions - 1):+.1f}%)"
            counts = f"{f.instructions:,} | {measured} | " if f.instructions else f"- | {measured} | "
        lines.append(f"| {rank} | {f.number} | `{f.plan}` | {f.params:,} | {f.macs:,} | {ram} | {counts}"
                     f"{f.search_accuracy:.2f} | {seeds} | {f.mean:.2f} | {f.worst:.2f} |")
    notes = sorted({f.measured_note for f in finalists if f.measured_note})
    if mcu:
        lines += ["", f"Instructions per inference on {' '.join(cfg.build or ())}: predicted by the cost model (what the "
                      "budget used); QEMU: the finalist's int8 C export built with arm-none-eabi-gcc and counted under "
                      "qemu-system-arm (-icount) on one training image, the prediction's error in brackets. "
                      "The count is of the network's shapes with placeholder weights: these kernels' instruction counts "
                      "do not depend on weight values." + (f" {'; '.join(notes)}." if notes else "")]
    return lines


def _finalists_intro(cfg: SearchConfig, finalists: list[Finalist]) -> str:
    if not finalists:
        return "No trial completed, so there are no finalists."
    if not finalists[0].seeds:
        return "The finalists were not re-run (`--final-seeds 0`): the winner rests on the search's one seed."
    return (f"Re-trained at the search's length and validation split with seeds {', '.join(map(str, finalists[0].seeds))} "
            f"(the search used seed {cfg.seed}); the winner has the best mean.")


def _winner_lines(winner: Finalist | None, best: TrainConfig | None, out: Path) -> list[str]:
    if winner is None or best is None:
        return ["No trial completed, so there is no winner and no best.json."]
    knobs = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in winner.knobs.items())
    instructions = (f", {winner.measured_instructions:,} instructions per inference under QEMU"
                    if winner.measured_instructions else
                    f", {winner.instructions:,} instructions per inference (predicted)" if winner.instructions else "")
    return [f"**Trial {winner.number}**: `{winner.plan}`, {winner.params:,} parameters, {winner.macs:,} MACs"
            + (f", {winner.ram_kb:.1f} KiB int8 RAM" if winner.ram_kb is not None else "") + instructions + f"; {knobs} "
            f"(augment is a multiple of the default rotation/shift/zoom).",
            "",
            f"`{out / 'best.json'}` holds it as a training configuration at the full recipe's length: {best.epochs} "
            "epochs on all 60,000 training images (no validation hold-out), seed 0 — the searched network and knobs, "
            "not the search's short runs. Train it with:",
            "", "```", f"tinymnist train --config {out / 'best.json'}", "```"]


def report_markdown(cfg: SearchConfig, trials: list[Any], finalists: list[Finalist], winner: Finalist | None,
                    best: TrainConfig | None, storage: str, out: Path) -> str:
    from tinymnist import __version__

    counts = status_counts(trials)
    trained = sum(counts.get(s, 0) for s in TRAINED)
    train_images = f"the first {cfg.train_subset:,}" if cfg.train_subset else "all"
    seeds = len(finalists[0].seeds) if finalists else 0
    lines = [
        "# Network search", "",
        f"Study `{cfg.study}` in `{storage}`; report written {datetime.date.today().isoformat()} by tinymnist "
        f"{__version__}. Trials: `trials.csv`; accuracy against cost: `pareto.png`.", "",
        "## What was searched", "", space.describe_markdown(cfg.space, cfg.mcu), "",
        f"Each trial trained {cfg.epochs} epochs (seed {cfg.seed}) on {train_images} training images left after holding "
        f"out the last {cfg.val_size:,} as validation; its score is the last epoch's validation accuracy. Sampler: TPE "
        "(multivariate, seeded), told the budgets as constraints; pruner: median of earlier trials at the same epoch. "
        "**The test set was never read.**", "",
        "## Budgets", "", *_budget_lines(cfg), "",
        *_baseline_lines(trials),
        "## Trials", "", "| status | trials |", "| --- | ---: |",
        *[f"| {s} | {n} |" for s, n in counts.items()], "",
        "complete: trained every epoch; pruned: stopped early by the pruner; rejected: over a budget, never trained; "
        "failed: its process was killed (such a trial is re-run once with the same parameters) or interrupted "
        "with Ctrl-C.", "",
        f"## Finalists: the top {len(finalists)} on {seeds} fresh seeds", "",
        _finalists_intro(cfg, finalists), "", *(_finalist_table(finalists, cfg) if finalists else []), "",
        "## Winner", "", *_winner_lines(winner, best, out), "",
        "## How much to trust it", "",
        f"The choice rests on {trained} trained trials and {seeds} fresh seeds. The best search score is the maximum "
        f"of {trained} noisy numbers and so is biased upwards (the winner's curse); the fresh-seed mean is the "
        "number to quote, and finalists whose means differ by less than the seed spread are not really ranked. "
        "Nothing was chosen on the test set: measure it once, after the choice, by training best.json.",
    ]
    return "\n".join(lines) + "\n"


def write_outputs(out: Path, cfg: SearchConfig, trials: list[Any], finalists: list[Finalist], winner: Finalist | None,
                  best: TrainConfig | None, storage: str) -> list[Path]:
    """Write trials.csv, best.json (when there is a winner), pareto.png and search.md; returns their paths."""
    from tinymnist.analysis import plots

    files = [out / "trials.csv"]
    write_bytes_atomic(files[0], trials_csv(trials).encode())
    if best is not None:
        files.append(out / "best.json")
        write_bytes_atomic(files[-1], (best.to_json() + "\n").encode())
    files.append(plots.save(pareto_figure(trials, cfg, winner), out / "pareto.png"))
    files.append(out / "search.md")
    write_bytes_atomic(files[-1], report_markdown(cfg, trials, finalists, winner, best, storage, out).encode())
    return files
