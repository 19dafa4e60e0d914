import subprocess
import sys
from pathlib import Path

import pytest
from helpers import run_cli

COMMANDS = ["data", "models", "summary", "train", "evaluate", "report", "predict", "export", "serve"]


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


@pytest.mark.parametrize("k", ["0", "11", "-1"])
def test_predict_top_k_is_checked(k, tmp_path):
    result = run_cli("predict", tmp_path / "any.png", "--top", k)
    assert result.returncode == 2 and "from 1 to 10" in result.stderr and "Traceback" not in result.stderr
