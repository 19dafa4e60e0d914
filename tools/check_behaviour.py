"""Check that this checkout behaves exactly as an earlier commit (default ed7cd7c, the last before the
redesign of issue 28):

(a) training: the same config and seed give bit-identical weights, EMA, optimizer and scheduler state,
    RNG state, per-step learning rates, history.json and metrics.json (timings aside), with both engines;
(b) the int8 C export of the bundled checkpoint gives the same int32 scores on all 10,000 test images
    (host builds of the portable C and of the SIMD kernels with the DSP instructions emulated);
(c) a run directory written by the old code still works with this one: a run interrupted after
    epoch 1 of 2 resumes to the same weights as the old code's uninterrupted run, and `report` and
    `export --format c` accept the old code's finished run (the export scoring as the old code's).

    python tools/check_behaviour.py [--base ed7cd7c] [--json out.json] [--work DIR]

The base commit is checked out in a git worktree and its native engine built in place (about two
minutes; --work keeps both for the next call). Both versions run in subprocesses with PYTHONPATH at
their own sources, through what both have in common: the `tinymnist` command line (and its entry
point `tinymnist.cli.main`, to stop a run after its first epoch). This checkout's native engine is
built in place when missing or older than its sources. Everything runs on one thread: the thread
count is part of a run's configuration, and the same seed on another count gives other weights.
Prints a table; exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]

TRAIN = ["--epochs", "2", "--subset", "3000", "--test-subset", "1000", "--seed", "3", "--threads", "1"]
# The default model's runs spell out batch 64 and peak LR 0.15 (TrainConfig's defaults, which it trained
# with until its recipe of 2026-12-07): the runs compare the training code, whichever recipe a base has.
OLD_DEFAULT = ["--batch-size", "64", "--lr", "0.15"]
CASES = {  # what each run adds to TRAIN: both engines, every model family, the optional parts of the loop
    "native, separable, EMA, validation split": ["--engine", "native", "--ema", "0.9", "--val-size", "300", *OLD_DEFAULT],
    "eager, separable, EMA, validation split": ["--engine", "eager", "--ema", "0.9", "--val-size", "300", *OLD_DEFAULT],
    "native, reference": ["--engine", "native", "--model", "reference"],
    "eager, reference (dropout)": ["--engine", "eager", "--model", "reference"],
    "native, smooth, Adam, no augmentation": ["--engine", "native", "--model", "smooth", "--optimizer", "adam", "--lr",
                                              "0.01", "--no-augment"],
    "eager, stepped, AdamW, article schedule, precise BN": ["--engine", "eager", "--model", "stepped", "--optimizer",
                                                            "adamw", "--lr", "0.01", "--schedule", "article",
                                                            "--precise-bn", "512"],
}
RESUMED = ("native, separable, EMA, validation split", "eager, separable, EMA, validation split")
RUN_FILES = ("config.json", "history.json", "metrics.json", "last.pt")
TIMINGS = {"seconds", "train_seconds", "images_per_second"}  # measured, never equal twice

# Stops `tinymnist train` as Ctrl-C would right after epoch 1: the CLI prints an epoch's line after
# that epoch's checkpoint is written, so the run directory holds exactly epoch 1 of the run.
STOP_AFTER_EPOCH_1 = """
import io, re, sys
from tinymnist.cli import main

class Stop(io.TextIOBase):
    def write(self, text):
        sys.__stdout__.write(text)
        if re.match(r"epoch +1/", text):
            raise KeyboardInterrupt
        return len(text)

sys.stdout = Stop()
sys.exit(main(sys.argv[1:]))
"""

# Reads 784-byte images from stdin; writes per image the TINYMNIST_CLASSES int32 scores and the
# predicted digit (as an int32), in native byte order. Only the exported API is used, so any layout
# of the exported files works.
SCORES_MAIN = """
#include <stdint.h>
#include <stdio.h>

#include "tinymnist_model.h"

int main(void)
{
    uint8_t image[784];
    int32_t out[TINYMNIST_CLASSES + 1];
    while (fread(image, 1, sizeof image, stdin) == sizeof image) {
        tinymnist_scores(image, out);
        out[TINYMNIST_CLASSES] = (int32_t)tinymnist_predict(image);
        if (fwrite(out, sizeof out, 1, stdout) != 1) {
            return 1;
        }
    }
    return fflush(stdout) != 0;
}
"""
C_BUILDS = {"portable C": [], "SIMD kernels, DSP emulated": ["-DTM_EMULATE_DSP"]}


class CheckFailed(Exception):
    """A command failed, so the check cannot finish: it fails with this line."""


@dataclass
class Check:
    name: str
    ok: bool | None  # None: information only, not part of the verdict
    detail: str = ""


@dataclass(frozen=True)
class Version:
    label: str  # "old" (the base commit) or "new" (this checkout)
    tree: Path
    data_dir: Path
    cwd: Path  # commands run here, so that nothing lands in a source tree

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(self.tree / "src"), "OMP_NUM_THREADS": "1",
                "TINYMNIST_DATA": str(self.data_dir)}

    def python(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, *args], cwd=self.cwd, env=self.env(), capture_output=True, text=True,
                              check=False)

    def cli(self, *args: str, expect: tuple[int, ...] = (0,)) -> str:
        done = self.python("-m", "tinymnist", *args)
        if done.returncode not in expect:
            raise CheckFailed(f"{self.label} code: `tinymnist {' '.join(args)}` exited {done.returncode}: "
                           f"{(done.stderr or done.stdout).strip()[-500:]}")
        return done.stdout

    def stop_after_epoch_1(self, *args: str) -> None:
        done = self.python("-c", STOP_AFTER_EPOCH_1, *args)
        if done.returncode != 130:
            raise CheckFailed(f"{self.label} code: the interrupted run exited {done.returncode}, not 130: "
                           f"{done.stderr.strip()[-500:]}")

    @property
    def bundled(self) -> Path:
        return self.tree / "src" / "tinymnist" / "pretrained" / "separable.pt"


# ---------------------------------------------------------------------------------------------
# Comparing


def differences(old: Any, new: Any, where: str = "") -> list[str]:
    """Where `new` differs from `old` (paths such as `model.net.0.weight`, `history[1].test_loss`): tensors
    bit for bit (dtype and shape included), numbers exactly and of the same type (NaN equal to NaN),
    dictionaries key by key, leaving out measured times. A key only one side has is a difference too."""
    def at(key: object) -> str:
        return f"{where}.{key}" if where else str(key)

    if isinstance(old, torch.Tensor):
        same = (isinstance(new, torch.Tensor) and old.dtype == new.dtype and old.shape == new.shape
                and torch.equal(old, new))
        return [] if same else [where or "tensor"]
    if isinstance(old, dict):
        if not isinstance(new, dict):
            return [where or "value"]
        return ([f"{at(k)} (only in old)" for k in old if k not in new] + [f"{at(k)} (only in new)" for k in new if k not in old]
                + [d for k in old if k in new and k not in TIMINGS for d in differences(old[k], new[k], at(k))])
    if isinstance(old, list | tuple):
        if not isinstance(new, list | tuple) or len(old) != len(new):
            return [f"{where or 'list'} (length {len(old)} -> {len(new) if isinstance(new, list | tuple) else '?'})"]
        return [d for i, (a, b) in enumerate(zip(old, new, strict=True)) for d in differences(a, b, f"{where}[{i}]")]
    if isinstance(old, float) and isinstance(new, float) and math.isnan(old) and math.isnan(new):
        return []
    return [] if type(old) is type(new) and old == new else [where or "value"]


def run_differences(old: Path, new: Path) -> list[str]:
    """What differs between two run directories' files (the checkpoint with every tensor)."""
    found = []
    for name in RUN_FILES:
        if not (new / name).exists():
            found.append(f"{name} missing")
            continue
        if name.endswith(".pt"):
            a, b = (torch.load(d / name, map_location="cpu", weights_only=False) for d in (old, new))
            if isinstance(a, dict) and "config" in a:
                a = {**a, "config": as_read_now(a["config"])}
        else:
            a, b = (json.loads((d / name).read_text()) for d in (old, new))
            if name == "config.json":
                a = as_read_now(a)
        found += [f"{name}: {d}" for d in differences(a, b)]
    return found


def as_read_now(config: Any) -> Any:
    """An old run's saved configuration as this checkout reads it (`TrainConfig.from_saved`): a field
    added since takes the value that means "as before", so it differs only when the new run's does."""
    from tinymnist.training.config import ADDED_LATER

    return {**ADDED_LATER, **config} if isinstance(config, dict) else config


def verdict(found: list[str], shown: int = 6) -> tuple[bool, str]:
    if not found:
        return True, "identical"
    more = f" and {len(found) - shown} more" if len(found) > shown else ""
    return False, "DIFFERENT: " + "; ".join(found[:shown]) + more


# ---------------------------------------------------------------------------------------------
# The C export's scores


def test_images(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 MNIST test images (N x 784 uint8) and labels, read from the IDX files."""
    def idx(stem: str, header: int) -> np.ndarray:
        for path in (data_dir / stem, data_dir / f"{stem}.gz"):
            if path.exists():
                raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
                return np.frombuffer(raw[header:], dtype=np.uint8)
        raise SystemExit(f"check_behaviour.py: error: no {stem}[.gz] in {data_dir}; pass --data-dir")

    return idx("t10k-images-idx3-ubyte", 16).reshape(-1, 784), idx("t10k-labels-idx1-ubyte", 8)


def c_scores(export: Path, build: Path, images: np.ndarray) -> dict[str, np.ndarray]:
    """Per host build (C_BUILDS): the exported C's int32 scores, N x (classes + 1), the last column the
    predicted digit. Every .c file of the export is compiled with SCORES_MAIN."""
    build.mkdir(parents=True, exist_ok=True)
    (build / "scores_main.c").write_text(SCORES_MAIN)
    sources = sorted(str(p) for p in export.rglob("*.c"))
    includes = sorted({f"-I{p.parent}" for p in export.rglob("*.h")})
    scores = {}
    for k, (name, defines) in enumerate(C_BUILDS.items()):
        exe = build / f"scores-{k}"
        done = subprocess.run(["gcc", "-std=c99", "-O2", *defines, *includes, *sources, str(build / "scores_main.c"),
                               "-o", str(exe)], capture_output=True, text=True, check=False)
        if done.returncode:
            raise CheckFailed(f"the C export in {export} does not build ({name}): {done.stderr.strip()[-500:]}")
        ran = subprocess.run([str(exe)], input=images.tobytes(), capture_output=True, check=False)
        if ran.returncode:
            raise CheckFailed(f"the host build of {export} ({name}) exited {ran.returncode}")
        scores[name] = np.frombuffer(ran.stdout, dtype=np.int32).reshape(len(images), -1)
    return scores


def compare_scores(what: str, old: dict[str, np.ndarray], new: dict[str, np.ndarray], labels: np.ndarray) -> list[Check]:
    checks = []
    for build, a in old.items():
        b = new[build]
        if a.shape != b.shape:
            checks.append(Check(f"{what}: {build}", False, f"DIFFERENT: shapes {a.shape} and {b.shape}"))
            continue
        rows = int((a != b).any(1).sum())
        accuracy = 100.0 * float((b[:, -1] == labels).mean())
        checks.append(Check(f"{what}: {build}", rows == 0,
                            f"identical on {len(a):,} images (int8 accuracy {accuracy:.2f}%)" if rows == 0 else
                            f"DIFFERENT on {rows:,} of {len(a):,} images"))
    return checks


# ---------------------------------------------------------------------------------------------
# Setting up the two versions


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout.strip()


def base_tree(commit: str, path: Path) -> Path:
    """A worktree of `commit` at `path` (one already there at that commit is reused, with its build)."""
    here = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    if (path / ".git").exists() and here.stdout.strip() == commit:
        return path
    remove_tree(path)
    # --force: a folder deleted by hand leaves its worktree registered, which would refuse the path
    git("worktree", "add", "--quiet", "--force", "--detach", str(path), commit)
    return path


def remove_tree(path: Path) -> None:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], capture_output=True, check=False)
    shutil.rmtree(path, ignore_errors=True)


def build_native(tree: Path) -> None:
    """Build the native engine in place; setuptools skips an extension that is newer than its sources."""
    done = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace", "-q"], cwd=tree, capture_output=True,
                          text=True, check=False)
    if done.returncode or not list((tree / "src" / "tinymnist").rglob("_tm_*.so")):
        raise SystemExit(f"check_behaviour.py: error: the native engine of {tree} did not build: "
                         f"{done.stderr.strip()[-1000:]}")


def data_dir(arg: str | None) -> Path:
    # The package's own default, spelled out: the checker reads the test images itself.
    return Path(arg or os.environ.get("TINYMNIST_DATA") or Path.home() / ".cache" / "tinymnist" / "mnist").expanduser()


# ---------------------------------------------------------------------------------------------
# The checks


def check_training(old: Version, new: Version, work: Path) -> list[Check]:
    checks = []
    for k, (name, flags) in enumerate(CASES.items()):
        try:
            for v in (old, new):
                v.cli("train", *TRAIN, *flags, "--quiet", "--out", str(work / f"train-{k}-{v.label}"))
            ok, detail = verdict(run_differences(work / f"train-{k}-old", work / f"train-{k}-new"))
        except CheckFailed as exc:
            ok, detail = False, str(exc)
        checks.append(Check(f"(a) train {name}: weights, EMA, optimizer, RNG, history, metrics", ok, detail))
    return checks


def check_bundled_export(old: Version, new: Version, work: Path, images: np.ndarray, labels: np.ndarray) -> list[Check]:
    a, b = (torch.load(v.bundled, map_location="cpu", weights_only=False) for v in (old, new))
    checks = [Check("(b) bundled checkpoint pretrained/separable.pt: every tensor and field", *verdict(differences(a, b)))]
    try:
        scores, files = {}, {}
        for v in (old, new):
            out = work / f"c-bundled-{v.label}"
            v.cli("export", str(v.bundled), "--format", "c", "--out", str(out))
            scores[v.label] = c_scores(out, work / f"c-bundled-build-{v.label}", images)
            files[v.label] = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
        checks += compare_scores("(b) int8 C export of the bundled checkpoint, int32 scores", scores["old"], scores["new"],
                                 labels)
        emulated = any(b"TM_EMULATE_DSP" in text for text in files["new"].values())
        if not emulated:
            checks.append(Check("(b) the new C export has TM_EMULATE_DSP", False,
                                "NO: its SIMD build above was the portable C again; update C_BUILDS"))
        same = files["old"] == files["new"]
        checks.append(Check("(b) generated C files, byte for byte (information)", None,
                            "identical" if same else f"differ: old {sorted(files['old'])}, new {sorted(files['new'])}"))
    except CheckFailed as exc:
        checks.append(Check("(b) int8 C export of the bundled checkpoint, int32 scores", False, str(exc)))
    return checks


def check_old_run_directory(old: Version, new: Version, work: Path, images: np.ndarray, labels: np.ndarray) -> list[Check]:
    """Old run directories under the new code; the old code's uninterrupted runs come from check_training."""
    checks = []
    names = list(CASES)
    for name in RESUMED:
        k = names.index(name)
        full, run = work / f"train-{k}-old", work / f"resume-{k}"
        try:
            if not (full / "last.pt").exists():
                raise CheckFailed("the old code's uninterrupted run is missing (see its training check)")
            old.stop_after_epoch_1("train", *TRAIN, *CASES[name], "--out", str(run))
            epoch = torch.load(run / "last.pt", map_location="cpu", weights_only=False)["epoch"]
            if epoch != 1:
                raise CheckFailed(f"the old code's interrupted run holds epoch {epoch}, not 1")
            new.cli("train", "--resume", "--out", str(run), "--quiet")
            ok, detail = verdict(run_differences(full, run))
        except CheckFailed as exc:
            ok, detail = False, str(exc)
        checks.append(Check(f"(c) old run ({name}) stopped after epoch 1 of 2, `train --resume` by the new code: "
                            "same files as the old code's uninterrupted run", ok, detail))

    finished = work / f"train-{names.index(RESUMED[0])}-old"
    try:
        if not (finished / "last.pt").exists():
            raise CheckFailed("the old code's run is missing (see its training check)")
        reported = work / "report-new"
        shutil.copytree(finished, reported)
        new.cli("report", str(reported))
        written = [p.name for p in reported.iterdir() if p.name not in RUN_FILES]
        ok, detail = (True, f"wrote {', '.join(sorted(written))}") if "report.md" in written else (False, "NO report.md")
    except CheckFailed as exc:
        ok, detail = False, str(exc)
    checks.append(Check(f"(c) `report` by the new code on an old run directory ({RESUMED[0]})", ok, detail))

    try:
        if not (finished / "last.pt").exists():
            raise CheckFailed("the old code's run is missing (see its training check)")
        scores = {}
        for v in (old, new):
            out = work / f"c-run-{v.label}"
            v.cli("export", str(finished), "--format", "c", "--out", str(out))
            scores[v.label] = c_scores(out, work / f"c-run-build-{v.label}", images)
        checks += compare_scores(f"(c) `export --format c` of an old run directory ({RESUMED[0]}), int32 scores as the "
                                 "old code's export", scores["old"], scores["new"], labels)
    except CheckFailed as exc:
        checks.append(Check("(c) `export --format c` of an old run directory", False, str(exc)))
    return checks


# ---------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="ed7cd7c", help="the commit to compare with (default: ed7cd7c, the last "
                        "before the redesign)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--work", type=Path, help="keep the base worktree (with its build, reused by the next call "
                        "with the same --work) and every run here; default: a temporary folder, removed")
    parser.add_argument("--data-dir", help="directory with the MNIST IDX files (default: $TINYMNIST_DATA, else "
                        "~/.cache/tinymnist/mnist)")
    args = parser.parse_args()
    started = time.perf_counter()
    commit = git("rev-parse", "--verify", f"{args.base}^{{commit}}")
    head = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    data = data_dir(args.data_dir)
    images, labels = test_images(data)

    keep = args.work is not None
    work = args.work.resolve() if keep else Path(tempfile.mkdtemp(prefix="tinymnist-behaviour-"))
    runs = work / "runs"
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir(parents=True)
    base = work / "base"
    try:
        print(f"building the native engine of {args.base} ({commit[:12]}) in {base} and of this checkout ...", flush=True)
        base_tree(commit, base)
        build_native(base)
        build_native(ROOT)
        old, new = Version("old", base, data, runs), Version("new", ROOT, data, runs)
        print("training, exporting and resuming with both versions ...", flush=True)
        checks = check_training(old, new, runs)
        checks += check_bundled_export(old, new, runs, images, labels)
        checks += check_old_run_directory(old, new, runs, images, labels)
    finally:
        if not keep:
            remove_tree(base)
            shutil.rmtree(work, ignore_errors=True)

    failed = [c for c in checks if c.ok is False]
    seconds = time.perf_counter() - started
    print(f"\n| check: {args.base} ({commit[:9]}) vs this checkout ({head[:9]}{', with uncommitted changes' if dirty else ''}) "
          "| result |\n| --- | --- |")
    for c in checks:
        print(f"| {c.name} | {c.detail} |")
    counted = [c for c in checks if c.ok is not None]
    print(f"\n{len(counted) - len(failed)} of {len(counted)} checks passed in {seconds:.0f} s"
          + (f"; runs kept in {runs}" if keep else ""))
    if args.json:
        args.json.write_text(json.dumps({
            "base": commit, "head": head, "uncommitted_changes": dirty, "passed": not failed, "seconds": round(seconds),
            "checks": [{"check": c.name, "ok": c.ok, "detail": c.detail} for c in checks]}, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
