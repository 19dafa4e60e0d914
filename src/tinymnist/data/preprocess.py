"""Turn an arbitrary image of one digit into a 28x28 MNIST-like input, the way MNIST was made:
light ink on a dark background, the digit fitted into 20x20 keeping its aspect ratio, then placed
in 28x28 so that its centre of mass is at the centre.

Robust to photographs: the background is estimated locally (a grey-scale morphological closing
or opening at a scale larger than a stroke) and subtracted, which removes uneven lighting; faint
noise below a fraction of the strongest ink is dropped. Clutter is removed before the digit is
cropped: the digit is the largest connected piece of strong ink (with any sizeable pieces next to
it, e.g. the detached bar of a 5); specks, faint ruled lines and dark edges of the frame (a table
beside the page) are not part of it, and ink along most of a side (such a table) does not set the
threshold for what counts as a stroke; a printed box drawn around the digit (a form) is dropped.
A digit that is small on a large page is read again from a full-resolution crop; strokes much
finer than MNIST's (a fine pen on a large canvas) are widened.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from tinymnist.errors import UserError

MAX_PIXELS = 50_000_000  # refuse to decode anything larger (decompression bombs)
WORK_SIZE = 256  # longer side the image is reduced to before analysis
# Larger images are shrunk by an integer factor right after decoding: a 50-megapixel upload peaked
# near 2 GB in the analysis (found by fuzz/fuzz_image.py); 12 MP keeps a 4000 x 3000 photo whole.
MAX_WORK_PIXELS = 12_000_000
DETAIL_SIZE = 64  # a digit smaller than this (in WORK_SIZE pixels) is re-read at full resolution
MIN_INK = 40  # strongest ink (0-255, after background removal) below which an image is blank
NOISE_FRACTION = 0.2  # ink weaker than this fraction of the strongest ink is background noise
STROKE_FRACTION = 0.4  # the digit is located by its strokes: ink at least this fraction of the strongest
MIN_PIECE = 0.05  # a separate piece with less ink than this fraction of the main piece's is clutter
# Stroke width in pixels of the fitted 20x20 digit, by stroke_width's measure on 300 MNIST training
# digits rendered as photos: minimum 0.94, 5th percentile 1.3, median 2.1 (a fine pen: about 0.6).
MIN_STROKE = 0.9  # thinner strokes are widened ...
TARGET_STROKE = 2.0  # ... to this
UNDECIDED = 0.2  # percentile spreads this close (as a fraction of the range) do not tell the polarity
EDGE_PIECE = 0.05  # pieces touching the frame are clutter if an inner piece has this fraction of their ink
EDGE_EXTENT = 0.2  # ... or spans this fraction of the image's longer side
BOX_BAND = 0.1  # a printed box's ink lies within this fraction of its size from its bounding box's edges ...
BOX_SHARE = 0.9  # ... for at least this share of its pixels
FRAME_BAND = 0.5  # ink along this fraction of a side is a frame (a table), not a tightly cropped digit


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
        if width * height > MAX_WORK_PIXELS:
            image = _shrunk(image, math.ceil(math.sqrt(width * height / MAX_WORK_PIXELS)))
    except UserError:
        raise
    except UnidentifiedImageError:
        raise UserError(f"{label}: not an image (or a format Pillow cannot read)") from None
    except Image.DecompressionBombError:
        raise UserError(f"{label}: image too large to decode safely") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"{label}: truncated or corrupt image ({exc})") from None
    return image


def _shrunk(image: Image.Image, factor: int) -> Image.Image:
    """`image` reduced by `factor` on each side (box filter), in a mode `Image.reduce` supports."""
    if image.mode not in ("L", "LA", "RGB", "RGBA", "I", "F"):
        image = image.convert("RGBA" if "A" in image.getbands() or image.mode == "P" else "RGB")
    return image.reduce(factor)


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
    if image.mode.startswith(("I", "F")):  # 16/32-bit integer or float pixels: scale their range
        return _wide_to_gray(np.asarray(image, dtype=np.float64), is_float=image.mode.startswith("F"))
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB") if image.mode in ("CMYK", "YCbCr", "HSV") else image.convert("L")
    return np.asarray(image.convert("L"), dtype=np.float32)


def _wide_to_gray(values: np.ndarray, is_float: bool) -> np.ndarray:
    """Map 16/32-bit or float pixels to [0, 255] by their nominal range (Pillow's own conversion
    to 8 bits clips, which turns a float image in [0, 1] black): floats up to 1 are [0, 1], values
    up to 255 are 8-bit, up to 65535 16-bit, anything larger is scaled by its own maximum; with
    negative values (a normalized array) the range min..max is stretched to 0..255."""
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    if values.size and values.min() < 0:
        values = values - values.min()
        return (values * (255.0 / max(float(values.max()), 1e-12))).astype(np.float32)
    peak = float(values.max()) if values.size else 0.0
    limits = (1.0, 255.0, 65535.0) if is_float else (255.0, 65535.0)
    nominal = next((limit for limit in limits if peak <= limit), peak)
    return np.clip(values * (255.0 / nominal), 0, 255).astype(np.float32)


def _bulk_is_bright(values: np.ndarray) -> bool | None:
    """Whether most pixels sit nearer the bright extreme than the dark one (independent of exposure:
    a dim photo's paper may be darker than mid-grey and still be the bright side); None when the
    spread is too even to tell (smooth shading, or ink on under 1% of the pixels)."""
    low, middle, high = np.percentile(values, [1, 50, 99])
    if abs((high - middle) - (middle - low)) <= UNDECIDED * (high - low):
        return None
    return bool(high - middle < middle - low)


def _strongest_detail_is_dark(g: np.ndarray) -> bool:
    """Whether the image's strongest local detail is darker than its surroundings: extremes of the
    image minus a wide blur (which removes shading), after a 3x3 median (which removes lone noisy
    pixels). Decides polarity when the histogram cannot: a small digit on a large page."""
    image = Image.fromarray(np.clip(g, 0, 255).astype(np.uint8))
    smooth = np.asarray(image.filter(ImageFilter.MedianFilter(3)), dtype=np.float32)
    trend = np.asarray(image.filter(ImageFilter.GaussianBlur(max(g.shape) / 8)), dtype=np.float32)
    detail = smooth - trend
    return bool(-detail.min() > detail.max())


def has_dark_ink(g: np.ndarray) -> bool:
    """Dark ink on light paper (a photo of a page) unless the whole image or its edge says light
    ink on a dark ground (MNIST's own style) and neither says dark ink: the whole image alone fails
    on a tight crop of a thin digit (mostly ink), the edge alone when a dark table shows at the
    sides of a page. When neither can tell, the strongest local detail decides."""
    border = np.concatenate(frame_lines(g))
    votes = (_bulk_is_bright(g), _bulk_is_bright(border))
    if True in votes:
        return True
    if False in votes:
        return False
    return _strongest_detail_is_dark(g)


def ink_map(gray: np.ndarray, dark_ink: bool | None = None) -> tuple[np.ndarray, bool]:
    """Ink strength in [0, 255] (light ink on dark), background removed, at most WORK_SIZE pixels a
    side; and the polarity used (`dark_ink`, found from the image when not given)."""
    image = Image.fromarray(np.clip(gray, 0, 255).astype(np.uint8))
    if max(image.size) > WORK_SIZE:
        image.thumbnail((WORK_SIZE, WORK_SIZE), Image.Resampling.LANCZOS)
    g = np.asarray(image, dtype=np.float32)
    if dark_ink is None:
        dark_ink = has_dark_ink(g)
    # Background: a morphological closing (dark ink) or opening (light ink) at ~1/4 of the image,
    # computed on a small copy, then smoothed; subtracting it removes uneven lighting.
    small = image.copy()
    small.thumbnail((64, 64), Image.Resampling.BILINEAR)
    k = max(3, (max(small.size) // 4) | 1)
    grow, shrink = (ImageFilter.MaxFilter, ImageFilter.MinFilter) if dark_ink else (ImageFilter.MinFilter, ImageFilter.MaxFilter)
    background = small.filter(grow(k)).filter(shrink(k)).filter(ImageFilter.GaussianBlur(k / 2))
    background = np.asarray(background.resize(image.size, Image.Resampling.BILINEAR), dtype=np.float32)
    ink = background - g if dark_ink else g - background
    return np.clip(ink, 0, 255), dark_ink


def connected_pieces(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a boolean image: (labels with 0 for background and 1..n, n).
    Works on horizontal runs of pixels (union-find over runs that touch in adjacent rows), so
    its Python loops are per run, not per pixel."""
    h, w = mask.shape
    edges = np.diff(np.pad(mask, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    run_row, run_start = np.nonzero(edges == 1)
    run_end = np.nonzero(edges == -1)[1] - 1  # inclusive
    parent = list(range(len(run_row)))

    def find(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    first = np.searchsorted(run_row, np.arange(h + 1))
    for row in range(h - 1):
        i, i_end, j, j_end = first[row], first[row + 1], first[row + 1], first[row + 2]
        while i < i_end and j < j_end:
            if run_start[i] <= run_end[j] + 1 and run_start[j] <= run_end[i] + 1:  # touch, diagonals too
                parent[find(i)] = find(j)
            if run_end[i] < run_end[j]:
                i += 1
            else:
                j += 1
    roots = np.array([find(k) for k in range(len(run_row))], dtype=np.int64)
    ids, run_label = np.unique(roots, return_inverse=True)
    labels = np.zeros((h, w), dtype=np.int32)
    for row, start, end, label in zip(run_row, run_start, run_end, run_label + 1, strict=True):
        labels[row, start : end + 1] = label
    return labels, len(ids)


def digit_region(ink: np.ndarray) -> np.ndarray:
    """Boolean mask of the pixels that belong to the digit (see the module docstring)."""
    region = _digit_region(ink, frame_removed=False)
    assert region is not None  # only the second look, without the frame, can come back empty
    return region


def _digit_region(ink: np.ndarray, frame_removed: bool) -> np.ndarray | None:
    """digit_region; with `frame_removed` (a second look after the ink touching the frame was
    erased) only pieces off the frame can be the digit, and None says there is none."""
    labels, count = connected_pieces(ink >= STROKE_FRACTION * ink.max())
    mass = np.bincount(labels.ravel(), weights=ink.ravel(), minlength=count + 1)
    mass[0] = 0.0
    # Bounding box of every piece: rows and columns of its first and last pixel.
    rows, cols = np.indices(labels.shape)
    flat = labels.ravel()
    top, left = np.full(count + 1, labels.shape[0]), np.full(count + 1, labels.shape[1])
    bottom, right = np.full(count + 1, -1), np.full(count + 1, -1)
    np.minimum.at(top, flat, rows.ravel())
    np.maximum.at(bottom, flat, rows.ravel())
    np.minimum.at(left, flat, cols.ravel())
    np.maximum.at(right, flat, cols.ravel())
    extent = np.maximum(bottom - top, right - left) + 1
    lines = frame_lines(labels)
    edge = np.unique(np.concatenate(lines))
    edge = edge[edge > 0]
    inner = np.setdiff1d(np.arange(1, count + 1), edge)
    if frame_removed and (not len(inner) or extent[inner].max() < EDGE_EXTENT * max(ink.shape)):
        return None
    on_frame = np.isin(labels, edge)
    banded = max(float(np.mean(line > 0)) for line in lines) >= FRAME_BAND
    if not frame_removed and banded and (not len(inner) or ink[on_frame].max() > ink[np.isin(labels, inner)].max()):
        # Ink along most of a side (the dark table beside a page) set the stroke threshold,
        # perhaps above the whole digit: look again without the ink on the frame. A tightly
        # cropped digit, all on the frame, leaves nothing digit-sized behind and is kept.
        without = np.where(dilate(on_frame, soft_edge(ink)), 0.0, ink)
        if without.max() >= MIN_INK:
            region = _digit_region(without, frame_removed=True)
            if region is not None:
                return region
    # A digit cropped tightly touches the frame itself; pieces on the frame are dropped only when
    # an inner piece is big enough to be the digit, by its ink or by its size (a thin digit beside
    # the dark table at the edge of a photo has little ink next to the table's).
    if len(inner) and (not len(edge) or mass[inner].max() >= EDGE_PIECE * mass[edge].max()
                       or extent[inner].max() >= EDGE_EXTENT * max(ink.shape)):
        mass[edge] = 0.0
    mass[printed_boxes(labels, rows, cols, mass, (top, bottom, left, right))] = 0.0
    main = int(mass.argmax())
    # Grow from the main piece: a sizeable piece joins when it lies within one digit-size of the
    # pieces kept so far (a broken or dotted stroke joins piece by piece; a far-away blot does not).
    sizeable = mass >= MIN_PIECE * mass[main]
    keep = np.zeros(count + 1, dtype=bool)
    keep[main] = True
    while True:
        t, b, lft, rgt = top[keep].min(), bottom[keep].max(), left[keep].min(), right[keep].max()
        reach = max(b - t, rgt - lft) + 1
        near = sizeable & ~keep & (bottom >= t - reach) & (top <= b + reach) & (right >= lft - reach) & (left <= rgt + reach)
        if not near.any():
            break
        keep |= near
    return dilate(keep[labels], soft_edge(ink))  # take in the soft edges of the strokes


def frame_lines(a: np.ndarray) -> tuple[np.ndarray, ...]:
    """The first and last row and column of an image."""
    return a[0], a[-1], a[:, 0], a[:, -1]


def soft_edge(ink: np.ndarray) -> int:
    """How far (pixels) the soft edge of a stroke reaches beyond its strong ink."""
    return max(2, max(ink.shape) // 50)


def printed_boxes(labels: np.ndarray, rows: np.ndarray, cols: np.ndarray, mass: np.ndarray,
                  boxes: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Labels of pieces that are a box drawn around other ink (a form's box around a written digit):
    a hollow bounding box (not a thin one, like a 1's) along whose edges nearly all of the piece's
    pixels lie, holding another piece with a sizeable share of its ink. A digit's own outline is not
    that square: of 4,724 MNIST training digits with a hollow bounding box, the squarest had 87% of
    its pixels there, the 99.9th percentile 76%."""
    top, bottom, left, right = boxes  # per piece; rows and cols: np.indices(labels.shape)
    count = len(mass) - 1
    flat, r, c = labels.ravel(), rows.ravel(), cols.ravel()
    band = np.maximum(2, (np.maximum(bottom - top, right - left) + 1) * BOX_BAND)
    hollow = np.minimum(bottom - top, right - left) + 1 > 4 * band
    band = band[flat]
    near_edge = (r - top[flat] < band) | (bottom[flat] - r < band) | (c - left[flat] < band) | (right[flat] - c < band)
    share = np.bincount(flat, weights=near_edge, minlength=count + 1) / np.maximum(np.bincount(flat, minlength=count + 1), 1)
    found = []
    for box in np.nonzero(hollow & (share >= BOX_SHARE) & (mass > 0))[0]:
        if box == 0:
            continue
        inside = (top > top[box]) & (bottom < bottom[box]) & (left > left[box]) & (right < right[box])
        if (inside & (mass >= MIN_PIECE * mass[box])).any():
            found.append(int(box))
    return np.array(found, dtype=np.int64)


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Boolean dilation by a (2 * radius + 1)-pixel square, as two separable passes of shifts."""
    out = mask.copy()
    for axis in (0, 1):
        grown = out.copy()
        n = out.shape[axis]
        for shift in range(1, min(radius, n - 1) + 1):
            lead = [slice(None)] * 2
            lag = [slice(None)] * 2
            lead[axis], lag[axis] = slice(shift, None), slice(None, n - shift)
            grown[tuple(lead)] |= out[tuple(lag)]
            grown[tuple(lag)] |= out[tuple(lead)]
        out = grown
    return out


def center_of_mass(a: np.ndarray) -> tuple[float, float]:
    total = a.sum()
    rows, cols = np.indices(a.shape)
    return float((rows * a).sum() / total), float((cols * a).sum() / total)


def find_digit(gray: np.ndarray) -> np.ndarray | None:
    """Ink map (light on dark) with everything but the digit zeroed; None for a blank image.

    The image is analysed at WORK_SIZE; a digit that comes out smaller than DETAIL_SIZE there (a
    small digit on a large page) is read again from a full-resolution crop around it."""
    ink, dark_ink = ink_map(gray)
    if ink.max() < MIN_INK:
        return None
    region = digit_region(ink)
    reduced = max(gray.shape) / max(ink.shape)
    rows, cols = np.nonzero(region)
    size = max(rows.max() - rows.min(), cols.max() - cols.min()) + 1
    if reduced > 1 and size < DETAIL_SIZE:
        margin = size  # paper on every side, for the background estimate
        top, bottom = max(0, int((rows.min() - margin) * reduced)), int((rows.max() + 1 + margin) * reduced)
        left, right = max(0, int((cols.min() - margin) * reduced)), int((cols.max() + 1 + margin) * reduced)
        detail, _ = ink_map(gray[top:bottom, left:right], dark_ink)
        if detail.max() >= MIN_INK:
            ink, region = detail, digit_region(detail)
    return np.where(region, ink, 0.0)


def stroke_width(ink: np.ndarray) -> float:
    """Mean width in pixels of the strong ink's strokes: twice its area over its boundary length
    (a stroke of width w and length L has area wL and boundary 2L; 2 for one-pixel lines)."""
    mask = ink >= 0.5 * ink.max()
    padded = np.pad(mask, 1)
    inner = mask & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return 2.0 * mask.sum() / max(int((mask & ~inner).sum()), 1)


def thicken(digit: np.ndarray) -> np.ndarray:
    """Widen strokes that would be thinner than MIN_STROKE once the digit is fitted into 20x20
    (a fine pen on a large canvas) to TARGET_STROKE with a grey-scale dilation; strokes as wide as
    MNIST's are left alone."""
    pixels = max(digit.shape) / 20.0  # this image's pixels per pixel of the fitted digit
    width = stroke_width(digit)
    k = int(round(TARGET_STROKE * pixels - width))
    if width >= MIN_STROKE * pixels or k < 2:
        return digit
    k |= 1  # the filter's size is odd
    padded = Image.fromarray(np.pad(digit, k // 2).astype(np.uint8))
    return np.asarray(padded.filter(ImageFilter.MaxFilter(k)), dtype=np.float32)


def lanczos_resize(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`image.resize(size, LANCZOS)` as two passes, horizontal then vertical, each rounded to 8 bits.
    Pillow rounds between its two passes, and Pillow 13 picks their order itself (by the sizes), which
    changes pixels by a few levels; spelled out, the digit is the same on every Pillow release and in
    the web export's JavaScript port (export/web/static/preprocess.js)."""
    width, height = size
    return image.resize((width, image.height), Image.Resampling.LANCZOS).resize(size, Image.Resampling.LANCZOS)


def to_mnist(image: Image.Image, name: str = "image") -> np.ndarray:
    """uint8 28 x 28 MNIST-style digit from a PIL image."""
    ink = find_digit(to_grayscale(image))
    if ink is None:
        raise UserError(f"{name}: no ink found (the image looks blank)")
    peak = float(ink.max())  # the digit's own strongest ink: noise is judged against it
    ink = np.clip((ink - NOISE_FRACTION * peak) / ((1 - NOISE_FRACTION) * peak), 0, 1) * 255
    rows, cols = np.nonzero(ink > 0)
    digit = thicken(ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1])
    h, w = digit.shape
    scale = 20.0 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    fitted = np.asarray(lanczos_resize(Image.fromarray(digit.astype(np.uint8)), size), dtype=np.float32)
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


def array_to_image(array: np.ndarray, name: str = "array") -> Image.Image:
    """A numpy image (H x W, or H x W x 1/3/4 channels; bool, integer or float pixels) as an 8-bit PIL
    image: floats within [0, 1] are scaled by 255; values within [0, 255] are kept; any other range is
    stretched to 0-255. Anything else is a UserError naming what is wrong."""
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        raise UserError(f"{name}: an image array must be H x W or H x W x 1/3/4 channels, not shape {a.shape}")
    if a.size == 0:
        raise UserError(f"{name}: the image array is empty (shape {a.shape})")
    if a.shape[0] * a.shape[1] > MAX_PIXELS:
        raise UserError(f"{name}: image too large ({a.shape[1]}x{a.shape[0]} pixels; the limit is {MAX_PIXELS:,})")
    if a.dtype.kind not in "biuf":
        raise UserError(f"{name}: pixels must be numbers (bool, integer or float), not {a.dtype}")
    values = a.astype(np.float64)
    if not np.isfinite(values).all():
        raise UserError(f"{name}: the image array holds NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    if a.dtype.kind == "b":
        values = values * 255.0
    elif a.dtype.kind == "f" and low >= 0 and high <= 1:
        values = values * 255.0
    elif low < 0 or high > 255:
        # Halves first: `high - low` overflows for values near the float64 limits (found in CI's fuzzing).
        span = high / 2 - low / 2
        values = (values / 2 - low / 2) * (255.0 / span) if span > 0 else np.zeros_like(values)
    return Image.fromarray(np.clip(values.round(), 0, 255).astype(np.uint8))  # L, RGB or RGBA by shape


def load_digit(source: str | Path | bytes, name: str | None = None) -> np.ndarray:
    """Open an image file or bytes and return the 28x28 uint8 input the model sees."""
    label = name or (str(source) if not isinstance(source, bytes) else "image")
    return to_mnist(open_image(source, label), label)
