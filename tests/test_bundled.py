"""What the package ships per model (models/bundled.py): bundled checkpoints found by the model's name
wherever a checkpoint is taken, tools/package_pretrained.py that makes them, and the measured results
`tinymnist models` reads."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from helpers import run_cli

import tinymnist
from tinymnist import cli
from tinymnist.errors import UserError
from tinymnist.models import bundled
from tinymnist.models.bundled import bundled_checkpoint, pretrained_names, pretrained_path, read_measured
from tinymnist.models.zoo import DEFAULT_MODEL, model_kwargs, model_names, model_recipe
from tinymnist.training.checkpoint import load_checkpoint, resolve_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def test_a_bundled_name_resolves_unless_a_path_of_that_name_exists(tmp_path, monkeypatch):
    assert resolve_checkpoint(DEFAULT_MODEL) == pretrained_path() == bundled_checkpoint(None)
    assert resolve_checkpoint(None) == pretrained_path()
    monkeypatch.chdir(tmp_path)
    (tmp_path / DEFAULT_MODEL).mkdir()  # a run directory that happens to carry the model's name wins
    assert resolve_checkpoint(DEFAULT_MODEL) == Path(DEFAULT_MODEL)


def test_a_name_that_is_neither_a_path_nor_a_bundled_model_is_one_sentence_naming_the_bundled():
    with pytest.raises(UserError, match=f"checkpoint not found: tiny3k is not .* bundled model \\({DEFAULT_MODEL}"):
        load_checkpoint("tiny3k")
    unbundled = [name for name in model_names() if name not in pretrained_names()]
    if unbundled:
        with pytest.raises(UserError, match=f"{unbundled[0]} ships no pretrained weights"):
            load_checkpoint(unbundled[0])
        with pytest.raises(UserError, match=f"no bundled model '{unbundled[0]}'"):
            tinymnist.load_pretrained(unbundled[0])
    with pytest.raises(UserError, match="no bundled model 'cpu': it is not a registered model"):
        tinymnist.load_pretrained("cpu")  # the device is a keyword argument


def test_load_pretrained_by_name_and_by_default_give_the_same_model():
    default, named = tinymnist.load_pretrained(), tinymnist.load_pretrained(DEFAULT_MODEL)
    by_load = tinymnist.load(DEFAULT_MODEL)
    for a, b, c in zip(default.state_dict().values(), named.state_dict().values(), by_load.state_dict().values(),
                       strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)
    assert not named.training


def test_cli_unknown_checkpoint_name_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for argv in (["evaluate", "tiny3k"], ["export", "tiny3k", "--format", "onnx", "--out", "m.onnx"],
                 ["export", "tiny3k", "--format", "c", "--out", "mcu"], ["predict", "digit.png", "--checkpoint", "tiny3k"]):
        assert cli.main(argv) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "tiny3k" in err and DEFAULT_MODEL in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # nothing written, no output folder created


def test_serve_takes_a_bundled_name():
    pytest.importorskip("fastapi")
    from tinymnist.serve.server import create_app

    assert create_app(DEFAULT_MODEL) is not None


@pytest.mark.slow
def test_commands_take_a_bundled_model_by_name(tmp_path, data_dir, mnist):
    from PIL import Image

    evaluated = run_cli("evaluate", DEFAULT_MODEL, "--json", "--data-dir", data_dir)
    assert evaluated.returncode == 0, evaluated.stderr
    recorded = json.loads(pretrained_path().with_suffix(".json").read_text())["metrics"]
    assert json.loads(evaluated.stdout)["accuracy"] == pytest.approx(recorded["final_test_accuracy"])
    Image.fromarray(mnist.test_images[0]).save(tmp_path / "digit.png")
    predicted = run_cli("predict", tmp_path / "digit.png", "--checkpoint", DEFAULT_MODEL, "--json")
    assert predicted.returncode == 0 and json.loads(predicted.stdout)[0]["label"] == int(mnist.test_labels[0])
    exported = run_cli("export", DEFAULT_MODEL, "--format", "torchscript", "--out", tmp_path / "m.pt")
    assert exported.returncode == 0 and (tmp_path / "m.pt").is_file(), exported.stderr


# ---------------------------------------------------------------------------------------------
# tools/package_pretrained.py


def _tool():
    spec = importlib.util.spec_from_file_location("package_pretrained", ROOT / "tools" / "package_pretrained.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_package_pretrained_bundles_a_finished_run_under_its_model_name(tmp_path, mnist):
    from tinymnist.training.config import TrainConfig
    from tinymnist.training.trainer import train

    tool = _tool()
    run_dir, into = tmp_path / "run", tmp_path / "pretrained"
    into.mkdir()
    train(TrainConfig(model="reference", train_subset=128, test_subset=100, epochs=1, threads=1, engine="eager",
                      seed=3), mnist, run_dir)
    with pytest.raises(UserError, match="did not use the full training and test sets"):
        tool.package(run_dir, None, "reference", into)
    with pytest.raises(UserError, match="the run trained reference, not separable"):
        tool.package(run_dir, None, "separable", into, allow_subset=True)
    target = tool.package(run_dir, None, "reference", into, allow_subset=True)
    assert target == into / "reference.pt"
    packed, trained = load_checkpoint(target), load_checkpoint(run_dir)
    assert "optimizer" not in packed and packed["model_name"] == "reference"
    for name, tensor in trained["model"].items():
        assert torch.equal(packed["model"][name], tensor)
    record = json.loads(target.with_suffix(".json").read_text())
    assert record["metrics"] == json.loads((run_dir / "metrics.json").read_text())
    assert record["command"] == ("tinymnist train --model reference --epochs 1 --seed 3 --subset 128 --test-subset 100 "
                                 "--threads 1 --engine eager")


# ---------------------------------------------------------------------------------------------
# The measured results `tinymnist models` shows (written only by benchmarks/frontier.py)


def _entry(name, **figures):
    from tinymnist.models.summary import summarize
    from tinymnist.models.zoo import create_model

    entry = {"params": summarize(create_model(name)).params, "model_args": model_kwargs(name),
             "recipe": model_recipe(name), "seeds": list(range(10)), "mean": 99.484, "worst": 99.41, "best": 99.53}
    return json.loads(json.dumps({**entry, **figures}))


def test_models_shows_measured_figures_from_the_file_only(tmp_path, monkeypatch, capsys):
    measured = {"benchmark": "benchmarks/frontier.py", "date": "2026-12-07", "machine": {"cpu": "TestCPU", "cores": 2},
                "train_images": 60000,
                "models": {DEFAULT_MODEL: _entry(DEFAULT_MODEL),
                           "stepped": _entry("stepped", model_args={"plan": "c4 M c4"})}}
    path = tmp_path / "frontier.json"
    path.write_text(json.dumps(measured))
    monkeypatch.setattr(bundled, "measured_path", lambda: path)
    assert cli.main(["models"]) == 0
    lines: dict[str, str] = {}
    for line in capsys.readouterr().out.splitlines():  # a model's table row, not its recipe line below
        if line.split():
            lines.setdefault(line.split()[0], line)
    assert "99.484   99.41    10" in lines[DEFAULT_MODEL] and " yes " in lines[DEFAULT_MODEL]
    assert "not measured" in lines["reference"] and " - " in lines["reference"]
    assert "outdated" in lines["stepped"]  # measured on another network: its figures are not shown
    assert "2026-12-07" in lines["mean/worst:"] and "TestCPU" in lines["mean/worst:"] and "60,000" in lines["mean/worst:"]
    assert cli.main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[DEFAULT_MODEL]["measured"]["mean"] == 99.484 and rows["reference"]["measured"] is None
    assert rows[DEFAULT_MODEL]["pretrained"] and not rows["reference"]["pretrained"]
    monkeypatch.setattr(bundled, "measured_path", lambda: tmp_path / "absent.json")
    assert cli.main(["models"]) == 0 and "mean/worst:" not in capsys.readouterr().out


def test_a_damaged_measured_file_is_one_line(tmp_path, monkeypatch, capsys):
    path = tmp_path / "frontier.json"
    path.write_text("{not json")
    monkeypatch.setattr(bundled, "measured_path", lambda: path)
    assert cli.main(["models"]) == 1
    assert "cannot read the measured results" in capsys.readouterr().err


def test_the_shipped_measured_file_came_from_the_benchmark():
    measured = read_measured()
    if measured is None:
        pytest.skip("benchmarks/frontier.py has not written the package's measured results yet")
    assert measured["benchmark"] == "benchmarks/frontier.py" and measured["date"] and measured["machine"]
    for name, entry in measured["models"].items():
        assert name in model_names()
        assert len(entry["accuracies"]) == len(entry["seeds"]) and entry["worst"] == min(entry["accuracies"])
        assert not entry.get("train_subset") and not entry.get("test_subset")
