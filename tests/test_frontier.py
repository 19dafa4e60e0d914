"""benchmarks/frontier.py: every model over seeds, each run logged as it ends, runs in the log skipped,
the table, JSON and plot; and the public claims it marks."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import frontier  # noqa: E402

SMOKE = ["--models", "reference,smooth", "--seeds", "2", "--epochs", "1", "--subset", "256", "--test-subset", "200",
         "--engine", "eager"]


def run_frontier(tmp_path, *args):
    out = ["--log", tmp_path / "f.jsonl", "--out", tmp_path / "f.json", "--plot", tmp_path / "f.png"]
    return subprocess.run([sys.executable, ROOT / "benchmarks" / "frontier.py", *map(str, [*SMOKE, *out, *args])],
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_smoke_run_writes_log_json_and_plot_then_skips_what_the_log_holds(tmp_path, data_dir):
    first = run_frontier(tmp_path, "--data-dir", data_dir, "--save-runs", tmp_path / "runs")
    assert first.returncode == 0, first.stderr
    kept = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert kept == ["reference-seed0", "reference-seed1", "smooth-seed0", "smooth-seed1"]
    assert all((tmp_path / "runs" / name / "metrics.json").exists() for name in kept)
    assert "4 runs: 0 already in" in first.stdout and "| reference | 4,838  | 487,648 |" in first.stdout
    lines = [json.loads(line) for line in (tmp_path / "f.jsonl").read_text().splitlines()]
    assert sorted((r["model"], r["seed"]) for r in lines) == [("reference", 0), ("reference", 1), ("smooth", 0),
                                                              ("smooth", 1)]
    assert all(r["config"]["train_subset"] == 256 and r["config"]["epochs"] == 1 for r in lines)
    result = json.loads((tmp_path / "f.json").read_text())
    assert set(result["models"]) == {"reference", "smooth"} and result["train_images"] == 256
    ref = result["models"]["reference"]
    assert ref["seeds"] == [0, 1] and ref["worst"] == min(ref["accuracies"]) and ref["params"] == 4838
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    again = run_frontier(tmp_path)  # everything is in the log: nothing trains, not even the data is read
    assert again.returncode == 0 and "4 runs: 4 already in" in again.stdout, again.stderr
    assert json.loads((tmp_path / "f.json").read_text())["models"] == result["models"]


def test_the_package_file_takes_only_full_runs(tmp_path):
    result = run_frontier(tmp_path, "--update-package", tmp_path / "measured.json")
    assert result.returncode == 1 and "--update-package records full runs" in result.stderr
    assert "Traceback" not in result.stderr and not list(tmp_path.iterdir())


def test_a_line_cut_off_by_a_kill_spoils_only_itself(tmp_path):
    log = tmp_path / "f.jsonl"
    run = {"model": "reference", "seed": 0, "config": {"epochs": 1}, "final_test_accuracy": 99.0}
    frontier.append_line(log, run)
    with log.open("a") as handle:
        handle.write('{"model": "reference", "seed": 1, "con')  # killed while writing
    frontier.append_line(log, {**run, "seed": 2})
    runs, bad = frontier.read_log(log)
    assert [r["seed"] for r in runs] == [0, 2] and bad == 1


def test_jobs_are_each_model_with_its_own_recipe_and_a_changed_config_is_a_new_run():
    jobs = frontier.job_configs(["reference", "separable"], [0, 1], {"threads": 1})
    assert [(j["model"], j["seed"]) for j in jobs] == [("reference", 0), ("reference", 1), ("separable", 0),
                                                       ("separable", 1)]
    assert jobs[0]["config"]["train_subset"] == 0 and jobs[0]["config"]["test_subset"] == 0  # all the data
    other = frontier.job_configs(["reference"], [0], {"threads": 1, "lr": 0.3})[0]
    assert frontier.key(other) != frontier.key(jobs[0])
    assert frontier.key({**jobs[0], "model_args": {"widths": [4, 8, 8]}}) != frontier.key(jobs[0])  # another network


def test_the_public_claims_are_the_anchors():
    claims = {(c["params"], c["accuracy"]): c["how"] for c in frontier.CLAIMS}
    assert claims == {(3762, 99.52): "final epoch of 15, one seed",
                      (1936, 99.10): "final of 75 epochs, one seed, no augmentation",
                      (997, 99.05): "best of 223 runs, early stopping on the test set"}
    assert [c.get("mean") for c in frontier.CLAIMS if c["params"] == 997] == [98.76]
