"""ONNX ``Loop`` imported as a dlir ``scan`` where its trip count is proved, ``ReverseSequence`` as a reversal.

The models are hand-built in tf2onnx's shape (a counter, a ``Less`` against the
sequence length, a ``Gather`` of the sequence at the counter); each imported model is
checked against ONNX Runtime's own run of the file.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import dlir
from dlir.errors import DlirError
from dlir.importer import from_onnx
from dlir.importer.to_source import source_and_param_names
from dlir.ir.graph import Graph

TARGETS = ["numpy", "torch", "tensorflow", "onnx"]
TOL = {"rtol": 1e-5, "atol": 1e-5}
F, I64, BOOL = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


def _model(nodes: list[Any], inputs: list[Any], outputs: list[Any], inits: tuple[Any, ...] | list[Any] = ()) -> Any:
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8  # onnxruntime 1.31 reads at most 13; onnx 1.23 writes 14 by default
    return m


def _ort(model: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def _agrees(model: Any, feeds: dict[str, np.ndarray], targets: list[str] = ["numpy"]) -> Any:  # noqa: B006
    want = _ort(model, feeds)
    m = from_onnx(model)
    for t in targets:
        got = m.compile(t)(**{m.input_names[k]: v for k, v in feeds.items()})
        got = got if isinstance(got, tuple) else (got,)
        assert len(got) == len(want), t
        for g, w in zip(got, want):
            assert g.shape == w.shape, t
            np.testing.assert_allclose(g, w, **TOL, err_msg=t)
    return m


def _source_agrees(m: Any, feeds: dict[str, np.ndarray]) -> None:
    """The imported model printed as .dlir source, parsed back and run, gives the imported model's numbers."""
    src, names = source_and_param_names(m.graph)
    run = dlir.compile(dlir.loads(src, "<imported>"), "numpy")
    run.load_params({names[k]: v for k, v in m.params.items()})
    ins = {m.input_names[k]: v for k, v in feeds.items()}
    got, want = run(**ins), m.compile("numpy")(**ins)
    for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
        np.testing.assert_array_equal(g, w)


def _c(name: str, value: Any, dtype: Any = np.int64) -> Any:
    return numpy_helper.from_array(np.array(value, dtype=dtype), name)


def _ops(g: Graph) -> list[str]:
    out = []
    for n in g.nodes:
        out.append(n.op)
        if n.body is not None:
            out += ["body:" + op for op in _ops(n.body)]
    return out


def _rnn_loop(cond: str = "counter", reverse: bool = False, emit_out: bool = True) -> Any:
    """tf2onnx's RNN loop: h' = tanh(h * w + x[:, t]) over the T steps of x: [B, T, 4]; returns h and the hs."""
    body_nodes = []
    if reverse:  # x[:, T - 1 - i], as tf2onnx writes a backward RNN
        body_nodes += [helper.make_node("Sub", ["T_in", "one"], ["last"]),
                       helper.make_node("Sub", ["last", "i"], ["at"])]
    body_nodes += [
        helper.make_node("Gather", ["x", "at" if reverse else "i"], ["x_t"], axis=1),
        helper.make_node("Add", ["i", "one"], ["i2"]),
        helper.make_node("Mul", ["h", "w"], ["hw"]),
        helper.make_node("Add", ["hw", "x_t"], ["pre"]),
        helper.make_node("Tanh", ["pre"], ["h2"]),
        helper.make_node("Identity", ["h2"], ["h_out"]),
    ]
    if cond == "counter":  # float(i + 1) < float(T), through casts as tf2onnx writes it
        body_nodes += [helper.make_node("Cast", ["i2"], ["i2f"], to=F),
                       helper.make_node("Cast", ["T_in"], ["Tf"], to=F),
                       helper.make_node("Less", ["i2f", "Tf"], ["cond_out"])]
    else:  # the sum of the state decides: data-dependent
        body_nodes += [helper.make_node("ReduceSum", ["h2"], ["s"], keepdims=0),
                       helper.make_node("Greater", ["s", "zero_f"], ["cond_out"], name="data_cond")]
    body = helper.make_graph(
        body_nodes, "body",
        [helper.make_tensor_value_info("iter", I64, []), helper.make_tensor_value_info("cond_in", BOOL, []),
         helper.make_tensor_value_info("i", I64, []), helper.make_tensor_value_info("h", F, None),
         helper.make_tensor_value_info("T_in", I64, [])],
        [helper.make_tensor_value_info("cond_out", BOOL, []), helper.make_tensor_value_info("i2", I64, []),
         helper.make_tensor_value_info("h2", F, None), helper.make_tensor_value_info("T_in", I64, []),
         helper.make_tensor_value_info("h_out", F, None)],
        [_c("one", 1), _c("zero_f", 0.0, np.float32)],
    )
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "one_idx"], ["T"], axis=0),
        helper.make_node("Less", ["zero", "T"], ["cond0"]),
        helper.make_node("Loop", ["", "cond0", "zero", "h0", "T"], ["i_last", "h_last", "T_last", "hs"],
                         name="rnn", body=body),
    ]
    outputs = [helper.make_tensor_value_info("h_last", F, ["B", 4])]
    if emit_out:
        outputs.append(helper.make_tensor_value_info("hs", F, ["T", "B", 4]))
    inputs = [helper.make_tensor_value_info("x", F, ["B", "T", 4]), helper.make_tensor_value_info("h0", F, ["B", 4])]
    return _model(nodes, inputs, outputs, [_c("one_idx", 1), _c("zero", 0), _c("w", [0.5, -1.0, 0.8, 1.2], np.float32)])


def _rnn_feeds(t: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"x": rng.standard_normal((3, t, 4)).astype(np.float32),
            "h0": rng.standard_normal((3, 4)).astype(np.float32)}


def test_counter_loop_imports_as_a_scan_over_the_gathered_tensor() -> None:
    m = _agrees(_rnn_loop(), _rnn_feeds(), TARGETS)
    ops = _ops(m.graph)
    assert ops.count("scan") == 1 and "body:gather" not in ops and "body:less" not in ops, ops
    scan = next(n for n in m.graph.nodes if n.op == "scan")
    assert scan.attrs["axis"] == 1 and not scan.attrs["reverse"] and scan.attrs["n_carry"] == 1  # only h is carried
    assert scan.inputs[0] is m.graph.inputs[0]  # it walks x itself


@pytest.mark.parametrize("t", [1, 6])
def test_counter_loop_agrees_for_other_lengths(t: int) -> None:
    _agrees(_rnn_loop(), _rnn_feeds(t))


def test_backward_counter_loop_is_a_reverse_scan_with_outputs_in_iteration_order() -> None:
    m = _agrees(_rnn_loop(reverse=True), _rnn_feeds(), TARGETS)
    scan = next(n for n in m.graph.nodes if n.op == "scan")
    assert scan.attrs["reverse"] and "body:gather" not in _ops(m.graph)
    _source_agrees(m, _rnn_feeds())


def test_unused_scan_output_is_not_stacked() -> None:
    m = _agrees(_rnn_loop(emit_out=False), _rnn_feeds())
    scan = next(n for n in m.graph.nodes if n.op == "scan")
    assert len(scan.outputs) == 1  # the last h only


def test_loop_with_a_data_dependent_condition_is_refused() -> None:
    with pytest.raises(DlirError) as e:
        from_onnx(_rnn_loop(cond="data"))
    msg = str(e.value)
    assert "node 'rnn'" in msg and "data_cond" in msg and "data-dependent loop cannot be a static scan" in msg


def _count_loop(m_trip: int, cond_out: str = "cond_in") -> Any:
    """Sums iteration numbers: acc' = acc + float(iter), M times, the condition passed through."""
    body = helper.make_graph(
        [helper.make_node("Cast", ["iter"], ["it_f"], to=F), helper.make_node("Add", ["acc", "it_f"], ["acc2"]),
         helper.make_node("Mul", ["acc2", "two"], ["twice"])],
        "body",
        [helper.make_tensor_value_info("iter", I64, []), helper.make_tensor_value_info("cond_in", BOOL, []),
         helper.make_tensor_value_info("acc", F, [2])],
        [helper.make_tensor_value_info(cond_out, BOOL, []), helper.make_tensor_value_info("acc2", F, [2]),
         helper.make_tensor_value_info("twice", F, [2])],
        [_c("two", 2.0, np.float32)] + ([_c(cond_out, True, np.bool_)] if cond_out != "cond_in" else []),
    )
    nodes = [helper.make_node("Loop", ["M", "", "a0"], ["acc_last", "twices"], name="count", body=body)]
    return _model(nodes, [helper.make_tensor_value_info("a0", F, [2])],
                  [helper.make_tensor_value_info("acc_last", F, [2]),
                   helper.make_tensor_value_info("twices", F, [m_trip, 2])],
                  [_c("M", m_trip)])


@pytest.mark.parametrize("cond_out", ["cond_in", "always"])
def test_loop_counted_by_m_reads_its_iteration_number(cond_out: str) -> None:
    feeds = {"a0": np.array([1.0, -2.0], np.float32)}
    m = _agrees(_count_loop(4, cond_out), feeds, TARGETS)
    assert _ops(m.graph).count("scan") == 1


def _reverse_sequence_model(lens: Any, symbolic: bool = False, time_axis: int = 0) -> Any:
    batch_axis = 1 - time_axis
    shape: list[Any] = [5, 3, 2] if not symbolic else ["T", "B", 2]
    if time_axis == 1:
        shape[0], shape[1] = shape[1], shape[0]
    nodes, inits = [], []
    if isinstance(lens, str):  # "full": the lengths computed from the shape, as tf2onnx does
        nodes += [helper.make_node("Shape", ["x"], ["s"]),
                  helper.make_node("Gather", ["s", "t_ax"], ["t_len"], axis=0),
                  helper.make_node("Gather", ["s", "b_ax"], ["b_len"], axis=0),
                  helper.make_node("Expand", ["t_len", "b_len"], ["lens"])]
        inits += [_c("t_ax", [time_axis]), _c("b_ax", [batch_axis])]
    else:
        inits.append(_c("lens", lens))
    nodes.append(helper.make_node("ReverseSequence", ["x", "lens"], ["y"], name="rev",
                                  time_axis=time_axis, batch_axis=batch_axis))
    x, y = helper.make_tensor_value_info("x", F, shape), helper.make_tensor_value_info("y", F, shape)
    return _model(nodes, [x], [y], inits)


@pytest.mark.parametrize("symbolic, time_axis", [(False, 0), (True, 0), (True, 1)])
def test_full_length_reverse_sequence_agrees_with_onnxruntime(symbolic: bool, time_axis: int) -> None:
    x = np.arange(30, dtype=np.float32).reshape((5, 3, 2) if time_axis == 0 else (3, 5, 2))
    m = _agrees(_reverse_sequence_model("full", symbolic, time_axis), {"x": x}, TARGETS if symbolic else ["numpy"])
    assert "gather" in _ops(m.graph)
    _source_agrees(m, {"x": x})


def test_reverse_sequence_given_constant_full_lengths() -> None:
    _agrees(_reverse_sequence_model([5, 5, 5]), {"x": np.arange(30, dtype=np.float32).reshape(5, 3, 2)})


def test_reverse_sequence_with_partial_lengths_is_refused() -> None:
    with pytest.raises(DlirError) as e:
        from_onnx(_reverse_sequence_model([5, 3, 5]))
    assert "node 'rev'" in str(e.value) and "is not 5 (the time dim)" in str(e.value)


def test_reverse_sequence_with_runtime_lengths_is_refused() -> None:
    m = _model([helper.make_node("ReverseSequence", ["x", "lens"], ["y"], name="rev", time_axis=0, batch_axis=1)],
               [helper.make_tensor_value_info("x", F, [5, 3, 2]), helper.make_tensor_value_info("lens", I64, [3])],
               [helper.make_tensor_value_info("y", F, [5, 3, 2])])
    with pytest.raises(DlirError, match="sequence_lens is computed at run time"):
        from_onnx(m)


def test_reverse_sequence_of_a_backward_loop_undoes_its_reversal() -> None:
    """tf2onnx's backward GRU: a reverse loop's outputs, reversed back to time order by ReverseSequence."""
    model = _rnn_loop(reverse=True)
    g = model.graph
    g.node.extend([
        helper.make_node("Shape", ["hs"], ["hs_shape"]),
        helper.make_node("Gather", ["hs_shape", "t_ax"], ["t_len"], axis=0),
        helper.make_node("Gather", ["hs_shape", "b_ax"], ["b_len"], axis=0),
        helper.make_node("Expand", ["t_len", "b_len"], ["lens"]),
        helper.make_node("ReverseSequence", ["hs", "lens"], ["hs_time"], time_axis=0, batch_axis=1),
    ])
    g.initializer.extend([_c("t_ax", [0]), _c("b_ax", [1])])
    del g.output[1]
    g.output.append(helper.make_tensor_value_info("hs_time", F, ["T", "B", 4]))
    m = _agrees(model, _rnn_feeds(), TARGETS)
    out = m.graph.outputs[1][1]
    assert out.producer is not None and out.producer.op == "scan"  # no gather: the two reversals cancel


def test_loop_whose_trip_count_is_computed_at_run_time_is_refused() -> None:
    model = _count_loop(4)
    g = model.graph
    g.node.insert(0, helper.make_node("Cast", ["m_f"], ["M"], to=I64))
    del g.initializer[:]
    g.input.append(helper.make_tensor_value_info("m_f", F, []))
    with pytest.raises(DlirError, match="node 'count'.*the trip count M is computed at run time"):
        from_onnx(model)
