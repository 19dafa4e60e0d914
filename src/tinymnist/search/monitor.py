"""Progress while trials run: a tqdm bar on stderr (trained trials, best so far) and one line per
trained trial. It only reads the study, so it also shows the trials of other processes and machines."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from tinymnist.search.config import SearchConfig
from tinymnist.search.trials import TRAINED, last_val_accuracy, trial_status


def trial_line(trial: Any) -> str:
    """One line for the log: "trial 12 complete: val 98.51% | c8 s16 M s20 | 3,912 params | 41 s"."""
    a = trial.user_attrs
    value = last_val_accuracy(trial)
    acc = f"val {value:.2f}%" if value is not None else "no epoch"
    default = " (the default model)" if a.get("baseline") else ""
    instructions = f" | {a['instructions']:,} instructions (predicted)" if a.get("instructions") else ""
    return (f"trial {trial.number}{default} {trial_status(trial)}: {acc} | {a.get('plan', '?')} | "
            f"{a.get('params', 0):,} params{instructions} | {a.get('seconds', 0):.0f} s")


class Monitor:
    """Called after each trial (or polled): logs the trials that finished since, updates the bar."""

    def __init__(self, cfg: SearchConfig, study: Any, bar: bool, log: Callable[[str], None] | None):
        self.cfg, self.study, self.log = cfg, study, log
        trials = study.get_trials(deepcopy=False)
        self.seen = {t.number for t in trials if t.state.is_finished()}
        self.bar = None
        if bar:
            from tqdm import tqdm

            done = sum(trial_status(t) in TRAINED for t in trials)
            self.bar = tqdm(total=cfg.trials, initial=min(done, cfg.trials), desc="search", unit="trial",
                            file=sys.stderr, dynamic_ncols=True)
            self._postfix(trials)

    def _postfix(self, trials: list[Any]) -> None:
        if self.bar is None:
            return
        values = [t.value for t in trials if trial_status(t) == "complete"]
        rejected = sum(trial_status(t) == "rejected" for t in trials)
        self.bar.set_postfix_str(f"best {max(values):.2f}%, {rejected} rejected" if values else f"{rejected} rejected")

    def __call__(self, *_: Any) -> None:
        trials = self.study.get_trials(deepcopy=False)
        for t in trials:
            if t.number in self.seen or not t.state.is_finished():
                continue
            self.seen.add(t.number)
            if trial_status(t) in TRAINED and self.log:
                line = trial_line(t)
                if self.bar is not None:
                    self.bar.write(line, file=sys.stdout)
                else:
                    self.log(line)
        if self.bar is not None:
            done = sum(trial_status(t) in TRAINED for t in trials)
            self.bar.n = min(done, self.cfg.trials)
            self._postfix(trials)
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
