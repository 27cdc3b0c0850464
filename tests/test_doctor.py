"""``dlirc doctor``: passes on this installation, and fails, naming the op, when a lowering is broken."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dlir import doctor
from dlir.cli import main
from dlir.ops.cases import CASES

ROOT = Path(__file__).resolve().parent.parent
N_SAMPLES = sum(1 for _ in doctor._sample_models())


@pytest.mark.slow
def test_doctor_passes_on_this_machine_in_every_configuration() -> None:
    r = subprocess.run([sys.executable, "-m", "dlir.cli", "doctor"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and "Warning" not in r.stderr, r.stderr
    rows = [line.split() for line in r.stdout.splitlines() if line.startswith(("torch ", "tensorflow ", "onnx "))]
    configs = [" ".join(row[:-4]) for row in rows if row[1] == "cpu"]
    assert configs == [
        "torch cpu mkldnn on", "torch cpu mkldnn off", "tensorflow cpu oneDNN on", "tensorflow cpu oneDNN off",
        "onnx cpu ORT_ENABLE_ALL", "onnx cpu ORT_DISABLE_ALL",
    ], r.stdout
    for row in rows:
        assert row[-4] == str(len(CASES) + N_SAMPLES) and row[-2] == "ok", row
    assert "all targets agree with the numpy reference" in r.stdout


def test_doctor_fails_and_names_the_op_when_a_lowering_is_broken(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from dlir.backends.torch import lowering

    monkeypatch.setitem(lowering.EMITTERS, "tanh", lambda s: f"torch.tanh({s.x}) * 1.001")
    assert main(["doctor", "--only", "torch", "--no-samples"]) == 1
    out = capsys.readouterr().out
    assert "first disagreement: op case tanh-" in out, out
    assert "tanh(x: f" in out and "tanh: " in out, out  # the case as a .dlir call, and the op's description
    assert "FAIL" in out and "configuration(s) disagree" in out
    # both configurations fail, and on nothing but the cases that compute a tanh (the Elman scan does)
    rows = [line for line in out.splitlines() if line.startswith("torch ") and " cpu " in line]
    assert len(rows) == 2 and all("FAIL (3)" in x for x in rows), out
    also = {x.strip() for line in out.splitlines() if line.strip().startswith("also:") for x in line.split(":", 1)[1].split(",")}
    assert also == {"op case tanh-f64", "op case scan-elman_axis1"}, out


def test_doctor_fails_on_a_sample_when_a_sample_disagrees(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from dlir.backends.onnx import table

    # relu as a sigmoid: its op cases and every sample with a relu layer disagree
    monkeypatch.setitem(table.EMITTERS, "relu", table.Emitter("relu", lambda b, node, xs: b.op("Sigmoid", xs)))
    assert main(["doctor", "--only", "onnx"]) == 1
    out = capsys.readouterr().out
    assert "op case relu-" in out and "sample " in out, out


def test_doctor_reports_a_missing_framework_as_not_installed(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(doctor, "installed", lambda target: target != "tensorflow")
    assert main(["doctor", "--only", "tensorflow"]) == 0
    out = capsys.readouterr().out
    assert "not installed" in out and "FAIL" not in out, out


def test_doctor_device_cuda_without_a_gpu_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(doctor, "cuda_devices", lambda: {"torch": False, "onnx": False, "tensorflow": False})
    assert main(["doctor", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "no installed framework can use a CUDA GPU" in err and "hint:" in err and "Traceback" not in err


def test_doctor_json_has_one_row_per_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--only", "onnx", "--no-samples", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [(r["target"], r["config"], r["verdict"]) for r in rows] == [
        ("onnx", "ORT_ENABLE_ALL", "ok"),
        ("onnx", "ORT_DISABLE_ALL", "ok"),
    ]
    assert all(r["cases"] == len(CASES) and r["worst"] < 1e-5 for r in rows)
