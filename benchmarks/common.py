"""Helpers shared by the benchmark scripts: machine description, table/JSON output, training runs in
worker processes, and how a script ends on a user error."""

from __future__ import annotations

import datetime
import json
import multiprocessing
import os
import platform
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from tinymnist.data.mnist import MNIST, load_mnist
from tinymnist.errors import UserError

_DATA: dict[str, MNIST] = {}


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"date": datetime.date.today().isoformat(), "cpu": cpu, "cores": os.cpu_count(),
            "torch": torch.__version__, "threads": torch.get_num_threads()}


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    print("| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + " |")
    print("| " + " | ".join("-" * w for w in widths) + " |")
    for r in rows:
        print("| " + " | ".join(str(r.get(c, "")).ljust(w) for c, w in zip(columns, widths, strict=True)) + " |")


def write_json(path: str, payload: dict[str, Any]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(payload, indent=2))
    print(f"wrote {path}")


def mnist_once(data_dir: str | None) -> MNIST:
    """MNIST, read once per process (each worker of `run_jobs` reads it once, not once per run)."""
    if "data" not in _DATA:
        _DATA["data"] = load_mnist(data_dir)
    return _DATA["data"]


def run_jobs(worker: Callable[[dict[str, Any]], dict[str, Any]], jobs: list[dict[str, Any]], processes: int,
             ordered: bool = True) -> Iterator[dict[str, Any]]:
    """Each job's result from `worker` (a module-level function) as it ends: in this process when
    `processes` is 1, else in that many spawned processes (in order, or as each finishes when not
    `ordered`). SIGTERM becomes SystemExit, so leaving the pool terminates its workers: a killed
    benchmark must not leave training processes running."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if processes <= 1:
        yield from map(worker, jobs)
        return
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        yield from (pool.imap if ordered else pool.imap_unordered)(worker, jobs)


def run(main: Callable[[], None]) -> None:
    """Run a script's main; a user error (no data found, a bad checkpoint) ends in one line on
    stderr and exit status 1, like the CLI."""
    try:
        main()
    except UserError as exc:
        print(f"{Path(sys.argv[0]).name}: error: {exc}", file=sys.stderr)
        sys.exit(1)
