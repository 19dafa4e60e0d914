"""The budgets (parameters, MACs, int8 RAM, predicted instructions on a microcontroller): why a network is
over one, whether any network of the space can meet them, and TPE's constraints, so that the sampler
learns to stop proposing networks that do not fit."""

from __future__ import annotations

import math
from typing import Any

from tinymnist.errors import UserError
from tinymnist.search import space
from tinymnist.search.config import SearchConfig


def budget_reason(cost: space.Cost, cfg: SearchConfig) -> str | None:
    """Why a network is over a budget (None when it fits)."""
    if cost.params > cfg.max_params:
        return f"{cost.params:,} parameters > {cfg.max_params:,}"
    if cfg.max_macs is not None and cost.macs > cfg.max_macs:
        return f"{cost.macs:,} MACs > {cfg.max_macs:,}"
    if cfg.max_ram_kb is not None:
        if cost.ram_kb is None:
            return cost.ram_note
        if cost.ram_kb > cfg.max_ram_kb:
            return f"{cost.ram_kb:.1f} KiB int8 RAM > {cfg.max_ram_kb:g}"
    if cfg.max_instructions is not None and cfg.build is not None:
        if cost.instructions is None:
            return cost.instructions_note
        if cost.instructions > cfg.max_instructions:
            return f"{cost.instructions:,} predicted {' '.join(cfg.build)} instructions > {cfg.max_instructions:,}"
    return None


def check_reachable(cfg: SearchConfig) -> None:
    """UserError when no network of the space meets the budgets (checked on its smallest plans), or when
    a target's instruction cost model cannot be read."""
    if cfg.build is not None:
        from tinymnist.export.c.cost import load_coefficients

        try:
            load_coefficients()
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read the instruction cost model's coefficients ({exc}); reinstall tinymnist or "
                            "run tools/calibrate_mcu_cost.py") from None
    costs = {plan: space.measure(plan, cfg.build) for plan in space.smallest_plans(cfg.mcu)}
    if any(budget_reason(cost, cfg) is None for cost in costs.values()):
        return
    fewest = {
        "--max-params": (cfg.max_params, min(costs.items(), key=lambda kv: kv[1].params), "parameters", "params"),
        "--max-macs": (cfg.max_macs, min(costs.items(), key=lambda kv: kv[1].macs), "MACs", "macs"),
        "--max-ram-kb": (cfg.max_ram_kb, min(costs.items(), key=lambda kv: kv[1].ram_bytes or math.inf),
                         "KiB of int8 RAM", "ram_kb"),
        "--max-instructions": (cfg.max_instructions, min(costs.items(), key=lambda kv: kv[1].instructions or math.inf),
                               f"predicted {' '.join(cfg.build or ())} instructions", "instructions"),
    }
    for flag, (limit, (plan, cost), unit, attr) in fewest.items():
        value = getattr(cost, attr)
        if limit is not None and (value is None or value > limit):
            shown = f"{value:,.1f}" if isinstance(value, float) else f"{value:,}"
            raise UserError(f"no network of the search space meets {flag} {limit:g}: the smallest, {plan!r}, has "
                            f"{shown} {unit}; raise {flag}")
    raise UserError("no network of the search space meets all the budgets at once; raise one of them")


def constraints(cfg: SearchConfig, trial: Any) -> list[float]:
    """TPE's constraints (feasible when all <= 0): each cost relative to its budget, minus 1. The
    instruction budget's entry is there only when a search has one (a study keeps one length)."""
    attrs = trial.user_attrs
    params, macs, ram = attrs.get("params"), attrs.get("macs"), attrs.get("ram_kb")
    budgeted = cfg.max_instructions is not None
    if params is None:
        return [0.0] * (4 if budgeted else 3)
    values = [params / cfg.max_params - 1,
              macs / cfg.max_macs - 1 if cfg.max_macs else -1.0,
              (1.0 if ram is None else ram / cfg.max_ram_kb - 1) if cfg.max_ram_kb else -1.0]
    if cfg.max_instructions is not None:
        instructions = attrs.get("instructions")
        values.append(1.0 if instructions is None else instructions / cfg.max_instructions - 1)
    return values
