import io
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli
from PIL import Image, ImageDraw

from tinymnist.data.preprocess import MAX_PIXELS, center_of_mass, connected_pieces, load_digit
from tinymnist.errors import UserError

# Test digits chosen by index only (first occurrences), nothing hand-picked by how they look.
SAMPLE = list(range(0, 40, 2))


def photograph(digit: np.ndarray, rng: np.random.Generator, size: int = 300, mode: str = "RGB") -> bytes:
    """Render an MNIST digit as a 'photo': dark ink on paper with uneven light, noise, JPEG."""
    big = np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size] / size
    paper = 150 + 80 * xx + 20 * yy  # light from one side
    ink_darkness = 0.7
    img = paper * (1 - ink_darkness * big / 255) + rng.normal(0, 6, (size, size))
    rgb = np.stack([img, img * 0.97, img * 0.9], -1).clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).convert(mode).save(buffer, format="JPEG", quality=70)
    return buffer.getvalue()


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Best correlation over shifts of up to 2 pixels: MNIST's own centring is not exact."""
    best = -1.0
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            shifted = np.roll(a, (dy, dx), axis=(0, 1))
            best = max(best, float(np.corrcoef(shifted.ravel().astype(float), b.ravel().astype(float))[0, 1]))
    return best


def test_clean_mnist_digit_is_a_fixed_point(mnist):
    for i in SAMPLE:
        digit = mnist.test_images[i]
        buffer = io.BytesIO()
        Image.fromarray(digit).save(buffer, format="PNG")
        out = load_digit(buffer.getvalue())
        assert out.shape == (28, 28) and out.dtype == np.uint8
        assert correlation(out, digit) > 0.9


def test_photographed_digit_is_recovered(mnist):
    rng = np.random.default_rng(0)
    for i in SAMPLE:
        out = load_digit(photograph(mnist.test_images[i], rng))
        assert correlation(out, mnist.test_images[i]) > 0.85
        cy, cx = center_of_mass(out.astype(float))
        assert abs(cy - 14) < 1.0 and abs(cx - 14) < 1.0
        rows, cols = np.nonzero(out > 30)
        assert max(rows.max() - rows.min(), cols.max() - cols.min()) <= 21  # fitted into 20x20


def cluttered_page(digit: np.ndarray, clutter: str, rng: np.random.Generator, size: int = 400) -> bytes:
    """A 'photo' of a digit written in the middle of a page (dark ink, uneven light, JPEG), plus clutter."""
    page = np.zeros((40, 40), np.uint8)
    page[6:34, 6:34] = digit
    big = np.asarray(Image.fromarray(page).resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = (150 + 80 * xx + 20 * yy) * (1 - 0.7 * big / 255)
    if clutter == "speck":  # a blot of dirt far from the digit, as dark as the ink
        img[20:32, 340:352] *= 0.3
    elif clutter == "ruled":  # the faint lines of ruled paper, across the digit
        for y in range(30, size, 50):
            img[y : y + 4] *= 0.8
    elif clutter == "frame":  # the page does not fill the photo: a dark table at two edges
        img[:, :30] = 35
        img[-25:] = 35
    elif clutter == "box":  # a printed form box around the digit, darker than the ink
        for band in (np.s_[30:34, 30:370], np.s_[366:370, 30:370], np.s_[30:370, 30:34], np.s_[30:370, 366:370]):
            img[band] *= 0.4
    img = img + rng.normal(0, 6, img.shape)
    buffer = io.BytesIO()
    Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=70)
    return buffer.getvalue()


@pytest.mark.parametrize("clutter", ["speck", "ruled", "frame", "box"])
def test_clutter_around_the_digit_is_ignored(mnist, clutter):
    rng = np.random.default_rng(2)
    for i in SAMPLE:
        out = load_digit(cluttered_page(mnist.test_images[i], clutter, rng))
        assert correlation(out, mnist.test_images[i]) > 0.85


def test_a_faint_digit_beside_a_dark_table_is_read_in_full(mnist):
    # The table's edge holds far more (and stronger) ink than a faint digit: it must neither be
    # taken for the digit nor set the threshold that decides which strokes are ink.
    rng = np.random.default_rng(2)
    size = 400
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in SAMPLE:
        page = np.zeros((40, 40), np.uint8)
        page[6:34, 6:34] = mnist.test_images[i]
        big = np.asarray(Image.fromarray(page).resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)
        img = (150 + 80 * xx + 20 * yy) * (1 - 0.35 * big / 255)  # half the usual ink
        img[:, :30] = 35
        img[-25:] = 35
        img = img + rng.normal(0, 4, img.shape)
        buffer = io.BytesIO()
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(buffer, format="PNG")
        out = load_digit(buffer.getvalue())
        assert correlation(out, mnist.test_images[i]) > 0.85 and out.max() > 200  # full contrast


def test_a_digit_broken_into_pieces_is_kept_whole(mnist):
    from PIL import ImageFilter

    def blurred(a: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(a).filter(ImageFilter.GaussianBlur(1.5)))

    rng = np.random.default_rng(3)
    for i in SAMPLE:
        broken = mnist.test_images[i].copy()
        broken[::4] = broken[1::4] = 0  # two rows of every four missing: a broken, dotted stroke
        out = load_digit(cluttered_page(broken, "none", rng))
        # Kept whole, it still looks like the digit once the gaps are blurred over; one piece
        # blown up to 20x20 would not.
        assert correlation(blurred(out), blurred(mnist.test_images[i])) > 0.75


def test_tightly_cropped_digit_touching_the_frame_is_kept(mnist):
    for i in SAMPLE:
        digit = mnist.test_images[i]
        rows, cols = np.nonzero(digit > 0)
        tight = 255 - digit[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]  # dark ink, no margin
        image = Image.fromarray(tight).resize((tight.shape[1] * 8, tight.shape[0] * 8), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        assert correlation(load_digit(buffer.getvalue()), digit) > 0.85


@pytest.mark.parametrize("dark_ink", [True, False])
def test_small_digit_on_a_large_plain_canvas_is_found(mnist, dark_ink):
    # The ink covers well under 1% of the pixels, so percentiles of the image see only paper.
    for i in SAMPLE:
        digit = mnist.test_images[i]
        canvas = np.zeros((600, 600), np.uint8)
        canvas[300:328, 200:228] = digit
        if dark_ink:
            canvas = 255 - canvas
        buffer = io.BytesIO()
        Image.fromarray(canvas).save(buffer, format="PNG")
        assert correlation(load_digit(buffer.getvalue()), digit) > 0.85


def test_small_digit_on_a_large_shaded_photo_is_found(mnist):
    # Smooth shading across the page makes the histogram symmetric: the polarity must come from
    # the digit itself, and the digit (1/7 of the page) is read again at full resolution.
    rng = np.random.default_rng(1)
    for i in SAMPLE:
        page = np.zeros((196, 196), np.uint8)
        y, x = rng.integers(0, 196 - 28, 2)
        page[y : y + 28, x : x + 28] = mnist.test_images[i]
        assert correlation(load_digit(photograph(page, rng, size=1200)), mnist.test_images[i]) > 0.85


FINE_PEN_DIGITS = {  # polylines on a 1000-pixel canvas
    0: [(500, 200), (650, 320), (680, 500), (650, 700), (500, 800), (350, 700), (320, 500), (350, 320), (500, 200)],
    1: [(500, 200), (500, 800)],
    2: [(300, 330), (420, 220), (600, 240), (640, 380), (320, 780), (700, 780)],
    4: [(600, 800), (600, 200), (300, 600), (700, 600)],
    7: [(300, 250), (700, 250), (450, 800)],
}


@pytest.mark.parametrize("pen", [1, 3])
def test_a_digit_drawn_with_a_fine_pen_is_widened_to_mnist_strokes(pen):
    from tinymnist import load_pretrained
    from tinymnist.evaluation.predict import predict_digits

    digits = []
    for points in FINE_PEN_DIGITS.values():
        image = Image.new("L", (1000, 1000), 255)
        ImageDraw.Draw(image).line(points, fill=0, width=pen, joint="curve")
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        digits.append(load_digit(buffer.getvalue()))
    # A 1-pixel line shrunk 1/40 would be a faint trace (about 5 pixels' worth of ink); MNIST
    # digits carry 40-190 (1st-99th percentile), a "1" the least.
    assert min(d.sum() / 255 for d in digits) > 30
    labels = [r["label"] for r in predict_digits(load_pretrained(), np.stack(digits))]
    assert labels == list(FINE_PEN_DIGITS)


def test_connected_pieces_are_8_connected():
    mask = np.array([[1, 1, 0, 0, 0],
                     [0, 0, 1, 0, 1],
                     [0, 0, 0, 0, 1],
                     [1, 0, 0, 0, 0]], dtype=bool)
    labels, count = connected_pieces(mask)
    assert count == 3
    assert labels[0, 0] == labels[0, 1] == labels[1, 2]  # a diagonal step joins
    assert len({labels[0, 0], labels[1, 4], labels[3, 0]}) == 3 and (labels[~mask] == 0).all()


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "1", "I;16", "CMYK"])
def test_any_image_mode(mnist, mode):
    digit = mnist.test_images[0]
    canvas = Image.fromarray(255 - digit).resize((112, 112))  # dark ink on white
    if mode in ("LA", "RGBA"):  # transparent background, opaque dark ink
        rgba = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
        rgba.putalpha(Image.fromarray(digit).resize((112, 112)))
        image = rgba.convert(mode)
    else:
        image = canvas.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format="TIFF" if mode in ("CMYK", "I;16") else "PNG")
    out = load_digit(buffer.getvalue())
    assert correlation(out, digit) > 0.8


@pytest.mark.parametrize("scale, offset", [(1 / 255, 0.0), (1.0, 0.0), (257.0, 0.0), (2 / 255, -1.0)])
def test_wide_pixel_types_are_scaled_by_their_range(mnist, scale, offset):
    # float in [0, 1], float in [0, 255], 16-bit values in a 32-bit image, a normalized [-1, 1] array:
    # Pillow's own 8-bit conversion clips these (a [0, 1] float image came out blank).
    digit = mnist.test_images[1]
    paper = (255 - digit).astype(np.float64) * scale + offset
    image = Image.fromarray(paper.astype(np.float32) if scale < 2 else paper.astype(np.int32))
    buffer = io.BytesIO()
    image.save(buffer, format="TIFF")
    assert correlation(load_digit(buffer.getvalue()), digit) > 0.8


def test_pretrained_model_reads_photographed_digits(mnist):
    from tinymnist import load_pretrained
    from tinymnist.evaluation.predict import predict_digits

    rng = np.random.default_rng(1)
    digits = np.stack([load_digit(photograph(mnist.test_images[i], rng)) for i in SAMPLE])
    labels = [r["label"] for r in predict_digits(load_pretrained(), digits)]
    assert sum(p == mnist.test_labels[i] for p, i in zip(labels, SAMPLE, strict=True)) >= len(SAMPLE) - 1


def _bundled_names():
    from tinymnist.models.bundled import pretrained_names

    return pretrained_names()


@pytest.mark.parametrize("name", _bundled_names())
def test_every_bundled_model_loads_and_has_its_recorded_test_accuracy(mnist, name):
    import torch

    from tinymnist import load_pretrained
    from tinymnist.evaluation.logits import logits_for
    from tinymnist.models.bundled import pretrained_path
    from tinymnist.models.summary import summarize
    from tinymnist.models.zoo import DEFAULT_MODEL, count_parameters, create_model, model_kwargs
    from tinymnist.training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(pretrained_path(name))
    # The file is the registered model, with the registered arguments: `tinymnist models` counts its
    # parameters from the registry.
    assert ckpt["model_name"] == name and ckpt["model_args"] == model_kwargs(name)
    model = load_pretrained(name)
    params = count_parameters(model)
    assert params == summarize(create_model(name)).params and params < 5000
    recorded = json.loads(pretrained_path(name).with_suffix(".json").read_text())
    assert recorded["command"].strip() and recorded["metrics"]["model"] == name
    assert recorded["metrics"]["params"] == params
    assert recorded["metrics"]["epochs"] == ckpt["epoch"] == ckpt["config"]["epochs"]
    assert not ckpt["config"]["train_subset"] and not ckpt["config"]["test_subset"]  # a full run
    logits = logits_for(model, torch.from_numpy(mnist.test_images.copy()))
    correct = int((logits.argmax(1).numpy() == mnist.test_labels).sum())
    # The figure recorded (and, for the default, stated in the README) is the one its training run
    # logged for its final epoch, on all 10,000 test images.
    assert correct == round(recorded["metrics"]["final_test_accuracy"] * 100)
    if name == DEFAULT_MODEL:
        readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
        assert f"{correct / 100:.2f}%" in readme


def test_the_default_model_ships_weights():
    from tinymnist.models.zoo import DEFAULT_MODEL

    assert DEFAULT_MODEL in _bundled_names()


def test_bad_inputs_are_clear_errors(tmp_path):
    cases = {
        "empty.png": b"",
        "text.png": b"this is not an image",
        "truncated.png": None,
        "blank.png": None,
    }
    buffer = io.BytesIO()
    Image.fromarray(np.full((64, 64), 200, np.uint8)).save(buffer, format="PNG")
    cases["blank.png"] = buffer.getvalue()
    good = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(good, format="PNG")
    cases["truncated.png"] = good.getvalue()[:200]
    expected = {"empty.png": "empty", "text.png": "not an image", "truncated.png": "truncated or corrupt",
                "blank.png": "no ink"}
    for name, raw in cases.items():
        (tmp_path / name).write_bytes(raw)
        with pytest.raises(UserError, match=expected[name]):
            load_digit(tmp_path / name)
    with pytest.raises(UserError, match="not found"):
        load_digit(tmp_path / "missing.png")


def test_huge_image_is_refused_before_decoding(tmp_path):
    side = int(MAX_PIXELS**0.5) + 100
    path = tmp_path / "huge.png"
    Image.new("1", (side, side)).save(path)  # 1-bit: small file, many pixels
    with pytest.raises(UserError, match="too large"):
        load_digit(path)


@pytest.mark.slow
def test_predict_cli_keeps_going_after_a_bad_file(tmp_path, mnist):
    good = tmp_path / "seven.jpg"
    good.write_bytes(photograph(mnist.test_images[0], np.random.default_rng(2)))  # test image 0 is a 7
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage")
    result = run_cli("predict", bad, good, "--json", "--top", "2", "--save-input", tmp_path / "seen")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "bad.png" in result.stderr and "Traceback" not in result.stderr
    rows = json.loads(result.stdout)
    assert "error" in rows[0]
    assert rows[1]["label"] == 7 and len(rows[1]["top"]) == 2
    with Image.open(rows[1]["input_saved"]) as seen:
        assert seen.size == (28, 28)
    plain = run_cli("predict", good)
    assert plain.returncode == 0 and ": 7 (" in plain.stdout
