"""The torch target: generated nn.Module source, its runner, and the ONNX round trip.

Per-op agreement over many shapes lives in tests/test_ops.py; these tests cover
what is particular to the torch backend: the lowering table is complete, the
module tree gives the dotted state_dict keys and the seeded init, awkward names
compile, the file imports on its own, symbolic shapes follow the inputs, several
outputs come back in order, and ``torch.onnx.export`` of the module agrees; convs
and pools use torch's own padding where it fits and explicit padding where not;
a scan is one Python loop.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from dlir.errors import UsageError
from dlir.ir.builder import emit, emit1
from dlir.ir.graph import Graph, Init, Value
from dlir.ir.scan import emit_scan, scan_body, step_type
from dlir.ir.types import Dim, DType, TensorType
from dlir.ops import lowered_ops
from dlir.runtime.init import init_params
from dlir.runtime.runner import NumpyRunner, check_inputs
from recurrent_steps import RECURRENT_LOSSES, assert_three_steps_match_numpy, recurrent_loss_graph

torch = pytest.importorskip("torch")

from dlir.backends import torch as torch_backend  # noqa: E402

TOL = {"rtol": 1e-5, "atol": 1e-5}
REPO = Path(__file__).resolve().parents[1]


def t(dtype: str, shape: list[object]) -> TensorType:
    return TensorType.make(dtype, shape)  # type: ignore[arg-type]


def mlp() -> Graph:
    """x: f32[B, 2, 3] -> flatten by reshape [B, -1] -> dense+relu -> dense -> (logits, probs)."""
    g = Graph("MLP")
    x = g.add_input("x", t("f32", ["B", 2, 3]))
    w1 = g.add_param("fc1.w", t("f32", [6, 5]), Init("glorot_uniform"))
    b1 = g.add_param("fc1.b", t("f32", [5]), Init("normal", (("std", 0.1),)))
    w2 = g.add_param("fc2.w", t("f32", [5, 4]), Init("he_normal"))
    b2 = g.add_param("fc2.b", t("f32", [4]), Init("uniform", (("lo", -0.5), ("hi", 0.5))))
    h = emit1(g, "reshape", [x], {"shape": [Dim.of("B"), -1]}, name="flat")
    h = emit1(g, "relu", [emit1(g, "add", [emit1(g, "matmul", [h, w1]), b1])], name="h")
    logits = emit1(g, "add", [emit1(g, "matmul", [h, w2]), b2], name="logits")
    g.outputs += [("logits", logits), ("probs", emit1(g, "softmax", [logits], name="probs"))]
    return g


def feeds_for(g: Graph, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for v in g.inputs:
        shape = [batch if not d.is_static else d.value for d in v.type.shape]
        out[v.name] = rng.normal(size=shape).astype(v.type.dtype.numpy)
    return out


def assert_agree(got: object, ref: object) -> None:
    got_l = list(got) if isinstance(got, tuple) else [got]
    ref_l = list(ref) if isinstance(ref, tuple) else [ref]
    assert len(got_l) == len(ref_l)
    for a, b in zip(got_l, ref_l):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, **TOL)


# -- the table ---------------------------------------------------------------------------


def test_every_lowered_op_has_an_emitter() -> None:
    missing = sorted(set(lowered_ops()) - set(torch_backend.EMITTERS))
    assert not missing, f"ops without a torch lowering: {missing}"
    stale = sorted(set(torch_backend.EMITTERS) - set(lowered_ops()))
    assert not stale, f"torch emitters for ops that are not lowered: {stale}"
    assert torch_backend.SUFFIX == ".py"


def test_importing_and_generating_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from dlir.ir.graph import Graph\nfrom dlir.ir.types import TensorType\nfrom dlir.ir.builder import emit1\n"
        "import dlir.backends.torch as tb\n"
        "g = Graph('M'); x = g.add_input('x', TensorType.make('f32', [2]))\n"
        "g.outputs.append(('y', emit1(g, 'relu', [x])))\n"
        "assert b'class M(torch.nn.Module)' in tb.generate(g)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_nn_module_attribute_list_covers_installed_torch() -> None:
    # A param named like an nn.Module attribute must not be reached by attribute.
    from dlir.backends.torch.codegen import NN_MODULE_ATTRS

    public = {a for a in dir(torch.nn.Module()) if not a.startswith("_")}
    assert public <= NN_MODULE_ATTRS, sorted(public - NN_MODULE_ATTRS)


# -- agreement and weights -------------------------------------------------------------------


def test_mlp_with_symbolic_batch_agrees_at_two_batch_sizes() -> None:
    g = mlp()
    run, ref = torch_backend.Runner(g, seed=0, device="cpu"), NumpyRunner(g, seed=0)
    for batch in (1, 7):
        f = feeds_for(g, batch, seed=batch)
        out = run(**f)
        assert out[0].shape == (batch, 4)
        assert_agree(out, ref(**f))
    assert "B = x.shape[0]" in run.source and "flat = x.reshape(B, -1)" in run.source


def test_state_dict_keys_are_dotted_names_and_values_the_seeded_init() -> None:
    g = mlp()
    for seed in (0, 3):
        run = torch_backend.Runner(g, seed=seed, device="cpu")
        state = run.module.state_dict()
        assert list(state) == [p.name for p in g.params]
        want = init_params(g, seed)
        for name, value in state.items():
            np.testing.assert_array_equal(value.numpy(), want[name])
    assert not np.array_equal(init_params(g, 0)["fc1.w"], init_params(g, 3)["fc1.w"])


def test_load_params_reaches_the_module() -> None:
    g = mlp()
    run, ref = torch_backend.Runner(g, device="cpu"), NumpyRunner(g)
    new = {k: v * 2 + 1 for k, v in init_params(g, 5).items()}
    run.load_params(new)
    ref.load_params(new)
    f = feeds_for(g, 3)
    assert_agree(run(**f), ref(**f))
    np.testing.assert_array_equal(run.module.fc1.w.detach().numpy(), new["fc1.w"])


def test_outputs_share_no_memory_with_inputs_or_weights() -> None:
    g = Graph("Alias")
    x = g.add_input("x", t("f32", [3]))
    w = g.add_param("w", t("f32", [3]), Init("ones"))
    g.outputs += [("x_again", x), ("w_again", w)]
    run = torch_backend.Runner(g, device="cpu")
    xs = np.arange(3, dtype=np.float32)
    a, b = run(x=xs)
    a[:] = -1
    b[:] = -1
    np.testing.assert_array_equal(xs, [0, 1, 2])
    np.testing.assert_array_equal(run.module.w.detach().numpy(), [1, 1, 1])


# -- names and the generated file ---------------------------------------------------------------

AWKWARD = ["lambda", "class", "None", "self", "torch", "F", "__init__"]


def awkward_graph() -> Graph:
    g = Graph("lambda")
    ins = [g.add_input(n, t("f32", ["B", 2])) for n in AWKWARD]
    # Awkward names as module segments, as leaves, and as nn.Module attribute names.
    params = [g.add_param(f"{n}.w", t("f32", [2]), Init("uniform")) for n in AWKWARD]
    params += [g.add_param(f"p.{n}", t("f32", [2]), Init("normal")) for n in AWKWARD]
    params += [g.add_param(n, t("f32", [2]), Init("normal")) for n in ("train", "forward", "_parameters", "lambda_")]
    params += [g.add_param(f"blk.{i}.w", t("f32", [2]), Init("normal")) for i in range(2)]
    params.append(g.add_param("state_dict.__init__", t("f32", [2]), Init("ones"), buffer=True))
    acc = ins[0]
    for v in ins[1:] + params:
        acc = emit1(g, "add", [acc, v], name="self")  # node results named `self` too
    for i, n in enumerate(AWKWARD):
        g.outputs.append((n, emit1(g, "mul", [acc, ins[i]], name=n)))
    return g


def test_awkward_names_compile_import_and_run() -> None:
    g = awkward_graph()
    run = torch_backend.Runner(g, device="cpu")
    compile(run.source, "<generated>", "exec")
    # torch orders a module's own params before its children's: compare as sets
    assert sorted(run.module.state_dict()) == sorted(p.name for p in g.params)
    for name, value in run.module.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), run.params[name])
    f = feeds_for(g, 3)
    # Runner.__call__(self, **inputs) cannot take an input named `self` yet
    # (dlir/runtime/runner.py: `self` must be positional-only), so feed _execute.
    got, ref = (r._execute(check_inputs(g, f)) for r in (run, NumpyRunner(g)))
    assert_agree(tuple(got), tuple(ref))
    assert "class lambda_(torch.nn.Module)" in run.source
    assert "self.blk[1].w" in run.source  # numbered sub-modules are a ModuleList


def test_names_cannot_inject_code() -> None:
    evil = "x')\nimport os; os.system('echo pwned')  #"
    g = Graph("M\nimport os")
    x = g.add_input(evil, t("f32", [2]))
    w = g.add_param(evil + ".w", t("f32", [2]), Init("ones"))
    g.outputs.append((evil, emit1(g, "add", [x, w])))
    source = torch_backend.generate(g).decode("utf-8")
    compile(source, "<generated>", "exec")
    assert not any(line.lstrip().startswith("import os") for line in source.splitlines())
    run = torch_backend.Runner(g, device="cpu")
    np.testing.assert_array_equal(run(**{evil: np.zeros(2, np.float32)}), [1, 1])
    assert list(run.module.state_dict()) == [evil + ".w"]


def test_generated_file_imports_on_its_own(tmp_path: Path) -> None:
    g = mlp()
    (tmp_path / "mlp_model.py").write_bytes(torch_backend.generate(g))
    code = (
        "import numpy as np, torch, mlp_model\n"
        "m = mlp_model.MLP().eval()\n"
        "print(','.join(m.state_dict()))\n"
        "x = torch.from_numpy(np.load('x.npy'))\n"
        "with torch.no_grad():\n"
        "    logits, probs = m(x)\n"
        "np.save('logits.npy', logits.numpy())\n"
    )
    f = feeds_for(g, 4)
    np.save(tmp_path / "x.npy", f["x"])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path)] + sys.path))
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "fc1.w,fc1.b,fc2.w,fc2.b"
    np.testing.assert_allclose(np.load(tmp_path / "logits.npy"), NumpyRunner(g)(**f)[0], **TOL)


# -- shapes, several outputs, integer semantics ----------------------------------------------------------


def test_split_and_outputs_in_declared_order() -> None:
    g = Graph("Parts")
    x = g.add_input("x", t("f32", ["N", 6]))
    a, b, c = emit(g, "split", [x], {"sizes": [1, 2, 3], "axis": 1}, names=["a", "b", "c"])
    (only,) = emit(g, "split", [c], {"sizes": [3], "axis": 1}, names=["only"])
    g.outputs += [("third", only), ("first", a), ("second", emit1(g, "neg", [b]))]
    run = torch_backend.Runner(g, device="cpu")
    f = feeds_for(g, 2)
    out = run(**f)
    assert [o.shape for o in out] == [(2, 3), (2, 1), (2, 2)]
    assert_agree(out, NumpyRunner(g)(**f))
    assert "a, b, c = torch.split(x, [1, 2, 3], dim=1)" in run.source


def test_integer_and_tie_semantics_match_numpy() -> None:
    # The places where torch's defaults differ from the reference.
    g = Graph("Ints")
    a = g.add_input("a", t("i32", [8]))
    b = g.add_input("b", t("i32", [8]))
    x = g.add_input("x", t("f32", [8]))
    outs = {
        "div": emit1(g, "div", [a, b]),  # truncates toward zero; torch's // floors
        "cast": emit1(g, "cast", [x], {"dtype": DType.i32}),  # truncates negatives too
        "sum": emit1(g, "sum", [a]),  # stays i32; torch widens to i64
        "argmax": emit1(g, "argmax", [emit1(g, "abs", [a])]),  # first of tied maxima
        "sign": emit1(g, "sign", [emit1(g, "div", [x, x])]),  # NaN (0/0 here) stays NaN
        "clip": emit1(g, "clip", [a], {"min": -2.5, "max": 3.5}),
    }
    g.outputs += list(outs.items())
    f = {
        "a": np.array([7, -7, 7, -7, 1, 0, -6, 6], np.int32),
        "b": np.array([2, 2, -2, -2, 3, 5, 4, -4], np.int32),
        "x": np.array([-2.7, -0.5, 0.5, 2.7, 0.0, -1.0, 3.0, -3.0], np.float32),
    }
    got, ref = torch_backend.Runner(g, device="cpu")(**f), NumpyRunner(g)(**f)
    for name, gv, rv in zip(outs, got, ref):
        assert gv.dtype == rv.dtype, name
        np.testing.assert_array_equal(gv, rv, err_msg=name)


def test_scalar_constants_are_numbers_where_torch_agrees() -> None:
    g = Graph("Consts")
    x = g.add_input("x", t("f32", ["N"]))
    h = g.add_input("h", t("f16", ["N"]))

    def const(v: object, dt: DType) -> Value:
        return emit1(g, "constant", [], {"value": v, "dtype": dt})

    y = emit1(g, "pow", [const(-2.0, DType.f32), emit1(g, "mul", [x, const(0.5, DType.f32)])])
    z = emit1(g, "add", [const(1.0, DType.f32), const(2.0, DType.f32)])  # never two numbers
    w = emit1(g, "mul", [h, const(0.1, DType.f16)])  # f16 stays a tensor (torch computes f32)
    g.outputs += [("y", y), ("z", z), ("w", w), ("c", const([1, 2], DType.i64))]
    run = torch_backend.Runner(g, device="cpu")
    f = {"x": np.array([1.0, 2.0, 3.0], np.float32), "h": np.array([1.5, -3.0, 7.0], np.float16)}
    got, ref = run(**f), NumpyRunner(g)(**f)
    for a, b in zip(got, ref):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(a.astype(np.float64), b.astype(np.float64), rtol=1e-6)
    assert "(-2.0) ** " in run.source and "x * 0.5" in run.source
    assert "torch.tensor(0.1, dtype=torch.float16" in run.source
    assert "torch.tensor([1, 2], dtype=torch.int64" in run.source


def test_cuda_without_a_gpu_is_a_usage_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(UsageError) as e:
        torch_backend.Runner(mlp(), device="cuda")
    assert e.value.hint


# -- the round trip to ONNX -------------------------------------------------------------------------------


def test_onnx_export_of_generated_module_agrees_in_onnxruntime() -> None:
    ort = pytest.importorskip("onnxruntime")
    g = mlp()
    run = torch_backend.Runner(g, device="cpu")
    example = torch.from_numpy(feeds_for(g, 2)["x"])
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            run.module,
            (example,),
            buf,
            dynamo=False,
            opset_version=17,
            input_names=["x"],
            output_names=g.output_names(),
            dynamic_axes={"x": {0: "B"}, "logits": {0: "B"}, "probs": {0: "B"}},
        )
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    f = feeds_for(g, 5, seed=9)  # another batch size than the traced one
    assert_agree(tuple(sess.run(None, f)), NumpyRunner(g)(**f))


@pytest.mark.slow  # torch.compile costs 10-60 s on this machine; CI runs it all the same
def test_torch_compile_agrees() -> None:
    g = awkward_graph()
    run = torch_backend.Runner(g, device="cpu")
    compiled = torch.compile(run.module)
    f = feeds_for(g, 3)
    with torch.no_grad():
        out = compiled(*[torch.from_numpy(f[v.name]) for v in g.inputs])
    ref = NumpyRunner(g)._execute(check_inputs(g, f))  # an input is named `self`: see above
    assert_agree(tuple(o.numpy() for o in out), tuple(ref))


# -- convolution and pooling: torch's own arguments where they fit, explicit padding where not ----------


def _one_op(op: str, x_type: TensorType, attrs: dict[str, object], *extra: TensorType) -> Graph:
    g = Graph("One")
    x = g.add_input("x", x_type)
    others = [g.add_input(f"in{i}", e) for i, e in enumerate(extra)]
    g.outputs.append(("y", emit1(g, op, [x, *others], attrs, name="y")))
    return g


def _agrees_at(g: Graph, shapes: list[dict[str, tuple[int, ...]]]) -> torch_backend.Runner:
    run, ref = torch_backend.Runner(g, device="cpu"), NumpyRunner(g)
    for k, shape in enumerate(shapes):
        rng = np.random.default_rng(k)
        f = {v.name: rng.normal(size=shape[v.name]).astype(v.type.dtype.numpy) for v in g.inputs}
        assert_agree(run(**f), ref(**f))
    return run


def test_conv_with_asymmetric_same_padding_pads_first() -> None:
    # An even kernel with "same": the extra row and column go at the bottom/right (TF, ONNX SAME_UPPER).
    g = _one_op("conv2d", t("f32", ["B", 2, 7, 6]), {"padding": "same", "stride": 2}, t("f32", [3, 2, 4, 4]))
    run = _agrees_at(g, [{"x": (2, 2, 7, 6), "in0": (3, 2, 4, 4)}, {"x": (1, 2, 7, 6), "in0": (3, 2, 4, 4)}])
    assert "y = F.conv2d(F.pad(x, (1, 1, 1, 2)), in0, stride=2)" in run.source
    g = _one_op("conv2d", t("f32", ["B", 2, 5, 5]), {"padding": "same"}, t("f32", [3, 2, 3, 3]))
    assert "y = F.conv2d(x, in0, padding=1)" in _agrees_at(g, [{"x": (2, 2, 5, 5), "in0": (3, 2, 3, 3)}]).source


POOLS = [
    # (op, attrs, the call expected in the source)
    ("max_pool2d", {"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True},
     "F.max_pool2d(x, 3, stride=2, padding=1, ceil_mode=True)"),
    ("avg_pool2d", {"kernel": 3, "stride": 2, "padding": 1, "count_include_pad": False},
     "F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)"),
    # torch pads at most kernel // 2 (not the dilated window's half): -inf padding by hand
    ("max_pool2d", {"kernel": 3, "stride": 1, "dilation": 2, "padding": 2},
     "F.max_pool2d(F.pad(x, (2, 2, 2, 2), value=float('-inf')), 3, stride=1, dilation=2)"),
    # asymmetric "same": torch cannot pad it, the divisor counts real cells only
    ("avg_pool2d", {"kernel": 2, "stride": 2, "padding": "same", "count_include_pad": False},
     "F.avg_pool2d(F.pad(x, (0, 1, 0, 0)), 2, divisor_override=1) / "
     "F.avg_pool2d(F.pad(torch.ones_like(x[:1, :1]), (0, 1, 0, 0)), 2, divisor_override=1)"),
    # asymmetric padding counted in the divisor, no window past it: a plain mean
    ("avg_pool2d", {"kernel": 3, "stride": 2, "padding": [1, 0, 0, 1]},
     "F.avg_pool2d(F.pad(x, (0, 1, 1, 0)), 3, stride=2)"),
    # ceil_mode past asymmetric padding: the overhang is padded, never counted
    ("avg_pool2d", {"kernel": 3, "stride": 2, "padding": [1, 1, 0, 0], "ceil_mode": True}, "divisor_override=1"),
    ("max_pool2d", {"kernel": 3, "stride": 2, "padding": [0, 1, 1, 0], "ceil_mode": True}, "value=float('-inf')"),
]


@pytest.mark.parametrize("op, attrs, call", POOLS, ids=[f"{p[0]}-{i}" for i, p in enumerate(POOLS)])
def test_pools_agree_where_torch_pads_itself_and_where_it_cannot(op: str, attrs: dict[str, object], call: str) -> None:
    g = _one_op(op, t("f32", ["B", 2, 8, 7]), attrs)
    run = _agrees_at(g, [{"x": (2, 2, 8, 7)}, {"x": (1, 2, 8, 7)}])
    assert call in run.source


@pytest.mark.parametrize("ceil_mode", [False, True])
def test_pool_over_a_symbolic_height_computes_its_padding_at_run_time(ceil_mode: bool) -> None:
    # stride 3 over H: the window count is known only at run time
    attrs = {"kernel": 2, "stride": 3, "padding": [1, 0, 0, 1], "ceil_mode": ceil_mode, "count_include_pad": False}
    g = _one_op("avg_pool2d", t("f32", [1, 2, "H", 5]), attrs)
    _agrees_at(g, [{"x": (1, 2, h, 5)} for h in (4, 5, 6, 7, 9)])


def test_gather_and_one_hot_read_like_numpy() -> None:
    g = Graph("Idx")
    x = g.add_input("x", t("f32", ["B", 5, 3]))
    i = g.add_input("i", t("i32", [2, 2]))
    g.outputs.append(("rows", emit1(g, "gather", [x, i], {"axis": -2}, name="rows")))
    g.outputs.append(("hot", emit1(g, "one_hot", [i], {"n": 3}, name="hot")))
    run = torch_backend.Runner(g, device="cpu")
    f = {"x": feeds_for(g, 2)["x"], "i": np.array([[-1, 0], [4, -5]], np.int32)}  # negative: from the end
    assert_agree(run(**f), NumpyRunner(g)(**f))
    assert "rows = x[:, i]" in run.source
    assert "F.one_hot" not in run.source  # it raises on -1; the reference gives a row of zeros


# -- scan: a Python loop ----------------------------------------------------------------------


def scan_model(reverse: bool = False) -> Graph:
    """``ys, h_last, k_last = scan x_t in xs along 1 carry h = h0, k = k0 {...}``.

    The body: ``h = tanh(x_t @ w + h) * 0.5; k = 2.0; emit h``.

    Both constants belong to the model and the body reads them (a closure); the
    factor may be a number, the new carry must stay a tensor.
    """
    g = Graph("Rnn")
    xs = g.add_input("xs", t("f32", ["B", "T", 3]))
    h0 = g.add_input("h0", t("f32", ["B", 4]))
    k0 = g.add_input("k0", t("f32", []))
    w = g.add_param("w", t("f32", [3, 4]), Init("glorot_uniform"))
    half = emit1(g, "constant", [], {"value": 0.5, "dtype": DType.f32}, name="half")
    c = emit1(g, "constant", [], {"value": 2.0, "dtype": DType.f32}, name="c")
    body = scan_body(g, step_type(xs.type, 1), [h0.type, k0.type], ["x_t", "h", "k"])
    x_t, h, _ = body.inputs
    pre = emit1(body, "add", [emit1(body, "matmul", [x_t, w]), h])
    h2 = emit1(body, "mul", [emit1(body, "tanh", [pre]), half], name="h")
    body.outputs = [("h", h2), ("k", c), ("ys", h2)]
    ys, h_last, k_last = emit_scan(g, xs, [h0, k0], body, axis=1, reverse=reverse, names=["ys", "h_last", "k_last"])
    g.outputs += [("ys", ys), ("h_last", h_last), ("k_last", k_last)]
    return g


def scan_feeds(b: int, steps: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(steps)
    return {
        "xs": rng.normal(size=(b, steps, 3)).astype(np.float32),
        "h0": rng.normal(size=(b, 4)).astype(np.float32),
        "k0": np.array(3.0, np.float32),
    }


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_is_one_python_loop_that_runs_any_length(reverse: bool) -> None:
    g = scan_model(reverse)
    run, ref = torch_backend.Runner(g, device="cpu"), NumpyRunner(g)
    for b, steps in ((2, 3), (3, 50)):  # one module, two sequence lengths
        f = scan_feeds(b, steps)
        assert_agree(run(**f), ref(**f))
    src = run.source
    loop = "for x_t in reversed(xs.unbind(1)):" if reverse else "for x_t in xs.unbind(1):"
    assert src.count("    for ") == 1 and loop in src
    assert src.count("torch.tanh(") == 1  # the body once, not unrolled
    assert ("ys_steps[::-1]" in src) == reverse  # outputs aligned with the inputs
    assert "* 0.5" in src and "h, k = h_1, c" in src  # a number as a factor, a tensor as a carry


def test_scan_module_exports_to_onnx_by_tracing() -> None:
    # torch.onnx.export traces the loop (unrolled for the example's T); the result agrees there.
    ort = pytest.importorskip("onnxruntime")
    g = scan_model()
    run = torch_backend.Runner(g, device="cpu")
    f = scan_feeds(2, 4)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        args = tuple(torch.from_numpy(np.asarray(f[v.name])) for v in g.inputs)
        torch.onnx.export(run.module, args, buf, dynamo=False, input_names=list(f), opset_version=17)
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    used = {i.name for i in sess.get_inputs()}  # k0 is never read once the loop has run
    assert_agree(tuple(sess.run(None, {k: v for k, v in f.items() if k in used})), NumpyRunner(g)(**f))


@pytest.mark.parametrize("sample, loss", RECURRENT_LOSSES)
def test_a_training_step_reads_the_saved_steps_from_their_list_not_a_stack(sample: str, loss: str) -> None:
    """The backward scan indexes the list the forward scan collected (no torch.stack of what
    it saved, no narrow of it), forwards and backwards (the GRU tagger's reverse scan), with
    the numpy step's numbers."""
    import re

    from dlir.train.modes import train_mode
    from dlir.train.optim import SGD, train_step_graph

    g = recurrent_loss_graph(sample, loss)
    code = torch_backend.generate(train_step_graph(train_mode(g).graph, SGD(lr=0.1), target="torch"))
    code = code.decode() if isinstance(code, bytes) else str(code)
    saved = re.findall(r"(saved_\w+)_steps = \[\]", code)
    stacked = re.findall(r"torch\.stack\((saved_\w+)_steps", code)  # the saved h: the w_hh gradient reads it whole
    # each step read straight from its list (the squeeze of the gather's [B, 1, H] is the step itself)
    assert len(saved) >= 4 and len(stacked) < len(saved) / 2 and re.search(r"= saved_\w+_steps\[[^\]]+\]  #", code)
    assert (sample == "gru") == ("[-1 - " in code)  # the reverse scan's list is read back to front
    assert_three_steps_match_numpy(g, "torch")
