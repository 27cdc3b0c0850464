"""Packaging: what `pip install dlir` gives a user, checked outside the source tree.

Fast checks: the core imports no heavy framework, and pyproject.toml lists every
package folder and data file. Slow checks build the sdist and wheel, install the
wheel into a fresh venv in a temporary folder and run `dlirc` from there.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
HEAVY = ("torch", "tensorflow", "onnxruntime", "tf2onnx", "keras")
BACKENDS = ("torch", "tensorflow", "onnx")
MLP = textwrap.dedent(
    """\
    model MLP(x: f32[B, 4]) -> f32[B, 2] {
        param w: f32[4, 2] = glorot_uniform
        return x @ w
    }
    """
)


def clean_env() -> dict[str, str]:
    """The environment for a child interpreter: nothing that points it at the source tree."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env["PYTHONNOUSERSITE"] = "1"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def run(cmd: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=timeout)


def heavy_modules_after(code: str, cwd: Path) -> list[str]:
    """Run `code` in a fresh interpreter; return the heavy frameworks it imported."""
    loaded = "{m.split('.')[0] for m in sys.modules}"
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted({loaded} & {set(HEAVY)!r})))"
    proc = run([sys.executable, "-c", probe], cwd)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- fast: the core stays light -------------------------------------------------------------------


def test_import_dlir_imports_no_framework(tmp_path: Path) -> None:
    assert heavy_modules_after("import dlir", tmp_path) == []


def core_modules() -> list[str]:
    """Every module of the core (dlir/), by file, so a new module is covered at once."""
    names = []
    for path in sorted((ROOT / "dlir").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if "__pycache__" in parts:
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_core_modules_import_no_framework(tmp_path: Path) -> None:
    """DESIGN §1: no import of torch, tensorflow or onnxruntime anywhere in dlir/ (cli and api included)."""
    imports = "\n".join(f"import {name}" for name in core_modules() if not name.endswith("__main__"))
    assert heavy_modules_after(imports, tmp_path) == []


@pytest.mark.parametrize("target", BACKENDS)
def test_backend_package_imports_framework_lazily(target: str, tmp_path: Path) -> None:
    """dlir.targets: a backend package imports its framework only when its Runner is created."""
    if not (ROOT / "backends" / target / "__init__.py").exists():
        pytest.skip(f"backends/{target} not written yet")
    assert heavy_modules_after(f"import dlir.backends.{target}", tmp_path) == []


# --- fast: pyproject.toml lists everything ----------------------------------------------------------


def source_dirs() -> dict[str, Path]:
    """Installed package name -> source folder, following [tool.setuptools] package-dir."""
    mapping: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]
    found: dict[str, Path] = {}
    for prefix, folder in mapping.items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base).parts
            found[".".join((prefix, *rel))] = init.parent
    return found


def test_every_package_folder_is_listed() -> None:
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    missing = sorted(set(source_dirs()) - listed)
    assert not missing, f"add {missing} to [tool.setuptools] packages in pyproject.toml (else the wheel lacks them)"
    absent = sorted(listed - set(source_dirs()))
    assert not absent, f"pyproject.toml lists packages with no folder/__init__.py: {absent}"


def test_no_python_folder_without_init() -> None:
    """A folder of .py files without __init__.py is a namespace package: setuptools would leave it out."""
    mapping: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]
    bad = []
    for folder in set(mapping.values()):
        for py in (ROOT / folder).rglob("*.py"):
            if "__pycache__" not in py.parts and not (py.parent / "__init__.py").exists():
                bad.append(str(py.parent.relative_to(ROOT)))
    assert not bad, f"add __init__.py to {sorted(set(bad))}"


def test_every_data_file_is_packaged() -> None:
    """Non-Python files inside packages must match [tool.setuptools.package-data], or the wheel drops them."""
    package_data: dict[str, list[str]] = PYPROJECT["tool"]["setuptools"].get("package-data", {})
    dropped = []
    for package, folder in source_dirs().items():
        patterns = package_data.get("*", []) + package_data.get(package, [])
        for path in folder.iterdir():
            if path.is_file() and path.suffix not in (".py", ".pyc") and not path.name.startswith("."):
                if not any(fnmatch.fnmatch(path.name, p) for p in patterns):
                    dropped.append(str(path.relative_to(ROOT)))
    assert not dropped, f"add patterns for {dropped} to [tool.setuptools.package-data] in pyproject.toml"


# --- slow: the built wheel, installed outside the source tree ---------------------------------------


@dataclass
class Installed:
    venv: Path
    python: Path
    dlirc: Path
    cwd: Path  # an empty folder far from the source tree
    wheel: Path
    sdist: Path


TOP_JUNK = {".git", ".venv", "venv", "build", "dist", "out"}
ANY_JUNK = shutil.ignore_patterns("__pycache__", "*.egg-info", ".pytest_cache", ".hypothesis", "*.pyc")


def copy_source(dest: Path) -> None:
    """What a clone would hold, without venvs, caches and earlier builds."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        top = TOP_JUNK & set(names) if Path(folder) == ROOT else set()
        return top | ANY_JUNK(folder, names)

    shutil.copytree(ROOT, dest, ignore=ignore)


def build_dists(src: Path, out: Path) -> tuple[Path, Path]:
    """`python -m build`: the sdist, then the wheel built from that sdist (so both must be complete)."""
    proc = run([sys.executable, "-m", "build", "--outdir", str(out), str(src)], src, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    (wheel,) = out.glob("dlir-*.whl")
    (sdist,) = out.glob("dlir-*.tar.gz")
    return wheel, sdist


def make_venv(venv: Path, wheel: Path) -> Path:
    """A fresh venv with the wheel installed; heavy frameworks borrowed from the test venv afterwards."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    proc = run([*pip, "install", "-q", "--no-deps", "--no-index", str(wheel)], venv)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Only after the install, so pip never sees (nor tries to replace) the test venv's own dlir.
    # A plain path line in a .pth adds the folder, but does not run the .pth files in it: the
    # test venv's editable-install hook for dlir stays off, and the wheel's dlir comes first.
    where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(run([str(python), "-c", where], venv).stdout.strip())
    borrowed = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "_borrowed_test_venv.pth").write_text("".join(p + "\n" for p in borrowed))
    return python


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("packaging")
    copy_source(base / "src")
    wheel, sdist = build_dists(base / "src", base / "dist")
    python = make_venv(base / "venv", wheel)
    cwd = base / "work"
    cwd.mkdir()
    return Installed(base / "venv", python, base / "venv" / "bin" / "dlirc", cwd, wheel, sdist)


def needs_cli() -> None:
    if not (ROOT / "dlir" / "cli.py").exists() and not (ROOT / "dlir" / "cli" / "__init__.py").exists():
        pytest.skip("dlir/cli.py not written yet")


@pytest.mark.slow
def test_wheel_carries_backends_and_grammar(installed: Installed) -> None:
    code = textwrap.dedent(
        """\
        import importlib.resources, json, pathlib
        import dlir
        root = pathlib.Path(dlir.__file__).parent
        print(json.dumps({
            "root": str(root),
            "backends": sorted(p.name for p in (root / "backends").iterdir() if (p / "__init__.py").is_file()),
            "lark": importlib.resources.files("dlir.grammar").joinpath("dlir.lark").is_file(),
        }))
        """
    )
    proc = run([str(installed.python), "-c", code], installed.cwd)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert Path(found["root"]).is_relative_to(installed.venv), f"dlir imported from {found['root']}, not the wheel"
    assert set(BACKENDS) <= set(found["backends"])
    assert found["lark"], "dlir/grammar/dlir.lark is missing from the installed wheel"


@pytest.mark.slow
def test_wheel_backends_and_grammar_import(installed: Installed) -> None:
    code = "import dlir.backends.onnx, dlir.backends.torch, dlir.backends.tensorflow, dlir.grammar, dlir.targets"
    proc = run([str(installed.python), "-c", code], installed.cwd)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_sdist_carries_backends_and_grammar(installed: Installed) -> None:
    """`python -m build` builds the wheel from the sdist, so the sdist must hold every source folder."""
    with tarfile.open(installed.sdist) as tar:
        names = {Path(*Path(n).parts[1:]).as_posix() for n in tar.getnames()}
    wanted = {f"backends/{b}/__init__.py" for b in BACKENDS} | {"grammar/dlir.lark", "pyproject.toml"}
    wanted |= {p.relative_to(ROOT).as_posix() for p in (ROOT / "grammar").glob("*.lark")}
    assert wanted <= names, f"missing from the sdist: {sorted(wanted - names)}"


@pytest.mark.slow
def test_dlirc_version(installed: Installed) -> None:
    needs_cli()
    assert installed.dlirc.is_file(), "the wheel installed no dlirc console script"
    proc = run([str(installed.dlirc), "--version"], installed.cwd)
    assert proc.returncode == 0, proc.stderr
    assert PYPROJECT["project"]["version"] in proc.stdout + proc.stderr


@pytest.mark.slow
def test_dlirc_compile_onnx(installed: Installed) -> None:
    needs_cli()
    onnx = pytest.importorskip("onnx")
    (installed.cwd / "model.dlir").write_text(MLP)
    proc = run([str(installed.dlirc), "compile", "model.dlir", "--target", "onnx", "-o", "out.onnx"], installed.cwd)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = installed.cwd / "out.onnx"
    assert out.is_file()
    onnx.checker.check_model(str(out), full_check=True)
    model = onnx.load(str(out))
    assert [i.name for i in model.graph.input] == ["x"]
    assert [init.name for init in model.graph.initializer] == ["w"]
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": np.ones((3, 4), np.float32)})
    assert y.shape == (3, 2)
