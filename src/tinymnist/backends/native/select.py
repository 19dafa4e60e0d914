"""Choosing the training engine: `auto` runs the native kernels when they are built, usable on this
CPU and support the model, else eager PyTorch; `native` insists (a clear error if it cannot);
`eager` is plain PyTorch, the reference."""

from __future__ import annotations

from torch import nn

from tinymnist.backends.native.binding import NativeUnavailable, load, variant
from tinymnist.backends.native.program import check_supported
from tinymnist.errors import SettingError, literal

ENGINES = ("auto", "native", "eager")


def native_problem(model: nn.Module) -> str | None:
    """Why the native engine cannot train `model` here, or None when it can."""
    try:
        load()
    except (NativeUnavailable, OSError) as exc:
        return str(exc)
    return check_supported(model)


def resolve_engine(choice: str, model: nn.Module) -> tuple[str, str | None]:
    """(engine to use, why auto fell back to eager or None). Raises SettingError for `native` when it
    cannot run, naming the reason."""
    if choice not in ENGINES:
        raise SettingError(f"unknown engine {choice!r}; choose one of: {', '.join(ENGINES)} for {{engine}}", "engine")
    if choice == "eager":
        return "eager", None
    problem = native_problem(model)
    if problem is None:
        return "native", None
    if choice == "native":
        raise SettingError(f"the native engine cannot train this model: {literal(problem)} "
                           "(use {engine:eager} or {engine:auto})", "engine")
    return "eager", problem


def engine_label(engine: str) -> str:
    """What metrics.json and history.json record: "eager", or "native" with the kernel build used."""
    return f"native ({variant()}, {load().tm_lanes()}-lane vectors)" if engine == "native" else engine
