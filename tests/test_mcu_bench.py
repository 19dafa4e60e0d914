"""benchmarks/mcu.py's parts that need no compiler: which models --models names, issue #30's goals
per model, and the accuracy-against-instructions plot with the public figures marked."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import mcu  # noqa: E402

from tinymnist.errors import UserError  # noqa: E402


def row(model, cpu, opt, instructions, int8=99.3, flash=9000, ram=6000, cycles="-"):
    return {"model": model, "cpu": cpu, "opt": opt, "instructions": instructions, "int8 %": int8, "flash B": flash,
            "RAM B": ram, "cycles (est.)": cycles}


FAKE = [row("small", "cortex-m4", "-O2", 240_000, 99.05, 7000, 3900, 350_000),
        row("small", "cortex-m4", "-Os", 260_000, 99.05, 6500, 3900),
        row("small", "cortex-m0", "-Os", 1_400_000, 99.05, 6000, 3900),
        row("fast", "cortex-m4", "-O2", 900_000, 99.45, 13_000, 9000, 1_300_000),
        row("fast", "cortex-m4", "-Os", 990_000, 99.45, 11_500, 9000),
        row("fast", "cortex-m0", "-Os", 8_000_000, 99.45, 11_000, 9000)]


def test_the_plot_is_a_png_with_every_model_and_anchor(monkeypatch):
    import matplotlib.axes

    labels = []
    real = matplotlib.axes.Axes.annotate

    def annotate(self, text, *args, **kwargs):
        labels.append(text)
        return real(self, text, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "annotate", annotate)
    png = mcu.plot(FAKE, "test")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert "small" in labels and "fast" in labels
    assert any("TinyMaix" in t and "Cortex-M0+" in t for t in labels)
    assert sum("BitNetMCU" in t or t.startswith("width") for t in labels) == 5


def test_issue30_goals_are_met_within_one_build():
    met = mcu.issue30(FAKE)
    assert met["small"] == {"mcu-fast": False, "mcu-tiny": True}  # 99.05% is under mcu-fast's 99.40
    # fast: its -O2 build is over 12 KB of flash, its -Os build meets flash, RAM and 1 M instructions at once
    assert met["fast"] == {"mcu-fast": True, "mcu-tiny": False}
    slow = [dict(r, instructions=r["instructions"] * 2) if r["model"] == "fast" else r for r in FAKE]
    assert mcu.issue30(slow)["fast"]["mcu-fast"] is False


def test_models_are_bundled_names_or_checkpoints(tmp_path):
    models = mcu.resolve_models("separable,tiny4k", None, None, tmp_path)
    assert [name for name, _ in models] == ["separable (default)", "tiny4k"] and all(p.exists() for _, p in models)
    assert [name for name, _ in mcu.resolve_models(None, None, None, tmp_path)][:1] == ["separable (default)"]
    run = tmp_path / "run"
    run.mkdir()
    assert mcu.resolve_models(str(run), None, None, tmp_path) == [("run", run / "last.pt")]
    with pytest.raises(UserError, match="'nope' is neither a bundled model"):
        mcu.resolve_models("separable,nope", None, None, tmp_path)
