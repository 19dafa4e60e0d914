"""Turn an arbitrary image of one digit into a 28x28 MNIST-like input, the way MNIST was made:
light ink on a dark background, the digit fitted into 20x20 keeping its aspect ratio, then placed
in 28x28 so that its centre of mass is at the centre.

Robust to photographs: the background is estimated locally (a grey-scale morphological closing
or opening at a scale larger than a stroke) and subtracted, which removes uneven lighting; faint
noise below a fraction of the strongest ink is dropped.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from tinymnist.errors import UserError

MAX_PIXELS = 50_000_000  # refuse to decode anything larger (decompression bombs)
WORK_SIZE = 256  # longer side the image is reduced to before analysis
MIN_INK = 40  # strongest ink (0-255, after background removal) below which an image is blank
NOISE_FRACTION = 0.2  # ink weaker than this fraction of the strongest ink is background noise


def open_image(source: str | Path | bytes, name: str | None = None) -> Image.Image:
    """Open and decode an image file (or bytes), with a clear error for anything that is not one."""
    label = name or (str(source) if not isinstance(source, bytes) else "image")
    try:
        if isinstance(source, bytes):
            raw = source
        else:
            raw = Path(source).read_bytes()
    except FileNotFoundError:
        raise UserError(f"{label}: file not found") from None
    except IsADirectoryError:
        raise UserError(f"{label}: is a directory, not an image") from None
    except OSError as exc:
        raise UserError(f"{label}: cannot read ({exc.strerror})") from None
    if not raw:
        raise UserError(f"{label}: empty file")
    try:
        image = Image.open(io.BytesIO(raw))
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise UserError(f"{label}: image too large ({width}x{height} pixels; the limit is {MAX_PIXELS:,})")
        image.load()
    except UserError:
        raise
    except UnidentifiedImageError:
        raise UserError(f"{label}: not an image (or a format Pillow cannot read)") from None
    except Image.DecompressionBombError:
        raise UserError(f"{label}: image too large to decode safely") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"{label}: truncated or corrupt image ({exc})") from None
    return image


def to_grayscale(image: Image.Image) -> np.ndarray:
    """float32 H x W in [0, 255]; transparent pixels become the background behind the ink."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255.0
        gray = np.asarray(rgba.convert("L"), dtype=np.float32)
        if alpha.min() < 1.0:
            opaque = alpha > 0.5
            ink_is_dark = not opaque.any() or gray[opaque].mean() < 128
            backdrop = 255.0 if ink_is_dark else 0.0  # put the ink on paper of the opposite shade
            gray = gray * alpha + backdrop * (1 - alpha)
        return gray
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB") if image.mode in ("CMYK", "YCbCr", "HSV") else image.convert("L")
    return np.asarray(image.convert("L"), dtype=np.float32)


def ink_map(gray: np.ndarray) -> np.ndarray:
    """Ink strength in [0, 255] (light ink on dark), background removed, at most WORK_SIZE pixels a side."""
    image = Image.fromarray(np.clip(gray, 0, 255).astype(np.uint8))
    if max(image.size) > WORK_SIZE:
        image.thumbnail((WORK_SIZE, WORK_SIZE), Image.Resampling.LANCZOS)
    g = np.asarray(image, dtype=np.float32)
    border = np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]])
    dark_ink = np.median(border) > 127  # paper brighter than ink, as in a photo of a page
    # Background: a morphological closing (dark ink) or opening (light ink) at ~1/4 of the image,
    # computed on a small copy, then smoothed; subtracting it removes uneven lighting.
    small = image.copy()
    small.thumbnail((64, 64), Image.Resampling.BILINEAR)
    k = max(3, (max(small.size) // 4) | 1)
    grow, shrink = (ImageFilter.MaxFilter, ImageFilter.MinFilter) if dark_ink else (ImageFilter.MinFilter, ImageFilter.MaxFilter)
    background = small.filter(grow(k)).filter(shrink(k)).filter(ImageFilter.GaussianBlur(k / 2))
    background = np.asarray(background.resize(image.size, Image.Resampling.BILINEAR), dtype=np.float32)
    ink = background - g if dark_ink else g - background
    return np.clip(ink, 0, 255)


def center_of_mass(a: np.ndarray) -> tuple[float, float]:
    total = a.sum()
    rows, cols = np.indices(a.shape)
    return float((rows * a).sum() / total), float((cols * a).sum() / total)


def to_mnist(image: Image.Image, name: str = "image") -> np.ndarray:
    """uint8 28 x 28 MNIST-style digit from a PIL image."""
    ink = ink_map(to_grayscale(image))
    peak = float(ink.max())
    if peak < MIN_INK:
        raise UserError(f"{name}: no ink found (the image looks blank)")
    ink = np.clip((ink - NOISE_FRACTION * peak) / ((1 - NOISE_FRACTION) * peak), 0, 1) * 255
    rows, cols = np.nonzero(ink > 0)
    digit = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    h, w = digit.shape
    scale = 20.0 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    fitted = np.asarray(Image.fromarray(digit.astype(np.uint8)).resize(size, Image.Resampling.LANCZOS), dtype=np.float32)
    fitted = np.clip(fitted, 0, 255)
    if fitted.sum() == 0:
        raise UserError(f"{name}: no ink found (the image looks blank)")
    cy, cx = center_of_mass(fitted)
    canvas = np.zeros((28, 28), dtype=np.float32)
    top, left = int(round(14 - cy)), int(round(14 - cx))
    # Paste with clipping: a very elongated digit's centre of mass may push it against an edge.
    top, left = min(max(top, 0), 28 - fitted.shape[0]), min(max(left, 0), 28 - fitted.shape[1])
    canvas[top : top + fitted.shape[0], left : left + fitted.shape[1]] = fitted
    return canvas.round().astype(np.uint8)


def load_digit(source: str | Path | bytes, name: str | None = None) -> np.ndarray:
    """Open an image file or bytes and return the 28x28 uint8 input the model sees."""
    label = name or (str(source) if not isinstance(source, bytes) else "image")
    return to_mnist(open_image(source, label), label)
