"""The native engine's training forward/backward: a lowered program (engine.program) run by the
C kernels (engine.binding), wrapped as one torch.autograd.Function so that the loss, the optimizer,
the schedule and checkpoints stay plain PyTorch.

`NativeRunner(model)` shares the model's parameters and BatchNorm buffers (running statistics are
updated in place, as in eager training); in eval mode it simply calls the eager model. Activations
live in a per-batch-size workspace reused from step to step, so one forward must be followed by its
backward before the next forward (checked: a stale backward raises instead of returning garbage).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tinymnist.engine import binding
from tinymnist.engine.program import BatchNorm, Conv, Dropout, Head, MaxPool, Op, lower, round_up


def new_like(t: torch.Tensor) -> torch.Tensor:
    """An uninitialized tensor of t's shape and dtype in plain row-major order (what the C kernels write)."""
    return torch.empty(t.shape, dtype=t.dtype)


def ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


@dataclass
class OpBuffers:
    out: torch.Tensor | None = None  # the op's output (conv: pre-BatchNorm values)
    grad_in: torch.Tensor | None = None  # gradient w.r.t. the op's input (a view of one of two shared buffers)
    extra: dict[str, torch.Tensor] = field(default_factory=dict)


class Workspace:
    """Every buffer one training step needs at batch size n, allocated once."""

    def __init__(self, program: list[Op], n: int, stride: Callable[[int], int]):
        f32 = dict(dtype=torch.float32)
        self.ops: list[OpBuffers] = []
        grad_shapes: dict[int, tuple[int, ...]] = {}  # op index -> shape of its input gradient
        partial_len, stats_len = 1, 1
        for op in program:
            b = OpBuffers()
            if isinstance(op, Conv):
                cs = stride(op.out.c)
                b.out = torch.empty(n, op.out.h, op.out.w, cs, **f32)
                in_stride = 1 if op.inp.c == 1 else stride(op.inp.c)
                grad_shapes[len(self.ops)] = (n, op.inp.h, op.inp.w, in_stride)
                per_image = 9 * cs if op.kind == "dw" else op.k * op.k * in_stride * cs + cs
                partial_len = max(partial_len, n * per_image)
                stats_len = max(stats_len, n * 2 * cs)
            elif isinstance(op, BatchNorm):
                cs = stride(op.shape.c)
                b.out = torch.empty(n, op.shape.h, op.shape.w, cs, **f32)
                b.extra = {k: torch.empty(cs, **f32) for k in ("scale", "shift", "mean", "invstd")}
                stats_len = max(stats_len, n * 2 * cs)
            elif isinstance(op, MaxPool):
                cs = stride(op.inp.c)
                b.out = torch.empty(n, op.out.h, op.out.w, cs, **f32)
                grad_shapes[len(self.ops)] = (n, op.inp.h, op.inp.w, cs)
            elif isinstance(op, Dropout):
                cs = stride(op.shape.c)
                b.out = torch.empty(n, op.shape.h, op.shape.w, cs, **f32)
                b.extra = {"mask": torch.empty(n, op.shape.h, op.shape.w, cs, **f32)}
            elif isinstance(op, Head):
                cs = stride(op.inp.c)
                b.out = torch.empty(n, op.classes, **f32)
                grad_shapes[len(self.ops)] = (n, op.inp.h, op.inp.w, cs)
                b.extra = {"pooled": torch.empty(n, cs, **f32)}
            self.ops.append(b)
        # Gradients w.r.t. activations are needed one op at a time: ops write theirs into the one of two
        # shared buffers that does not hold the incoming gradient (a smaller working set than one each).
        sizes = {i: math.prod(shape) for i, shape in grad_shapes.items()}
        pair = [torch.empty(max(sizes.values()), **f32) for _ in range(2)]
        for turn, i in enumerate(sorted(grad_shapes, reverse=True)):  # in backward order
            self.ops[i].grad_in = pair[turn % 2][: sizes[i]].view(grad_shapes[i])
        self.partial = torch.empty(partial_len, **f32)
        self.stats = torch.empty(stats_len, dtype=torch.float64)
        self.generation = 0


def op_params(op: Op) -> list[torch.Tensor]:
    if isinstance(op, (Conv, Head)):
        return [op.module.weight] + ([op.module.bias] if op.module.bias is not None else [])
    if isinstance(op, BatchNorm) and op.module.affine:
        return [op.module.weight, op.module.bias]
    return []


class NativeRunner:
    """Callable like the model: native kernels in training mode, the eager model in eval mode."""

    def __init__(self, model: nn.Module, lib: Any = None):
        self.model = model
        self.lib = lib if lib is not None else binding.load()
        self.input_shape = (1, 28, 28)
        self.program = lower(model, *self.input_shape[1:])
        self.params = [p for op in self.program for p in op_params(op)]
        self.workspaces: dict[int, Workspace] = {}
        self.lanes = self.lib.tm_lanes()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.model.training:
            return self.model(x)
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"the native engine takes N x {' x '.join(map(str, self.input_shape))} inputs, "
                             f"got {tuple(x.shape)}")
        x = x.to(torch.float32).contiguous()
        return NativeStep.apply(self, x, *self.params)

    def stride(self, channels: int) -> int:
        return round_up(channels, self.lanes)

    def workspace(self, n: int) -> Workspace:
        if n not in self.workspaces:
            if len(self.workspaces) >= 4:
                self.workspaces.pop(next(iter(self.workspaces)))
            self.workspaces[n] = Workspace(self.program, n, self.stride)
        return self.workspaces[n]

    # ------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Workspace]:
        lib, n = self.lib, x.shape[0]
        ws = self.workspace(n)
        ws.generation += 1
        cur, cur_stride = x, 1
        for op, b in zip(self.program, ws.ops, strict=True):
            if isinstance(op, Conv):
                w = op.module.weight.detach().contiguous()
                stats = ptr(ws.stats) if op.stats else None
                if op.kind == "dw":
                    lib.tm_dwconv_forward(ptr(cur), ptr(w), ptr(b.out), stats, n, op.inp.h, op.inp.w, op.inp.c)
                else:
                    bias = op.module.bias
                    lib.tm_conv_forward(ptr(cur), cur_stride, ptr(w), ptr(None if bias is None else bias.detach()),
                                        ptr(b.out), stats, n, op.inp.h, op.inp.w, op.inp.c, op.out.c, op.k, op.pad,
                                        int(op.relu))
            elif isinstance(op, BatchNorm):
                bn, e = op.module, b.extra
                gamma, beta = (bn.weight.detach(), bn.bias.detach()) if bn.affine else (None, None)
                lib.tm_bn_finalize(ptr(ws.stats), n, op.shape.h * op.shape.w, op.shape.c, bn.eps, bn.momentum,
                                   ptr(gamma), ptr(beta), ptr(bn.running_mean), ptr(bn.running_var),
                                   ptr(e["scale"]), ptr(e["shift"]), ptr(e["mean"]), ptr(e["invstd"]))
                bn.num_batches_tracked.add_(1)
                lib.tm_bn_apply(ptr(cur), ptr(b.out), ptr(e["scale"]), ptr(e["shift"]), n * op.shape.h * op.shape.w,
                                self.stride(op.shape.c), int(op.relu_after))
            elif isinstance(op, MaxPool):
                lib.tm_maxpool2_forward(ptr(cur), ptr(b.out), n, op.inp.h, op.inp.w, self.stride(op.inp.c))
            elif isinstance(op, Dropout):
                mask = b.extra["mask"]
                mask.bernoulli_(1.0 - op.p).mul_(1.0 / (1.0 - op.p))
                torch.mul(cur, mask, out=b.out)
            elif isinstance(op, Head):
                bias = op.module.bias
                lib.tm_head_forward(ptr(cur), ptr(op.module.weight.detach().contiguous()),
                                    ptr(None if bias is None else bias.detach()), ptr(b.extra["pooled"]), ptr(b.out),
                                    n, op.inp.h * op.inp.w, op.inp.c, op.classes)
            cur, cur_stride = b.out, (b.out.shape[-1] if b.out is not None else 0)
        return cur.clone(), ws

    def backward(self, x: torch.Tensor, ws: Workspace, dlogits: torch.Tensor, need_dx: bool) -> list[Any]:
        lib, n = self.lib, x.shape[0]
        grads: list[list[torch.Tensor | None]] = [[] for _ in self.program]
        inputs = [x] + [b.out for b in ws.ops[:-1]]
        g = dlogits.to(torch.float32).contiguous()
        for i in range(len(self.program) - 1, -1, -1):
            op, b, inp = self.program[i], ws.ops[i], inputs[i]
            if isinstance(op, Head):
                w = op.module.weight.detach().contiguous()
                dw = new_like(op.module.weight)
                db = new_like(op.module.bias) if op.module.bias is not None else None
                lib.tm_head_backward(ptr(g), ptr(b.extra["pooled"]), ptr(w), ptr(b.grad_in), ptr(dw), ptr(db),
                                     n, op.inp.h * op.inp.w, op.inp.c, op.classes)
                grads[i] = [dw] + ([db] if db is not None else [])
                g = b.grad_in
            elif isinstance(op, Dropout):
                g.mul_(b.extra["mask"])
            elif isinstance(op, MaxPool):
                lib.tm_maxpool2_backward(ptr(inp), ptr(b.out), ptr(g), ptr(b.grad_in), n, op.inp.h, op.inp.w,
                                         self.stride(op.inp.c))
                g = b.grad_in
            elif isinstance(op, BatchNorm):
                bn, e = op.module, b.extra
                dgamma = new_like(bn.weight) if bn.affine else None
                dbeta = new_like(bn.bias) if bn.affine else None
                lib.tm_bn_backward(ptr(inp), ptr(g), ptr(g), ptr(e["scale"]), ptr(e["shift"]), ptr(e["mean"]),
                                   ptr(e["invstd"]), ptr(dgamma), ptr(dbeta),
                                   ptr(ws.stats), n, op.shape.h * op.shape.w, op.shape.c, int(op.relu_after),
                                   int(op.relu_before))
                grads[i] = [dgamma, dbeta] if bn.affine else []
            elif isinstance(op, Conv):
                if op.relu and not op.stats:  # conv -> ReLU with no BatchNorm after it to apply the mask
                    g.mul_(b.out > 0)
                w = op.module.weight.detach().contiguous()
                dw = new_like(op.module.weight)
                in_stride = inp.shape[-1] if i > 0 else 1
                if op.kind == "dw":
                    lib.tm_dwconv_backward_weight(ptr(inp), ptr(g), ptr(dw), ptr(ws.partial), n, op.inp.h, op.inp.w,
                                                  op.inp.c)
                    grads[i] = [dw]
                else:
                    db = new_like(op.module.bias) if op.module.bias is not None else None
                    lib.tm_conv_backward_weight(ptr(inp), in_stride, ptr(g), ptr(dw), ptr(db), ptr(ws.partial), n,
                                                op.inp.h, op.inp.w, op.inp.c, op.out.c, op.k, op.pad)
                    grads[i] = [dw] + ([db] if db is not None else [])
                if i == 0 and not need_dx:
                    break
                if op.kind == "dw":
                    lib.tm_dwconv_backward_data(ptr(g), ptr(w), ptr(b.grad_in), n, op.inp.h, op.inp.w, op.inp.c)
                else:
                    lib.tm_conv_backward_data(ptr(g), ptr(w), ptr(b.grad_in), in_stride, n, op.inp.h, op.inp.w,
                                              op.inp.c, op.out.c, op.k, op.pad)
                g = b.grad_in
        dx = g.reshape(x.shape).clone() if need_dx else None
        return [dx] + [t for per_op in grads for t in per_op]


class NativeStep(torch.autograd.Function):
    """logits = model(x) through the native kernels; gradients for x and every parameter."""

    @staticmethod
    def forward(ctx: Any, runner: NativeRunner, x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        logits, ws = runner.forward(x)
        ctx.runner, ctx.ws, ctx.generation = runner, ws, ws.generation
        ctx.save_for_backward(x)
        return logits

    @staticmethod
    def backward(ctx: Any, dlogits: torch.Tensor) -> tuple[Any, ...]:
        if ctx.ws.generation != ctx.generation:
            raise RuntimeError("native engine: this backward belongs to an earlier forward whose activations were "
                               "overwritten; call backward before the next forward")
        (x,) = ctx.saved_tensors
        grads = ctx.runner.backward(x, ctx.ws, dlogits, bool(ctx.needs_input_grad[1]))
        return (None, *grads)
