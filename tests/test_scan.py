"""``scan``: the language construct, its IR node, the numpy semantics and every target.

The numpy target is checked against loops written by hand in float64; the other
targets against numpy (``test_scan_on_<target>_...``), each with one compiled
artifact run at T=3 and T=50.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest

import dlir
from dlir.errors import DlirError, VerifyError
from dlir.ir.builder import emit1
from dlir.ir.graph import Graph, Init
from dlir.ir.golden import round_trip
from dlir.ir.parser import parse_graph
from dlir.ir.printer import print_graph
from dlir.ir.scan import emit_scan, scan_body, step_type
from dlir.ir.types import TensorType
from dlir.ir.verifier import verify
from dlir.runtime.interpreter import run_graph
from dlir.targets import runner_class

TOL = {"rtol": 1e-5, "atol": 1e-5}

MODELS = '''
# An Elman RNN over batch-first sequences with a second carry (the running sum of h).
model Elman2(xs: f32[B, T, 3], h0: f32[B, 4]) -> (ys: f32[B, T, 4], sums: f32[B, T, 4], h: f32[B, 4], s: f32[B, 4]) {
    param w_ih: f32[3, 4] = glorot_uniform
    param w_hh: f32[4, 4] = glorot_uniform
    param b: f32[4] = normal(std=0.5)
    ys, sums, h_last, s_last = scan x_t in xs along 1 carry h = h0, s = h0 * 0.0 {
        h = tanh(x_t @ w_ih + h @ w_hh + b)
        s = s + h
        emit h
        emit s * 0.5
    }
    return (ys, sums, h_last, s_last)
}

# Time-major, walked backwards; an emit of the slice itself.
model Reverse0(xs: f32[T, B, 2], a0: f32[B, 2]) -> (accs: f32[T, B, 2], doubled: f32[T, B, 2], a: f32[B, 2]) {
    accs, doubled, a_last = scan reverse x_t in xs along 0 carry a = a0 {
        a = 0.5 * a + x_t
        emit a
        emit x_t * 2.0
    }
    return (accs, doubled, a_last)
}

# Emits from a static loop (one statement, three values), and an emit of another rank.
model LoopEmits(xs: f32[B, T, 2]) -> (y0: f32[B, T, 2], y1: f32[B, T, 2], y2: f32[B, T, 2], n: f32[B, T], c: f32[B, 2]) {
    y0, y1, y2, n, c = scan x_t in xs along -2 carry c = 1.0 + xs[:, 0] * 0.0 {
        for i in range(3) {
            c = c * x_t + 1.0 * i
            emit c
        }
        emit sum(c, axis=1)
    }
    return (y0, y1, y2, n, c)
}

# A scan inside a layer's forward, the layer called twice; its params are the closure.
layer Cell(n: int) {
    param u: f32[n, n] = glorot_uniform
    forward(xs, h0) {
        ys, h = scan x_t in xs along 1 carry h = h0 {
            h = tanh(x_t + h @ u)
            emit h
        }
        return ys
    }
}

model Stacked(xs: f32[B, T, 3]) -> f32[B, T, 3] {
    c1 = Cell(3)
    c2 = Cell(3)
    h0 = xs[:, 0] * 0.0
    return c2(c1(xs, h0), h0)
}

# A param and a layer instance created inside the body belong to the model's graph.
layer Dense(n_in: int, n_out: int) {
    param w: f32[n_in, n_out] = glorot_uniform
    forward(x) { return x @ w }
}

model BodyParams(xs: f32[B, T, 3]) -> (ys: f32[B, T, 3], h: f32[B, 3]) {
    ys, h = scan x_t in xs along 1 carry h = xs[:, 0] {
        param g: f32[3] = normal(std=1.0)
        d = Dense(3, 3)
        h = relu(d(h) * g + x_t)
        emit h
    }
    return (ys, h)
}

# Scans nest: the inner one runs over the features of each step's slice.
model Nested(xs: f32[B, T, 3]) -> (ys: f32[B, T, 3], tot: f32[B]) {
    ys, tot = scan x_t in xs along 1 carry tot = xs[:, 0, 0] * 0.0 {
        cs, tot = scan x_f in x_t along 1 carry tot = tot {
            tot = tot + x_f
            emit tot
        }
        emit cs
    }
    return (ys, tot)
}
'''

PROG = dlir.loads(MODELS, "scan_models.dlir")
BACKENDS = ("torch", "tensorflow", "onnx")


def _tuple(x: Any) -> tuple[np.ndarray, ...]:
    return x if isinstance(x, tuple) else (x,)


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _f32(*shape: int, seed: int = 0) -> np.ndarray:
    return _rng(seed).standard_normal(shape).astype(np.float32)


# -- hand-written numpy loops (float64) ------------------------------------------------------


def elman2_loop(p: dict[str, np.ndarray], xs: np.ndarray, h0: np.ndarray) -> tuple[np.ndarray, ...]:
    h, s = h0.astype(np.float64), np.zeros_like(h0, np.float64)
    ys, sums = [], []
    for t in range(xs.shape[1]):
        h = np.tanh(xs[:, t] @ p["w_ih"] + h @ p["w_hh"] + p["b"])
        s = s + h
        ys.append(h)
        sums.append(s * 0.5)
    return np.stack(ys, 1), np.stack(sums, 1), h, s


def reverse0_loop(xs: np.ndarray, a0: np.ndarray) -> tuple[np.ndarray, ...]:
    a = a0.astype(np.float64)
    accs = [None] * xs.shape[0]
    for t in reversed(range(xs.shape[0])):
        a = 0.5 * a + xs[t]
        accs[t] = a
    return np.stack(accs, 0), xs * 2.0, a


def loop_emits_loop(xs: np.ndarray) -> tuple[np.ndarray, ...]:
    c = np.ones((xs.shape[0], xs.shape[2]))
    ys: list[list[np.ndarray]] = [[], [], [], []]
    for t in range(xs.shape[1]):
        for i in range(3):
            c = c * xs[:, t] + i
            ys[i].append(c)
        ys[3].append(c.sum(axis=1))
    return tuple(np.stack(y, 1) for y in ys) + (c,)


def stacked_loop(p: dict[str, np.ndarray], xs: np.ndarray) -> np.ndarray:
    def cell(u: np.ndarray, seq: np.ndarray) -> np.ndarray:
        h = np.zeros((seq.shape[0], seq.shape[2]))
        out = []
        for t in range(seq.shape[1]):
            h = np.tanh(seq[:, t] + h @ u)
            out.append(h)
        return np.stack(out, 1)

    return cell(p["c2.u"], cell(p["c1.u"], xs.astype(np.float64)))


def body_params_loop(p: dict[str, np.ndarray], xs: np.ndarray) -> tuple[np.ndarray, ...]:
    h = xs[:, 0].astype(np.float64)
    out = []
    for t in range(xs.shape[1]):
        h = np.maximum((h @ p["d.w"]) * p["g"] + xs[:, t], 0.0)
        out.append(h)
    return np.stack(out, 1), h


def nested_loop(xs: np.ndarray) -> tuple[np.ndarray, ...]:
    tot = np.zeros(xs.shape[0])
    ys = np.zeros(xs.shape)
    for t in range(xs.shape[1]):
        for f in range(xs.shape[2]):
            tot = tot + xs[:, t, f]
            ys[:, t, f] = tot
    return ys, tot


# (model, inputs for (B, T), numpy loop of (params, feeds))
Oracle = tuple[Callable[[int, int], dict[str, np.ndarray]], Callable[[dict[str, np.ndarray], dict[str, np.ndarray]], Any]]
ORACLES: dict[str, Oracle] = {
    "Elman2": (lambda b, t: {"xs": _f32(b, t, 3, seed=t), "h0": _f32(b, 4, seed=1)},
               lambda p, f: elman2_loop(p, f["xs"], f["h0"])),
    "Reverse0": (lambda b, t: {"xs": _f32(t, b, 2, seed=t), "a0": _f32(b, 2, seed=2)},
                 lambda p, f: reverse0_loop(f["xs"], f["a0"])),
    "LoopEmits": (lambda b, t: {"xs": (_f32(b, t, 2, seed=t) * 0.5).astype(np.float32)},
                  lambda p, f: loop_emits_loop(f["xs"])),
    "Stacked": (lambda b, t: {"xs": _f32(b, t, 3, seed=t)}, lambda p, f: stacked_loop(p, f["xs"])),
    "BodyParams": (lambda b, t: {"xs": _f32(b, t, 3, seed=t)}, lambda p, f: body_params_loop(p, f["xs"])),
    "Nested": (lambda b, t: {"xs": _f32(b, t, 3, seed=t)}, lambda p, f: nested_loop(f["xs"])),
}


def _check(got: Any, want: Any, what: str) -> None:
    got, want = _tuple(got), _tuple(want)
    assert len(got) == len(want), what
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.dtype == np.float32 and g.shape == np.shape(w), f"{what} output {i}: {g.dtype}{g.shape} vs {np.shape(w)}"
        np.testing.assert_allclose(g, w, err_msg=f"{what} output {i}", **TOL)


# -- numpy semantics ---------------------------------------------------------------------------


@pytest.mark.parametrize("model", sorted(ORACLES))
def test_numpy_matches_hand_written_loops_at_T3_and_T50(model: str) -> None:
    run = dlir.compile(PROG, "numpy", model=model)
    make, loop = ORACLES[model]
    for b, t in ((2, 3), (3, 50)):  # one compiled runner, two sequence lengths
        feeds = make(b, t)
        _check(run(**feeds), loop(run.params, feeds), f"{model} at B={b}, T={t}")


def test_reverse_keeps_outputs_aligned_with_inputs() -> None:
    run = dlir.compile(PROG, "numpy", model="Reverse0")
    xs = np.zeros((4, 1, 2), np.float32)
    xs[0] = 1.0  # only the first step has input: walked backwards, it comes last
    accs, doubled, a = run(xs=xs, a0=np.zeros((1, 2), np.float32))
    np.testing.assert_array_equal(accs[:, 0, 0], [1.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(doubled, xs * 2.0)
    np.testing.assert_array_equal(a, [[1.0, 1.0]])


def test_a_number_starts_a_scalar_carry() -> None:
    src = """model C(xs: f32[T, 2]) -> (steps: i64[T], n: i64[]) {
    steps, n = scan x_t in xs along 0 carry n = 0 {
        n = n + 1
        emit n
    }
    return (steps, n)
}"""
    steps, n = dlir.compile(dlir.loads(src), "numpy")(xs=np.zeros((4, 2), np.float32))
    np.testing.assert_array_equal(steps, [1, 2, 3, 4])
    assert n.dtype == np.int64 and n.shape == () and int(n) == 4


def test_the_ir_is_one_scan_node_owning_its_body() -> None:
    g = PROG.graph("Elman2")
    (node,) = [n for n in g.nodes if n.op == "scan"]
    assert node.attrs == {"axis": 1, "reverse": False, "n_carry": 2}
    assert [v.name for v in node.outputs] == ["ys", "sums", "h_last", "s_last"]
    body = node.body
    assert body is not None and not body.params
    assert [str(v.type) for v in body.inputs] == ["f32[B, 3]", "f32[B, 4]", "f32[B, 4]"]
    assert [n for n, _ in body.outputs] == ["h", "s", "ys", "sums"]  # new carries first, then the emits
    assert body.outputs[0][1] is body.outputs[2][1]  # `emit h` after `h = ...`: the same value
    assert {p.name for p in g.params} == {"w_ih", "w_hh", "b"}
    assert any(v is g.param("w_ih") for n in body.nodes for v in n.inputs)  # closure over the param
    names = [v.name for v in g.all_values()] + [v.name for v in body.all_values()]
    assert len(names) == len(set(names)), "value names are unique across the graph and its body"


def test_negative_axis_is_stored_normalised() -> None:
    (node,) = [n for n in PROG.graph("LoopEmits").nodes if n.op == "scan"]
    assert node.attrs["axis"] == 1 and len(node.body.outputs) == 1 + 4  # type: ignore[union-attr]


def test_params_and_layers_created_in_a_body_live_on_the_model_graph() -> None:
    g = PROG.graph("BodyParams")
    assert sorted(p.name for p in g.params) == ["d.w", "g"]
    (node,) = [n for n in g.nodes if n.op == "scan"]
    assert node.body is not None and node.body.params == []
    verify(g)


# -- the IR text and the verifier --------------------------------------------------------------


@pytest.mark.parametrize("model", sorted(ORACLES))
def test_ir_text_round_trips_and_the_parsed_graph_computes_the_same(model: str) -> None:
    g = PROG.graph(model)
    text = round_trip(g)
    assert "= scan(" in text and "  body step(" in text
    g2 = parse_graph(text)
    assert print_graph(g2) == text
    run = dlir.compile(PROG, "numpy", model=model)
    feeds = ORACLES[model][0](2, 5)
    want = _tuple(run(**feeds))
    got = run_graph(g2, feeds, run.params)
    for w, o in zip(want, got):
        np.testing.assert_array_equal(w, o)


def test_scan_ir_text_format() -> None:
    text = round_trip(PROG.graph("Reverse0"))
    assert (
        "%accs: f32[T, B, 2], %doubled: f32[T, B, 2], %a_last: f32[B, 2] = scan(%xs, %a0) "
        "{axis=0, reverse=true, n_carry=1}"
    ) in text
    assert "body step(%x_t: f32[B, 2], %a: f32[B, 2]) -> (a: f32[B, 2], accs: f32[B, 2], doubled: f32[B, 2])" in text


def _elman_copy() -> Graph:
    return parse_graph(print_graph(PROG.graph("Elman2")))


def test_verifier_catches_a_carry_whose_type_changes() -> None:
    g = _elman_copy()
    body = g.nodes[-1].body
    assert body is not None
    h_in = body.inputs[1]
    shrunk = emit1(body, "sum", [h_in], {"axis": 1})  # f32[B]
    body.outputs[0] = ("h", shrunk)
    with pytest.raises(VerifyError, match=r"carry 'h' changes type in the body: it enters as f32\[B, 4\] and leaves as f32\[B\]"):
        verify(g)


def _cumsum_graph() -> Graph:
    """ys, last = scan reverse x_t in xs along -1 carry s = s0 { s = s + x_t; emit s }, built by hand."""
    g = Graph("Cumsum")
    xs = g.add_input("xs", TensorType.make("f32", ["B", "T"]))
    s0 = g.add_input("s0", TensorType.make("f32", ["B"]))
    body = scan_body(g, step_type(xs.type, -1), [s0.type], ["x_t", "s"])
    x_t, s = body.inputs
    sn = emit1(body, "add", [s, x_t], name="s")
    body.outputs = [("s", sn), ("ys", sn)]
    ys, last = emit_scan(g, xs, [s0], body, axis=-1, reverse=True)
    g.outputs = [("ys", ys), ("last", last)]
    return g


def test_verifier_checks_body_inputs_against_xs_and_inits() -> None:
    g = _cumsum_graph()
    body = g.nodes[0].body
    assert body is not None
    body.inputs[0].type = TensorType.make("f32", [1])  # still broadcasts in the body
    with pytest.raises(VerifyError, match=r"a slice of xs: f32\[B, T\] along axis 1 is f32\[B\]"):
        verify(g)


def test_verifier_checks_emit_derived_result_types() -> None:
    g = _elman_copy()
    node = g.nodes[-1]
    node.outputs[0].type = TensorType.make("f32", ["B", 4])
    with pytest.raises(VerifyError, match=r"%ys has type f32\[B, 4\], but scan gives f32\[B, T, 4\]"):
        verify(g)


def test_verifier_rejects_closure_values_defined_after_the_scan() -> None:
    g = _elman_copy()
    body = g.nodes[-1].body
    assert body is not None
    late = emit1(g, "neg", [g.inputs[1]], name="late")  # an outer value defined after the scan node
    body.outputs[0] = ("h", emit1(body, "add", [body.outputs[0][1], late]))
    with pytest.raises(VerifyError, match=r"in the body of scan: input 1 of add %late is used before its definition"):
        verify(g)


def test_verifier_rejects_params_in_a_body() -> None:
    g = _elman_copy()
    body = g.nodes[-1].body
    assert body is not None
    body.add_param("extra", TensorType.make("f32", [4]), Init("zeros"))
    with pytest.raises(VerifyError, match="the body declares params"):
        verify(g)


def test_ir_parser_rejects_a_body_that_does_not_fit() -> None:
    text = print_graph(_cumsum_graph())
    assert "body step(%x_t: f32[B], %s: f32[B])" in text
    with pytest.raises(DlirError, match=r"body input %x_t is f32\[1\], but a slice of xs: f32\[B, T\] along axis 1 is f32\[B\]"):
        parse_graph(text.replace("%x_t: f32[B]", "%x_t: f32[1]"))
    with pytest.raises(DlirError, match=r"body input %s is f32\[1\], but its initial value is f32\[B\]"):
        parse_graph(text.replace("%s: f32[B]", "%s: f32[1]"))
    no_body = "model M(%x: f32[3, 2]) -> (y: f32[3, 2]) {\n  %y: f32[3, 2] = scan(%x) {axis=0, reverse=false, n_carry=0}\n  return y=%y\n}\n"
    with pytest.raises(DlirError, match="scan needs a body graph"):
        parse_graph(no_body)


def test_emit_scan_builds_a_verified_node_and_plain_emit_refuses() -> None:
    from dlir.ir.builder import emit

    g = _cumsum_graph()
    xs, s0 = g.inputs
    ys, body = g.outputs[0][1], g.nodes[0].body
    assert body is not None
    verify(g)
    assert str(ys.type) == "f32[B, T]" and g.nodes[0].attrs["axis"] == 1
    x = _f32(2, 6)
    got_ys, got_last = run_graph(g, {"xs": x, "s0": np.zeros(2, np.float32)}, {})
    np.testing.assert_allclose(got_ys, np.cumsum(x[:, ::-1], axis=1)[:, ::-1], **TOL)
    np.testing.assert_allclose(got_last, x.sum(axis=1), **TOL)
    with pytest.raises(DlirError, match="built with dlir.ir.scan.emit_scan|emit_scan"):
        emit(g, "scan", [xs, s0], {"axis": 0, "n_carry": 1})
    with pytest.raises(DlirError, match="has no axis 2"):
        emit_scan(g, xs, [s0], body, axis=2)


# -- user mistakes: located errors with hints ------------------------------------------------------

HEAD = "model M(xs: f32[B, T, 3], h0: f32[B, 3]) -> f32[B, 3] {\n"

# (source, line, col, message fragment, hint fragment)
ERRORS = {
    "carry_type_changes": (
        HEAD + "    ys, h = scan x_t in xs along 1 carry h = h0 {\n        h = sum(x_t + h, axis=1)\n        emit h\n    }\n"
        "    return h\n}\n",
        3, 9, "carry 'h' changes type inside the scan body: it enters as f32[B, 3] and leaves as f32[B]", "keeps one type",
    ),
    "carry_rebound_to_a_number": (
        HEAD + "    ys, h = scan x_t in xs along 1 carry h = h0 {\n        emit h\n        h = 1\n    }\n    return h\n}\n",
        4, 9, "carry 'h' changes type inside the scan body: it enters as f32[B, 3] and is rebound to 1", "keeps one type",
    ),
    "emit_shapes_differ_in_a_loop": (
        HEAD + "    a, b, h = scan x_t in xs along 1 carry h = h0 {\n        for i in range(2) {\n"
        "            h = h + x_t\n            emit h[:, 0:i + 1]\n        }\n    }\n    return h\n}\n",
        5, 13, "emit of inconsistent shapes: this emit gives f32[B, 2] here, but f32[B, 1]", "same type",
    ),
    "along_missing_axis": (
        HEAD + "    ys, h = scan x_t in xs along 3 carry h = h0 {\n        emit h\n    }\n    return h\n}\n",
        2, 34, "scan along axis 3, but xs: f32[B, T, 3] has no axis 3", "axes 0..2",
    ),
    "along_not_an_int": (
        HEAD + "    ys, h = scan x_t in xs along h0 carry h = h0 {\n        emit h\n    }\n    return h\n}\n",
        2, 34, "`along` takes a compile-time int axis", None,
    ),
    "xs_not_a_tensor": (
        HEAD + "    ys, h = scan x_t in 3 along 0 carry h = h0 {\n        emit h\n    }\n    return h\n}\n",
        2, 25, "scan iterates over a tensor, but xs is 3", "slices",
    ),
    "return_in_body": (
        HEAD + "    ys, h = scan x_t in xs along 1 carry h = h0 {\n        emit h\n        return h\n    }\n    return h\n}\n",
        4, 9, "return is not allowed inside a scan body", "return after it",
    ),
    "emit_outside_scan": (HEAD + "    emit h0\n    return h0\n}\n", 2, 5, "emit is only allowed inside a scan body", "emit"),
    "emit_in_a_layer_called_from_a_body": (
        "layer L() {\n    forward(x) {\n        emit x\n        return x\n    }\n}\n" + HEAD
        + "    l = L()\n    ys, h = scan x_t in xs along 1 carry h = h0 {\n        h = l(h)\n        emit h\n    }\n    return h\n}\n",
        3, 9, "emit is only allowed inside a scan body", None,
    ),
    "target_count": (
        HEAD + "    ys, h = scan x_t in xs along 1 carry h = h0 {\n        emit h\n        emit x_t\n    }\n    return h\n}\n",
        2, 5, "2 name(s) to bind, but this scan gives 3: 2 stacked emit(s), then 1 final carry", "emits first",
    ),
    "emit_cannot_stack": (
        HEAD + "    ys, h = scan x_t in xs along 1 carry h = h0 {\n        emit sum(h)\n    }\n    return h\n}\n",
        3, 9, "emit of f32[] cannot be stacked along axis 1", "rank 1 or more",
    ),
    "duplicate_carry": (
        HEAD + "    ys, h, c = scan x_t in xs along 1 carry h = h0, h = h0 {\n        emit h\n    }\n    return h\n}\n",
        2, 53, "carry 'h' has the name of another carry", "own names",
    ),
    "carry_named_like_the_slice": (
        HEAD + "    ys, h = scan x_t in xs along 1 carry x_t = h0 {\n        emit x_t\n    }\n    return h\n}\n",
        2, 42, "carry 'x_t' has the name of the slice", "own names",
    ),
    "body_values_stay_in_the_body": (
        HEAD + "    ys, h = scan x_t in xs along 1 carry h = h0 {\n        z = h + x_t\n        emit z\n    }\n    return z\n}\n",
        6, 12, "unknown name 'z'", None,
    ),
}


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_scan_mistakes_are_located(name: str) -> None:
    src, line, col, msg, hint = ERRORS[name]
    with pytest.raises(DlirError) as info:
        dlir.loads(src, "m.dlir").graph()
    e = info.value
    assert e.loc is not None and (e.loc.file, e.loc.line, e.loc.col) == ("m.dlir", line, col), e.render()
    assert msg in e.message, e.render()
    if hint is not None:
        assert e.hint and hint in e.hint, e.render()
    assert e.render().startswith(f"m.dlir:{line}:{col}: error: ")


# -- every target agrees with numpy: one artifact, T=3 and T=50 --------------------------------------


def _agrees_with_numpy(target: str, model: str) -> None:
    ref = dlir.compile(PROG, "numpy", model=model)
    run = runner_class(target)(PROG.graph(model))
    run.load_params(ref.params)
    make = ORACLES[model][0]
    for b, t in ((2, 3), (3, 50)):
        feeds = make(b, t)
        want, got = _tuple(ref(**feeds)), _tuple(run(**feeds))
        assert len(got) == len(want)
        for i, (w, g) in enumerate(zip(want, got)):
            assert g.dtype == w.dtype and g.shape == w.shape, f"{model} on {target}, output {i}: {g.dtype}{g.shape} vs {w.dtype}{w.shape}"
            np.testing.assert_allclose(g, w, err_msg=f"{model} on {target} at B={b}, T={t}, output {i}", **TOL)


@pytest.mark.parametrize("model", sorted(ORACLES))
def test_scan_on_torch_agrees_with_numpy(model: str) -> None:
    _agrees_with_numpy("torch", model)


@pytest.mark.parametrize("model", sorted(ORACLES))
def test_scan_on_tensorflow_agrees_with_numpy(model: str) -> None:
    _agrees_with_numpy("tensorflow", model)


@pytest.mark.parametrize("model", sorted(ORACLES))
def test_scan_on_onnx_agrees_with_numpy(model: str) -> None:
    _agrees_with_numpy("onnx", model)
