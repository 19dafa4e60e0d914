"""Elastic distortion: the displacement fields it draws, what the native batch kernel does with one,
both engines seeing the same distorted batch, and the setting's checks."""

import math

import pytest
import torch
from helpers import run_cli

from tinymnist.backends.native import binding
from tinymnist.data.augment import elastic_field
from tinymnist.errors import SettingError
from tinymnist.models.zoo import create_model
from tinymnist.training.config import ADDED_LATER, TrainConfig
from tinymnist.training.step import make_step


def test_the_field_is_smooth_seeded_and_as_strong_as_alpha_says():
    alpha, sigma = 34.0, 4.0
    field = elastic_field(400, 28, 28, torch.Generator().manual_seed(0), alpha, sigma)
    assert field.shape == (400, 28, 28, 2) and field.is_contiguous()
    assert torch.equal(field, elastic_field(400, 28, 28, torch.Generator().manual_seed(0), alpha, sigma))
    pixels = field * 28 / 2  # normalized units -> pixels
    # uniform(-1, 1) noise (std 1/sqrt(3)) through the 2-D Gaussian: std = alpha / sqrt(3) * sum(k^2)
    taps = torch.arange(-12, 13, dtype=torch.float64)
    k = torch.exp(-taps ** 2 / (2 * sigma ** 2))
    k /= k.sum()
    expected = alpha / math.sqrt(3) * float((k ** 2).sum())
    inner = pixels[:, 12:16, 12:16]  # far enough from the border for the zeros beyond it not to count
    assert abs(float(inner.std()) / expected - 1) < 0.1
    assert abs(float(inner.mean())) < 0.1 * expected
    # smooth: a pixel's displacement is close to its neighbour's (sigma 4 -> correlation ~0.97)
    a, b = pixels[:, 12:16, 12:16, 0].flatten(), pixels[:, 12:16, 13:17, 0].flatten()
    assert float(torch.corrcoef(torch.stack([a, b]))[0, 1]) > 0.9
    # a huge sigma is cut at the image's size, not built 3 sigma wide
    assert elastic_field(2, 28, 28, torch.Generator().manual_seed(0), 1.0, 1e6).abs().max() < 1


def test_a_constant_displacement_moves_the_image_by_that_many_pixels(mnist):
    lib = binding.load()
    images = torch.from_numpy(mnist.train_images[:4].copy()).unsqueeze(1).contiguous()
    idx = torch.arange(4)
    rand = torch.full((4, 4), 0.5)  # with rotate 0, zoom 1 and shift 0: the identity map
    disp = torch.zeros(4, 28, 28, 2)
    disp[..., 0] = 2 / 28  # one pixel to the right in x: each output pixel reads its right-hand neighbour
    got = torch.empty(4, 28, 28)
    lib.tm_batch(images.data_ptr(), idx.data_ptr(), 4, 28, 28, rand.data_ptr(), disp.data_ptr(), 0.0, 1.0, 1.0,
                 0.0, 0.0, 1.0, got.data_ptr())
    source = images[:, 0].float() / 255
    assert torch.allclose(got[:, :, :27], source[:, :, 1:], atol=1e-6)
    assert got[:, :, 27].abs().max() == 0  # read from beyond the image: background
    # without augmentation draws the field is not used
    lib.tm_batch(images.data_ptr(), idx.data_ptr(), 4, 28, 28, None, disp.data_ptr(), 0.0, 1.0, 1.0, 0.0, 0.0, 1.0,
                 got.data_ptr())
    assert torch.equal(got, source)


def test_both_engines_train_on_the_same_distorted_batch(mnist):
    """One step of each engine from the same weights and generator: the same loss and gradients only
    if both drew and applied the same affine maps and fields."""
    x = torch.from_numpy(mnist.train_images[:256].copy()).unsqueeze(1).contiguous()
    y = torch.from_numpy(mnist.train_labels[:256].copy()).long()
    idx = torch.arange(64, 128)
    results = {}
    for engine in ("eager", "native"):
        for alpha in (0.0, 34.0):
            torch.manual_seed(0)
            model = create_model("tiny1k").train()
            cfg = TrainConfig(model="tiny1k", engine=engine, threads=1, elastic_alpha=alpha)
            step = make_step(model, cfg, engine, x, y, torch.contiguous_format)
            loss, _ = step(idx, torch.Generator().manual_seed(7))
            results[engine, alpha] = float(loss), [p.grad.clone() for p in model.parameters()]
    for alpha in (0.0, 34.0):
        (eager_loss, eager_grads), (native_loss, native_grads) = results["eager", alpha], results["native", alpha]
        assert abs(eager_loss - native_loss) < 1e-4
        for g, h in zip(eager_grads, native_grads, strict=True):
            assert (g - h).abs().max() <= 1e-3 * h.abs().max() + 1e-6
    assert abs(results["eager", 0.0][0] - results["eager", 34.0][0]) > 1e-4  # the field did something


def test_old_configs_read_as_without_it_and_bad_values_are_refused_by_name(tmp_path, data_dir):
    assert ADDED_LATER["elastic_alpha"] == 0.0
    for alpha in (-1.0, 1e30):
        with pytest.raises(SettingError, match="elastic_alpha"):
            TrainConfig(elastic_alpha=alpha)
    with pytest.raises(SettingError, match="elastic_sigma"):
        TrainConfig(elastic_sigma=0.0)
    result = run_cli("train", "--data-dir", data_dir, "--elastic-sigma", "-2", "--out", tmp_path / "run")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "elastic" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()

