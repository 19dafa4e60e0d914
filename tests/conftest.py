import os
import shutil
from pathlib import Path

import pytest

# One thread per process in tests (and the CLI processes they start): results do not depend on it,
# and OpenMP threads of concurrent processes spinning against each other can slow a run 10x.
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The MNIST folder by tinymnist's own resolution order: $TINYMNIST_DATA (`make test` sets it to
    ../shared/datasets/mnist when that exists), else the user cache, downloaded into from the mirrors
    once. Without data the run stops with that one message instead of an error per test."""
    from tinymnist.data.mnist import ensure_mnist
    from tinymnist.errors import UserError

    try:
        return ensure_mnist()
    except UserError as exc:
        pytest.exit(f"the tests need the MNIST files: {exc}", returncode=1)


@pytest.fixture(scope="session")
def mnist(data_dir):
    from tinymnist.data.mnist import load_mnist

    return load_mnist(data_dir, download=False)


@pytest.fixture
def data_copy(tmp_path, data_dir) -> Path:
    """A writable copy of the four files, to corrupt."""
    target = tmp_path / "mnist"
    target.mkdir()
    for f in data_dir.glob("*.gz"):
        shutil.copy(f, target / f.name)
    return target
