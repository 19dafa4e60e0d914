"""GPU paths (--device cuda): run only where torch sees a CUDA device; CI has none, so they skip there.
`pytest -m gpu` runs just these."""

import pytest
import torch
from helpers import run_cli

import tinymnist

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")]

SMALL = dict(train_subset=2048, test_subset=1000, epochs=2, engine="auto")


def test_training_on_the_gpu_learns_and_keeps_everything_there(data_dir):
    run = tinymnist.train(data_dir=data_dir, device="cuda", verbose=False, **SMALL)
    assert run.metrics["device"].startswith("cuda") and run.metrics["engine"] == "eager"
    assert next(run.model.parameters()).is_cuda
    assert run.metrics["final_test_accuracy"] > 80  # 2 epochs on 2,048 images: far above chance either way


def test_a_gpu_checkpoint_loads_and_predicts_on_the_cpu(data_dir, tmp_path, mnist):
    out = tmp_path / "run"
    result = run_cli("train", "--data-dir", data_dir, "--device", "cuda", "--out", out, "--subset", "1024",
                     "--test-subset", "500", "--epochs", "1")
    assert result.returncode == 0 and "on cuda" in result.stdout, result.stderr
    cpu_model = tinymnist.load(out, device="cpu")
    gpu_model = tinymnist.load(out, device="cuda")
    digits = mnist.test_images[:200]
    on_cpu = [r["probabilities"] for r in tinymnist.predict(digits, model=cpu_model)]
    on_gpu = [r["probabilities"] for r in tinymnist.predict(digits, model=gpu_model)]
    assert torch.allclose(torch.tensor(on_cpu), torch.tensor(on_gpu), atol=1e-4)
    evaluated = run_cli("evaluate", out, "--data-dir", data_dir, "--device", "cuda", "--json")
    assert evaluated.returncode == 0, evaluated.stderr


def test_native_engine_on_the_gpu_is_refused_in_one_line(data_dir, tmp_path):
    result = run_cli("train", "--data-dir", data_dir, "--device", "cuda", "--engine", "native", "--out", tmp_path / "r",
                     "--subset", "64", "--epochs", "1")
    assert result.returncode == 1 and "native engine trains on the CPU only" in result.stderr
