import errno
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import run_cli

from tinymnist.errors import UserError, flag_name
from tinymnist.models.zoo import DEFAULT_MODEL
from tinymnist.training.checkpoint import load_checkpoint
from tinymnist.training.config import TrainConfig
from tinymnist.training.schedule import lr_factor
from tinymnist.training.trainer import available_cores, set_threads, train

SMALL = dict(train_subset=512, test_subset=500, batch_size=64, epochs=2, threads=1)


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def test_same_seed_gives_bit_identical_weights(mnist, tmp_path):
    cfg = TrainConfig(**SMALL, seed=3, ema=0.9, label_smoothing=0.1)
    train(cfg, mnist, tmp_path / "a")
    train(cfg, mnist, tmp_path / "b")
    a, b = _weights(tmp_path / "a" / "last.pt"), _weights(tmp_path / "b" / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    train(TrainConfig(**{**SMALL, "seed": 4}), mnist, tmp_path / "c")
    c = _weights(tmp_path / "c" / "last.pt")
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_run_directory_contents(mnist, tmp_path):
    out = tmp_path / "run"
    records = []
    metrics = train(TrainConfig(**SMALL, model="reference"), mnist, out, on_epoch=records.append)
    assert [r["epoch"] for r in records] == [1, 2]
    saved = json.loads((out / "metrics.json").read_text())
    for key in ("model", "params", "epochs", "seed", "final_test_accuracy", "final_test_loss",
                "train_seconds", "images_per_second"):
        assert key in saved
    assert saved["params"] == 4838 and saved["final_test_accuracy"] == metrics["final_test_accuracy"]
    history = json.loads((out / "history.json").read_text())
    assert len(history["lr_per_step"]) == 2 * history["steps_per_epoch"] == 16
    assert history["epochs"][-1]["test_accuracy"] == saved["final_test_accuracy"]
    assert TrainConfig.from_dict(json.loads((out / "config.json").read_text())) == TrainConfig(**SMALL, model="reference")
    assert 0 <= saved["final_test_accuracy"] <= 100


@pytest.mark.parametrize("schedule", ["onecycle", "article", "constant"])
def test_schedules_start_low_peak_and_end_near_zero(schedule):
    cfg = TrainConfig(schedule=schedule, epochs=10)
    values = [lr_factor(s, 100, cfg) for s in range(1000)]
    assert max(values) > (0.8 if schedule == "article" else 0.98)  # the article's curve is sampled per epoch
    if schedule != "constant":
        assert values[0] < 0.2 and values[-1] < 0.11
        assert values.index(max(values)) < 500


def test_validation_split_is_the_end_of_the_training_set_and_is_what_val_metrics_measure(mnist):
    from tinymnist.data.mnist import MNIST
    from tinymnist.evaluation.logits import logits_for
    from tinymnist.evaluation.metrics import loss_and_correct
    from tinymnist.training.trainer import make_splits, train_run

    splits = make_splits(mnist, TrainConfig(val_size=1000))
    assert torch.equal(splits["val"].images[:, 0], torch.tensor(mnist.train_images[-1000:]))  # the end of the training set
    assert torch.equal(splits["val"].labels, torch.tensor(mnist.train_labels[-1000:]))
    assert torch.equal(splits["train"].images[:, 0], torch.tensor(mnist.train_images[:-1000]))  # and only those go
    assert torch.equal(splits["test"].images[:, 0], torch.tensor(mnist.test_images))  # never the test set

    # A run on 600 training images, the last 100 held out; then the same run with those 100 replaced by
    # other images and labels. If training never reads them, the two runs train the same weights.
    small = MNIST(mnist.train_images[:600], mnist.train_labels[:600], mnist.test_images[:300], mnist.test_labels[:300])
    swapped = MNIST(small.train_images.copy(), small.train_labels.copy(), small.test_images, small.test_labels)
    swapped.train_images[-100:] = mnist.train_images[1000:1100]
    swapped.train_labels[-100:] = mnist.train_labels[1000:1100]
    cfg = TrainConfig(batch_size=64, epochs=1, threads=1, val_size=100, engine="eager")
    runs = [train_run(cfg, data) for data in (small, swapped)]
    a, b = (run.model.state_dict() for run in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    for run, data in zip(runs, (small, swapped), strict=True):
        record = run.history[-1]
        assert record["train_total"] == 500 and record["val_total"] == 100 and record["test_total"] == 300
        # The val figures are the returned model's on exactly the held-out images, the test figures on the test images
        for name, images, labels in (("val", data.train_images[-100:], data.train_labels[-100:]),
                                     ("test", data.test_images, data.test_labels)):
            loss, correct = loss_and_correct(logits_for(run.model, torch.tensor(images)), torch.tensor(labels))
            assert record[f"{name}_correct"] == correct and record[f"{name}_loss"] == pytest.approx(loss, rel=1e-5)
            assert run.metrics[f"final_{name}_accuracy"] == record[f"{name}_accuracy"] == 100.0 * correct / len(labels)
    assert runs[0].history[-1]["val_loss"] != runs[1].history[-1]["val_loss"]  # the val figures follow the held-out images
    assert runs[0].history[-1]["test_loss"] == runs[1].history[-1]["test_loss"]


def _train_cmd(out, data_dir, *extra):
    return [sys.executable, "-m", "tinymnist", "train", "--data-dir", str(data_dir), "--out", str(out),
            "--subset", "6000", "--test-subset", "500", "--epochs", "3", "--batch-size", "64", "--threads", "1",
            "--seed", "7", "--quiet", *extra]


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path, data_dir):
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run(_train_cmd(full, data_dir), check=True, capture_output=True)
    proc = subprocess.Popen(_train_cmd(killed, data_dir))
    deadline = time.time() + 300
    while time.time() < deadline:  # wait until epoch 1 is checkpointed, then kill inside epoch 2
        if (killed / "history.json").exists() and len(json.loads((killed / "history.json").read_text())["epochs"]) == 1:
            break
        time.sleep(0.05)
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert torch.load(killed / "last.pt", weights_only=False)["epoch"] == 1
    assert not (killed / "metrics.json").exists()
    result = subprocess.run(_train_cmd(killed, data_dir, "--resume"), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    a, b = _weights(full / "last.pt"), _weights(killed / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    ha = json.loads((full / "history.json").read_text())
    hb = json.loads((killed / "history.json").read_text())
    assert ha["lr_per_step"] == hb["lr_per_step"]
    assert [e["test_accuracy"] for e in ha["epochs"]] == [e["test_accuracy"] for e in hb["epochs"]]


@pytest.mark.slow
def test_train_cli_refuses_to_overwrite_and_checks_resume_config(tmp_path, data_dir):
    out = tmp_path / "run"
    base = ["train", "--data-dir", data_dir, "--out", out, "--subset", "256", "--test-subset", "200", "--epochs", "1"]
    result = run_cli(*base)
    assert result.returncode == 0, result.stderr
    assert "epoch  1/1" in result.stdout and "final test accuracy" in result.stdout
    again = run_cli(*base)
    assert again.returncode == 1 and "--resume" in again.stderr
    other = run_cli(*base, "--resume", "--lr", "0.5")
    assert other.returncode == 1 and "Traceback" not in other.stderr
    saved_lr = TrainConfig.for_model(DEFAULT_MODEL).lr  # the default model's recipe
    assert f"differ from its saved configuration (--lr {saved_lr} -> 0.5)" in other.stderr and other.stdout == ""
    alone = run_cli("train", "--data-dir", data_dir, "--out", out, "--resume")  # the run's own config is used
    assert alone.returncode == 0 and "is complete: 1 of 1 epochs" in alone.stdout, alone.stderr


def test_unknown_model_is_one_line(tmp_path, data_dir):
    result = run_cli("train", "--data-dir", data_dir, "--model", "nope", "--out", tmp_path)
    assert result.returncode == 1 and "unknown model" in result.stderr and result.stderr.count("\n") == 1


def test_clean_epochs_turn_augmentation_off_at_the_end_only(mnist, tmp_path):
    small = {**SMALL, "model": "reference", "epochs": 1}
    plain = train(TrainConfig(**small, augment=False), mnist, tmp_path / "plain")
    clean = train(TrainConfig(**small, clean_epochs=1), mnist, tmp_path / "clean")
    augmented = train(TrainConfig(**small, clean_epochs=0), mnist, tmp_path / "aug")
    assert clean["final_test_loss"] == plain["final_test_loss"]
    assert augmented["final_test_loss"] != plain["final_test_loss"]


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_norm_lr_scale_multiplies_the_learning_rate_of_batchnorm_parameters_and_biases_only(optimizer):
    from tinymnist.models.zoo import create_model
    from tinymnist.training.schedule import make_optimizer

    model = create_model("separable")
    cfg = TrainConfig(optimizer=optimizer, lr=0.1, norm_lr_scale=8.0)
    opt = make_optimizer(model, cfg)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, 10, cfg))
    for _ in range(7):  # the schedule scales both groups alike
        opt.step()
        schedule.step()
    weights, norms = opt.param_groups
    assert all(p.dim() > 1 for p in weights["params"]) and all(p.dim() == 1 for p in norms["params"])
    assert norms["lr"] == pytest.approx(8.0 * weights["lr"]) and weights["lr"] != cfg.lr
    same = make_optimizer(model, TrainConfig(optimizer=optimizer, lr=0.1)).param_groups
    assert same[0]["lr"] == same[1]["lr"] == 0.1  # the default: one learning rate, exactly as before


def test_run_saved_before_a_config_field_existed_resumes_as_it_was_trained(mnist, tmp_path):
    out = tmp_path / "old"
    cfg = TrainConfig(**{**SMALL, "epochs": 1}, clean_epochs=0)
    train(cfg, mnist, out)
    ckpt = torch.load(out / "last.pt", weights_only=False)
    for field in ("clean_epochs", "precise_bn"):  # as a run saved by an older tinymnist
        del ckpt["config"][field]
    torch.save(ckpt, out / "last.pt")
    saved = json.loads((out / "config.json").read_text())
    del saved["clean_epochs"], saved["precise_bn"]
    assert TrainConfig.from_saved(saved) == cfg  # not today's default of one clean epoch
    train(cfg, mnist, out, resume=True)  # accepted: the same configuration
    with pytest.raises(Exception, match="differ from its saved configuration.*clean_epochs=0 -> 1"):
        train(TrainConfig(**{**SMALL, "epochs": 1}), mnist, out, resume=True)


@pytest.mark.parametrize("field, value", [("epochs", 0), ("batch_size", 0), ("lr", -0.1), ("label_smoothing", 1.0),
                                          ("scale", (1.1, 0.9)), ("optimizer", "lbfgs"), ("threads", -1),
                                          ("norm_lr_scale", 0.0)])
def test_config_refuses_unusable_values(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_bad_hyperparameter_on_the_command_line_is_one_line(tmp_path):
    result = run_cli("train", "--batch-size", "0", "--data-dir", tmp_path, "--out", tmp_path / "run")
    assert result.returncode == 1 and "--batch-size must be" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_run_directory_that_cannot_be_one_is_one_line(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    for out, message in ((afile, "is a file"), (afile / "run", "cannot create output directory")):
        result = run_cli("train", "--out", out, "--data-dir", tmp_path / "no-data-needed-yet")
        assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert afile.read_text() == "keep me"


def test_threads_never_exceed_the_available_cores():
    before = torch.get_num_threads()
    try:
        assert set_threads(10_000) == available_cores()
        assert set_threads(1) == 1
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------
# Faults: divergence, a full disk, a damaged checkpoint, repeated kills


@pytest.mark.parametrize("engine", ["eager", "native"])
def test_a_diverging_run_stops_at_the_first_non_finite_loss_and_keeps_the_last_good_epoch(mnist, tmp_path, monkeypatch,
                                                                                          engine):
    from tinymnist.training import trainer

    out = tmp_path / "run"
    real = trainer.make_step
    steps = []

    def nan_from_the_ninth_step(*args, **kwargs):
        step = real(*args, **kwargs)

        def wrapped(idx, gen, **kwargs):
            loss, correct = step(idx, gen, **kwargs)
            steps.append(1)
            return (loss * float("nan") if len(steps) > 8 else loss), correct  # epoch 2, step 1 (8 steps per epoch)

        return wrapped

    monkeypatch.setattr(trainer, "make_step", nan_from_the_ninth_step)
    with pytest.raises(trainer.Diverged) as info:
        train(TrainConfig(**{**SMALL, "epochs": 3, "engine": engine}), mnist, out)
    monkeypatch.undo()
    message = str(info.value)
    assert "loss became nan at epoch 2, step 1 of 8" in message and "last good epoch (1)" in message and "lower lr=" in message
    assert "lower --lr" in info.value.worded(flag_name)
    assert len(steps) == 9  # stopped at the first non-finite loss
    ckpt = torch.load(out / "last.pt", weights_only=False)
    assert ckpt["epoch"] == 1 and all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert not (out / "metrics.json").exists()


@pytest.mark.slow
def test_huge_learning_rate_is_one_line_and_exit_1(tmp_path, data_dir):
    result = run_cli("train", "--data-dir", data_dir, "--out", tmp_path / "run", "--subset", "512", "--test-subset", "100",
                     "--epochs", "2", "--threads", "1", "--lr", "1e12")
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "training diverged: the loss became" in result.stderr and "at epoch 1, step" in result.stderr
    assert "final test accuracy" not in result.stdout and not (tmp_path / "run" / "metrics.json").exists()


def test_a_full_disk_while_saving_is_one_line_and_the_last_checkpoint_survives(mnist, tmp_path, monkeypatch):
    from tinymnist.training import trainer

    out = tmp_path / "run"
    real_save = trainer.save_atomic
    calls = []

    def full_disk_on_second(obj, path):
        calls.append(path)
        if len(calls) == 2:
            # The real writer fails inside its temp file: it must clean that up and leave last.pt alone.
            monkeypatch.setattr("tinymnist.atomic.os.replace", _raise_enospc)
        return real_save(obj, path)

    monkeypatch.setattr(trainer, "save_atomic", full_disk_on_second)
    with pytest.raises(UserError) as info:
        train(TrainConfig(**{**SMALL, "epochs": 3}), mnist, out)
    assert "No space left on device" in str(info.value) and "still holds epoch 1" in str(info.value)
    monkeypatch.undo()
    assert load_checkpoint(out / "last.pt")["epoch"] == 1
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "history.json", "last.pt"]  # no temp file left


def _raise_enospc(*args):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_resume_from_a_damaged_checkpoint_is_one_line_and_never_starts_over(tmp_path, data_dir, damage):
    out = tmp_path / "run"
    args = ["train", "--data-dir", data_dir, "--out", out, "--subset", "256", "--test-subset", "100", "--epochs", "1",
            "--threads", "1"]
    assert run_cli(*args).returncode == 0
    ckpt = out / "last.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000] if damage == "truncate" else b"not a checkpoint")
    before = ckpt.read_bytes()
    result = run_cli(*args, "--resume")
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and str(ckpt) in result.stderr
    assert "corrupt" in result.stderr and result.stdout == "" and ckpt.read_bytes() == before


@pytest.mark.slow
def test_many_kills_at_random_moments_then_resume_give_the_uninterrupted_weights(tmp_path, data_dir):
    """SIGKILL at random moments (seeded), resume after each; the run must end bit-identical.
    benchmarks/kill_resume.py does the same with more kills."""
    rng = random.Random(1234)
    full, killed = tmp_path / "full", tmp_path / "killed"
    started = time.perf_counter()
    subprocess.run(_train_cmd(full, data_dir), check=True, capture_output=True)
    seconds = time.perf_counter() - started
    epoch_seconds = [e["seconds"] for e in json.loads((full / "history.json").read_text())["epochs"]]
    overhead = seconds - sum(epoch_seconds)  # start-up, evaluation and saving

    def remaining() -> float:  # a resumed run only trains the epochs left: draw each kill within it
        done = len(json.loads((killed / "history.json").read_text())["epochs"]) if (killed / "history.json").exists() else 0
        return overhead + sum(epoch_seconds[done:])

    kills = 0
    while kills < 5:
        proc = subprocess.Popen(_train_cmd(killed, data_dir, *(["--resume"] if (killed / "last.pt").exists() else [])),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            _, err = proc.communicate(timeout=rng.uniform(0.3, 0.7) * remaining())  # start-up, training or saving
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            kills += 1
            continue
        assert proc.returncode == 0, err  # finished before the kill came
        break
    if not (killed / "metrics.json").exists():
        subprocess.run(_train_cmd(killed, data_dir, *(["--resume"] if (killed / "last.pt").exists() else [])),
                       check=True, capture_output=True)
    a, b = _weights(full / "last.pt"), _weights(killed / "last.pt")
    assert kills >= 3 and all(torch.equal(a[k], b[k]) for k in a)
