"""Int8 test accuracy of every saved run of a model (issue 30's "retrained, they hold"): each run's
final weights through the same int8 conversion as `tinymnist export --format c` (calibrated on
training images), scored by the Python integer reference on all 10,000 test images.

    python research/mcu_int8_seeds.py runs/frontier mcu-fast mcu-tiny [--json research/mcu-int8-seeds.json]

An existing --json keeps the entries of the models not given (a model retrained alone is measured alone).
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from tinymnist.data.mnist import load_mnist
from tinymnist.export.c import reference
from tinymnist.export.c.c_export import quantize_model
from tinymnist.training.checkpoint import load_checkpoint, model_from_checkpoint


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("runs")
    p.add_argument("models", nargs="+")
    p.add_argument("--json", default="research/mcu-int8-seeds.json")
    a = p.parse_args()
    data = load_mnist(None)
    path = Path(a.json)
    out = json.loads(path.read_text()) if path.exists() else {}
    for name in a.models:
        rows = []
        for run in sorted(Path(a.runs).glob(f"{name}-seed*"), key=lambda r: int(r.name.rsplit("seed", 1)[1])):
            ckpt = load_checkpoint(run / "last.pt")
            model = model_from_checkpoint(ckpt).float()
            pred = reference.scores(quantize_model(model, data.train_images), data.test_images).argmax(1)
            int8 = 100.0 * float((pred == data.test_labels).mean())
            metrics = json.loads((run / "metrics.json").read_text())
            rows.append({"seed": int(run.name.rsplit("seed", 1)[1]), "float": metrics["final_test_accuracy"],
                         "int8": round(int8, 2)})
            print(name, rows[-1], flush=True)
        int8s = [r["int8"] for r in rows]
        out[name] = {"runs": rows, "int8_mean": round(statistics.mean(int8s), 3), "int8_worst": min(int8s),
                     "seeds_at_or_above_99.40": sum(x >= 99.40 for x in int8s),
                     "seeds_at_or_above_99.00": sum(x >= 99.0 for x in int8s)}
        print(name, {k: v for k, v in out[name].items() if k != "runs"}, flush=True)
    path.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
