"""The ``rnn`` pass and the fused LSTM/GRU kernels it enables (torch.lstm/torch.gru, ONNX LSTM/GRU).

The pass only names a scan body ``lstm_cell`` / ``gru_cell`` when it is exactly
such a cell; the torch and ONNX backends match the body again and replace the
loop (and the input projection before it) by one kernel. Every other target,
and every scan that is not exactly a cell, runs the ordinary loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dlir
from dlir.compare import random_inputs
from dlir.ir.graph import Graph, Node
from dlir.ir.parser import parse_program
from dlir.ir.printer import print_graph
from dlir.passes import optimize
from dlir.ir.rnn_cell import fused_cell, match_cell
from dlir.targets import runner_class

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
TOL = dict(rtol=1e-5, atol=1e-5)


def _scans(graph: Graph) -> list[Node]:
    return [n for n in graph.nodes if n.op == "scan"]


def _tuple(x: Any) -> tuple[np.ndarray, ...]:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _agree(graph: Graph, target: str, sizes: tuple[int, ...] = (2, 5)) -> None:
    """``graph`` on ``target`` against the numpy interpreter of the same graph."""
    want_run, got_run = runner_class("numpy")(graph), runner_class(target)(graph)
    for size in sizes:
        feeds = random_inputs(graph, seed=size, size=size)
        for w, g in zip(_tuple(want_run(**feeds)), _tuple(got_run(**feeds))):
            assert g.shape == w.shape and g.dtype == w.dtype
            np.testing.assert_allclose(g, w, **TOL)


# -- the pass ---------------------------------------------------------------------------------


def test_pass_marks_the_stdlib_lstm() -> None:
    graph = optimize(dlir.load(SAMPLES / "lstm.dlir").graph(), 2)
    (scan,) = _scans(graph)
    assert scan.body is not None and scan.body.name == "lstm_cell"
    cell = fused_cell(scan, graph)
    assert cell is not None and cell.kind == "lstm" and cell.hidden == 64
    assert cell.w_hh.name == "lstm.w_hh" and cell.w_ih is not None and cell.w_ih.name == "lstm.w_ih"
    assert cell.projection is not None and cell.projection.op == "linear"


def test_pass_marks_both_directions_of_the_bidirectional_gru() -> None:
    graph = optimize(dlir.load(SAMPLES / "gru.dlir").graph(), 2)
    scans = _scans(graph)
    assert [n.attrs["reverse"] for n in scans] == [False, True]
    for scan in scans:
        assert scan.body is not None and scan.body.name == "gru_cell"
        cell = fused_cell(scan, graph)
        assert cell is not None and cell.kind == "gru" and cell.hidden == 24 and cell.b_hh is not None


def test_pass_alone_marks_the_unoptimised_cells() -> None:
    """The stdlib bodies match as written too: ``h @ w_hh + b_hh`` unfused, the emit kept."""
    for sample, kinds in (("lstm", ["lstm_cell"]), ("gru", ["gru_cell", "gru_cell"])):
        graph = optimize(dlir.load(SAMPLES / f"{sample}.dlir").graph(), passes="rnn")
        assert [n.body.name for n in _scans(graph) if n.body is not None] == kinds


def test_marked_ir_prints_and_parses_back_and_still_fuses() -> None:
    graph = optimize(dlir.load(SAMPLES / "lstm.dlir").graph(), 2)
    text = print_graph(graph)
    assert "body lstm_cell(" in text
    (back,) = parse_program(text)
    (scan,) = _scans(back)
    assert fused_cell(scan, back) is not None
    assert print_graph(back) == text


LSTM_LIKE = """
layer Cell(n_in: int, hidden: int) {
    param w_ih: f32[n_in, 4 * hidden] = glorot_uniform
    param w_hh: f32[hidden, 4 * hidden] = glorot_uniform
    param b: f32[4 * hidden] = zeros
    forward(x) {
        xw = x @ w_ih + b
        zero = broadcast_to(0.0, [shape(x)[0], hidden])
        hs, h_last, c_last = scan%(reverse)s xw_t in xw along 1 carry h = zero, c = zero {
            i, f, g, o = split(xw_t + h @ w_hh, [hidden, hidden, hidden, hidden], axis=-1)
            c = %(c)s
            h = %(h)s
            emit h
        }
        return (hs, h_last)
    }
}
model M(x: f32[B, T, 5]) -> (hs: f32[B, T, 3], h: f32[B, 3]) {
    cell = Cell(5, 3)
    return cell(x)
}
"""
EXACT = {"c": "sigmoid(f) * c + sigmoid(i) * tanh(g)", "h": "sigmoid(o) * tanh(c)", "reverse": ""}
NEAR_MISSES = {
    "activation": {"c": "sigmoid(f) * c + sigmoid(i) * relu(g)"},
    "gate order": {"c": "sigmoid(i) * c + sigmoid(f) * tanh(g)"},
    "extra op": {"h": "sigmoid(o) * tanh(c) * 0.5"},
    "other state": {"h": "sigmoid(o) * tanh(c + h)"},
}


def _lstm_like(**changes: str) -> str:
    return LSTM_LIKE % {**EXACT, **changes}


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_a_hand_written_exact_lstm_cell_is_marked(reverse: bool) -> None:
    src = _lstm_like(reverse=" reverse" if reverse else "")
    graph = optimize(dlir.loads(src).graph(), 2)
    (scan,) = _scans(graph)
    assert scan.body is not None and scan.body.name == "lstm_cell"
    assert match_cell(scan) is not None


@pytest.mark.parametrize("miss", list(NEAR_MISSES))
def test_near_misses_stay_ordinary_scans(miss: str) -> None:
    graph = optimize(dlir.loads(_lstm_like(**NEAR_MISSES[miss])).graph(), 2)
    (scan,) = _scans(graph)
    assert scan.body is not None and scan.body.name == "step"
    assert match_cell(scan) is None


def test_gru_near_miss_is_not_marked_and_its_twin_still_is() -> None:
    """The backward GRU with its candidate's reset term scaled is no GRU; the forward one is."""
    src = (SAMPLES / "gru.dlir").read_text().replace("n = tanh(xn + r * hn)", "n = tanh(xn + r * hn * 1.5)")
    graph = optimize(dlir.loads(src).graph(), 2)
    assert [n.body.name for n in _scans(graph) if n.body is not None] == ["gru_cell", "step"]


# -- the backends -----------------------------------------------------------------------------


@pytest.mark.parametrize("sample", ["lstm", "gru"])
@pytest.mark.parametrize("target", ["torch", "onnx", "tensorflow"])
def test_rnn_samples_at_O2_agree_with_numpy(sample: str, target: str) -> None:
    prog = dlir.load(SAMPLES / f"{sample}.dlir")
    graph = prog.graph()
    want, got = dlir.compile(prog, "numpy"), dlir.compile(prog, target, opt_level=2)
    for size in (2, 5):
        feeds = random_inputs(graph, seed=size, size=size)
        for w, g in zip(_tuple(want(**feeds)), _tuple(got(**feeds))):
            assert g.shape == w.shape and g.dtype == w.dtype
            np.testing.assert_allclose(g, w, **TOL)


@pytest.mark.parametrize("sample, kernel", [("lstm", "torch.lstm("), ("gru", "torch.gru(")])
def test_generated_torch_calls_the_fused_kernel(sample: str, kernel: str) -> None:
    graph = optimize(dlir.load(SAMPLES / f"{sample}.dlir").graph(), 2)
    source = runner_class("torch")(graph).source
    assert kernel in source and "for " not in source and ".unbind(" not in source
    assert "one fused" in source  # the comment that says which scan it replaced
    assert "_xw =" not in source  # the projection is the kernel's own


@pytest.mark.parametrize("sample, op, count", [("lstm", "LSTM", 1), ("gru", "GRU", 2)])
def test_onnx_graph_has_rnn_nodes_and_no_scan(sample: str, op: str, count: int) -> None:
    graph = optimize(dlir.load(SAMPLES / f"{sample}.dlir").graph(), 2)
    model = runner_class("onnx")(graph).model
    ops = [n.op_type for n in model.graph.node]
    assert ops.count(op) == count and "Scan" not in ops
    rnn = [n for n in model.graph.node if n.op_type == op]
    # a zero initial state (the stdlib default) is ONNX's default; the forward GRU reads the input h0
    assert [n.input[5] == "" for n in rnn] == ([True] if op == "LSTM" else [False, True])
    if op == "GRU":
        gru = next(n for n in model.graph.node if n.op_type == "GRU")
        attrs = {a.name: a for a in gru.attribute}
        assert attrs["linear_before_reset"].i == 1
        assert sorted(a.s.decode() for n in model.graph.node if n.op_type == "GRU"
                      for a in n.attribute if a.name == "direction") == ["forward", "reverse"]
    # the params stay initializers under their dlir names (weights load as before)
    assert {p.name for p in graph.params} <= {t.name for t in model.graph.initializer}


@pytest.mark.parametrize("target", ["torch", "onnx"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_hand_written_lstm_with_one_bias_fuses_and_agrees(target: str, reverse: bool) -> None:
    graph = optimize(dlir.loads(_lstm_like(reverse=" reverse" if reverse else "")).graph(), 2)
    (scan,) = _scans(graph)
    assert fused_cell(scan, graph) is not None
    _agree(graph, target)


@pytest.mark.parametrize("target", ["torch", "onnx"])
def test_time_major_lstm_fuses_and_agrees(target: str) -> None:
    """A scan along axis 0 (x: [T, B, in]): torch's batch_first=False, ONNX's own layout."""
    src = (_lstm_like(reverse=" reverse").replace("along 1", "along 0").replace("shape(x)[0]", "shape(x)[1]")
           .replace("h: f32[B, 3])", "h: f32[T, 3])"))
    graph = optimize(dlir.loads(src).graph(), 2)
    (scan,) = _scans(graph)
    assert scan.attrs["axis"] == 0 and fused_cell(scan, graph) is not None
    _agree(graph, target)


@pytest.mark.parametrize("target", ["torch", "onnx"])
def test_lstm_without_emits_fuses_and_agrees(target: str) -> None:
    src = (_lstm_like().replace("emit h", "").replace("return (hs, h_last)", "return h_last")
           .replace("hs, h_last, c_last = scan", "h_last, c_last = scan")
           .replace("-> (hs: f32[B, T, 3], h: f32[B, 3])", "-> (h: f32[B, 3])"))
    graph = optimize(dlir.loads(src).graph(), 2)
    (scan,) = _scans(graph)
    assert scan.body is not None and not scan.body.outputs[2:] and fused_cell(scan, graph) is not None
    _agree(graph, target)


def test_f64_lstm_fuses_on_torch_and_keeps_the_onnx_scan() -> None:
    """ONNX Runtime's LSTM has no f64 kernel: the ONNX target keeps the loop there, torch fuses."""
    src = _lstm_like().replace("f32", "f64").replace("broadcast_to(0.0,", "broadcast_to(cast(0.0, f64),")
    graph = optimize(dlir.loads(src).graph(), 2)
    (scan,) = _scans(graph)
    assert scan.body is not None and scan.body.name == "lstm_cell"
    torch_run, onnx_run = runner_class("torch")(graph), runner_class("onnx")(graph)
    assert "torch.lstm(" in torch_run.source
    ops = [n.op_type for n in onnx_run.model.graph.node]
    assert "Scan" in ops and "LSTM" not in ops
    _agree(graph, "torch", sizes=(3,))
    _agree(graph, "onnx", sizes=(3,))


@pytest.mark.parametrize("target", ["torch", "onnx"])
def test_a_stale_mark_falls_back_to_the_loop(target: str) -> None:
    """A body still named lstm_cell that no longer computes the cell is run as written."""
    graph = optimize(dlir.load(SAMPLES / "lstm.dlir").graph(), 2)
    (scan,) = _scans(graph)
    assert scan.body is not None
    tanh = next(n for n in scan.body.nodes if n.op == "tanh")
    tanh.op = "sigmoid"  # same types: still verified IR, no longer an LSTM
    assert scan.body.name == "lstm_cell" and fused_cell(scan, graph) is None
    runner = runner_class(target)(graph)
    (unmarked,) = _scans(optimize(graph, passes="rnn"))
    assert unmarked.body is not None and unmarked.body.name == "step"  # the pass takes the mark off
    if target == "torch":
        assert "torch.lstm(" not in runner.source and "for " in runner.source
    else:
        assert "Scan" in [n.op_type for n in runner.model.graph.node]
    _agree(graph, target)


def test_projection_with_another_user_keeps_the_loop() -> None:
    """xw also read elsewhere: the kernel cannot absorb it, so torch runs the loop."""
    src = _lstm_like().replace("return (hs, h_last)", "return (hs + xw[:, :, 0:3], h_last)")
    graph = optimize(dlir.loads(src).graph(), 2)
    (scan,) = _scans(graph)
    assert scan.body is not None and scan.body.name == "lstm_cell" and fused_cell(scan, graph) is None
    runner = runner_class("torch")(graph)
    assert "torch.lstm(" not in runner.source
    _agree(graph, "torch", sizes=(3,))


# -- gradients ------------------------------------------------------------------------------

LOSS = """
use nn
model Loss(x: f32[B, T, 4]) -> f32[] {
    lstm = LSTM(4, 5)
    hs, h, c = lstm(x)
    return sum(hs * hs) + sum(c)
}
"""


@pytest.mark.parametrize("target", ["torch", "onnx", "tensorflow"])
def test_lstm_gradients_at_O2_agree_with_numpy(target: str) -> None:
    prog = dlir.loads(LOSS)
    feeds = random_inputs(prog.graph("Loss"), seed=1, size=3)
    want_out, want = dlir.compile(prog, "numpy", grad=True)(**feeds)
    got_out, got = dlir.compile(prog, target, grad=True, opt_level=2)(**feeds)
    np.testing.assert_allclose(got_out, want_out, **TOL)
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], **TOL)
