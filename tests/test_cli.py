import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import run_cli

COMMANDS = ["data", "models", "summary", "train", "evaluate", "report", "predict", "export", "serve"]


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = run_cli(command, "--help")
    assert result.returncode == 0 and "usage: tinymnist" in result.stdout


def test_console_script_and_version():
    result = subprocess.run([str(Path(sys.executable).parent / "tinymnist"), "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("tinymnist ")


def test_bad_flag_is_an_argparse_error():
    result = run_cli("train", "--epochs", "many")
    assert result.returncode == 2 and "invalid int value" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("port", ["0", "99999", "http"])
def test_serve_port_must_be_a_port(port):
    result = run_cli("serve", "--port", port)
    assert result.returncode == 2 and "is not a TCP port" in result.stderr and "Traceback" not in result.stderr


def test_serve_on_a_taken_port_is_one_line():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run_cli("serve", "--port", taken.getsockname()[1], timeout=60)
    assert result.returncode == 1 and "cannot serve on 127.0.0.1" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("k", ["0", "11", "-1"])
def test_predict_top_k_is_checked(k, tmp_path):
    result = run_cli("predict", tmp_path / "any.png", "--top", k)
    assert result.returncode == 2 and "from 1 to 10" in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------------------------------------
# Rough edges a new user hit (issue 18), each kept fixed by a test

TINY = ["--subset", "128", "--test-subset", "100", "--epochs", "1", "--threads", "1", "--model", "reference"]


@pytest.mark.slow
def test_a_second_train_starts_another_run_and_resume_finds_the_latest(tmp_path, data_dir):
    first = run_cli("train", "--data-dir", data_dir, *TINY, cwd=tmp_path)
    second = run_cli("train", "--data-dir", data_dir, *TINY, cwd=tmp_path)
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    assert "into runs/reference-seed0," not in second.stdout and "runs/reference-seed0-2" in second.stdout
    assert (tmp_path / "runs" / "reference-seed0" / "last.pt").is_file()
    assert (tmp_path / "runs" / "reference-seed0-2" / "last.pt").is_file()
    again = run_cli("train", "--data-dir", data_dir, *TINY, "--resume", cwd=tmp_path)
    assert again.returncode == 0 and "runs/reference-seed0-2 is complete" in again.stdout, again.stderr


@pytest.mark.slow
def test_resume_of_a_missing_run_is_an_error_not_a_new_run(tmp_path, data_dir):
    result = run_cli("train", "--data-dir", data_dir, *TINY, "--resume", "--out", tmp_path / "typo")
    assert result.returncode == 1 and "cannot resume" in result.stderr and "does not exist" in result.stderr
    assert result.stderr.count("\n") == 1 and result.stdout == "" and not (tmp_path / "typo").exists()
    nothing = run_cli("train", "--data-dir", data_dir, *TINY, "--resume", cwd=tmp_path)
    assert nothing.returncode == 1 and "no run to resume" in nothing.stderr and not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_a_resume_mismatch_names_the_flags_as_spelled(tmp_path, data_dir):
    out = tmp_path / "run"
    first = run_cli("train", "--data-dir", data_dir, *TINY, "--out", out)
    assert first.returncode == 0, first.stderr
    other = [a if a != "128" else "256" for a in TINY]  # --subset 128 -> 256
    changed = run_cli("train", "--data-dir", data_dir, *other, "--no-augment", "--out", out, "--resume")
    assert changed.returncode == 1 and changed.stderr.count("\n") == 1, changed.stderr
    assert "(augment True -> False (--no-augment), --subset 128 -> 256)" in changed.stderr
    assert "--train-subset" not in changed.stderr and "give another --out" in changed.stderr


def test_interrupt_hint_repeats_the_data_dir(tmp_path, data_dir):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "tinymnist", "train", "--data-dir", str(data_dir), "--out", str(out),
                             "--subset", "60000", "--epochs", "3", "--threads", "1", "--model", "reference"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.readline()  # "training ..." once the data is loaded: training has started
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert f"tinymnist train --resume --out {out} --data-dir {data_dir}" in err


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped interrupt, on purpose
def test_an_interrupt_lost_in_a_finalizer_still_stops_training():
    from tinymnist.cli import Interrupts

    class RaisesInFinalizer:
        def __del__(self) -> None:
            signal.raise_signal(signal.SIGINT)  # its KeyboardInterrupt is printed and dropped by Python

    went_on = False
    before = signal.getsignal(signal.SIGINT)  # Python's default handler; SIG_IGN under a shell's background job
    with pytest.raises(KeyboardInterrupt), Interrupts() as interrupts:
        obj = RaisesInFinalizer()
        del obj
        went_on = True
        interrupts.check()  # what each epoch's end does
    assert went_on
    assert signal.getsignal(signal.SIGINT) is before


def test_train_help_shows_every_config_field_with_its_default():
    import dataclasses

    from tinymnist.training.config import TrainConfig

    text = " ".join(run_cli("train", "--help").stdout.split())
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
        entry = text.rsplit(f"{flag} ", 1)[1].split(" --", 1)[0]  # the flag's entry among the options
        assert f.metadata["help"].split()[0] in entry, flag
        if not isinstance(getattr(defaults, f.name), bool):
            assert f"(default: {getattr(defaults, f.name)})" in entry, (flag, entry)
    assert "--device" in text and "(default: auto)" in text


def test_config_errors_name_the_flag_the_user_typed(tmp_path):
    result = run_cli("train", "--subset", "-5", "--out", tmp_path / "run")
    assert result.returncode == 1 and "--subset must be" in result.stderr and "train_subset" not in result.stderr


@pytest.mark.slow
def test_data_writes_its_figures_under_runs_not_the_current_directory(tmp_path, data_dir):
    result = run_cli("data", "--data-dir", data_dir, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]
    assert {p.name for p in (tmp_path / "runs" / "data").iterdir()} == {"samples.png", "class_spread.png"}


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("command", [["train", "--subset", "10"], ["evaluate", "RUN"], ["predict", "x.png"], ["serve"]])
def test_device_cuda_without_cuda_is_one_line(command, tmp_path):
    if command[0] == "evaluate":
        from tinymnist.models.bundled import pretrained_path

        command = ["evaluate", str(pretrained_path())]
    result = run_cli(*command, "--device", "cuda", cwd=tmp_path)
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "finds no CUDA GPU" in result.stderr and "--device cpu" in result.stderr
    assert list(tmp_path.iterdir()) == []
