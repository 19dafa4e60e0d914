"""Training survives kills: SIGKILL a short `tinymnist train` at random moments (seeded), `--resume` after
each kill, and compare the final weights with an uninterrupted run of the same command, bit for bit.
Repeated for --trials independent runs; a kill can land anywhere (start-up, data loading, a training
step, evaluation, the checkpoint write).

Usage: python benchmarks/kill_resume.py [--trials 2] [--kills 10] [--seed 0] [--data-dir D]
                                        [--out benchmarks/results/kill_resume.json]
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, print_table, run, write_json  # noqa: E402

from tinymnist.data.mnist import ensure_mnist  # noqa: E402


def train_cmd(out: Path, data_dir: Path, resume: bool) -> list[str]:
    return [sys.executable, "-m", "tinymnist", "train", "--data-dir", str(data_dir), "--out", str(out), "--quiet",
            "--subset", "6000", "--test-subset", "500", "--epochs", "3", "--threads", "1", "--seed", "7",
            *(["--resume"] if resume else [])]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def trial(index: int, kills: int, rng: random.Random, data_dir: Path, reference: dict[str, torch.Tensor],
          full_seconds: float) -> dict[str, Any]:
    """One run killed `kills` times at random moments, resumed after each, then finished."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        done, moments = 0, []
        while done < kills:
            proc = subprocess.Popen(train_cmd(out, data_dir, (out / "last.pt").exists()),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            moment = rng.uniform(0.5, full_seconds / 2)  # somewhere in start-up, training or saving
            try:
                proc.wait(timeout=moment)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                done += 1
                moments.append(round(moment, 2))
                continue
            break  # the run finished before this kill came
        if not (out / "metrics.json").exists():
            subprocess.run(train_cmd(out, data_dir, (out / "last.pt").exists()), check=True, capture_output=True)
        final = weights(out / "last.pt")
    identical = all(torch.equal(reference[k], final[k]) for k in reference)
    return {"trial": index, "kills": done, "kill moments (s)": " ".join(map(str, moments)), "identical": identical}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--kills", type=int, default=10, help="kills per trial")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--data-dir")
    parser.add_argument("--out", default="benchmarks/results/kill_resume.json")
    args = parser.parse_args()
    data_dir = ensure_mnist(args.data_dir)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        subprocess.run(train_cmd(Path(tmp) / "full", data_dir, False), check=True, capture_output=True)
        full_seconds = time.perf_counter() - started
        reference = weights(Path(tmp) / "full" / "last.pt")
    rows = []
    for i in range(args.trials):
        rows.append(trial(i + 1, args.kills, rng, data_dir, reference, full_seconds))
        print(rows[-1], flush=True)
    print(f"\nuninterrupted run: {full_seconds:.1f} s; kills at uniform random moments in 0.5-{full_seconds / 2:.1f} s "
          "after each (re)start\n")
    print_table(rows, ["trial", "kills", "identical", "kill moments (s)"])
    total = sum(r["kills"] for r in rows)
    same = sum(r["identical"] for r in rows)
    print(f"\n{total} kills in {len(rows)} runs; final weights bit-identical to the uninterrupted run in {same}/{len(rows)}")
    write_json(args.out, {"machine": machine(), "uninterrupted_seconds": round(full_seconds, 1), "kills": total,
                          "runs": len(rows), "identical": same, "trials": rows})
    if same != len(rows):
        sys.exit(1)


if __name__ == "__main__":
    run(main)
