"""The ``layout`` pass: conv stacks channels-last for the tensorflow target at -O3.

- Before/Expected IR: conv/pool/batch_norm become ``layout="NHWC"`` between two
  transposes; elementwise ops with per-channel operands follow (``[C, 1, 1]``
  becomes ``[1, 1, C]``); a value read in NCHW elsewhere keeps its transpose back;
- the cnn sample at -O3: exactly the two boundary transposes in the IR and in the
  generated TensorFlow code, and the same numbers on every target; so for a
  conv -> relu -> lrn -> max_pool stack (AlexNet's), with TensorFlow's own lrn;
- numpy results kept on a graph with every kind of reader, on every target;
- the pipeline: -O3 adds ``layout`` for tensorflow only; ``dlirc ir --target``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_cli import dlirc

import dlir
from dlir.compare import random_inputs
from dlir.errors import TypeError_
from dlir.ir.graph import Graph
from dlir.ir.parser import parse_graph
from dlir.ir.printer import print_graph
from dlir.ir.verifier import verify
from dlir.ir.clone import clone_graph
from dlir.passes import LEVELS, PassManager, level_pipeline, make_pass, optimize, parse_pipeline
from dlir.runtime.init import init_params
from dlir.runtime.interpreter import run_graph

ROOT = Path(__file__).resolve().parent.parent
CNN = ROOT / "samples" / "cnn.dlir"
TARGETS = ["torch", "tensorflow", "onnx"]
CONV = 'stride=[1, 1], padding=[1, 1, 1, 1], dilation=[1, 1], groups=1, act="none"'
POOL = "kernel=[2, 2], stride=[2, 2], padding=[0, 0, 0, 0], ceil_mode=false, count_include_pad=true"


def _layout(text: str) -> Graph:
    g = parse_graph(text)
    verify(g)
    PassManager(parse_pipeline("layout")).run(g)  # verifies after the pass
    return g


def test_layout_rewrites_a_conv_stack_with_transposes_at_its_ends() -> None:
    before = f"""model M(%x: f32[B, 2, 6, 6]) -> (y: f32[B, 27], c: f32[B, 3, 6, 6]) {{
      param %w: f32[3, 2, 3, 3] = normal(std=1.0)
      param %b: f32[3, 1, 1] = normal(std=1.0)
      %c: f32[B, 3, 6, 6] = conv2d(%x, %w) {{{CONV}, layout="NCHW"}}
      %a: f32[B, 3, 6, 6] = add(%c, %b)
      %r: f32[B, 3, 6, 6] = relu(%a)
      %s: f32[B, 3, 6, 6] = mul(%r, %r)
      %p: f32[B, 3, 3, 3] = avg_pool2d(%s) {{{POOL}, layout="NCHW"}}
      %y: f32[B, 27] = flatten(%p) {{start=1, end=-1}}
      return y=%y, c=%c
    }}"""
    expected = f"""model M(%x: f32[B, 2, 6, 6]) -> (y: f32[B, 27], c: f32[B, 3, 6, 6]) {{
      param %w: f32[3, 2, 3, 3] = normal(std=1.0)
      param %b: f32[3, 1, 1] = normal(std=1.0)
      %x.nhwc: f32[B, 6, 6, 2] = transpose(%x) {{perm=[0, 2, 3, 1]}}
      %c.nhwc: f32[B, 6, 6, 3] = conv2d(%x.nhwc, %w) {{{CONV}, layout="NHWC"}}
      %c: f32[B, 3, 6, 6] = transpose(%c.nhwc) {{perm=[0, 3, 1, 2]}}
      %b.nhwc: f32[1, 1, 3] = reshape(%b) {{shape=[1, 1, 3]}}
      %a.nhwc: f32[B, 6, 6, 3] = add(%c.nhwc, %b.nhwc)
      %r.nhwc: f32[B, 6, 6, 3] = relu(%a.nhwc)
      %s.nhwc: f32[B, 6, 6, 3] = mul(%r.nhwc, %r.nhwc)
      %p.nhwc: f32[B, 3, 3, 3] = avg_pool2d(%s.nhwc) {{{POOL}, layout="NHWC"}}
      %p: f32[B, 3, 3, 3] = transpose(%p.nhwc) {{perm=[0, 3, 1, 2]}}
      %y: f32[B, 27] = flatten(%p) {{start=1, end=-1}}
      return y=%y, c=%c
    }}"""
    g = _layout(before)
    assert print_graph(g) == print_graph(parse_graph(expected))


def test_layout_keeps_ops_in_nchw_where_a_move_would_cost_a_transpose() -> None:
    # %z is a full NCHW image with no channels-last copy: the add stays NCHW; so does a
    # [3, 6, 1] operand (moving C last would reorder it against H); and a rank-2 batch_norm.
    text = f"""model M(%x: f32[B, 2, 6, 6], %z: f32[B, 3, 6, 6], %v: f32[B, 3]) -> (y: f32[B, 3, 6, 6], u: f32[B, 3, 6, 6], n: f32[B, 3]) {{
      param %w: f32[3, 2, 3, 3] = normal(std=1.0)
      param %q: f32[3, 6, 1] = normal(std=1.0)
      param %s: f32[3] = ones()
      %c: f32[B, 3, 6, 6] = conv2d(%x, %w) {{{CONV}, layout="NCHW"}}
      %y: f32[B, 3, 6, 6] = add(%c, %z)
      %u: f32[B, 3, 6, 6] = add(%c, %q)
      %n: f32[B, 3] = batch_norm(%v, %s, %s, %s, %s) {{eps=1e-05, layout="NCHW", momentum=0.1}}
      return y=%y, u=%u, n=%n
    }}"""
    g = _layout(text)
    assert [n.op for n in g.nodes] == ["transpose", "conv2d", "transpose", "add", "add", "batch_norm"]
    assert [n.attrs.get("layout") for n in g.nodes if n.op in ("conv2d", "batch_norm")] == ["NHWC", "NCHW"]


def test_layout_runs_once_and_nhwc_needs_rank_4() -> None:
    g = optimize(dlir.load(CNN).graph("LeNet"), 3, target="tensorflow")
    again = clone_graph(g)
    assert make_pass("layout").run(again) is False  # nothing left in NCHW to move
    assert print_graph(again) == print_graph(g)
    bad = """model M(%x: f32[B, 6, 6]) -> (y: f32[B, 6, 6]) {
      %y: f32[B, 6, 6] = relu(%x)
      return y=%y
    }"""
    from dlir.ir.builder import emit1

    g2 = parse_graph(bad)
    with pytest.raises(TypeError_, match='layout="NHWC" expects x: \\[N, H, W, C\\]'):
        emit1(g2, "max_pool2d", [g2.inputs[0]], {"kernel": 2, "layout": "NHWC"})


# -- the cnn sample ----------------------------------------------------------------------------


def _image_transposes(g: Graph) -> list[list[int]]:
    return [n.attrs["perm"] for n in g.nodes if n.op == "transpose"]


def test_cnn_at_O3_for_tensorflow_has_only_the_boundary_transposes() -> None:
    g = optimize(dlir.load(CNN).graph("LeNet"), 3, target="tensorflow")
    ops = [n.op for n in g.nodes]
    assert _image_transposes(g) == [[0, 2, 3, 1], [0, 3, 1, 2]]
    first, last = ops.index("transpose"), len(ops) - 1 - ops[::-1].index("transpose")
    assert ops[first:last + 1] == ["transpose", "conv2d", "max_pool2d", "conv2d", "max_pool2d", "transpose"]
    assert ops[last + 1] == "flatten"  # which sees NCHW order again
    assert all(n.attrs["layout"] == "NHWC" for n in g.nodes if n.op in ("conv2d", "max_pool2d"))
    # The other targets' -O3 (and -O3 with no target) has no layout pass.
    for target in (None, "torch", "onnx"):
        other = optimize(dlir.load(CNN).graph("LeNet"), 3, target=target)
        assert "transpose" not in {n.op for n in other.nodes}


def _agrees_at_O3(prog: Any, model: str, target: str, seed: int, size: int) -> None:
    """``target`` at -O3 agrees with numpy at -O0; so does the tensorflow -O3 graph run by
    ``target``'s lowering (NHWC nodes on torch/onnx go through their permutes)."""
    from dlir.targets import runner_class

    feeds = random_inputs(prog.graph(model), seed=seed, size=size)
    want = dlir.compile(prog, "numpy", model=model)(**feeds)
    got = dlir.compile(prog, target, model=model, opt_level=3)(**feeds)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    tf_graph = optimize(prog.graph(model), 3, target="tensorflow")
    np.testing.assert_allclose(runner_class(target)(tf_graph, seed=0)(**feeds), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("target", TARGETS)
def test_cnn_at_O3_agrees_on_every_target(target: str) -> None:
    _agrees_at_O3(dlir.load(CNN), "LeNet", target, seed=3, size=3)


def test_cnn_tensorflow_code_at_O3_transposes_images_at_the_ends_only(tmp_path: Path) -> None:
    out = tmp_path / "cnn_tf.py"
    r = dlirc("compile", str(CNN), "--target", "tensorflow", "-O", "3", "-o", str(out))
    assert r.returncode == 0, r.stderr
    lines = out.read_text().splitlines()
    image = [i for i, line in enumerate(lines) if re.search(r"tf\.transpose\(\w+, perm=\[0, (2, 3, 1|3, 1, 2)\]\)", line)]
    assert len(image) == 2, [lines[i] for i in image]
    stack = lines[image[0] + 1:image[1]]
    assert sum("tf.nn.conv2d(" in line for line in stack) == 2 and sum("max_pool2d(" in line for line in stack) == 2
    # Inside the stack only the two weight reorders [O, C, kh, kw] -> [kh, kw, C, O] remain.
    assert sum(line.count("tf.transpose(") for line in stack) == 2
    assert all("perm=[2, 3, 1, 0]" in line for line in stack if "tf.transpose(" in line)
    assert "tf.reshape" not in "\n".join(stack)


# -- lrn in the stack, as in AlexNet --------------------------------------------------------

LRN_STACK = """
model Block(x: f32[B, 3, 9, 9]) -> f32[B, 64] {
    param w: f32[4, 3, 3, 3] = glorot_uniform
    param b: f32[4] = normal(std=1.0)
    h = lrn(relu(conv2d(x, w, b, padding=1)), size=3, alpha=0.5, beta=0.75, bias=1.0)
    return flatten(max_pool2d(h, kernel=3, stride=2), start=1)
}
"""


def test_lrn_stack_at_O3_for_tensorflow_has_only_the_boundary_transposes() -> None:
    prog = dlir.loads(LRN_STACK)
    g = optimize(prog.graph("Block"), 3, target="tensorflow")
    assert _image_transposes(g) == [[0, 2, 3, 1], [0, 3, 1, 2]]
    assert {n.op: n.attrs["layout"] for n in g.nodes if "layout" in n.attrs} == {
        "conv2d": "NHWC", "lrn": "NHWC", "max_pool2d": "NHWC"
    }
    # The generated code keeps TensorFlow's own lrn kernel on the channels-last image.
    source = dlir.compile(prog, "tensorflow", model="Block", opt_level=3).source
    assert "tf.nn.local_response_normalization(" in source, source
    assert source.count("perm=[0, 2, 3, 1]") == source.count("perm=[0, 3, 1, 2]") == 1, source


@pytest.mark.parametrize("target", TARGETS)
def test_lrn_stack_at_O3_agrees_on_every_target(target: str) -> None:
    _agrees_at_O3(dlir.loads(LRN_STACK), "Block", target, seed=4, size=2)


# -- numbers kept on a graph with every kind of reader ----------------------------------------

MIXED = """
model M(x: f32[B, 2, 8, 8], z: f32[B, 4, 5, 5]) -> (f32[B, 10], f32[B, 4, 5, 5]) {
    param w1: f32[4, 2, 3, 3] = glorot_uniform
    param b1: f32[4, 1, 1] = normal(std=1.0)
    param s: f32[4] = normal(std=1.0)
    param t: f32[4] = normal(std=1.0)
    param m: f32[4] = normal(std=1.0)
    param v: f32[4] = uniform(0.5, 2.0)
    param w2: f32[4, 4, 3, 3] = glorot_uniform
    param fc: f32[36, 10] = glorot_uniform
    h = relu(conv2d(x, w1, padding=1) + b1)
    h = batch_norm(h, s, t, m, v)
    h = avg_pool2d(pad(h, [0, 0, 0, 0, 1, 0, 0, 1], 0.5), kernel=3, stride=2, padding=1, count_include_pad=false)
    r = h
    h = tanh(conv2d(h, w2, padding="same")) * 2.0
    h = max_pool2d(h + r, kernel=2, ceil_mode=true)
    side = r * z
    return (flatten(where(h > 0.1, h, 0.1 * h), start=1) @ fc, side)
}
"""


def test_layout_keeps_numpy_results_on_mixed_readers() -> None:
    prog = dlir.loads(MIXED)
    g0 = optimize(prog.graph("M"), 2)
    g = optimize(g0, passes="layout")
    assert {n.attrs["layout"] for n in g.nodes if "layout" in n.attrs} == {"NHWC"}
    assert sum(n.op == "transpose" for n in g.nodes) == 3  # x in; r for `side`, h before flatten out
    feeds = random_inputs(g0, seed=0, size=2)
    params = init_params(g0, 0)
    for a, b in zip(run_graph(g0, feeds, params), run_graph(g, feeds, params)):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_mixed_readers_at_O3_agree_on_every_target(target: str) -> None:
    prog = dlir.loads(MIXED)
    feeds = random_inputs(prog.graph("M"), seed=1, size=2)
    want = dlir.compile(prog, "numpy", model="M")(**feeds)
    got = dlir.compile(prog, target, model="M", opt_level=3)(**feeds)
    for a, b in zip(want, got):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)


def test_gradients_through_the_layout_pass_agree() -> None:
    """autodiff runs before the level's passes, so -O3 lays out the gradient graph as well."""
    feeds = random_inputs(dlir.load(CNN).graph("LeNet"), seed=2, size=2)
    src = """
model Loss(x: f32[B, 1, 28, 28]) -> f32[] {
    net = LeNet()
    return sum(net(x) ** 2.0)
}
"""
    prog = dlir.loads(CNN.read_text() + src)
    want_out, want = dlir.compile(prog, "numpy", model="Loss", grad=True)(**feeds)
    got_out, got = dlir.compile(prog, "tensorflow", model="Loss", grad=True, opt_level=3)(**feeds)
    np.testing.assert_allclose(got_out, want_out, rtol=1e-5, atol=1e-4)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-4, err_msg=name)


# -- the pipeline ----------------------------------------------------------------------------


def test_O3_adds_layout_for_tensorflow_only() -> None:
    assert [p.name for p in level_pipeline(3, "tensorflow")] == [*LEVELS[3], "layout"]
    for target in (None, "numpy", "torch", "onnx"):
        assert [p.name for p in level_pipeline(3, target)] == list(LEVELS[3])
    assert [p.name for p in level_pipeline(2, "tensorflow")] == list(LEVELS[2])


def test_dlirc_ir_target_and_print_after_all() -> None:
    r = dlirc("ir", str(CNN), "-O3", "--target", "tensorflow", "--print-after-all")
    assert r.returncode == 0, r.stderr
    heads = [line.split("'")[1] for line in r.stdout.splitlines() if line.startswith("# IR after")]
    assert heads == [*LEVELS[3], "layout"]
    after_layout = r.stdout.split("# IR after")[-1].split("\n}\n")[0]  # (the final IR is printed after it)
    assert after_layout.count("= transpose(") == 2 and 'layout="NHWC"' in after_layout
    plain = dlirc("ir", str(CNN), "-O3")
    assert plain.returncode == 0 and "= transpose(" not in plain.stdout
    bad = dlirc("ir", str(CNN), "-O3", "--target", "tensorfloww")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
