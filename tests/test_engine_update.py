"""The native engine's optimizer step (engine/update.py, csrc/sgd.c) against torch.optim.SGD: the same
parameters and momentum buffers over several steps with a changing LR, two parameter groups (with
and without weight decay), every usable build; checkpointed state that PyTorch's step continues."""

import pytest
import torch

from tinymnist.config import TrainConfig
from tinymnist.engine import binding
from tinymnist.engine.update import NativeSGD, sgd_problem, updater
from tinymnist.models import create_model
from tinymnist.trainer import make_optimizer


def twin_optimizers(cfg: TrainConfig):
    torch.manual_seed(0)
    a = create_model("separable")
    b = create_model("separable")
    b.load_state_dict(a.state_dict())
    return a, b, make_optimizer(a, cfg), make_optimizer(b, cfg)


def set_grads(models, step):
    gen = torch.Generator().manual_seed(step)
    for params in zip(*(m.parameters() for m in models), strict=True):
        g = torch.randn(params[0].shape, generator=gen)
        for p in params:
            p.grad = g.clone()


@pytest.mark.parametrize("variant", binding.usable_variants())
def test_native_sgd_follows_torch_sgd(variant):
    cfg = TrainConfig(lr=0.15, momentum=0.9, weight_decay=1e-3)
    ref, nat, ref_opt, nat_opt = twin_optimizers(cfg)
    step = NativeSGD(nat_opt, binding.open_variant(variant))
    start = [p.detach().clone() for p in nat.parameters()]
    for i in range(6):
        set_grads((ref, nat), i)
        for opt in (ref_opt, nat_opt):
            for g in opt.param_groups:
                g["lr"] = cfg.lr * (i + 1) / 6
        ref_opt.step()
        step.step()
    for p, q in zip(ref.parameters(), nat.parameters(), strict=True):
        assert torch.allclose(p, q, rtol=1e-5, atol=1e-6)
        assert torch.allclose(ref_opt.state[p]["momentum_buffer"], nat_opt.state[q]["momentum_buffer"],
                              rtol=1e-5, atol=1e-6)
    assert all(not torch.equal(p, q) for p, q in zip(start, nat.parameters(), strict=True))  # every tensor moved


def test_native_sgd_state_is_the_optimizers_own():
    """A checkpoint of the optimizer holds the buffers the C step updates; PyTorch's step continues them,
    and a reloaded state (new tensors) is picked up by the native step."""
    cfg = TrainConfig()
    ref, nat, ref_opt, nat_opt = twin_optimizers(cfg)
    step = NativeSGD(nat_opt)
    for i in range(3):
        set_grads((ref, nat), i)
        ref_opt.step()
        step.step()
    saved = nat_opt.state_dict()
    nat_opt.load_state_dict(saved)  # new buffer tensors
    set_grads((ref, nat), 3)
    ref_opt.step()
    step.step()
    for p, q in zip(ref.parameters(), nat.parameters(), strict=True):
        assert torch.allclose(p, q, rtol=1e-5, atol=1e-6)
        assert torch.allclose(ref_opt.state[p]["momentum_buffer"], nat_opt.state[q]["momentum_buffer"],
                              rtol=1e-5, atol=1e-6)


def test_other_optimizers_keep_pytorchs_step():
    model = create_model("separable")
    assert updater(make_optimizer(model, TrainConfig(optimizer="adam"))) is None
    plain = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)  # no Nesterov
    assert "Nesterov" in sgd_problem(plain)
    with pytest.raises(ValueError, match="cannot run this optimizer"):
        NativeSGD(plain)
    assert isinstance(updater(make_optimizer(model, TrainConfig())), NativeSGD)


def test_a_missing_gradient_is_refused():
    model = create_model("separable")
    step = NativeSGD(make_optimizer(model, TrainConfig()))
    with pytest.raises(ValueError, match="grad"):
        step.step()
