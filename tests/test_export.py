import warnings

import numpy as np
import pytest
import torch
from helpers import run_cli

import tinymnist
from tinymnist.export.portable import export, parity_inputs
from tinymnist.models.fold import fold_batchnorm
from tinymnist.models.zoo import count_parameters, create_model, model_names
from tinymnist.training.checkpoint import model_from_checkpoint
from tinymnist.training.config import TrainConfig
from tinymnist.training.trainer import train


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, mnist):
    out = tmp_path_factory.mktemp("run")
    train(TrainConfig(train_subset=512, test_subset=200, epochs=1, batch_size=64, threads=1), mnist, out)
    return out / "last.pt"


@pytest.mark.parametrize("name,args", [(name, {}) for name in model_names()]
                         + [("separable", {"dw_affine": False}), ("separable", {"dw_bn": False}),
                            ("separable", {"residual": True})])
def test_batchnorm_folding_is_exact(name, args):
    torch.manual_seed(0)
    model = create_model(name, **args)
    model.train()
    for _ in range(3):  # give BatchNorm non-trivial running statistics
        model(torch.randn(32, 1, 28, 28) * 2 + 0.5)
    model.eval()
    folded, count = fold_batchnorm(model)
    bns = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    left = sum(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert count == bns - left and count >= 1
    x = parity_inputs(16)
    with torch.no_grad():
        assert torch.allclose(model(x), folded(x), atol=1e-4)


def test_separable_folds_every_batchnorm_depthwise_included():
    model = create_model("separable").eval()
    folded, count = fold_batchnorm(model)
    assert count == sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())


def test_reference_folds_only_where_valid():
    # conv -> ReLU -> BN: a BN after ReLU can only fold into a following unpadded conv (the 1x1 head).
    _, count = fold_batchnorm(create_model("reference").eval())
    assert count == 1


@pytest.mark.slow
def test_onnx_export_runs_in_onnxruntime_with_any_batch(checkpoint, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "model.onnx"
    result = run_cli("export", checkpoint, "--format", "onnx", "--out", out)
    assert result.returncode == 0, result.stderr
    assert "max |logit difference|" in result.stdout
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    model = model_from_checkpoint(torch.load(checkpoint, weights_only=False))
    for batch in (1, 7, 300):
        x = parity_inputs(batch, seed=batch)
        got = session.run(None, {"input": x.numpy()})[0]
        with torch.no_grad():
            expected = model(x).numpy()
        assert got.shape == (batch, 10)
        assert np.abs(got - expected).max() < 1e-4


@pytest.mark.slow
def test_onnx_export_describes_its_input_and_output(checkpoint, tmp_path):
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "model.onnx"
    assert run_cli("export", checkpoint, "--format", "onnx", "--out", out).returncode == 0
    proto = onnx.load(str(out))
    props = {p.key: p.value for p in proto.metadata_props}
    ckpt = torch.load(checkpoint, weights_only=False)
    assert props["tinymnist_version"] == tinymnist.__version__
    assert props["model"] == ckpt["model_name"]
    assert props["parameters"] == str(count_parameters(model_from_checkpoint(ckpt)))
    assert "[N, 1, 28, 28]" in props["input"] and "float32" in props["input"]
    assert props["input_normalization"] == "x = (pixel/255 - 0.1307) / 0.3081"
    assert props["input_polarity"].startswith("white digit (255) on black background (0)")
    assert "10 logits" in props["output"] and "softmax" in props["output"]
    assert "0.1307" in proto.graph.doc_string and "white digit" in proto.graph.doc_string


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_into_a_missing_directory_is_one_line(checkpoint, tmp_path, fmt):
    out = tmp_path / "nonexistent" / "dir" / f"m.{fmt}"
    result = run_cli("export", checkpoint, "--format", fmt, "--out", out)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (f"tinymnist: error: output directory {out.parent} does not exist; "
                                     "create it first or choose another --out")
    assert list(tmp_path.iterdir()) == []  # no directory created, nothing written


def test_torchscript_export_does_not_warn_of_its_own_deprecation(checkpoint, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export(checkpoint, "torchscript", tmp_path / "m.pt")
    assert [str(w.message) for w in caught if "torch.jit" in str(w.message)] == []


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")  # libtorch users still load it
def test_torchscript_export(checkpoint, tmp_path):
    out = tmp_path / "model.pt"
    result = run_cli("export", checkpoint, "--format", "torchscript", "--out", out)
    assert result.returncode == 0, result.stderr
    scripted = torch.jit.load(str(out))
    assert scripted(parity_inputs(5)).shape == (5, 10)


def test_export_of_a_bad_checkpoint_is_one_line(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_text("nope")
    result = run_cli("export", bad, "--out", tmp_path / "x.onnx")
    assert result.returncode == 1 and "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("where", ["a directory", "under a file"])
def test_export_to_an_unusable_path_is_one_line(checkpoint, tmp_path, where):
    blocker = tmp_path / "taken"
    if where == "a directory":
        blocker.mkdir()
        out = blocker
    else:
        blocker.write_text("keep me")
        out = blocker / "model.onnx"
    result = run_cli("export", checkpoint, "--format", "onnx", "--out", out)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and str(blocker) in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # nothing else written
    assert blocker.is_dir() or blocker.read_text() == "keep me"


@pytest.mark.slow
def test_export_leaves_only_the_finished_file(checkpoint, tmp_path):
    assert run_cli("export", checkpoint, "--format", "torchscript", "--out", tmp_path / "m.pt").returncode == 0
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary file left beside it


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_a_full_disk_keeps_the_previous_export(checkpoint, tmp_path, monkeypatch, fmt):
    import errno
    import os

    from tinymnist.errors import UserError

    out = tmp_path / "model.bin"
    export(checkpoint, fmt, out)
    before = out.read_bytes()

    def no_space(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("tinymnist.export.portable.os.replace", no_space)
    with pytest.raises(UserError, match=f"cannot write {out}: No space left on device"):
        export(checkpoint, fmt, out)
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["model.bin"]
