"""Copy a finished run's final weights into the package as the bundled pretrained model.

Usage: python tools/package_pretrained.py RUN_DIR "EXACT TRAIN COMMAND"
Writes src/tinymnist/pretrained/<model>.pt (weights + model name/arguments + config, no optimizer
state) and <model>.json (the run's metrics and the command that produced it).
"""

import json
import sys
from pathlib import Path

import torch

from tinymnist.training.checkpoint import load_checkpoint, save_atomic


def main() -> None:
    run_dir, command = Path(sys.argv[1]), sys.argv[2]
    ckpt = load_checkpoint(run_dir / "last.pt")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    target = Path(__file__).resolve().parents[1] / "src" / "tinymnist" / "pretrained"
    keep = {k: ckpt[k] for k in ("model_name", "model_args", "model", "ema", "config", "epoch")}
    save_atomic(keep, target / f"{ckpt['model_name']}.pt")
    (target / f"{ckpt['model_name']}.json").write_text(json.dumps({"command": command, "metrics": metrics}, indent=2) + "\n")
    print(f"packaged {run_dir} as {target / (ckpt['model_name'] + '.pt')} (torch {torch.__version__})")


if __name__ == "__main__":
    main()
