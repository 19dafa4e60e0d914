"""tinymnist: train, explain and serve a tiny (<5,000 parameter) CNN for MNIST digits on a CPU.

The Python API (stable; documented in the README):

    train(config=None, **overrides) -> Run      evaluate(model_or_path) -> dict
    predict(images, model=None) -> list         load(path) -> nn.Module
    load_pretrained(name=None) -> nn.Module     summary(model) -> Summary
    load_mnist(data_dir=None) -> MNIST (numpy arrays)

Importing tinymnist is cheap: torch and the rest load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Run", "TrainConfig", "__version__", "evaluate", "load", "load_mnist", "load_pretrained", "predict", "summary",
           "train"]

if TYPE_CHECKING:
    from tinymnist.api import Run, evaluate, load, load_mnist, load_pretrained, predict, summary, train
    from tinymnist.training.config import TrainConfig


def __getattr__(name: str) -> Any:
    if name == "TrainConfig":
        from tinymnist.training.config import TrainConfig

        return TrainConfig
    if name in __all__ and name != "__version__":
        from tinymnist import api

        return getattr(api, name)
    raise AttributeError(f"module 'tinymnist' has no attribute {name!r}")
