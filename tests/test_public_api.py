"""The public surface is small and pinned; generic top-level names are not installed."""

from __future__ import annotations

import subprocess
import sys

import rayeval


def test_exported_names_are_pinned():
    assert sorted(rayeval.__all__) == ["EvalConfig", "EvalResult", "__version__", "aevaluate", "evaluate"]
    for name in rayeval.__all__:
        assert hasattr(rayeval, name)


def test_subpackages_import_and_generic_names_do_not(tmp_path):
    ok = subprocess.run(
        [sys.executable, "-c", "import rayeval.runner, rayeval.envs, rayeval.transport"],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert ok.returncode == 0, ok.stderr
    for generic in ("runner", "envs", "transport"):
        bad = subprocess.run([sys.executable, "-c", f"import {generic}"], cwd=tmp_path,
                             capture_output=True, text=True)
        assert bad.returncode != 0, f"`import {generic}` should fail"
