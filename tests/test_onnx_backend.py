"""The ONNX target: model structure, names, symbolic dims, agreement with numpy, device choice.

Per-op agreement over many shapes lives in tests/test_ops.py; these tests pin what
is specific to the ONNX lowering.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest

from dlir.errors import LoweringError, SourceLoc, UsageError
from dlir.ir.builder import emit, emit1
from dlir.ir.scan import emit_scan, scan_body, step_type
from dlir.ir.graph import Graph, Init
from dlir.ir.types import Dim, DType, TensorType
from dlir.ops import lowered_ops
from dlir.ops.shape import END
from dlir.runtime.init import init_params
from dlir.runtime.runner import NumpyRunner

onnx_backend = pytest.importorskip("dlir.backends.onnx")
pytest.importorskip("onnxruntime")

RTOL = ATOL = 1e-5
LOC = SourceLoc("models/net.dlir", 7, 13)


def tt(dtype: str, shape: list) -> TensorType:
    return TensorType.make(dtype, shape)


def mlp_graph() -> Graph:
    """x[B, 4] -> dense(relu) -> dense -> softmax, with named outputs."""
    g = Graph("MLP")
    x = g.add_input("x", tt("f32", ["B", 4]))
    w1 = g.add_param("fc1.w", tt("f32", [4, 8]), Init("glorot_uniform"))
    b1 = g.add_param("fc1.b", tt("f32", [8]), Init("normal", (("std", 0.1),)))
    w2 = g.add_param("fc2.w", tt("f32", [8, 3]), Init("glorot_uniform"))
    stats = g.add_param("stats", tt("f32", [3]), Init("uniform", (("lo", -1.0), ("hi", 1.0))), buffer=True)
    h = emit1(g, "relu", [emit1(g, "add", [emit1(g, "matmul", [x, w1], loc=LOC), b1])], name="h")
    logits = emit1(g, "add", [emit1(g, "matmul", [h, w2]), stats], name="logits")
    g.outputs += [("logits", logits), ("probs", emit1(g, "softmax", [logits]))]
    return g


def shapes_graph() -> Graph:
    """Symbolic reshapes, flatten, split (several results), concat, slice, broadcast_to."""
    g = Graph("Shapes")
    x = g.add_input("x", tt("f32", ["B", "T", 6]))
    flat = emit1(g, "reshape", [x], {"shape": [Dim.of("B"), -1]})
    rows = emit1(g, "reshape", [x], {"shape": [Dim.of("B") * Dim.of("T"), 6]})
    a, b = emit(g, "split", [x], {"sizes": [2, 4], "axis": -1})
    tail = emit1(g, "slice", [x], {"starts": [1], "ends": [END], "axes": [1], "steps": [1]})
    wide = emit1(g, "broadcast_to", [emit1(g, "unsqueeze", [a], {"axes": [0]})], {"shape": [3, Dim.of("B"), Dim.of("T"), 2]})
    g.outputs += [("flat", flat), ("rows", rows), ("a", a), ("b", b), ("tail", tail), ("wide", wide)]
    g.outputs.append(("joined", emit1(g, "concat", [b, a], {"axis": 2})))
    g.outputs.append(("merged", emit1(g, "flatten", [x], {"start": 0, "end": 1})))
    return g


def traps_graph() -> Graph:
    """Ops where frameworks differ from the spec: integer division, casts, ties, gelu, losses."""
    g = Graph("Traps")
    i = g.add_input("i", tt("i32", [6]))
    j = g.add_input("j", tt("i32", [6]))
    f = g.add_input("f", tt("f32", [6]))
    ties = g.add_input("ties", tt("f32", [2, 4]))
    labels = g.add_input("labels", tt("i32", [2]))
    g.outputs += [
        ("quot", emit1(g, "div", [i, j])),
        ("trunc", emit1(g, "cast", [f], {"dtype": DType.i64})),
        ("clipped", emit1(g, "clip", [i], {"min": -1.5, "max": 2.5})),
        ("first", emit1(g, "argmax", [ties], {"axis": 1})),
        ("gelu", emit1(g, "gelu", [f])),
        ("gelu_tanh", emit1(g, "gelu", [f], {"approximate": "tanh"})),
        ("var1", emit1(g, "var", [ties], {"axis": 1, "correction": 1})),
        ("ce", emit1(g, "cross_entropy", [ties, labels])),
        ("bce", emit1(g, "bce_with_logits", [f, emit1(g, "sigmoid", [f])])),
        ("ne", emit1(g, "not_equal", [i, j])),
    ]
    return g


def traps_feeds() -> dict[str, np.ndarray]:
    return {
        "i": np.array([-7, 7, -7, 7, -1, 3], np.int32),
        "j": np.array([2, -2, -2, 2, 3, 3], np.int32),
        "f": np.array([-2.7, -1.5, -0.5, 0.4, 1.5, 40.0], np.float32),
        "ties": np.array([[1, 3, 3, 0], [2, 2, 2, 2]], np.float32),
        "labels": np.array([1, 3], np.int32),
    }


def assert_agrees(g: Graph, feeds: dict[str, np.ndarray], runner: object | None = None) -> None:
    run = runner or onnx_backend.Runner(g, device="cpu")
    got, want = run(**feeds), NumpyRunner(g)(**feeds)
    got, want = (got, want) if isinstance(got, tuple) else ((got,), (want,))
    assert len(got) == len(want) == len(g.outputs)
    for (name, _), a, b in zip(g.outputs, got, want):
        assert a.dtype == b.dtype and a.shape == b.shape, (name, a.dtype, a.shape, b.dtype, b.shape)
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, err_msg=name)


# -- the op table ---------------------------------------------------------------------


def test_every_lowered_op_has_an_emitter() -> None:
    missing = sorted(set(lowered_ops()) - set(onnx_backend.EMITTERS))
    assert not missing, f"ops without an ONNX lowering: {missing}"


def test_backend_contract() -> None:
    assert onnx_backend.SUFFIX == ".onnx"
    data = onnx_backend.generate(mlp_graph())
    assert isinstance(data, bytes)
    assert onnx.load_from_string(data).graph.name == "MLP"


# -- the ModelProto -------------------------------------------------------------------


@pytest.mark.parametrize("make", [mlp_graph, shapes_graph, traps_graph])
def test_models_pass_the_full_checker(make) -> None:  # type: ignore[no-untyped-def]
    model = onnx_backend.to_model(make())
    onnx.checker.check_model(model, full_check=True)  # strict shape inference included
    assert model.ir_version == onnx_backend.IR_VERSION <= 13  # onnxruntime 1.31 reads at most 13
    opsets = {o.domain: o.version for o in model.opset_import}
    assert opsets == {"": onnx_backend.OPSET} and 17 <= onnx_backend.OPSET <= 21


def test_names_and_initializers_are_dlir_names() -> None:
    g = mlp_graph()
    model = onnx_backend.to_model(g, seed=3)
    assert [i.name for i in model.graph.input] == ["x"]
    assert [o.name for o in model.graph.output] == ["logits", "probs"]
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    want = init_params(g, seed=3)
    for name, value in want.items():  # params and buffers hold dlir's seeded init
        np.testing.assert_array_equal(inits[name], value)
    assert {"fc1.w", "fc1.b", "fc2.w", "stats"} <= set(inits)


def test_symbolic_dims_are_dim_params() -> None:
    model = onnx_backend.to_model(shapes_graph())
    dims = {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output}
    x_dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert x_dims == ["B", "T", 6]
    assert dims["rows"] == ["B*T", 6]
    assert dims["wide"] == [3, "B", "T", 2]


def test_nodes_carry_the_source_location() -> None:
    model = onnx_backend.to_model(mlp_graph())
    located = [n for n in model.graph.node if "models/net.dlir:7:13" in n.name]
    assert [n.op_type for n in located] == ["MatMul"]
    assert "models/net.dlir:7:13" in located[0].doc_string
    assert len({n.name for n in model.graph.node}) == len(model.graph.node)


# -- running ----------------------------------------------------------------------------


def test_mlp_one_model_serves_two_batch_sizes() -> None:
    g = mlp_graph()
    run = onnx_backend.Runner(g, device="cpu")
    in_dims = run.model.graph.input[0].type.tensor_type.shape.dim
    assert in_dims[0].dim_param == "B"
    rng = np.random.default_rng(0)
    for batch in (1, 7):
        assert_agrees(g, {"x": rng.standard_normal((batch, 4)).astype(np.float32)}, run)


def test_spec_traps_match_the_reference() -> None:
    g = traps_graph()
    out = dict(zip(g.output_names(), onnx_backend.Runner(g, device="cpu")(**traps_feeds())))
    np.testing.assert_array_equal(out["quot"], [-3, -3, 3, 3, 0, 1])  # truncation, not floor
    np.testing.assert_array_equal(out["trunc"], [-2, -1, 0, 0, 1, 40])
    np.testing.assert_array_equal(out["first"], [1, 0])  # ties: first index
    assert_agrees(g, traps_feeds())


def test_shape_ops_with_symbols_at_two_sizes() -> None:
    g = shapes_graph()
    run = onnx_backend.Runner(g, device="cpu")
    for shape in ((2, 3, 6), (5, 1, 6)):
        assert_agrees(g, {"x": np.arange(np.prod(shape), dtype=np.float32).reshape(shape)}, run)


def test_reshape_with_a_symbol_from_a_second_input() -> None:
    g = Graph("Two")
    x = g.add_input("x", tt("f32", [6, "B"]))
    y = g.add_input("y", tt("f32", ["T"]))
    r = emit1(g, "reshape", [x], {"shape": [Dim.of("T"), Dim.of("B") * 2, -1]})
    g.outputs += [("r", r), ("s", emit1(g, "sum", [y]))]
    onnx.checker.check_model(onnx_backend.to_model(g), full_check=True)
    assert_agrees(g, {"x": np.ones((6, 4), np.float32), "y": np.ones(3, np.float32)})


def test_keyword_and_builtin_names() -> None:
    g = Graph("class")
    lam = g.add_input("lambda", tt("f32", ["B", 2]))
    cls = g.add_param("class", tt("f32", [2]), Init("ones"))
    self_ = emit1(g, "mul", [lam, cls], name="self")
    torch_ = emit1(g, "tanh", [self_], name="torch")
    g.outputs += [("None", torch_), ("self", self_)]
    model = onnx_backend.to_model(g)
    onnx.checker.check_model(model, full_check=True)
    assert [o.name for o in model.graph.output] == ["None", "self"]
    assert_agrees(g, {"lambda": np.array([[0.5, -1.0]], np.float32)})


def test_outputs_that_are_inputs_params_or_repeated() -> None:
    g = Graph("Pass")
    x = g.add_input("x", tt("f32", ["B", 3]))
    w = g.add_param("w", tt("f32", [3]), Init("uniform"))
    y = emit1(g, "mul", [x, w], name="y")
    g.outputs += [("y", y), ("y_again", y), ("x_out", x), ("w_out", w), ("x", x)]
    model = onnx_backend.to_model(g)
    onnx.checker.check_model(model, full_check=True)
    assert [o.name for o in model.graph.output] == ["y", "y_again", "x_out", "w_out", "x"]
    assert_agrees(g, {"x": np.arange(6, dtype=np.float32).reshape(2, 3)})


def test_output_named_like_another_input_is_an_error() -> None:
    g = Graph("Clash")
    x = g.add_input("x", tt("f32", [2]))
    g.add_input("z", tt("f32", [2]))
    g.outputs.append(("z", emit1(g, "neg", [x])))
    with pytest.raises(LoweringError, match="output 'z'"):
        onnx_backend.to_model(g)


def test_narrow_floats_compute_wide() -> None:
    g = Graph("Half")
    x = g.add_input("x", tt("f16", ["B", 4]))
    y = g.add_input("y", tt("bf16", ["B", 4]))
    h = emit1(g, "softmax", [emit1(g, "mul", [x, emit1(g, "exp", [x])])])
    g.outputs += [("h", h), ("m", emit1(g, "sum", [emit1(g, "tanh", [y])], {"axis": 1}))]
    onnx.checker.check_model(onnx_backend.to_model(g), full_check=True)
    feeds = {"x": np.linspace(-2, 2, 8, dtype=np.float16).reshape(2, 4), "y": np.linspace(-1, 1, 8).astype(DType.bf16.numpy).reshape(2, 4)}
    got, want = onnx_backend.Runner(g, device="cpu")(**feeds), NumpyRunner(g)(**feeds)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype
        np.testing.assert_allclose(a.astype(np.float32), b.astype(np.float32), rtol=1e-2, atol=1e-2)


def test_load_params_rebuilds_the_session() -> None:
    g = mlp_graph()
    run = onnx_backend.Runner(g, device="cpu")
    x = np.ones((2, 4), np.float32)
    before = run(x=x)[0]
    run.load_params({"stats": np.full(3, 10.0, np.float32)})
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in run.model.graph.initializer}
    np.testing.assert_array_equal(inits["stats"], np.full(3, 10.0, np.float32))
    after = run(x=x)[0]
    np.testing.assert_allclose((after - before)[0], 10.0 - init_params(g)["stats"], rtol=1e-5, atol=1e-5)


# -- devices ----------------------------------------------------------------------------


def test_device_cuda_without_cuda_is_a_usage_error() -> None:
    if onnx_backend.cuda_usable():
        run = onnx_backend.Runner(mlp_graph(), device="cuda")
        assert run.providers[0] == "CUDAExecutionProvider"
        return
    with pytest.raises(UsageError, match="no usable CUDA") as e:
        onnx_backend.Runner(mlp_graph(), device="cuda")
    assert e.value.hint
    with pytest.raises(UsageError, match="unknown device"):
        onnx_backend.Runner(mlp_graph(), device="tpu")


_FALLBACK_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import dlir.backends.onnx as ob
    assert "onnxruntime" not in sys.modules, "importing the backend loaded onnxruntime"
    from dlir.ir.builder import emit1
    from dlir.ir.graph import Graph
    from dlir.ir.types import Dim, TensorType
    g = Graph("M")
    x = g.add_input("x", TensorType.make("f32", ["B", "T", 2]))
    g.outputs.append(("y", emit1(g, "reshape", [x], {"shape": [Dim.of("B") * Dim.of("T"), -1]})))
    run = ob.Runner(g)  # device="auto"
    run(x=np.ones((2, 3, 2), np.float32))
    run(x=np.ones((4, 1, 2), np.float32))
    try:
        ob.Runner(g, device="cuda")
    except Exception as e:
        print(type(e).__name__)
    print(run.providers[0])
    """
)


def test_auto_device_leaves_stderr_clean() -> None:
    proc = subprocess.run([sys.executable, "-c", _FALLBACK_SCRIPT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", f"unexpected stderr:\n{proc.stderr}"
    lines = proc.stdout.split()
    if lines[-1] == "CPUExecutionProvider":
        assert lines[0] == "UsageError"
    else:
        assert lines[-1] == "CUDAExecutionProvider"


# -- scan: one Scan node, symbolic sequence length ---------------------------------------------

def rnn_graph(reverse: bool = False, axis: int = 1) -> Graph:
    """An Elman RNN as one scan; emits of another rank (a symbolic reshape) and of x_t itself."""
    g = Graph("Rnn")
    xs = g.add_input("xs", tt("f32", ["B", "T", 3] if axis == 1 else ["T", "B", 3]))
    h0 = g.add_input("h0", tt("f32", ["B", 4]))
    w = g.add_param("w_ih", tt("f32", [3, 4]), Init("glorot_uniform"))
    u = g.add_param("w_hh", tt("f32", [4, 4]), Init("glorot_uniform"))
    scale = emit1(g, "exp", [emit1(g, "mean", [h0])], name="scale")  # an outer result read by the body
    body = scan_body(g, step_type(xs.type, axis), [h0.type], ["x_t", "h"])
    x_t, h = body.inputs
    pre = emit1(body, "add", [emit1(body, "matmul", [x_t, w]), emit1(body, "matmul", [h, u])])
    h2 = emit1(body, "mul", [emit1(body, "tanh", [pre]), scale])
    grid = emit1(body, "reshape", [h2], {"shape": [Dim.of("B"), 2, 2]})
    body.outputs = [("h", h2), ("ys", h2), ("grid", grid), ("seen", x_t)]
    ys, grid_s, seen, last = emit_scan(g, xs, [h0], body, axis=axis, reverse=reverse, loc=LOC)
    g.outputs += [("ys", ys), ("grid", grid_s), ("seen", seen), ("last", last)]
    return g


def _rnn_feeds(t: int, axis: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed + t)
    shape = (2, t, 3) if axis == 1 else (t, 2, 3)
    return {"xs": rng.standard_normal(shape).astype(np.float32), "h0": rng.standard_normal((2, 4)).astype(np.float32)}


def _all_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    out = []
    for n in graph.node:
        out.append(n)
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                out += _all_nodes(a.g)
    return out


@pytest.mark.parametrize("reverse, axis", [(False, 1), (True, 1), (True, 0)])
def test_scan_is_one_scan_node_serving_t3_and_t50(reverse: bool, axis: int) -> None:
    g = rnn_graph(reverse, axis)
    model = onnx_backend.to_model(g)
    onnx.checker.check_model(model, full_check=True)
    scans = [n for n in model.graph.node if n.op_type == "Scan"]
    assert len(scans) == 1, [n.op_type for n in model.graph.node]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in scans[0].attribute}
    assert attrs["scan_input_axes"] == [axis] and attrs["scan_output_axes"] == [axis] * 3
    assert attrs["scan_input_directions"] == [int(reverse)] == attrs["scan_output_directions"][:1]
    # Not unrolled: each body op exists once, inside the body.
    assert [n.op_type for n in model.graph.node].count("MatMul") == 0
    assert [n.op_type for n in _all_nodes(model.graph)].count("MatMul") == 2
    assert [i.name for i in attrs["body"].input] == ["h", "x_t"]  # states first, then the scan input
    assert "models/net.dlir:7:13" in scans[0].name
    # The sequence length stays symbolic: one model, any T.
    dims = {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output}
    assert dims["ys"] == (["B", "T", 4] if axis == 1 else ["T", "B", 4])
    run = onnx_backend.Runner(g, device="cpu")
    for t in (3, 50):
        assert_agrees(g, _rnn_feeds(t, axis), run)


def test_scan_reverse_keeps_emits_aligned_with_inputs() -> None:
    g = rnn_graph(reverse=True)
    feeds = _rnn_feeds(5, 1)
    out = dict(zip(g.output_names(), onnx_backend.Runner(g, device="cpu")(**feeds)))
    np.testing.assert_array_equal(out["seen"], feeds["xs"])  # ys[t] comes from x_t
    np.testing.assert_allclose(out["ys"][:, 0], out["last"], rtol=1e-6)  # t = 0 is the last step


def test_nested_scans_and_pass_through_results() -> None:
    """A scan in a body; a carry passed through unchanged; a body emitting its incoming carry."""
    g = Graph("Nested")
    xs = g.add_input("xs", tt("f32", ["B", "T", 5]))
    k = g.add_input("k", tt("f32", ["B"]))
    outer = scan_body(g, step_type(xs.type, 1), [k.type, k.type], ["x_t", "acc", "keep"])
    x_t, acc, keep = outer.inputs
    inner = scan_body(g, step_type(x_t.type, 1), [acc.type], ["x_f", "a"])
    x_f, a = inner.inputs
    inner.outputs = [("a", emit1(inner, "add", [emit1(inner, "add", [a, x_f]), k]))]
    (acc2,) = emit_scan(outer, x_t, [acc], inner, axis=1, reverse=True)
    outer.outputs = [("acc", acc2), ("keep", keep), ("before", acc), ("keep_too", keep)]
    before, keep_too, acc_last, keep_last = emit_scan(g, xs, [k, k], outer, axis=1)
    g.outputs += [("before", before), ("keep_too", keep_too), ("acc", acc_last), ("keep", keep_last)]
    model = onnx_backend.to_model(g)
    onnx.checker.check_model(model, full_check=True)
    assert [n.op_type for n in _all_nodes(model.graph)].count("Scan") == 2
    run = onnx_backend.Runner(g, device="cpu")
    for t in (3, 50):
        rng = np.random.default_rng(t)
        assert_agrees(g, {"xs": rng.standard_normal((2, t, 5)).astype(np.float32), "k": np.ones(2, np.float32)}, run)


def test_scan_without_emits_or_without_carries() -> None:
    g = Graph("Edges")
    xs = g.add_input("xs", tt("f32", ["T", 3]))
    c0 = g.add_input("c0", tt("bf16", [3]))
    n0 = g.add_input("n0", tt("i64", []))  # a rank-0 carry next to a bf16 one
    counting = scan_body(g, step_type(xs.type, 0), [c0.type, n0.type], ["x_t", "c", "n"])
    x_t, c, n = counting.inputs
    one = emit1(counting, "constant", [], {"value": 1, "dtype": DType.i64})
    summed = emit1(counting, "add", [c, emit1(counting, "cast", [x_t], {"dtype": DType.bf16})])
    counting.outputs = [("c", summed), ("n", emit1(counting, "add", [n, one]))]
    c_last, n_last = emit_scan(g, xs, [c0, n0], counting, axis=0)
    stateless = scan_body(g, step_type(xs.type, 0), [], ["x_u"])
    stateless.outputs = [("e", emit1(stateless, "exp", [stateless.inputs[0]]))]
    (ex,) = emit_scan(g, xs, [], stateless, axis=0, reverse=True)
    g.outputs += [("c", c_last), ("n", n_last), ("ex", ex)]
    onnx.checker.check_model(onnx_backend.to_model(g), full_check=True)
    run = onnx_backend.Runner(g, device="cpu")
    for t in (3, 50):
        xs_v = np.full((t, 3), 0.5, np.float32)
        c, n, ex = run(xs=xs_v, c0=np.zeros(3, DType.bf16.numpy), n0=np.array(2, np.int64))
        assert n.shape == () and int(n) == t + 2
        np.testing.assert_array_equal(c.astype(np.float32), np.full(3, 0.5 * t, np.float32))
        np.testing.assert_allclose(ex, np.exp(xs_v), rtol=1e-6)


def test_scan_from_the_language() -> None:
    import dlir

    prog = dlir.loads(
        """
        model Gru1(xs: f32[B, T, 2]) -> (ys: f32[B, T, 2], h: f32[B, 2]) {
            param w: f32[2, 2] = glorot_uniform
            ys, h = scan reverse x_t in xs along 1 carry h = xs[:, 0] * 0.0 {
                h = sigmoid(x_t @ w) * h + x_t
                emit h
            }
            return (ys, h)
        }
        """,
        "gru1.dlir",
    )
    g = prog.graph("Gru1")
    run = onnx_backend.Runner(g, device="cpu")
    assert [n.op_type for n in run.model.graph.node].count("Scan") == 1
    for t in (3, 50):
        assert_agrees(g, {"xs": np.random.default_rng(t).standard_normal((4, t, 2)).astype(np.float32)}, run)


# -- conv and pooling: where ONNX Runtime's kernels or ONNX's shape rules differ from the spec -------


def _pool_graph(op: str, dtype: str, dims: list, **attrs: object) -> Graph:
    g = Graph("Pool")
    x = g.add_input("x", tt(dtype, ["B", 2, *dims]))
    g.outputs.append(("y", emit1(g, op, [x], attrs)))
    return g


POOLS = [
    # ceil_mode whose last window would start in the padding: ONNX's opset-18 shape inference keeps it.
    ("max_pool2d", "f32", [4, 5], dict(kernel=2, stride=3, padding=1, ceil_mode=True)),
    ("avg_pool2d", "f32", [4, 5], dict(kernel=2, stride=3, padding=1, ceil_mode=True)),
    # Symbolic H, W with stride 2: the window count is only known at run time.
    ("max_pool2d", "f32", ["H", "W"], dict(kernel=3, stride=2, padding=1, ceil_mode=True)),
    ("avg_pool2d", "f32", ["H", "W"], dict(kernel=3, stride=2, padding=[1, 0, 1, 1], ceil_mode=True)),
    ("avg_pool2d", "f32", ["H", "W"], dict(kernel=2, stride=3, padding=1, ceil_mode=True, count_include_pad=False)),
    ("avg_pool2d", "f64", ["H", "W"], dict(kernel=3, stride=2, padding=1, ceil_mode=True)),
    ("avg_pool2d", "f64", [8, 6], dict(kernel=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    # A dilated window's pad may reach its kernel size (PyTorch allows half the extent; ONNX Runtime refuses).
    ("max_pool2d", "f32", ["H", 9], dict(kernel=2, stride=2, dilation=3, padding=2, ceil_mode=True)),
]


@pytest.mark.parametrize("op, dtype, dims, attrs", POOLS, ids=lambda p: str(p))
def test_pools_at_the_edges_agree_and_pass_the_checker(op: str, dtype: str, dims: list, attrs: dict) -> None:
    g = _pool_graph(op, dtype, dims, **attrs)
    model = onnx_backend.to_model(g)
    onnx.checker.check_model(model, full_check=True)
    for n in model.graph.node:  # windows are made explicit: no node relies on ceil_mode
        assert all(a.name != "ceil_mode" or a.i == 0 for a in n.attribute)
    run = onnx_backend.Runner(g, device="cpu")
    rng = np.random.default_rng(0)
    for hw in ((8, 9), (7, 9), (5, 9)) if "H" in dims else (tuple(dims),):
        x = rng.standard_normal((2, 2, *hw)).astype(DType(dtype).numpy)
        got, want = run(x=x), NumpyRunner(g)(x=x)
        assert got.shape == want.shape
        tol = 1e-5 if dtype == "f32" else 1e-10
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("groups, dims", [(1, [7, 6]), (2, ["H", "W"])])
def test_conv2d_f64_is_built_from_window_slices(groups: int, dims: list) -> None:
    # ONNX Runtime has no double Conv: the f64 lowering contracts window slices in f64.
    g = Graph("ConvF64")
    x = g.add_input("x", tt("f64", ["B", 4, *dims]))
    w = g.add_input("w", tt("f64", [6, 4 // groups, 3, 2]))
    bias = g.add_input("b", tt("f64", [6]))
    attrs = dict(stride=[2, 1], dilation=[1, 2], padding=[1, 0, 2, 1], groups=groups)
    g.outputs.append(("y", emit1(g, "conv2d", [x, w, bias], attrs)))
    model = onnx_backend.to_model(g)
    onnx.checker.check_model(model, full_check=True)
    assert "Conv" not in {n.op_type for n in model.graph.node}
    run = onnx_backend.Runner(g, device="cpu")
    rng = np.random.default_rng(1)
    for hw in ((7, 6), (9, 8)) if "H" in dims else ((7, 6),):
        feeds = {"x": rng.standard_normal((2, 4, *hw)), "w": rng.standard_normal((6, 4 // groups, 3, 2))}
        feeds["b"] = rng.standard_normal(6)
        np.testing.assert_allclose(run(**feeds), NumpyRunner(g)(**feeds), rtol=1e-10, atol=1e-10)


def test_one_hot_gives_zero_rows_out_of_range() -> None:
    g = Graph("Hot")
    i = g.add_input("i", tt("i64", ["B"]))
    g.outputs.append(("y", emit1(g, "one_hot", [i], {"n": 3})))
    model = onnx_backend.to_model(g)
    assert "OneHot" not in {n.op_type for n in model.graph.node}  # OneHot wraps negative indices
    y = onnx_backend.Runner(g, device="cpu")(i=np.array([-1, 0, 2, 3, -3], np.int64))
    np.testing.assert_array_equal(y, [[0, 0, 0], [1, 0, 0], [0, 0, 1], [0, 0, 0], [0, 0, 0]])
