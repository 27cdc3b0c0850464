"""The TensorFlow backend: generated tf.Module source, runner, SavedModel and tf2onnx round trips.

Per-op agreement over many shapes lives in tests/test_ops.py; here each test
guards one way the backend as a whole could go wrong. TensorFlow is imported
once per process (about 5 s), so graphs and runners are shared per module.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from dlir.errors import SourceLoc, UsageError
from dlir.ir.builder import emit, emit1
from dlir.ir.graph import Graph, Init
from dlir.ir.types import Dim, DType, TensorType
from dlir.ops import lowered_ops
from dlir.runtime.runner import NumpyRunner
from recurrent_steps import RECURRENT_LOSSES, assert_three_steps_match_numpy, recurrent_loss_graph

TOL = {"rtol": 1e-5, "atol": 1e-5}


def _mlp() -> Graph:
    """x: f32[B, 4] -> (logits f32[B, 3], probs f32[B, 3], pred i64[B]) with reshapes over B."""
    g = Graph("MLP")
    x = g.add_input("x", TensorType.make("f32", ["B", 4]))
    w1 = g.add_param("fc1.w", TensorType.make("f32", [4, 8]), Init("glorot_uniform"))
    b1 = g.add_param("fc1.b", TensorType.make("f32", [8]), Init("normal", (("std", 0.5),)))
    scale = g.add_param("blk.0.scale", TensorType.make("f32", [2, 4]), Init("uniform", (("lo", 0.5), ("hi", 1.5))), buffer=True)
    w2 = g.add_param("fc2.w", TensorType.make("f32", [8, 3]), Init("he_normal"))
    loc = SourceLoc("mlp.dlir", 7, 9)
    h = emit1(g, "relu", [emit1(g, "add", [emit1(g, "matmul", [x, w1], loc=loc), b1])], name="h")
    h3 = emit1(g, "reshape", [h], {"shape": [Dim.of("B"), 2, -1]})
    s = emit1(g, "mul", [emit1(g, "softmax", [h3]), scale])
    flat = emit1(g, "reshape", [s], {"shape": [Dim.of("B"), -1]})
    logits = emit1(g, "matmul", [flat, w2])
    g.outputs += [
        ("logits", logits),
        ("probs", emit1(g, "softmax", [logits])),
        ("pred", emit1(g, "argmax", [logits])),
    ]
    return g


def _awkward_names() -> Graph:
    """Inputs, params, values and outputs named like Python keywords, builtins and modules."""
    g = Graph("class")
    lam = g.add_input("lambda", TensorType.make("f32", ["B", 3]))
    cls = g.add_input("class", TensorType.make("f32", ["B", 3]))
    params = [
        g.add_param(n, TensorType.make("f32", [3]), Init("normal"))
        for n in ("lambda.w", "None", "self", "tf", "np", "__init__", "variables", "name", "PARAMS", "load_params")
    ]
    v = emit1(g, "add", [lam, cls], name="B")  # a value named like the symbol B
    for i, p in enumerate(params):
        v = emit1(g, "add", [v, p], name=["tf", "np", "self", "None", "layer_norm"][i % 5])
    r = emit1(g, "reshape", [v], {"shape": [Dim.of("B"), 3, 1]}, name="__init__")
    g.outputs += [("None", r), ("self", params[2]), ("tf", lam)]
    return g


# -- without TensorFlow ------------------------------------------------------------------


def test_every_lowered_op_has_an_emitter() -> None:
    from dlir.backends.tensorflow import EMITTERS

    missing = sorted(set(lowered_ops()) - set(EMITTERS))
    assert not missing, f"ops without a tensorflow lowering: {missing}"


def test_generate_needs_no_tensorflow() -> None:
    code = textwrap.dedent(
        """
        import sys
        from dlir.ir.builder import emit1
        from dlir.ir.graph import Graph, Init
        from dlir.ir.types import TensorType
        import dlir.backends.tensorflow as T

        g = Graph("M")
        x = g.add_input("x", TensorType.make("f32", ["B", 2]))
        w = g.add_param("w", TensorType.make("f32", [2, 2]), Init("zeros"))
        g.outputs.append(("y", emit1(g, "matmul", [x, w])))
        src = T.generate(g)
        assert isinstance(src, bytes) and T.SUFFIX == ".py" and T.Runner and T.EMITTERS
        assert "tensorflow" not in sys.modules, "importing or generating pulled in tensorflow"
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_generated_source_reads_like_code() -> None:
    from dlir.backends.tensorflow import generate

    src = generate(_mlp()).decode("utf-8")
    lines = src.splitlines()
    assert lines[0].startswith("#")
    assert "import numpy as np" in lines and "import tensorflow as tf" in lines
    assert "class MLP(tf.Module):" in lines
    assert "tf.keras" not in src
    assert "tf.TensorSpec([None, 4], tf.float32, name='x')," in src
    assert "tf.reshape(h, [B, 2, -1])" in src  # B read off x at run time
    assert "B = tf.shape(x)[0]" in src
    assert "  # mlp.dlir:7:9" in src  # the source position survives
    assert "trainable=False, name='blk.0.scale')" in src
    ast.parse(src)


def test_names_cannot_inject_code() -> None:
    from dlir.backends.tensorflow import generate

    evil = 'w"); import os; os.system("echo pwned") #\n'
    g = Graph("M\nimport os")
    x = g.add_input(evil, TensorType.make("f32", [2]))
    p = g.add_param(evil + "p", TensorType.make("f32", [2]), Init("zeros"))
    g.outputs.append((evil, emit1(g, "add", [x, p])))
    tree = ast.parse(generate(g).decode("utf-8"))
    imports = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert imports == ["math", "zlib", "numpy", "tensorflow"]  # the seeded init needs math and zlib
    assert not any(isinstance(n, ast.Attribute) and n.attr == "system" for n in ast.walk(tree))


def test_symbol_not_readable_from_inputs_is_a_lowering_error() -> None:
    from dlir.backends.tensorflow import generate
    from dlir.errors import LoweringError

    g = Graph("M")
    x = g.add_input("x", TensorType.make("f32", [Dim.of("B") * Dim.of("T"), 4]))
    g.outputs.append(("y", emit1(g, "reshape", [x], {"shape": [Dim.of("B"), -1]}, loc=SourceLoc("m.dlir", 3, 5))))
    with pytest.raises(LoweringError) as e:
        generate(g)
    assert e.value.loc == SourceLoc("m.dlir", 3, 5) and e.value.hint


# -- with TensorFlow --------------------------------------------------------------------

tf = pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def mlp() -> Graph:
    return _mlp()


@pytest.fixture(scope="module")
def runner(mlp: Graph):  # type: ignore[no-untyped-def]
    from dlir.backends.tensorflow import Runner

    return Runner(mlp, seed=0)


def _batch(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 4)).astype(np.float32)


def _assert_agree(got: tuple, want: tuple) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, **TOL)


def test_mlp_agrees_with_numpy_at_two_batch_sizes_with_one_trace(runner, mlp: Graph) -> None:  # type: ignore[no-untyped-def]
    ref = NumpyRunner(mlp, seed=0)
    for n in (2, 7):
        x = _batch(n, seed=n)
        _assert_agree(runner(x=x), ref(x=x))
    # input_signature with None for B: one concrete function serves every batch size.
    assert runner.module.__call__.experimental_get_tracing_count() == 1


def test_variables_are_named_and_seeded_like_the_reference(runner, mlp: Graph) -> None:  # type: ignore[no-untyped-def]
    want = NumpyRunner(mlp, seed=0).params
    got = {v.name.removesuffix(":0"): v for v in runner.module.variables}
    assert set(got) == set(want) == {"fc1.w", "fc1.b", "blk.0.scale", "fc2.w"}
    for name, v in got.items():
        np.testing.assert_array_equal(v.numpy(), want[name])
    assert not got["blk.0.scale"].trainable and got["fc1.w"].trainable
    params = runner.module.get_params()
    assert set(params) == set(want)


def test_other_seed_and_loaded_params_reach_the_module(runner, mlp: Graph) -> None:  # type: ignore[no-untyped-def]
    from dlir.backends.tensorflow import Runner

    other = Runner(mlp, seed=3)
    x = _batch(3)
    _assert_agree(other(x=x), NumpyRunner(mlp, seed=3)(x=x))
    other.load_params(runner.params)  # pushed into the tf.Variables
    _assert_agree(other(x=x), runner(x=x))
    np.testing.assert_array_equal(other.module.get_params()["fc2.w"], runner.params["fc2.w"])


def test_awkward_names_compile_import_run_and_save(tmp_path: Path) -> None:
    from dlir.backends.tensorflow import Runner

    g = _awkward_names()
    r = Runner(g, seed=1)
    feeds = {"lambda": _batch(2)[:, :3].copy(), "class": _batch(2, 1)[:, :3].copy()}
    want = NumpyRunner(g, seed=1)(**feeds)
    _assert_agree(r(**feeds), want)
    from dlir.backends.tensorflow.codegen import variable_name

    names = {v.name.removesuffix(":0") for v in r.module.variables}
    assert names == {variable_name(p.name) for p in g.params}
    assert {"lambda.w", "None", "self", "tf", "np", "init__"} <= names  # TF names cannot start with "_"
    assert set(r.module.get_params()) == {p.name for p in g.params}
    assert r.module.name_scope is not None and callable(r.module.load_params)  # tf.Module's own attributes intact
    # The serving signature turns input names into keyword arguments: keywords must not reach it.
    tf.saved_model.save(r.module, str(tmp_path / "sm"))
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    _assert_agree(tuple(t.numpy() for t in loaded(feeds["lambda"], feeds["class"])), want)
    _, kwargs = loaded.signatures["serving_default"].structured_input_signature
    assert set(kwargs) == {"lambda_", "class_"}


def test_tf_module_attribute_list_is_complete() -> None:
    from dlir.backends.tensorflow.codegen import TF_MODULE_ATTRS

    own = {n for n in dir(tf.Module) if not n.startswith("__")} | set(vars(tf.Module()))
    assert own <= TF_MODULE_ATTRS, sorted(own - TF_MODULE_ATTRS)


def test_numeric_traps_truncation_ties_and_int_ops() -> None:
    from dlir.backends.tensorflow import Runner

    g = Graph("Traps")
    a = g.add_input("a", TensorType.make("i64", [6]))
    b = g.add_input("b", TensorType.make("i64", [6]))
    f = g.add_input("f", TensorType.make("f32", [6]))
    m = g.add_input("m", TensorType.make("f32", [2, 3]))
    outs = [
        emit1(g, "div", [a, b]),  # truncates toward zero
        emit1(g, "cast", [f], {"dtype": DType.i32}),  # truncates toward zero
        emit1(g, "argmax", [m]),  # ties: first index, i64
        emit1(g, "clip", [a], {"min": -2.5, "max": 4.5}),
        emit1(g, "var", [m], {"axis": 1, "correction": 1}),
        emit1(g, "gelu", [f], {"approximate": "tanh"}),
        emit1(g, "leaky_relu", [f], {"alpha": 2.0}),
        emit(g, "split", [f], {"sizes": [4, 2]})[1],
    ]
    g.outputs += [(f"o{i}", v) for i, v in enumerate(outs)]
    feeds = {
        "a": np.array([7, -7, 7, -7, 0, 5], np.int64),
        "b": np.array([2, 2, -2, -2, 3, -1], np.int64),
        "f": np.array([-1.7, 1.7, -0.5, 2.5, -3.0, 0.2], np.float32),
        "m": np.array([[1, 3, 3], [2, 2, 2]], np.float32),
    }
    got = Runner(g)(**feeds)
    _assert_agree(got, NumpyRunner(g)(**feeds))
    np.testing.assert_array_equal(got[0], [3, -3, -3, 3, 0, -5])
    np.testing.assert_array_equal(got[2], [1, 0])


def test_cuda_without_gpu_is_a_usage_error(mlp: Graph) -> None:
    from dlir.backends.tensorflow import Runner

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is visible")
    with pytest.raises(UsageError) as e:
        Runner(mlp, device="cuda")
    assert e.value.hint
    with pytest.raises(UsageError):
        Runner(mlp, device="tpu")


@pytest.fixture(scope="module")
def fresh_module(runner):  # type: ignore[no-untyped-def]
    """A second instance of the generated class (its own tf.function trace)."""
    return getattr(runner.py_module, "MLP")(seed=0)


def test_saved_model_round_trip(fresh_module, runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    x = _batch(5)
    tf.saved_model.save(fresh_module, str(tmp_path / "sm"))
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    got = tuple(t.numpy() for t in loaded(x))
    _assert_agree(got, runner(x=x))
    assert "serving_default" in loaded.signatures


def test_generated_file_imports_on_its_own(runner, mlp: Graph, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """In a fresh process, from a plain file: import, build with the seed, run, load weights."""
    (tmp_path / "mlp_model.py").write_text(runner.source, encoding="utf-8")
    x = _batch(4)
    np.save(tmp_path / "x.npy", x)
    want = NumpyRunner(mlp, seed=0)(x=x)
    np.savez(tmp_path / "want.npz", *want)
    code = textwrap.dedent(
        """
        import numpy as np
        import mlp_model
        m = mlp_model.MLP(seed=0)
        got = m(np.load("x.npy"))
        want = np.load("want.npz")
        for i, g in enumerate(got):
            np.testing.assert_allclose(g.numpy(), want[f"arr_{i}"], rtol=1e-5, atol=1e-5)
        m.load_params({k: v * 0 for k, v in m.get_params().items()})
        assert float(np.abs(m(np.load("x.npy"))[0].numpy()).max()) == 0.0
        print("ok")
        """
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-3000:]


def test_tf2onnx_round_trip_agrees_with_numpy(fresh_module, mlp: Graph) -> None:  # type: ignore[no-untyped-def]
    tf2onnx = pytest.importorskip("tf2onnx")
    ort = pytest.importorskip("onnxruntime")
    fn = fresh_module.__call__
    model, _ = tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=17)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["x"]
    ref = NumpyRunner(mlp, seed=0)
    for n in (1, 6):
        x = _batch(n, seed=10 + n)
        _assert_agree(tuple(sess.run(None, {"x": x})), ref(x=x))


# -- images: channels-last inside, NCHW outside ------------------------------------------------


def _conv_stack(residual: bool = False) -> Graph:
    """x: f32[B, 3, 12, 12] -> conv -> relu -> conv ("same") [+ conv, + bias [C,1,1], batch_norm] -> max_pool."""
    g = Graph("ConvStack")
    x = g.add_input("x", TensorType.make("f32", ["B", 3, 12, 12]))
    w1 = g.add_param("c1.w", TensorType.make("f32", [8, 3, 3, 3]), Init("he_normal"))
    b1 = g.add_param("c1.b", TensorType.make("f32", [8]), Init("normal"))
    w2 = g.add_param("c2.w", TensorType.make("f32", [8, 8, 3, 3]), Init("he_normal"))
    h = emit1(g, "relu", [emit1(g, "conv2d", [x, w1, b1], {"padding": 1})])
    y = emit1(g, "conv2d", [h, w2], {"padding": "same"})
    if residual:
        w3 = g.add_param("c3.w", TensorType.make("f32", [8, 8, 1, 1]), Init("he_normal"))
        b3 = g.add_param("c3.b", TensorType.make("f32", [8, 1, 1]), Init("normal"))
        positive = Init("uniform", (("lo", 0.5), ("hi", 1.5)))
        bn = [g.add_param(f"bn.{n}", TensorType.make("f32", [8]), positive) for n in ("g", "b", "m", "v")]
        y = emit1(g, "add", [emit1(g, "add", [y, emit1(g, "conv2d", [h, w3])]), b3])
        y = emit1(g, "batch_norm", [y, *bn])
    g.outputs.append(("y", emit1(g, "max_pool2d", [y], {"kernel": 2})))
    return g


def _transposes(fn) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """(transposes of activations, transposes of variables) in a tf.function's traced graph."""
    ops = [op for op in fn.get_concrete_function().graph.get_operations() if op.type == "Transpose"]
    weights = sum(1 for op in ops if op.inputs[0].op.type == "ReadVariableOp")
    return len(ops) - weights, weights


@pytest.mark.parametrize("residual", [False, True], ids=["conv_relu_conv_pool", "residual_bias_batchnorm"])
def test_conv_stack_transposes_only_at_its_ends(residual: bool) -> None:
    from dlir.backends.tensorflow import Runner

    g = _conv_stack(residual)
    r, ref = Runner(g, seed=0), NumpyRunner(g, seed=0)
    for n in (2, 5):
        x = np.random.default_rng(n).standard_normal((n, 3, 12, 12)).astype(np.float32)
        _assert_agree((r(x=x),), (ref(x=x),))
    # NCHW -> NHWC once for x, NHWC -> NCHW once for y; the weights are read as [kh, kw, C, O].
    acts, weights = _transposes(r.module.__call__)
    assert acts == 2, r.source
    assert weights == (3 if residual else 2)
    assert "perm=[0, 3, 1, 2]" not in r.source.split("tf.nn.max_pool2d")[0]  # nothing goes back to NCHW mid-stack


def test_padding_becomes_same_valid_or_an_explicit_pad() -> None:
    from dlir.backends.tensorflow import generate

    g = Graph("Pads")
    x = g.add_input("x", TensorType.make("f32", ["B", 2, 9, 8]))
    w = g.add_param("w", TensorType.make("f32", [4, 2, 4, 4]), Init("he_normal"))
    outs = [
        emit1(g, "conv2d", [x, w], {"padding": "same", "stride": 2}),  # TF's SAME: the odd cell at the end
        emit1(g, "max_pool2d", [x], {"kernel": 3, "stride": 2, "padding": [1, 0, 0, 1]}),
        emit1(g, "avg_pool2d", [x], {"kernel": 3, "padding": 1, "count_include_pad": False}),
    ]
    g.outputs += [(f"o{i}", v) for i, v in enumerate(outs)]
    src = generate(g).decode("utf-8")
    conv, mp, ap = (ln for ln in src.splitlines() if "_nhwc = " in ln and "tf.transpose(x" not in ln)
    assert 'padding="SAME"' in conv and "tf.pad" not in conv
    assert "tf.pad(x_nhwc, [[0, 0], [1, 0], [0, 1], [0, 0]], constant_values=float('-inf'))" in mp
    assert 'padding="VALID"' in mp
    assert "avg_pool2d(x_nhwc" in ap and "count_include_pad=False" in ap  # the divisor counts real cells only


def test_pools_over_symbolic_sizes_with_ceil_mode() -> None:
    """Output sizes known only at run time: the ceil_mode overhang is computed in the graph."""
    from dlir.backends.tensorflow import Runner

    g = Graph("SymPools")
    x = g.add_input("x", TensorType.make("f32", ["B", 2, "H", "W"]))
    g.outputs += [
        ("a", emit1(g, "avg_pool2d", [x], {"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True})),
        ("m", emit1(g, "max_pool2d", [x], {"kernel": 2, "stride": 3, "padding": 1, "ceil_mode": True})),
        ("d", emit1(g, "max_pool2d", [x], {"kernel": 2, "stride": 2, "dilation": 2, "padding": 1})),
    ]
    r, ref = Runner(g), NumpyRunner(g)
    for h, w in ((7, 8), (4, 5), (6, 6)):
        x = np.random.default_rng(h).standard_normal((2, 2, h, w)).astype(np.float32)
        _assert_agree(r(x=x), ref(x=x))
    assert r.module.__call__.experimental_get_tracing_count() == 1


# -- scan: one graph loop -------------------------------------------------------------------


def _elman(reverse: bool) -> Graph:
    """ys, h = scan over x [B, T, 3] along 1 with h = tanh(x_t @ w + h @ u + b); emits h and h * 2."""
    from dlir.ir.scan import emit_scan, scan_body, step_type

    g = Graph("Elman")
    xs = g.add_input("xs", TensorType.make("f32", ["B", "T", 3]))
    h0 = g.add_input("h0", TensorType.make("f32", ["B", 4]))
    w = g.add_param("w", TensorType.make("f32", [3, 4]), Init("glorot_uniform"))
    u = g.add_param("u", TensorType.make("f32", [4, 4]), Init("glorot_uniform"))
    b = g.add_param("b", TensorType.make("f32", [4]), Init("normal", (("std", 0.5),)))
    body = scan_body(g, step_type(xs.type, 1), [h0.type], ["x_t", "h"])
    x_t, h = body.inputs
    pre = emit1(body, "add", [emit1(body, "add", [emit1(body, "matmul", [x_t, w]), emit1(body, "matmul", [h, u])]), b])
    h2 = emit1(body, "tanh", [pre])
    body.outputs = [("h", h2), ("ys", h2), ("twice", emit1(body, "add", [h2, h2]))]
    ys, twice, last = emit_scan(g, xs, [h0], body, axis=1, reverse=reverse)
    g.outputs += [("ys", ys), ("twice", twice), ("h", last)]
    return g


def _scan_feeds(b: int, t: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(t)
    xs, h0 = rng.standard_normal((b, t, 3)), rng.standard_normal((b, 4))
    return {"xs": xs.astype(np.float32), "h0": h0.astype(np.float32)}


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_scan_is_one_graph_loop_for_every_length(reverse: bool) -> None:
    from dlir.backends.tensorflow import Runner

    g = _elman(reverse)
    r, ref = Runner(g, seed=0), NumpyRunner(g, seed=0)
    for b, t in ((2, 3), (3, 50)):
        _assert_agree(r(**_scan_feeds(b, t)), ref(**_scan_feeds(b, t)))
    fn = r.module.__call__
    assert fn.experimental_get_tracing_count() == 1  # one trace serves T=3 and T=50
    graph = fn.get_concrete_function().graph
    loops = [op for op in graph.get_operations() if op.type in ("While", "StatelessWhile")]
    assert len(loops) == 1, "the scan must be a graph loop"
    assert not any(op.type == "Tanh" for op in graph.get_operations())  # the body is not unrolled outside
    library = {f.signature.name: f for f in graph.as_graph_def().library.function}
    body_ops = [n.op for n in library[loops[0].get_attr("body").name].node_def]
    assert body_ops.count("Tanh") == 1 and body_ops.count("MatMul") == 2  # the body, once


def test_reverse_scan_survives_tf2onnx() -> None:
    """tf2onnx turns the loop into ONNX Loop; the emits are written in step order for it."""
    tf2onnx = pytest.importorskip("tf2onnx")
    ort = pytest.importorskip("onnxruntime")
    from dlir.backends.tensorflow import Runner

    g = _elman(reverse=True)
    runner = Runner(g, seed=0)  # holds the module: the tf.function keeps only a weak reference
    fn = runner.module.__call__
    model, _ = tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=17)
    assert any(n.op_type == "Loop" for n in model.graph.node)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = _scan_feeds(2, 7)
    _assert_agree(tuple(sess.run(None, feeds)), NumpyRunner(g, seed=0)(**feeds))


# (the LSTM's scans are two fused kernels in a training step: tests/test_lstm_training_kernels.py)
@pytest.mark.parametrize("sample, loss", [case for case in RECURRENT_LOSSES if case[0] != "lstm"])
def test_a_training_step_keeps_the_saved_steps_first_and_reads_each_as_a_slice(sample: str, loss: str) -> None:
    """The forward scan's saved values that the backward scan reads a step at a time stay stacked
    steps first (no transpose to the scan axis, no strided gather along it each step), forwards and
    backwards (the GRU tagger's reverse scan), with the numpy step's numbers."""
    import re

    from dlir.train.optim import SGD
    from dlir.train.trainer import Trainer

    g = recurrent_loss_graph(sample, loss)
    code = Trainer(g, SGD(lr=0.1), "tensorflow", device="cpu").runner.source
    assert "steps_first=(" in code
    sliced = set(re.findall(r"tf\.expand_dims\(tf\.gather\((saved_\w+), ", code))
    strided = {name for name, axis in re.findall(r"(?<!expand_dims\()tf\.gather\((saved_\w+), .*?, axis=(\d)\)", code)
               if axis != "0"}
    assert len(sliced) >= 3 and not sliced & strided, (sliced, strided)
    assert_three_steps_match_numpy(g, "tensorflow")
