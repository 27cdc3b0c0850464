"""The one-way layers of DESIGN.md section 1, enforced with import-linter (``.importlinter``).

import-linter reads the package as it is installed, where ``backends/`` is
``dlir.backends``: the test lays the tree out that way in a temporary folder,
runs ``lint-imports`` there, and checks that a deliberate up-import is caught.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).parent / "lint-imports"


def _installed_layout(dest: Path) -> Path:
    pkg = dest / "dlir"
    shutil.copytree(ROOT / "dlir", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "backends", pkg / "backends", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "grammar", pkg / "grammar", ignore=shutil.ignore_patterns("__pycache__"))
    return pkg


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT), str(ROOT / ".importlinter")], cwd=tree, capture_output=True, text=True,
                          env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}, timeout=300)


def test_no_module_imports_a_higher_layer(tmp_path: Path) -> None:
    _installed_layout(tmp_path)
    r = _lint(tmp_path)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "2 kept, 0 broken" in r.stdout


def test_an_up_import_breaks_the_contract(tmp_path: Path) -> None:
    pkg = _installed_layout(tmp_path)
    verifier = pkg / "ir" / "verifier.py"
    verifier.write_text(verifier.read_text() + "\nfrom dlir.passes import manager  # noqa\nimport torch  # noqa\n")
    r = _lint(tmp_path)
    assert r.returncode != 0
    assert "dlir.ir is not allowed to import dlir.passes" in r.stdout, r.stdout[-3000:]
    assert "dlir.ir.verifier -> torch" in r.stdout, r.stdout[-3000:]
