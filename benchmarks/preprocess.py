"""How well `tinymnist predict` reads digits from 'photos': MNIST test digits rendered as dark ink
on a page (uneven light, sensor noise, JPEG), with and without clutter, passed through the same
preprocessing as `tinymnist predict` and classified by a model.

Usage: python benchmarks/preprocess.py [--checkpoint CKPT] [--count 1000] [--seed 0] [--split test]
                                       [--out benchmarks/results/preprocess.json]
Preprocessing constants are tuned with --split train (digits the reported figures do not use).
Prints, per condition, the accuracy and the number of images the preprocessing refused, next to
the model's accuracy on the very same digits given directly as 28x28 MNIST inputs.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, print_table, run, write_json  # noqa: E402

from tinymnist.data.mnist import load_mnist  # noqa: E402
from tinymnist.data.preprocess import load_digit  # noqa: E402
from tinymnist.errors import UserError  # noqa: E402
from tinymnist.evaluation.predict import predict_digits  # noqa: E402
from tinymnist.training.checkpoint import load_model

SIZE = 400  # pixels a side of the rendered page
SMALL_PAGE, SMALL_SIZE = 200, 1400  # "small digit": a 28-pixel digit on a 200-pixel page, photographed at 1400


def _speck(img: np.ndarray, rng: np.random.Generator) -> None:
    """A blot as dark as the ink, somewhere in the margin."""
    y, x = rng.integers(5, 60), rng.integers(5, SIZE - 20)
    img[y : y + 12, x : x + 12] *= 0.3


def _ruled(img: np.ndarray, rng: np.random.Generator) -> None:
    """The faint lines of ruled paper, across the digit."""
    for y in range(int(rng.integers(10, 50)), SIZE, 50):
        img[y : y + 4] *= 0.8


def _frame(img: np.ndarray, rng: np.random.Generator) -> None:
    """The page does not fill the photo: a dark table along two edges."""
    img[:, : int(rng.integers(15, 40))] = 35
    img[-int(rng.integers(15, 40)) :] = 35


def _box(img: np.ndarray, rng: np.random.Generator) -> None:
    """A printed form box around the digit (the digit spans pixels 60-340)."""
    lo, hi = int(rng.integers(15, 50)), SIZE - int(rng.integers(15, 50))
    for band in (np.s_[lo : lo + 4, lo:hi], np.s_[hi - 4 : hi, lo:hi], np.s_[lo:hi, lo : lo + 4], np.s_[lo:hi, hi - 4 : hi]):
        img[band] *= 0.4


def _dim(img: np.ndarray, rng: np.random.Generator) -> None:
    """An under-exposed photo: the paper is darker than mid-grey."""
    img *= 0.45


def _faint(img: np.ndarray, rng: np.random.Generator) -> None:
    """Faint pencil: a third of the contrast."""
    img += (img.max() - img) * 0.65


def thin(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning: the one-pixel skeleton of a boolean image's strokes."""
    m = np.pad(mask.astype(np.uint8), 1)
    while True:
        changed = False
        for step in (0, 1):
            p2, p3, p4, p5 = m[:-2, 1:-1], m[:-2, 2:], m[1:-1, 2:], m[2:, 2:]
            p6, p7, p8, p9 = m[2:, 1:-1], m[2:, :-2], m[1:-1, :-2], m[:-2, :-2]
            ring = [p2, p3, p4, p5, p6, p7, p8, p9, p2]
            neighbours = sum(ring[:8])
            transitions = sum(((a == 0) & (b == 1)).astype(np.uint8) for a, b in zip(ring[:-1], ring[1:], strict=True))
            if step == 0:
                cut = (p2 * p4 * p6 == 0) & (p4 * p6 * p8 == 0)
            else:
                cut = (p2 * p4 * p8 == 0) & (p2 * p6 * p8 == 0)
            remove = (m[1:-1, 1:-1] == 1) & (neighbours >= 2) & (neighbours <= 6) & (transitions == 1) & cut
            if remove.any():
                m[1:-1, 1:-1][remove] = 0
                changed = True
        if not changed:
            return m[1:-1, 1:-1].astype(bool)


CONDITIONS: dict[str, Callable[[np.ndarray, np.random.Generator], None] | None] = {
    "photo": None, "photo + speck": _speck, "photo + ruled lines": _ruled,
    "photo + dark table at edges": _frame, "dim photo": _dim, "faint pencil": _faint,
    "small digit on a large photo": None, "fine pen (stroke 1/4 of MNIST's)": None,
    "photo + printed box around the digit": _box,
}


def render(digit: np.ndarray, condition: str, rng: np.random.Generator) -> bytes:
    if condition.startswith("small digit"):  # anywhere on a large page, 1/7 of its width
        page_size, size = SMALL_PAGE, SMALL_SIZE
        y, x = rng.integers(0, SMALL_PAGE - 28, 2)
    else:  # in the middle of a 40-pixel page
        page_size, size, y, x = 40, SIZE, 6, 6
    page = np.zeros((page_size, page_size), np.uint8)
    page[y : y + 28, x : x + 28] = digit
    big = np.asarray(Image.fromarray(page).resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)
    if condition.startswith("fine pen"):  # the digit's skeleton, drawn 5 pixels wide (MNIST's strokes: ~20)
        pen = Image.fromarray(thin(big > 128).astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(5))
        big = np.asarray(pen.filter(ImageFilter.GaussianBlur(1)), dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size] / size
    light = rng.uniform(0.5, 1.0, 3)  # light falling from a random side
    img = (150 + 80 * (light[0] * xx + (1 - light[0]) * yy) * light[1]) * (1 - 0.7 * big / 255)
    clutter = CONDITIONS[condition]
    if clutter is not None:
        clutter(img, rng)
    img = img + rng.normal(0, 6, img.shape)
    buffer = io.BytesIO()
    Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=70)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a checkpoint (default: the bundled pretrained model)")
    parser.add_argument("--count", type=int, default=1000, help="test digits per condition")
    parser.add_argument("--seed", type=int, default=0, help="picks the digits and draws the rendering")
    parser.add_argument("--split", choices=["test", "train"], default="test",
                        help="which MNIST digits to render (tune on train, report on test)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="benchmarks/results/preprocess.json")
    args = parser.parse_args()

    data = load_mnist(args.data_dir)
    model = load_model(args.checkpoint)
    rng = np.random.default_rng(args.seed)
    images, all_labels = (data.test_images, data.test_labels) if args.split == "test" else (data.train_images, data.train_labels)
    picked = rng.choice(len(all_labels), args.count, replace=False)
    labels = all_labels[picked]
    direct = np.array([r["label"] for r in predict_digits(model, images[picked], top=1)])
    rows = [{"condition": "MNIST 28x28 as is (no preprocessing)", "accuracy %": f"{100 * np.mean(direct == labels):.1f}",
             "refused": 0, "ms/image": ""}]
    for condition in CONDITIONS:
        inputs, kept, started = [], [], time.perf_counter()
        for k, i in enumerate(picked):
            try:
                inputs.append(load_digit(render(images[i], condition, rng), f"digit {i}"))
                kept.append(k)
            except UserError:
                pass
        seconds = time.perf_counter() - started
        predicted = [r["label"] for r in predict_digits(model, np.stack(inputs), top=1)] if inputs else []
        right = int(np.sum(np.array(predicted) == labels[kept])) if kept else 0
        rows.append({"condition": condition, "accuracy %": f"{100 * right / args.count:.1f}",
                     "refused": args.count - len(kept), "ms/image": f"{1000 * seconds / args.count:.1f}"})
    columns = ["condition", "accuracy %", "refused", "ms/image"]
    print(f"{args.count} MNIST {args.split} digits (seed {args.seed}); model: {args.checkpoint or 'bundled pretrained'}; "
          "ms/image = rendering + preprocessing")
    print_table(rows, columns)
    write_json(args.out, {"machine": machine(), "split": args.split, "count": args.count, "seed": args.seed,
                          "checkpoint": args.checkpoint or "pretrained", "rows": rows})


if __name__ == "__main__":
    run(main)
