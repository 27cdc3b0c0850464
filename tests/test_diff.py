"""`dlirc diff`: the first node where two targets part ways, found with a deliberately broken lowering."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dlir
from dlir.diff import diff_graph, probe_graph

ROOT = Path(__file__).resolve().parent.parent
SRC = """\
model M(x: f32[B, 4]) -> f32[B, 3] {
    param w: f32[4, 3] = glorot_uniform
    h = x @ w
    t = tanh(h)
    return t * 2.0
}
"""


def dlirc(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "dlir.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=600)


def test_probe_graph_outputs_every_node_and_leaves_the_original() -> None:
    g = dlir.loads(SRC, "m.dlir").graph()
    p = probe_graph(g)
    assert [v.name for _, v in p.outputs] == [v.name for n in g.nodes for v in n.outputs]
    assert len(g.outputs) == 1


def test_perturbed_torch_lowering_is_pinned_on_its_node(monkeypatch: pytest.MonkeyPatch) -> None:
    from dlir.backends.torch import lowering

    monkeypatch.setitem(lowering.EMITTERS, "tanh", lambda s: f"torch.tanh({s.x}) * 1.001")
    prog = dlir.loads(SRC, "m.dlir")
    report = diff_graph(prog.graph(), ("numpy", "torch"), sources=prog.sources)
    assert not report.agree and report.first is not None
    assert report.first.node.op == "tanh" and report.first.index == 1
    assert 1e-4 < report.first.max_rel < 2e-3
    [stats] = report.first.inputs
    assert stats.shape == (3, 3) and not stats.has_nan and stats.min <= stats.mean <= stats.max
    text = report.render()
    assert "m.dlir:4:" in text and "    t = tanh(h)" in text
    assert "max abs error" in text and "NaN: no" in text


def test_agreeing_targets_report_no_divergence() -> None:
    prog = dlir.loads(SRC, "m.dlir")
    report = diff_graph(prog.graph(), ("numpy", "torch"), sources=prog.sources)
    assert report.agree and "agree on all 4 nodes" in report.render()


def test_dlirc_diff_mlp_numpy_onnx_agrees() -> None:
    r = dlirc("diff", str(ROOT / "samples" / "mlp.dlir"), "--targets", "numpy,onnx")
    assert r.returncode == 0, r.stderr
    assert "agree on all" in r.stdout


def test_dlirc_diff_reports_divergence_with_exit_1(tmp_path: Path) -> None:
    (tmp_path / "m.dlir").write_text(SRC)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32))
    # The CLI in-process, with torch's tanh broken the same way.
    script = (
        "import sys; from dlir.backends.torch import lowering; from dlir.cli import main; "
        "lowering.EMITTERS['tanh'] = lambda s: f'torch.tanh({s.x}) * 1.001'; "
        "sys.exit(main(['diff', 'm.dlir', '--targets', 'numpy,torch', '--input', 'x=x.npy']))"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert r.returncode == 1, r.stderr
    assert "m.dlir:4:9: error: numpy and torch diverge first at node 2 of 4" in r.stdout
    assert "    t = tanh(h)" in r.stdout and "%h: float32[5, 3]" in r.stdout
    r = dlirc("diff", "m.dlir", "--targets", "numpy,torch", "--input", "x=x.npy", "--rtol", "0.01", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = dlirc("diff", "m.dlir", "--targets", "numpy", cwd=tmp_path)
    assert r.returncode == 2 and "exactly two targets" in r.stderr


def test_dlirc_diff_on_an_imported_onnx_file(tmp_path: Path) -> None:
    import onnx

    from dlir.backends.onnx.export import to_model

    prog = dlir.load(ROOT / "samples" / "cnn.dlir")
    onnx.save(to_model(prog.graph(), dlir.compile(prog, "numpy").params), str(tmp_path / "lenet.onnx"))
    r = dlirc("diff", "lenet.onnx", "--targets", "numpy,torch", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "agree on all" in r.stdout


def test_diff_on_imported_onnx_points_at_the_imported_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import onnx

    from dlir.backends.onnx.export import to_model
    from dlir.backends.torch import lowering
    from dlir.diff import load_for_diff

    prog = dlir.loads(SRC, "m.dlir")
    onnx.save(to_model(prog.graph(), dlir.compile(prog, "numpy").params), str(tmp_path / "m.onnx"))
    graph, params, sources, _ = load_for_diff(str(tmp_path / "m.onnx"), None)
    monkeypatch.setitem(lowering.EMITTERS, "tanh", lambda s: f"torch.tanh({s.x}) * 1.001")
    report = diff_graph(graph, ("numpy", "torch"), params=params, sources=sources)
    assert report.first is not None and report.first.node.op == "tanh"
    text = report.render()
    assert str(tmp_path / "m.dlir") + ":" in text and "= tanh(" in text
