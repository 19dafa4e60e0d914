"""A/B of native-engine builds in one process: whole training steps of the default model (batch,
forward, loss, backward, then the update: PyTorch's fused SGD, the same in every arm), each build on
its own copy of the same model and the same batches, in blocks of --steps steps taken in rotating
order, medians of the blocks' median step times; then whether the builds' weights are bit-identical.
This machine is shared and noisy: never compare figures from two runs.

Usage: python research/engine_ab.py LIB.so [LIB.so ...] [--blocks 40] [--steps 25] [--data-dir D]
(build a variant into a file with setup.py, or copy src/tinymnist/engine/_tm_avx512*.so aside before a change)
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time
from pathlib import Path

import torch

from tinymnist.backends.native import binding
from tinymnist.backends.native.runner import NativeRunner
from tinymnist.backends.native.update import NativeSGD
from tinymnist.data.mnist import load_mnist
from tinymnist.data.normalize import MNIST_MEAN, MNIST_STD
from tinymnist.models.zoo import create_model
from tinymnist.training.config import TrainConfig
from tinymnist.training.schedule import make_optimizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("libs", nargs="+")
    parser.add_argument("--blocks", type=int, default=40)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    data = load_mnist(args.data_dir)
    cfg = TrainConfig(engine="native")
    images = torch.from_numpy(data.train_images.copy()).unsqueeze(1).contiguous()
    labels = torch.from_numpy(data.train_labels.copy()).long()
    augment = (math.radians(cfg.rotate), cfg.scale[0], cfg.scale[1], cfg.translate)
    torch.manual_seed(0)
    base = create_model(cfg.model).train()
    arms = []
    for path in args.libs:
        lib = binding.open_library(Path(path), strict=False)
        model = copy.deepcopy(base)
        runner = NativeRunner(model, lib=lib)
        arms.append((Path(path).name, runner, NativeSGD(make_optimizer(model, cfg, fused=True))))
    gen = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(images), generator=gen)
    batches = [(perm[i * 64:(i + 1) * 64], torch.rand(64, 4, generator=gen)) for i in range(args.steps)]
    times: dict[str, list[float]] = {name: [] for name, _, _ in arms}
    for block in range(args.blocks + 1):
        order = arms[block % len(arms):] + arms[:block % len(arms)]
        for name, runner, sgd in order:
            steps = []
            for k, (idx, rand) in enumerate(batches):
                t0 = time.perf_counter()
                runner.train_step(images, labels, idx, rand, augment, cfg.label_smoothing, MNIST_MEAN, MNIST_STD,
                                  check=k == 0)
                sgd.step(k == 0)
                steps.append(time.perf_counter() - t0)
            if block:  # the first round warms up
                times[name].append(1e3 * statistics.median(steps))
    for name, ts in times.items():
        print(f"{name}: {statistics.median(ts):.3f} ms/step (median of {len(ts)} blocks; quartiles "
              f"{statistics.quantiles(ts, n=4)[0]:.3f}-{statistics.quantiles(ts, n=4)[2]:.3f})")
    first = [p.detach() for p in arms[0][1].model.parameters()]
    for name, runner, _ in arms[1:]:
        same = all(torch.equal(a, b.detach()) for a, b in zip(first, runner.model.parameters(), strict=True))
        print(f"{name}: weights after {args.blocks + 1} x {args.steps} steps bit-identical to {arms[0][0]}'s: {same}")


if __name__ == "__main__":
    main()
