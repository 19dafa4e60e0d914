"""Lookahead and the whitening initialisation: what each does to the weights, and that a run with
them (and an elastic distortion) resumes exactly as it would have gone on."""

import pytest
import torch
from helpers import run_cli
from torch import nn

from tinymnist.errors import SettingError
from tinymnist.models.zoo import create_model
from tinymnist.training.config import TrainConfig
from tinymnist.training.lookahead import is_sync_step, lookahead_sync, slow_weights
from tinymnist.training.trainer import train, train_run
from tinymnist.training.whiten import first_conv, patch_covariance, whiten_first_conv, whitening_filters

SMALL = dict(model="tiny1k", train_subset=512, test_subset=500, batch_size=64, epochs=2, threads=1)


def test_lookahead_moves_the_slow_weights_part_of_the_way_and_restarts_the_fast_ones_there():
    model = nn.Linear(3, 2)
    slow = slow_weights(model)
    start = [s.clone() for s in slow]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    lookahead_sync(model, slow, 0.25)
    for s, p, s0 in zip(slow, model.parameters(), start, strict=True):
        assert torch.allclose(s, s0 + 0.25) and torch.equal(p.data, s)
    assert [is_sync_step(n, 5) for n in (1, 4, 5, 10, 11)] == [False, False, True, True, False]
    assert not is_sync_step(5, 0)


def test_whitening_filters_decorrelate_the_patches_they_see(mnist):
    images = torch.from_numpy(mnist.train_images[:2000].copy()).unsqueeze(1)
    cov = patch_covariance(images, (3, 3), (1, 1))
    filters = whitening_filters(cov, 8, eps=0.0)
    assert filters.shape == (8, 9)
    assert torch.allclose(filters[1], -filters[0])  # +/- pairs
    response = filters[::2] @ cov @ filters[::2].T  # the four directions: unit variance, uncorrelated
    assert torch.allclose(response, torch.eye(4, dtype=response.dtype), atol=1e-6)
    with pytest.raises(ValueError, match="patch directions"):
        whitening_filters(cov, 19)


def test_whiten_init_sets_only_the_first_conv(mnist):
    torch.manual_seed(0)
    model = create_model("tiny1k")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    whiten_first_conv(model, torch.from_numpy(mnist.train_images[:500].copy()).unsqueeze(1))
    conv = first_conv(model)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed == ["net.0.weight"] and conv is model.net[0]
    assert torch.allclose(conv.weight[0], -conv.weight[1])


def test_whiten_init_refuses_more_filters_than_the_patches_have_directions_by_name(mnist):
    # 20 filters are 10 +/- pairs; a 3x3 patch has 9 directions
    with pytest.raises(SettingError, match="init"):
        train(TrainConfig(**{**SMALL, "model": "separable", "model_args": {"plan": "c20 M s12"}, "init": "whiten"}),
              mnist)


@pytest.mark.parametrize("engine", ["eager", "native"])
def test_a_run_with_the_levers_resumes_as_it_would_have_gone_on(mnist, tmp_path, engine):
    # 512 images in batches of 64: 8 steps an epoch, so a 3-step cycle straddles the epoch boundary
    cfg = TrainConfig(**SMALL, engine=engine, lookahead_steps=3, init="whiten", elastic_alpha=16.0)
    whole = train_run(cfg, mnist, tmp_path / "whole")

    def stop(record):
        raise KeyboardInterrupt

    part = train_run(cfg, mnist, tmp_path / "part", on_epoch=stop, keep_on_interrupt=True)
    assert part.interrupted and len(part.history) == 1
    resumed = train_run(cfg, mnist, tmp_path / "part", resume=True)
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    plain = train_run(TrainConfig(**SMALL, engine=engine), mnist)
    assert not torch.equal(plain.model.net[0].weight, whole.model.net[0].weight)


def test_a_run_refused_before_training_leaves_no_directory(tmp_path, data_dir):
    out = tmp_path / "runs" / "whiten"
    result = run_cli("train", "--model-args", '{"plan": "c20 M s12"}', "--init", "whiten", "--subset", "64",
                     "--epochs", "1", "--data-dir", data_dir, "--out", out)
    assert result.returncode == 1 and "--init" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()  # neither the run's directory nor the parent it made
