"""Research sweep: train configs over seeds with a validation slice held out from the *training*
set (its last 10,000 images) and append one JSON line per run to research/runs.jsonl.

Usage: python research/sweep.py NAME '{"lr": 0.05, ...}' --seeds 0 1 [--val 10000]
Decisions are made on final-epoch validation accuracy; test accuracy is recorded, never used.
"""

import argparse
import json
import time
from pathlib import Path

from tinymnist.config import TrainConfig
from tinymnist.data import load_mnist
from tinymnist.train import train


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("overrides", help="JSON object of TrainConfig fields")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--val", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", default="../shared/datasets/mnist")
    parser.add_argument("--log", default="research/runs.jsonl")
    args = parser.parse_args()
    data = load_mnist(args.data_dir, download=False)
    for seed in args.seeds:
        cfg = TrainConfig.from_dict({**json.loads(args.overrides), "seed": seed, "val_size": args.val, "threads": args.threads})
        started = time.time()
        metrics = train(cfg, data)
        row = {"name": args.name, "overrides": json.loads(args.overrides), "seed": seed, "val": args.val,
               "params": metrics["params"], "val_acc": metrics.get("final_val_accuracy"),
               "test_acc": metrics["final_test_accuracy"], "train_acc": metrics["final_train_accuracy"],
               "seconds": round(time.time() - started, 1), "img_s": round(metrics["images_per_second"])}
        with Path(args.log).open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
