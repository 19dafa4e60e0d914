"""The native engine's optimizer step (engine/update.py): PyTorch's fused SGD kernel called directly
gives exactly what optimizer.step() gives (bit for bit: parameters and momentum buffers), over several
steps with a changing LR and two parameter groups (with and without weight decay), from the first step
and from a reloaded checkpoint; other optimizers keep PyTorch's step."""

import pytest
import torch

from tinymnist.backends.native.update import NativeSGD, sgd_problem, updater
from tinymnist.models.zoo import create_model
from tinymnist.training.config import TrainConfig
from tinymnist.training.schedule import make_optimizer


def twin_optimizers(cfg: TrainConfig):
    torch.manual_seed(0)
    a = create_model("separable")
    b = create_model("separable")
    b.load_state_dict(a.state_dict())
    return a, b, make_optimizer(a, cfg, fused=True), make_optimizer(b, cfg, fused=True)


def set_grads(models, step):
    gen = torch.Generator().manual_seed(step)
    for params in zip(*(m.parameters() for m in models), strict=True):
        g = torch.randn(params[0].shape, generator=gen)
        for p in params:
            p.grad = g.clone()


def assert_same(ref, nat, ref_opt, nat_opt):
    for p, q in zip(ref.parameters(), nat.parameters(), strict=True):
        assert torch.equal(p, q)
        assert torch.equal(ref_opt.state[p]["momentum_buffer"], nat_opt.state[q]["momentum_buffer"])


@pytest.mark.parametrize("threads", [1, 2])
def test_native_sgd_is_optimizer_step_bit_for_bit(threads):
    cfg = TrainConfig(lr=0.15, momentum=0.9, weight_decay=1e-3)
    ref, nat, ref_opt, nat_opt = twin_optimizers(cfg)
    step = NativeSGD(nat_opt)
    start = [p.detach().clone() for p in nat.parameters()]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for i in range(6):
            set_grads((ref, nat), i)
            for opt in (ref_opt, nat_opt):
                for g in opt.param_groups:
                    g["lr"] = cfg.lr * (i + 1) / 6
            ref_opt.step()
            step.step()
    finally:
        torch.set_num_threads(before)
    assert_same(ref, nat, ref_opt, nat_opt)
    assert all(not torch.equal(p, q) for p, q in zip(start, nat.parameters(), strict=True))  # every tensor moved


def test_native_sgd_state_is_the_optimizers_own():
    """A checkpoint of the optimizer holds the buffers the direct step updates; a reloaded state (new
    tensors) is picked up, and PyTorch's step and the direct one continue each other."""
    cfg = TrainConfig()
    ref, nat, ref_opt, nat_opt = twin_optimizers(cfg)
    step = NativeSGD(nat_opt)
    for i in range(3):
        set_grads((ref, nat), i)
        ref_opt.step()
        (step.step if i != 1 else nat_opt.step)()
    nat_opt.load_state_dict(nat_opt.state_dict())  # new buffer tensors
    set_grads((ref, nat), 3)
    ref_opt.step()
    step.step()
    assert_same(ref, nat, ref_opt, nat_opt)


def test_other_optimizers_keep_pytorchs_step():
    model = create_model("separable")
    assert updater(make_optimizer(model, TrainConfig(optimizer="adam"), fused=True)) is None
    assert updater(make_optimizer(model, TrainConfig())) is None  # not fused: the per-tensor loop rounds otherwise
    plain = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, fused=True)  # no Nesterov
    assert "Nesterov" in sgd_problem(plain)
    with pytest.raises(ValueError, match="cannot run this optimizer"):
        NativeSGD(plain)
    assert isinstance(updater(make_optimizer(model, TrainConfig(), fused=True)), NativeSGD)


def test_a_missing_gradient_is_refused():
    model = create_model("separable")
    step = NativeSGD(make_optimizer(model, TrainConfig(), fused=True))
    with pytest.raises(ValueError, match="grad"):
        step.step()
