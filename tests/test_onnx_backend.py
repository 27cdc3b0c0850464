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
