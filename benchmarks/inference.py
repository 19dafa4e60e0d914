"""Inference speed of a model on this CPU: batch throughput with PyTorch eager, TorchScript and
ONNX Runtime (BatchNorm folded for the exported ones), and single-image latency.

Usage: python benchmarks/inference.py [--checkpoint CKPT] [--batch 64 256 1024] [--out benchmarks/results/inference.json]
Without --checkpoint it measures the bundled pretrained model. Throughput is measured at each batch
size given (small batches keep the activations in cache and can be faster).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, print_table, run, write_json  # noqa: E402

from tinymnist.export.portable import export, parity_inputs  # noqa: E402
from tinymnist.models.bundled import pretrained_path  # noqa: E402
from tinymnist.models.fold import folded_for_inference  # noqa: E402
from tinymnist.models.summary import summarize  # noqa: E402
from tinymnist.training.checkpoint import load_model  # noqa: E402


def throughput(fn, x, seconds: float = 3.0) -> float:
    fn(x)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        fn(x)
        count += len(x)
    return count / (time.perf_counter() - started)


def latency_ms(fn, x, repeats: int = 2000) -> tuple[float, float]:
    for _ in range(50):
        fn(x)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - started)
    times.sort()
    return 1000 * statistics.median(times), 1000 * times[int(0.99 * len(times))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--out", default="benchmarks/results/inference.json")
    args = parser.parse_args()
    import onnxruntime as ort

    checkpoint = args.checkpoint or str(pretrained_path())
    model = load_model(checkpoint)
    macs = summarize(model).macs
    tmp = Path(tempfile.mkdtemp())
    export(checkpoint, "onnx", tmp / "m.onnx")
    export(checkpoint, "torchscript", tmp / "m.pt")
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(tmp / "m.onnx"), options, providers=["CPUExecutionProvider"])
    scripted = torch.jit.load(str(tmp / "m.pt"))

    folded = folded_for_inference(model)

    def eager(x):
        with torch.inference_mode():
            return model(x)

    def eager_folded(x):
        with torch.inference_mode():
            return folded(x)

    def script(x):
        with torch.inference_mode():
            return scripted(x)

    def onnx(x):
        return session.run(None, {"input": x.numpy()})

    single = parity_inputs(1)
    rows = []
    runtimes = [("PyTorch eager", eager), ("PyTorch eager (BN folded)", eager_folded),
                ("TorchScript (BN folded)", script), ("ONNX Runtime (BN folded)", onnx)]
    for name, fn in runtimes:
        rates = {batch: throughput(fn, parity_inputs(batch)) for batch in args.batch}
        median, p99 = latency_ms(fn, single)
        row = {"runtime": name, **{f"images/s, batch {b}": f"{r:,.0f}" for b, r in rates.items()}}
        rows.append({**row, "best GFLOP/s": f"{2 * macs * max(rates.values()) / 1e9:.1f}",
                     "1-image median ms": f"{median:.3f}", "1-image p99 ms": f"{p99:.3f}"})
        print(f"{name}: {max(rates.values()):,.0f} images/s at best; single image {median:.3f} ms median", flush=True)
    print(f"\nmodel: {checkpoint} ({macs:,} MACs per image), {torch.get_num_threads()} threads\n")
    print_table(rows, list(rows[0]))
    write_json(args.out, {"machine": machine(), "checkpoint": Path(checkpoint).name, "macs": macs, "rows": rows})


if __name__ == "__main__":
    run(main)
