"""`dlirc explain`: golden reports on a scan model and a plain MLP, checks derived from the IR, and the errors.

The goldens are made with the timer stubbed to 0 ms (times vary); set
DLIR_UPDATE_GOLDEN=1 to rewrite them, and read the diff before committing.
Besides the goldens, each test recomputes what it can from the IR and the
generated code on its own: torch's ops grow by one op per body node per extra
step, ONNX runs every non-Constant node of the model dlir emits once, the
generated lines named are the loop statements.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

import dlir
from dlir.cli import main
from dlir.explain.calls import default_calls, parse_calls
from dlir.explain.report import Check, Report, TargetReport
from dlir.explain.text import render
from dlir.errors import UsageError

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "explain"
UPDATE = os.environ.get("DLIR_UPDATE_GOLDEN") == "1"


def _untimed(mp: pytest.MonkeyPatch) -> None:
    """Times vary from run to run: the goldens are made with every call timed as 0 ms (the calls still run)."""
    from dlir.explain import onnx_target, tf_target, torch_target

    def untimed(run: Any, feeds: dict[str, Any], repeat: int) -> tuple[float, float]:
        run(**feeds)
        return 0.0, 0.0

    for module in (torch_target, tf_target, onnx_target):
        mp.setattr(module, "time_call", untimed)


def _run(capsys: pytest.CaptureFixture[str], mp: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    _untimed(mp)
    rc = main(["explain", *args, "--device", "cpu", "--repeat", "1"])
    out, err = capsys.readouterr()
    return rc, out, err


def _golden(name: str, got: str) -> str:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(got, encoding="utf-8")
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def lstm_json() -> dict[str, Any]:
    """One explain run of the LSTM sample, shared: frameworks load once."""
    import contextlib
    import io

    buf = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(buf):
        mp.chdir(ROOT)
        _untimed(mp)
        rc = main(["explain", "samples/lstm.dlir", "--format", "json", "--device", "cpu", "--repeat", "1"])
    assert rc == 0, buf.getvalue()
    return json.loads(buf.getvalue())


@pytest.mark.slow
def test_lstm_json_matches_the_golden(lstm_json: dict[str, Any]) -> None:
    got = json.dumps(lstm_json, indent=2) + "\n"
    assert got == _golden("lstm.json", got)


@pytest.mark.slow
def test_lstm_report_follows_from_the_ir(lstm_json: dict[str, Any]) -> None:
    from dlir.backends.onnx import to_model
    from dlir.backends.tensorflow.codegen import generate_source
    from dlir.backends.torch.codegen import render as torch_render
    from dlir.runtime.init import init_params

    graph = dlir.load(ROOT / "samples" / "lstm.dlir").graph()
    scan = next(n for n in graph.nodes if n.op == "scan")
    assert scan.body is not None
    t = lstm_json["targets"]
    calls = lstm_json["calls"]
    assert [c["T"] for c in calls] == [3, 3, 6] and [c["B"] for c in calls] == [2, 2, 4]
    # torch: every body node of this LSTM dispatches one aten op per step, and nothing else depends on T
    ops = t["torch"]["ops_per_call"]["measured"]
    assert ops[0] == ops[1] and ops[2] - ops[0] == (6 - 3) * len(scan.body.nodes)
    assert t["torch"]["graph_builds"]["measured"] == 3 and t["torch"]["loop_nodes"]["measured"] == 0
    assert t["torch"]["loop_nodes"]["loops"][0]["iterations"] == [3, 3, 6]
    # tensorflow: one trace for calls that change both B and T; one While op; the same graph each call
    assert t["tensorflow"]["graph_builds"]["measured"] == 1
    assert len(set(t["tensorflow"]["ops_per_call"]["measured"])) == 1
    assert t["tensorflow"]["loop_nodes"]["loops"][0]["runs_as"] == "While"
    assert t["tensorflow"]["input_signature"][0]["shape"] == [None, None, 32]
    # onnx: each node of the emitted model but its Constants, once per call, whatever T is
    model = to_model(graph, init_params(graph, 0))
    runnable = [n for n in model.graph.node if n.op_type != "Constant"]
    assert t["onnx"]["ops_per_call"]["measured"] == [len(runnable)] * 3
    assert t["onnx"]["loop_nodes"]["loops"][0]["runs_as"] == "Scan"
    assert t["onnx"]["loop_nodes"]["loops"][0]["iterations"] == [3, 3, 6]
    # the generated lines named are the loop statements, tagged with the scan's .dlir line
    loc = "<stdlib>/nn.dlir:111:30"
    assert lstm_json["scans"][0]["dlir_line"] == loc
    torch_line = int(t["torch"]["loop_nodes"]["loops"][0]["generated_line"].rsplit(":", 1)[1])
    line = torch_render(graph).source.splitlines()[torch_line - 1]
    # the comment names the user's line first and the stdlib's second when the scan is the stdlib's
    assert line.lstrip().startswith("for ") and line.endswith((f"# {loc}", f"inside {loc}"))
    tf_line = int(t["tensorflow"]["loop_nodes"]["loops"][0]["generated_line"].rsplit(":", 1)[1])
    line = generate_source(graph).splitlines()[tf_line - 1]
    assert "scan(" in line and line.endswith((f"# {loc}", f"inside {loc}"))
    assert lstm_json["bugs"] == [] and all(x["agrees"] for x in t.values())


@pytest.mark.slow
def test_lstm_text_matches_the_golden(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    rc, out, err = _run(capsys, monkeypatch, "samples/lstm.dlir", "--calls", "B=2,T=4;B=2,T=4;B=2,T=8")
    assert rc == 0, err
    assert err == ""  # no profiler or framework chatter
    assert out == _golden("lstm.txt", out)


@pytest.mark.slow
def test_mlp_has_no_loop_and_constant_ops(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    rc, out, err = _run(capsys, monkeypatch, "samples/mlp.dlir", "--format", "json")
    assert rc == 0, err
    d = json.loads(out)
    for name, t in d["targets"].items():
        assert t["loop_nodes"]["measured"] == 0 and t["loop_nodes"]["loops"] == [], name
        assert len(set(t["ops_per_call"]["measured"])) == 1, name  # no scan: nothing grows with B
    assert d["scans"] == []
    assert out == _golden("mlp.json", out)
    rc, out, _ = _run(capsys, monkeypatch, "samples/mlp.dlir")
    assert "No scan: no target runs a loop." in out
    assert out == _golden("mlp.txt", out)


@pytest.mark.slow
def test_a_failed_prediction_is_reported_as_a_dlir_bug(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import dlir.explain.run as run
    from dlir.explain.predict import Expectation

    real = run.expect

    def wrong(graph: Any, target: str, calls: Any, sites: Any) -> Expectation:
        e = real(graph, target, calls, sites)
        if target == "tensorflow":
            e.graph_builds = len(calls)  # as if tf retraced on every call
        return e

    monkeypatch.setattr(run, "expect", wrong)
    monkeypatch.chdir(ROOT)
    rc, out, _ = _run(capsys, monkeypatch, "samples/mlp.dlir")
    assert rc == 1
    assert "This is a dlir bug" in out
    assert "tensorflow: graph_builds predicted 3, measured 1" in out
    assert "1 (pred. 3) BUG" in out


NESTED = """model Nested(x: f32[B, T, 3, 4]) -> f32[B, 4] {
    ys, h = scan x_t in x along 1 carry h = x[:, 0, 0] {
        zs, g = scan z in x_t along 1 carry g = h {
            g = tanh(g + z)
            emit g
        }
        h = h + g
        emit h
    }
    return h
}
"""


@pytest.mark.slow
def test_a_nested_scan_multiplies_the_trips(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "nested.dlir"
    path.write_text(NESTED, encoding="utf-8")
    rc, out, err = _run(capsys, monkeypatch, str(path), "--format", "json", "--calls", "B=2,T=2;B=1,T=5")
    assert rc == 0, out + err
    d = json.loads(out)
    assert [s["depth"] for s in d["scans"]] == [0, 1] and d["scans"][1]["trips"] == [
        3,
        3,
    ]  # the inner one: axis 1 of x_t
    torch = d["targets"]["torch"]
    assert torch["loop_nodes"]["loops"][0]["iterations"] == [2, 5]
    # per outer step: the inner loop's 3 steps of 2 ops (add, tanh) plus the outer body's own ops
    ops = torch["ops_per_call"]["measured"]
    assert (ops[1] - ops[0]) == (5 - 2) * torch["ops_per_iteration"]["ys"]
    assert torch["ops_per_iteration"]["ys"] >= 3 * 2
    # the body reads no weight: TensorFlow's while_v2 makes it a StatelessWhile
    assert d["targets"]["tensorflow"]["loop_nodes"]["loops"][0]["runs_as"] == "StatelessWhile"
    assert d["targets"]["onnx"]["loop_nodes"]["loops"][0]["iterations"] == [2, 5]


@pytest.mark.slow
def test_fused_rnn_kernels_at_O2(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    rc, out, err = _run(capsys, monkeypatch, "samples/gru.dlir", "-O2", "--format", "json")
    assert rc == 0, out + err
    t = json.loads(out)["targets"]
    assert [lp["runs_as"] for lp in t["torch"]["loop_nodes"]["loops"]] == ["torch.gru", "torch.gru"]
    assert [lp["runs_as"] for lp in t["onnx"]["loop_nodes"]["loops"]] == ["GRU", "GRU"]
    assert [lp["runs_as"] for lp in t["tensorflow"]["loop_nodes"]["loops"]] == ["While", "While"]
    # one torch.gru call per scan, yet ATen's CPU GRU loops over T in C++: the count still grows with T
    assert set(t["torch"]["fused_kernel_ops"]) == {"fwd.hs", "bwd.hs"}
    assert t["torch"]["ops_per_call"]["predicted"] == t["torch"]["ops_per_call"]["measured"]


@pytest.mark.slow
def test_onnx_counts_the_graph_onnx_runtime_built(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    rc, out, err = _run(capsys, monkeypatch, "samples/digits.dlir", "--model", "DigitsLoss", "--format", "json")
    assert rc == 0, out + err
    o = json.loads(out)["targets"]["onnx"]
    # ONNX Runtime has no kernel for SoftmaxCrossEntropyLoss: it runs the op's ONNX function body instead
    assert [n.split("/")[1].split("@")[0] for n in o["expanded"]] == ["SoftmaxCrossEntropyLoss"]
    assert o["session_nodes"] > o["model_nodes"] - o["constants_as_initializers"]
    assert o["ops_per_call"]["measured"] == [o["session_nodes"]] * 3


@pytest.mark.slow
def test_a_missing_target_and_a_failing_one(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import dlir.explain.onnx_target as onnx_target
    import dlir.explain.run as run

    monkeypatch.setattr(run, "installed", lambda target: target != "tensorflow")

    def broken(*args: Any, **kw: Any) -> None:
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : no kernel\nthe last line says why")

    monkeypatch.setattr(onnx_target, "measure", broken)
    monkeypatch.chdir(ROOT)
    rc, out, err = _run(capsys, monkeypatch, "samples/mlp.dlir")
    assert rc == 1 and "Traceback" not in out + err
    assert "not installed here: tensorflow" in out
    assert "onnx: does not run: RuntimeError: the last line says why" in out
    assert "torch (eager)" in out and "onnx (ONNX Runtime)" not in out
    rc, out, _ = _run(capsys, monkeypatch, "samples/mlp.dlir", "--format", "json")
    t = json.loads(out)["targets"]
    assert t["tensorflow"] == {"installed": False}
    assert t["onnx"]["failed"].startswith("does not run: RuntimeError") and t["onnx"]["agrees"] is False
    assert t["torch"]["agrees"] is True


def test_render_marks_each_failed_check() -> None:
    t = TargetReport("onnx", graph_builds=Check(0, 0), ops_per_call=Check([5, 5], [5, 6]), loop_nodes=Check(0, 0))
    t.first_call_ms, t.median_ms = [1.0, 1.0], [1.0, 1.0]
    report = Report("M", "m.dlir", 0, [{"B": 2}, {"B": 3}], {"onnx": t}, [])
    assert t.bugs() == ["onnx: ops_per_call predicted [5, 5], measured [5, 6]"]
    text = render(report)
    assert re.search(r"ops run by call 1 \(B=2\) +5 \(pred\. 5\)\n", text)
    assert re.search(r"ops run by call 2 \(B=3\) +6 \(pred\. 5\) BUG\n", text)
    assert report.as_json()["targets"]["onnx"]["agrees"] is False


# -- --calls and the command's mistakes (fast: nothing is run) --------------------------------------


def _lstm_graph() -> Any:
    return dlir.load(ROOT / "samples" / "lstm.dlir").graph()


def test_calls_parse_every_symbol_of_every_call() -> None:
    g = _lstm_graph()
    assert parse_calls("B=2,T=4; B=2,T=4 ;T=8,B=1", g) == [{"B": 2, "T": 4}, {"B": 2, "T": 4}, {"T": 8, "B": 1}]
    assert default_calls(g) == [{"B": 2, "T": 3}, {"B": 2, "T": 3}, {"B": 4, "T": 6}]


@pytest.mark.parametrize(
    "spec, message, hint",
    [
        ("B=2,T=4;B=2", "call 2 gives no size for T", "every call binds every symbolic dim"),
        ("B=2,Tt=4", "has no symbolic dim 'Tt'", "did you mean 'T'?"),
        ("B=2,T:4", "cannot read 'T:4'", "NAME=SIZE"),
        ("B=2,T=0", "T=0 is not a size", "from 1 to"),
        ("B=2,B=3,T=1", "gives 'B' twice", "once per call"),
        ("", "call 1 gives no size for B, T", "e.g. --calls"),
    ],
)
def test_a_bad_calls_spec_is_a_usage_error(spec: str, message: str, hint: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_calls(spec, _lstm_graph())
    assert message in e.value.message and hint in (e.value.hint or "")


def test_command_mistakes_exit_2_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    lstm = str(ROOT / "samples" / "lstm.dlir")
    for args, want in [
        ([lstm, "--calls", "B=2"], "--calls: call 1 gives no size for T"),
        ([lstm, "--model", "Nope"], "has no model 'Nope'"),
        ([lstm, "--repeat", "0"], "--repeat must be at least 1"),
        ([lstm, "--format", "xml"], "invalid choice: 'xml'"),
    ]:
        assert main(["explain", *args]) == 2
        _, err = capsys.readouterr()
        assert want in err and "Traceback" not in err and "hint:" in err
