"""ONNX ``LSTM``, ``GRU`` and ``RNN`` imported as dlir scans, checked against ONNX Runtime on the same file.

Models are built with ``onnx.helper`` (every attribute exporters write) and exported by
``torch.onnx.export`` from ``nn.LSTM``/``nn.GRU``/``nn.RNN``; each imported model runs on
every target and is compared with ONNX Runtime's run of the very file (and, for torch's
exports, with the torch module itself).
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from dlir.errors import DlirError
from dlir.importer import from_onnx

TARGETS = ["numpy", "torch", "tensorflow", "onnx"]
TOL = {"rtol": 1e-5, "atol": 1e-5}
F = TensorProto.FLOAT
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
H, I, T, B = 5, 4, 3, 2


def _ort(model: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _run(m: Any, target: str, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    got = m.compile(target)(**{m.input_names[k]: v for k, v in feeds.items() if k in m.input_names})
    return got if isinstance(got, tuple) else (got,)


def _close(got: tuple[np.ndarray, ...], want: list[np.ndarray], what: str) -> None:
    assert len(got) == len(want), what
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape, (what, g.shape, w.shape)
        np.testing.assert_allclose(g, w, **TOL, err_msg=what)


def _agrees(model: Any, feeds: dict[str, np.ndarray], targets: list[str] = TARGETS) -> Any:  # noqa: B006
    want = _ort(model, feeds)
    m = from_onnx(model)
    for t in targets:
        _close(_run(m, t, feeds), want, t)
    return m


def _model(nodes: list[Any], inputs: list[Any], outputs: list[str], inits: list[Any], opset: int = 14) -> Any:
    outs = [helper.make_tensor_value_info(o, F, None) for o in outputs]
    g = helper.make_graph(nodes, "g", inputs, outs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8  # onnxruntime 1.31 reads at most 13
    return m


def _weights(op: str, dirs: int, rng: np.random.Generator, peepholes: bool = False) -> list[Any]:
    g = GATES[op]
    out = [
        numpy_helper.from_array((rng.standard_normal((dirs, g * H, I)) * 0.5).astype(np.float32), "W"),
        numpy_helper.from_array((rng.standard_normal((dirs, g * H, H)) * 0.5).astype(np.float32), "R"),
        numpy_helper.from_array((rng.standard_normal((dirs, 2 * g * H)) * 0.5).astype(np.float32), "B"),
    ]
    if peepholes:
        out.append(numpy_helper.from_array((rng.standard_normal((dirs, 3 * H)) * 0.5).astype(np.float32), "P"))
    return out


def _recurrent(
    op: str,
    direction: str = "forward",
    states: bool = True,
    outputs: tuple[str, ...] | None = None,
    peepholes: bool = False,
    seed: int = 0,
    **attrs: Any,
) -> tuple[Any, dict[str, np.ndarray]]:
    """One LSTM/GRU/RNN node over x: [T, B, I] (layout 0), with random weights and states."""
    rng = np.random.default_rng(seed)
    dirs = 2 if direction == "bidirectional" else 1
    names = ["x", "W", "R", "B", "", "h0" if states else ""]
    if op == "LSTM":
        names += ["c0" if states else "", "P" if peepholes else ""]
    all_outs = ["Y", "Y_h", "Y_c"][: 3 if op == "LSTM" else 2]
    wanted = list(outputs or all_outs)
    node_outs = [o if o in wanted else "" for o in all_outs]
    node = helper.make_node(op, names, node_outs, hidden_size=H, direction=direction, **attrs)
    inputs = [helper.make_tensor_value_info("x", F, [T, "N", I])]
    feeds = {"x": rng.standard_normal((T, B, I)).astype(np.float32)}
    for s in (["h0", "c0"] if op == "LSTM" else ["h0"]) if states else []:
        inputs.append(helper.make_tensor_value_info(s, F, [dirs, "N", H]))
        feeds[s] = rng.standard_normal((dirs, B, H)).astype(np.float32)
    return _model([node], inputs, wanted, _weights(op, dirs, rng, peepholes)), feeds


CASES = [
    (op, direction, attrs)
    for op in ("LSTM", "GRU", "RNN")
    for direction in ("forward", "reverse", "bidirectional")
    for attrs in [{}, {"clip": 0.3}]
    + ([{"linear_before_reset": 1}] if op == "GRU" else [])
    + ([{"activations": ["Relu"] * (2 if direction == "bidirectional" else 1)}] if op == "RNN" else [])
]


@pytest.mark.parametrize(
    "op, direction, attrs", CASES, ids=[f"{o}-{d}-{'-'.join(a) or 'default'}" for o, d, a in CASES]
)
def test_recurrent_node_agrees_with_onnxruntime(op: str, direction: str, attrs: dict[str, Any]) -> None:
    model, feeds = _recurrent(op, direction, **attrs)
    _agrees(model, feeds)


def test_clip_changes_the_result() -> None:
    """The clip case above is not vacuous: with the weights used there, clipping changes LSTM's output."""
    with_clip, feeds = _recurrent("LSTM", clip=0.3)
    without, _ = _recurrent("LSTM")
    assert np.abs(_ort(with_clip, feeds)[0] - _ort(without, feeds)[0]).max() > 1e-2


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_omitted_states_are_zeros_and_omitted_y_is_not_computed(op: str) -> None:
    model, feeds = _recurrent(op, "bidirectional", states=False, outputs=("Y_h",))
    m = _agrees(model, feeds)
    scans = [n for n in m.graph.nodes if n.op == "scan"]
    assert len(scans) == 2 and all(len(n.outputs) == n.attrs["n_carry"] for n in scans)  # no stacked emit


def test_lstm_peepholes_agree() -> None:
    model, feeds = _recurrent("LSTM", "bidirectional", peepholes=True)
    _agrees(model, feeds)


def _with_layout_1(op: str, direction: str) -> tuple[Any, Any, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A layout-1 node and the layout-0 model that transposes around it (ONNX Runtime runs layout 0 only)."""
    model0, feeds0 = _recurrent(op, direction)
    states = ["h0", "c0"] if op == "LSTM" else ["h0"]
    outs = ["Y", "Y_h", "Y_c"][: len(states) + 1]
    node = helper.make_node(op, list(model0.graph.node[0].input), outs, hidden_size=H, direction=direction, layout=1)
    dirs = 2 if direction == "bidirectional" else 1
    inputs = [helper.make_tensor_value_info("x", F, ["N", T, I])]
    inputs += [helper.make_tensor_value_info(s, F, ["N", dirs, H]) for s in states]
    model1 = _model([node], inputs, outs, list(model0.graph.initializer))
    feeds1 = {"x": feeds0["x"].transpose(1, 0, 2), **{s: feeds0[s].transpose(1, 0, 2) for s in states}}
    return model0, model1, feeds0, feeds1


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_layout_1_is_batch_first(op: str) -> None:
    model0, model1, feeds0, feeds1 = _with_layout_1(op, "bidirectional")
    want = _ort(model0, feeds0)  # Y [T, D, B, H] -> [B, T, D, H]; Y_h [D, B, H] -> [B, D, H]
    want = [want[0].transpose(2, 0, 1, 3), *(w.transpose(1, 0, 2) for w in want[1:])]
    m = from_onnx(model1)
    assert [n.attrs["axis"] for n in m.graph.nodes if n.op == "scan"] == [1, 1]
    for t in TARGETS:
        _close(_run(m, t, feeds1), want, t)


# -- torch.onnx.export -----------------------------------------------------------------------


def _torch_export(module: Any, x: Any, batch_first: bool) -> Any:
    import torch

    buf = io.BytesIO()
    dims = {0: "B", 1: "T"} if batch_first else {0: "T", 1: "B"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            (x,),
            buf,
            dynamo=False,
            opset_version=17,
            input_names=["x"],
            output_names=["y", "h"] if not isinstance(module, torch.nn.LSTM) else ["y", "h", "c"],
            dynamic_axes={"x": dims},
        )
    return onnx.load_from_string(buf.getvalue())


def _torch_modules() -> list[tuple[str, Any, bool]]:
    import torch

    torch.manual_seed(0)
    return [
        ("lstm-bi-batch_first-2layers", torch.nn.LSTM(I, H, num_layers=2, bidirectional=True, batch_first=True), True),
        ("gru-bi-2layers", torch.nn.GRU(I, H, num_layers=2, bidirectional=True), False),
        ("gru-batch_first", torch.nn.GRU(I, H, batch_first=True), True),
        ("rnn-relu-batch_first-2layers", torch.nn.RNN(I, H, num_layers=2, nonlinearity="relu", batch_first=True), True),
        ("rnn-tanh-bi", torch.nn.RNN(I, H, bidirectional=True), False),
    ]


@pytest.mark.parametrize("index", range(5), ids=[n for n, _, _ in _torch_modules()])
def test_torch_exported_recurrent_modules_agree(index: int) -> None:
    import torch

    _, module, batch_first = _torch_modules()[index]
    shape = (B, T, I) if batch_first else (T, B, I)
    model = _torch_export(module, torch.zeros(shape), batch_first)
    m = from_onnx(model)
    # Another batch and length than the export's: the dims stay symbolic.
    x = np.random.default_rng(1).standard_normal((3, 6, I) if batch_first else (6, 3, I)).astype(np.float32)
    want = _ort(model, {"x": x})
    with torch.no_grad():
        y, state = module(torch.from_numpy(x))
    own = [y.numpy(), *((s.numpy() for s in state) if isinstance(state, tuple) else [state.numpy()])]
    for w, o in zip(want, own, strict=True):
        np.testing.assert_allclose(w, o, rtol=1e-5, atol=1e-5)  # the file is the module
    for t in TARGETS:
        _close(_run(m, t, {"x": x}), want, t)


def test_imported_recurrent_source_parses_and_agrees() -> None:
    """``dlirc import``'s .dlir source of a torch LSTM: scans with named weights, the same numbers."""
    import torch

    import dlir
    from dlir.importer.to_source import source_and_param_names

    _, module, batch_first = _torch_modules()[0]
    m = from_onnx(_torch_export(module, torch.zeros((B, T, I)), batch_first))
    text, names = source_and_param_names(m.graph)
    assert text.count("scan reverse") == 2 and text.count("scan ") == 4, text
    assert "param LSTM_forward_w_hh: f32[5, 20]" in text and "param LSTM_1_reverse_w_ih: f32[10, 20]" in text, text
    run = dlir.compile(dlir.loads(text, "imported.dlir"), "numpy")
    run.load_params({names[k]: v for k, v in m.params.items()})
    x = np.random.default_rng(2).standard_normal((2, 4, I)).astype(np.float32)
    for g, w in zip(run(x=x), m.compile("numpy")(x=x), strict=True):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("op, kernel", [("LSTM", "LSTM"), ("GRU", "GRU")])
def test_imported_cell_fuses_again_at_O2(op: str, kernel: str) -> None:
    """With the default activations the imported body is the stdlib's cell: -O2 runs it as one kernel."""
    from dlir.backends.onnx.export import to_model
    from dlir.passes import optimize

    model, feeds = (
        _recurrent(op, "bidirectional", linear_before_reset=1) if op == "GRU" else _recurrent(op, "bidirectional")
    )
    m = from_onnx(model)
    fused = to_model(optimize(m.graph, 2, target="onnx"), m.params)
    assert [n.op_type for n in fused.graph.node].count(kernel) == 2
    assert not any(n.op_type == "Scan" for n in fused.graph.node)
    _close(tuple(_ort(fused, {m.input_names[k]: v for k, v in feeds.items()})), _ort(model, feeds), "fused")


def test_gru_reset_before_matmul_stays_a_loop() -> None:
    """linear_before_reset=0 (ONNX's default) is not torch's cell: it must not be fused into torch.gru."""
    from dlir.backends.onnx.export import to_model
    from dlir.passes import optimize

    model, feeds = _recurrent("GRU")
    m = from_onnx(model)
    g = optimize(m.graph, 2, target="onnx")
    assert not any(n.op_type == "GRU" for n in to_model(g, m.params).graph.node)
    before, after = _ort(model, feeds), _recurrent("GRU", linear_before_reset=1)[0]
    assert np.abs(before[0] - _ort(after, feeds)[0]).max() > 1e-3  # the two cells really differ here


# -- refusals --------------------------------------------------------------------------------


def _refused(model: Any, *fragments: str) -> DlirError:
    with pytest.raises(DlirError) as e:
        from_onnx(model)
    text = str(e.value) + (e.value.hint or "")
    for f in fragments:
        assert f in text, text
    return e.value


def test_runtime_sequence_lens_is_refused() -> None:
    model, _ = _recurrent("LSTM")
    node = model.graph.node[0]
    node.input[4] = "lens"
    node.name = "enc_lstm"
    model.graph.input.append(helper.make_tensor_value_info("lens", TensorProto.INT32, ["N"]))
    e = _refused(model, "enc_lstm", "sequence_lens", "run time")
    assert e.hint


def test_short_sequence_lens_is_refused_and_full_length_accepted() -> None:
    model, feeds = _recurrent("GRU")
    model.graph.initializer.append(numpy_helper.from_array(np.array([T, T - 1], np.int32), "lens"))
    model.graph.node[0].input[4] = "lens"
    _refused(model, "sequence_lens", "2", "masking")
    model.graph.initializer[-1].CopyFrom(numpy_helper.from_array(np.array([T, T], np.int32), "lens"))
    _agrees(model, feeds, ["numpy"])


def test_unsupported_activation_and_input_forget_are_refused() -> None:
    model, _ = _recurrent("LSTM", activations=["HardSigmoid", "Tanh", "Tanh"])
    _refused(model, "hardsigmoid", "Sigmoid, Tanh and Relu")
    model, _ = _recurrent("LSTM", input_forget=1)
    _refused(model, "input_forget")


KERAS = {
    "lstm": ("LSTM", False, T + 4),
    "bidirectional-lstm": ("LSTM", True, T + 4),
    "gru": ("GRU", False, T + 4),
    "bidirectional-gru": ("GRU", True, T + 4),
    "simple_rnn": ("SimpleRNN", False, T + 4),
    "gru-any-length": ("GRU", False, None),
    "simple_rnn-any-length": ("SimpleRNN", False, None),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(KERAS))
def test_keras_recurrent_layers_through_tf2onnx_agree(name: str) -> None:
    """tf2onnx writes Keras' LSTM as one ONNX LSTM node, GRU and SimpleRNN as a Loop whose condition is
    ``t < T and i < max_iterations`` (and Bidirectional's backward half between two ReverseSequence)."""
    import tensorflow as tf
    import tf2onnx

    layer_name, bidirectional, length = KERAS[name]
    tf.keras.utils.set_random_seed(0)
    layer = getattr(tf.keras.layers, layer_name)(H, return_sequences=True)
    inp = tf.keras.Input((length, I))
    net = tf.keras.Model(inp, tf.keras.layers.Bidirectional(layer)(inp) if bidirectional else layer(inp))
    spec = (tf.TensorSpec((None, length, I), tf.float32, name="x"),)
    model, _ = tf2onnx.convert.from_keras(net, input_signature=spec, opset=17)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("LSTM") == 1 if layer_name == "LSTM" else "Loop" in ops, ops
    x = np.random.default_rng(0).standard_normal((3, T + 4, I)).astype(np.float32)
    onnx_name = model.graph.input[0].name
    want = _ort(model, {onnx_name: x})
    np.testing.assert_allclose(want[0], net(x).numpy(), rtol=1e-5, atol=1e-5)  # the file is the Keras model
    m = from_onnx(model)
    for t in TARGETS:
        _close(_run(m, t, {onnx_name: x}), want, t)
