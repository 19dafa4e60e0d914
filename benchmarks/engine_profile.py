"""Where the native engine's training step spends its time: every kernel call of a step timed (the
C library wrapped by a timing proxy), summed per kernel and per layer, then what is left of the
whole step (augmentation, loss, optimizer, Python and autograd glue), for the default model on real,
augmented training batches, as the trainer runs them.

Usage: python benchmarks/engine_profile.py [--model separable] [--steps 200] [--data-dir D]
                                           [--out benchmarks/results/engine_profile.json]
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, print_table, run, write_json  # noqa: E402

from tinymnist.augment import random_affine  # noqa: E402
from tinymnist.config import TrainConfig  # noqa: E402
from tinymnist.data import MNIST_MEAN, MNIST_STD, load_mnist  # noqa: E402
from tinymnist.engine.native import NativeRunner  # noqa: E402
from tinymnist.models import DEFAULT_MODEL, create_model  # noqa: E402
from tinymnist.trainer import make_optimizer  # noqa: E402

# What each kernel moves, for the "what is left" column: these are the memory-bound ones.
KINDS = {"tm_conv_forward": "dense/pointwise conv", "tm_conv_backward_data": "dense/pointwise conv",
         "tm_conv_backward_weight": "dense/pointwise conv", "tm_dwconv_forward": "depthwise conv",
         "tm_dwconv_backward_data": "depthwise conv", "tm_dwconv_backward_weight": "depthwise conv",
         "tm_bn_finalize": "BatchNorm+ReLU", "tm_bn_apply": "BatchNorm+ReLU", "tm_bn_backward": "BatchNorm+ReLU",
         "tm_maxpool2_forward": "max-pool", "tm_maxpool2_backward": "max-pool",
         "tm_head_forward": "GAP + head", "tm_head_backward": "GAP + head"}


class TimedLibrary:
    """Forwards every call to the kernel library and adds its wall time to `totals[name]`."""

    def __init__(self, lib: Any):
        self.lib, self.totals = lib, collections.defaultdict(float)

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self.lib, name)

        def timed(*args: Any) -> Any:
            started = time.perf_counter()
            out = fn(*args)
            self.totals[name] += time.perf_counter() - started
            return out

        return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--data-dir")
    parser.add_argument("--out", default="benchmarks/results/engine_profile.json")
    args = parser.parse_args()
    data = load_mnist(args.data_dir)
    cfg = TrainConfig(model=args.model, engine="native")
    torch.manual_seed(0)
    model = create_model(cfg.model).train()
    runner = NativeRunner(model)
    timed = TimedLibrary(runner.lib)
    runner.lib = timed
    optimizer = make_optimizer(model, cfg, foreach=True)
    images = torch.from_numpy(data.train_images.copy()).unsqueeze(1)
    labels = torch.from_numpy(data.train_labels.copy())
    gen = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(images), generator=gen)
    step_seconds = []
    phases: dict[str, float] = collections.defaultdict(float)
    for step in range(args.steps + 20):
        if step == 20:  # warm-up done
            timed.totals.clear()
            phases.clear()
        t0 = time.perf_counter()
        idx = perm[step * 64 : (step + 1) * 64]
        x = random_affine(images[idx].float().div_(255.0), gen, cfg.rotate, cfg.scale, cfg.translate)
        x = x.sub_(MNIST_MEAN).div_(MNIST_STD)
        t1, k1 = time.perf_counter(), sum(timed.totals.values())
        logits = runner(x)
        t2, k2 = time.perf_counter(), sum(timed.totals.values())
        loss = F.cross_entropy(logits, labels[idx], label_smoothing=cfg.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        loss.backward()
        t4, k4 = time.perf_counter(), sum(timed.totals.values())
        optimizer.step()
        t5 = time.perf_counter()
        phases["batch slicing + augmentation"] += t1 - t0
        phases["forward glue (Python, outside kernels)"] += (t2 - t1) - (k2 - k1)
        phases["loss + zero_grad"] += t3 - t2
        phases["backward glue (autograd, Python, outside kernels)"] += (t4 - t3) - (k4 - k2)
        phases["SGD step"] += t5 - t4
        if step >= 20:
            step_seconds.append(t5 - t0)
    steps = len(step_seconds)
    step_ms = 1e3 * sum(step_seconds) / steps
    kernel_ms = {name: 1e3 * t / steps for name, t in timed.totals.items()}
    by_kind: dict[str, float] = collections.defaultdict(float)
    for name, ms in kernel_ms.items():
        by_kind[KINDS.get(name, name)] += ms
    rows = [{"part": kind, "ms/step": f"{ms:.3f}", "% of step": f"{100 * ms / step_ms:.1f}"}
            for kind, ms in sorted(by_kind.items(), key=lambda kv: -kv[1])]
    for name, seconds in phases.items():
        ms = 1e3 * seconds / len(step_seconds)
        rows.append({"part": name, "ms/step": f"{ms:.3f}", "% of step": f"{100 * ms / step_ms:.1f}"})
    print(f"{args.model}, batch 64, {torch.get_num_threads()} threads, {steps} steps: {step_ms:.2f} ms/step "
          f"(median step {1e3 * statistics.median(step_seconds):.2f} ms), {64e3 / step_ms:.0f} images/s\n")
    print_table(rows, ["part", "ms/step", "% of step"])
    print()
    kernels = [{"kernel": k, "ms/step": f"{v:.3f}"} for k, v in sorted(kernel_ms.items(), key=lambda kv: -kv[1])]
    print_table(kernels, ["kernel", "ms/step"])
    write_json(args.out, {"machine": machine(), "model": args.model, "steps": steps, "step_ms": round(step_ms, 3),
                          "by_part": rows, "by_kernel": kernels})


if __name__ == "__main__":
    run(main)
