"""Training speed: one epoch each of
  (a) tinymnist's trainer on the default model,
  (b) tinymnist's trainer on `reference`,
  (c) the reference *pipeline* as the article ran it: a torch DataLoader over per-image PIL
      transforms (random resized crop, scale 0.85-1.0, and rotation +-5 degrees), batch 64, Adam,
      the reference model;
and the achieved model FLOP/s as a fraction of an sgemm measured in the same run.

Usage: python benchmarks/speed.py [--data-dir D] [--images N] [--out benchmarks/results/speed.json]
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, print_table, run, write_json  # noqa: E402

from tinymnist.config import TrainConfig  # noqa: E402
from tinymnist.data import MNIST, MNIST_MEAN, MNIST_STD, load_mnist  # noqa: E402
from tinymnist.models import DEFAULT_MODEL, create_model  # noqa: E402
from tinymnist.summary import summarize  # noqa: E402
from tinymnist.train import train  # noqa: E402


class ArticleDataset(torch.utils.data.Dataset):
    """Per-sample transforms, the way torchvision's RandomResizedCrop + RandomRotation + ToTensor +
    Normalize would run them (torchvision is not available here, so PIL does the same work)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = Image.fromarray(self.images[i])
        area = random.uniform(0.85, 1.0) * 28 * 28
        ratio = math.exp(random.uniform(math.log(3 / 4), math.log(4 / 3)))
        w = min(28, int(round(math.sqrt(area * ratio))))
        h = min(28, int(round(math.sqrt(area / ratio))))
        x0, y0 = random.randint(0, 28 - w), random.randint(0, 28 - h)
        img = img.resize((28, 28), Image.Resampling.BILINEAR, box=(x0, y0, x0 + w, y0 + h))
        img = img.rotate(random.uniform(-5, 5), resample=Image.Resampling.NEAREST)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).unsqueeze(0)
        return (x - MNIST_MEAN) / MNIST_STD, int(self.labels[i])


def article_pipeline(data: MNIST, images: int, workers: int) -> float:
    """Images per second of the article-style pipeline over `images` training images."""
    torch.manual_seed(0)
    model = create_model("reference")
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    loader = torch.utils.data.DataLoader(ArticleDataset(data.train_images[:images], data.train_labels[:images]),
                                         batch_size=64, shuffle=True, num_workers=workers,
                                         persistent_workers=False)
    model.train()
    started = time.perf_counter()
    for x, y in loader:
        loss = F.nll_loss(F.log_softmax(model(x), 1), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return images / (time.perf_counter() - started)


def sgemm_flops(n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - started)


def tinymnist_epoch(data: MNIST, model: str, images: int) -> float:
    # clean_epochs=0: the measured epoch is augmented, like nine of the ten in a default run and like (c).
    cfg = TrainConfig(model=model, epochs=1, train_subset=images, test_subset=1000, clean_epochs=0)
    return train(cfg, data)["images_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir")
    parser.add_argument("--images", type=int, default=60_000, help="training images per epoch (default: all)")
    parser.add_argument("--out", default="benchmarks/results/speed.json")
    args = parser.parse_args()
    data = load_mnist(args.data_dir)
    flops = sgemm_flops()
    rows = []
    for label, fn in [
        (f"(a) tinymnist trainer, {DEFAULT_MODEL}", lambda: tinymnist_epoch(data, DEFAULT_MODEL, args.images)),
        ("(b) tinymnist trainer, reference", lambda: tinymnist_epoch(data, "reference", args.images)),
        ("(c) article pipeline, 0 workers", lambda: article_pipeline(data, args.images, 0)),
        ("(c) article pipeline, 2 workers", lambda: article_pipeline(data, args.images, 2)),
    ]:
        rate = fn()
        model = DEFAULT_MODEL if label.startswith("(a)") else "reference"
        macs = summarize(create_model(model)).macs
        achieved = 6 * macs * rate  # training ~ 3x the forward pass, 2 FLOPs per MAC
        rows.append({"pipeline": label, "model": model, "images/s": round(rate), "model GFLOP/s": round(achieved / 1e9, 2),
                     "% of sgemm": round(100 * achieved / flops, 1)})
        print(f"{label}: {rate:.0f} images/s", flush=True)
    baseline = max(r["images/s"] for r in rows if r["pipeline"].startswith("(c)"))
    for r in rows:
        r["vs (c)"] = f"{r['images/s'] / baseline:.2f}x"
    print(f"\nsgemm 2048x2048: {flops / 1e9:.0f} GFLOP/s; (c) baseline = the faster of its two worker settings\n")
    print_table(rows, ["pipeline", "model", "images/s", "vs (c)", "model GFLOP/s", "% of sgemm"])
    write_json(args.out, {"machine": machine(), "images_per_epoch": args.images, "sgemm_gflops": round(flops / 1e9, 1),
                          "rows": rows})


if __name__ == "__main__":
    run(main)
