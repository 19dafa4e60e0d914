"""Knowledge distillation (`--teacher`): the loss and its gradient, the native step against autograd
with the same loss, the teacher's record in a run, and the errors a bad teacher gives."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import run_cli

from tinymnist.backends.native.runner import NativeRunner
from tinymnist.data.normalize import MNIST_MEAN, MNIST_STD
from tinymnist.errors import UserError
from tinymnist.models.zoo import create_model
from tinymnist.training.config import ConfigError, TrainConfig
from tinymnist.training.distill import distillation_grad, distillation_loss, load_teacher
from tinymnist.training.trainer import train

SMALL = dict(train_subset=512, test_subset=200, epochs=1, threads=1)


def test_the_loss_is_the_labels_cross_entropy_at_weight_0_and_the_soft_term_at_weight_1():
    gen = torch.Generator().manual_seed(0)
    z, t = torch.randn(16, 10, generator=gen), torch.randn(16, 10, generator=gen) * 3
    y = torch.randint(0, 10, (16,), generator=gen)
    hard = F.cross_entropy(z, y, label_smoothing=0.1)
    assert torch.allclose(distillation_loss(z, y, t, 0.1, 0.0, 2.0), hard)
    assert distillation_loss(z, y, z, 0.1, 1.0, 3.0).abs() < 1e-6  # a student that agrees with its teacher
    for temperature in (1.0, 4.0):
        loss, grad, correct = distillation_grad(z, y, t, 0.0, 1.0, temperature)
        # d/dz of T^2 KL(p_t || p_z) at temperature T, batch mean: T (softmax(z/T) - softmax(t/T)) / N
        expected = temperature * (F.softmax(z / temperature, 1) - F.softmax(t / temperature, 1)) / len(z)
        assert torch.allclose(grad, expected, atol=1e-6) and loss > 0
        assert correct == int((z.argmax(1) == y).sum())


def test_the_native_step_with_distillation_gives_the_autograd_paths_gradients(mnist):
    images = torch.from_numpy(mnist.train_images[:200].copy()).unsqueeze(1).contiguous()
    labels = torch.from_numpy(mnist.train_labels[:200].copy()).long()
    idx = torch.arange(20, 84)
    rand = torch.rand(64, 4, generator=torch.Generator().manual_seed(5))
    augment = (math.radians(5.0), 0.95, 1.05, 1.0)
    torch.manual_seed(1)
    teacher = create_model("tiny1k").eval()
    models = [create_model("mcu-tiny").train() for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    stepper = NativeRunner(models[0])

    def loss_grad(x, logits, i):
        return distillation_grad(logits, labels[i], teacher(x), 0.0, 0.7, 2.0)

    loss, correct = stepper.train_step(images, labels, idx, rand, augment, 0.0, MNIST_MEAN, MNIST_STD,
                                       loss_grad=loss_grad)
    x = stepper.workspace(64).x.clone().unsqueeze(1)
    logits = NativeRunner(models[1])(x)
    expected = distillation_loss(logits, labels[idx], teacher(x).detach(), 0.0, 0.7, 2.0)
    expected.backward()
    assert abs(loss - expected.item()) < 1e-5 and correct == int((logits.argmax(1) == labels[idx]).sum())
    for (name, p), q in zip(models[0].named_parameters(), models[1].parameters(), strict=True):
        assert (p.grad - q.grad).abs().max() <= 1e-5 * q.grad.abs().max() + 1e-8, name


@pytest.mark.parametrize("native", [True, False])
def test_a_loaded_teacher_gives_its_models_logits(native):
    teacher = load_teacher("tiny1k", torch.device("cpu"), native=native)
    from tinymnist.training.checkpoint import load_model

    x = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = load_model("tiny1k")(x)
    assert torch.allclose(teacher.logits(x), expected, atol=1e-4)
    assert teacher.description["model"] == "tiny1k" and teacher.description["params"] < 1000


@pytest.mark.parametrize("engine", ["native", "eager"])
def test_a_distilled_run_records_its_teacher_and_differs_from_one_without(engine, mnist, tmp_path):
    plain = train(TrainConfig.for_model("tiny1k", engine=engine, **SMALL), mnist)
    cfg = TrainConfig.for_model("tiny1k", engine=engine, teacher="separable", distill_weight=0.9, **SMALL)
    distilled = train(cfg, mnist, out_dir=tmp_path)
    assert "teacher" not in plain
    assert distilled["teacher"]["model"] == "separable" and distilled["teacher"]["params"] == 4910
    assert distilled["final_test_loss"] != plain["final_test_loss"]  # another loss, other weights
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["teacher"] == "separable" and saved["distill_weight"] == 0.9
    assert TrainConfig.from_saved({k: v for k, v in saved.items() if "distill" not in k and k != "teacher"}).teacher == ""


def test_bad_teachers_and_distillation_settings_are_refused(mnist, tmp_path):
    with pytest.raises(UserError, match="nosuchteacher"):
        train(TrainConfig.for_model("tiny1k", teacher="nosuchteacher", **SMALL), mnist, out_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before anything is written
    for field, value in (("distill_weight", 1.5), ("distill_temperature", 0.0)):
        with pytest.raises(ConfigError, match=field):
            TrainConfig(**{field: value})


def test_the_teacher_flag_on_the_command_line(tmp_path, data_dir):
    out = tmp_path / "run"
    result = run_cli("train", "--data-dir", data_dir, "--model", "tiny1k", "--subset", "256", "--test-subset", "100",
                     "--epochs", "1", "--teacher", tmp_path / "missing.pt", "--out", out)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "missing.pt" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()
    result = run_cli("train", "--data-dir", data_dir, "--model", "tiny1k", "--subset", "256", "--test-subset", "100",
                     "--epochs", "1", "--teacher", "separable", "--distill-weight", "0.8", "--out", out)
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "metrics.json").read_text())["teacher"]["model"] == "separable"
