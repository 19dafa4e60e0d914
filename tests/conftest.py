import os
import shutil
from pathlib import Path

import pytest

# One thread per process in tests (and the CLI processes they start): results do not depend on it,
# and OpenMP threads of concurrent processes spinning against each other can slow a run 10x.
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]


def mnist_dir() -> Path:
    """The shared MNIST files: $TINYMNIST_DATA, else ../shared/datasets/mnist beside the repo."""
    env = os.environ.get("TINYMNIST_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "datasets" / "mnist"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = mnist_dir()
    if not (path / "train-images-idx3-ubyte.gz").exists():
        pytest.fail(f"MNIST files not found in {path}; set TINYMNIST_DATA")
    return path


@pytest.fixture(scope="session")
def mnist(data_dir):
    from tinymnist.data import load_mnist

    return load_mnist(data_dir, download=False)


@pytest.fixture
def data_copy(tmp_path, data_dir) -> Path:
    """A writable copy of the four files, to corrupt."""
    target = tmp_path / "mnist"
    target.mkdir()
    for f in data_dir.glob("*.gz"):
        shutil.copy(f, target / f.name)
    return target
