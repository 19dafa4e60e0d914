"""The native engine's optimizer step: PyTorch's own fused SGD kernel (`torch._fused_sgd_`, what
`torch.optim.SGD(fused=True).step()` runs), called directly, once per parameter group.

`optimizer.step()` is slow right after a native training step, which sweeps megabytes of activations
through the caches and evicts the optimizer's Python and dispatch code (its hooks, grouping by device
and dtype, profiler records); the kernel itself takes a few microseconds. Called directly, the update
is the same arithmetic, bit for bit (tested), so results do not change. It is PyTorch's kernel rather
than one in C because the update must round exactly as PyTorch's does (docs/research.md).

The optimizer stays the source of truth: learning rates, momentum and weight decay are read from its
param groups at every step (LR schedulers work unchanged) and the momentum buffers are the tensors in
its `state` (`state_dict()` / `load_state_dict()` checkpoint them as usual). Optimizers this does not
cover (Adam, AdamW, SGD without Nesterov momentum or not fused, ...) keep `optimizer.step()`
(`updater` returns None).
"""

from __future__ import annotations

import torch


def sgd_problem(optimizer: torch.optim.Optimizer) -> str | None:
    """Why the direct step cannot stand in for this optimizer's step(), or None when it computes the same."""
    if type(optimizer) is not torch.optim.SGD or not hasattr(torch, "_fused_sgd_"):
        return f"{type(optimizer).__name__} is not plain SGD with PyTorch's fused kernel"
    for g in optimizer.param_groups:
        if not g.get("fused") or not g["nesterov"] or g["dampening"] != 0 or g.get("maximize") \
                or g.get("differentiable") or not 0 < g["momentum"] < 1:
            return "only fused SGD with Nesterov momentum, without dampening, is covered"
        for p in g["params"]:
            if p.dtype != torch.float32 or p.device.type != "cpu":
                return "parameters must be float32 CPU tensors"
    return None


class NativeSGD:
    """`step()` does what `optimizer.step()` does for a fused Nesterov SGD optimizer whose parameters all
    have a .grad, through the same kernel, without the optimizer's Python machinery (step hooks registered
    on the optimizer do not run)."""

    def __init__(self, optimizer: torch.optim.SGD):
        problem = sgd_problem(optimizer)
        if problem is not None:
            raise ValueError(f"NativeSGD cannot run this optimizer: {problem}")
        self.optimizer = optimizer
        self.lists: list[tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]] = []

    def step(self, check: bool = True) -> None:
        """One update. `check=False` reuses the tensor lists of the last checked step (each parameter,
        its .grad and its momentum buffer) without looking them up again (tens of microseconds of Python
        right after a native step): only for a caller that owns them between steps, as the trainer does
        within an epoch (it checks at each epoch's first step)."""
        groups = self.optimizer.param_groups
        if check or len(self.lists) != len(groups):
            self.lists = [self._lists(g) for g in groups]
        for g, (params, grads, buffers) in zip(groups, self.lists, strict=True):
            torch._fused_sgd_(params, grads, buffers, weight_decay=g["weight_decay"], momentum=g["momentum"],
                              lr=g["lr"], dampening=0.0, nesterov=True, maximize=False, is_first_step=False,
                              grad_scale=None, found_inf=None)
        # What optimizer.step()'s wrapper records, so that LR schedulers know the step ran (else they
        # warn that scheduler.step() came first).
        self.optimizer._opt_called = True  # type: ignore[attr-defined]

    def _lists(self, group: dict) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        params = list(group["params"])
        grads = [p.grad for p in params]
        if any(t is None for t in grads):
            raise ValueError("NativeSGD needs every parameter's .grad")
        state = self.optimizer.state
        buffers = [state[p].get("momentum_buffer") for p in params]
        if all(b is None for b in buffers):
            # torch.optim.SGD's first step copies d into fresh buffers; a zero buffer gives the same
            # bits (0 * momentum + d = d), so every step can run the kernel's ordinary path.
            buffers = [torch.zeros_like(t) for t in grads]
            for p, b in zip(params, buffers, strict=True):
                state[p]["momentum_buffer"] = b
        elif any(b is None for b in buffers):
            raise ValueError("NativeSGD needs a momentum buffer for every parameter of a group, or none")
        return params, grads, buffers


def updater(optimizer: torch.optim.Optimizer) -> NativeSGD | None:
    """The direct step of this optimizer, or None when PyTorch's own step() must run."""
    return NativeSGD(optimizer) if sgd_problem(optimizer) is None else None
