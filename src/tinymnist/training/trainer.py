"""The trainer: the whole dataset in memory as uint8 tensors, batches sliced from a seeded
permutation, augmentation on the whole batch, one-cycle LR per step, atomic per-epoch checkpoints.

Speed choices, measured on the 2-core CPU (docs/research.md has the numbers): uint8 data converted
per batch; channels_last only for depthwise models (models.preferred_memory_format); no DataLoader
workers; the per-epoch evaluation runs a BatchNorm-folded copy in batches of 256 (evaluate.logits_for:
5-8x faster than the unfolded model in batches of 2,000; on the native engine's forward pass under
--engine native, where the folded copy allows it, 2x faster again). Tried and not kept: torch.compile (1.2-1.6x
per step at 2 threads, none at 1, and 20-70 s of compilation per process), bf16 autocast (4x slower),
other max-pool formulations (slower), BatchNorm statistics from Gram matrices (no faster), batch
sizes above 64 (faster, but lower accuracy at 10 epochs).

Reproducibility: every epoch's randomness (permutation, augmentation, dropout) comes from
generators seeded by (seed, epoch), so a run resumed at an epoch boundary replays exactly what an
uninterrupted run would have done.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tinymnist.atomic import write_bytes_atomic
from tinymnist.backends.device import describe, resolve_device
from tinymnist.backends.native.select import engine_label, resolve_engine
from tinymnist.data.augment import random_affine
from tinymnist.data.mnist import MNIST
from tinymnist.data.normalize import MNIST_MEAN, MNIST_STD
from tinymnist.errors import UserError
from tinymnist.evaluation.logits import logits_for
from tinymnist.evaluation.metrics import loss_and_correct
from tinymnist.models.zoo import count_parameters, create_model, model_kwargs, preferred_memory_format
from tinymnist.training.checkpoint import load_checkpoint, save_atomic
from tinymnist.training.config import TrainConfig
from tinymnist.training.precise_bn import recalibrate_batchnorm


class Diverged(UserError):
    """The loss stopped being a finite number: training stops instead of carrying on with NaN weights."""


def divergence_message(value: float, epoch: int, step: int, steps_per_epoch: int, lr: float, cfg: TrainConfig,
                       ckpt_path: Path | None, finished_epochs: int) -> str:
    if ckpt_path is None:
        kept = "nothing was saved (no output directory)"
    elif finished_epochs:
        kept = f"{ckpt_path} keeps the last good epoch ({finished_epochs})"
    else:
        kept = "no epoch had finished, so there is no checkpoint"
    return (f"training diverged: the loss became {value} at epoch {epoch + 1}, step {step + 1} of {steps_per_epoch} "
            f"(learning rate {lr:.3g}); {kept}; lower --lr (now {cfg.lr:g}) or raise --batch-size, then start a new run")


@contextlib.contextmanager
def _disk_errors(path: Path, epoch: int) -> Iterator[None]:
    """An OSError while writing a run file (a full disk, a removed folder) becomes one clear line. The
    writes are atomic, so the file keeps its previous content."""
    try:
        yield
    except OSError as exc:
        before = f"; {path.parent / 'last.pt'} still holds epoch {epoch}" if epoch else ""
        raise UserError(f"cannot write {path}: {exc.strerror or exc}{before}; free some space (or fix the folder), "
                        "then continue with --resume") from None


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
            raise UserError(f"val_size {cfg.val_size} leaves no training images")
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


def lr_factor(step: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """Multiplier of the peak LR at optimizer step `step` (0-based)."""
    total = steps_per_epoch * cfg.epochs
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "article":
        # The article's per-epoch curve scaled to the peak: 0.1 at epoch 0, 1 at epoch 2, 0.02 at
        # epoch 5, 0 after the last epoch; constant within an epoch, stretched to cfg.epochs.
        epoch = step // steps_per_epoch
        points = [(0, 0.1), (2 * cfg.epochs / 12, 1.0), (5 * cfg.epochs / 12, 0.02), (cfg.epochs, 0.0)]
        for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
            if epoch <= x1:
                return y0 + (y1 - y0) * (epoch - x0) / (x1 - x0)
        return 0.0
    if cfg.schedule != "onecycle":
        raise ValueError(f"unknown schedule {cfg.schedule!r}")
    warm = max(1, int(cfg.warmup * total))
    if step < warm:
        start = 1.0 / cfg.start_div
        return start + (1.0 - start) * step / warm
    progress = (step - warm) / max(1, total - warm)
    if cfg.anneal == "cos":
        return 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0 - progress


def make_optimizer(model: nn.Module, cfg: TrainConfig, fused: bool = False) -> torch.optim.Optimizer:
    """`fused=True` updates every tensor in one fused kernel: with the native engine the per-tensor
    loop (PyTorch's CPU default, kept for eager runs so that their results do not change) was a
    visible part of the step (SGD on the default model: 0.47 ms per step looped, 0.33 foreach, 0.06
    fused)."""
    # No weight decay on BatchNorm parameters and biases: decaying them only fights the scale.
    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True, fused=fused or None)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999), fused=fused or None)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999), fused=fused or None)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the block on one intra-op thread (then restore the count). The native engine's fused
    optimizer step on ~5,000 parameters in ~30 tensors took 0.6-0.8 ms on 2 threads and 0.13-0.15 ms on
    one (a parallel region per small tensor); the update is elementwise, so the result is the same."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


Update = Callable[[bool], Any]


def optimizer_step(optimizer: torch.optim.Optimizer, engine: str) -> Update:
    """The update the training loop makes after each step: update(check), where check=False lets the
    native step skip re-checking its tensors (the loop passes True at each epoch's first step). Eager
    runs keep PyTorch's step and its defaults, so that their results and timings stay the reference.
    The native engine calls fused SGD's kernel directly (engine/update.py: the same arithmetic without
    optimizer.step()'s Python, which cost 0.25-0.3 ms a step on caches the kernels had flushed), other
    optimizers PyTorch's fused step; both on one thread."""
    if engine != "native":
        return lambda check: optimizer.step()
    from tinymnist.backends.native.update import updater

    native = updater(optimizer)

    def update(check: bool) -> None:
        with one_thread():
            if native is not None:
                native.step(check)
            else:
                optimizer.step()

    return update


Step = Callable[..., tuple[Any, Any]]


def make_step(model: nn.Module, cfg: TrainConfig, engine: str, train_x: torch.Tensor, train_y: torch.Tensor,
              layout: torch.memory_format) -> Step:
    """The training step without the update: step(idx, gen, check=True) computes the loss of batch
    train_x[idx] (augmented with draws from `gen`, or not when it is None) and leaves the gradients in
    each parameter's .grad; returns (loss, correct predictions), tensors (eager) or numbers (native).
    check=False lets the native step reuse its layer table unchecked (NativeRunner.train_step)."""
    if engine == "native":
        from tinymnist.backends.native.runner import NativeRunner

        runner = NativeRunner(model)
        classes = runner.program[-1].classes
        if len(train_y) and (int(train_y.min()) < 0 or int(train_y.max()) >= classes):
            raise UserError(f"the training labels must lie in 0..{classes - 1}; check the label file")
        images, labels = train_x.contiguous(), train_y.to(torch.int64).contiguous()
        augment = (math.radians(cfg.rotate), cfg.scale[0], cfg.scale[1], cfg.translate)

        def native(idx: torch.Tensor, gen: torch.Generator | None, check: bool = True) -> tuple[Any, Any]:
            # The same draws as random_affine makes, so that both engines see the same augmentation.
            rand = torch.rand(len(idx), 4, generator=gen) if gen is not None else None
            return runner.train_step(images, labels, idx, rand, augment, cfg.label_smoothing, MNIST_MEAN, MNIST_STD,
                                     check=check)

        return native

    def eager(idx: torch.Tensor, gen: torch.Generator | None, check: bool = True) -> tuple[Any, Any]:
        x = train_x[idx].float().div_(255.0)
        if gen is not None:
            x = random_affine(x, gen, cfg.rotate, cfg.scale, cfg.translate)
        x = x.sub_(MNIST_MEAN).div_(MNIST_STD).contiguous(memory_format=layout)
        y = train_y[idx]
        logits = model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
        model.zero_grad(set_to_none=True)
        loss.backward()
        return loss.detach(), (logits.detach().argmax(1) == y).sum()

    return eager


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p, 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers(), strict=True):
        e.copy_(b)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def memory_format(choice: str, model: nn.Module) -> torch.memory_format:
    if choice == "auto":
        return preferred_memory_format(model)
    if choice not in ("channels_last", "contiguous"):
        raise ValueError(f"unknown memory_format {choice!r}")
    return torch.channels_last if choice == "channels_last" else torch.contiguous_format


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def set_threads(threads: int) -> int:
    """Use `threads` intra-op threads (0: torch's default), never more than the cores this process
    may run on: more only makes the OpenMP threads wait on each other (1,000 threads on 2 cores
    trained at 2 images/s). Returns the number in use."""
    if threads > 0:
        torch.set_num_threads(min(threads, available_cores()))
    return torch.get_num_threads()


def train(cfg: TrainConfig, data: MNIST, out_dir: Path | None = None, resume: bool = False,
          on_epoch: Callable[[dict[str, Any]], None] | None = None,
          progress: Callable[[int, int], Any] | None = None,
          notice: Callable[[str], None] | None = None, device: str | torch.device | None = "auto",
          data_dir: str | Path | None = None) -> dict[str, Any]:
    """`train_run`'s final metrics."""
    return train_run(cfg, data, out_dir, resume, on_epoch, progress, notice, device, data_dir).metrics


def _copied(state: Any) -> Any:
    """A state dict (nested) with every tensor copied: the model's own tensors change as training goes on."""
    if isinstance(state, torch.Tensor):
        return state.detach().clone()
    if isinstance(state, dict):
        return {k: _copied(v) for k, v in state.items()}
    if isinstance(state, list | tuple):
        return type(state)(_copied(v) for v in state)
    return state


def config_differences(saved: TrainConfig, wanted: TrainConfig) -> str:
    """"epochs 10 -> 12, lr 0.15 -> 0.1": the fields that differ, saved value first."""
    fields = [f.name for f in dataclasses.fields(TrainConfig) if getattr(saved, f.name) != getattr(wanted, f.name)]
    return ", ".join(f"{name} {getattr(saved, name)!r} -> {getattr(wanted, name)!r}" for name in fields)


def train_run(cfg: TrainConfig, data: MNIST, out_dir: Path | None = None, resume: bool = False,
              on_epoch: Callable[[dict[str, Any]], None] | None = None,
              progress: Callable[[int, int], Any] | None = None,
              notice: Callable[[str], None] | None = None, device: str | torch.device | None = "auto",
              data_dir: str | Path | None = None, keep_on_interrupt: bool = False) -> Trained:
    """Train per `cfg` on `device` (auto: CUDA, else MPS, else CPU); write config/history/checkpoint/
    metrics into `out_dir` when given.

    `on_epoch` receives each epoch's record; `progress(steps, desc)` may return a tqdm-like bar;
    `notice` receives one-line notes (e.g. why `--engine auto` fell back to eager PyTorch);
    `data_dir` is only recorded (metrics.json), so that hints and reports can repeat it. With
    `keep_on_interrupt`, Ctrl-C ends training at once and returns the last completed epoch.
    """
    where = resolve_device(device)
    set_threads(cfg.threads)
    splits = make_splits(data, cfg)
    # The whole dataset lives on the training device (47 MB as uint8); batches are sliced there.
    splits = {name: Split(s.images.to(where), s.labels.to(where)) for name, s in splits.items()}
    train_x, train_y = splits["train"].images, splits["train"].labels
    n = len(train_x)
    steps_per_epoch = math.ceil(n / cfg.batch_size)

    torch.manual_seed(cfg.seed)
    args = model_kwargs(cfg.model, cfg.model_args)
    model = create_model(cfg.model, **args)
    if where.type == "cpu":
        try:
            engine, fallback = resolve_engine(cfg.engine, model)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    elif cfg.engine == "native":
        raise UserError(f"the native engine trains on the CPU only; with --device {where.type} use --engine eager or auto")
    else:
        engine, fallback = "eager", None if cfg.engine == "eager" else f"it runs on the CPU, this run on {where.type}"
    if fallback and notice:
        notice(f"native engine not used ({fallback}); training with eager PyTorch")
    # The native kernels keep their own NHWC layout; the module stays in PyTorch's default one.
    layout = torch.contiguous_format if engine == "native" else memory_format(cfg.memory_format, model)
    model = model.to(where, memory_format=layout)
    step_fn = make_step(model, cfg, engine, train_x, train_y, layout)
    optimizer = make_optimizer(model, cfg, fused=engine == "native")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, steps_per_epoch, cfg))
    ema = create_model(cfg.model, **args).to(where, memory_format=layout) if cfg.ema else None
    if ema is not None:
        ema.load_state_dict(model.state_dict())
    history: list[dict[str, Any]] = []
    lrs: list[float] = []
    start_epoch, train_seconds = 0, 0.0

    ckpt_path = out_dir / "last.pt" if out_dir else None
    ckpt: dict[str, Any] = {}
    if resume and ckpt_path and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path)
        saved = TrainConfig.from_saved(ckpt["config"])
        if saved != cfg:
            raise UserError(f"cannot resume {out_dir}: this run's configuration differs from the saved one "
                            f"({config_differences(saved, cfg)}); leave those flags out to continue it, or pass "
                            "another --out to start a new run")
        if ckpt.get("engine", "eager") != engine:
            raise UserError(f"cannot resume {out_dir}: it was trained with the {ckpt.get('engine', 'eager')} engine and "
                            f"this run would use {engine} (pass --engine {ckpt.get('engine', 'eager')})")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if ema is not None:
            ema.load_state_dict(ckpt["ema"])
        history, lrs = ckpt["history"], ckpt["lrs"]
        start_epoch, train_seconds = ckpt["epoch"], ckpt["train_seconds"]
        torch.set_rng_state(ckpt["rng"])
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
        with _disk_errors(out_dir / "config.json", start_epoch):
            write_bytes_atomic(out_dir / "config.json", cfg.to_json().encode())

    update = optimizer_step(optimizer, engine)
    state: dict[str, Any] = ckpt if start_epoch else {}
    interrupted = False
    try:
        for epoch in range(start_epoch, cfg.epochs):
            gen = epoch_generator(cfg.seed, epoch)
            torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout draws from the global generator
            perm = torch.randperm(n, generator=gen).to(where)
            model.train()
            bar = progress(steps_per_epoch, f"epoch {epoch + 1}/{cfg.epochs}") if progress else None
            # Eager: accumulated as tensors, the finiteness check below is the step's only host sync. Native:
            # the step returns numbers (tensor arithmetic on them cost ~10 us a step on caches it flushed).
            loss_sum: Any = torch.zeros((), device=where) if engine == "eager" else 0.0
            correct: Any = torch.zeros((), dtype=torch.long, device=where) if engine == "eager" else 0
            seen = 0
            started = time.perf_counter()
            augment = cfg.augment and epoch < cfg.epochs - cfg.clean_epochs
            for step in range(steps_per_epoch):
                idx = perm[step * cfg.batch_size : (step + 1) * cfg.batch_size]
                # Within an epoch only this loop touches the model: the native step and update check
                # their tensors at the epoch's first step (after evaluation, checkpointing, a resume).
                loss, step_correct = step_fn(idx, gen if augment else None, check=step == 0)
                if not math.isfinite(float(loss)):  # before the update: no step is made from it
                    raise Diverged(divergence_message(float(loss), epoch, step, steps_per_epoch,
                                                      optimizer.param_groups[0]["lr"], cfg, ckpt_path, len(history)))
                lrs.append(optimizer.param_groups[0]["lr"])
                update(step == 0)
                scheduler.step()
                if ema is not None:
                    update_ema(ema, model, cfg.ema)
                loss_sum += loss * len(idx)
                correct += step_correct
                seen += len(idx)
                if bar is not None:
                    bar.update(1)
            epoch_seconds = time.perf_counter() - started
            train_seconds += epoch_seconds
            if bar is not None:
                bar.close()

            evaluated = ema if ema is not None else model
            if cfg.precise_bn:  # statistics under the final weights; the training trajectory is unchanged
                recalibrate_batchnorm(evaluated, train_x[: cfg.precise_bn], cfg.eval_batch_size)
            record: dict[str, Any] = {
                "epoch": epoch + 1,
                "lr": lrs[-1],
                "seconds": epoch_seconds,
                "train_loss": float(loss_sum) / seen,
                "train_correct": int(correct),
                "train_total": seen,
                "train_accuracy": 100.0 * int(correct) / seen,
            }
            for name in ("val", "test"):
                if name in splits:
                    split = splits[name]
                    loss_value, right = loss_and_correct(logits_for(evaluated, split.images, cfg.eval_batch_size,
                                                                     native=engine == "native"), split.labels)
                    record.update({f"{name}_loss": loss_value, f"{name}_correct": right, f"{name}_total": len(split.labels),
                                   f"{name}_accuracy": 100.0 * right / len(split.labels)})
            history.append(record)
            state = _copied({
                "model_name": cfg.model, "model_args": args, "model": model.state_dict(),
                "ema": ema.state_dict() if ema is not None else None,
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "rng": torch.get_rng_state(), "epoch": epoch + 1, "config": dataclasses.asdict(cfg),
                "history": history, "lrs": lrs, "train_seconds": train_seconds, "engine": engine,
            })
            if ckpt_path:
                with _disk_errors(ckpt_path, epoch):
                    save_atomic(state, ckpt_path)
                with _disk_errors(out_dir / "history.json", epoch + 1):
                    write_history(out_dir, history, lrs, steps_per_epoch, engine_label(engine))
            if on_epoch:
                on_epoch(record)
    except KeyboardInterrupt:
        if not keep_on_interrupt or not history:
            raise
        interrupted = True
        model.load_state_dict(state["model"])  # back to the last completed epoch
        if ema is not None:
            ema.load_state_dict(state["ema"])

    final = history[-1]
    metrics = {
        "model": cfg.model,
        "model_args": args,
        "params": count_parameters(model),
        "epochs": final["epoch"] if interrupted else cfg.epochs,
        "seed": cfg.seed,
        "final_test_accuracy": final["test_accuracy"],
        "final_test_loss": final["test_loss"],
        "final_train_accuracy": final["train_accuracy"],
        "train_seconds": train_seconds,
        "images_per_second": n * len(history) / train_seconds if train_seconds else 0.0,
        "threads": torch.get_num_threads(),
        "engine": engine_label(engine),
        "device": describe(where),
        "data_dir": str(Path(data_dir).expanduser().resolve()) if data_dir else None,
    }
    if interrupted:
        metrics["interrupted_after_epoch"] = final["epoch"]
    if "val_accuracy" in final:
        metrics.update(final_val_accuracy=final["val_accuracy"], final_val_loss=final["val_loss"])
    if out_dir:
        with _disk_errors(out_dir / "metrics.json", len(history)):
            write_json(out_dir / "metrics.json", metrics)
    evaluated = (ema if ema is not None else model).eval()
    return Trained(metrics=metrics, history=history, model=evaluated, checkpoint=state, interrupted=interrupted)


def format_epoch(r: dict[str, Any], epochs: int) -> str:
    """One line of the per-epoch log."""
    line = (f"epoch {r['epoch']:>2}/{epochs} | lr {r['lr']:.5f} | {r['seconds']:5.1f}s | "
            f"train loss {r['train_loss']:.4f} acc {r['train_correct']}/{r['train_total']} ({r['train_accuracy']:.2f}%)")
    for split in ("val", "test"):
        if f"{split}_loss" in r:
            line += (f" | {split} loss {r[f'{split}_loss']:.4f} acc {r[f'{split}_correct']}/{r[f'{split}_total']}"
                     f" ({r[f'{split}_accuracy']:.2f}%)")
    return line


def save_run_files(out_dir: Path, checkpoint: dict[str, Any], metrics: dict[str, Any]) -> Path:
    """A run directory from a run held in memory: last.pt, config.json, history.json and metrics.json,
    the files `tinymnist evaluate`, `report`, `export` and `train --resume` read. Returns `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    save_atomic(checkpoint, out_dir / "last.pt")
    write_bytes_atomic(out_dir / "config.json", json.dumps(checkpoint["config"], indent=2).encode())
    steps = len(checkpoint["lrs"]) // max(1, checkpoint["epoch"])
    write_history(out_dir, checkpoint["history"], checkpoint["lrs"], steps, metrics.get("engine", "eager"))
    write_json(out_dir / "metrics.json", metrics)
    return out_dir


def write_history(out_dir: Path, history: list[dict[str, Any]], lrs: list[float], steps_per_epoch: int,
                  engine: str) -> None:
    """history.json: the per-epoch records and the learning rate of every step (what `report` plots)."""
    write_json(out_dir / "history.json", {"epochs": history, "lr_per_step": lrs, "steps_per_epoch": steps_per_epoch,
                                          "engine": engine})


def write_json(path: Path, obj: Any) -> None:
    write_bytes_atomic(path, json.dumps(obj, indent=2).encode())
