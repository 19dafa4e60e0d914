"""The Python API (tinymnist.train / evaluate / predict / load / load_pretrained / summary), as a
notebook uses it."""

import importlib
import json
import pkgutil
import types

import numpy as np
import pytest
import torch
from PIL import Image

import tinymnist
from tinymnist.errors import SettingError, UserError
from tinymnist.models.zoo import DEFAULT_MODEL

SMALL = dict(train_subset=512, test_subset=300, epochs=2, threads=1, engine="eager")


@pytest.fixture(scope="module")
def run(data_dir):
    return tinymnist.train(data_dir=data_dir, verbose=False, **SMALL)


def test_the_documented_names_exist_and_are_functions():
    for name in ("train", "evaluate", "predict", "load", "load_pretrained", "summary"):
        assert callable(getattr(tinymnist, name)), name
    # No submodule may shadow a function of the API once it is imported.
    for module in pkgutil.walk_packages(tinymnist.__path__, "tinymnist."):
        if not module.name.rsplit(".", 1)[-1].startswith("_"):  # __main__ runs the CLI; _tm_* are C libraries
            importlib.import_module(module.name)
    for name in tinymnist.__all__:
        assert not isinstance(getattr(tinymnist, name), types.ModuleType), name


@pytest.mark.slow
def test_train_returns_a_run_in_eval_mode(run):
    assert isinstance(run, tinymnist.Run) and not run.model.training
    assert run.config == tinymnist.TrainConfig.for_model(DEFAULT_MODEL, **SMALL)  # the default's recipe applied
    assert [r["epoch"] for r in run.history] == [1, 2]
    assert run.metrics["final_test_accuracy"] == run.history[-1]["test_accuracy"]
    assert run.metrics["device"] == "cpu" and run.path is None and "not saved" in repr(run)


def test_nothing_is_lost_without_an_output_directory(run, tmp_path, data_dir):
    file = run.save(tmp_path / "model.pt")
    loaded = tinymnist.load(file)
    for (k, a), b in zip(run.model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    folder = run.save(tmp_path / "run")
    assert {p.name for p in folder.iterdir()} >= {"last.pt", "config.json", "history.json", "metrics.json"}
    # The saved directory is a run the CLI's evaluation reads, with the same test figure.
    figures = tinymnist.evaluate(folder, data_dir=data_dir)
    assert figures["total"] == 300 and figures["accuracy"] == pytest.approx(run.metrics["final_test_accuracy"])
    assert json.loads((folder / "metrics.json").read_text())["params"] == run.metrics["params"]


def test_evaluate_a_model_on_the_whole_test_set(data_dir):
    figures = tinymnist.evaluate(tinymnist.load_pretrained(), data_dir=data_dir)
    assert figures["total"] == 10_000 and figures["accuracy"] > 99.0
    assert np.array(figures["confusion"]).sum() == 10_000 and figures["probabilities"].shape == (10_000, 10)


def test_predict_accepts_paths_pil_images_arrays_and_batches(mnist, tmp_path):
    digits = mnist.test_images[:20]
    batch = tinymnist.predict(digits)  # N x 28 x 28 uint8: MNIST digits as they are
    assert len(batch) == 20 and sum(r["label"] == y for r, y in zip(batch, mnist.test_labels[:20], strict=True)) >= 19
    path = tmp_path / "seven.png"
    big = Image.fromarray(255 - digits[0]).resize((112, 112))  # dark ink on white, 4x larger: preprocessed
    big.save(path)
    by_path, by_pil, by_array = (tinymnist.predict(x)[0] for x in (path, big, np.asarray(big)))
    assert by_path["label"] == by_pil["label"] == by_array["label"] == mnist.test_labels[0]
    assert by_path["input"].shape == (28, 28) and len(by_path["top"]) == 3
    assert tinymnist.predict([], top=1) == []


def test_predict_with_a_run_a_checkpoint_or_a_module(run, tmp_path, mnist):
    path = run.save(tmp_path / "m.pt")
    images = mnist.test_images[:5]
    labels = [[r["label"] for r in tinymnist.predict(images, model=m)] for m in (run, path, run.model)]
    assert labels[0] == labels[1] == labels[2]


def test_summary_describes_the_article_network():
    table = tinymnist.summary("reference")
    assert table.params == 4838 and "| **total** |" in str(table)
    assert tinymnist.summary().params < 5000


def test_bad_settings_are_named():
    with pytest.raises(TypeError, match="unknown setting.*epoch_count"):
        tinymnist.train(epoch_count=3)
    with pytest.raises(UserError, match="epochs must be"):
        tinymnist.train(epochs=0)
    with pytest.raises(UserError, match="no run"):
        tinymnist.train(resume=True)


def test_setting_errors_name_keyword_arguments(tmp_path):
    with pytest.raises(SettingError, match="^bad training configuration: epochs must be .*; lr must be > 0$") as info:
        tinymnist.train(epochs=0, lr=0)
    assert info.value.settings == ("epochs", "lr") and isinstance(info.value, ValueError)
    with pytest.raises(SettingError, match="give out= the run directory"):
        tinymnist.train(resume=True)
    with pytest.raises(SettingError, match=r"it does not exist; check out=, or leave out resume=") as missing:
        tinymnist.train(out=tmp_path / "typo", resume=True)
    assert missing.value.settings == ("out", "resume")


def test_config_from_a_saved_run_and_overrides(run, tmp_path, data_dir):
    folder = run.save(tmp_path / "saved")
    again = tinymnist.train(folder / "config.json", data_dir=data_dir, verbose=False, epochs=1)
    assert again.config == tinymnist.TrainConfig.for_model(DEFAULT_MODEL, **{**SMALL, "epochs": 1})


def test_ctrl_c_keeps_the_last_completed_epoch(mnist):
    from tinymnist.training.config import TrainConfig
    from tinymnist.training.trainer import train_run

    def stop_after_second(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    cfg = TrainConfig(**{**SMALL, "epochs": 4})
    trained = train_run(cfg, mnist, on_epoch=stop_after_second, keep_on_interrupt=True)
    assert trained.interrupted and len(trained.history) == 2 and trained.metrics["epochs"] == 2
    saved = trained.checkpoint["model"]
    assert all(torch.equal(saved[k], v) for k, v in trained.model.state_dict().items())
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, mnist, on_epoch=stop_after_second)
