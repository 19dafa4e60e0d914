"""examples/tutorial.ipynb runs end to end (nbclient, a real kernel) on a small subset."""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "tutorial.ipynb"


def test_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.slow
def test_tutorial_runs_end_to_end(tmp_path, data_dir):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    settings = nb.cells[1]
    assert "SMALL = False" in settings.source and "DATA_DIR = None" in settings.source
    settings.source = settings.source.replace("SMALL = False", "SMALL = True").replace(
        "DATA_DIR = None", f"DATA_DIR = {str(data_dir)!r}")
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "\n".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
                     if out.output_type == "stream")
    assert "4,838 parameters" in text and "test accuracy" in text and "bundled model: digit 4" in text
    images = sum(1 for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
                 if "image/png" in out.get("data", {}))
    assert images >= 6  # samples, class spread, curves, confusion, misclassified, the drawing
    assert (tmp_path / "tutorial-files" / "my_model.pt").is_file()
