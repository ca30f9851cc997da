"""The notebooks in notebooks/ run top to bottom in smoke mode (JAXDISTILL_NOTEBOOK_SMOKE=1: a tiny
budget) in a fresh kernel whose working directory is notebooks/, as Jupyter opens them; each writes
its scores to $JAXDISTILL_NOTEBOOK_OUT/metrics.json, read back here."""
import json
import math
import os

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks")


def execute(name: str, out_dir, monkeypatch) -> tuple[nbformat.NotebookNode, dict]:
    """Run notebooks/<name> in smoke mode; the executed notebook and its metrics.json."""
    monkeypatch.setenv("JAXDISTILL_NOTEBOOK_SMOKE", "1")
    monkeypatch.setenv("JAXDISTILL_NOTEBOOK_OUT", str(out_dir))
    nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": NOTEBOOKS}}).execute()
    with open(os.path.join(out_dir, "metrics.json")) as f:
        return nb, json.load(f)


def figures(nb: nbformat.NotebookNode) -> int:
    """How many figures the notebook displayed inline."""
    return sum("image/png" in out.get("data", {}) for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs)


@pytest.mark.parametrize("name", ["distil_your_own_teacher.ipynb", "digits_one_step.ipynb"])
def test_committed_notebooks_hold_no_outputs(name):
    nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code)
    assert nb.cells[0].cell_type == "markdown" and "%pip install" in code[0].source


def test_distil_your_own_teacher_notebook(tmp_path, monkeypatch):
    nb, metrics = execute("distil_your_own_teacher.ipynb", tmp_path, monkeypatch)
    student, teacher = metrics["student"], metrics["teacher"]
    assert figures(nb) == 3  # the mixture, data vs teacher vs student, quality vs NFE
    assert metrics["steps"] == 300 and metrics["restored_identical"]
    # After 300 updates the one-step student covers all five modes, the small one (weight 0.05)
    # included, and beats the exact teacher at one NFE by far (~0.53 against ~2.9 in sliced W2).
    assert student["mode_coverage"] == 1.0 and student["nonfinite_frac"] == 0.0
    assert student["sw2"] < 0.3 * teacher["1"]["sw2"] and student["sw2"] < 1.0
    # The exact teacher converges with its step count towards the noise floor (~0.16 at 32 NFE, floor ~0.10).
    assert teacher["32"]["sw2"] < teacher["4"]["sw2"] < teacher["1"]["sw2"]
    assert teacher["32"]["sw2"] < 2 * metrics["noise_floor"]["sw2"]


def test_digits_one_step_notebook(tmp_path, monkeypatch):
    nb, metrics = execute("digits_one_step.ipynb", tmp_path, monkeypatch)
    teacher, student = metrics["teacher"], metrics["student"]
    assert figures(nb) == 2  # the sample grids, quality vs NFE
    assert metrics["method"] == "ect" and metrics["steps"] == 20
    # The restored teacher is the trained one: FD-digits falls with its NFE (~140 at 1, ~18 at 4,
    # ~9 at 8 on 300 samples) and its samples keep their class (~97% at 4 NFE).
    assert teacher["8"]["fd_digits"] < teacher["4"]["fd_digits"] < 0.25 * teacher["1"]["fd_digits"]
    assert teacher["4"]["class_acc"] > 0.9
    # The smoke student is 20 updates from scratch: only its scores' presence is checked.
    assert student["nonfinite_frac"] == 0.0 and math.isfinite(student["fd_digits"])
