"""examples/gsm8k.ipynb runs top to bottom in a real kernel, joined to the session's Ray.

The kernel is this venv's Python (a kernelspec written to a temp JUPYTER_PATH under a unique
name, so no system-wide `python3` kernel can stand in for it), started in examples/ as Jupyter
would, with RAY_ADDRESS pointing at the test session's Ray.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "gsm8k.ipynb"
KERNEL = "rayeval-test-venv"


@pytest.fixture
def venv_kernel(tmp_path, monkeypatch, ray_address):
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "rayeval venv",
        "language": "python",
        "env": {"RAY_ADDRESS": ray_address},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    return KERNEL


def _new_run_dirs(before: set[Path]) -> set[Path]:
    root = NOTEBOOK.parent / "outputs" / "evals"
    now = {p for p in root.glob("*/*") if p.is_dir()} if root.exists() else set()
    return now - before


def _text(outputs: list) -> str:
    parts = []
    for out in outputs:
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif "data" in out:
            parts.append(out["data"].get("text/plain", ""))
    return "".join(parts)


def test_notebook_runs_and_shows_the_ledger(venv_kernel, gsm8k_dir):
    outputs = NOTEBOOK.parent / "outputs"
    had_outputs = outputs.exists()
    root = outputs / "evals"
    before = {p for p in root.glob("*/*") if p.is_dir()} if root.exists() else set()
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        kernel_name=venv_kernel,
        timeout=300,  # per cell: 2 shared cores, other suites running at once
        startup_timeout=120,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    try:
        client.execute()
    finally:
        for run_dir in _new_run_dirs(before):  # the notebook writes under examples/outputs/
            shutil.rmtree(run_dir, ignore_errors=True)
        if not had_outputs:
            shutil.rmtree(outputs, ignore_errors=True)

    code = [c for c in nb.cells if c.cell_type == "code"]
    text = "\n".join(_text(c.outputs) for c in code)
    assert "ledger  sent 64  succeeded 64  errored 0  lost 0" in text, text
    assert "blocking run: sent 16  succeeded 16  errored 0  lost 0" in text, text
    assert any("image/png" in out.get("data", {}) for c in code for out in c.outputs), "no plot"
    errors = [out for c in code for out in c.outputs if out.get("output_type") == "error"]
    assert not errors, errors
