"""Per-op agreement: every case of ``dlir.ops.cases`` on every target against the numpy reference.

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
from dlir.ir.types import DType, TensorType
from dlir.ops import OpDef, check_attrs, get_op, lowered_ops
from dlir.runtime.runner import NumpyRunner, Runner
from dlir.targets import BACKEND_TARGETS, runner_class
from dlir.ops.case_kit import Case, build_case, compare, concrete_shape, make_feeds
from dlir.ops.cases import CASES

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
    why = compare(got, want)
    if why is not None:
        pytest.fail(f"{what}: {why}")


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
    assert not missing, f"ops without a case in dlir/ops/cases.py: {', '.join(missing)}"


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
_IMG = _RNG.normal(size=(2, 4, 9, 8))
_IMG_NEG = _RNG.uniform(-5.0, -1.0, (2, 3, 7, 8))  # all negative: a zero in the padding would win a max
_W = _RNG.normal(size=(6, 4, 3, 3))
_W_G2 = _RNG.normal(size=(6, 2, 3, 2))
_W_DW = _RNG.normal(size=(8, 1, 3, 3))
_W_EVEN = _RNG.normal(size=(5, 4, 2, 4))
_BIAS = _RNG.normal(size=6)
_BN = [_RNG.normal(size=4), _RNG.normal(size=4), _RNG.normal(size=4), _RNG.uniform(0.1, 2.0, 4)]
_IDX = np.array([[0, -1, 3], [-7, 6, 2]])  # in range for axes of 7 or more
_CLASSES = np.array([[0, 4, -1], [5, 2, 3]])  # -1 and 5 are outside [0, 5)

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
        *_nn_oracles(F, T),
    ]


def _tpad(x: Any, pads: list[int], value: float = 0.0) -> Any:
    """torch's F.pad of NCHW spatial axes from dlir's [top, left, bottom, right]."""
    import torch.nn.functional as fn

    return fn.pad(x, (pads[1], pads[3], pads[0], pads[2]), value=value)


def _nn_oracles(F: Callable[[], Any], T: Callable[[], Any]) -> list[Oracle]:
    """conv2d, pools, batch_norm, pad, gather and one_hot against torch.nn.functional."""
    conv = [
        ("conv_stride2_pad1", {"stride": 2, "padding": 1}, [_IMG, _W, _BIAS],
         lambda x, w, b: F().conv2d(x, w, b, stride=2, padding=1)),
        ("conv_dilation2_groups2_pair", {"dilation": 2, "groups": 2, "padding": [2, 1]}, [_IMG, _W_G2],
         lambda x, w: F().conv2d(x, w, dilation=2, groups=2, padding=(2, 1))),
        ("conv_depthwise_stride_pair", {"groups": 4, "stride": [2, 1], "padding": 1}, [_IMG, _W_DW],
         lambda x, w: F().conv2d(x, w, groups=4, stride=(2, 1), padding=1)),
        ("conv_pads4", {"padding": [1, 0, 2, 1], "stride": 2}, [_IMG, _W],
         lambda x, w: F().conv2d(_tpad(x, [1, 0, 2, 1]), w, stride=2)),
        # torch's padding="same" (stride 1 only) also puts the odd cell at the bottom/right.
        ("conv_same_even_kernel", {"padding": "same"}, [_IMG, _W_EVEN],
         lambda x, w: F().conv2d(x, w, padding="same")),
    ]
    pools: list[tuple[str, str, dict[str, Any], list[np.ndarray], Callable[..., Any]]] = []
    for cm in (False, True):  # ceil_mode
        tag = "ceil" if cm else "floor"
        for cip in (True, False):  # count_include_pad
            pools.append((f"avg_pool_{tag}_{'include' if cip else 'exclude'}_pad", "avg_pool2d",
                          {"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": cm, "count_include_pad": cip},
                          [_IMG], lambda x, cm=cm, cip=cip: F().avg_pool2d(x, 3, 2, 1, cm, cip)))
        # 9x8 with kernel 2, stride 3, padding 1: ceil_mode's last window would start in the padding (dropped).
        pools += [
            (f"avg_pool_{tag}_k2_s3", "avg_pool2d", {"kernel": 2, "stride": 3, "padding": 1, "ceil_mode": cm},
             [_IMG], lambda x, cm=cm: F().avg_pool2d(x, 2, 3, 1, cm)),
            (f"max_pool_{tag}_pad1", "max_pool2d", {"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": cm},
             [_IMG_NEG], lambda x, cm=cm: F().max_pool2d(x, 3, 2, 1, ceil_mode=cm)),
            (f"max_pool_{tag}_dilation2", "max_pool2d",
             {"kernel": [2, 3], "stride": [1, 2], "padding": 1, "dilation": 2, "ceil_mode": cm},
             [_IMG_NEG], lambda x, cm=cm: F().max_pool2d(x, (2, 3), (1, 2), 1, 2, ceil_mode=cm)),
            (f"max_pool_{tag}_k2_s3", "max_pool2d", {"kernel": 2, "stride": 3, "padding": 1, "ceil_mode": cm},
             [_IMG_NEG], lambda x, cm=cm: F().max_pool2d(x, 2, 3, 1, ceil_mode=cm)),
        ]

    def one_hot(i: Any) -> Any:
        inside = (i >= 0) & (i < 5)
        return F().one_hot(T().where(inside, i, 0), 5) * inside[..., None]

    return [
        *((label, "conv2d", attrs, arrays, fn, 1e-12) for label, attrs, arrays, fn in conv),
        *((label, op, attrs, arrays, fn, 1e-12) for label, op, attrs, arrays, fn in pools),
        ("batch_norm", "batch_norm", {"eps": 1e-3}, [_IMG, *_BN],
         lambda x, g, b, m, v: F().batch_norm(x, m, v, g, b, training=False, eps=1e-3), 1e-12),
        ("batch_norm_rank2", "batch_norm", {}, [_IMG[:, :, 0, 0].copy(), *_BN],
         lambda x, g, b, m, v: F().batch_norm(x, m, v, g, b, training=False), 1e-12),
        ("pad_two_axes", "pad", {"pads": [0, 0, 1, 2, 0, 0, 3, 1], "value": -2.5}, [_IMG],
         lambda x: F().pad(x, (3, 1, 0, 0, 1, 2), value=-2.5), 0.0),
        ("gather_index_select", "gather", {"axis": 2}, [_IMG, np.array([8, 0, 3, 3])],
         lambda x, i: T().index_select(x, 2, i), 0.0),
        ("gather_negative_2d_axis1", "gather", {"axis": 1}, [_IMG[:, 0].copy(), _IDX],
         lambda x, i: x[:, i], 0.0),
        ("gather_negative_last_axis", "gather", {"axis": -1}, [_X, _IDX], lambda x, i: x[..., i], 0.0),
        ("one_hot_out_of_range_zero", "one_hot", {"n": 5}, [_CLASSES], one_hot, 0.0),
    ]


def _node_attrs(opdef: OpDef, attrs: dict[str, Any], arrays: list[np.ndarray]) -> dict[str, Any]:
    """The attributes as a built node holds them (checked, then made canonical for these inputs)."""
    full = check_attrs(opdef, attrs)
    if opdef.canonical is None:
        return full
    types = [TensorType.make(DType.from_numpy(a.dtype) or DType.f64, a.shape) for a in arrays]
    return opdef.canonical(types, full)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("oracle", _oracles(), ids=lambda o: o[0])
def test_reference_matches_torch_float64(oracle: Oracle) -> None:
    torch = pytest.importorskip("torch")
    label, op, attrs, arrays, torch_fn, rtol = oracle
    opdef = get_op(op)
    (ref,) = opdef.ref([a.copy() for a in arrays], _node_attrs(opdef, attrs, arrays))
    want = torch_fn(*(torch.from_numpy(a.copy()) for a in arrays)).numpy()
    ref = np.asarray(ref)
    assert ref.shape == want.shape, f"{label}: reference shape {ref.shape}, torch {want.shape}"
    if rtol == 0.0:
        np.testing.assert_array_equal(ref.astype(want.dtype), want, err_msg=label)
    else:
        np.testing.assert_allclose(ref, want, rtol=rtol, atol=rtol, err_msg=label)


@pytest.mark.parametrize("hw", [(9, 8), (7, 7)])
@pytest.mark.parametrize("op", ["conv2d", "max_pool2d", "avg_pool2d"])
def test_same_padding_matches_tensorflow(op: str, hw: tuple[int, int]) -> None:
    """padding="same" is TF's SAME (extra cell at the bottom/right), here with even kernels and stride 2.

    TF's pools never count padding: max ignores it, avg divides by the real cells
    (dlir's count_include_pad=false).
    """
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 3, *hw))
    x_nhwc = tf.constant(x.transpose(0, 2, 3, 1))
    if op == "conv2d":
        w = rng.normal(size=(4, 3, 4, 2))  # [O, C, kh, kw]
        arrays, attrs = [x, w], {"stride": 2, "padding": "same"}
        want = tf.nn.conv2d(x_nhwc, tf.constant(w.transpose(2, 3, 1, 0)), strides=2, padding="SAME")
    elif op == "max_pool2d":
        x = x - 10.0  # all negative, so a zero in the padding would show
        x_nhwc = tf.constant(x.transpose(0, 2, 3, 1))
        arrays, attrs = [x], {"kernel": [4, 2], "stride": 2, "padding": "same"}
        want = tf.nn.max_pool2d(x_nhwc, ksize=[4, 2], strides=2, padding="SAME")
    else:
        arrays, attrs = [x], {"kernel": [2, 4], "stride": 2, "padding": "same", "count_include_pad": False}
        want = tf.nn.avg_pool2d(x_nhwc, ksize=[2, 4], strides=2, padding="SAME")
    opdef = get_op(op)
    node_attrs = _node_attrs(opdef, attrs, arrays)
    assert node_attrs["padding"][2] >= node_attrs["padding"][0], node_attrs["padding"]  # the extra cell at the bottom
    (ref,) = opdef.ref(arrays, node_attrs)
    np.testing.assert_allclose(ref, want.numpy().transpose(0, 3, 1, 2), rtol=1e-12, atol=1e-12)
