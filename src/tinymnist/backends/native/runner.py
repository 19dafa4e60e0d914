"""The native engine's training step: a lowered program (engine.program) run by the C kernels
(engine.binding) from a table of layers (tm_layer[]), one C call per pass.

`NativeRunner(model)` shares the model's parameters and BatchNorm buffers (running statistics are
updated in place, as in eager training); in eval mode it simply calls the eager model. The trainer
uses `train_step` (batch, forward, loss, backward in C; gradients written into `.grad`); calling the
runner goes through one torch.autograd.Function instead, so that any PyTorch loss can follow (tests
compare it with eager PyTorch). Activations live in a per-batch-size workspace reused from step to
step, so one forward must be followed by its backward before the next forward (checked: a stale
backward raises instead of returning garbage).
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tinymnist.backends.native import binding
from tinymnist.backends.native.program import BatchNorm, Conv, Dropout, Head, MaxPool, Op, Shortcut, lower, round_up
from tinymnist.models.quant import quant_layers, rounded_in_place

MAX_SIDE = 64  # TM_BATCH_MAX_SIDE in csrc/tm_kernels.h


# A replacement for the step's cross-entropy: (batch, logits, idx) -> (mean loss, d loss / d logits, correct).
LossGrad = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[float, torch.Tensor, int]]


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
        skip_shapes: dict[int, tuple[int, ...]] = {}  # shortcut op index -> shape of the gradient along it
        partial_len, stats_len = 1, 1
        in_stride = 1  # the channel stride of the tensor the next op reads: 1 for the network input and its pools
        for op in program:
            b = OpBuffers()
            if isinstance(op, Conv):
                cs = stride(op.out.c)
                b.out = torch.empty(n, op.out.h, op.out.w, cs, **f32)
                grad_shapes[len(self.ops)] = (n, op.inp.h, op.inp.w, in_stride)
                per_image = 9 * cs if op.kind == "dw" else op.k * op.k * in_stride * cs + cs
                partial_len = max(partial_len, n * per_image)
                stats_len = max(stats_len, n * 2 * cs)
                in_stride = cs
            elif isinstance(op, BatchNorm):
                cs = stride(op.shape.c)
                b.out = torch.empty(n, op.shape.h, op.shape.w, cs, **f32)
                b.extra = {k: torch.empty(cs, **f32) for k in ("scale", "shift", "mean", "invstd")}
                stats_len = max(stats_len, n * 2 * cs)
            elif isinstance(op, MaxPool):  # keeps its input's stride
                cs = in_stride
                b.out = torch.empty(n, op.out.h, op.out.w, cs, **f32)
                b.extra = {"index": torch.empty(n, op.out.h, op.out.w, cs, dtype=torch.uint8)}
                grad_shapes[len(self.ops)] = (n, op.inp.h, op.inp.w, cs)
            elif isinstance(op, Dropout):
                cs = in_stride
                b.out = torch.empty(n, op.shape.h, op.shape.w, cs, **f32)
                b.extra = {"mask": torch.empty(n, op.shape.h, op.shape.w, cs, **f32)}
            elif isinstance(op, Head):
                cs = stride(op.inp.c)
                b.out = torch.empty(n, op.classes, **f32)
                grad_shapes[len(self.ops)] = (n, op.inp.h, op.inp.w, cs)
                if op.spatial:  # per image: every weight's and bias's gradient (tm_fc_backward)
                    partial_len = max(partial_len, n * (op.module.weight.numel() + op.classes))
                else:
                    b.extra = {"pooled": torch.empty(n, cs, **f32)}
            elif isinstance(op, Shortcut):  # its backward works in place, and keeps the shortcut's share apart
                cs = stride(op.shape.c)
                b.out = torch.empty(n, op.shape.h, op.shape.w, cs, **f32)
                skip_shapes[len(self.ops)] = (n, op.shape.h, op.shape.w, cs)
            self.ops.append(b)
        # Gradients w.r.t. activations are needed one op at a time: ops write theirs into the one of two
        # shared buffers that does not hold the incoming gradient (a smaller working set than one each).
        sizes = {i: math.prod(shape) for i, shape in grad_shapes.items()}
        pair = [torch.empty(max(sizes.values()), **f32) for _ in range(2)]
        for turn, i in enumerate(sorted(grad_shapes, reverse=True)):  # in backward order
            self.ops[i].grad_in = pair[turn % 2][: sizes[i]].view(grad_shapes[i])
        # A shortcut's gradient lives from its backward to its block's first op's: one buffer for every
        # shortcut (blocks do not overlap).
        if skip_shapes:
            skip = torch.empty(max(math.prod(shape) for shape in skip_shapes.values()), **f32)
            for i, shape in skip_shapes.items():
                self.ops[i].extra["dskip"] = skip[: math.prod(shape)].view(shape)
        self.partial = torch.empty(partial_len, **f32)
        self.stats = torch.empty(stats_len, dtype=torch.float64)
        first, last = program[0], program[-1]
        self.x = torch.empty(n, first.inp.h, first.inp.w, **f32) if isinstance(first, (Conv, MaxPool)) else torch.empty(0)
        self.dlogits = torch.empty(n, last.classes, **f32) if isinstance(last, Head) else torch.empty(0)
        self.n = n
        self.tables: dict[Any, Any] = {}  # NativeRunner.table's cache
        self.checked: binding.Net | None = None  # train_step's table at its last checked call
        self.generation = 0


def op_params(op: Op) -> list[torch.Tensor]:
    if isinstance(op, (Conv, Head)):
        return [op.module.weight] + ([op.module.bias] if op.module.bias is not None else [])
    if isinstance(op, BatchNorm) and op.module.affine:
        return [op.module.weight, op.module.bias]
    return []


class NativeRunner:
    """Callable like the model: native kernels in training mode, the eager model in eval mode.

    Two ways to train with it: call it (an autograd Function: the loss and backward stay PyTorch's),
    or `train_step` (batch, loss and backward in C, gradients written straight into each parameter's
    `.grad`; used by the trainer)."""

    def __init__(self, model: nn.Module, lib: Any = None):
        self.model = model
        self.lib = lib if lib is not None else binding.load()
        self.input_shape = (1, 28, 28)
        self.program = lower(model, *self.input_shape[1:])
        # Each parameter once, though a conv used twice (PlanNet's "r") appears in two ops.
        self.params = list({id(p): p for op in self.program for p in op_params(op)}.values())
        self.dropouts = [op for op in self.program if isinstance(op, Dropout)]
        # Layers trained for fewer bits: the kernels read their weight tensors, which hold the rounded
        # values while a pass runs (models/quant.py), the float ones between passes.
        self.rounded = quant_layers(model)
        self.workspaces: dict[int, Workspace] = {}
        self.lanes = self.lib.tm_lanes()
        # Gradients of the autograd path: private buffers, returned as copies (never aliasing .grad).
        self.private_grads = [torch.empty(p.shape, dtype=torch.float32) for p in self.params]
        # Profiling (benchmarks/engine_profile.py): when set, a len(program) x 2 float64 tensor to which
        # the C passes add each layer's forward / backward seconds.
        self.layer_seconds: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.model.training:
            return self.model(x)
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"the native engine takes N x {' x '.join(map(str, self.input_shape))} inputs, "
                             f"got {tuple(x.shape)}")
        x = x.to(torch.float32).contiguous()
        return NativeStep.apply(self, x, *self.params)

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for x (N x 1 x 28 x 28) from the kernels' forward pass, for a model without BatchNorm
        or dropout, e.g. a BatchNorm-folded eval copy (evaluation.logits_for with native=True): the
        forward then has no training-mode behaviour. ValueError for any other model."""
        problem = self.inference_problem()
        if problem is not None:
            raise ValueError(problem)
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"the native engine takes N x {' x '.join(map(str, self.input_shape))} inputs, "
                             f"got {tuple(x.shape)}")
        x = x.to(torch.float32).contiguous()
        ws = self.workspace(x.shape[0])
        ws.generation += 1
        net = self.table(ws, self.private_grads, False)
        net.x = x.data_ptr()
        with self._pass_weights():
            self.lib.tm_net_forward(ctypes.byref(net))
        return ws.ops[-1].out.clone()

    def _pass_weights(self) -> contextlib.AbstractContextManager[None]:
        """What a pass's weight tensors hold: the rounded values of layers trained for fewer bits, when the
        model has any (nothing to do per step for the others)."""
        return rounded_in_place(self.rounded) if self.rounded else contextlib.nullcontext()

    def inference_problem(self) -> str | None:
        """Why infer() cannot run this model, or None."""
        if any(isinstance(op, (BatchNorm, Dropout)) for op in self.program):
            return "infer() runs models without BatchNorm or dropout (fold the BatchNorms first)"
        return None

    def stride(self, channels: int) -> int:
        return round_up(channels, self.lanes)

    def workspace(self, n: int) -> Workspace:
        if n not in self.workspaces:
            if len(self.workspaces) >= 4:
                self.workspaces.pop(next(iter(self.workspaces)))
            self.workspaces[n] = Workspace(self.program, n, self.stride)
        return self.workspaces[n]

    # ------------------------------------------------------------------------------------------
    # The layer table (tm_layer[]) of a workspace: built once, rebuilt only when a tensor it points
    # to has moved (a parameter replaced rather than updated in place, a .grad set to None).

    def _tensors(self, grads: list[torch.Tensor]) -> list[torch.Tensor]:
        """Everything the table points to besides the workspace: parameters, BatchNorm buffers, gradients."""
        out = list(self.params) + grads
        for op in self.program:
            if isinstance(op, BatchNorm):
                out += [op.module.running_mean, op.module.running_var, op.module.num_batches_tracked]
        return out

    def table(self, ws: Workspace, grads: list[torch.Tensor], need_dx: bool) -> binding.Net:
        key = (id(grads[0]) if grads else 0, need_dx)
        tensors = self._tensors(grads)
        signature = [t.data_ptr() for t in tensors]
        cached = ws.tables.get(key)
        if cached is not None and cached[0] == signature:
            net = cached[1]
        else:
            for t in tensors:
                if not t.is_contiguous() or t.dtype not in (torch.float32, torch.int64):
                    raise ValueError("the native engine needs contiguous float32 parameters and BatchNorm buffers")
            net = self._build_table(ws, grads, need_dx)
            ws.tables[key] = (signature, net)
        net.times = ptr(self.layer_seconds)
        return net

    def _build_table(self, ws: Workspace, grads: list[torch.Tensor], need_dx: bool) -> binding.Net:
        layers = (binding.Layer * len(self.program))()
        main_grad = dict(zip((id(p) for p in self.params), grads, strict=True))
        # The C backward overwrites each op's weight gradient, so a parameter's second use (a shared
        # conv) writes into a buffer of its own, added to the first use's after the backward (`shared`).
        shared: list[tuple[torch.Tensor, torch.Tensor]] = []
        seen: set[int] = set()

        def grad_of(p: torch.Tensor) -> torch.Tensor:
            if id(p) not in seen:
                seen.add(id(p))
                return main_grad[id(p)]
            extra = torch.empty(p.shape, dtype=torch.float32)
            shared.append((extra, main_grad[id(p)]))
            return extra

        kinds = {MaxPool: binding.TM_MAXPOOL, Dropout: binding.TM_DROPOUT, Head: binding.TM_HEAD, BatchNorm: binding.TM_BN}
        in_stride = 1
        # No op before the first with parameters needs its input gradient, unless the caller asks for the
        # network input's (the C backward stops where the gradients stop).
        first_with_params = next((i for i, op in enumerate(self.program) if op_params(op)), len(self.program))
        for i, (op, b) in enumerate(zip(self.program, ws.ops, strict=True)):
            L = layers[i]
            L.y = ptr(b.out)
            L.dx = ptr(b.grad_in) if (i > first_with_params or need_dx) else None
            L.xs = in_stride
            if isinstance(op, Conv):
                m = op.module
                L.kind = binding.TM_DWCONV if op.kind == "dw" else binding.TM_CONV
                L.H, L.W, L.Cin, L.Cout, L.k, L.pad = op.inp.h, op.inp.w, op.inp.c, op.out.c, op.k, op.pad
                L.relu, L.stats, L.stride = int(op.relu), int(op.stats), op.stride
                L.w, L.dw = ptr(m.weight), ptr(grad_of(m.weight))
                if m.bias is not None:
                    L.bias, L.dbias = ptr(m.bias), ptr(grad_of(m.bias))
            elif isinstance(op, BatchNorm):
                bn, e = op.module, b.extra
                L.kind, L.H, L.W, L.Cin = binding.TM_BN, op.shape.h, op.shape.w, op.shape.c
                L.relu, L.relu_before = int(op.relu_after), int(op.relu_before)
                if bn.affine:
                    L.w, L.bias = ptr(bn.weight), ptr(bn.bias)
                    L.dw, L.dbias = ptr(grad_of(bn.weight)), ptr(grad_of(bn.bias))
                L.eps, L.momentum = bn.eps, bn.momentum
                L.running_mean, L.running_var = ptr(bn.running_mean), ptr(bn.running_var)
                L.scale, L.shift, L.mean, L.invstd = (ptr(e[k]) for k in ("scale", "shift", "mean", "invstd"))
                L.num_batches_tracked = ptr(bn.num_batches_tracked)
            elif isinstance(op, Head):
                m = op.module
                kind = binding.TM_FC if op.spatial else binding.TM_HEAD
                L.kind, L.H, L.W, L.Cin, L.Cout = kind, op.inp.h, op.inp.w, op.inp.c, op.classes
                L.w, L.dw = ptr(m.weight), ptr(grad_of(m.weight))
                if not op.spatial:
                    L.aux = ptr(b.extra["pooled"])
                if m.bias is not None:
                    L.bias, L.dbias = ptr(m.bias), ptr(grad_of(m.bias))
            elif isinstance(op, Shortcut):
                L.kind, L.H, L.W, L.Cin = binding.TM_SHORTCUT, op.shape.h, op.shape.w, op.shape.c
                L.from_layer, L.dskip = op.start, ptr(b.extra["dskip"])
            else:
                shape = op.inp if isinstance(op, MaxPool) else op.shape
                L.kind, L.H, L.W, L.Cin = kinds[type(op)], shape.h, shape.w, shape.c
                if isinstance(op, Dropout):
                    L.aux = ptr(b.extra["mask"])
                if isinstance(op, MaxPool):
                    L.index = ptr(b.extra["index"])
            in_stride = b.out.shape[-1] if b.out is not None and b.out.dim() == 4 else in_stride
        net = binding.Net(N=ws.n, count=len(self.program), layers=layers, x=None, stats=ptr(ws.stats),
                          partial=ptr(ws.partial))
        net._keep = layers  # the array must live as long as the struct that points to it
        net._shared = shared
        return net

    @staticmethod
    def _add_shared(net: binding.Net) -> None:
        """After a backward: each shared parameter's later uses' gradients added to its first's."""
        for extra, main in net._shared:
            main.add_(extra)

    def _draw_dropout(self, ws: Workspace) -> None:
        for op, b in zip(self.program, ws.ops, strict=True):
            if isinstance(op, Dropout):
                b.extra["mask"].bernoulli_(1.0 - op.p).mul_(1.0 / (1.0 - op.p))

    # ------------------------------------------------------------------------------------------
    # The autograd path

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Workspace]:
        ws = self.workspace(x.shape[0])
        ws.generation += 1
        net = self.table(ws, self.private_grads, True)
        self._draw_dropout(ws)
        net.x = x.data_ptr()
        with self._pass_weights():
            self.lib.tm_net_forward(ctypes.byref(net))
        return ws.ops[-1].out.clone(), ws

    def backward(self, x: torch.Tensor, ws: Workspace, dlogits: torch.Tensor, need_dx: bool) -> list[Any]:
        net = self.table(ws, self.private_grads, need_dx)
        net.x = x.data_ptr()
        g = dlogits.to(torch.float32).contiguous()
        with self._pass_weights():
            self.lib.tm_net_backward(ctypes.byref(net), g.data_ptr())
        self._add_shared(net)
        dx = ws.ops[0].grad_in.reshape(x.shape).clone() if need_dx else None
        return [dx] + [t.clone() for t in self.private_grads]

    # ------------------------------------------------------------------------------------------
    # The trainer's path: no autograd

    def train_step(self, images: torch.Tensor, labels: torch.Tensor, idx: torch.Tensor, rand: torch.Tensor | None,
                   augment: tuple[float, float, float, float], smoothing: float, mean: float, std: float,
                   seconds: dict[str, float] | None = None, check: bool = True,
                   loss_grad: LossGrad | None = None, disp: torch.Tensor | None = None) -> tuple[float, int]:
        """`_train_step` with the rounded weights of layers trained for fewer bits in place."""
        with self._pass_weights():
            return self._train_step(images, labels, idx, rand, augment, smoothing, mean, std, seconds, check, loss_grad,
                                    disp)

    def _train_step(self, images: torch.Tensor, labels: torch.Tensor, idx: torch.Tensor, rand: torch.Tensor | None,
                    augment: tuple[float, float, float, float], smoothing: float, mean: float, std: float,
                    seconds: dict[str, float] | None, check: bool, loss_grad: LossGrad | None,
                    disp: torch.Tensor | None) -> tuple[float, int]:
        """One forward and backward on the batch `images[idx]` (uint8, N x 1 x 28 x 28 on the CPU,
        contiguous): augmented when `rand` (len(idx) x 4 uniform draws) is given, with `augment` =
        (rotate in radians, zoom low, zoom high, shift in pixels) and `disp` (with rand: an elastic
        distortion, augment.elastic_field's N x H x W x 2 floats, or None), then normalized by mean and std.
        Writes every parameter's gradient into its `.grad` (created once, then overwritten: no
        zero_grad needed) and returns (mean loss, correct predictions). `seconds` (profiling)
        receives the wall time of each part: batch, forward, loss, backward.

        `check=False` reuses the layer table of the last checked step of this batch size without
        checking that the parameters, their .grad and the BatchNorm buffers are still the tensors it
        points to (Python that is slow on the caches the kernels have just flushed). Only
        for a caller that owns the model between steps: the trainer checks at each epoch's first step.

        `loss_grad(x, logits, idx)` replaces the C cross-entropy (knowledge distillation): it gets the
        batch as the network saw it (N x 1 x H x W, augmented and normalized), the logits and `idx`,
        and returns (mean loss, its gradient w.r.t. the logits, correct predictions)."""
        marks: list[float] = []
        mark = marks.append if seconds is not None else (lambda _: None)
        mark(time.perf_counter())
        n = len(idx)
        if max(images.shape[-2:]) > MAX_SIDE or images.dtype != torch.uint8 or not images.is_contiguous():
            raise ValueError(f"train_step takes contiguous uint8 images of at most {MAX_SIDE} pixels a side")
        if disp is not None and (disp.shape != (n, *images.shape[-2:], 2) or disp.dtype != torch.float32
                                 or not disp.is_contiguous()):
            raise ValueError("train_step's disp must be a contiguous float32 N x H x W x 2 tensor")
        disp_ptr = None if disp is None else disp.data_ptr()  # tm_batch uses it only with rand
        ws = self.workspace(n)
        ws.generation += 1
        net = ws.checked if not check else None
        if net is None:
            net = ws.checked = self.table(ws, self._grad_buffers(), False)
        else:
            net.times = ptr(self.layer_seconds)
        if self.dropouts:
            self._draw_dropout(ws)
        lib = self.lib
        correct = ctypes.c_int(0)
        if seconds is None and loss_grad is None:  # one C call: each call from Python costs more than a small kernel
            loss = lib.tm_net_train_step(ctypes.byref(net), images.data_ptr(), idx.data_ptr(), images.shape[-2],
                                         images.shape[-1], None if rand is None else rand.data_ptr(), disp_ptr,
                                         *augment, mean, std, labels.data_ptr(), smoothing, ws.x.data_ptr(),
                                         ws.dlogits.data_ptr(), ctypes.byref(correct))
            self._add_shared(net)
            return loss, correct.value
        lib.tm_batch(images.data_ptr(), idx.data_ptr(), n, images.shape[-2], images.shape[-1],
                     None if rand is None else rand.data_ptr(), disp_ptr, *augment, mean, std, ws.x.data_ptr())
        net.x = ws.x.data_ptr()
        mark(time.perf_counter())
        lib.tm_net_forward(ctypes.byref(net))
        mark(time.perf_counter())
        logits = ws.ops[-1].out
        if loss_grad is None:
            loss = lib.tm_xent(logits.data_ptr(), labels.data_ptr(), idx.data_ptr(), n, logits.shape[1], smoothing,
                               ws.dlogits.data_ptr(), ctypes.byref(correct))
        else:
            loss, grad, correct.value = loss_grad(ws.x.view(n, 1, *ws.x.shape[1:]), logits, idx)
            ws.dlogits.copy_(grad)
        mark(time.perf_counter())
        lib.tm_net_backward(ctypes.byref(net), ws.dlogits.data_ptr())
        self._add_shared(net)
        if seconds is not None:
            mark(time.perf_counter())
            for part, (a, b) in zip(("batch", "forward", "loss", "backward"), itertools.pairwise(marks), strict=True):
                seconds[part] = seconds.get(part, 0.0) + b - a
        return loss, correct.value

    def _grad_buffers(self) -> list[torch.Tensor]:
        """Each parameter's .grad, created (zeros) where missing; the C backward overwrites them."""
        grads = []
        for p in self.params:
            if p.grad is None or p.grad.shape != p.shape or not p.grad.is_contiguous():
                p.grad = torch.zeros_like(p, memory_format=torch.contiguous_format)
            grads.append(p.grad)
        return grads


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
