"""Research sweep: train configs over seeds with a validation slice held out from the *training*
set (its last 10,000 images) and append one JSON line per run to research/runs.jsonl.

Usage: python research/sweep.py NAME '{"lr": 0.05, ...}' --seeds 0 1 [--val 10000] [--variants]
Decisions are made on final-epoch validation accuracy; test accuracy is recorded, never used.

--variants (round 8): one training run, several paired evaluations of its end. The run keeps an EMA
of the weights (decay 0.999 unless the overrides set one; the EMA is a shadow copy and leaves the
trajectory unchanged), and three rows are logged from its final checkpoint: NAME/live (the live
weights with their running BatchNorm statistics: what the run would give without EMA), NAME/live-pbn
(the live weights, BatchNorm statistics recomputed on all training images) and NAME/ema-pbn (the
averaged weights, statistics recomputed likewise).
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from tinymnist.data.mnist import load_mnist
from tinymnist.evaluation.logits import logits_for
from tinymnist.evaluation.metrics import loss_and_correct
from tinymnist.models.zoo import create_model
from tinymnist.training.checkpoint import load_checkpoint
from tinymnist.training.config import TrainConfig
from tinymnist.training.precise_bn import recalibrate_batchnorm
from tinymnist.training.trainer import make_splits, train


def accuracy(model: torch.nn.Module, split) -> float:
    _, right = loss_and_correct(logits_for(model, split.images), split.labels)
    return 100.0 * right / len(split.labels)


def variant_rows(cfg: TrainConfig, data, ckpt_path: Path) -> dict[str, dict[str, float]]:
    splits = make_splits(data, cfg)
    ckpt = load_checkpoint(ckpt_path)
    rows = {}
    for variant, weights, precise in (("live", "model", False), ("live-pbn", "model", True), ("ema-pbn", "ema", True)):
        model = create_model(ckpt["model_name"], **ckpt["model_args"])
        model.load_state_dict(ckpt[weights])
        if precise:
            recalibrate_batchnorm(model, splits["train"].images, cfg.eval_batch_size)
        rows[variant] = {"val_acc": accuracy(model, splits["val"]), "test_acc": accuracy(model, splits["test"])}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("overrides", help="JSON object of TrainConfig fields")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--val", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variants", action="store_true", help="log live / live-pbn / ema-pbn rows from one run")
    parser.add_argument("--data-dir", default="../shared/datasets/mnist")
    parser.add_argument("--log", default="research/runs.jsonl")
    args = parser.parse_args()
    data = load_mnist(args.data_dir, download=False)
    overrides = json.loads(args.overrides)
    if args.variants:
        overrides.setdefault("ema", 0.999)
    for seed in args.seeds:
        cfg = TrainConfig.from_dict({**overrides, "seed": seed, "val_size": args.val, "threads": args.threads})
        started = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            metrics = train(cfg, data, out_dir=Path(tmp) if args.variants else None)
            variants = variant_rows(cfg, data, Path(tmp) / "last.pt") if args.variants else {"": {}}
        base = {"overrides": overrides, "seed": seed, "val": args.val, "params": metrics["params"],
                "val_acc": metrics.get("final_val_accuracy"), "test_acc": metrics["final_test_accuracy"],
                "train_acc": metrics["final_train_accuracy"], "seconds": round(time.time() - started, 1),
                "img_s": round(metrics["images_per_second"])}
        for variant, scores in variants.items():
            row = {"name": f"{args.name}/{variant}" if variant else args.name, **base, **scores}
            if variant:
                row["variant"] = variant
            with Path(args.log).open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
