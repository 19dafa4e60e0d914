"""Round Q1 (docs/research.md): int8/float disagreement of saved runs under each candidate way of
setting the activation ranges (the q-quantile of the calibration values; q = 1 is min/max), on
training images 50,000-59,999 that are not calibration images. No test image is read.

    python research/q1_ranges.py runs/frontier tiny1k tiny2k --seeds 0-4 --log research/q1.jsonl
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from tinymnist.data.mnist import load_mnist
from tinymnist.data.normalize import normalize
from tinymnist.export.c import reference
from tinymnist.export.c.lower import forward, lower
from tinymnist.export.c.quantize import QuantConfig, activation_ranges, calibration_images, calibration_index, quantize
from tinymnist.training.checkpoint import load_checkpoint, model_from_checkpoint

QUANTILES = [1.0, 0.99999, 0.9999, 0.999]


def held_out(train_images: np.ndarray, config: QuantConfig) -> np.ndarray:
    """Training images 50,000-59,999 minus the calibration sample's."""
    index = np.setdiff1d(np.arange(50_000, 60_000), calibration_index(len(train_images), config))
    return train_images[index]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("runs")
    p.add_argument("models", nargs="+")
    p.add_argument("--seeds", default="0-4")
    p.add_argument("--log", default="research/q1.jsonl")
    a = p.parse_args()
    first, last = (int(s) for s in a.seeds.split("-"))
    data = load_mnist(None)
    config = QuantConfig()
    cal = calibration_images(data.train_images, config)
    images = held_out(data.train_images, config)
    for name in a.models:
        for seed in range(first, last + 1):
            run = Path(a.runs) / f"{name}-seed{seed}"
            model = model_from_checkpoint(load_checkpoint(run / "last.pt")).float().eval()
            ops = lower(model)
            with torch.no_grad():
                x = torch.from_numpy(normalize(images)).double().unsqueeze(1)
                float_pred = forward(ops, x, []).argmax(1).numpy()
            row = {"model": name, "seed": seed, "images": len(images)}
            for q in QUANTILES:
                pred = reference.scores(quantize(ops, activation_ranges(ops, cal, quantile=q)), images).argmax(1)
                row[str(q)] = int((pred != float_pred).sum())
            print(json.dumps(row), flush=True)
            with open(a.log, "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
