"""Figures. Each function returns a matplotlib Figure; `save` writes it and closes it."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from tinymnist.atomic import write_bytes_atomic  # noqa: E402


def save(fig: Figure, path: Path) -> Path:
    """Write `fig` as a PNG under `path` (whole or not at all) and close it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())
    return path


def digit_grid(images: np.ndarray, titles: Sequence[str], columns: int = 10, title: str = "",
               colors: Sequence[str] | None = None) -> Figure:
    rows = max(1, int(np.ceil(len(images) / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.1, rows * 1.3 + (0.4 if title else 0)), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            ax.imshow(images[i], cmap="gray_r", vmin=0, vmax=255)
            ax.set_title(titles[i], fontsize=8, color=colors[i] if colors else "black")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def class_spread(train_counts: dict[int, int], test_counts: dict[int, int]) -> Figure:
    classes = np.arange(len(train_counts))
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.4
    for offset, counts, label in ((-width / 2, train_counts, "train"), (width / 2, test_counts, "test")):
        bars = ax.bar(classes + offset, [counts[int(c)] for c in classes], width, label=label)
        ax.bar_label(bars, fontsize=7, rotation=90, padding=2)
    ax.set_xticks(classes)
    ax.set_xlabel("digit")
    ax.set_ylabel("images")
    ax.set_title("MNIST class spread")
    ax.margins(y=0.25)
    ax.legend(loc="upper center", ncols=2)
    fig.tight_layout()
    return fig


def learning_rate(lrs: Sequence[float], steps_per_epoch: int) -> Figure:
    fig, ax = plt.subplots(figsize=(7, 3.5))
    epochs = np.arange(1, len(lrs) + 1) / max(1, steps_per_epoch)
    ax.plot(epochs, lrs)
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.set_title("Learning rate per step")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def train_vs_test(history: Sequence[dict], key: str, ylabel: str, title: str) -> Figure:
    fig, ax = plt.subplots(figsize=(7, 3.5))
    epochs = [h["epoch"] for h in history]
    for split in ("train", "val", "test"):
        if f"{split}_{key}" in history[0]:
            ax.plot(epochs, [h[f"{split}_{key}"] for h in history], marker="o", label=split)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.set_xticks(epochs)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def confusion(matrix: np.ndarray) -> Figure:
    n = len(matrix)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    # Log-ish colour scale so that the few mistakes are visible next to the ~1,000 hits per class.
    image = ax.imshow(np.log1p(matrix), cmap="Blues")
    for t in range(n):
        for p in range(n):
            if matrix[t, p]:
                dark = np.log1p(matrix[t, p]) > 0.6 * np.log1p(matrix.max())
                ax.text(p, t, str(matrix[t, p]), ha="center", va="center", fontsize=7, color="white" if dark else "black")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.set_title("Confusion matrix (test set, counts)")
    fig.colorbar(image, ax=ax, label="log(1 + count)")
    fig.tight_layout()
    return fig
