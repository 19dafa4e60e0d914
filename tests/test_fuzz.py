"""Property-based fuzzing of everything that parses outside input: the IDX reader, the image decoder
and preprocessing, the server's request decoding, and configs from JSON. Each must return a valid
result or raise the one user-facing error type - never another exception, never a huge allocation.
(The longer coverage-guided runs live in fuzz/, outside the suite.)"""

import gzip
import io
import json
import struct
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from tinymnist.data.mnist import MAX_IDX_BYTES, gunzip, parse_idx
from tinymnist.data.preprocess import array_to_image, load_digit, to_mnist
from tinymnist.errors import UserError
from tinymnist.serve.server import decode_request
from tinymnist.training.config import TrainConfig

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def idx_with_lying_header(draw):
    """A well-formed IDX header whose dimensions promise anything (up to 2^32-1 each), then some bytes."""
    code = draw(st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E]))
    dims = draw(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=4))
    body = draw(st.binary(max_size=256))
    return bytes([0, 0, code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + body


@FUZZ
@given(st.one_of(st.binary(max_size=512), idx_with_lying_header()))
def test_idx_reader_returns_data_or_a_user_error(raw):
    try:
        array = parse_idx(raw)
    except UserError:
        return
    assert array.nbytes == len(raw) - 4 - 4 * array.ndim  # a view of the bytes given, nothing allocated


def test_sizes_that_overflow_64_bits_are_not_an_empty_match():
    """Found by fuzz/fuzz_idx.py: 65536^4 = 2^64 wrapped to 0 in int64, so an empty body "matched"."""
    header = bytes([0, 0, 0x08, 4]) + struct.pack(">IIII", 65536, 65536, 65536, 65536)
    with pytest.raises(UserError, match="truncated"):
        parse_idx(header)
    with pytest.raises(UserError, match="dimensions"):
        parse_idx(bytes([0, 0, 0x08, 64]) + bytes(4 * 64))


def test_a_gzip_bomb_is_refused_while_inflating():
    bomb = gzip.compress(bytes(MAX_IDX_BYTES + 1024), compresslevel=9)  # ~64 KB that inflate to 64 MB
    assert len(bomb) < 200_000
    with pytest.raises(UserError, match="decompresses to more than"):
        gunzip(bomb, "bomb.gz")


@FUZZ
@given(st.binary(max_size=2048))
def test_gunzip_of_any_bytes_is_data_or_a_user_error(raw):
    try:
        gunzip(b"\x1f\x8b" + raw, "x.gz")
    except UserError:
        pass


def _png(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


VALID = [_png(np.pad(np.full((10, 6), 255, np.uint8), 9)), _png(np.full((20, 30, 3), 200, np.uint8), "JPEG"),
         _png(np.eye(16, dtype=np.uint8) * 255, "BMP"), _png(np.eye(16, dtype=np.uint8) * 255, "GIF")]


@st.composite
def mutated_image(draw):
    """A valid PNG/JPEG/BMP/GIF with bytes flipped, cut or inserted: what a broken upload looks like."""
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 8))):
        op, at = draw(st.sampled_from(["flip", "cut", "insert"])), draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[at:]
            if not data:
                data += b"\0"
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


def _is_digit(digit: np.ndarray) -> bool:
    return digit.shape == (28, 28) and digit.dtype == np.uint8


@FUZZ
@given(st.one_of(st.binary(max_size=1024), mutated_image()))
def test_image_decoding_and_preprocessing_give_a_digit_or_a_user_error(raw):
    try:
        digit = load_digit(raw)
    except UserError:
        return
    assert _is_digit(digit)


@FUZZ
@given(hnp.arrays(st.one_of(hnp.scalar_dtypes(), st.just(np.dtype(np.uint8))),
                  st.one_of(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=40),
                            st.tuples(st.integers(1, 40), st.integers(1, 40), st.sampled_from([1, 3, 4])))))
@example(np.random.default_rng(0).integers(-5, 3000, (50, 40, 3)))  # colour, beyond 0-255: once a crash
@example(np.random.default_rng(0).random((30, 20, 4)).astype(np.float32))
@example(np.array([[-1.7e308, 1.7e308], [0.0, 1e308]]))  # a range wider than float64 can hold: once garbage
def test_any_array_gives_a_digit_or_a_user_error(array):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # an overflow or NaN on the way is a bug too
        try:
            digit = to_mnist(array_to_image(array))
        except UserError:
            return
    assert _is_digit(digit)


content_types = st.one_of(st.sampled_from(["image/png", "application/json", "application/json; charset=utf-8",
                                           "text/plain", "", "image/", "IMAGE/PNG;x=y"]), st.text(max_size=40))
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=12)


@FUZZ
@given(content_types, st.one_of(st.binary(max_size=512), json_values.map(lambda v: json.dumps({"image": v}).encode()),
                                st.text(max_size=200).map(lambda t: json.dumps({"image": "data:" + t}).encode())))
def test_server_request_decoding_gives_bytes_or_a_client_error(content_type, body):
    try:
        image = decode_request(content_type, body)
    except UserError:
        return
    except Exception as exc:  # the only other outcome: an unsupported content type (415)
        assert type(exc).__name__ == "_Unsupported"
        return
    assert isinstance(image, bytes)


FIELDS = [f for f in TrainConfig.__dataclass_fields__]


@FUZZ
@given(st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=10)), json_values, max_size=6))
def test_config_from_any_json_is_a_config_or_a_value_error(values):
    try:
        cfg = TrainConfig.from_dict(json.loads(json.dumps(values)))
    except ValueError:
        return
    assert isinstance(cfg, TrainConfig)


def test_a_huge_upload_is_shrunk_before_analysis():
    """Found by fuzz/fuzz_image.py: a ~50-megapixel image (a few hundred KB as PNG, under the server's
    2 MiB limit) peaked near 2 GB in preprocessing. Images over 12 MP are now shrunk right after decoding."""
    import tracemalloc

    side = 7000
    page = np.full((side, side), 230, np.uint8)
    page[side // 3 : 2 * side // 3, side // 2 - 100 : side // 2 + 100] = 20  # a "1"
    raw = _png(np.dstack([page, page, page, np.full_like(page, 255)]))
    tracemalloc.start()
    try:
        digit = load_digit(raw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert _is_digit(digit) and peak < 300 * 2**20, f"{peak / 2**20:.0f} MB"
