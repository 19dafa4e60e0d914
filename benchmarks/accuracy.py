"""Accuracy over seeds, the honest way: full training set, the default 10-epoch schedule, and the
test accuracy of the *final* epoch (nothing selected on the test set).

Usage: python benchmarks/accuracy.py --seeds 5 [--first-seed 0] [--models stepped reference]
       [--recipe default|article] [--data-dir D] [--out benchmarks/results/accuracy.json]

The `article` recipe is the reference article's training recipe compressed to 10 epochs (Adam,
its per-epoch LR curve, batch 64, rotation +-5 degrees and a mild zoom); `default` is tinymnist's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, print_table, write_json  # noqa: E402

from tinymnist.config import TrainConfig  # noqa: E402
from tinymnist.data import load_mnist  # noqa: E402
from tinymnist.models import DEFAULT_MODEL  # noqa: E402
from tinymnist.train import train  # noqa: E402

RECIPES = {
    "default": {},
    "article": {"optimizer": "adam", "lr": 0.01, "weight_decay": 0.0, "schedule": "article", "batch_size": 64,
                "rotate": 5.0, "scale": (1.0, 1.085), "translate": 1.0},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--models", nargs="+", default=[DEFAULT_MODEL, "reference"])
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="default")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--data-dir")
    parser.add_argument("--out", default="benchmarks/results/accuracy.json")
    args = parser.parse_args()
    data = load_mnist(args.data_dir)
    rows, runs = [], []
    for model in args.models:
        accs, seconds = [], []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            cfg = TrainConfig.from_dict({**RECIPES[args.recipe], "model": model, "seed": seed, "epochs": args.epochs})
            started = time.perf_counter()
            metrics = train(cfg, data)
            seconds.append(time.perf_counter() - started)
            accs.append(metrics["final_test_accuracy"])
            runs.append({"model": model, "seed": seed, "final_test_accuracy": accs[-1], "seconds": round(seconds[-1], 1),
                         "params": metrics["params"]})
            print(f"{model} seed {seed}: final test accuracy {accs[-1]:.2f}% ({seconds[-1]:.0f} s)", flush=True)
        rows.append({"model": model, "recipe": args.recipe, "params": metrics["params"], "seeds": len(accs),
                     "mean %": f"{statistics.mean(accs):.3f}", "worst %": f"{min(accs):.2f}", "best %": f"{max(accs):.2f}",
                     "std": f"{statistics.pstdev(accs):.3f}", "s/run": f"{statistics.mean(seconds):.0f}",
                     ">=99.40": f"{sum(a >= 99.40 for a in accs)}/{len(accs)}"})
    print(f"\nfinal-epoch test accuracy, {args.epochs} epochs, seeds {args.first_seed}..{args.first_seed + args.seeds - 1}\n")
    print_table(rows, ["model", "recipe", "params", "seeds", "mean %", "worst %", "best %", "std", ">=99.40", "s/run"])
    write_json(args.out, {"machine": machine(), "epochs": args.epochs, "recipe": args.recipe, "rows": rows, "runs": runs})


if __name__ == "__main__":
    main()
