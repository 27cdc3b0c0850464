"""TensorFlow's graph rewrites cannot change what a generated tf.function computes.

Grappler's remapper and, with oneDNN on, the oneDNN passes replace op chains by
fused kernels before a ``tf.function`` runs. TensorFlow 2.21's ``_MklLayerNorm``
ignores epsilon; a MatMul followed by the add of a ``[1, N]`` operand becomes a
``_FusedMatMul`` that then refuses its bias. These tests run under whatever
``TF_ENABLE_ONEDNN_OPTS`` says (the main run forces it on, see conftest.py;
test_onednn_modes.py runs them again with it off) and check:

- the rewrites really happen in this process (else the other tests prove nothing);
- layer_norm, and layer norms written out by hand or imported, agree with numpy
  in every float dtype, forward and gradient, with inputs whose spread is small
  enough that epsilon matters;
- every rewritten kernel TensorFlow runs for the samples (forward and gradient
  graphs, -O0 and -O3) is one that was reviewed (``audit.REVIEWED_FUSIONS``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dlir
from dlir.backends.tensorflow.audit import WRONG_FUSIONS, executed_ops, fusions, is_fusion, unreviewed
from dlir.compare import random_inputs

ROOT = Path(__file__).resolve().parent.parent
ONEDNN_ON = os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "1"
# Half precision is normalised in float32 and rounded once: within a few ulps of the reference.
TOL = {"f64": 1e-10, "f32": 1e-5, "f16": 4e-3, "bf16": 3e-2}


def _tuple(x: Any) -> tuple[np.ndarray, ...]:
    return x if isinstance(x, tuple) else (x,)


def _assert_close(got: Any, want: Any, tol: float, what: str) -> None:
    for g, w in zip(_tuple(got), _tuple(want)):
        g64, w64 = np.asarray(g, np.float64), np.asarray(w, np.float64)
        np.testing.assert_allclose(g64, w64, rtol=tol, atol=tol, err_msg=what)


def _tf_and_reference(
    source: str, feeds: dict[str, np.ndarray], grad: bool = False, opt: int = 0, model: str | None = None
) -> tuple[Any, Any, set[str]]:
    """The tensorflow result, the numpy reference's, and the rewritten kernels TensorFlow ran."""
    prog = dlir.loads(source)
    ref = dlir.compile(prog, "numpy", model=model, grad=grad, opt_level=opt)
    run = dlir.compile(prog, "tensorflow", model=model, grad=grad, opt_level=opt)
    out: list[Any] = []
    seen = fusions(lambda: out.append(run(**feeds)))
    return out[0], ref(**feeds), seen


def test_this_process_sees_the_rewrite_the_backend_avoids() -> None:
    """The layer norm everyone writes in TensorFlow is fused, and loses its eps, exactly when oneDNN is on."""
    from dlir.backends.tensorflow.runner import import_tf

    tf = import_tf()
    gamma, beta = tf.Variable(np.ones(16, np.float32)), tf.Variable(np.zeros(16, np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 16], tf.float32)])
    def naive(x: Any) -> Any:
        mean, var = tf.nn.moments(x, axes=[1], keepdims=True)
        return (x - mean) / tf.sqrt(var + 1e-5) * gamma + beta

    x = (np.random.default_rng(0).standard_normal((4, 16)) * 0.01).astype(np.float32)
    out: list[Any] = []
    ops = executed_ops(lambda: out.append(naive(x).numpy()))
    exact = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    if ONEDNN_ON:
        assert "_MklLayerNorm" in ops, f"oneDNN is on but the layer-norm fusion did not happen: {sorted(ops)}"
        assert np.abs(out[0] - exact).max() > 0.1, "the fused layer norm now honours eps: update PITFALLS.md and the audit"
    else:
        assert "_MklLayerNorm" not in ops
        np.testing.assert_allclose(out[0], exact, rtol=1e-5, atol=1e-5)


LN_MODEL = """
model LN(x: {dt}[{dims}, 16]) -> {dt}[{dims}, 16] {{
    param w: {dt}[16, 16] = glorot_uniform
    param g: {dt}[16] = normal(std=1.0)
    param b: {dt}[16] = normal(std=1.0)
    return layer_norm(x @ w, g, b, eps={eps})
}}

model LNLoss(x: {dt}[{dims}, 16], t: {dt}[{dims}, 16]) -> {dt}[] {{
    net = LN()
    return mean(net(x) * t)
}}
"""


@pytest.mark.parametrize("dt", ["f32", "f16", "bf16", "f64"])
@pytest.mark.parametrize("dims", ["B", "B, 5", "2, B, 3"])
@pytest.mark.parametrize("eps", ["1e-5", "1e-2"])
def test_layer_norm_is_exact_forward_and_gradient_on_tensorflow(dt: str, dims: str, eps: str) -> None:
    src = LN_MODEL.format(dt=dt, dims=dims, eps=eps)
    feeds = random_inputs(dlir.loads(src).graph("LNLoss"), seed=3, size=4)
    feeds["x"] = (feeds["x"].astype(np.float32) * 0.01).astype(feeds["x"].dtype)  # a spread where eps matters
    # The forward graph on its own: in a gradient graph the backward pass reads the forward's
    # intermediates, which keeps the fusion from matching, so each is checked separately.
    got, want, seen = _tf_and_reference(src, {"x": feeds["x"]}, model="LN")
    _assert_close(got, want, TOL[dt], "layer_norm forward")
    (loss_g, grads_g), (loss_w, grads_w), seen_grad = _tf_and_reference(src, feeds, grad=True, model="LNLoss")
    _assert_close(loss_g, loss_w, TOL[dt], "loss")
    for name in grads_w:
        _assert_close(grads_g[name], grads_w[name], TOL[dt], f"d loss / d {name}")
    for found in (seen, seen_grad):
        assert not found & set(WRONG_FUSIONS), f"a fusion known to be wrong ran: {sorted(found & set(WRONG_FUSIONS))}"
        assert not unreviewed(found), f"rewritten kernels nobody reviewed: {sorted(unreviewed(found))}"


# Layer norms written out by hand, as people write them and as exporters decompose them
# (torch.onnx before opset 17: ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul, Add).
WRITTEN_OUT = {
    "div_sqrt_var": "(x - mean(x, axis=-1, keepdims=true)) / sqrt(var(x, axis=-1, keepdims=true) + 1e-5) * g + b",
    "onnx_decomposed": "(x - mean(x, axis=-1, keepdims=true)) / sqrt(mean((x - mean(x, axis=-1, keepdims=true)) ** 2, axis=-1, keepdims=true) + 1e-5) * g + b",
    "rsqrt_positive_axis": "(x - mean(x, axis=1, keepdims=true)) * rsqrt(var(x, axis=1, keepdims=true) + 1e-5) * g + b",
}


@pytest.mark.parametrize("opt", [0, 2])
@pytest.mark.parametrize("form", sorted(WRITTEN_OUT))
def test_written_out_layer_norm_is_exact_on_tensorflow(form: str, opt: int) -> None:
    src = f"""
model Norm(x: f32[B, 16]) -> f32[B, 16] {{
    param g: f32[16] = normal(std=1.0)
    param b: f32[16] = normal(std=1.0)
    return {WRITTEN_OUT[form]}
}}
"""
    feeds = {"x": (np.random.default_rng(1).standard_normal((6, 16)) * 0.01).astype(np.float32)}
    got, want, seen = _tf_and_reference(src, feeds, opt=opt)
    _assert_close(got, want, 1e-5, form)
    assert not seen & set(WRONG_FUSIONS), f"{form}: {sorted(seen & set(WRONG_FUSIONS))}"


@pytest.mark.parametrize("expr", ["transpose(a, [1, 0]) @ w + c", "c + transpose(a, [1, 0]) @ w", "a2 @ w + c"])
def test_matmul_plus_a_row_vector_runs_on_tensorflow(expr: str) -> None:
    """MatMul(transpose_a) + AddV2 of a [1, N] operand: oneDNN's _FusedMatMul rejects the 2-D bias."""
    src = f"""
model Gemm(a: f32[3, B], a2: f32[B, 3], w: f32[3, 4], c: f32[1, 4]) -> f32[B, 4] {{
    return {expr}
}}
"""
    prog = dlir.loads(src)
    feeds = random_inputs(prog.graph("Gemm"), seed=0, size=6)
    got, want, _ = _tf_and_reference(src, feeds)
    _assert_close(got, want, 1e-5, expr)


def _sample_graphs() -> list[Any]:
    out = []
    for path in sorted((ROOT / "samples").glob("*.dlir")):
        prog = dlir.load(path)
        for model in prog.models:
            outs = prog.graph(model).outputs
            grad = len(outs) == 1 and outs[0][1].type.rank == 0
            out.append(pytest.param(path, model, grad, id=f"{path.stem}:{model}"))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("path, model, grad", _sample_graphs())
def test_samples_run_only_reviewed_rewrites(path: Path, model: str, grad: bool) -> None:
    """The audit: every fused or oneDNN kernel the samples' graphs run was reviewed, and the numbers agree."""
    prog = dlir.load(path)
    feeds = random_inputs(prog.graph(model), seed=2, size=3)
    for opt in (0, 3):
        for g in (False, True) if grad else (False,):
            ref = dlir.compile(prog, "numpy", model=model, grad=g, opt_level=opt)
            run = dlir.compile(prog, "tensorflow", model=model, grad=g, opt_level=opt)
            out: list[Any] = []
            seen = fusions(lambda: out.append(run(**feeds)))
            what = f"{path.stem}:{model} -O{opt}{' grad' if g else ''}"
            assert not unreviewed(seen), f"{what}: rewritten kernels nobody reviewed: {sorted(unreviewed(seen))}"
            want = ref(**feeds)
            if g:
                _assert_close(out[0][0], want[0], 1e-5, what)
                for name in want[1]:
                    _assert_close(out[0][1][name], want[1][name], 1e-4, f"{what} d/d{name}")
            else:
                _assert_close(out[0], want, 1e-5, what)


# Loss models over the samples whose own outputs are not a loss: their gradient graphs carry
# the backward ops (layer_norm_grad's decomposition, conv and pool gradients) through grappler too.
_LOSS_WRAPPERS = {
    "resmlp": "model L(x: f32[B, 64], labels: i64[B]) -> f32[] {\n net = ResMLP()\n"
    " logits, probs = net(x)\n return cross_entropy(logits, labels)\n}\n",
    "cnn": "model L(x: f32[B, 1, 28, 28], labels: i64[B]) -> f32[] {\n net = LeNet()\n"
    " return cross_entropy(net(x), labels)\n}\n",
}


@pytest.mark.slow
@pytest.mark.parametrize("sample", sorted(_LOSS_WRAPPERS))
def test_gradient_graphs_run_only_reviewed_rewrites(sample: str) -> None:
    prog = dlir.loads((ROOT / "samples" / f"{sample}.dlir").read_text() + _LOSS_WRAPPERS[sample], f"{sample}.dlir")
    feeds = random_inputs(prog.graph("L"), seed=3, size=4)
    feeds["labels"] = np.arange(4, dtype=np.int64) % 10
    for opt in (0, 3):
        ref = dlir.compile(prog, "numpy", model="L", grad=True, opt_level=opt)
        run = dlir.compile(prog, "tensorflow", model="L", grad=True, opt_level=opt)
        out: list[Any] = []
        seen = fusions(lambda: out.append(run(**feeds)))
        what = f"{sample} loss -O{opt} grad"
        assert not unreviewed(seen), f"{what}: rewritten kernels nobody reviewed: {sorted(unreviewed(seen))}"
        want = ref(**feeds)
        _assert_close(out[0][0], want[0], 1e-5, what)
        for name in want[1]:
            _assert_close(out[0][1][name], want[1][name], 1e-4, f"{what} d/d{name}")


@pytest.mark.parametrize("op", ["sum", "mean", "var"])
def test_long_float32_reductions_on_tensorflow_are_summed_as_exactly_as_numpy(op: str) -> None:
    """TF's float32 sums over outer axes drift ~5e-6 over 25 000 values; dlir sums runs of at most
    1 024 values in float32 and adds those partial sums in float64 (a full float64 cast of the
    tensor is ~1.6x dearer and no more exact at rtol 1e-6)."""
    src = f"""
model R(x: f32[B, 8, 28, 28]) -> f32[1, 8, 1, 1] {{
    return {op}(x, axis=[0, 2, 3], keepdims=true)
}}
"""
    x = np.random.default_rng(0).uniform(0.0, 4.0, (32, 8, 28, 28)).astype(np.float32) ** 2
    got, want, _ = _tf_and_reference(src, {"x": x})
    _assert_close(got, want, 1e-6, op)


def test_wide_sums_sum_the_innermost_static_axes_first_up_to_the_bound() -> None:
    """The float32 partial sums run over the innermost reduced axes of the expression (channels-last
    where a conv made it so) and never past PARTIAL_SUM_MAX values or a symbolic axis."""
    from dlir.backends.tensorflow.lowering import PARTIAL_SUM_MAX, partial_sum_axes
    from dlir.ir.types import TensorType

    nchw = TensorType.make("f32", ["B", 8, 28, 28])
    assert partial_sum_axes(nchw, [0, 2, 3]) == ([2, 3], 784)
    nhwc = {0: 0, 1: 3, 2: 1, 3: 2}.__getitem__  # an NCHW axis -> its NHWC place
    assert partial_sum_axes(nchw, [0, 2, 3], nhwc) == ([1, 2], 784)
    assert PARTIAL_SUM_MAX == 1024  # (the cases below are sized around it)
    assert partial_sum_axes(TensorType.make("f32", [4, 16, 32]), None) == ([1, 2], 512)
    assert partial_sum_axes(TensorType.make("f32", [4, 64, 32]), None) == ([2], 32)
    assert partial_sum_axes(TensorType.make("f32", [3, PARTIAL_SUM_MAX + 1]), [1]) == ([], 1)
    assert partial_sum_axes(TensorType.make("f32", ["B"]), [0]) == ([], 1)


BN_STEP = """
use nn
model Net(x: f32[B, 3, 28, 28]) -> f32[B, 4] {
    conv = Conv2d(3, 5, 3, padding=1)
    bn = BatchNorm2d(5, eps=0.5)
    fc = Dense(980, 4)
    return fc(flatten(max_pool2d(relu(bn(conv(x))), kernel=2)))
}
model Loss(x: f32[B, 3, 28, 28], y: i64[B]) -> f32[] {
    net = Net()
    return cross_entropy(net(x), y)
}
"""


def test_train_mode_batch_norm_runs_the_fused_kernels_with_the_reference_statistics() -> None:
    """A training step's batch norm on TensorFlow is FusedBatchNormV3 / FusedBatchNormGradV3 (or
    oneDNN's reviewed forms) given float64-summed statistics: with a large mean against a small
    spread (where float32 statistics drift) and a large epsilon, three steps give the numpy
    step's loss, params and running statistics."""
    from dlir.train import SGD, Trainer

    graph = dlir.loads(BN_STEP).graph("Loss")
    rng = np.random.default_rng(0)
    x = (5.0 + 0.3 * rng.standard_normal((64, 3, 28, 28))).astype(np.float32)
    y = rng.integers(0, 4, 64).astype(np.int64)
    made: list[Any] = []
    losses: list[float] = []

    def first_step() -> None:  # (TensorFlow reports the kernels of a function's first run)
        made.append(Trainer(graph, SGD(lr=0.1), target="tensorflow", device="cpu"))
        losses.append(made[0].step(x=x, y=y))

    ran = executed_ops(first_step)
    losses += [made[0].step(x=x, y=y) for _ in range(2)]
    assert not unreviewed({op for op in ran if is_fusion(op)}), sorted(unreviewed({op for op in ran if is_fusion(op)}))
    assert any("FusedBatchNorm" in op and "Grad" not in op for op in ran), sorted(ran)
    assert any("FusedBatchNormGrad" in op for op in ran), sorted(ran)
    ref = Trainer(graph, SGD(lr=0.1), target="numpy")
    want_losses = [ref.step(x=x, y=y) for _ in range(3)]
    np.testing.assert_allclose(losses, want_losses, rtol=1e-5)
    # The statistics are float32 partial sums over H*W then float64 over the partials: the step
    # itself (its lines carry the model's locations) never casts a whole activation to float64.
    step_lines = [line for line in made[0].runner.source.splitlines() if "# <string>" in line]
    assert step_lines and not any("float64" in line for line in step_lines), step_lines
    assert any("fused_batch_norm(" in line and "[1, 2], 784)" in line for line in step_lines), step_lines
    got = {**made[0].params, **made[0].buffers}
    for k, want in {**ref.params, **ref.buffers}.items():
        np.testing.assert_allclose(got[k], want, rtol=1e-5, atol=1e-5, err_msg=k)
