"""Run a model .wasm under Node.js (harness/node_run.js): its scores for many images, and its speed.
What the tests and benchmarks/web.py compare with the integer reference."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

NODE = "node"


class NodeError(RuntimeError):
    pass


@dataclass(frozen=True)
class NodeRun:
    scores: np.ndarray  # int32 N x classes
    digits: np.ndarray  # N, what tinymnist_run returned
    ms_per_image: float  # the median over the passes


def have_node() -> bool:
    return shutil.which(NODE) is not None


def harness() -> Path:
    return Path(str(resources.files("tinymnist.export.web").joinpath("harness", "node_run.js")))


def run_wasm(wasm: bytes | Path, images: np.ndarray, repeats: int = 1, classes: int = 10, timeout: float = 600) -> NodeRun:
    """Scores of uint8 N x 28 x 28 images from the module, through its exported ABI."""
    with tempfile.TemporaryDirectory(prefix="tinymnist-node-") as tmp:
        work = Path(tmp)
        module = wasm if isinstance(wasm, Path) else work / "model.wasm"
        if not isinstance(wasm, Path):
            module.write_bytes(wasm)
        (work / "images.bin").write_bytes(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
        cmd = [NODE, str(harness()), str(module), str(work / "images.bin"), str(work / "scores.bin"), str(repeats)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise NodeError(f"{NODE} failed: {exc}") from None
        if done.returncode != 0:
            raise NodeError(f"{NODE} exited {done.returncode}: {done.stderr[-2000:]}")
        raw = (work / "scores.bin").read_bytes()
    n = len(images)
    scores = np.frombuffer(raw[: n * classes * 4], dtype="<i4").reshape(n, classes).astype(np.int32)
    digits = np.frombuffer(raw[n * classes * 4:], dtype=np.uint8).astype(np.int64)
    return NodeRun(scores, digits, float(json.loads(done.stdout.strip().splitlines()[-1])["ms_per_image"]))
