"""MNIST on disk: read IDX files with numpy, verify them, find or download them.

Everything here returns numpy arrays; turning them into tensors is the trainer's business.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinymnist.atomic import write_bytes_atomic
from tinymnist.errors import UserError

# The four files and the MD5 of their *uncompressed* content (the published reference values).
# Checking the uncompressed bytes accepts both the original .gz files and recompressed copies.
FILES = {
    "train-images": ("train-images-idx3-ubyte", "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels": ("train-labels-idx1-ubyte", "a25bea736e30d166cdddb491f175f624"),
    "test-images": ("t10k-images-idx3-ubyte", "2646ac647ad5339dbf082846283269ea"),
    "test-labels": ("t10k-labels-idx1-ubyte", "27ae3e4e09519cfbb04c329615203637"),
}

DEFAULT_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

ENV_DATA_DIR = "TINYMNIST_DATA"
ENV_MIRRORS = "TINYMNIST_MIRRORS"  # comma-separated base URLs; overrides DEFAULT_MIRRORS

# IDX type codes -> numpy dtypes (big-endian, as the format stores them).
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {v: k for k, v in _IDX_DTYPES.items()}
MAX_IDX_DIMS = 16  # MNIST uses 1 and 3; numpy allows 64


@dataclass(frozen=True)
class MNIST:
    """The full dataset: images N x 28 x 28 uint8, labels N int64."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


# ---------------------------------------------------------------------------------------------
# IDX format


def parse_idx(raw: bytes, name: str = "IDX data") -> np.ndarray:
    """Decode the bytes of an (uncompressed) IDX file, validating header, dimensions and length."""
    if len(raw) < 4:
        raise UserError(f"{name} is too short to be an IDX file ({len(raw)} bytes)")
    zero1, zero2, code, ndim = raw[0], raw[1], raw[2], raw[3]
    if zero1 != 0 or zero2 != 0 or code not in _IDX_DTYPES or ndim == 0:
        raise UserError(f"{name} has a wrong magic number ({raw[:4].hex()}); it is not an IDX file")
    if ndim > MAX_IDX_DIMS:
        raise UserError(f"{name} claims {ndim} dimensions; an IDX file has at most {MAX_IDX_DIMS}")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise UserError(f"{name} is truncated inside its header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_DTYPES[code]
    # Python integers: a product of 32-bit sizes must not wrap around (np.prod in int64 can, and a
    # lying header would then "match" an empty body; fuzz/fuzz_idx.py covers it).
    expected = math.prod(shape) * dtype.itemsize
    body = len(raw) - header_len
    if body != expected:
        what = "truncated" if body < expected else "longer than its header says"
        raise UserError(f"{name} is {what}: {body} data bytes for shape {shape}, expected {expected}")
    try:
        return np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(shape)
    except ValueError:  # e.g. a zero beside sizes whose product numpy cannot index (fuzz/fuzz_idx.py)
        raise UserError(f"{name} has impossible dimensions {shape}") from None


def encode_idx(array: np.ndarray) -> bytes:
    """Encode an array as IDX bytes (the inverse of `parse_idx`)."""
    dtype = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    if dtype not in _IDX_CODES:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    header = bytes([0, 0, _IDX_CODES[dtype], array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=dtype).tobytes()


def read_raw(path: Path) -> bytes:
    """The uncompressed bytes of an IDX file, gzip or raw (detected from content, not the name)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"data file not found: {path}") from None
    except OSError as exc:
        raise UserError(f"cannot read data file {path}: {exc.strerror}") from None
    if data[:2] == b"\x1f\x8b":
        return gunzip(data, f"data file {path}")
    return data


# The largest MNIST file, train-images, is 47,040,016 bytes uncompressed; a gzip file that inflates
# beyond this is refused while decompressing, before it can fill the memory (a "gzip bomb").
MAX_IDX_BYTES = 64 * 1024 * 1024


def gunzip(data: bytes, name: str, limit: int = MAX_IDX_BYTES) -> bytes:
    """Decompress gzip bytes (several members allowed), refusing output over `limit` bytes."""
    out, rest = bytearray(), data
    try:
        while rest:
            inflater = zlib.decompressobj(wbits=31)
            out += inflater.decompress(rest, limit + 1 - len(out))
            if len(out) > limit:
                raise UserError(f"{name} decompresses to more than {limit:,} bytes; it is not an MNIST file")
            if not inflater.eof:
                raise UserError(f"{name} is a corrupt or truncated gzip file (it ends inside the compressed data)")
            rest = inflater.unused_data.lstrip(b"\0")  # gzip allows trailing zero padding
    except zlib.error as exc:
        raise UserError(f"{name} is a corrupt or truncated gzip file ({exc})") from None
    return bytes(out)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzip or raw) into a numpy array."""
    path = Path(path)
    return parse_idx(read_raw(path), name=f"data file {path}")


# ---------------------------------------------------------------------------------------------
# Finding, verifying and downloading the four files
#
# One resolution order everywhere (CLI, Python API, tests, benchmarks):
#   1. --data-dir / data_dir=   2. $TINYMNIST_DATA   3. the user cache, downloaded into when missing.
# A folder the user names (1, 2) is only read: a missing file there is an error that names it, not a
# download (a typo should not fill some folder with 11 MB). Only the cache is downloaded into.

HOW_TO_POINT = ("pass --data-dir DIR (data_dir= in Python) or set TINYMNIST_DATA to a folder with the four "
                "MNIST .gz files")


@dataclass(frozen=True)
class DataLocation:
    """Where the MNIST files are looked for, and why there."""

    directory: Path
    source: str  # "--data-dir" | "TINYMNIST_DATA" | "cache"

    @property
    def downloads(self) -> bool:
        return self.source == "cache"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tinymnist" / "mnist"


def locate_data(data_dir: str | Path | None = None) -> DataLocation:
    """`--data-dir`, else $TINYMNIST_DATA, else the per-user cache directory."""
    if data_dir:
        return DataLocation(Path(data_dir).expanduser(), "--data-dir")
    if os.environ.get(ENV_DATA_DIR):
        return DataLocation(Path(os.environ[ENV_DATA_DIR]).expanduser(), ENV_DATA_DIR)
    return DataLocation(default_cache_dir(), "cache")


def mirrors_from_env() -> tuple[str, ...]:
    value = os.environ.get(ENV_MIRRORS, "").strip()
    return tuple(m.strip() for m in value.split(",") if m.strip()) or DEFAULT_MIRRORS


def _find_file(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def _verified(raw: bytes, stem: str, md5: str, where: str) -> bytes:
    digest = hashlib.md5(raw).hexdigest()
    if digest != md5:
        raise UserError(f"checksum mismatch for {where}: MD5 of its content is {digest}, expected {md5}")
    return raw


def _created_dirs(directory: Path) -> list[Path]:
    """The folders `mkdir(parents=True)` would create for `directory`, deepest first."""
    missing = []
    for path in (directory, *directory.parents):
        if path.exists():
            break
        missing.append(path)
    return missing


def _remove_if_empty(paths: list[Path]) -> None:
    for path in paths:  # deepest first
        try:
            path.rmdir()
        except OSError:
            return


def download_file(stem: str, md5: str, directory: Path, mirrors: tuple[str, ...], timeout: float = 30.0) -> Path:
    """Fetch `stem`.gz from the first mirror that serves a verified copy; write it atomically.
    Folders it had to create are removed again when every mirror fails."""
    created = _created_dirs(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create data directory {directory} ({exc.strerror}); {HOW_TO_POINT}") from None
    target = directory / f"{stem}.gz"
    problems = []
    for base in mirrors:
        url = base.rstrip("/") + f"/{stem}.gz"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                payload = response.read(MAX_IDX_BYTES + 1)
            if len(payload) > MAX_IDX_BYTES:
                raise ValueError(f"larger than {MAX_IDX_BYTES:,} bytes; not an MNIST file")
            raw = gunzip(payload, url) if payload[:2] == b"\x1f\x8b" else payload
            _verified(raw, stem, md5, url)
        except (urllib.error.URLError, OSError, EOFError, ValueError) as exc:
            problems.append(f"{url}: {getattr(exc, 'reason', exc)}")
            continue
        except UserError as exc:
            problems.append(str(exc))
            continue
        # Temp file + rename: a crash or a full disk never leaves a half-written data file behind.
        try:
            write_bytes_atomic(target, payload)
        except OSError as exc:
            _remove_if_empty(created)
            raise UserError(f"cannot write {target}: {exc.strerror}") from None
        return target
    _remove_if_empty(created)
    raise UserError(f"could not download {stem}.gz into {directory} from any mirror ({'; '.join(problems)}); "
                    f"{HOW_TO_POINT}, or set {ENV_MIRRORS} to mirror URLs that serve it")


def _missing_files(location: DataLocation, keys: Iterable[str]) -> list[str]:
    return [FILES[key][0] + ".gz" for key in keys if _find_file(location.directory, FILES[key][0]) is None]


def _check_named_folder(location: DataLocation, keys: Iterable[str] = tuple(FILES)) -> None:
    """A folder the user named must exist and hold the files of `keys` (all four by default); the
    error says which are missing."""
    given_by = "--data-dir (data_dir=)" if location.source == "--data-dir" else f"${ENV_DATA_DIR}"
    directory = location.directory
    if not directory.exists():
        raise UserError(f"data directory {directory} (given by {given_by}) does not exist; point {given_by} at the "
                        "folder with the four MNIST .gz files, or leave it out to download them into "
                        f"{default_cache_dir()}")
    missing = _missing_files(location, keys)
    if missing:
        files = "file " + missing[0] if len(missing) == 1 else "files " + ", ".join(missing)
        raise UserError(f"MNIST {files} not found in {directory} (given by {given_by}); copy the four files there "
                        f"(gzipped or not), or leave out {given_by} to download them into {default_cache_dir()}")


def load_file(key: str, location: DataLocation, download: bool = True, mirrors: tuple[str, ...] | None = None,
              notice: Callable[[str], None] | None = None) -> np.ndarray:
    """One of the four arrays, verified by checksum. In the cache, a missing file is downloaded and a
    corrupt one replaced (when `download`); in a folder the user named, both are errors."""
    stem, md5 = FILES[key]
    path = _find_file(location.directory, stem)
    if path is not None:
        try:
            return _read_verified(path, stem, md5)
        except UserError as exc:
            if not (location.downloads and download):
                raise
            if notice:
                notice(f"{exc}; downloading it again")
            path.unlink()
    if not location.downloads:
        _check_named_folder(location, (key,))
    if not download:
        raise UserError(f"data file {stem}.gz not found in {location.directory}; {HOW_TO_POINT}")
    if notice:
        notice(f"downloading {stem}.gz into {location.directory}")
    return _read_verified(download_file(stem, md5, location.directory, mirrors or mirrors_from_env()), stem, md5)


def _read_verified(path: Path, stem: str, md5: str) -> np.ndarray:
    return parse_idx(_verified(read_raw(path), stem, md5, str(path)), name=f"data file {path}")


def _stderr_notice(line: str) -> None:
    print(f"tinymnist: {line}", file=sys.stderr, flush=True)


def load_mnist(data_dir: str | Path | None = None, download: bool = True,
               mirrors: tuple[str, ...] | None = None,
               notice: Callable[[str], None] | None = _stderr_notice) -> MNIST:
    """Load and verify all four files: `data_dir`, else $TINYMNIST_DATA, else the user cache (downloaded
    into from the mirrors when `download`; $TINYMNIST_MIRRORS overrides the mirror list)."""
    location = _checked_location(data_dir, FILES)
    train = _split_arrays("train", location, download, mirrors, notice)
    test = _split_arrays("test", location, download, mirrors, notice)
    return MNIST(train_images=train[0], train_labels=train[1], test_images=test[0], test_labels=test[1])


def load_split(split: str, data_dir: str | Path | None = None, download: bool = True,
               mirrors: tuple[str, ...] | None = None,
               notice: Callable[[str], None] | None = _stderr_notice) -> tuple[np.ndarray, np.ndarray]:
    """One split's images (N x 28 x 28 uint8) and labels (int64), found as `load_mnist` finds them;
    the other split's files are neither needed nor opened (`tinymnist search` never reads the test set)."""
    location = _checked_location(data_dir, (f"{split}-images", f"{split}-labels"))
    return _split_arrays(split, location, download, mirrors, notice)


def _checked_location(data_dir: str | Path | None, keys: Iterable[str]) -> DataLocation:
    location = locate_data(data_dir)
    if location.directory.exists() and not location.directory.is_dir():
        raise UserError(f"data directory {location.directory} is not a directory; {HOW_TO_POINT}")
    if not location.downloads:
        _check_named_folder(location, keys)
    return location


def _split_arrays(split: str, location: DataLocation, download: bool, mirrors: tuple[str, ...] | None,
                  notice: Callable[[str], None] | None) -> tuple[np.ndarray, np.ndarray]:
    images = load_file(f"{split}-images", location, download, mirrors, notice)
    labels = load_file(f"{split}-labels", location, download, mirrors, notice)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.ndim != 1 or len(images) != len(labels):
        raise UserError(f"{split} images {images.shape} and labels {labels.shape} do not match")
    return images, labels.astype(np.int64)


def ensure_mnist(data_dir: str | Path | None = None, mirrors: tuple[str, ...] | None = None,
                 notice: Callable[[str], None] | None = _stderr_notice) -> Path:
    """The folder holding the four verified files, downloading into the cache if needed."""
    load_mnist(data_dir, mirrors=mirrors, notice=notice)
    return locate_data(data_dir).directory


# ---------------------------------------------------------------------------------------------
# Statistics


def pixel_stats(images: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of pixel values scaled to [0, 1] (0.1307, 0.3081 for MNIST train)."""
    scaled = images.astype(np.float64) / 255.0
    return float(scaled.mean()), float(scaled.std())


def class_counts(labels: np.ndarray, num_classes: int = 10) -> dict[int, int]:
    counts = np.bincount(labels, minlength=num_classes)
    return {i: int(c) for i, c in enumerate(counts)}
