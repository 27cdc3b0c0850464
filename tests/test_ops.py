"""Per-op agreement: every case of ``op_cases`` on every target against the numpy reference.

Each (case, target) builds one runner and runs it at two symbol bindings, so a
backend that bakes a traced shape into its graph fails. Dtypes and shapes must
match exactly; float32 values within rtol/atol 1e-5, float64 within 1e-10,
integers and bools exactly. A target whose backend is missing fails (it is not
skipped): the product promises every op on every target.

The second half checks the numpy references themselves against PyTorch's
functional ops in float64, an independent oracle for the ops whose formulas
are easy to get subtly wrong (stability at large inputs, biased variance, ...).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest

from dlir.ir.graph import Graph
from dlir.ir.types import DType
from dlir.ops import check_attrs, get_op, lowered_ops
from dlir.runtime.runner import NumpyRunner, Runner
from dlir.targets import BACKEND_TARGETS, runner_class
from op_cases import CASES, Case, build_case, concrete_shape, make_feeds

TOLERANCE = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-10}


def _outputs(result: Any) -> list[np.ndarray]:
    return [np.asarray(r) for r in (result if isinstance(result, tuple) else (result,))]


def _make_runner(target: str, graph: Graph) -> Runner:
    try:
        cls = runner_class(target)
    except (ImportError, AttributeError) as e:
        pytest.fail(f"target {target} has no usable backend yet: {type(e).__name__}: {e}")
    return cls(graph)


def assert_same(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """Exact dtype and shape; values within the dtype's tolerance (exact for ints/bools)."""
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, reference {want.dtype}"
    assert got.shape == want.shape, f"{what}: shape {got.shape}, reference {want.shape}"
    tol = TOLERANCE.get(want.dtype)
    if tol is None:
        bad = np.flatnonzero(got != want)
        if bad.size:
            i = bad[0]
            first = f"first at flat index {i}: {got.flat[i]} vs {want.flat[i]}"
            pytest.fail(f"{what}: {bad.size} of {want.size} values differ, {first}")
        return
    err = np.abs(got.astype(np.float64) - want.astype(np.float64))
    with np.errstate(invalid="ignore"):
        close = (err <= tol + tol * np.abs(want.astype(np.float64))) | (got == want) | (np.isnan(got) & np.isnan(want))
    if not np.all(close):
        i = int(np.argmax(np.where(close, 0.0, err)))
        rel = err.flat[i] / max(abs(float(want.flat[i])), 1e-300)
        pytest.fail(
            f"{what}: {np.count_nonzero(~close)} of {want.size} values off by more than {tol}; "
            f"max abs err {np.nanmax(err):.3g}, worst {got.flat[i]!r} vs {want.flat[i]!r} (rel {rel:.3g})"
        )


def run_case_on(case: Case, target: str) -> None:
    graph, _ = build_case(case)
    runner = _make_runner(target, graph)
    reference = NumpyRunner(build_case(case)[0])
    for k, env in enumerate(case.bindings):
        feeds = make_feeds(case, env, seed=k)
        want = _outputs(reference(**feeds))
        got = _outputs(runner(**feeds))
        assert len(got) == len(want), f"{target} gave {len(got)} outputs, reference {len(want)}"
        for (name, _), g, w in zip(graph.outputs, got, want):
            assert_same(g, w, f"{case.id} on {target} at {env}, output {name}")


@pytest.mark.parametrize("target", BACKEND_TARGETS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_op_matches_reference(case: Case, target: str) -> None:
    run_case_on(case, target)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_reference_has_declared_type(case: Case) -> None:
    """The numpy reference produces exactly the inferred dtype and shape at every binding."""
    graph, _ = build_case(case)
    reference = NumpyRunner(graph)
    for k, env in enumerate(case.bindings):
        outs = _outputs(reference(**make_feeds(case, env, seed=k)))
        for (name, v), o in zip(graph.outputs, outs):
            want = concrete_shape(v.type, env)
            assert o.dtype == v.type.dtype.numpy and o.shape == want, (
                f"{case.id} at {env}: reference gives {o.dtype}{list(o.shape)} for output {name}, "
                f"but its type is {v.type} = {v.type.dtype}{list(want)}"
            )


def test_every_lowered_op_has_a_case() -> None:
    missing = sorted(set(lowered_ops()) - {c.op for c in CASES})
    assert not missing, f"ops without a case in tests/op_cases.py: {', '.join(missing)}"


def test_case_table_is_well_formed() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    for c in CASES:
        graph, _ = build_case(c)
        bound = set(graph.symbol_sources())
        used = {s for v in graph.inputs for d in v.type.shape for s in d.symbols}
        assert used <= bound, f"{c.id}: symbols {used - bound} are not bound by any input dim"
        for env in c.bindings:
            assert used <= set(env), f"{c.id}: binding {env} misses {used - set(env)}"
        if used:
            shapes = {tuple(concrete_shape(v.type, env) for v in graph.inputs) for env in c.bindings}
            assert len(shapes) == len(c.bindings), f"{c.id}: bindings must give different input shapes"


# -- the references against an independent oracle (torch, float64) -----------------------

_RNG = np.random.default_rng(1234)
_X = np.concatenate([_RNG.uniform(-6, 6, (4, 7)), [[-60.0, -20.5, -1e-4, 0.0, 1e-4, 20.5, 60.0]]])
_BIG = _RNG.uniform(-800, 800, (3, 6))
_X3 = _RNG.normal(3.0, 2.0, (2, 3, 4))
_POS = _RNG.uniform(0.05, 5, (3, 5))
_TIES = _RNG.choice([-1.0, 0.0, 2.0], (4, 6))
_LABELS = np.array([0, 4, 2, 4, 1])
_IA = np.array([-7, -7, 7, 7, -1, 0, 5, -9, 9, -20])
_IB = np.array([2, -2, 2, -2, 3, -3, -5, 4, -4, 6])
_GAMMA, _BETA = _RNG.normal(size=(3, 4)), _RNG.normal(size=(3, 4))

# (label, op, attrs, numpy inputs, torch function of torch tensors, rtol)
Oracle = tuple[str, str, dict[str, Any], list[np.ndarray], Callable[..., Any], float]


def _oracles() -> list[Oracle]:
    def F() -> Any:
        import torch.nn.functional as fn

        return fn

    def T() -> Any:
        import torch

        return torch

    return [
        ("gelu_exact", "gelu", {}, [_X], lambda x: F().gelu(x), 1e-12),
        ("gelu_tanh", "gelu", {"approximate": "tanh"}, [_X], lambda x: F().gelu(x, approximate="tanh"), 1e-12),
        ("silu", "silu", {}, [_X], lambda x: F().silu(x), 1e-12),
        ("softplus", "softplus", {}, [_X], lambda x: F().softplus(x), 1e-9),  # torch returns x past 20
        ("elu", "elu", {"alpha": 0.7}, [_X], lambda x: F().elu(x, 0.7), 1e-12),
        ("leaky_relu", "leaky_relu", {"alpha": 0.1}, [_X], lambda x: F().leaky_relu(x, 0.1), 1e-12),
        ("sigmoid", "sigmoid", {}, [_X], lambda x: T().sigmoid(x), 1e-12),
        ("erf", "erf", {}, [_X], lambda x: T().erf(x), 1e-12),
        ("rsqrt", "rsqrt", {}, [_POS], lambda x: T().rsqrt(x), 1e-12),
        ("logsumexp_axis1", "logsumexp", {"axis": 1}, [_X], lambda x: T().logsumexp(x, 1), 1e-12),
        ("logsumexp_big", "logsumexp", {"axis": [0, 1]}, [_BIG], lambda x: T().logsumexp(x, (0, 1)), 1e-12),
        ("var_biased", "var", {"axis": -1}, [_X3], lambda x: T().var(x, -1, correction=0), 1e-10),
        ("var_unbiased_keep", "var", {"axis": [0, 2], "correction": 1, "keepdims": True}, [_X3],
         lambda x: T().var(x, (0, 2), correction=1, keepdim=True), 1e-10),
        ("mean_all", "mean", {}, [_X3], lambda x: T().mean(x), 1e-12),
        ("prod_axis", "prod", {"axis": 1}, [_POS], lambda x: T().prod(x, 1), 1e-12),
        ("layer_norm_2_axes", "layer_norm", {"axis": -2, "eps": 1e-5}, [_X3, _GAMMA, _BETA],
         lambda x, g, b: F().layer_norm(x, (3, 4), g, b, 1e-5), 1e-10),
        ("cross_entropy", "cross_entropy", {}, [_X[:, :5] * 10, _LABELS], lambda z, y: F().cross_entropy(z, y), 1e-12),
        ("bce_with_logits", "bce_with_logits", {}, [_X, (_RNG.random(_X.shape) < 0.5) * 1.0],
         lambda x, t: F().binary_cross_entropy_with_logits(x, t), 1e-12),
        ("bce_big", "bce_with_logits", {}, [_BIG, _RNG.random(_BIG.shape)],
         lambda x, t: F().binary_cross_entropy_with_logits(x, t), 1e-12),
        ("mse", "mse", {}, [_X, _X[::-1].copy()], lambda a, b: F().mse_loss(a, b), 1e-12),
        ("log_softmax", "log_softmax", {"axis": 0}, [_BIG], lambda x: F().log_softmax(x, 0), 1e-12),
        ("softmax", "softmax", {}, [_BIG], lambda x: F().softmax(x, -1), 1e-12),
        ("int_div_trunc", "div", {}, [_IA, _IB], lambda a, b: T().div(a, b, rounding_mode="trunc"), 0.0),
        ("argmax_ties", "argmax", {"axis": 1}, [_TIES], lambda x: T().argmax(x, 1), 0.0),
        ("argmin_ties", "argmin", {"axis": 0}, [_TIES], lambda x: T().argmin(x, 0), 0.0),
        ("cast_trunc", "cast", {"dtype": DType.i32}, [_X * 1.7], lambda x: x.to(T().int32), 0.0),
    ]


@pytest.mark.parametrize("oracle", _oracles(), ids=lambda o: o[0])
def test_reference_matches_torch_float64(oracle: Oracle) -> None:
    torch = pytest.importorskip("torch")
    label, op, attrs, arrays, torch_fn, rtol = oracle
    opdef = get_op(op)
    (ref,) = opdef.ref([a.copy() for a in arrays], check_attrs(opdef, attrs))
    want = torch_fn(*(torch.from_numpy(a.copy()) for a in arrays)).numpy()
    ref = np.asarray(ref)
    assert ref.shape == want.shape, f"{label}: reference shape {ref.shape}, torch {want.shape}"
    if rtol == 0.0:
        np.testing.assert_array_equal(ref.astype(want.dtype), want, err_msg=label)
    else:
        np.testing.assert_allclose(ref, want, rtol=rtol, atol=rtol, err_msg=label)
