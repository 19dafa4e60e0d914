"""The default model on a search's fresh seeds, at the search's length and validation split (for a
search in which it was not a finalist): python research/search_baseline.py OUT_DIR --epochs 5 --seeds 1 2
(the search's flags that shape a trial: --epochs, --val-size, --subset, --space). Runs the seeds in
parallel processes, one thread each, and writes OUT_DIR/baseline.json. The test set is never read."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
from pathlib import Path

from tinymnist.search import space
from tinymnist.search.config import SearchConfig
from tinymnist.search.objective import load_train_data, trial_config
from tinymnist.training.trainer import train_run


def one(args: tuple[SearchConfig, int]) -> float:
    import torch

    cfg, seed = args
    torch.set_num_threads(1)
    candidate = space.candidate_from_params(space.default_params(cfg.space), cfg.space)
    trained = train_run(trial_config(candidate, cfg, seed, threads=1), load_train_data(cfg.data_dir))
    return float(trained.history[-1]["val_accuracy"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out")
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--val-size", type=int, default=10_000)
    parser.add_argument("--subset", type=int, default=0)
    parser.add_argument("--space", default="full")
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    cfg = SearchConfig(epochs=args.epochs, val_size=args.val_size, train_subset=args.subset, space=args.space,
                       data_dir=args.data_dir)
    with multiprocessing.get_context("spawn").Pool(len(args.seeds)) as pool:
        accuracies = pool.map(one, [(cfg, s) for s in args.seeds])
    result = {"model": "separable (default recipe)", "epochs": args.epochs, "val_size": args.val_size,
              "seeds": args.seeds, "val_accuracy": accuracies, "mean": sum(accuracies) / len(accuracies)}
    Path(args.out, "baseline.json").write_text(json.dumps(result, indent=2) + "\n")
    json.dump(result, sys.stdout, indent=2)


if __name__ == "__main__":
    main()
