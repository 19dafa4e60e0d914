import json
import re
from pathlib import Path

import pytest
from helpers import run_cli
from PIL import Image

from tinymnist.config import TrainConfig
from tinymnist.report import evaluate_checkpoint, write_report
from tinymnist.train import train


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, mnist):
    out = tmp_path_factory.mktemp("run")
    train(TrainConfig(train_subset=1024, test_subset=600, epochs=2, batch_size=64, threads=1, ema=0.9), mnist, out)
    return out


def test_evaluate_matches_the_logged_final_epoch(small_run, mnist):
    history = json.loads((small_run / "history.json").read_text())["epochs"]
    metrics = evaluate_checkpoint(small_run / "last.pt", mnist)
    assert metrics["correct"] == history[-1]["test_correct"]
    assert metrics["accuracy"] == history[-1]["test_accuracy"]
    assert metrics["loss"] == pytest.approx(history[-1]["test_loss"], rel=1e-5)
    assert sum(map(sum, metrics["confusion"])) == metrics["total"] == 600


def test_evaluate_cli_json(small_run, data_dir):
    result = run_cli("evaluate", small_run / "last.pt", "--data-dir", data_dir, "--json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert len(metrics["precision"]) == len(metrics["recall"]) == 10


def test_report_files_and_links(small_run, mnist):
    path = write_report(small_run, mnist)
    text = path.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert {"lr.png", "loss.png", "accuracy.png", "confusion.png", "misclassified.png", "samples.png",
            "class_spread.png"} <= set(links)
    for link in links:
        with Image.open(small_run / link) as image:
            image.verify()
    assert "| **total** |" in text and "tinymnist train --config" in text
    assert text.count("| 2 | ") >= 1  # the per-epoch log table has epoch 2


def test_bad_checkpoint_and_run_dir_are_one_line(tmp_path, data_dir):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    result = run_cli("evaluate", junk, "--data-dir", data_dir)
    assert result.returncode == 1 and "corrupt" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("report", tmp_path / "missing", "--data-dir", data_dir)
    assert result.returncode == 1 and "not found" in result.stderr


def test_wrong_paths_fail_before_any_data_is_read(tmp_path):
    # An empty data directory would make any data load fail (or try to download): the path check
    # must come first.
    empty = tmp_path / "nodata"
    empty.mkdir()
    result = run_cli("evaluate", tmp_path / "missing.pt", "--data-dir", empty)
    assert result.returncode == 1 and "checkpoint not found" in result.stderr and "download" not in result.stderr
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.json").write_text("{}")
    result = run_cli("report", half, "--data-dir", empty)
    assert result.returncode == 1 and "history.json is missing" in result.stderr


def test_a_pickled_object_is_not_loaded_as_a_checkpoint(tmp_path, data_dir):
    import pickle

    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pt"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    evil.write_bytes(pickle.dumps({"model_name": Payload(), "model_args": {}, "model": {}}))
    result = run_cli("evaluate", evil, "--data-dir", data_dir)
    assert result.returncode == 1 and "not a tinymnist checkpoint" in result.stderr
    assert not marker.exists()
