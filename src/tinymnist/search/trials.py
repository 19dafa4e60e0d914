"""A stored trial read back: its status (from Optuna's state and the user_attrs the objective sets:
status, reason, plan, params, macs, ram_kb, val_history, seconds, baseline) and the counts by status.
The workers, the monitor, the finalists and the report all read trials through these."""

from __future__ import annotations

from collections import Counter
from typing import Any

TRAINED = ("complete", "pruned", "diverged")  # the statuses that count as trials of --trials
STATUS_ORDER = ("complete", "pruned", "diverged", "rejected", "failed", "training", "running", "waiting")


def trial_status(trial: Any) -> str:
    """complete | pruned (stopped early) | diverged | rejected (over budget, never trained) | failed |
    training | running (sampling or measuring) | waiting (a retry not yet started)."""
    from optuna.trial import TrialState

    status = trial.user_attrs.get("status")
    if trial.state == TrialState.COMPLETE:
        return "complete"
    if trial.state == TrialState.PRUNED:
        return status if status in ("rejected", "diverged") else "pruned"
    if trial.state == TrialState.FAIL:
        return "failed"
    if trial.state == TrialState.RUNNING:
        return "training" if status == "training" else "running"
    return "waiting"


def status_counts(trials: list[Any]) -> dict[str, int]:
    """Trials by status, in STATUS_ORDER, the statuses with none left out."""
    counts = Counter(trial_status(t) for t in trials)
    return {s: counts[s] for s in STATUS_ORDER if counts[s]}


def last_val_accuracy(trial: Any) -> float | None:
    """The validation accuracy of the trial's last finished epoch (None before the first)."""
    history = trial.user_attrs.get("val_history") or []
    return history[-1] if history else None
