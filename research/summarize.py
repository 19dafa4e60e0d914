"""Validation-only summary of research/runs.jsonl: per run name, the final-epoch validation
accuracy per seed, mean and worst. Test accuracy is deliberately not shown (decisions use validation).

Usage: python research/summarize.py [NAME_PREFIX] [--seeds 10 11 ...]
"""

import argparse
import json
from collections import defaultdict
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("prefix", nargs="?", default="")
    parser.add_argument("--seeds", type=int, nargs="*")
    parser.add_argument("--log", default="research/runs.jsonl")
    args = parser.parse_args()
    table: dict[str, dict[int, float]] = defaultdict(dict)
    for line in Path(args.log).read_text().splitlines():
        row = json.loads(line)
        if row["name"].startswith(args.prefix) and (not args.seeds or row["seed"] in args.seeds):
            table[row["name"]][row["seed"]] = row["val_acc"]
    seeds = sorted({s for per_seed in table.values() for s in per_seed})
    print(f"{'run':<28}" + "".join(f"{s:>7}" for s in seeds) + f"{'mean':>9}{'worst':>7}{'n':>3}")
    for name, per_seed in table.items():
        values = list(per_seed.values())
        cells = "".join(f"{per_seed[s]:>7.2f}" if s in per_seed else f"{'':>7}" for s in seeds)
        print(f"{name:<28}{cells}{sum(values) / len(values):>9.3f}{min(values):>7.2f}{len(values):>3}")


if __name__ == "__main__":
    main()
