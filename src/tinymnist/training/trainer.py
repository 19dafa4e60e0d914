"""The trainer: the whole dataset in memory as uint8 tensors, batches sliced from a seeded
permutation, augmentation on the whole batch, one-cycle LR per step, atomic per-epoch checkpoints.

`train_run` reads top to bottom: `set_up` builds everything a run needs (device, data splits, model,
engine, step, optimizer, schedule), `resume_from` loads a saved run into it, then each epoch is
`train_epoch`, `evaluate_epoch` and `save_epoch`, and `finish` gives the final metrics.

The per-epoch evaluation runs a BatchNorm-folded copy in batches of `eval_batch_size`, on the native
engine's forward pass under the native engine (evaluation/logits.py says why).

Reproducibility: every epoch's randomness (permutation, augmentation, dropout) comes from
generators seeded by (seed, epoch), so a run resumed at an epoch boundary replays exactly what an
uninterrupted run would have done.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tinymnist.atomic import write_bytes_atomic
from tinymnist.backends.device import describe, resolve_device
from tinymnist.backends.native.select import engine_label, resolve_engine
from tinymnist.data.mnist import MNIST
from tinymnist.errors import SettingError, literal
from tinymnist.evaluation.logits import logits_for
from tinymnist.evaluation.metrics import loss_and_correct
from tinymnist.models.zoo import count_parameters, create_model, model_kwargs
from tinymnist.training.checkpoint import save_atomic
from tinymnist.training.config import TrainConfig, recipe_in_effect
from tinymnist.training.distill import load_teacher
from tinymnist.training.lookahead import is_sync_step, lookahead_sync, slow_weights
from tinymnist.training.precise_bn import recalibrate_batchnorm
from tinymnist.training.resume import check_resumable
from tinymnist.training.run_files import disk_errors, write_history, write_json
from tinymnist.training.schedule import lr_factor, make_optimizer
from tinymnist.training.step import (
    Step,
    Update,
    epoch_generator,
    make_step,
    memory_format,
    optimizer_step,
    update_ema,
)
from tinymnist.training.whiten import whiten_first_conv


class Diverged(SettingError):
    """The loss stopped being a finite number: training stops instead of carrying on with NaN weights."""


def divergence_error(value: float, epoch: int, step: int, steps_per_epoch: int, lr: float, cfg: TrainConfig,
                     ckpt_path: Path | None, finished_epochs: int) -> Diverged:
    if ckpt_path is None:
        kept = "nothing was saved (no output directory)"
    elif finished_epochs:
        kept = f"{ckpt_path} keeps the last good epoch ({finished_epochs})"
    else:
        kept = "no epoch had finished, so there is no checkpoint"
    where = literal(f"training diverged: the loss became {value} at epoch {epoch + 1}, step {step + 1} of {steps_per_epoch} "
                    f"(learning rate {lr:.3g}); {kept}")
    return Diverged(where + f"; lower {{lr}} (now {cfg.lr:g}) or raise {{batch_size}}, then start a new run", "lr",
                    "batch_size")


@dataclass(frozen=True)
class Trained:
    """What `train_run` returns: the final metrics, the per-epoch history, the trained model (eval mode;
    the EMA weights when the run kept an average) and the last completed epoch's checkpoint, the same
    dictionary `last.pt` holds (weights copied, so it stays valid after training goes on)."""

    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    model: nn.Module
    checkpoint: dict[str, Any]
    interrupted: bool = False  # stopped by Ctrl-C (only with keep_on_interrupt): the last full epoch is kept


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # uint8 N x 1 x 28 x 28
    labels: torch.Tensor  # int64 N


def make_splits(data: MNIST, cfg: TrainConfig) -> dict[str, Split]:
    """train / (val) / test tensors; val is the *end* of the training set, never the test set."""
    images = torch.from_numpy(data.train_images.copy()).unsqueeze(1)
    labels = torch.from_numpy(data.train_labels.copy())
    splits = {}
    if cfg.val_size:
        if cfg.val_size >= len(images):
            raise SettingError(f"{{val_size:{cfg.val_size}}} leaves no training images", "val_size")
        splits["val"] = Split(images[-cfg.val_size :], labels[-cfg.val_size :])
        images, labels = images[: -cfg.val_size], labels[: -cfg.val_size]
    if cfg.train_subset:
        images, labels = images[: cfg.train_subset], labels[: cfg.train_subset]
    splits["train"] = Split(images, labels)
    test_images = torch.from_numpy(data.test_images.copy()).unsqueeze(1)
    test_labels = torch.from_numpy(data.test_labels.copy())
    if cfg.test_subset:
        test_images, test_labels = test_images[: cfg.test_subset], test_labels[: cfg.test_subset]
    splits["test"] = Split(test_images, test_labels)
    return splits


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def set_threads(threads: int) -> int:
    """Use `threads` intra-op threads (0: torch's default), never more than the cores this process
    may run on: more only makes the OpenMP threads wait on each other. Returns the number in use."""
    if threads > 0:
        torch.set_num_threads(min(threads, available_cores()))
    return torch.get_num_threads()


def train(cfg: TrainConfig, data: MNIST, out_dir: Path | None = None, resume: bool = False,
          on_epoch: Callable[[dict[str, Any]], None] | None = None,
          progress: Callable[[int, str], Any] | None = None,
          notice: Callable[[str], None] | None = None, device: str | torch.device | None = "auto",
          data_dir: str | Path | None = None) -> dict[str, Any]:
    """`train_run`'s final metrics."""
    return train_run(cfg, data, out_dir, resume, on_epoch, progress, notice, device, data_dir).metrics


@dataclass
class Run:
    """Everything a run needs, built once by `set_up`; the fields after `ema` change as training goes on."""

    cfg: TrainConfig
    where: torch.device
    splits: dict[str, Split]
    steps_per_epoch: int
    model_args: dict[str, Any]
    model: nn.Module
    engine: str  # "native" | "eager"
    step: Step
    update: Update
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ema: nn.Module | None
    slow: list[torch.Tensor] | None  # Lookahead's slow weights, None without Lookahead
    out_dir: Path | None
    teacher: dict[str, Any] | None  # the distillation teacher's description (distill.Teacher), None without one
    history: list[dict[str, Any]] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)  # the learning rate of every step so far
    start_epoch: int = 0
    train_seconds: float = 0.0
    state: dict[str, Any] = field(default_factory=dict)  # the last completed epoch's checkpoint

    @property
    def ckpt_path(self) -> Path | None:
        return self.out_dir / "last.pt" if self.out_dir else None

    @property
    def evaluated(self) -> nn.Module:
        """The model that is evaluated and returned: the weight average when the run keeps one."""
        return self.ema if self.ema is not None else self.model


def choose_engine(cfg: TrainConfig, model: nn.Module, where: torch.device) -> tuple[str, str | None]:
    """(engine, why `auto` fell back to eager or None): the native engine runs on the CPU only."""
    if where.type == "cpu":
        return resolve_engine(cfg.engine, model)
    if cfg.engine == "native":
        raise SettingError(f"the native engine trains on the CPU only; with {{device:{where.type}}} use {{engine:eager}} or "
                           "{engine:auto}", "device", "engine")
    return "eager", None if cfg.engine == "eager" else f"it runs on the CPU, this run on {where.type}"


def set_up(cfg: TrainConfig, data: MNIST, device: str | torch.device | None, out_dir: Path | None,
           notice: Callable[[str], None] | None) -> Run:
    where = resolve_device(device)
    set_threads(cfg.threads)
    # The whole dataset lives on the training device (47 MB as uint8); batches are sliced there.
    splits = {name: Split(s.images.to(where), s.labels.to(where)) for name, s in make_splits(data, cfg).items()}
    train_x, train_y = splits["train"].images, splits["train"].labels
    steps_per_epoch = math.ceil(len(train_x) / cfg.batch_size)

    torch.manual_seed(cfg.seed)
    args = model_kwargs(cfg.model, cfg.model_args)
    model = create_model(cfg.model, **args)
    if cfg.init == "whiten":
        try:
            whiten_first_conv(model, train_x)
        except ValueError as exc:
            raise SettingError(f"{{init:whiten}} cannot be used with model {literal(cfg.model)}: {literal(str(exc))}; "
                               "train it with {init:default}", "init") from None
    engine, fallback = choose_engine(cfg, model, where)
    if fallback and notice:
        notice(f"native engine not used ({fallback}); training with eager PyTorch")
    # The native kernels keep their own NHWC layout; the module stays in PyTorch's default one.
    layout = torch.contiguous_format if engine == "native" else memory_format(cfg.memory_format, model)
    model = model.to(where, memory_format=layout)
    teacher = load_teacher(cfg.teacher, where, native=engine == "native") if cfg.teacher else None
    step = make_step(model, cfg, engine, train_x, train_y, layout, teacher)
    optimizer = make_optimizer(model, cfg, fused=engine == "native")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, steps_per_epoch, cfg))
    ema = create_model(cfg.model, **args).to(where, memory_format=layout) if cfg.ema else None
    if ema is not None:
        ema.load_state_dict(model.state_dict())
    slow = slow_weights(model) if cfg.lookahead_steps else None
    return Run(cfg, where, splits, steps_per_epoch, args, model, engine, step, optimizer_step(optimizer, engine),
               optimizer, scheduler, ema, slow, out_dir, teacher.description if teacher is not None else None)


def resume_from(run: Run, ckpt: dict[str, Any]) -> None:
    """Load a saved run's checkpoint (checked by `check_resumable`) into `run`."""
    run.model.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.scheduler.load_state_dict(ckpt["scheduler"])
    if run.ema is not None:
        run.ema.load_state_dict(ckpt["ema"])
    if run.slow is not None:
        for s, saved in zip(run.slow, ckpt["lookahead"], strict=True):
            s.copy_(saved)
    run.history, run.lrs = ckpt["history"], ckpt["lrs"]
    run.start_epoch, run.train_seconds = ckpt["epoch"], ckpt["train_seconds"]
    run.state = ckpt
    torch.set_rng_state(ckpt["rng"])


def train_epoch(run: Run, epoch: int, progress: Callable[[int, str], Any] | None) -> dict[str, Any]:
    """One pass over the shuffled training set; returns the epoch's training figures."""
    cfg, n = run.cfg, len(run.splits["train"].images)
    gen = epoch_generator(cfg.seed, epoch)
    torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout draws from the global generator
    perm = torch.randperm(n, generator=gen).to(run.where)
    run.model.train()
    bar = progress(run.steps_per_epoch, f"epoch {epoch + 1}/{cfg.epochs}") if progress else None
    # Eager: accumulated as tensors, the finiteness check below is the step's only host sync. Native:
    # the step returns numbers, which are cheaper to add than tensors.
    eager = run.engine == "eager"
    loss_sum: Any = torch.zeros((), device=run.where) if eager else 0.0
    correct: Any = torch.zeros((), dtype=torch.long, device=run.where) if eager else 0
    seen = 0
    started = time.perf_counter()
    augment = cfg.augment and epoch < cfg.epochs - cfg.clean_epochs
    for step in range(run.steps_per_epoch):
        idx = perm[step * cfg.batch_size : (step + 1) * cfg.batch_size]
        # Within an epoch only this loop touches the model: the native step and update check their
        # tensors at the epoch's first step (after evaluation, checkpointing, a resume).
        loss, step_correct = run.step(idx, gen if augment else None, check=step == 0)
        if not math.isfinite(float(loss)):  # before the update: no step is made from it
            raise divergence_error(float(loss), epoch, step, run.steps_per_epoch, run.optimizer.param_groups[0]["lr"],
                                   cfg, run.ckpt_path, len(run.history))
        run.lrs.append(run.optimizer.param_groups[0]["lr"])
        run.update(step == 0)
        run.scheduler.step()
        if run.slow is not None and is_sync_step(len(run.lrs), cfg.lookahead_steps):
            lookahead_sync(run.model, run.slow, cfg.lookahead_alpha)
        if run.ema is not None:
            update_ema(run.ema, run.model, cfg.ema)
        loss_sum += loss * len(idx)
        correct += step_correct
        seen += len(idx)
        if bar is not None:
            bar.update(1)
    seconds = time.perf_counter() - started
    run.train_seconds += seconds
    if bar is not None:
        bar.close()
    return {"epoch": epoch + 1, "lr": run.lrs[-1], "seconds": seconds, "train_loss": float(loss_sum) / seen,
            "train_correct": int(correct), "train_total": seen, "train_accuracy": 100.0 * int(correct) / seen}


def evaluate_epoch(run: Run) -> dict[str, Any]:
    """Loss and accuracy on the validation split (when there is one) and the test split."""
    cfg, evaluated = run.cfg, run.evaluated
    if cfg.precise_bn:  # statistics under the final weights; the training trajectory is unchanged
        recalibrate_batchnorm(evaluated, run.splits["train"].images[: cfg.precise_bn], cfg.eval_batch_size)
    record: dict[str, Any] = {}
    for name in ("val", "test"):
        if name in run.splits:
            split = run.splits[name]
            logits = logits_for(evaluated, split.images, cfg.eval_batch_size, native=run.engine == "native")
            loss, right = loss_and_correct(logits, split.labels)
            record.update({f"{name}_loss": loss, f"{name}_correct": right, f"{name}_total": len(split.labels),
                           f"{name}_accuracy": 100.0 * right / len(split.labels)})
    return record


def save_epoch(run: Run, record: dict[str, Any]) -> None:
    """Append the epoch's record and keep its checkpoint (in memory, and in last.pt/history.json)."""
    run.history.append(record)
    epoch = record["epoch"]
    run.state = _copied({
        "model_name": run.cfg.model, "model_args": run.model_args, "model": run.model.state_dict(),
        "ema": run.ema.state_dict() if run.ema is not None else None,
        **({"lookahead": run.slow} if run.slow is not None else {}),
        "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
        "rng": torch.get_rng_state(), "epoch": epoch, "config": dataclasses.asdict(run.cfg),
        "history": run.history, "lrs": run.lrs, "train_seconds": run.train_seconds, "engine": run.engine,
    })
    if run.out_dir is not None and run.ckpt_path is not None:
        with disk_errors(run.ckpt_path, epoch - 1):
            save_atomic(run.state, run.ckpt_path)
        with disk_errors(run.out_dir / "history.json", epoch):
            write_history(run.out_dir, run.history, run.lrs, run.steps_per_epoch, engine_label(run.engine))


def finish(run: Run, data_dir: str | Path | None, interrupted: bool) -> Trained:
    final, cfg = run.history[-1], run.cfg
    metrics = {
        "model": cfg.model,
        "model_args": run.model_args,
        "params": count_parameters(run.model),
        "epochs": final["epoch"] if interrupted else cfg.epochs,
        "seed": cfg.seed,
        "final_test_accuracy": final["test_accuracy"],
        "final_test_loss": final["test_loss"],
        "final_train_accuracy": final["train_accuracy"],
        "train_seconds": run.train_seconds,
        "images_per_second": (len(run.splits["train"].images) * len(run.history) / run.train_seconds
                              if run.train_seconds else 0.0),
        "threads": torch.get_num_threads(),
        "engine": engine_label(run.engine),
        "device": describe(run.where),
        "data_dir": str(Path(data_dir).expanduser().resolve()) if data_dir else None,
    }
    # The model's recipe values that config.json holds; left out when there are none, so that a run of
    # a model without a recipe writes the same metrics.json as before recipes existed.
    recipe = recipe_in_effect(cfg)
    if recipe:
        metrics["recipe"] = recipe
    if run.teacher is not None:  # its cost beside the student's: the figures of a distilled run are not from scratch
        metrics["teacher"] = run.teacher
    if interrupted:
        metrics["interrupted_after_epoch"] = final["epoch"]
    if "val_accuracy" in final:
        metrics.update(final_val_accuracy=final["val_accuracy"], final_val_loss=final["val_loss"])
    if run.out_dir:
        with disk_errors(run.out_dir / "metrics.json", len(run.history)):
            write_json(run.out_dir / "metrics.json", metrics)
    return Trained(metrics=metrics, history=run.history, model=run.evaluated.eval(), checkpoint=run.state,
                   interrupted=interrupted)


def train_run(cfg: TrainConfig, data: MNIST, out_dir: Path | None = None, resume: bool = False,
              on_epoch: Callable[[dict[str, Any]], None] | None = None,
              progress: Callable[[int, str], Any] | None = None,
              notice: Callable[[str], None] | None = None, device: str | torch.device | None = "auto",
              data_dir: str | Path | None = None, keep_on_interrupt: bool = False) -> Trained:
    """Train per `cfg` on `device` (auto: CUDA, else MPS, else CPU); write config/history/checkpoint/
    metrics into `out_dir` when given.

    `on_epoch` receives each epoch's record; `progress(steps, desc)` may return a tqdm-like bar;
    `notice` receives one-line notes (e.g. why `engine="auto"` fell back to eager PyTorch);
    `data_dir` is only recorded (metrics.json), so that hints and reports can repeat it. With
    `keep_on_interrupt`, Ctrl-C ends training at once and returns the last completed epoch.
    """
    run = set_up(cfg, data, device, out_dir, notice)
    if resume and out_dir is not None and (out_dir / "last.pt").exists():
        resume_from(run, check_resumable(out_dir, cfg, run.engine))
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        with disk_errors(out_dir / "config.json", run.start_epoch):
            write_bytes_atomic(out_dir / "config.json", cfg.to_json().encode())
    interrupted = False
    try:
        for epoch in range(run.start_epoch, cfg.epochs):
            record = train_epoch(run, epoch, progress)
            record.update(evaluate_epoch(run))
            save_epoch(run, record)
            if on_epoch:
                on_epoch(record)
    except KeyboardInterrupt:
        if not keep_on_interrupt or not run.history:
            raise
        interrupted = True
        run.model.load_state_dict(run.state["model"])  # back to the last completed epoch
        if run.ema is not None:
            run.ema.load_state_dict(run.state["ema"])
    return finish(run, data_dir, interrupted)


def _copied(state: Any) -> Any:
    """A state dict (nested) with every tensor copied: the model's own tensors change as training goes on."""
    if isinstance(state, torch.Tensor):
        return state.detach().clone()
    if isinstance(state, dict):
        return {k: _copied(v) for k, v in state.items()}
    if isinstance(state, list | tuple):
        return type(state)(_copied(v) for v in state)
    return state


def format_epoch(r: dict[str, Any], epochs: int) -> str:
    """One line of the per-epoch log."""
    line = (f"epoch {r['epoch']:>2}/{epochs} | lr {r['lr']:.5f} | {r['seconds']:5.1f}s | "
            f"train loss {r['train_loss']:.4f} acc {r['train_correct']}/{r['train_total']} ({r['train_accuracy']:.2f}%)")
    for split in ("val", "test"):
        if f"{split}_loss" in r:
            line += (f" | {split} loss {r[f'{split}_loss']:.4f} acc {r[f'{split}_correct']}/{r[f'{split}_total']}"
                     f" ({r[f'{split}_accuracy']:.2f}%)")
    return line
