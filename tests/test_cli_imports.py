"""A listing and a spec load need no torch: `python -m repro list` stays fast (issue 17)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "timm", "fvcore", "cv2", "matplotlib")


def _imported_after(code: str, tmp_path: Path) -> list[str]:
    probe = (f"import sys\n{code}\n"
             f"import json; print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REPRO_RESULTS": str(tmp_path / "results")}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_cli_imports_no_torch(tmp_path):
    assert _imported_after("import repro.cli", tmp_path) == []


def test_list_imports_no_torch(tmp_path):
    code = ("import contextlib, io\nfrom repro.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as buf:\n    assert main(['list', '-q']) == 0\n"
            "assert 'tvnet:table3' in buf.getvalue()")
    assert _imported_after(code, tmp_path) == []


def test_model_names_manifest_matches_registry():
    """``repro.models.names`` answers name checks without torch; it must be the registry's names."""
    from repro.models.names import MODEL_NAMES
    from repro.registry import list_models

    assert set(list_models(builtin=True)) == set(MODEL_NAMES)  # tests may register toy models of their own
