"""Check that this checkout behaves exactly as an earlier commit: the same config and seed give
bit-identical weights, optimizer state and history (both engines), and the int8 C export of the
bundled model is the same C.

    python tools/check_behaviour.py [--base ed7cd7c] [--json out.json]

The base commit is checked out in a temporary git worktree and its native engine built in place
(a minute or two); each version then runs in its own subprocess with PYTHONPATH pointing at its
sources, through the public API only (`tinymnist.train`, `tinymnist.load`), so that module moves
between the two versions do not matter. Prints a table; exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = os.environ.get("TINYMNIST_DATA", str(ROOT.parent / "shared" / "datasets" / "mnist"))

TRAIN = """
import sys, json, tinymnist
engine, out, extra = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
tinymnist.train(dict(epochs=2, train_subset=2000, test_subset=500, threads=1, engine=engine, seed=5, **extra),
                data_dir=sys.argv[4], out=out, verbose=False)
"""

# Identical generated C means identical int32 scores on every input; a change to the C (a runtime
# reorganized) needs the scores compared instead (benchmarks/mcu.py runs all 10,000 test images).
EXPORT = """
import sys
from tinymnist.cli import main
sys.exit(main(["export", sys.argv[1], "--format", "c", "--out", sys.argv[2], "--data-dir", sys.argv[3]]))
"""

CASES = [
    ("native", {"ema": 0.9, "val_size": 300}),
    ("eager", {"ema": 0.9, "val_size": 300}),
    ("native", {"model": "reference"}),
    ("eager", {"model": "stepped", "precise_bn": 256}),
]


def run(src: Path, script: str, *args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", script, *args], check=True, env=env, capture_output=True, text=True)


def build_in_place(tree: Path) -> None:
    if not list((tree / "src" / "tinymnist").rglob("_tm_generic*.so")):
        subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace", "-q"], cwd=tree, check=True,
                       capture_output=True)


def same(a: object, b: object) -> bool:
    import torch

    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return isinstance(b, list | tuple) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def compare_runs(old: Path, new: Path) -> dict[str, bool]:
    import torch

    a = torch.load(old / "last.pt", weights_only=False)
    b = torch.load(new / "last.pt", weights_only=False)
    untimed = [[{k: v for k, v in r.items() if k != "seconds"} for r in ck["history"]] for ck in (a, b)]
    return {name: same(a[name], b[name]) for name in ("model", "ema", "optimizer", "scheduler", "rng", "lrs")} | {
        "history": untimed[0] == untimed[1]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="ed7cd7c", help="the commit to compare with (default: the last before the redesign)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(base), args.base], check=True)
        try:
            build_in_place(base)
            build_in_place(ROOT)
            for k, (engine, extra) in enumerate(CASES):
                outs = {}
                for name, tree in (("old", base), ("new", ROOT)):
                    outs[name] = Path(tmp) / f"{name}-{k}"
                    run(tree / "src", TRAIN, engine, str(outs[name]), json.dumps(extra), DATA)
                checks = compare_runs(outs["old"], outs["new"])
                results.append({"check": f"2-epoch run, {engine}, {extra}", "identical": all(checks.values()),
                                "parts": checks})
            exported = {}
            for name, tree in (("old", base), ("new", ROOT)):
                out = Path(tmp) / f"c-{name}"
                ckpt = tree / "src" / "tinymnist" / "pretrained" / "separable.pt"
                run(tree / "src", EXPORT, str(ckpt), str(out), DATA)
                exported[name] = {f.name: f.read_bytes() for f in sorted(out.iterdir())}
            results.append({"check": "int8 C export of the bundled model: generated files byte for byte", "identical":
                            exported["old"] == exported["new"], "parts": {}})
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)
    print(f"| check (base {args.base} vs this checkout) | identical |\n| --- | --- |")
    for r in results:
        bad = [k for k, v in r["parts"].items() if not v]
        print(f"| {r['check']} | {'yes' if r['identical'] else 'NO: ' + ', '.join(bad)} |")
    if args.json:
        args.json.write_text(json.dumps({"base": args.base, "results": results}, indent=2))
    return 0 if all(r["identical"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
