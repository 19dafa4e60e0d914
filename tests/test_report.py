import json
import re
import shutil
from pathlib import Path

import pytest
from helpers import run_cli
from PIL import Image

from tinymnist.analysis import plots
from tinymnist.analysis.report import check_run_dir, evaluate_checkpoint, write_report
from tinymnist.errors import UserError
from tinymnist.training.config import TrainConfig
from tinymnist.training.trainer import train


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


@pytest.mark.slow
def test_evaluate_cli_json(small_run, data_dir):
    result = run_cli("evaluate", small_run / "last.pt", "--data-dir", data_dir, "--json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert len(metrics["precision"]) == len(metrics["recall"]) == 10


@pytest.mark.slow
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
    assert "Configuration: threads: 1 (" in text and "--threads 1 " in text
    recorded = json.loads((small_run / "metrics.json").read_text()).get("data_dir")
    assert ("--data-dir" in text) == bool(recorded)  # only when the run says it used one


@pytest.mark.slow
def test_report_of_a_checkpoint_path_reproduces_threads_and_data_dir(small_run, mnist, tmp_path, monkeypatch):
    run = tmp_path / "my run"
    shutil.copytree(small_run, run)
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "threads": 3, "data_dir": "/data/my mnist", "engine": "eager"}))
    titles = {}

    def save(fig, path):
        titles[path.name] = fig.get_suptitle() or fig.axes[0].get_title()
        return real_save(fig, path)

    real_save = plots.save
    monkeypatch.setattr(plots, "save", save)
    path = write_report(run / "last.pt", mnist)  # the run's checkpoint names its run directory
    assert path == run / "report.md"
    text = path.read_text()
    command = f"tinymnist train --config '{run}/config.json' --threads 3 --data-dir '/data/my mnist' --out NEW_RUN_DIR"
    assert command in text
    assert "Configuration: threads: 3 (part of the configuration: with eager PyTorch the same seed at another thread " \
           "count can give a different result)" in text
    history = json.loads((run / "history.json").read_text())["epochs"][-1]
    wrong = history["test_total"] - history["test_correct"]
    assert wrong > 40  # else the title says "all N"
    assert titles["misclassified.png"] == f"Misclassified test digits (showing 40 of {wrong}; most confident first)"


def test_report_of_another_file_names_the_run_directory_to_pass(small_run, tmp_path):
    assert check_run_dir(small_run / "last.pt") == small_run
    with pytest.raises(UserError) as error:
        check_run_dir(small_run / "metrics.json")
    assert str(error.value) == (f"{small_run / 'metrics.json'} is a file, not a run directory; "
                                "pass the run directory (the folder holding last.pt)")
    result = run_cli("report", small_run / "config.json", "--data-dir", tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1
    assert "is a file, not a run directory" in result.stderr


def test_class_spread_labels_train_and_test_bars_with_their_counts():
    fig = plots.class_spread({d: 5000 + d for d in range(10)}, {d: 900 + d for d in range(10)})
    labels = sorted(text.get_text() for text in fig.axes[0].texts)
    plots.plt.close(fig)
    assert labels == sorted([str(5000 + d) for d in range(10)] + [str(900 + d) for d in range(10)])


@pytest.mark.slow
def test_bad_checkpoint_and_run_dir_are_one_line(tmp_path, data_dir):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    result = run_cli("evaluate", junk, "--data-dir", data_dir)
    assert result.returncode == 1 and "corrupt" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("report", tmp_path / "missing", "--data-dir", data_dir)
    assert result.returncode == 1 and "not found" in result.stderr


@pytest.mark.slow
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
