"""Training speed: one epoch each of
  (a) tinymnist's trainer on the default model, eager PyTorch and the native engine,
  (b) tinymnist's trainer on `reference`, eager and native,
  (c) the reference *pipeline* as the article ran it: a torch DataLoader over per-image PIL
      transforms (random resized crop, scale 0.85-1.0, and rotation +-5 degrees), batch 64, Adam,
      the reference model;
each configuration run --repeats times, alternating (a, a', b, b', c, c', a, a', ...), medians
reported: this machine is shared and noisy. Epochs are augmented (like nine of a default run's ten)
and timed as the trainer times them (the training loop, evaluation excluded). Also the achieved
model FLOP/s as a fraction of an sgemm measured in the same run (median of --repeats), and with
--full-runs the wall time of a whole default `tinymnist train` (10 epochs, evaluation included)
with each engine.

With --device cuda (or mps, auto) it times (a) and (b) with eager PyTorch on that device instead (the
native engine and the article's DataLoader pipeline are CPU-only), and the full runs with --device.

Usage: python benchmarks/speed.py [--data-dir D] [--images N] [--repeats 3] [--full-runs]
                                  [--device cpu] [--out benchmarks/results/speed.json]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, print_table, run, write_json  # noqa: E402

from tinymnist.backends.device import describe, resolve_device  # noqa: E402
from tinymnist.data.mnist import MNIST, load_mnist
from tinymnist.data.normalize import MNIST_MEAN, MNIST_STD  # noqa: E402
from tinymnist.models.summary import summarize  # noqa: E402
from tinymnist.models.zoo import DEFAULT_MODEL, create_model  # noqa: E402
from tinymnist.training.config import TrainConfig  # noqa: E402
from tinymnist.training.trainer import train  # noqa: E402


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


def tinymnist_epoch(data: MNIST, model: str, images: int, engine: str, device: str = "cpu") -> float:
    # The model's own recipe (the default's batch 32), as `tinymnist train --model` trains it;
    # clean_epochs=0: the measured epoch is augmented, like nine of the ten in a default run and like (c).
    cfg = TrainConfig.for_model(model, epochs=1, train_subset=images, test_subset=1000, clean_epochs=0, engine=engine)
    return train(cfg, data, device=device)["images_per_second"]


def full_run(engine: str, data_dir: str | None, device: str = "cpu") -> dict[str, Any]:
    """Wall time of `tinymnist train` with the default config (10 epochs), as a user runs it."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "tinymnist", "train", "--quiet", "--engine", engine, "--device", device,
               "--out", f"{tmp}/run"]
        if data_dir:
            cmd += ["--data-dir", data_dir]
        started = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        wall = time.perf_counter() - started
        metrics = json.loads(Path(f"{tmp}/run/metrics.json").read_text())
    return {"engine": metrics["engine"], "device": metrics["device"], "wall seconds": round(wall, 1),
            "train seconds": round(metrics["train_seconds"], 1),
            "final test %": metrics["final_test_accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir")
    parser.add_argument("--images", type=int, default=60_000, help="training images per epoch (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each configuration (alternating); medians reported")
    parser.add_argument("--full-runs", action="store_true", help="also time a whole default 10-epoch train per engine")
    parser.add_argument("--device", default="cpu", help="cpu (default), or auto|cuda|mps: time eager training there")
    parser.add_argument("--out", default="benchmarks/results/speed.json")
    args = parser.parse_args()
    device = describe(resolve_device(args.device))  # an unavailable device fails here, in one line
    data = load_mnist(args.data_dir)
    def epoch(model: str, engine: str) -> Any:
        return lambda: tinymnist_epoch(data, model, args.images, engine)

    if device != "cpu":
        return on_device(args, data, device)
    a, b = (f"{m} (batch {TrainConfig.for_model(m).batch_size})" for m in (DEFAULT_MODEL, "reference"))
    configs = [
        (f"(a) tinymnist trainer, {a}, eager", DEFAULT_MODEL, epoch(DEFAULT_MODEL, "eager")),
        (f"(a) tinymnist trainer, {a}, native", DEFAULT_MODEL, epoch(DEFAULT_MODEL, "native")),
        (f"(b) tinymnist trainer, {b}, eager", "reference", epoch("reference", "eager")),
        (f"(b) tinymnist trainer, {b}, native", "reference", epoch("reference", "native")),
        ("(c) article pipeline (batch 64), 0 workers", "reference", lambda: article_pipeline(data, args.images, 0)),
        ("(c) article pipeline (batch 64), 2 workers", "reference", lambda: article_pipeline(data, args.images, 2)),
    ]
    rates: dict[str, list[float]] = {label: [] for label, _, _ in configs}
    flops_runs = []
    for rep in range(args.repeats):
        flops_runs.append(sgemm_flops())
        for label, _, fn in configs:
            rates[label].append(fn())
            print(f"round {rep + 1}/{args.repeats}  {label}: {rates[label][-1]:.0f} images/s", flush=True)
    flops = statistics.median(flops_runs)
    rows = []
    for label, model, _ in configs:
        rate = statistics.median(rates[label])
        macs = summarize(create_model(model)).macs
        achieved = 6 * macs * rate  # training ~ 3x the forward pass, 2 FLOPs per MAC
        rows.append({"pipeline": label, "model": model, "images/s": round(rate),
                     "runs": " ".join(f"{r:.0f}" for r in rates[label]),
                     "model GFLOP/s": round(achieved / 1e9, 2), "% of sgemm": round(100 * achieved / flops, 1)})
    baseline = max(r["images/s"] for r in rows if r["pipeline"].startswith("(c)"))
    for r in rows:
        r["vs (c)"] = f"{r['images/s'] / baseline:.2f}x"
        if r["pipeline"].endswith("native"):
            eager = next(e for e in rows if e["pipeline"] == r["pipeline"].replace("native", "eager"))
            r["vs eager"] = f"{r['images/s'] / eager['images/s']:.2f}x"
    print(f"\nsgemm 2048x2048: {flops / 1e9:.0f} GFLOP/s (median of {args.repeats}); "
          f"(c) baseline = the faster of its two worker settings; images/s: median of {args.repeats} alternating runs\n")
    print_table(rows, ["pipeline", "images/s", "vs eager", "vs (c)", "model GFLOP/s", "% of sgemm", "runs"])
    full = []
    if args.full_runs:
        for engine in ("eager", "native"):
            full.append(full_run(engine, args.data_dir))
            print(f"full default run, {engine}: {full[-1]}", flush=True)
        print()
        print_table(full, ["engine", "wall seconds", "train seconds", "final test %"])
    write_json(args.out, {"machine": machine(), "images_per_epoch": args.images, "repeats": args.repeats,
                          "sgemm_gflops": round(flops / 1e9, 1), "rows": rows, "full_runs": full})


def on_device(args: argparse.Namespace, data: MNIST, device: str) -> None:
    """--device other than the CPU: eager epochs of both models there, alternating, and full runs."""
    models = [DEFAULT_MODEL, "reference"]
    rates: dict[str, list[float]] = {m: [] for m in models}
    for rep in range(args.repeats):
        for m in models:
            rates[m].append(tinymnist_epoch(data, m, args.images, "eager", args.device))
            print(f"round {rep + 1}/{args.repeats}  {m} on {device}: {rates[m][-1]:.0f} images/s", flush=True)
    rows = [{"pipeline": f"tinymnist trainer, {m}, eager on {device}", "model": m,
             "images/s": round(statistics.median(rates[m])), "runs": " ".join(f"{r:.0f}" for r in rates[m])}
            for m in models]
    print_table(rows, ["pipeline", "images/s", "runs"])
    full = [full_run("eager", args.data_dir, args.device)] if args.full_runs else []
    if full:
        print_table(full, ["engine", "device", "wall seconds", "train seconds", "final test %"])
    write_json(args.out, {"machine": {**machine(), "device": device}, "images_per_epoch": args.images,
                          "repeats": args.repeats, "rows": rows, "full_runs": full})


if __name__ == "__main__":
    run(main)
