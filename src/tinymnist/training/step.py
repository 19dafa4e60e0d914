"""One training step, with either engine: the batch (augmented), forward, loss, backward, then the
update; and the per-epoch random generators that make a resumed run replay an uninterrupted one."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tinymnist.data.augment import augmentation_draws, random_affine
from tinymnist.data.normalize import MNIST_MEAN, MNIST_STD
from tinymnist.errors import UserError
from tinymnist.models.zoo import preferred_memory_format
from tinymnist.training.config import TrainConfig
from tinymnist.training.distill import Teacher, distillation_grad, distillation_loss


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the block on one intra-op thread (then restore the count). The optimizer step updates ~30
    small tensors: on several threads each would open a parallel region that costs more than the work.
    The update is elementwise, so the result is the same."""
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
    The native engine calls fused SGD's kernel directly (backends/native/update.py: the same arithmetic
    without optimizer.step()'s Python, which is slow on the caches a native step has flushed), other
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
              layout: torch.memory_format, teacher: Teacher | None = None) -> Step:
    """The training step without the update: step(idx, gen, check=True) computes the loss of batch
    train_x[idx] (augmented with draws from `gen`, or not when it is None) and leaves the gradients in
    each parameter's .grad; returns (loss, correct predictions), tensors (eager) or numbers (native).
    check=False lets the native step reuse its layer table unchecked (NativeRunner.train_step).
    With a `teacher`, the loss is `distillation_loss` on the teacher's logits for the same batch."""
    weight, temperature = cfg.distill_weight, cfg.distill_temperature
    elastic = (cfg.elastic_alpha, cfg.elastic_sigma) if cfg.elastic_alpha > 0 else None
    if engine == "native":
        from tinymnist.backends.native.runner import NativeRunner

        runner = NativeRunner(model)
        classes = runner.program[-1].classes
        if len(train_y) and (int(train_y.min()) < 0 or int(train_y.max()) >= classes):
            raise UserError(f"the training labels must lie in 0..{classes - 1}; check the label file")
        images, labels = train_x.contiguous(), train_y.to(torch.int64).contiguous()
        augment = (math.radians(cfg.rotate), cfg.scale[0], cfg.scale[1], cfg.translate)
        loss_grad = None
        if teacher is not None:
            def loss_grad(x: torch.Tensor, logits: torch.Tensor, idx: torch.Tensor) -> tuple[float, torch.Tensor, int]:
                return distillation_grad(logits, labels[idx], teacher.logits(x), cfg.label_smoothing, weight,
                                         temperature)

        def native(idx: torch.Tensor, gen: torch.Generator | None, check: bool = True) -> tuple[Any, Any]:
            # The same draws as random_affine makes, so that both engines see the same augmentation.
            rand, disp = (None, None) if gen is None else augmentation_draws(len(idx), *images.shape[-2:], gen,
                                                                             elastic)
            return runner.train_step(images, labels, idx, rand, augment, cfg.label_smoothing, MNIST_MEAN, MNIST_STD,
                                     check=check, loss_grad=loss_grad, disp=disp)

        return native

    def eager(idx: torch.Tensor, gen: torch.Generator | None, check: bool = True) -> tuple[Any, Any]:
        x = train_x[idx].float().div_(255.0)
        if gen is not None:
            x = random_affine(x, gen, cfg.rotate, cfg.scale, cfg.translate, elastic)
        x = x.sub_(MNIST_MEAN).div_(MNIST_STD).contiguous(memory_format=layout)
        y = train_y[idx]
        logits = model(x)
        if teacher is None:
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
        else:
            loss = distillation_loss(logits, y, teacher.logits(x), cfg.label_smoothing, weight, temperature)
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
