"""Writing the C export's files: all of them or none, and an earlier export survives a failure midway."""

import os
from pathlib import Path

import pytest

from tinymnist.errors import UserError
from tinymnist.export.c import c_export
from tinymnist.export.c.c_export import write_files


def test_a_failure_while_moving_the_files_in_puts_the_earlier_export_back(tmp_path, monkeypatch):
    (tmp_path / "a.h").write_text("earlier header")
    (tmp_path / "b.c").write_text("earlier source")
    (tmp_path / "notes.txt").write_text("not ours")
    real_replace = os.replace
    moves_in = []

    def replace(src, dst):
        if Path(src).parent.name.startswith(".tinymnist-export-") and Path(dst).parent == tmp_path:
            moves_in.append(Path(dst).name)
            if len(moves_in) == 2:  # the header is in, the source fails: the rollback path
                raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(c_export.os, "replace", replace)
    with pytest.raises(UserError, match="No space left"):
        write_files(tmp_path, {"a.h": "new header", "b.c": "new source"})
    monkeypatch.undo()
    assert moves_in == ["a.h", "b.c"]  # the failure came after the first file had replaced the earlier one
    assert (tmp_path / "a.h").read_text() == "earlier header" and (tmp_path / "b.c").read_text() == "earlier source"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h", "b.c", "notes.txt"]  # no temp folder left


def test_a_failure_midway_into_an_empty_folder_leaves_it_empty(tmp_path, monkeypatch):
    real_replace = os.replace
    calls = []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(5, "Input/output error")
        return real_replace(src, dst)

    monkeypatch.setattr(c_export.os, "replace", replace)
    with pytest.raises(UserError, match="Input/output error"):
        write_files(tmp_path, {"a.h": "x", "b.c": "y"})
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_a_successful_write_replaces_every_file(tmp_path):
    (tmp_path / "a.h").write_text("old")
    write_files(tmp_path, {"a.h": "new header", "b.c": "new source"})
    assert (tmp_path / "a.h").read_text() == "new header" and (tmp_path / "b.c").read_text() == "new source"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h", "b.c"]
