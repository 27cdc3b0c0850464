"""Symbolic reverse-mode autodiff: VJP rules, the transformation, the API, and agreement with
PyTorch's and TensorFlow's own autodiff.

- the registry: every differentiable op has a VJP rule, the others are flagged;
- per op (driven by ``dlir.ops.cases``): a float64 finite-difference check of the VJP along one
  random direction (JAX's ``check_vjp``), and the same for the VJP of the VJP (grad of grad);
- ``where``: no NaN from the untaken branch;
- the transformation: errors, naming, IR round trip, a Hessian-vector product vs
  ``torch.autograd.functional.hvp``;
- ``dlir.compile(..., grad=True)`` and ``dlirc --grad``;
- sample loss models on all four targets vs ``torch.autograd`` on the generated torch module
  and ``tf.GradientTape`` on the generated tf module (float32, rtol 1e-4).
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dlir.ops.case_kit import Case, choice, concrete_shape, inp, input_names, make_feeds
from dlir.ops.cases import CASES

import dlir
from dlir.autodiff import autodiff
from dlir.cli import main as dlirc
from dlir.errors import DlirError, PassError
from dlir.ir.builder import emit, emit1
from dlir.ir.graph import Graph, Value
from dlir.ir.parser import parse_graph
from dlir.ir.printer import print_graph
from dlir.ir.types import Dim, DType, TensorType
from dlir.ir.verifier import verify
from dlir.ops import get_op, lowered_ops
from dlir.ops.shape import END
from dlir.runtime.interpreter import run_graph
from dlir.targets import TARGETS

ROOT = Path(__file__).resolve().parent.parent

# -- the registry --------------------------------------------------------------------------------

# comparisons, index-valued, piecewise constant, literal
NOT_DIFFERENTIABLE = frozenset(
    [
        "equal",
        "not_equal",
        "less",
        "less_equal",
        "greater",
        "greater_equal",
        "argmax",
        "argmin",
        "floor",
        "ceil",
        "sign",
        "constant",
        "one_hot",
    ]
)


def test_every_differentiable_op_has_a_vjp() -> None:
    missing = sorted(n for n, op in lowered_ops().items() if op.differentiable and op.vjp is None)
    assert not missing, (
        f"differentiable ops without a VJP rule: {', '.join(missing)} "
        "(give the OpDef a vjp=..., or flag it differentiable=False)"
    )


def test_non_differentiable_ops_are_flagged() -> None:
    ops = lowered_ops()
    for name in NOT_DIFFERENTIABLE & set(ops):
        assert not ops[name].differentiable, f"{name} should be flagged differentiable=False"
        assert ops[name].vjp is None, f"{name} is flagged non-differentiable but has a VJP"


# -- per-op finite differences ---------------------------------------------------------------------

EPS = 1e-6
# Ops with kinks: their cases draw ties or exact zeros on purpose (for the agreement tests);
# finite differences need points away from the kinks, so these get continuous values.
KINKED = {"relu", "abs", "maximum", "minimum", "max", "min", "clip", "leaky_relu", "elu", "max_pool2d"}
KINKED |= {"topk"}  # which entries are the k largest changes at ties
KINKED |= {"relu_grad", "max_pool2d_grad"}  # backward ops: piecewise constant in relu and max_pool2d's input
# Cases the VJP cannot handle, by design: the error must say so.
LIMITS = {"concat-symbolic_axis": "sits between pieces of symbolic size"}

# prod's second derivative is exact with at most one zero per reduced slice.
SECOND_ORDER_LIMITS = {"prod-two_zeros_f64_all": "two zeros in a slice"}


def _one_zero_per_row(rng: np.random.Generator, shape: tuple[int, ...], dt: np.dtype) -> np.ndarray:
    x = rng.uniform(0.5, 2.0, shape) * np.where(rng.random(shape) < 0.5, -1.0, 1.0)
    x[np.arange(shape[0]), rng.integers(0, shape[1], shape[0])] = 0.0
    return x.astype(dt)


EXTRA: list[Case] = []


def extra(op: str, label: str, *inputs: Any, bindings: tuple[dict[str, int], ...] | None = None, **attrs: Any) -> None:
    """A gradient-only case (float64; paths the agreement cases do not reach)."""
    EXTRA.append(Case(op, label, tuple(inputs), attrs, bindings or ({"B": 2, "T": 3}, {"B": 5, "T": 4})))


B, T = Dim.of("B"), Dim.of("T")
extra("prod", "one_zero_per_row", inp("f64", ["B", 4], _one_zero_per_row), axis=1)
extra("prod", "two_zeros_f64_all", inp("f64", [3, 2], choice(0.0, 1.5, -2.0)), bindings=({},))
extra("add", "f64_symbolic_both_broadcast", inp("f64", [1, "T"]), inp("f64", ["B", 1]))
extra("broadcast_to", "over_symbolic", inp("f64", [1, 3]), shape=[B, 3])
extra("slice", "symbolic_negative_start", inp("f64", ["T", 3]), starts=[-2], ends=[END], axes=[0], steps=[1])
extra("slice", "end_minus1_step2", inp("f64", [7, "B"]), starts=[1], ends=[-1], axes=[0], steps=[2])
extra("where", "untaken_inf", inp("bool", ["B", 3]), inp("f64", ["B", 3]), inp("f64", [3]))
extra("concat", "f64_symbolic_multiples", inp("f64", ["B", 2]), inp("f64", ["B", 2]), inp("f64", ["B", 2]), axis=0)
extra("concat", "f64_symbolic_middle", inp("f64", [2, 3]), inp("f64", [2, "B"]), inp("f64", [2, 4]), axis=1)
extra("matmul", "f64_vec_vec_3", inp("f64", [3]), inp("f64", [3]))
extra("matmul", "f64_vec_batched", inp("f64", [4]), inp("f64", ["B", 2, 4, 3]))
extra("mean", "f64_symbolic_axes", inp("f64", ["B", "T", 2]), axis=[0, 1])
extra("var", "f64_symbolic_correction", inp("f64", ["B", 3]), axis=0, correction=1)
extra(
    "layer_norm",
    "f64_symbolic_norm_axes",
    inp("f64", ["B", "T", 3]),
    inp("f64", ["T", 3]),
    inp("f64", ["T", 3]),
    axis=1,
)


def _differentiable_cases() -> list[Case]:
    out = []
    for c in [*CASES, *EXTRA]:
        if c.build is not None or not get_op(c.op).differentiable:
            continue
        if any(i.type.dtype.is_float for i in c.inputs) and _has_float_result(c):
            out.append(c)
    return out


def _has_float_result(c: Case) -> bool:
    g = Graph("probe")
    args = [g.add_input(n, _f64(i.type)) for n, i in zip(input_names(c), c.inputs)]
    attrs = {k: (DType.f64 if isinstance(v, DType) and v.is_float else v) for k, v in c.attrs.items()}
    return any(o.type.dtype.is_float for o in emit(g, c.op, args, attrs))


def _f64(t: TensorType) -> TensorType:
    return t.with_dtype(DType.f64) if t.dtype.is_float else t


DIFF_CASES = _differentiable_cases()
# Grad of grad is checked where the first gradient exists and is itself differentiable.
SECOND_ORDER_CASES = [c for c in DIFF_CASES if c.id not in LIMITS and c.id not in SECOND_ORDER_LIMITS]


def _scalar_graph(case: Case) -> tuple[Graph, list[str], list[Value]]:
    """The op on float64 inputs, reduced to ``s = sum_k sum(out_k * ct_k)`` (ct_k: random cotangents)."""
    g = Graph("VjpCheck")
    names = input_names(case)
    args = [g.add_input(n, _f64(i.type)) for n, i in zip(names, case.inputs)]
    attrs = {k: (DType.f64 if isinstance(v, DType) and v.is_float else v) for k, v in case.attrs.items()}
    outs = [o for o in emit(g, case.op, args, attrs) if o.type.dtype.is_float]
    terms = [emit1(g, "sum", [emit1(g, "mul", [o, g.add_input(f"ct{k}", o.type)])]) for k, o in enumerate(outs)]
    if not terms:
        pytest.skip("no float result")
    s = terms[0]
    for t in terms[1:]:
        s = emit1(g, "add", [s, t])
    g.outputs.append(("s", s))
    wrt = [v.name for v in args if v.type.dtype.is_float]
    return g, wrt, outs


def _feeds(case: Case, graph: Graph, env: dict[str, int], seed: int) -> dict[str, np.ndarray]:
    feeds = make_feeds(case, env, seed)
    rng = np.random.default_rng([zlib.crc32(case.id.encode()), seed, 7])
    for v in graph.inputs:
        if v.name.startswith("ct"):
            feeds[v.name] = rng.standard_normal(concrete_shape(v.type, env))
        elif v.type.dtype.is_float:
            a = feeds[v.name]
            if case.op in KINKED:
                a = rng.uniform(-3, 3, a.shape)
            feeds[v.name] = np.asarray(a, np.float64)
    if case.id == "where-untaken_inf":  # the untaken positions of a hold inf and NaN
        feeds["a"] = np.where(feeds["cond"], feeds["a"], np.where(feeds["a"] > 0, np.inf, np.nan))
    return feeds


def _run(graph: Graph, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return run_graph(graph, feeds, {})


def _check_directional(
    graph: Graph, out: str, wrt: list[str], feeds: dict[str, np.ndarray], rng: np.random.Generator, rtol: float
) -> Graph:
    """``<grad f, u>`` from autodiff against ``(f(x + eps u) - f(x - eps u)) / 2 eps``; returns the grad graph."""
    gg = autodiff(graph, output=out, wrt=wrt)
    verify(gg)
    res = dict(zip(gg.output_names(), _run(gg, feeds)))
    u = {n: rng.standard_normal(np.shape(feeds[n])) for n in wrt}
    analytic = sum(float(np.sum(res[f"{_prefix(gg, n)}{n}"] * u[n])) for n in wrt)

    def f(sign: float) -> float:
        moved = {**feeds, **{n: feeds[n] + sign * EPS * u[n] for n in wrt}}
        return float(_run(graph, moved)[graph.output_names().index(out)])

    numeric = (f(1.0) - f(-1.0)) / (2 * EPS)
    scale = 1.0 + abs(analytic) + abs(float(res[out])) * 1e-4
    assert abs(analytic - numeric) <= rtol * scale, f"VJP {analytic!r} vs finite differences {numeric!r}"
    return gg


def _prefix(gg: Graph, name: str) -> str:
    for p in ("grad2.", "grad."):
        if p + name in gg.output_names():
            return p
    raise AssertionError(f"no gradient output for {name}: {gg.output_names()}")


def _with_grad_dot(g1: Graph, wrt: list[str]) -> Graph:
    """Adds the output h = sum_n <grad.n, v.n> (v.n new inputs), whose gradient is a Hessian-vector product."""
    h = None
    for n in wrt:
        grad = dict(g1.outputs)[f"grad.{n}"]
        term = emit1(g1, "sum", [emit1(g1, "mul", [grad, g1.add_input(f"v.{n}", grad.type)])])
        h = term if h is None else emit1(g1, "add", [h, term])
    assert h is not None
    g1.outputs.append(("h", h))
    return g1


def _needs_vjp(case: Case) -> None:
    if get_op(case.op).vjp is None:
        pytest.skip(f"{case.op} has no VJP rule yet (test_every_differentiable_op_has_a_vjp fails for it)")


@pytest.mark.parametrize("case", DIFF_CASES, ids=lambda c: c.id)
def test_vjp_matches_finite_differences(case: Case) -> None:
    _needs_vjp(case)
    graph, wrt, _ = _scalar_graph(case)
    if case.id in LIMITS:
        with pytest.raises(PassError, match=LIMITS[case.id]):
            autodiff(graph, wrt=wrt)
        return
    for k, env in enumerate(case.bindings):
        feeds = _feeds(case, graph, env, k)
        _check_directional(graph, "s", wrt, feeds, np.random.default_rng(k), rtol=1e-6)


@pytest.mark.parametrize("case", SECOND_ORDER_CASES, ids=lambda c: c.id)
def test_vjp_of_vjp_matches_finite_differences(case: Case) -> None:
    """Grad of grad: h = <grad s, v> is differentiated again and checked the same way."""
    _needs_vjp(case)
    graph, wrt, _ = _scalar_graph(case)
    g1 = _with_grad_dot(autodiff(graph, wrt=wrt), wrt)
    env = case.bindings[0]
    feeds = _feeds(case, graph, env, 0)
    rng = np.random.default_rng(1)
    for n in wrt:
        feeds[f"v.{n}"] = rng.standard_normal(np.shape(feeds[n]))
    _check_directional(g1, "h", wrt, feeds, rng, rtol=1e-5)


# -- scan: a reverse scan ------------------------------------------------------------------------------

SCAN_MODELS = {
    # an Elman RNN: closure params, xs and the initial carry all get gradients
    "elman": """
model M(xs: f64[B, T, 3], h0: f64[B, 4], w: f64[3, 4], u: f64[4, 4]) -> f64[] {
    ys, h_last = scan x_t in xs along 1 carry h = h0 {
        h = tanh(x_t @ w + h @ u)
        emit h * 2.0
    }
    return sum(ys * ys) + sum(h_last)
}
""",
    # reverse, along axis 0, an int carry, an emitted closure value, a scan inside the body
    "nested_reverse": """
model M(xs: f64[T, B, 3], h0: f64[B, 3], w: f64[3, 3], k: f64[3]) -> f64[] {
    ys, zs, h_last, n_last = scan reverse x_t in xs along 0 carry h = h0, n = 0 {
        inner, s_last = scan r in x_t along 0 carry s = k {
            s = sin(s * r) + s
            emit s * k
        }
        h = tanh(x_t @ w + h) * s_last
        n = n + 1
        emit h
        emit k
    }
    return sum(ys * ys) + sum(h_last) + sum(zs * 0.5)
}
""",
}


def _scan_feeds(graph: Graph) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    env = {"B": 2, "T": 4}
    return {v.name: rng.standard_normal(concrete_shape(v.type, env)) * 0.7 for v in graph.inputs}


@pytest.mark.parametrize("name", sorted(SCAN_MODELS))
def test_scan_vjp_matches_finite_differences(name: str) -> None:
    graph = dlir.loads(SCAN_MODELS[name]).graph()
    wrt = [v.name for v in graph.inputs]
    gg = _check_directional(graph, "out", wrt, _scan_feeds(graph), np.random.default_rng(0), rtol=1e-7)
    scans = [n for n in gg.nodes if n.op == "scan"]
    assert len(scans) == 2 and scans[1].attrs["reverse"] != scans[0].attrs["reverse"]  # one backward scan


@pytest.mark.parametrize("target", ["torch", "tensorflow", "onnx"])
def test_scan_gradient_lowers_on_every_target(target: str) -> None:
    from dlir.targets import runner_class

    for src in SCAN_MODELS.values():
        graph = dlir.loads(src).graph()
        gg = autodiff(graph, wrt=[v.name for v in graph.inputs])
        feeds = _scan_feeds(graph)
        want = _run(gg, feeds)
        got = runner_class(target)(gg)(**feeds)
        for w, g in zip(want, got):
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


def test_scan_grad_of_grad_with_a_static_length() -> None:
    """Differentiating the backward scan again (its gathers need a static sequence length)."""
    graph = dlir.loads(SCAN_MODELS["elman"].replace("f64[B, T, 3]", "f64[B, 4, 3]")).graph()
    wrt = [v.name for v in graph.inputs]
    g1 = _with_grad_dot(autodiff(graph, wrt=wrt), wrt)
    _check_directional(g1, "h", wrt, _scan_feeds(g1), np.random.default_rng(1), rtol=1e-7)


# -- where and NaN -----------------------------------------------------------------------------------

WHERE_SRC = """
model Safe(x: f32[6]) -> f32[] {
    a = where(x > 0.0, log(x), 0.0)          # log(0) = -inf, log(-1) = NaN: never taken
    b = where(x > 0.0, sqrt(x) * 2.0, x)     # sqrt of a negative: NaN, never taken
    c = where(x < 50.0, x, exp(x * 10.0))    # exp overflows to inf where x >= 50: never taken there
    return sum(a) + sum(b) + sum(c)
}
"""
WHERE_X = np.array([0.0, -1.0, 2.0, 0.5, -3.0, 100.0], np.float32)


def _where_expected(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        da = np.where(x > 0, 1.0 / x, 0.0)
        db = np.where(x > 0, 1.0 / np.sqrt(x), 1.0)
    dc = np.where(x < 50, 1.0, 0.0)  # x = 100 takes exp(1000) = inf: its gradient is inf there
    return (da + db + dc).astype(np.float32)


@pytest.mark.parametrize("target", TARGETS)
def test_where_gradient_has_no_nan_from_the_untaken_branch(target: str) -> None:
    prog = dlir.loads(WHERE_SRC)
    run = dlir.compile(prog, target, grad=["x"])
    with np.errstate(all="ignore"):
        _, grads = run(x=WHERE_X)
    gx = grads["x"]
    want = _where_expected(WHERE_X)
    want[5] = np.inf  # d/dx exp(10 x) at x = 100 is really inf (the taken branch)
    assert not np.any(np.isnan(gx)), gx
    np.testing.assert_allclose(gx[:5], want[:5], rtol=1e-6)
    assert gx[5] == np.inf


def test_where_trap_is_real_in_torch() -> None:
    """The same function in plain torch gives NaN: the trap the test above guards against."""
    import torch

    x = torch.tensor(WHERE_X[:5], requires_grad=True)
    a = torch.where(x > 0, torch.log(x), torch.zeros_like(x))
    a.sum().backward()
    assert x.grad is not None and torch.isnan(x.grad).any()


def test_where_cotangent_is_selected_not_multiplied() -> None:
    """An infinite cotangent in the untaken positions must give 0 to the other branch, not 0 * inf."""
    src = """
    model M(a: f64[4], b: f64[4]) -> f64[] {
        return sum(sqrt(where(a >= 0.0, a, b)))   # sqrt'(0) = inf where a = 0 is taken
    }
    """
    run = dlir.compile(dlir.loads(src), "numpy", grad=["a", "b"])
    a = np.array([0.0, 4.0, -1.0, 1.0])
    b = np.array([9.0, 9.0, 4.0, 9.0])
    with np.errstate(all="ignore"):
        _, grads = run(a=a, b=b)
    assert grads["a"][0] == np.inf and grads["b"][0] == 0.0
    np.testing.assert_allclose(grads["b"], [0.0, 0.0, 0.25, 0.0])
    np.testing.assert_allclose(grads["a"][1:], [0.25, 0.0, 0.5])


@pytest.mark.parametrize(
    "pool, args",
    [
        ("kernel=3, stride=2, padding=1, ceil_mode=true", (3, 2, 1, True)),  # overlapping windows
        ("kernel=2", (2, 2, 0, False)),  # windows that tile the image
    ],
)
def test_max_pool_ties_go_to_the_first_maximum_as_in_torch(pool: str, args: tuple[int, int, int, bool]) -> None:
    """After a relu, whole windows tie at 0: the cotangent goes to the first cell (row-major)."""
    import torch

    src = f"""
    model M(x: f32[2, 3, 8, 6]) -> f32[] {{
        y = max_pool2d(relu(x) + floor(x * 2.0) * 0.0, {pool})
        return sum(y * y + y)
    }}
    """
    rng = np.random.default_rng(0)
    x = rng.choice(np.array([-1.0, 0.0, 0.5, 1.5], np.float32), (2, 3, 8, 6))
    _, grads = dlir.compile(dlir.loads(src), "numpy", grad=["x"])(x=x)
    xt = torch.from_numpy(x).requires_grad_(True)
    k, stride, pad, ceil = args
    y = torch.nn.functional.max_pool2d(torch.relu(xt), k, stride, padding=pad, ceil_mode=ceil)
    (y * y + y).sum().backward()
    assert xt.grad is not None
    np.testing.assert_allclose(grads["x"], xt.grad.numpy(), rtol=1e-6)


# -- the transformation ------------------------------------------------------------------------------

MLP_LOSS = """
model Loss(x: f32[B, 784], labels: i64[B]) -> f32[] {
    net = MLP()
    return cross_entropy(net(x), labels)
}
"""


def _mlp_loss() -> dlir.Program:
    return dlir.loads((ROOT / "samples" / "mlp.dlir").read_text() + MLP_LOSS, "mlp_loss.dlir")


def test_non_scalar_output_is_a_clear_error() -> None:
    prog = dlir.load(ROOT / "samples" / "mlp.dlir")
    with pytest.raises(PassError, match=r"needs a float scalar output, but output 'out' of MLP is f32\[B, 10\]") as e:
        autodiff(prog.graph())
    assert e.value.hint and "loss" in e.value.hint
    with pytest.raises(DlirError, match="scalar"):
        dlir.compile(prog, "numpy", grad=True)
    resmlp = dlir.load(ROOT / "samples" / "resmlp.dlir")
    with pytest.raises(PassError, match="has 2 outputs"):
        autodiff(resmlp.graph())


def test_unknown_or_integer_variables_are_errors() -> None:
    g = _mlp_loss().graph("Loss")
    with pytest.raises(PassError, match="no such param or input") as e:
        autodiff(g, wrt=["net.fc1.ww"])
    assert "net.fc1.w" in (e.value.hint or "")
    with pytest.raises(PassError, match="not a float tensor"):
        autodiff(g, wrt=["labels"])


def test_gradient_is_ordinary_ir() -> None:
    """It verifies, prints and parses back to the same text; the input graph is left alone."""
    g = _mlp_loss().graph("Loss")
    before = print_graph(g)
    gg = autodiff(g)
    verify(gg)
    assert print_graph(g) == before
    text = print_graph(gg)
    assert print_graph(parse_graph(text)) == text
    assert gg.output_names() == ["out", "grad.net.fc1.w", "grad.net.fc1.b", "grad.net.fc2.w", "grad.net.fc2.b"]
    assert "%grad.net.fc2.b: f32[10] = sum(" in text  # the bias gradient: one sum over the batch axis


def test_unused_param_gets_zeros_and_inputs_can_be_chosen() -> None:
    src = """
    model M(x: f32[B, 3]) -> f32[] {
        param w: f32[3] = ones
        param unused: f32[2, 2] = ones
        return mean(x * w)
    }
    """
    run = dlir.compile(dlir.loads(src), "numpy", grad=["w", "unused", "x"])
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    out, grads = run(x=x)
    assert out == pytest.approx(2.5)
    np.testing.assert_allclose(grads["w"], x.mean(axis=0) / 3, rtol=1e-6)
    np.testing.assert_array_equal(grads["unused"], np.zeros((2, 2), np.float32))
    np.testing.assert_allclose(grads["x"], np.full((2, 3), 1 / 6, np.float32), rtol=1e-6)


HVP_SRC = """
model F(x: f64[B, 4], w: f64[4, 3]) -> f64[] {
    h = tanh(x @ w)
    z = reshape(transpose(h, perm=[1, 0]), [-1])
    s = concat([z, sin(z) * 0.5], axis=0)
    p = softmax(h * 2.0, axis=-1)
    return logsumexp(s) + mean(h * h) + sum(p[:, 0:2] ** 2.0) + max(h, axis=1)[0]
}
"""


@pytest.mark.parametrize("target", TARGETS)
def test_hessian_vector_product_matches_torch(target: str) -> None:
    """Grad of grad (elementwise, matmul, reductions, shape ops) against torch.autograd.functional.hvp."""
    import torch

    prog = dlir.loads(HVP_SRC)
    graph = prog.graph()
    g1 = autodiff(graph, wrt=["w"])
    v = g1.add_input("v", TensorType.make("f64", [4, 3]))
    gv = emit1(g1, "sum", [emit1(g1, "mul", [dict(g1.outputs)["grad.w"], v])])
    g1.outputs.append(("gv", gv))
    g2 = autodiff(g1, output="gv", wrt=["w"])
    verify(g2)
    assert g2.output_names() == ["out", "grad.w", "gv", "grad2.w"]

    rng = np.random.default_rng(0)
    x, w, vv = rng.standard_normal((5, 4)), rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    from dlir.targets import runner_class

    res = runner_class(target)(g2)(x=x, w=w, v=vv)
    hv = res[3]

    module = dlir.compile(prog, "torch").module
    xt = torch.from_numpy(x)
    _, want = torch.autograd.functional.hvp(lambda wt: module(xt, wt), torch.from_numpy(w), torch.from_numpy(vv))
    np.testing.assert_allclose(hv, want.numpy(), rtol=1e-9, atol=1e-12)


def test_autodiff_is_a_pass_and_its_output_optimises() -> None:
    """``autodiff`` runs from a pipeline text; -O2 on a gradient graph keeps its numbers."""
    from dlir.passes import optimize

    prog = _mlp_loss()
    graph = prog.graph("Loss")
    piped = optimize(graph, passes="autodiff{wrt=net.fc1.b;net.fc2.w},cse,dce")
    assert piped.output_names() == ["out", "grad.net.fc1.b", "grad.net.fc2.w"]
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((4, 784)).astype(np.float32), "labels": np.array([0, 3, 9, 3])}
    plain_out, plain = dlir.compile(prog, "numpy", model="Loss", grad=True)(**feeds)
    fast_out, fast = dlir.compile(prog, "numpy", model="Loss", grad=True, opt_level=2)(**feeds)
    assert float(fast_out) == pytest.approx(float(plain_out), rel=1e-6)
    for k in plain:
        np.testing.assert_allclose(fast[k], plain[k], rtol=1e-5, atol=1e-7)
    params = dlir.compile(prog, "numpy", model="Loss").params
    got = dict(zip(piped.output_names(), run_graph(piped, feeds, params)))
    np.testing.assert_allclose(got["grad.net.fc2.w"], plain["net.fc2.w"], rtol=1e-6)


# -- API and CLI -------------------------------------------------------------------------------------


def test_compile_grad_returns_outputs_and_a_dict() -> None:
    run = dlir.compile(_mlp_loss(), "numpy", model="Loss", grad=True)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 784)).astype(np.float32)
    labels = np.array([1, 2, 3])
    out, grads = run(x=x, labels=labels)
    assert isinstance(out, np.ndarray) and out.shape == () and out.dtype == np.float32
    assert list(grads) == ["net.fc1.w", "net.fc1.b", "net.fc2.w", "net.fc2.b"]
    assert all(grads[k].shape == v.shape and grads[k].dtype == np.float32 for k, v in run.params.items())
    assert run.output_names == ["out"]
    plain = dlir.compile(_mlp_loss(), "numpy", model="Loss")
    assert float(plain(x=x, labels=labels)) == float(out)


def test_cli_ir_and_compile_with_grad(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import onnx

    src = tmp_path / "loss.dlir"
    src.write_text((ROOT / "samples" / "mlp.dlir").read_text() + MLP_LOSS)
    assert dlirc(["ir", str(src), "--model", "Loss", "--grad"]) == 0
    text = capsys.readouterr().out
    assert "grad.net.fc1.w: f32[784, 256]" in text and "return out=" in text
    assert dlirc(["ir", str(src), "--model", "Loss", "--grad", "-O2"]) == 0
    assert "grad.net.fc2.b: f32[10]" in capsys.readouterr().out
    out = tmp_path / "loss.onnx"
    assert dlirc(["compile", str(src), "--model", "Loss", "--grad", "--target", "onnx", "-o", str(out)]) == 0
    model = onnx.load(str(out))
    assert [o.name for o in model.graph.output] == [
        "out",
        "grad.net.fc1.w",
        "grad.net.fc1.b",
        "grad.net.fc2.w",
        "grad.net.fc2.b",
    ]
    capsys.readouterr()
    assert (
        dlirc(
            [
                "compile",
                str(ROOT / "samples" / "mlp.dlir"),
                "--grad",
                "--target",
                "onnx",
                "-o",
                str(tmp_path / "x.onnx"),
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "error: autodiff needs a float scalar output" in err and "Traceback" not in err
    assert not (tmp_path / "x.onnx").exists()


# -- sample loss models vs the frameworks' own autodiff ------------------------------------------------

# A loss model per sample (None: the file has one).
LOSSES: dict[str, tuple[str, str | None, str]] = {
    "mlp": ("mlp.dlir", MLP_LOSS, "Loss"),
    "resmlp": (
        "resmlp.dlir",
        """
model Loss(x: f32[B, 64], labels: i64[B]) -> f32[] {
    net = ResMLP()
    logits, probs = net(x)
    return cross_entropy(logits, labels) + 0.5 * mean(probs * probs)
}
""",
        "Loss",
    ),
    "cnn": (
        "cnn.dlir",
        """
model Loss(x: f32[B, 1, 28, 28], labels: i64[B]) -> f32[] {
    net = LeNet()
    return cross_entropy(net(x), labels)
}
""",
        "Loss",
    ),
    "digits": ("digits.dlir", None, "DigitsLoss"),
    "lstm": (
        "lstm.dlir",
        """
model Loss(x: f32[B, T, 32], labels: i64[B]) -> f32[] {
    net = LSTMClassifier()
    return cross_entropy(net(x), labels)
}
""",
        "Loss",
    ),
    "gru": (
        "gru.dlir",
        """
model Loss(x: f32[B, T, 16], h0: f32[B, 24], target: f32[B, T, 6]) -> f32[] {
    net = BiGRUTagger()
    tags, h_last = net(x, h0)
    return mse(tags, target) + 0.1 * mean(h_last * h_last)
}
""",
        "Loss",
    ),
    "attention": (
        "attention.dlir",
        """
model Loss(x: f32[B, T, 32], mask: bool[T, T], target: f32[B, T, 32]) -> f32[] {
    net = SelfAttention()
    return mse(net(x, mask), target)
}
""",
        "Loss",
    ),
    "transformer": (
        "transformer.dlir",
        """
model Loss(tokens: i64[B, 16], keep: bool[B, 16], labels: i64[B]) -> f32[] {
    net = Encoder()
    features, logits = net(tokens, keep)
    return cross_entropy(logits, labels) + 0.1 * mean(features * features)
}
""",
        "Loss",
    ),
}
RTOL = 1e-4


def _loss_program(name: str) -> tuple[dlir.Program, str]:
    file, loss, model = LOSSES[name]
    return dlir.loads((ROOT / "samples" / file).read_text() + (loss or ""), f"{name}_loss.dlir"), model


def _loss_inputs(prog: dlir.Program, model: str) -> dict[str, np.ndarray]:
    from dlir.compare import random_inputs

    feeds = random_inputs(prog.graph(model), seed=4, size=3)
    rng = np.random.default_rng(5)
    if "labels" in feeds:
        feeds["labels"] = rng.integers(0, 3, feeds["labels"].shape).astype(np.int64)
    if "tokens" in feeds:
        feeds["tokens"] = rng.integers(0, 100, feeds["tokens"].shape).astype(np.int64)
    if "mask" in feeds:  # causal
        feeds["mask"] = np.tril(np.ones(feeds["mask"].shape, bool))
    if "keep" in feeds:  # the last two tokens of each sequence are padding
        feeds["keep"] = np.arange(feeds["keep"].shape[1])[None, :] < feeds["keep"].shape[1] - 2
        feeds["keep"] = np.broadcast_to(feeds["keep"], feeds["tokens"].shape).copy()
    return feeds


_REFERENCES: dict[str, dict[str, dict[str, np.ndarray]]] = {}


def _framework_grads(name: str) -> dict[str, dict[str, np.ndarray]]:
    """torch.autograd on the generated torch module, tf.GradientTape on the generated tf module."""
    if name in _REFERENCES:
        return _REFERENCES[name]
    import tensorflow as tf
    import torch

    prog, model = _loss_program(name)
    feeds = _loss_inputs(prog, model)
    order = [v.name for v in prog.graph(model).inputs]
    module = dlir.compile(prog, "torch", model=model).module
    module.zero_grad()
    module(*[torch.from_numpy(feeds[n]) for n in order]).backward()
    torch_grads = {k: p.grad.numpy().copy() for k, p in module.named_parameters()}

    tfm = dlir.compile(prog, "tensorflow", model=model).module
    variables = {k: getattr(tfm, attr) for k, attr in tfm.PARAMS.items()}
    with tf.GradientTape() as tape:
        loss = tfm(*[tf.constant(feeds[n]) for n in order])
    got = tape.gradient(loss, list(variables.values()))
    tf_grads = {k: np.asarray(tf.convert_to_tensor(g)) for k, g in zip(variables, got)}  # (embeddings: IndexedSlices)
    _REFERENCES[name] = {"torch": torch_grads, "tensorflow": tf_grads}
    return _REFERENCES[name]


def _close(got: np.ndarray, want: np.ndarray, scale: float, what: str) -> None:
    """rtol 1e-4; the atol (1e-6 of the largest gradient of the model) is for entries that are
    0 in exact arithmetic (a key bias under softmax), where both sides hold rounding noise."""
    assert got.dtype == np.float32 and got.shape == want.shape, what
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * 1e-2 * scale, err_msg=what)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_sample_loss_gradients_match_torch_and_tensorflow(name: str, target: str) -> None:
    refs = _framework_grads(name)
    prog, model = _loss_program(name)
    run = dlir.compile(prog, target, model=model, grad=True)
    _, grads = run(**_loss_inputs(prog, model))
    assert set(grads) == set(refs["torch"]) == set(refs["tensorflow"])
    for framework, want in refs.items():
        scale = max(float(np.max(np.abs(w))) for w in want.values())
        for k, g in grads.items():
            _close(g, want[k], scale, f"{name} on {target}: grad of {k} vs {framework}")


def _backward_wheres(src: str) -> int:
    g = dlir.loads(src).graph("M")
    return sum(n.op == "where" for n in autodiff(g, wrt=["x"]).nodes) - sum(n.op == "where" for n in g.nodes)


def test_zero_cotangents_are_selected_again_only_where_a_derivative_can_be_infinite() -> None:
    """Before a where (in the forward order), the cotangent is selected again after each op whose
    local derivative may be inf or NaN where the where's cotangent is zero (a product by another
    value); a product by a finite constant or a tanh keeps zeros zero, and one more where (slow on
    torch's CPU) would only cost time."""
    head = "model M(m: bool[4], x: f32[4], y: f32[4]) -> f32[] {\n"
    assert _backward_wheres(head + "    return sum(where(m, tanh(x * 0.5), 0.0))\n}") == 1
    by_y = head + "    return sum(where(m, x * y, 0.0))\n}"
    assert _backward_wheres(by_y) == 2
    # and the numbers: an inf or NaN in y where m is false does not reach x's gradient
    run = dlir.compile(dlir.loads(by_y), "numpy", grad=["x"])
    m = np.array([True, False, True, False])
    y = np.array([1.0, np.inf, 2.0, np.nan], np.float32)
    with np.errstate(all="ignore"):
        _, grads = run(m=m, x=np.ones(4, np.float32), y=y)
    np.testing.assert_array_equal(grads["x"], [1.0, 0.0, 2.0, 0.0])
