"""`tinymnist serve` under load and hostile clients, on loopback only.

Usage: python benchmarks/serve_load.py [--requests 5000] [--clients 32] [--max-seconds 150] [--seed 0]
                                       [--out benchmarks/results/serve_load.json]

Starts `tinymnist serve --device cpu` as a subprocess on 127.0.0.1 (a free port), waits for /health,
then sends --requests POST /api/predict requests from --clients threads (http.client, keep-alive),
stopping early after --max-seconds. The mix: MNIST test digits rendered as PNG and JPEG and sent as
raw image/* bytes and as multipart/form-data uploads; garbage bytes labelled image/png; an image with
a wrong content type; truncated images; bodies over the 2 MiB limit with a Content-Length and chunked.
A client whose upload is cut short by the server's early 413 reads that answer, as httpx and curl do.

It reports requests/s, p50/p99 latency, status codes per kind, the server's RSS before and after
(VmRSS, /proc/PID/status), the accuracy of the answers to real digits and their agreement with
`predict_digits` on `load_digit` of the same bytes in this process; then it stops the server with
SIGTERM. Goals, each printed PASS or FAIL (exit status 1 on a FAIL): no 5xx, no dropped connection,
every real digit answered with the label predict gives, RSS growth under 50 MB, and a clean exit
(status 0, no traceback on stderr).
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, print_table, run, write_json  # noqa: E402

from tinymnist.data.mnist import load_mnist  # noqa: E402
from tinymnist.data.preprocess import load_digit  # noqa: E402
from tinymnist.errors import UserError  # noqa: E402
from tinymnist.evaluation.predict import predict_digits  # noqa: E402
from tinymnist.serve import server as serve  # noqa: E402
from tinymnist.serve.server import MAX_BODY_BYTES, PREDICT_THREADS  # noqa: E402
from tinymnist.training.checkpoint import load_model

DIGITS = 1000  # distinct MNIST test digits sent (the first ones of the test set)
KINDS = {  # kind: (share of the requests, the status it should get)
    "digit png raw": (0.15, 200), "digit jpeg raw": (0.15, 200),
    "digit png form": (0.15, 200), "digit jpeg form": (0.15, 200),
    "garbage image/png": (0.10, 422), "wrong content type": (0.10, 415), "truncated image": (0.10, 422),
    "oversized, Content-Length": (0.05, 413), "oversized, chunked": (0.05, 413),
}
RSS_GROWTH_LIMIT_MB = 50
CHUNK = 64 * 1024


@dataclass
class Case:
    kind: str
    body: bytes
    content_type: str
    chunked: bool = False
    digit: int | None = None  # index into the digit table, for real digits


@dataclass
class Outcome:
    kind: str
    seconds: float
    status: int | None  # None: the connection failed without an answer
    digit: int | None = None
    label: int | None = None
    cut_short: bool = False  # the server answered (413) and closed before the whole body was sent
    error: str = ""


@dataclass
class Digits:
    """The real digits sent: PNG and JPEG bytes, true labels, and what predict says in this process."""
    png: list[bytes] = field(default_factory=list)
    jpeg: list[bytes] = field(default_factory=list)
    truth: list[int] = field(default_factory=list)
    expected: dict[tuple[str, int], int] = field(default_factory=dict)  # (format, index) -> label


def encode(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def make_digits(count: int) -> Digits:
    """The first `count` MNIST test digits as PNG and JPEG, with the label predict_digits gives each."""
    mnist = load_mnist()
    model = load_model(None, "cpu")
    digits = Digits()
    for i in range(count):
        digits.png.append(encode(mnist.test_images[i], "PNG"))
        digits.jpeg.append(encode(mnist.test_images[i], "JPEG"))
        digits.truth.append(int(mnist.test_labels[i]))
        for fmt, raw in (("png", digits.png[i]), ("jpeg", digits.jpeg[i])):
            digits.expected[fmt, i] = predict_digits(model, load_digit(raw, name="digit")[None], top=3)[0]["label"]
    return digits


def multipart(raw: bytes, filename: str, content_type: str) -> tuple[bytes, str]:
    boundary = "tinymnist-load-boundary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n").encode() + raw + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def make_case(kind: str, rng: random.Random, digits: Digits, blob: bytes) -> Case:
    """One request of a kind; `blob` is random bytes to cut garbage and oversized bodies from."""
    i = rng.randrange(len(digits.png))
    if kind.startswith("digit"):
        fmt = "png" if "png" in kind else "jpeg"
        raw = digits.png[i] if fmt == "png" else digits.jpeg[i]
        if kind.endswith("form"):
            body, content_type = multipart(raw, f"digit.{fmt}", f"image/{fmt}")
            return Case(kind, body, content_type, digit=i)
        return Case(kind, raw, f"image/{fmt}", digit=i)
    if kind == "garbage image/png":
        start = rng.randrange(len(blob) - 4096)
        return Case(kind, blob[start : start + rng.randrange(1, 4096)], "image/png")
    if kind == "wrong content type":
        return Case(kind, digits.png[i], rng.choice(["text/plain", "application/octet-stream", "application/xml", ""]))
    if kind == "truncated image":
        raw = rng.choice([digits.png[i], digits.jpeg[i]])
        return Case(kind, raw[: rng.randrange(8, len(raw) // 2)], "image/png" if raw.startswith(b"\x89PNG") else "image/jpeg")
    size = MAX_BODY_BYTES + rng.randrange(1, MAX_BODY_BYTES // 2)
    return Case(kind, blob[:size], "image/png", chunked=kind.endswith("chunked"))


def schedule(count: int, seed: int, digits: Digits) -> list[Case]:
    rng = random.Random(seed)
    blob = rng.randbytes(MAX_BODY_BYTES * 3 // 2)
    kinds = rng.choices(list(KINDS), weights=[share for share, _ in KINDS.values()], k=count)
    return [make_case(kind, rng, digits, blob) for kind in kinds]


def send(conn: http.client.HTTPConnection, case: Case) -> tuple[int, bytes, bool]:
    """POST one case; its status, body, and whether the upload was cut short by an early answer."""
    headers = {"Content-Type": case.content_type} if case.content_type else {}
    cut_short = False
    try:
        if case.chunked:
            chunks = (case.body[i : i + CHUNK] for i in range(0, len(case.body), CHUNK))
            conn.request("POST", "/api/predict", body=chunks, headers=headers, encode_chunked=True)
        else:
            conn.request("POST", "/api/predict", body=case.body, headers=headers)
    except (BrokenPipeError, ConnectionResetError):
        cut_short = True  # the server answered early and closed: read that answer (as httpx and curl do)
    response = conn.getresponse()
    data = response.read()
    if response.will_close:
        conn.close()
    return response.status, data, cut_short


def client(port: int, cases: list[Case], next_index: Any, deadline: float, outcomes: list[Outcome]) -> None:
    """One client thread: take the next case until none is left or the deadline passes."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while time.monotonic() < deadline:
        index = next_index()
        if index >= len(cases):
            break
        case = cases[index]
        started = time.perf_counter()
        try:
            status, data, cut_short = send(conn, case)
        except (OSError, http.client.HTTPException) as exc:
            outcomes.append(Outcome(case.kind, time.perf_counter() - started, None, case.digit, error=repr(exc)))
            conn.close()
            continue
        label = json.loads(data)["label"] if status == 200 and case.digit is not None else None
        outcomes.append(Outcome(case.kind, time.perf_counter() - started, status, case.digit, label, cut_short))
    conn.close()


def counter() -> Any:
    lock, state = threading.Lock(), {"next": 0}

    def take() -> int:
        with lock:
            state["next"] += 1
            return state["next"] - 1
    return take


def load(port: int, cases: list[Case], clients: int, max_seconds: float) -> tuple[list[Outcome], float]:
    outcomes: list[Outcome] = []  # list.append is atomic under the GIL
    take, deadline = counter(), time.monotonic() + max_seconds
    threads = [threading.Thread(target=client, args=(port, cases, take, deadline, outcomes)) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes, time.perf_counter() - started


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, stderr: Any) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "tinymnist", "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--device", "cpu"], stdout=subprocess.DEVNULL, stderr=stderr)
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
            return proc
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    proc.kill()
    proc.wait()
    raise UserError(f"tinymnist serve did not start on port {port}; run it by hand to see why")


def rss_mb(pid: int, field_name: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024
    raise UserError(f"/proc/{pid}/status has no {field_name}; this benchmark needs Linux")


def stop_server(proc: subprocess.Popen) -> tuple[int | None, float]:
    """SIGTERM; the exit status (None if it had to be killed after 30 s) and the seconds it took."""
    started = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30), time.perf_counter() - started
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None, time.perf_counter() - started


def limits() -> dict[str, int]:
    """The server's limits, as `tinymnist serve` runs with its defaults."""
    return {name.lower(): getattr(serve, name) for name in ("MAX_BODY_BYTES", "DRAIN_BYTES", "MAX_CONNECTIONS",
                                                            "REQUEST_TIMEOUT_S", "KEEP_ALIVE_S", "SHUTDOWN_GRACE_S")}


def percentile_ms(seconds: list[float], q: float) -> float:
    return round(1000 * float(np.percentile(seconds, q)), 1) if seconds else float("nan")


def kind_rows(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    rows = []
    for kind, (_, expected) in KINDS.items():
        mine = [o for o in outcomes if o.kind == kind]
        statuses = Counter("error" if o.status is None else o.status for o in mine)
        rows.append({"kind": kind, "requests": len(mine), "expected": expected,
                     "statuses": " ".join(f"{s}:{n}" for s, n in sorted(statuses.items(), key=str)),
                     "cut short": sum(o.cut_short for o in mine),
                     "p50 ms": percentile_ms([o.seconds for o in mine], 50),
                     "p99 ms": percentile_ms([o.seconds for o in mine], 99)})
    return rows


def digit_scores(outcomes: list[Outcome], digits: Digits) -> dict[str, Any]:
    answered = [o for o in outcomes if o.digit is not None]
    correct = sum(o.label == digits.truth[o.digit] for o in answered)
    agree = sum(o.label == digits.expected["png" if "png" in o.kind else "jpeg", o.digit] for o in answered)
    return {"real_digits": len(answered), "accuracy": round(100 * correct / max(len(answered), 1), 2),
            "agree_with_predict": agree, "disagree_with_predict": len(answered) - agree}


def goals(summary: dict[str, Any]) -> list[tuple[str, bool, str]]:
    return [
        ("no 5xx", summary["5xx"] == 0, f"{summary['5xx']} responses with 5xx"),
        ("no dropped connection", summary["connection_errors"] == 0, f"{summary['connection_errors']} connection errors"),
        ("every real digit answered as predict answers it", summary["disagree_with_predict"] == 0,
         f"{summary['agree_with_predict']} of {summary['real_digits']} agree"),
        (f"RSS growth < {RSS_GROWTH_LIMIT_MB} MB", summary["rss_growth_mb"] < RSS_GROWTH_LIMIT_MB,
         f"{summary['rss_before_mb']} -> {summary['rss_after_mb']} MB (+{summary['rss_growth_mb']})"),
        ("clean exit on SIGTERM", summary["exit_status"] == 0 and not summary["tracebacks"],
         f"status {summary['exit_status']} after {summary['shutdown_s']} s, {summary['tracebacks']} tracebacks on stderr"),
    ]


def measure(args: argparse.Namespace, digits: Digits, cases: list[Case]) -> tuple[list[Outcome], dict[str, Any]]:
    """Start the server, warm it up, run the load, stop it; the outcomes and the summary figures."""
    port, load_before = free_port(), os.getloadavg()[0]
    with tempfile.TemporaryFile() as stderr:
        proc = start_server(port, stderr)
        try:
            rss_start = rss_mb(proc.pid)
            load(port, cases[:50], 1, args.max_seconds)  # warm-up: one of (nearly) every kind, in turn
            rss_before = rss_mb(proc.pid)
            print(f"server up and warmed up; sending {len(cases)} requests from {args.clients} clients", flush=True)
            outcomes, seconds = load(port, cases, args.clients, args.max_seconds)
            rss_after, rss_peak = rss_mb(proc.pid), rss_mb(proc.pid, "VmHWM")
        finally:
            status, shutdown_s = stop_server(proc)
        stderr.seek(0)
        log = stderr.read().decode(errors="replace")
    statuses = Counter(o.status for o in outcomes if o.status is not None)
    summary = {"requests": len(outcomes), "clients": args.clients, "seconds": round(seconds, 2),
               "requests_per_s": round(len(outcomes) / seconds, 1),
               "p50_ms": percentile_ms([o.seconds for o in outcomes], 50),
               "p99_ms": percentile_ms([o.seconds for o in outcomes], 99),
               "status_counts": {str(s): n for s, n in sorted(statuses.items())},
               "5xx": sum(n for s, n in statuses.items() if s >= 500),
               "connection_errors": sum(o.status is None for o in outcomes),
               "connection_error_samples": sorted({o.error for o in outcomes if o.status is None})[:5],
               "cut_short": sum(o.cut_short for o in outcomes),
               "rss_start_mb": round(rss_start, 1), "rss_before_mb": round(rss_before, 1),
               "rss_after_mb": round(rss_after, 1), "rss_peak_mb": round(rss_peak, 1),
               "rss_growth_mb": round(rss_after - rss_before, 1),
               **digit_scores(outcomes, digits),
               "load_average_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
               "exit_status": status, "shutdown_s": round(shutdown_s, 2), "tracebacks": log.count("Traceback"),
               "server_log_lines": len(log.splitlines())}
    return outcomes, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="requests to send (default 5000)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent client threads (default 32)")
    parser.add_argument("--max-seconds", type=float, default=150, help="stop sending after this long (default 150)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/serve_load.json")
    args = parser.parse_args()
    if args.requests < 1 or args.clients < 1:
        raise UserError("--requests and --clients must be at least 1")
    started = time.perf_counter()
    digits = make_digits(DIGITS)
    cases = schedule(args.requests, args.seed, digits)
    print(f"{DIGITS} digits rendered and predicted in this process, {len(cases)} requests drawn "
          f"({time.perf_counter() - started:.1f} s); starting the server", flush=True)
    outcomes, summary = measure(args, digits, cases)
    rows = kind_rows(outcomes)
    print_table(rows, ["kind", "requests", "expected", "statuses", "cut short", "p50 ms", "p99 ms"])
    print()
    print_table([{"figure": k, "value": v} for k, v in summary.items()], ["figure", "value"])
    checks = goals(summary)
    print()
    for name, ok, detail in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")
    write_json(args.out, {"machine": machine(), "server_torch_threads": PREDICT_THREADS, "limits": limits(),
                          "requests_asked": args.requests, "max_seconds": args.max_seconds,
                          "seed": args.seed, "mix": {k: share for k, (share, _) in KINDS.items()}, "summary": summary,
                          "kinds": rows, "goals": {name: {"pass": ok, "detail": detail} for name, ok, detail in checks}})
    if not all(ok for _, ok, _ in checks):
        sys.exit(1)


if __name__ == "__main__":
    run(main)
