"""Training engines: `eager` (plain PyTorch modules, the reference) and `native` (C kernels,
channels-last, for the layer types the registered models use). See engine.native."""

from __future__ import annotations

from tinymnist.engine.select import ENGINES, resolve_engine

__all__ = ["ENGINES", "resolve_engine"]
