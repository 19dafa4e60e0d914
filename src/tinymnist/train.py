"""The trainer: the whole dataset in memory as uint8 tensors, batches sliced from a seeded
permutation, augmentation on the whole batch, one-cycle LR per step, atomic per-epoch checkpoints.

Speed choices, measured on the 2-core CPU (docs/research.md has the numbers): uint8 data converted
per batch; channels_last only for depthwise models (models.preferred_memory_format); no DataLoader
workers; the per-epoch evaluation runs a BatchNorm-folded copy in batches of 256 (evaluate.logits_for:
5-8x faster than the unfolded model in batches of 2,000). Tried and not kept: torch.compile (1.2-1.6x
per step at 2 threads, none at 1, and 20-70 s of compilation per process), bf16 autocast (4x slower),
other max-pool formulations (slower), BatchNorm statistics from Gram matrices (no faster), batch
sizes above 64 (faster, but lower accuracy at 10 epochs).

Reproducibility: every epoch's randomness (permutation, augmentation, dropout) comes from
generators seeded by (seed, epoch), so a run resumed at an epoch boundary replays exactly what an
uninterrupted run would have done.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tinymnist.atomic import write_bytes_atomic
from tinymnist.augment import random_affine
from tinymnist.checkpoint import load_checkpoint, save_atomic
from tinymnist.config import TrainConfig
from tinymnist.data import MNIST, MNIST_MEAN, MNIST_STD
from tinymnist.engine.select import engine_label, resolve_engine
from tinymnist.errors import UserError
from tinymnist.evaluate import logits_for, loss_and_correct
from tinymnist.models import count_parameters, create_model, model_kwargs, preferred_memory_format
from tinymnist.precise_bn import recalibrate_batchnorm


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


def make_optimizer(model: nn.Module, cfg: TrainConfig, foreach: bool | None = None) -> torch.optim.Optimizer:
    """`foreach=True` updates all tensors of a group in one call: with the native engine the per-tensor
    loop (PyTorch's CPU default, kept for eager runs so that their results do not change) was a
    visible part of the step."""
    # No weight decay on BatchNorm parameters and biases: decaying them only fights the scale.
    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True, foreach=foreach)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999), foreach=foreach)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999), foreach=foreach)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


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
          notice: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train per `cfg`; write config/history/checkpoint/metrics into `out_dir` when given.

    `on_epoch` receives each epoch's record; `progress(steps, desc)` may return a tqdm-like bar;
    `notice` receives one-line notes (e.g. why `--engine auto` fell back to eager PyTorch).
    Returns the final metrics.
    """
    set_threads(cfg.threads)
    splits = make_splits(data, cfg)
    train_x, train_y = splits["train"].images, splits["train"].labels
    n = len(train_x)
    steps_per_epoch = math.ceil(n / cfg.batch_size)

    torch.manual_seed(cfg.seed)
    args = model_kwargs(cfg.model, cfg.model_args)
    model = create_model(cfg.model, **args)
    try:
        engine, fallback = resolve_engine(cfg.engine, model)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if fallback and notice:
        notice(f"native engine not used ({fallback}); training with eager PyTorch")
    # The native kernels keep their own NHWC layout; the module stays in PyTorch's default one.
    layout = torch.contiguous_format if engine == "native" else memory_format(cfg.memory_format, model)
    model = model.to(memory_format=layout)
    forward = model
    if engine == "native":
        from tinymnist.engine.native import NativeRunner

        forward = NativeRunner(model)
    optimizer = make_optimizer(model, cfg, foreach=True if engine == "native" else None)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, steps_per_epoch, cfg))
    ema = create_model(cfg.model, **args).to(memory_format=layout) if cfg.ema else None
    if ema is not None:
        ema.load_state_dict(model.state_dict())
    history: list[dict[str, Any]] = []
    lrs: list[float] = []
    start_epoch, train_seconds = 0, 0.0

    ckpt_path = out_dir / "last.pt" if out_dir else None
    if resume and ckpt_path and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path)
        if TrainConfig.from_saved(ckpt["config"]) != cfg:
            raise UserError(f"cannot resume {out_dir}: its config differs from this one (use the same flags or another --out)")
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
        (out_dir / "config.json").write_text(cfg.to_json())

    for epoch in range(start_epoch, cfg.epochs):
        gen = epoch_generator(cfg.seed, epoch)
        torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout draws from the global generator
        perm = torch.randperm(n, generator=gen)
        model.train()
        bar = progress(steps_per_epoch, f"epoch {epoch + 1}/{cfg.epochs}") if progress else None
        loss_sum, correct, seen = torch.zeros(()), torch.zeros((), dtype=torch.long), 0
        started = time.perf_counter()
        augment = cfg.augment and epoch < cfg.epochs - cfg.clean_epochs
        for step in range(steps_per_epoch):
            idx = perm[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            x = train_x[idx].float().div_(255.0)
            if augment:
                x = random_affine(x, gen, cfg.rotate, cfg.scale, cfg.translate)
            x = x.sub_(MNIST_MEAN).div_(MNIST_STD).contiguous(memory_format=layout)
            y = train_y[idx]
            logits = forward(x)
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
            if ema is not None:
                update_ema(ema, model, cfg.ema)
            # Accumulate as tensors: a .item() per step would synchronize for nothing.
            loss_sum += loss.detach() * len(idx)
            correct += (logits.detach().argmax(1) == y).sum()
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
                loss_value, right = loss_and_correct(logits_for(evaluated, split.images, cfg.eval_batch_size), split.labels)
                record.update({f"{name}_loss": loss_value, f"{name}_correct": right, f"{name}_total": len(split.labels),
                               f"{name}_accuracy": 100.0 * right / len(split.labels)})
        history.append(record)
        if ckpt_path:
            save_atomic({
                "model_name": cfg.model, "model_args": args, "model": model.state_dict(),
                "ema": ema.state_dict() if ema is not None else None,
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "rng": torch.get_rng_state(), "epoch": epoch + 1, "config": dataclasses.asdict(cfg),
                "history": history, "lrs": lrs, "train_seconds": train_seconds, "engine": engine,
            }, ckpt_path)
            write_json(out_dir / "history.json", {"epochs": history, "lr_per_step": lrs, "steps_per_epoch": steps_per_epoch,
                                                  "engine": engine_label(engine)})
        if on_epoch:
            on_epoch(record)

    final = history[-1]
    metrics = {
        "model": cfg.model,
        "model_args": args,
        "params": count_parameters(model),
        "epochs": cfg.epochs,
        "seed": cfg.seed,
        "final_test_accuracy": final["test_accuracy"],
        "final_test_loss": final["test_loss"],
        "final_train_accuracy": final["train_accuracy"],
        "train_seconds": train_seconds,
        "images_per_second": n * cfg.epochs / train_seconds if train_seconds else 0.0,
        "threads": torch.get_num_threads(),
        "engine": engine_label(engine),
    }
    if "val_accuracy" in final:
        metrics.update(final_val_accuracy=final["val_accuracy"], final_val_loss=final["val_loss"])
    if out_dir:
        write_json(out_dir / "metrics.json", metrics)
    return metrics


def write_json(path: Path, obj: Any) -> None:
    write_bytes_atomic(path, json.dumps(obj, indent=2).encode())
