"""The native engine's optimizer step: torch.optim.SGD's Nesterov update of every parameter in one C
call (csrc/sgd.c), on the calling thread.

PyTorch's own step (fused, one thread) costs about 50 us on warm caches, but 0.25-0.3 ms right after a
native training step, which sweeps megabytes of activations through the caches and evicts the
optimizer's Python and dispatch code; the C loop over ~5,000 values takes a few microseconds.

The optimizer stays the source of truth: learning rates and weight decays are read from its param
groups at every step (so LR schedulers work unchanged), and the momentum buffers are the tensors in
its `state` (so `state_dict()` / `load_state_dict()` checkpoint them as usual). Optimizers this does not
cover (Adam, AdamW, SGD without Nesterov momentum, ...) keep PyTorch's step (`updater` returns None).
"""

from __future__ import annotations

import ctypes
from typing import Any

import torch

from tinymnist.engine import binding


def sgd_problem(optimizer: torch.optim.Optimizer) -> str | None:
    """Why tm_sgd_step cannot run this optimizer's step, or None when it computes what step() does."""
    if type(optimizer) is not torch.optim.SGD:
        return f"{type(optimizer).__name__} is not plain SGD"
    groups = optimizer.param_groups
    momenta = {g["momentum"] for g in groups}
    if len(momenta) != 1 or not 0 < next(iter(momenta)) < 1:
        return "the groups need one momentum in (0, 1)"
    for g in groups:
        if not g["nesterov"] or g["dampening"] != 0 or g.get("maximize") or g.get("differentiable"):
            return "only Nesterov momentum without dampening is native"
        for p in g["params"]:
            if p.dtype != torch.float32 or p.device.type != "cpu" or not p.is_contiguous():
                return "parameters must be contiguous float32 CPU tensors"
    return None


class NativeSGD:
    """`step()` does what `optimizer.step()` does for a Nesterov SGD optimizer, in C. Every parameter
    needs its .grad (contiguous float32) at each step; a missing momentum buffer is created as zeros
    (which gives PyTorch's first step, buf = d)."""

    def __init__(self, optimizer: torch.optim.SGD, lib: Any = None):
        problem = sgd_problem(optimizer)
        if problem is not None:
            raise ValueError(f"NativeSGD cannot run this optimizer: {problem}")
        self.optimizer = optimizer
        self.lib = lib if lib is not None else binding.load()
        groups = optimizer.param_groups
        self.lr = (ctypes.c_float * len(groups))()
        self.weight_decay = (ctypes.c_float * len(groups))()
        self.params = [(p, gi) for gi, g in enumerate(groups) for p in g["params"]]
        self.tensors = (binding.SgdTensor * len(self.params))()
        self.opt = binding.Sgd(count=len(self.params), tensors=self.tensors,
                               lr=ctypes.cast(self.lr, ctypes.c_void_p),
                               weight_decay=ctypes.cast(self.weight_decay, ctypes.c_void_p),
                               momentum=groups[0]["momentum"])
        self.signature: list[int] = []

    def _buffers(self) -> list[torch.Tensor]:
        state = self.optimizer.state
        out = []
        for p, _ in self.params:
            s = state[p]
            if "momentum_buffer" not in s or s["momentum_buffer"] is None:
                s["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
            out.append(s["momentum_buffer"])
        return out

    def step(self, check: bool = True) -> None:
        """One update. `check=False` skips checking that the parameters, their .grad and the momentum
        buffers are still the tensors of the last checked step (about 0.1 ms of Python right after a
        native training step): only for a caller that owns them between steps, as the trainer does
        within an epoch (it checks at each epoch's first step)."""
        for i, g in enumerate(self.optimizer.param_groups):
            self.lr[i], self.weight_decay[i] = g["lr"], g["weight_decay"]
        if check or not self.signature:
            self._check()
        self.lib.tm_sgd_step(ctypes.byref(self.opt))
        # What optimizer.step()'s wrapper records, so that LR schedulers know the step ran (else they
        # warn that scheduler.step() came first). Step hooks registered on the optimizer do not run.
        self.optimizer._opt_called = True  # type: ignore[attr-defined]

    def _check(self) -> None:
        grads = [p.grad for p, _ in self.params]
        buffers = self._buffers()
        signature = [t.data_ptr() if t is not None else 0 for t in (*(p for p, _ in self.params), *grads, *buffers)]
        if signature != self.signature:  # built once; again only when a tensor has been replaced
            for (p, gi), grad, buf, entry in zip(self.params, grads, buffers, self.tensors, strict=True):
                for t in (grad, buf):
                    if t is None or t.shape != p.shape or t.dtype != torch.float32 or not t.is_contiguous():
                        raise ValueError("NativeSGD needs a contiguous float32 .grad and momentum buffer "
                                         "of each parameter's shape")
                entry.param, entry.grad, entry.momentum_buffer = p.data_ptr(), grad.data_ptr(), buf.data_ptr()
                entry.size, entry.group = p.numel(), gi
            self.signature = signature


def updater(optimizer: torch.optim.Optimizer, lib: Any = None) -> NativeSGD | None:
    """The native step of this optimizer, or None when PyTorch's own step must run."""
    return NativeSGD(optimizer, lib) if sgd_problem(optimizer) is None else None
