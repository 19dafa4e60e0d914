import gzip
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli, serve_directory
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from tinymnist.data.mnist import (
    FILES,
    DataLocation,
    class_counts,
    download_file,
    encode_idx,
    load_mnist,
    locate_data,
    parse_idx,
    pixel_stats,
    read_idx,
)
from tinymnist.errors import UserError

REFERENCE_TRAIN_COUNTS = {0: 5923, 1: 6742, 2: 5958, 3: 6131, 4: 5842, 5: 5421, 6: 5918, 7: 6265, 8: 5851, 9: 5949}


@given(hnp.arrays(st.sampled_from([np.uint8, np.int8, np.dtype(">i2"), np.dtype(">i4"), np.dtype(">f4")]),
                  hnp.array_shapes(min_dims=1, max_dims=4, max_side=6)))
def test_idx_round_trip(array):
    decoded = parse_idx(encode_idx(array))
    assert decoded.shape == array.shape
    np.testing.assert_array_equal(decoded, array)


@given(st.binary(max_size=64))
@settings(max_examples=300)
def test_parser_rejects_garbage_with_user_error(raw):
    # Any byte string either decodes consistently or raises UserError, never anything else.
    try:
        array = parse_idx(raw)
    except UserError:
        return
    assert array.nbytes == len(raw) - 4 - 4 * array.ndim


@given(st.integers(0, 255).filter(lambda b: b not in (0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E)))
def test_unknown_type_code_is_a_wrong_magic(code):
    with pytest.raises(UserError, match="magic"):
        parse_idx(bytes([0, 0, code, 1, 0, 0, 0, 1, 7]))


def test_truncated_and_overlong_bodies(tmp_path):
    raw = encode_idx(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
    with pytest.raises(UserError, match="truncated"):
        parse_idx(raw[:-1])
    with pytest.raises(UserError, match="longer"):
        parse_idx(raw + b"\0")
    with pytest.raises(UserError, match="header"):
        parse_idx(raw[:9])


def test_gzip_and_raw_files_read_the_same(tmp_path):
    array = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    (tmp_path / "a").write_bytes(encode_idx(array))
    (tmp_path / "a.gz").write_bytes(gzip.compress(encode_idx(array)))
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), read_idx(tmp_path / "a.gz"))
    (tmp_path / "b.gz").write_bytes(gzip.compress(encode_idx(array))[:-10])
    with pytest.raises(UserError, match="corrupt or truncated gzip"):
        read_idx(tmp_path / "b.gz")


def test_loads_reference_counts_and_stats(mnist):
    assert mnist.train_images.shape == (60000, 28, 28) and mnist.train_images.dtype == np.uint8
    assert mnist.test_images.shape == (10000, 28, 28)
    assert mnist.train_labels.dtype == np.int64
    assert class_counts(mnist.train_labels) == REFERENCE_TRAIN_COUNTS
    mean, std = pixel_stats(mnist.train_images)
    assert round(mean, 4) == 0.1307 and round(std, 4) == 0.3081


def test_checksum_mismatch_is_rejected(data_copy):
    labels = read_idx(data_copy / "t10k-labels-idx1-ubyte.gz").copy()
    labels[0] = (labels[0] + 1) % 10  # still a valid IDX file, but not MNIST's
    (data_copy / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(encode_idx(labels)))
    with pytest.raises(UserError, match="checksum mismatch"):
        load_mnist(data_copy, download=False)


def test_missing_file_without_download(data_copy):
    (data_copy / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(UserError, match="not found"):
        load_mnist(data_copy, download=False)


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty user cache and no $TINYMNIST_DATA: the resolution order ends in a download."""
    monkeypatch.delenv("TINYMNIST_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "tinymnist" / "mnist"


def test_download_skips_a_dead_mirror(cache, data_dir):
    with serve_directory(data_dir) as url:
        data = load_mnist(mirrors=(_closed_port_url(), url), notice=None)
    assert class_counts(data.train_labels) == REFERENCE_TRAIN_COUNTS
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{stem}.gz" for stem, _ in FILES.values())


def test_download_skips_a_corrupt_mirror_and_leaves_nothing_behind(tmp_path, data_dir):
    bad = tmp_path / "bad"
    bad.mkdir()
    stem, md5 = FILES["test-labels"]
    payload = bytearray(gzip.decompress((data_dir / f"{stem}.gz").read_bytes()))
    payload[100] ^= 1
    (bad / f"{stem}.gz").write_bytes(gzip.compress(bytes(payload)))
    target = tmp_path / "cache"
    with serve_directory(bad) as bad_url, serve_directory(data_dir) as good_url:
        with pytest.raises(UserError, match="checksum mismatch"):
            download_file(stem, md5, target, (bad_url,))
        assert not target.exists()  # no half-written or unverified file, and no empty folder
        path = download_file(stem, md5, target, (bad_url, good_url))
    assert path.name == f"{stem}.gz" and list(target.iterdir()) == [path]


def test_no_network_is_one_clear_error_and_leaves_no_empty_cache(cache):
    with pytest.raises(UserError) as info:
        load_mnist(mirrors=(_closed_port_url(),), notice=None)
    message = str(info.value)
    assert "could not download train-images-idx3-ubyte.gz" in message and str(cache) in message
    assert "--data-dir" in message and "TINYMNIST_DATA" in message and "TINYMNIST_MIRRORS" in message
    assert not (cache.parent.parent).exists()  # the folders the download created are gone again


def test_cache_replaces_a_corrupt_file_and_keeps_good_ones(cache, data_dir):
    cache.mkdir(parents=True)
    for f in data_dir.glob("*.gz"):
        shutil.copy(f, cache / f.name)
    victim = cache / "t10k-labels-idx1-ubyte.gz"
    victim.write_bytes(b"garbage")
    kept = (cache / "train-images-idx3-ubyte.gz").stat().st_mtime_ns
    notes: list[str] = []
    with serve_directory(data_dir) as url:
        data = load_mnist(mirrors=(url,), notice=notes.append)
    assert len(data.test_labels) == 10_000 and victim.read_bytes() == (data_dir / victim.name).read_bytes()
    assert (cache / "train-images-idx3-ubyte.gz").stat().st_mtime_ns == kept
    assert any("t10k-labels" in n and "again" in n for n in notes)


def test_named_folder_never_downloads_and_names_the_missing_files(tmp_path, data_dir, monkeypatch):
    folder = tmp_path / "mine"
    folder.mkdir()
    shutil.copy(data_dir / "train-labels-idx1-ubyte.gz", folder)
    with serve_directory(data_dir) as url:
        monkeypatch.setenv("TINYMNIST_MIRRORS", url)
        with pytest.raises(UserError) as info:
            load_mnist(folder)
        message = str(info.value)
        assert str(folder) in message and "--data-dir" in message
        for stem in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
            assert stem + ".gz" in message
        assert "train-labels" not in message
        monkeypatch.setenv("TINYMNIST_DATA", str(folder))
        with pytest.raises(UserError, match=r"\$TINYMNIST_DATA"):
            load_mnist()
    assert sorted(p.name for p in folder.iterdir()) == ["train-labels-idx1-ubyte.gz"]


def test_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TINYMNIST_DATA", str(tmp_path / "env"))
    assert locate_data(tmp_path / "flag") == DataLocation(tmp_path / "flag", "--data-dir")
    assert locate_data() == DataLocation(tmp_path / "env", "TINYMNIST_DATA")
    monkeypatch.delenv("TINYMNIST_DATA")
    assert locate_data() == DataLocation(tmp_path / "xdg" / "tinymnist" / "mnist", "cache")


def test_unwritable_cache(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    monkeypatch.delenv("TINYMNIST_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    with pytest.raises(UserError, match="cannot create data directory"):
        load_mnist(mirrors=(_closed_port_url(),), notice=None)


@pytest.mark.slow
def test_cli_downloads_once_into_the_cache(tmp_path, data_dir):
    """The whole path a user elsewhere takes: no --data-dir, no $TINYMNIST_DATA, a mirror (here a local
    server on 127.0.0.1) -> `tinymnist data` downloads into the cache, a second run reads it from there."""
    env = {k: v for k, v in os.environ.items() if k != "TINYMNIST_DATA"}
    env.update(XDG_CACHE_HOME=str(tmp_path / "xdg"), TINYMNIST_MIRRORS=_closed_port_url())
    with serve_directory(data_dir) as url:
        env["TINYMNIST_MIRRORS"] += "," + url
        first = run_cli("data", "--out", tmp_path / "out", env=env)
    assert first.returncode == 0, first.stderr
    assert first.stderr.count("downloading") == 4 and "train: 60,000 images" in first.stdout
    env["TINYMNIST_MIRRORS"] = _closed_port_url()  # no mirror now: it must not be needed
    second = run_cli("data", "--out", tmp_path / "out", env=env)
    assert second.returncode == 0 and "downloading" not in second.stderr, second.stderr


@pytest.mark.slow
def test_data_command_end_to_end(tmp_path, data_dir):
    result = run_cli("data", "--data-dir", data_dir, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    for digit, count in REFERENCE_TRAIN_COUNTS.items():
        assert f"{digit:>5}  {count:>5}" in result.stdout
    assert "mean 0.1307  std 0.3081" in result.stdout
    for name in ("samples.png", "class_spread.png"):
        with Image.open(tmp_path / "out" / name) as image:
            assert image.size[0] > 200 and image.size[1] > 100


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncate", "delete", "garbage"])
def test_data_command_bad_file_is_one_line(tmp_path, data_copy, damage):
    victim = data_copy / "train-images-idx3-ubyte.gz"
    if damage == "truncate":
        victim.write_bytes(victim.read_bytes()[:5000])
    elif damage == "delete":
        victim.unlink()
    else:
        victim.write_bytes(b"hello, not an idx file at all")
    env = {**os.environ, "TINYMNIST_MIRRORS": _closed_port_url()}
    result = run_cli("data", "--data-dir", data_copy, "--out", tmp_path / "out", env=env)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("tinymnist: error:")
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in data_copy.iterdir() if p.name.startswith(".")) == []


@pytest.mark.slow
def test_wrong_data_dir_is_one_line(tmp_path):
    result = run_cli("data", "--data-dir", tmp_path / "nope")
    assert result.returncode == 1 and "does not exist" in result.stderr and "Traceback" not in result.stderr
