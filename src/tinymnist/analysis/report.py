"""`tinymnist evaluate` and `tinymnist report`: the article's analysis section for any run."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tinymnist.analysis import plots
from tinymnist.atomic import write_bytes_atomic
from tinymnist.backends.device import resolve_device
from tinymnist.data.mnist import MNIST, class_counts
from tinymnist.errors import UserError
from tinymnist.evaluation.logits import logits_for
from tinymnist.evaluation.metrics import metrics_from_logits
from tinymnist.models.summary import format_table, summarize
from tinymnist.models.zoo import create_model
from tinymnist.training.checkpoint import load_checkpoint, model_from_checkpoint
from tinymnist.training.config import TrainConfig


def test_split(data: MNIST, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """The test images the run was evaluated on (all of them unless it used a smoke-test subset)."""
    n = cfg.test_subset or len(data.test_labels)
    return data.test_images[:n], data.test_labels[:n]


def evaluate_checkpoint(path: str | Path, data: MNIST) -> dict[str, Any]:
    """Metrics of a checkpoint on the test set, plus its probabilities (for the misclassified grid)."""
    return evaluate_loaded(load_checkpoint(path), data)


def evaluate_loaded(ckpt: dict[str, Any], data: MNIST, device: str | torch.device | None = "cpu") -> dict[str, Any]:
    """`evaluate_checkpoint` for a checkpoint already read by `load_checkpoint`, computed on `device`."""
    cfg = TrainConfig.from_saved(ckpt["config"])
    images, labels = test_split(data, cfg)
    model = model_from_checkpoint(ckpt).to(resolve_device(device))
    logits = logits_for(model, torch.from_numpy(images.copy())).cpu()
    metrics = metrics_from_logits(logits, torch.from_numpy(labels))
    metrics.update(model=ckpt["model_name"], epoch=ckpt["epoch"])
    metrics["probabilities"] = torch.softmax(logits, 1).numpy()
    return metrics


def misclassified(images: np.ndarray, labels: np.ndarray, probs: np.ndarray, limit: int = 40) -> tuple[np.ndarray, list[str]]:
    """Indices of the mistakes, most confident first, with their titles."""
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != labels)
    wrong = wrong[np.argsort(-probs[wrong, pred[wrong]])][:limit]
    titles = [f"true {labels[i]} / pred {pred[i]}\n{100 * probs[i, pred[i]]:.0f}%" for i in wrong]
    return wrong, titles


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path.parent} is not a finished run directory: {path.name} is missing") from None
    except json.JSONDecodeError:
        raise UserError(f"{path} is not valid JSON") from None


CHECKPOINT = "last.pt"  # the run's checkpoint, the one the report evaluates
RUN_FILES = ("config.json", "history.json", "metrics.json", CHECKPOINT)


def check_run_dir(path: Path) -> Path:
    """The finished run's directory that `path` names (the directory, or its last.pt), or a
    one-line UserError."""
    run_dir = path.parent if path.is_file() and path.name == CHECKPOINT else path
    if run_dir.is_file():
        raise UserError(f"{path} is a file, not a run directory; pass the run directory (the folder holding {CHECKPOINT})")
    if not run_dir.is_dir():
        raise UserError(f"run directory not found: {run_dir}")
    for name in RUN_FILES:
        if not (run_dir / name).is_file():
            raise UserError(f"{run_dir} is not a finished run directory: {name} is missing")
    return run_dir


def misclassified_title(shown: int, total: int) -> str:
    """The misclassified grid's title: how many mistakes it shows out of how many."""
    which = f"all {total}" if shown == total else f"showing {shown} of {total}"
    return f"Misclassified test digits ({which}; most confident first)"


def threads_note(threads: int, engine: str) -> str:
    """The thread count as part of the configuration, and whether it changes the result."""
    if engine.startswith("native"):
        return (f"threads: {threads} (the native engine sums every reduction in a fixed order, so the same seed "
                "gives the same result at any thread count; the thread count sets only the speed)")
    return (f"threads: {threads} (part of the configuration: with eager PyTorch the same seed at another thread "
            "count can give a different result)")


def reproduce_command(run_dir: Path, metrics: dict[str, Any]) -> str:
    """The `tinymnist train` command that repeats the run: its config, thread count and data directory."""
    words = ["tinymnist", "train", "--config", shlex.quote(str(run_dir / "config.json"))]
    if metrics.get("threads"):
        words += ["--threads", str(int(metrics["threads"]))]
    if metrics.get("data_dir"):
        words += ["--data-dir", shlex.quote(str(metrics["data_dir"]))]
    return " ".join([*words, "--out", "NEW_RUN_DIR"])


def write_report(path: Path, data: MNIST) -> Path:
    """Write the plots and report.md into the run directory `path` names (see `check_run_dir`);
    returns the path of report.md."""
    run_dir = check_run_dir(path)
    history = _read_json(run_dir / "history.json")
    metrics = _read_json(run_dir / "metrics.json")
    cfg = TrainConfig.from_saved(_read_json(run_dir / "config.json"))
    evaluation = evaluate_checkpoint(run_dir / CHECKPOINT, data)
    images, labels = test_split(data, cfg)

    train_counts, test_counts = class_counts(data.train_labels), class_counts(data.test_labels)
    figures = {
        "samples.png": plots.digit_grid(data.train_images[:30], [f"label {y}" for y in data.train_labels[:30]],
                                        title="MNIST training samples"),
        "class_spread.png": plots.class_spread(train_counts, test_counts),
        "lr.png": plots.learning_rate(history["lr_per_step"], history["steps_per_epoch"]),
        "loss.png": plots.train_vs_test(history["epochs"], "loss", "cross-entropy loss", "Loss per epoch"),
        "accuracy.png": plots.train_vs_test(history["epochs"], "accuracy", "accuracy (%)", "Accuracy per epoch"),
        "confusion.png": plots.confusion(np.array(evaluation["confusion"])),
    }
    wrong, titles = misclassified(images, labels, evaluation["probabilities"])
    figures["misclassified.png"] = plots.digit_grid(
        images[wrong], titles, title=misclassified_title(len(wrong), evaluation["total"] - evaluation["correct"]))
    for name, fig in figures.items():
        plots.save(fig, run_dir / name)

    summary = summarize(create_model(metrics["model"], **metrics["model_args"]))
    epochs = history["epochs"]
    log = ["| epoch | lr | time (s) | train loss | train acc | test loss | test acc |",
           "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in epochs:
        log.append(f"| {r['epoch']} | {r['lr']:.5f} | {r['seconds']:.1f} | {r['train_loss']:.4f} | "
                   f"{r['train_correct']}/{r['train_total']} ({r['train_accuracy']:.2f}%) | {r['test_loss']:.4f} | "
                   f"{r['test_correct']}/{r['test_total']} ({r['test_accuracy']:.2f}%) |")
    per_class = ["| digit | precision | recall |", "| ---: | ---: | ---: |"]
    for digit, (p, r) in enumerate(zip(evaluation["precision"], evaluation["recall"], strict=True)):
        per_class.append(f"| {digit} | {100 * p:.2f}% | {100 * r:.2f}% |")
    reproduce = reproduce_command(run_dir, metrics)
    spread = ", ".join(f"{d}: {c}" for d, c in train_counts.items())
    text = f"""# tinymnist run report: `{metrics['model']}`, seed {metrics['seed']}

## Result

Final-epoch test accuracy **{metrics['final_test_accuracy']:.2f}%** (loss {metrics['final_test_loss']:.4f}) after
{metrics['epochs']} epochs, with {metrics['params']:,} parameters. No epoch or checkpoint was chosen on the test set:
this is the last epoch's model. Training took {metrics['train_seconds']:.0f} s ({metrics['images_per_second']:.0f}
images/s, engine {metrics.get('engine', 'eager')}).

Configuration: {threads_note(metrics['threads'], metrics.get('engine', 'eager'))}.

## Data

MNIST: {len(data.train_labels):,} training and {len(data.test_labels):,} test images, 28x28 grayscale, normalized with
mean 0.1307 and std 0.3081. Training class counts: {spread}.

![samples](samples.png)

![class spread](class_spread.png)

## Network

{summary.params:,} parameters, {summary.macs:,} MACs per image, receptive field {summary.receptive_field} px
(standard recurrence r_out = r_in + (k - 1) * j_in).

{format_table(summary)}

## Training log

{chr(10).join(log)}

![learning rate](lr.png)

![loss](loss.png)

![accuracy](accuracy.png)

## Analysis

Per-class precision and recall on the test set:

{chr(10).join(per_class)}

![confusion matrix](confusion.png)

![misclassified digits](misclassified.png)

## Reproduce

```bash
{reproduce}
```

Configuration: `config.json`; history: `history.json`; final metrics: `metrics.json`.
"""
    path = run_dir / "report.md"
    write_bytes_atomic(path, text.encode())
    return path
