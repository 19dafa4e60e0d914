"""optimizer="muon": Muon on the hidden dense convs, SGD for the rest (training/muon.py)."""

import pytest
import torch

from tinymnist.models.zoo import create_model
from tinymnist.training.config import TrainConfig
from tinymnist.training.muon import hidden_conv_weights, orthogonalize
from tinymnist.training.schedule import make_optimizer
from tinymnist.training.trainer import train


def test_muon_takes_the_pointwise_and_inner_dense_convs_only():
    model = create_model("separable", plan="c8 s12 M c16 t12 s20")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    chosen = {id(p) for p in hidden_conv_weights(model)}
    # first conv, depthwise filters and the head stay with SGD
    expected = [c.weight for c in convs[1:-1] if c.groups == 1]
    assert [tuple(p.shape) for p in expected] == [(12, 8, 1, 1), (16, 12, 3, 3), (12, 16, 1, 1), (20, 12, 1, 1)]
    assert chosen == {id(p) for p in expected}
    weights, norms, muon = make_optimizer(model, TrainConfig(optimizer="muon", lr=0.1, muon_lr=0.02)).param_groups
    assert muon["muon"] and muon["lr"] == 0.02 and {id(p) for p in muon["params"]} == chosen
    assert not weights["muon"] and weights["weight_decay"] == 1e-4 and all(p.dim() > 1 for p in weights["params"])
    assert norms["weight_decay"] == 0 and all(p.dim() == 1 for p in norms["params"])
    assert len(muon["params"]) + len(weights["params"]) + len(norms["params"]) == len(list(model.parameters()))


@pytest.mark.parametrize("shape", [(16, 12, 1, 1), (8, 24, 1, 1), (12, 12, 3, 3), (5, 3)])
def test_orthogonalize_flattens_every_singular_value_to_about_one(shape):
    torch.manual_seed(0)
    sizes = torch.logspace(-1.5, 0, shape[0]).reshape(-1, *[1] * (len(shape) - 1))  # rows 30x apart in size
    update = torch.randn(shape) * sizes
    out = orthogonalize(update)
    assert out.shape == update.shape
    singular = torch.linalg.svdvals(out.reshape(shape[0], -1))
    assert singular.min() > 0.6 and singular.max() < 1.25  # the quintic iteration's band, not exactly 1


def test_the_sgd_groups_step_as_torch_sgd_does():
    torch.manual_seed(0)
    model, twin = create_model("tiny2k"), create_model("tiny2k")
    twin.load_state_dict(model.state_dict())
    ours = make_optimizer(model, TrainConfig(model="tiny2k", optimizer="muon", lr=0.1, weight_decay=1e-3))
    index = {id(p): i for i, p in enumerate(model.parameters())}
    twins = list(twin.parameters())
    sgd = torch.optim.SGD([{"params": [twins[index[id(p)]] for p in g["params"]], "weight_decay": g["weight_decay"],
                            "lr": g["lr"]} for g in ours.param_groups[:2]], lr=0.1, momentum=0.9, nesterov=True)
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    for _ in range(3):  # the same gradients into both, so that the momentum buffers are compared too
        ours.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        for p, q in zip(model.parameters(), twins, strict=True):
            q.grad = p.grad.clone()
        ours.step()
        sgd.step()
    muon_ids = {id(p) for p in hidden_conv_weights(model)}
    for (name, p), q in zip(model.named_parameters(), twins, strict=True):
        if id(p) not in muon_ids:
            assert torch.allclose(p, q, rtol=0, atol=1e-7), name


def test_muon_weights_keep_a_fixed_norm_and_move_by_about_the_learning_rate():
    torch.manual_seed(0)
    model = create_model("tiny2k")
    opt = make_optimizer(model, TrainConfig(model="tiny2k", optimizer="muon", muon_lr=0.01))
    before = [p.detach().clone() for p in hidden_conv_weights(model)]
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    for p, old in zip([p.detach() for p in hidden_conv_weights(model)], before, strict=True):
        rows = p.shape[0]
        rescaled = old * rows ** 0.5 / old.norm()
        step = (p - rescaled).reshape(rows, -1)
        # each row of the update has about unit length (semi-orthogonal, scaled to rows of unit length)
        assert float(step.norm(dim=1).mean()) == pytest.approx(0.01, rel=0.35)
        assert float(p.norm()) == pytest.approx(rows ** 0.5, rel=0.05)


@pytest.mark.parametrize("engine", ["eager", "native"])
def test_a_muon_run_learns_and_records_its_optimizer(engine, mnist, tmp_path):
    from tinymnist.backends.native.binding import VARIANTS

    if engine == "native" and not VARIANTS:
        pytest.skip("the native kernels are not built")
    cfg = TrainConfig(model="tiny2k", optimizer="muon", muon_lr=0.03, train_subset=2048, test_subset=500,
                      batch_size=64, epochs=2, threads=1, engine=engine)
    metrics = train(cfg, mnist, tmp_path / "run")
    assert metrics["final_test_accuracy"] > 40.0  # 64 steps on 2,048 images: SGD reaches ~53% here
    saved = TrainConfig.from_saved(__import__("json").loads((tmp_path / "run" / "config.json").read_text()))
    assert saved.optimizer == "muon" and saved.muon_lr == 0.03
    train(cfg, mnist, tmp_path / "run", resume=True)  # its optimizer state (momentum buffers) reloads


def test_config_refuses_a_non_positive_muon_learning_rate():
    with pytest.raises(ValueError, match="muon_lr"):
        TrainConfig(optimizer="muon", muon_lr=0.0)
