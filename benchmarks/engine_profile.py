"""Where the native engine's training step spends its time, for the default model on real, augmented
training batches, as the trainer runs them (NativeRunner.train_step, the fused SGD kernel called directly, one-cycle schedule):
each layer's forward and backward seconds (timed inside the C passes, summed by layer type), the
batch (gather + augmentation + normalization) and loss kernels, and what is left of the step
(Python, ctypes, the optimizer and the schedule).

Usage: python benchmarks/engine_profile.py [--model separable] [--steps 300] [--data-dir D]
                                           [--out benchmarks/results/engine_profile.json]
"""

from __future__ import annotations

import argparse
import collections
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, print_table, run, write_json  # noqa: E402

from tinymnist.backends.native.program import BatchNorm, Conv, Dropout, Head, MaxPool, Shortcut  # noqa: E402
from tinymnist.backends.native.runner import NativeRunner  # noqa: E402
from tinymnist.data.mnist import load_mnist  # noqa: E402
from tinymnist.data.normalize import MNIST_MEAN, MNIST_STD
from tinymnist.models.zoo import DEFAULT_MODEL, create_model  # noqa: E402
from tinymnist.training.config import TrainConfig  # noqa: E402
from tinymnist.training.schedule import lr_factor, make_optimizer  # noqa: E402
from tinymnist.training.step import optimizer_step  # noqa: E402

WARMUP = 20


def layer_kind(op: object) -> str:
    if isinstance(op, Conv):
        return "depthwise conv" if op.kind == "dw" else f"dense conv {op.k}x{op.k}"
    return {BatchNorm: "BatchNorm+ReLU", MaxPool: "max-pool", Dropout: "dropout", Head: "GAP + head",
            Shortcut: "shortcut + ReLU"}[type(op)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--data-dir")
    parser.add_argument("--out", default="benchmarks/results/engine_profile.json")
    args = parser.parse_args()
    data = load_mnist(args.data_dir)
    cfg = TrainConfig(model=args.model, engine="native")
    torch.manual_seed(0)
    model = create_model(cfg.model).train()
    runner = NativeRunner(model)
    optimizer = make_optimizer(model, cfg, fused=True)
    update = optimizer_step(optimizer, "native")  # as the trainer makes it
    steps_per_epoch = math.ceil(len(data.train_labels) / cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, steps_per_epoch, cfg))
    images = torch.from_numpy(data.train_images.copy()).unsqueeze(1).contiguous()
    labels = torch.from_numpy(data.train_labels.copy()).long()
    augment = (math.radians(cfg.rotate), cfg.scale[0], cfg.scale[1], cfg.translate)
    gen = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(images), generator=gen)
    step_seconds: list[float] = []
    parts: dict[str, float] = collections.defaultdict(float)
    for step in range(args.steps + WARMUP):
        if step == WARMUP:
            parts.clear()
            runner.layer_seconds = torch.zeros(len(runner.program), 2, dtype=torch.float64)
        t0 = time.perf_counter()
        idx = perm[step * cfg.batch_size : (step + 1) * cfg.batch_size]
        rand = torch.rand(len(idx), 4, generator=gen)
        t1 = time.perf_counter()
        runner.train_step(images, labels, idx, rand, augment, cfg.label_smoothing, MNIST_MEAN, MNIST_STD, parts,
                          check=step == 0)
        t2 = time.perf_counter()
        update(step == 0)
        t3 = time.perf_counter()
        scheduler.step()
        t4 = time.perf_counter()
        parts["slicing + random draws"] += t1 - t0
        parts["train_step total"] += t2 - t1
        parts["SGD step (fused kernel, direct, 1 thread)"] += t3 - t2
        parts["LR schedule"] += t4 - t3
        if step >= WARMUP:
            step_seconds.append(t4 - t0)
    steps = len(step_seconds)
    step_ms = 1e3 * sum(step_seconds) / steps
    assert runner.layer_seconds is not None
    layer_ms = (runner.layer_seconds * 1e3 / steps).tolist()
    by_kind: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    for op, (fwd, bwd) in zip(runner.program, layer_ms, strict=True):
        by_kind[layer_kind(op)][0] += fwd
        by_kind[layer_kind(op)][1] += bwd

    def row(name: str, ms: float, fwd: float | None = None, bwd: float | None = None) -> dict[str, str]:
        return {"part": name, "forward ms": "" if fwd is None else f"{fwd:.3f}",
                "backward ms": "" if bwd is None else f"{bwd:.3f}", "ms/step": f"{ms:.3f}",
                "% of step": f"{100 * ms / step_ms:.1f}"}

    rows = [row(kind, f + b, f, b) for kind, (f, b) in sorted(by_kind.items(), key=lambda kv: -sum(kv[1]))]
    per_step = {k: 1e3 * v / steps for k, v in parts.items()}
    in_layers = sum(sum(v) for v in by_kind.values())
    rows.append(row("batch kernel (gather, augment, normalize)", per_step["batch"]))
    rows.append(row("loss kernel", per_step["loss"]))
    glue = per_step["train_step total"] - per_step["batch"] - per_step["loss"] - in_layers
    rows.append(row("glue inside train_step (Python, ctypes, dispatch)", glue))
    for name in ("slicing + random draws", "SGD step (fused kernel, direct, 1 thread)", "LR schedule"):
        rows.append(row(name, per_step[name]))
    print(f"{args.model}, batch {cfg.batch_size}, {torch.get_num_threads()} threads, {steps} steps: {step_ms:.2f} "
          f"ms/step (median step {1e3 * statistics.median(step_seconds):.2f} ms), "
          f"{cfg.batch_size * 1e3 / step_ms:.0f} images/s\n")
    print_table(rows, ["part", "forward ms", "backward ms", "ms/step", "% of step"])
    write_json(args.out, {"machine": machine(), "model": args.model, "steps": steps, "step_ms": round(step_ms, 3),
                          "by_part": rows,
                          "by_layer": [{"layer": i, "kind": layer_kind(op), "forward_ms": round(f, 4),
                                        "backward_ms": round(b, 4)}
                                       for i, (op, (f, b)) in enumerate(zip(runner.program, layer_ms, strict=True))]})


if __name__ == "__main__":
    run(main)
