"""`dlirc` as a user runs it: subprocesses, exit codes, messages without tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

ROOT = Path(__file__).resolve().parent.parent
MLP = ROOT / "samples" / "mlp.dlir"


def dlirc(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "dlirc"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "dlir.cli"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, cwd=cwd, timeout=600)


def test_version_and_help() -> None:
    r = dlirc("--version")
    assert r.returncode == 0 and r.stdout.startswith("dlirc ")
    for sub in ("check", "compile", "run", "compare", "ir", "ops"):
        h = dlirc(sub, "--help")
        assert h.returncode == 0 and "usage: dlirc " + sub in h.stdout


def test_check_ok_and_error_exit_codes(tmp_path: Path) -> None:
    ok = dlirc("check", str(MLP))
    assert ok.returncode == 0 and "ok" in ok.stdout
    bad = tmp_path / "bad.dlir"
    bad.write_text("model M(x: f32[3]) -> f32[3] {\n    return x + y\n}\n")
    r = dlirc("check", str(bad))
    assert r.returncode == 1
    assert r.stderr.startswith(f"{bad}:2:16: error: unknown name 'y'")
    assert "Traceback" not in r.stderr
    missing = dlirc("check", str(tmp_path / "nope.dlir"))
    assert missing.returncode == 1 and "no such file" in missing.stderr and "Traceback" not in missing.stderr


def test_usage_errors_exit_2() -> None:
    r = dlirc("compile", str(MLP), "--target", "jax")
    assert r.returncode == 2 and "invalid choice" in r.stderr and "Traceback" not in r.stderr
    r = dlirc("frobnicate")
    assert r.returncode == 2


@pytest.mark.parametrize("target, suffix", [("torch", ".py"), ("tensorflow", ".py"), ("onnx", ".onnx")])
def test_compile_writes_the_target_file(tmp_path: Path, target: str, suffix: str) -> None:
    out = tmp_path / f"mlp{suffix}"
    r = dlirc("compile", str(MLP), "--target", target, "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert out.exists() and [p.name for p in tmp_path.iterdir()] == [out.name]  # no temp files left
    if target == "onnx":
        onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    else:
        text = out.read_text()
        assert "class MLP(" in text and "# " in text
        compile(text, str(out), "exec")  # valid Python


def test_failed_compile_leaves_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.dlir"
    bad.write_text("model M(x: f32[3]) -> f32[4] { return x }")
    out = tmp_path / "out.onnx"
    r = dlirc("compile", str(bad), "--target", "onnx", "-o", str(out))
    assert r.returncode == 1 and not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.dlir"]


def test_run_with_npy_inputs_and_params(tmp_path: Path) -> None:
    x = np.random.default_rng(0).standard_normal((2, 784)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "y.npz"
    r = dlirc("run", str(MLP), "--target", "numpy", "--input", f"x={tmp_path / 'x.npy'}", "--output", str(out))
    assert r.returncode == 0, r.stderr
    import dlir

    want = dlir.compile(dlir.load(MLP), "numpy")(x=x)
    np.testing.assert_array_equal(np.load(out)["out"], want)
    np.save(tmp_path / "x64.npy", x.astype(np.float64))
    r = dlirc("run", str(MLP), "--input", f"x={tmp_path / 'x64.npy'}")
    assert r.returncode == 1 and "input 'x' is declared f32[B, 784], but a float64 array" in r.stderr
    r = dlirc("run", str(MLP), "--input", "x")
    assert r.returncode == 2 and "NAME=FILE.npy" in r.stderr


def test_ir_and_ops() -> None:
    r = dlirc("ir", str(MLP))
    assert r.returncode == 0 and "matmul" in r.stdout and "fc1.w" in r.stdout
    ops = dlirc("ops")
    assert ops.returncode == 0
    lines = ops.stdout.splitlines()
    assert lines[0].split() == ["op", "numpy", "torch", "tensorflow", "onnx"]
    assert any(line.split()[:1] == ["matmul"] and line.split()[1:] == ["yes"] * 4 for line in lines)


@pytest.mark.slow
def test_compare_mlp_agrees_on_every_target() -> None:
    r = dlirc("compare", str(MLP))
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [line.split() for line in r.stdout.splitlines()[2:] if line.startswith("MLP")]
    assert sorted(row[1] for row in rows) == ["onnx", "tensorflow", "torch"]
    assert all(row[5] == "yes" and float(row[3]) <= 1e-5 for row in rows)


def test_readme_op_table_is_current() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("<!-- ops-table -->\n```\n", 1)[1].split("\n```\n<!-- /ops-table -->", 1)[0]
    assert table == dlirc("ops").stdout.rstrip("\n")


def test_readme_setup_commands_are_the_ones_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = [b.split("```", 1)[0].strip() for b in readme.split("## Set-up", 1)[1].split("## A tour", 1)[0].split("```\n")[1::2]]
    assert blocks == ["bash .ci/setup && .venv/bin/dlirc compare samples/mlp.dlir", "bash .ci/setup && .venv/bin/python -m pytest -q"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash .ci/setup" in ci and ".venv/bin/python -m pytest -q" in ci


def test_outputs_get_the_mode_of_a_new_file_not_a_temp_files(tmp_path: Path) -> None:
    """write_atomic writes through a mkstemp file (0600); the result must be readable as any new file."""
    import os

    from dlir.runtime.files import write_atomic

    out = tmp_path / "m.txt"
    old = os.umask(0o022)
    try:
        write_atomic(out, b"x")
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o644
    out.chmod(0o640)
    write_atomic(out, b"y")  # an existing file keeps its mode
    assert out.stat().st_mode & 0o777 == 0o640 and out.read_bytes() == b"y"
    from dlir.runtime.weights import load_safetensors, save_safetensors

    weights = tmp_path / "w.safetensors"  # (dlirc train -o, checkpoints)
    old = os.umask(0o022)
    try:
        save_safetensors({"w": np.ones((2, 3), np.float32)}, weights)
    finally:
        os.umask(old)
    assert weights.stat().st_mode & 0o777 == 0o644 and load_safetensors(weights)["w"].shape == (2, 3)
