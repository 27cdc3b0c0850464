"""Optimisation passes and the pass manager.

- each pass on Before/Expected IR texts, compared structurally (parse, run the
  pass, print; compare with the printed expected text);
- the manager: pipelines by name and level, verification between passes, a
  failing pass reported by name with the IR around the fault, the instruments;
- hypothesis: on random well-typed graphs every pass and every level keeps the
  numpy results and the verifier holds after every pass;
- every sample at every level on every target agrees with the unoptimised numpy
  reference; ``dlirc ir``/``dlirc compile`` with the pass flags.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
import test_ir_text as base  # the random-graph generator of the IR-text tests
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_cli import dlirc

import dlir
from dlir.compare import random_inputs
from dlir.errors import DlirError, PassError, UsageError
from dlir.ir.builder import emit1
from dlir.ir.clone import clone_graph
from dlir.ir.graph import Graph, Init, Value
from dlir.ir.parser import parse_graph
from dlir.ir.printer import print_graph
from dlir.ir.types import DType, TensorType
from dlir.ir.verifier import verify
from dlir.passes import (
    LEVELS,
    PASSES,
    DumpIR,
    Pass,
    PassManager,
    PassTiming,
    PrintIR,
    count_nodes,
    level_pipeline,
    make_pass,
    optimize,
    parse_pipeline,
)
from dlir.runtime.init import init_params
from dlir.runtime.interpreter import run_graph
from dlir.targets import runner_class

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "samples").glob("*.dlir"))
PASS_NAMES = ["dce", "cse", "fold", "simplify", "fuse", "licm", "layout"]


def run_pipeline(pipeline: str, before: str) -> Graph:
    g = parse_graph(before)
    verify(g)
    PassManager(parse_pipeline(pipeline)).run(g)  # verifies after every pass that changed g
    return g


def check(pipeline: str, before: str, expected: str) -> Graph:
    """Run ``pipeline`` on the Before text; the result must print as the Expected text does."""
    g = run_pipeline(pipeline, before)
    assert print_graph(g) == print_graph(parse_graph(expected))
    return g


# -- dce -------------------------------------------------------------------------------------


def test_dce_removes_unused_chains_and_keeps_inputs_and_params() -> None:
    check(
        "dce",
        """model M(%x: f32[B, 4], %unused: f32[2]) -> (y: f32[B, 4]) {
          param %w: f32[4, 4] = zeros()
          param %spare: f32[3] = ones()
          %a: f32[B, 4] = matmul(%x, %w)
          %dead: f32[B, 4] = tanh(%a)
          %dead2: f32[B, 4] = exp(%dead)
          %y: f32[B, 4] = relu(%a)
          return y=%y
        }""",
        """model M(%x: f32[B, 4], %unused: f32[2]) -> (y: f32[B, 4]) {
          param %w: f32[4, 4] = zeros()
          param %spare: f32[3] = ones()
          %a: f32[B, 4] = matmul(%x, %w)
          %y: f32[B, 4] = relu(%a)
          return y=%y
        }""",
    )


def test_dce_keeps_a_multi_result_node_when_one_result_is_used() -> None:
    text = """model M(%x: f32[4, 6]) -> (y: f32[4, 2]) {
      %a: f32[4, 2], %b: f32[4, 4] = split(%x) {sizes=[2, 4], axis=1}
      return y=%a
    }"""
    check("dce", text, text)


SCAN = """model M(%x: f32[B, T, 4], %v: f32[4]) -> (y: f32[B, 4]) {{
  %c: f32[4] = exp(%v)
  %c2: f32[4] = exp(%v)
  %h0: f32[B, 4] = sum(%x) {{axis=[1]}}
  %ys: f32[B, T, 4], %h_last: f32[B, 4] = scan(%x, %h0) {{axis=1, reverse=false, n_carry=1}}
  body step(%x_t: f32[B, 4], %h: f32[B, 4]) -> (h: f32[B, 4], ys: f32[B, 4]) {{
    %h.1: f32[B, 4] = add(%h, %{closure})
    %h.2: f32[B, 4] = add(%h.1, %x_t)
    %h.3: f32[B, 4] = mul(%h.2, %h.2)
    return h=%h.2, ys=%h.2
  }}
  return y={out}
}}"""


def test_dce_counts_scan_closures_as_uses() -> None:
    g = run_pipeline("dce", SCAN.format(closure="c2", out="%h_last"))
    printed = print_graph(g)
    assert "%c2: f32[4] = exp(%v)" in printed  # read only by the body
    assert "%c: f32[4] = exp(%v)" not in printed
    assert "%h.3" not in printed  # dead inside the body: dce sweeps bodies too
    # a scan whose results are all unused goes, with what only it read
    g = run_pipeline("dce", SCAN.format(closure="c2", out="%h0"))
    assert [n.op for n in g.nodes] == ["sum"]


# -- cse -------------------------------------------------------------------------------------


def test_cse_merges_duplicates_and_swapped_commutative_inputs() -> None:
    check(
        "cse",
        """model M(%x: f32[B, 4], %y: f32[4]) -> (a: f32[B, 4], b: f32[B, 4], c: f32[B, 4], d: f32[B, 4]) {
          %s: f32[B, 4] = add(%x, %y)                   loc("m.dlir":2:5)
          %s2: f32[B, 4] = add(%y, %x)                  loc("m.dlir":3:5)
          %t: f32[B, 4] = tanh(%s)
          %t2: f32[B, 4] = tanh(%s2)
          %d: f32[B, 4] = sub(%x, %y)
          %d2: f32[B, 4] = sub(%y, %x)
          %u: f32[B, 4] = mul(%t, %t2)
          return a=%t, b=%t2, c=%u, d=%d2
        }""",
        """model M(%x: f32[B, 4], %y: f32[4]) -> (a: f32[B, 4], b: f32[B, 4], c: f32[B, 4], d: f32[B, 4]) {
          %s: f32[B, 4] = add(%x, %y)                   loc("m.dlir":2:5)
          %t: f32[B, 4] = tanh(%s)
          %d: f32[B, 4] = sub(%x, %y)
          %d2: f32[B, 4] = sub(%y, %x)
          %u: f32[B, 4] = mul(%t, %t)
          return a=%t, b=%t, c=%u, d=%d2
        }""",
    )


def test_cse_compares_attributes_by_kind_and_value() -> None:
    text = """model M(%x: f32[4]) -> (a: f32[4], b: f32[4], c: f32[], d: f32[], e: f32[], f: f32[]) {
      %a: f32[4] = leaky_relu(%x) {alpha=0.1}
      %b: f32[4] = leaky_relu(%x) {alpha=0.2}
      %c: f32[] = constant() {value=0.0, dtype=f32}
      %d: f32[] = constant() {value=-0.0, dtype=f32}
      %e: f32[] = constant() {value=1, dtype=f32}
      %f: f32[] = constant() {value=1.0, dtype=f32}
      return a=%a, b=%b, c=%c, d=%d, e=%e, f=%f
    }"""
    check("cse", text, text)
    g = run_pipeline("cse", text.replace("alpha=0.2", "alpha=0.1").replace("value=-0.0", "value=0.0"))
    assert [n.outputs[0].name for n in g.nodes] == ["a", "c", "e", "f"]
    assert g.output_names() == ["a", "b", "c", "d", "e", "f"]


def test_cse_redirects_scan_closures_and_never_merges_bodies() -> None:
    g = run_pipeline("cse", SCAN.format(closure="c2", out="%h_last"))
    printed = print_graph(g)
    assert "%c2: f32[4] = exp(%v)" not in printed
    assert "%h.1: f32[B, 4] = add(%h, %c)" in printed
    doubled = SCAN.format(closure="c", out="%h_last").replace(
        "  return y=%h_last",
        "  %ys.b: f32[B, T, 4], %h_last.b: f32[B, 4] = scan(%x, %h0) {axis=1, reverse=false, n_carry=1}\n"
        "  body step2(%x_t.b: f32[B, 4], %h.b: f32[B, 4]) -> (h: f32[B, 4], ys: f32[B, 4]) {\n"
        "    %h.b1: f32[B, 4] = add(%h.b, %c)\n"
        "    return h=%h.b1, ys=%h.b1\n"
        "  }\n"
        "  return y=%h_last",
    )
    g = run_pipeline("cse", doubled)
    assert [n.op for n in g.nodes].count("scan") == 2


# -- fold ------------------------------------------------------------------------------------


FOLD = """model M(%x: f32[B, 3]) -> (y: f32[B, 3], k: f32[3]) {
  param %w: f32[3] = ones()
  buffer %m: f32[3] = constant(value=2.0)
  %a: f32[3] = constant() {value=[1.0, 2.0, 3.0], dtype=f32}       loc("m.dlir":1:1)
  %b: f32[] = constant() {value=0.5, dtype=f32}
  %c: f32[3] = mul(%a, %b)                                          loc("m.dlir":2:2)
  %d: f32[3] = exp(%c)                                              loc("m.dlir":3:3)
  %e: f32[3] = add(%d, %w)
  %f: f32[3] = mul(%m, %a)
  %g: f32[B, 3] = broadcast_to(%a) {shape=[B, 3]}
  %y: f32[B, 3] = add(%x, %e)
  %y2: f32[B, 3] = add(%y, %g)
  return y=%y2, k=%f
}"""


def test_fold_evaluates_constant_subgraphs_with_the_reference() -> None:
    g = run_pipeline("fold,dce", FOLD)
    printed = print_graph(g)
    d = next(n for n in g.nodes if n.outputs[0].name == "d")
    assert d.op == "constant" and d.loc.line == 3  # the folded node keeps its name and location
    want = np.exp(np.array([0.5, 1.0, 1.5])).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(d.attrs["value"], dtype=np.float32), want)
    assert "%e: f32[3] = add(%d, %w)" in printed  # params stay params
    assert "%f: f32[3] = mul(%m, %a)" in printed  # buffers too
    assert "broadcast_to(%a) {shape=[B, 3]}" in printed  # a symbolic result is not folded
    assert "%c:" not in printed and "%b:" not in printed


def test_fold_params_on_request_and_limits_the_size() -> None:
    g = run_pipeline("fold{fold_params=true},dce", FOLD)
    assert {n.outputs[0].name: n.op for n in g.nodes}["f"] == "constant"
    assert {n.outputs[0].name: n.op for n in g.nodes}["e"] == "constant"
    assert [p.name for p in g.params] == ["w", "m"]  # the params themselves stay
    g = run_pipeline("fold{max_elements=2}", FOLD)
    assert {n.outputs[0].name: n.op for n in g.nodes}["c"] == "mul"


def test_fold_splits_a_multi_result_node_into_constants() -> None:
    check(
        "fold,dce",
        """model M() -> (a: i64[1], b: i64[2]) {
          %k: i64[3] = constant() {value=[7, 8, 9], dtype=i64}
          %a: i64[1], %b: i64[2] = split(%k) {sizes=[1, 2], axis=0}     loc("m.dlir":4:4)
          return a=%a, b=%b
        }""",
        """model M() -> (a: i64[1], b: i64[2]) {
          %a: i64[1] = constant() {value=[7], dtype=i64}                loc("m.dlir":4:4)
          %b: i64[2] = constant() {value=[8, 9], dtype=i64}             loc("m.dlir":4:4)
          return a=%a, b=%b
        }""",
    )


def test_fold_rounds_like_the_interpreter() -> None:
    text = """model M() -> (y: f32[], z: bool[2]) {
      %a: f32[] = constant() {value=0.1, dtype=f32}
      %b: f32[] = constant() {value=0.2, dtype=f32}
      %y: f32[] = add(%a, %b)
      %c: f32[2] = constant() {value=[1.0, -1.0], dtype=f32}
      %z: bool[2] = greater(%c, %a)
      return y=%y, z=%z
    }"""
    g = parse_graph(text)
    want = run_graph(g, {}, {})
    folded = run_pipeline("fold", text)
    assert all(n.op == "constant" for n in folded.nodes)
    for a, b in zip(want, run_graph(folded, {}, {})):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


# -- simplify --------------------------------------------------------------------------------


def test_simplify_arithmetic_identities() -> None:
    check(
        "simplify",
        """model M(%x: f32[B, 4]) -> (a: f32[B, 4], b: f32[B, 4], c: f32[B, 4], d: f32[B, 4], e: f32[B, 4], f: f32[B, 4], g: f32[B, 4]) {
          %z: f32[4] = constant() {value=[0.0, 0.0, -0.0, 0.0], dtype=f32}
          %one: f32[] = constant() {value=1.0, dtype=f32}
          %a: f32[B, 4] = add(%x, %z)
          %b: f32[B, 4] = add(%z, %a)
          %c: f32[B, 4] = sub(%b, %z)
          %d: f32[B, 4] = mul(%c, %one)
          %e: f32[B, 4] = mul(%one, %d)
          %f: f32[B, 4] = div(%e, %one)
          %g: f32[B, 4] = pow(%f, %one)
          %n: f32[B, 4] = neg(%g)
          %nn: f32[B, 4] = neg(%n)
          return a=%a, b=%b, c=%c, d=%d, e=%e, f=%f, g=%nn
        }""",
        """model M(%x: f32[B, 4]) -> (a: f32[B, 4], b: f32[B, 4], c: f32[B, 4], d: f32[B, 4], e: f32[B, 4], f: f32[B, 4], g: f32[B, 4]) {
          %z: f32[4] = constant() {value=[0.0, 0.0, -0.0, 0.0], dtype=f32}
          %one: f32[] = constant() {value=1.0, dtype=f32}
          %n: f32[B, 4] = neg(%x)
          return a=%x, b=%x, c=%x, d=%x, e=%x, f=%x, g=%x
        }""",
    )


def test_simplify_keeps_ops_that_broadcast_or_differ() -> None:
    text = """model M(%x: f32[4], %s: f32[B]) -> (a: f32[2, 4], b: f32[B], c: f32[4], d: f32[4], e: f32[B, 3]) {
      %z: f32[2, 4] = constant() {value=[[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]], dtype=f32}
      %z3: f32[3] = constant() {value=[0.0, 0.0, 0.0], dtype=f32}
      %z4: f32[4] = constant() {value=[0.0, 0.0, 0.0, 0.0], dtype=f32}
      %two: f32[] = constant() {value=2.0, dtype=f32}
      %ones: f32[4] = constant() {value=[1.0, 1.0, 1.0, 2.0], dtype=f32}
      %a: f32[2, 4] = add(%x, %z)
      %b: f32[B] = sub(%s, %two)
      %c: f32[4] = mul(%x, %ones)
      %d: f32[4] = sub(%z4, %x)
      %s2: f32[B, 1] = unsqueeze(%s) {axes=[1]}
      %e: f32[B, 3] = add(%s2, %z3)
      return a=%a, b=%b, c=%c, d=%d, e=%e
    }"""
    check("simplify", text, text)


def test_simplify_where_of_a_constant_condition() -> None:
    """where(False, a, x) is x and where(True, x, a) is x (autodiff's re-selection of a cotangent known
    nowhere zero); a mixed condition, or a side that the condition would broadcast, stays."""
    check(
        "simplify,dce",
        """model M(%x: f32[B, 4], %s: f32[]) -> (a: f32[B, 4], b: f32[B, 4], c: f32[B, 4], d: f32[B, 4]) {
          %no: bool[] = constant() {value=false, dtype=bool}
          %yes: bool[4] = constant() {value=[true, true, true, true], dtype=bool}
          %mixed: bool[4] = constant() {value=[true, false, true, true], dtype=bool}
          %zero: f32[] = constant() {value=0.0, dtype=f32}
          %a: f32[B, 4] = where(%no, %zero, %x)
          %b: f32[B, 4] = where(%yes, %x, %zero)
          %c: f32[B, 4] = where(%mixed, %x, %zero)
          %d: f32[B, 4] = where(%yes, %s, %x)
          return a=%a, b=%b, c=%c, d=%d
        }""",
        """model M(%x: f32[B, 4], %s: f32[]) -> (a: f32[B, 4], b: f32[B, 4], c: f32[B, 4], d: f32[B, 4]) {
          %yes: bool[4] = constant() {value=[true, true, true, true], dtype=bool}
          %mixed: bool[4] = constant() {value=[true, false, true, true], dtype=bool}
          %zero: f32[] = constant() {value=0.0, dtype=f32}
          %c: f32[B, 4] = where(%mixed, %x, %zero)
          %d: f32[B, 4] = where(%yes, %s, %x)
          return a=%x, b=%x, c=%c, d=%d
        }""",
    )


def test_simplify_shape_chains() -> None:
    check(
        "simplify,dce",
        """model M(%x: f32[B, 3, 4]) -> (a: f32[B, 3, 4], b: f32[4, B, 3], c: f32[B, 12], d: f32[B, 3, 4], e: f32[B, 3, 4], f: f32[B, 3, 4], g: f32[B, 3, 4]) {
          %t1: f32[3, 4, B] = transpose(%x) {perm=[1, 2, 0]}
          %t2: f32[B, 3, 4] = transpose(%t1) {perm=[2, 0, 1]}
          %u1: f32[3, B, 4] = transpose(%x) {perm=[1, 0, 2]}             loc("m.dlir":5:1)
          %u2: f32[4, B, 3] = transpose(%u1) {perm=[2, 1, 0]}            loc("m.dlir":6:1)
          %r1: f32[B, 2, 6] = reshape(%x) {shape=[B, 2, 6]}
          %r2: f32[B, 12] = reshape(%r1) {shape=[B, -1]}
          %r3: f32[B, 3, 4] = reshape(%r2) {shape=[B, 3, 4]}
          %k: f32[B, 3, 4] = cast(%x) {dtype=f32}
          %q1: f32[B, 1, 3, 4] = unsqueeze(%x) {axes=[1]}
          %q2: f32[B, 3, 4] = squeeze(%q1) {axes=[-3]}
          %id: f32[B, 3, 4] = transpose(%x) {perm=[0, 1, 2]}
          return a=%t2, b=%u2, c=%r2, d=%r3, e=%k, f=%q2, g=%id
        }""",
        """model M(%x: f32[B, 3, 4]) -> (a: f32[B, 3, 4], b: f32[4, B, 3], c: f32[B, 12], d: f32[B, 3, 4], e: f32[B, 3, 4], f: f32[B, 3, 4], g: f32[B, 3, 4]) {
          %u2: f32[4, B, 3] = transpose(%x) {perm=[2, 0, 1]}             loc("m.dlir":6:1)
          %r2: f32[B, 12] = reshape(%x) {shape=[B, -1]}
          return a=%x, b=%u2, c=%r2, d=%x, e=%x, f=%x, g=%x
        }""",
    )


def test_simplify_squeeze_unsqueeze_pairs_on_the_same_axes_only() -> None:
    text = """model M(%x: f32[B, 1, 3]) -> (a: f32[B, 1, 3], b: f32[B, 1, 3], c: f32[B, 3, 1]) {
      %s: f32[B, 3] = squeeze(%x) {axes=[1]}
      %a: f32[B, 1, 3] = unsqueeze(%s) {axes=[1]}
      %u: f32[1, B, 1, 3] = unsqueeze(%x) {axes=[0]}
      %b: f32[B, 1, 3] = squeeze(%u) {axes=[0]}
      %c: f32[B, 3, 1] = unsqueeze(%s) {axes=[2]}
      return a=%a, b=%b, c=%c
    }"""
    g = run_pipeline("simplify", text)
    assert g.outputs[0][1] is g.inputs[0] and g.outputs[1][1] is g.inputs[0]
    assert g.outputs[2][1].producer is not None and g.outputs[2][1].producer.op == "unsqueeze"
    # squeezing a symbolic dim and putting a 1 back is not the identity: kept
    symbolic = text.replace("%x: f32[B, 1, 3]", "%x: f32[B, N, 3]").replace("%u: f32[1, B, 1, 3]", "%u: f32[1, B, N, 3]")
    symbolic = symbolic.replace("-> (a: f32[B, 1, 3], b: f32[B, 1, 3]", "-> (a: f32[B, 1, 3], b: f32[B, N, 3]")
    symbolic = symbolic.replace("%b: f32[B, 1, 3] = squeeze", "%b: f32[B, N, 3] = squeeze")
    g = run_pipeline("simplify", symbolic)
    assert g.outputs[0][1].producer is not None and g.outputs[0][1].producer.op == "unsqueeze"
    assert g.outputs[1][1] is g.inputs[0]


def test_replacing_an_output_keeps_its_name_and_runs_on_every_target() -> None:
    text = """model M(%x: f32[B, 3]) -> (y: f32[B, 3], w: f32[3], z: f32[B, 3]) {
      param %p: f32[3] = normal(std=1.0)
      %one: f32[] = constant() {value=1.0, dtype=f32}
      %y: f32[B, 3] = mul(%x, %one)
      %w: f32[3] = mul(%p, %one)
      %n: f32[B, 3] = neg(%x)
      %z: f32[B, 3] = neg(%n)
      return y=%y, w=%w, z=%z
    }"""
    g = parse_graph(text)
    opt = optimize(g, 2)
    assert opt.output_names() == ["y", "w", "z"] and opt.nodes == []
    assert opt.outputs[0][1] is opt.inputs[0] and opt.outputs[1][1] is opt.params[0]
    feeds = {"x": np.random.default_rng(0).normal(size=(2, 3)).astype(np.float32)}
    want = runner_class("numpy")(g)(**feeds)
    for target in ["torch", "tensorflow", "onnx"]:
        got = runner_class(target)(opt)(**feeds)
        for a, b in zip(want, got):
            np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)


# -- the manager -----------------------------------------------------------------------------


# -- fuse ------------------------------------------------------------------------------------


def test_fuse_matmul_bias_activation_into_linear() -> None:
    check(
        "fuse",
        """model M(%x: f32[B, 3]) -> (y: f32[B, 4], z: f32[B, 4]) {
          param %w: f32[3, 4] = normal(std=1.0)
          param %b: f32[4] = zeros()
          %m: f32[B, 4] = matmul(%x, %w)
          %a: f32[B, 4] = add(%b, %m)
          %y: f32[B, 4] = relu(%a)
          %m2: f32[B, 4] = matmul(%x, %w)
          %a2: f32[B, 4] = add(%m2, %b)
          %z: f32[B, 4] = gelu(%a2) {approximate="tanh"}
          return y=%y, z=%z
        }""",
        """model M(%x: f32[B, 3]) -> (y: f32[B, 4], z: f32[B, 4]) {
          param %w: f32[3, 4] = normal(std=1.0)
          param %b: f32[4] = zeros()
          %y: f32[B, 4] = linear(%x, %w, %b) {act="relu"}
          %z: f32[B, 4] = linear(%x, %w, %b) {act="gelu_tanh"}
          return y=%y, z=%z
        }""",
    )


def test_fuse_leaves_shared_or_broadcasting_values_alone() -> None:
    text = """model M(%x: f32[B, 3]) -> (y: f32[B, 4], m: f32[B, 4], z: f32[B, 4], p: f32[2, B, 4], q: f32[B, 4]) {
          param %w: f32[3, 4] = normal(std=1.0)
          param %b: f32[4] = zeros()
          param %b2: f32[2, 1, 4] = zeros()
          %m: f32[B, 4] = matmul(%x, %w)
          %y: f32[B, 4] = add(%m, %b)
          %m2: f32[B, 4] = matmul(%x, %w)
          %p: f32[2, B, 4] = add(%m2, %b2)
          %m3: f32[B, 4] = matmul(%x, %w)
          %a3: f32[B, 4] = add(%m3, %b)
          %z: f32[B, 4] = tanh(%a3)
          %q: f32[B, 4] = exp(%a3)
          return y=%y, m=%m, z=%z, p=%p, q=%q
        }"""
    expected = text.replace("%m3: f32[B, 4] = matmul(%x, %w)\n          %a3: f32[B, 4] = add(%m3, %b)",
                            "%a3: f32[B, 4] = linear(%x, %w, %b) {act=\"none\"}")
    assert expected != text
    check("fuse", text, expected)


def test_fuse_folds_a_per_channel_bias_into_conv2d() -> None:
    g = run_pipeline(
        "fuse",
        """model M(%x: f32[B, 2, 5, 5]) -> (y: f32[B, 3, 5, 5], z: f32[B, 3, 5, 5]) {
          param %w: f32[3, 2, 3, 3] = normal(std=1.0)
          param %b: f32[3, 1, 1] = normal(std=1.0)
          param %b4: f32[1, 3, 1, 1] = normal(std=1.0)
          %c: f32[B, 3, 5, 5] = conv2d(%x, %w) {stride=[1, 1], padding=[1, 1, 1, 1], dilation=[1, 1], groups=1}
          %y: f32[B, 3, 5, 5] = add(%c, %b)
          %c2: f32[B, 3, 5, 5] = conv2d(%x, %w) {stride=[1, 1], padding=[1, 1, 1, 1], dilation=[1, 1], groups=1}
          %z: f32[B, 3, 5, 5] = add(%b4, %c2)
          return y=%y, z=%z
        }""",
    )
    assert [n.op for n in g.nodes] == ["reshape", "conv2d", "reshape", "conv2d"]
    assert all(len(n.inputs) == 3 for n in g.nodes if n.op == "conv2d")


@pytest.mark.parametrize("target", ["torch", "tensorflow", "onnx"])
def test_fused_linear_and_conv_agree_on_every_target(target: str) -> None:
    src = """
model M(x: f32[B, 2, 6, 6]) -> f32[B, 5] {
    param cw: f32[3, 2, 3, 3] = glorot_uniform
    param cb: f32[3, 1, 1] = normal(std=1.0)
    param w1: f32[108, 8] = glorot_uniform
    param b1: f32[8] = normal(std=1.0)
    param w2: f32[8, 5] = glorot_uniform
    param b2: f32[5] = normal(std=1.0)
    h = relu(conv2d(x, cw, padding=1) + cb)
    h = flatten(h, start=1)
    h = gelu(h @ w1 + b1)
    return sigmoid(h @ w2 + b2)
}
"""
    prog = dlir.loads(src)
    g = optimize(prog.graph("M"), 2)
    assert {n.op for n in g.nodes} >= {"linear", "conv2d"} and "matmul" not in {n.op for n in g.nodes}
    feeds = random_inputs(prog.graph("M"), seed=0, size=3)
    want = dlir.compile(prog, "numpy", model="M", opt_level=0)(**feeds)
    got = dlir.compile(prog, target, model="M", opt_level=2)(**feeds)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# -- licm ------------------------------------------------------------------------------------

RNN = """
model R(xs: f32[B, T, 3], h0: f32[B, 4]) -> (f32[B, T, 4], f32[B, 4]) {
    param w: f32[3, 4] = glorot_uniform
    param w2: f32[3, 4] = glorot_uniform
    param u: f32[4, 4] = glorot_uniform
    param b: f32[4] = normal(std=1.0)
    ys, h = scan x_t in xs along 1 carry h = h0 {
        h = tanh(x_t @ w + h @ transpose(u) + b * 2.0) + sigmoid(x_t @ W2)
        emit h
    }
    return (ys, h)
}
"""


def _scan_body(g: Graph) -> Graph:
    (scan,) = [n for n in g.nodes if n.op == "scan"]
    assert scan.body is not None
    return scan.body


@pytest.mark.parametrize("two_weights", [False, True])
def test_licm_hoists_invariants_and_projects_the_rnn_input(two_weights: bool) -> None:
    src = RNN.replace("W2", "w2" if two_weights else "w")
    prog = dlir.loads(src)
    g = optimize(prog.graph("R"), passes="licm")
    body = _scan_body(g)
    x_t = body.inputs[0]
    assert not any(n.op == "matmul" and n.inputs[0] is x_t for n in body.nodes)
    assert not any(n.op in ("transpose", "constant") for n in body.nodes)  # invariant: moved out
    (scan,) = [n for n in g.nodes if n.op == "scan"]
    assert scan.inputs[0].producer is not None and scan.inputs[0].producer.op == "matmul"
    assert any(n.op == "split" for n in body.nodes) == two_weights
    feeds = random_inputs(prog.graph("R"), seed=1, size=3)
    want = dlir.compile(prog, "numpy", model="R", opt_level=0)(**feeds)
    for target in ("numpy", "torch", "onnx"):
        got = dlir.compile(prog, target, model="R", opt_level=2)(**feeds)
        for a, b in zip(want, got):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5, err_msg=target)


def test_licm_leaves_x_t_alone_when_read_otherwise() -> None:
    src = RNN.replace("sigmoid(x_t @ W2)", "x_t[:, 0:1]")
    g = optimize(dlir.loads(src).graph("R"), passes="licm")
    body = _scan_body(g)
    assert any(n.op == "matmul" and n.inputs[0] is body.inputs[0] for n in body.nodes)


def test_lstm_sample_body_at_O2_has_no_matmul_with_x_t() -> None:
    g = optimize(dlir.load(ROOT / "samples" / "lstm.dlir").graph("LSTMClassifier"), 2)
    body = _scan_body(g)
    assert not any(n.op in ("matmul", "linear") and n.inputs[0] is body.inputs[0] for n in body.nodes)


def test_levels_and_pipelines_by_name() -> None:
    assert LEVELS[0] == () and LEVELS[1] == ("fold", "dce", "cse")
    assert "simplify" in LEVELS[2] and set(LEVELS[1]) <= set(LEVELS[2]) and LEVELS[3] == LEVELS[2]
    assert [p.name for p in level_pipeline(2)] == list(LEVELS[2])
    ps = parse_pipeline(" cse , fold{fold_params=true, max_elements=1e3},dce ")
    assert [p.describe() for p in ps] == ["cse", "fold{fold_params=true,max_elements=1000}", "dce"]
    assert parse_pipeline("") == []
    assert set(PASS_NAMES) <= set(PASSES)


@pytest.mark.parametrize(
    "text, words",
    [
        ("cse,dse", "unknown pass 'dse'"),
        ("fold{fold_param=true}", "pass 'fold' has no option 'fold_param'"),
        ("fold{fold_params=maybe}", "must be true or false"),
        ("fold{max_elements=1.5}", "must be an int"),
        ("fold{max_elements}", "bad option"),
        ("cse;dce", "bad pass"),
    ],
)
def test_bad_pipelines_are_usage_errors(text: str, words: str) -> None:
    with pytest.raises(UsageError, match=words.replace("{", r"\{")) as info:
        parse_pipeline(text)
    if "dse" in text:
        assert "did you mean 'dce'" in str(info.value.hint)


@dataclass
class _Crash(Pass):
    name = "test-crash"

    def run(self, graph: Graph) -> bool:
        for node in graph.nodes:
            self.at = node
            if node.op == "tanh":
                raise ZeroDivisionError("boom")
        return False


@dataclass
class _Break(Pass):
    name = "test-break"

    def run(self, graph: Graph) -> bool:
        node = graph.nodes[-1]
        node.outputs[0].type = TensorType.make("f32", [7])
        return True


@pytest.fixture
def bad_passes() -> Iterator[None]:
    PASSES.update({"test-crash": _Crash, "test-break": _Break})
    yield
    del PASSES["test-crash"], PASSES["test-break"]


SMALL = """model M(%x: f32[B, 4]) -> (y: f32[B, 4]) {
  %a: f32[B, 4] = relu(%x)                                  loc("m.dlir":2:9)
  %b: f32[B, 4] = tanh(%a)                                  loc("m.dlir":3:9)
  %y: f32[B, 4] = exp(%b)                                   loc("m.dlir":4:9)
  return y=%y
}
"""


def test_a_crashing_pass_is_reported_by_name_at_its_node(bad_passes: None) -> None:
    with pytest.raises(PassError) as info:
        run_pipeline("cse,test-crash", SMALL)
    e = info.value
    assert "pass 'test-crash' failed at" in e.message and "ZeroDivisionError: boom" in e.message
    marked = next(line for line in e.message.splitlines() if ">>" in line)
    assert "%b: f32[B, 4] = tanh(%a)" in marked
    assert e.loc is not None and (e.loc.line, e.loc.col) == (3, 9)
    assert isinstance(e.__cause__, ZeroDivisionError)


def test_a_pass_that_breaks_the_ir_is_reported_by_name(bad_passes: None) -> None:
    with pytest.raises(PassError) as info:
        run_pipeline("dce,test-break", SMALL)
    e = info.value
    assert e.message.startswith("pass 'test-break' left invalid IR: invalid IR in graph M: %y has type f32[7]")
    marked = next(line for line in e.message.splitlines() if ">>" in line)
    assert "%y: f32[7] = exp(%b)" in marked
    assert "--print-after=test-break" in str(e.hint)
    # without verification the broken graph goes through (for benchmarks of the passes alone)
    g = parse_graph(SMALL)
    PassManager(parse_pipeline("test-break"), verify=False).run(g)


def test_instruments_print_time_and_dump(tmp_path: Path) -> None:
    text = SMALL.replace("%y: f32[B, 4] = exp(%b)", "%y: f32[B, 4] = exp(%b)\n  %dead: f32[B, 4] = neg(%y)")
    out = io.StringIO()
    timing = PassTiming(out)
    dump = DumpIR(tmp_path / "dump")
    pm = PassManager(parse_pipeline("fold,dce,cse"), instruments=[PrintIR(out), timing, dump])
    pm.run(parse_graph(text))
    printed = out.getvalue()
    assert "# IR after pass 1 'fold' (no change)" in printed
    assert "# IR after pass 2 'dce' (changed, 4 -> 3 nodes)" in printed
    assert "# IR after pass 3 'cse' (no change)" in printed
    assert "pass timing for M: 3 pass(es)" in printed and "total" in printed
    assert [r.changed for r in timing.records] == [False, True, False]
    assert [p.name for p in dump.files] == ["00-input.ir", "01-fold.ir", "02-dce.ir", "03-cse.ir"]
    assert "%dead" in dump.files[1].read_text() and "%dead" not in dump.files[2].read_text()
    parse_graph(dump.files[2].read_text())  # each dump is IR text
    only = io.StringIO()
    PassManager(parse_pipeline("fold,dce,cse"), instruments=[PrintIR(only, only=["cse"])]).run(parse_graph(text))
    assert only.getvalue().startswith("# IR after pass 3 'cse'") and only.getvalue().count("# IR after") == 1
    changed = io.StringIO()
    PassManager(parse_pipeline("fold,dce,cse"), instruments=[PrintIR(changed, changed_only=True)]).run(parse_graph(text))
    assert changed.getvalue().count("# IR after") == 1 and "'dce'" in changed.getvalue()


def test_optimize_works_on_a_copy() -> None:
    prog = dlir.load(ROOT / "samples" / "resmlp.dlir")
    g = prog.graph()
    before = print_graph(g)
    nodes = list(g.nodes)
    opt = optimize(g, 2)
    assert opt is not g and count_nodes(opt) < count_nodes(g)
    assert print_graph(g) == before and g.nodes == nodes
    assert optimize(g, 0) is g


def test_compile_with_opt_level_leaves_the_program_graph_alone() -> None:
    prog = dlir.load(ROOT / "samples" / "resmlp.dlir")
    g = prog.graph()
    before = print_graph(g)
    run = dlir.compile(prog, "numpy", opt_level=2)
    assert prog.graph() is g and print_graph(g) == before
    assert count_nodes(run.graph) < count_nodes(g)
    assert run.output_names == g.output_names() and set(run.params) == {p.name for p in g.params}
    assert dlir.compile(prog, "numpy", passes="cse").graph is not g


def test_clone_graph_copies_bodies_and_their_closures() -> None:
    g = parse_graph(SCAN.format(closure="c2", out="%h_last"))
    c = clone_graph(g)
    verify(c)
    assert print_graph(c) == print_graph(g)
    scan, cscan = g.nodes[3], c.nodes[3]
    assert cscan.body is not scan.body and cscan.attrs is not scan.attrs
    assert cscan.body.nodes[0].inputs[1] is c.nodes[1].outputs[0]  # the closure reads the copy
    assert (cscan.body._used is c._used) == (scan.body._used is g._used)


# -- property: random graphs keep their numpy results ----------------------------------------

Draw = Callable[[Any], Any]
floats = st.floats(-3, 3, allow_nan=False, width=32)


def _const(g: Graph, v: Value, value: float, draw: Draw) -> Value:
    shape = base._static_suffix(v.type, draw)
    return emit1(g, "constant", [], {"value": np.full(shape, value).tolist(), "dtype": v.type.dtype})


def _identity(draw: Draw, g: Graph, v: Value, pool: list[Value]) -> list[Value]:
    """A pattern simplify knows (it applies or not, depending on the types)."""
    r = v.type.rank
    kind = draw(st.sampled_from(["add0", "sub0", "mul1", "div1", "pow1", "negneg", "cast", "tt", "rr", "squeeze"]))
    if kind in ("add0", "sub0", "mul1", "div1", "pow1"):
        c = _const(g, v, 0.0 if kind.endswith("0") else 1.0, draw)
        op = {"add0": "add", "sub0": "sub", "mul1": "mul", "div1": "div", "pow1": "pow"}[kind]
        args = [c, v] if kind in ("add0", "mul1") and draw(st.booleans()) else [v, c]
        return [emit1(g, op, args)]
    if kind == "negneg":
        return [emit1(g, "neg", [emit1(g, "neg", [v])])]
    if kind == "cast":
        return [emit1(g, "cast", [v], {"dtype": v.type.dtype})]
    if kind == "tt":
        t = emit1(g, "transpose", [v], {"perm": draw(st.none() | st.permutations(range(r)))})
        return [emit1(g, "transpose", [t], {"perm": draw(st.none() | st.permutations(range(r)))})]
    if kind == "rr":
        flat = emit1(g, "reshape", [v], {"shape": [-1]})
        return [emit1(g, "reshape", [flat], {"shape": list(v.type.shape) if v.type.is_static else [-1]})]
    ax = draw(st.integers(-(r + 1), r))
    u = emit1(g, "unsqueeze", [v], {"axes": [ax]})
    return [emit1(g, "squeeze", [u], {"axes": [draw(st.sampled_from([ax, ax % (r + 1)]))]})]


def _duplicate(draw: Draw, g: Graph, v: Value, pool: list[Value]) -> list[Value]:
    """The same node again, for cse (commutative inputs possibly swapped)."""
    made = [n for n in g.nodes if n.body is None and n.op != "split"]
    if not made:
        return []
    n = draw(st.sampled_from(made))
    ins = list(n.inputs)
    if n.op in ("add", "mul", "maximum", "minimum") and draw(st.booleans()):
        ins.reverse()
    return [emit1(g, n.op, ins, dict(n.attrs))]


def _constant_expr(draw: Draw, g: Graph, v: Value, pool: list[Value]) -> list[Value]:
    """Arithmetic on constants only, for fold."""
    a = _const(g, v, draw(floats), draw)
    b = _const(g, v, draw(floats), draw)
    k = emit1(g, draw(st.sampled_from(["add", "mul", "sub", "maximum"])), [a, b])
    k = emit1(g, draw(st.sampled_from(["exp", "tanh", "neg", "abs"])), [k])
    return [emit1(g, "add", [v, k])]


def _dense(draw: Draw, g: Graph, v: Value, pool: list[Value]) -> list[Value]:
    """``act(v @ w + b)`` with params w, b, for fuse (sometimes with the bias read twice, or
    a bias that broadcasts to a bigger shape, which must stay unfused)."""
    k = v.type.shape[-1] if v.type.rank else None
    if k is None or not k.is_static:
        return []
    m = draw(st.integers(1, 3))
    i = len(g.params)
    w = g.add_param(f"w{i}", TensorType.make("f32", [k.value, m]), Init("normal", (("std", 1.0),)))
    b_shape = draw(st.sampled_from([[m], [m], [1], [2, m]]))
    b = g.add_param(f"b{i}", TensorType.make("f32", b_shape), Init("normal", (("std", 1.0),)))
    y = emit1(g, "matmul", [v, w])
    made = [y]
    y = emit1(g, "add", [y, b] if draw(st.booleans()) else [b, y])
    made.append(y)
    act = draw(st.sampled_from(["none", "relu", "tanh", "sigmoid", "gelu", "silu"]))
    if act != "none":
        y = emit1(g, act, [y])
        made.append(y)
    return made if draw(st.booleans()) else [y]  # sometimes the inner values are used again


def _images(draw: Draw, g: Graph, v: Value, pool: list[Value]) -> list[Value]:
    """A new image input through a few conv-stack steps, for layout (and fuse): convs, pools,
    batch norm, per-channel biases, activations, residual adds; inner values may be read again."""
    c = draw(st.integers(1, 3))
    hw = draw(st.sampled_from([[4, 4], [5, 3], ["T", "T"]]))
    h = g.add_input(f"img{len(g.inputs)}", TensorType.make("f32", ["B", c, *hw]))
    made = [h]
    for _ in range(draw(st.integers(1, 4))):
        c = h.type.shape[1].value
        i = len(g.params)
        kind = draw(st.sampled_from(["conv", "pool", "bn", "bias", "act", "residual"]))
        if kind == "conv":
            o = draw(st.integers(1, 3))
            w = g.add_param(f"cw{i}", TensorType.make("f32", [o, c, 3, 3]), Init("normal", (("std", 1.0),)))
            h = emit1(g, "conv2d", [h, w], {"padding": 1})
        elif kind == "pool":
            op = draw(st.sampled_from(["max_pool2d", "avg_pool2d"]))
            h = emit1(g, op, [h], {"kernel": 3, "stride": 1, "padding": 1})
        elif kind == "bn":
            ps = [g.add_param(f"bn{i}_{k}", TensorType.make("f32", [c]), Init("uniform", (("lo", 0.5), ("hi", 2.0))))
                  for k in range(4)]
            h = emit1(g, "batch_norm", [h, *ps])
        elif kind == "bias":
            b = g.add_param(f"cb{i}", TensorType.make("f32", [c, 1, 1]), Init("normal", (("std", 1.0),)))
            h = emit1(g, "add", [h, b] if draw(st.booleans()) else [b, h])
        elif kind == "act":
            h = emit1(g, draw(st.sampled_from(["relu", "tanh", "sigmoid"])), [h])
        else:
            same = [m for m in made if m.type == h.type]
            h = emit1(g, "add", [h, draw(st.sampled_from(same))])
        made.append(h)
    return made if draw(st.booleans()) else [h]


def _gelu_written(draw: Draw, g: Graph, v: Value, pool: list[Value]) -> list[Value]:
    """GELU written out in one of the forms simplify recognises; sometimes with a constant a
    little off or with its inner values read again (both must stay unfused)."""
    if v.type.dtype is not DType.f32:
        return []

    def k(value: float) -> Value:
        return emit1(g, "constant", [], {"value": value, "dtype": v.type.dtype})

    def op(name: str, *args: Value) -> Value:
        made.append(emit1(g, name, list(args)))
        return made[-1]

    made: list[Value] = []
    off = draw(st.sampled_from([1.0, 1.0, 1.001]))
    form = draw(st.sampled_from(["gpt2", "megatron", "div", "erf"]))
    c = math.sqrt(2 / math.pi)
    if form == "gpt2":  # 0.5 * x * (1 + tanh(c * (x + k * x ** 3)))
        t = op("tanh", op("mul", k(c * off), op("add", v, op("mul", k(0.044715), op("pow", v, k(3.0))))))
        y = op("mul", op("mul", k(0.5), v), op("add", k(1.0), t))
    elif form == "megatron":  # x * 0.5 * (1 + tanh(c * x * (1 + k * x * x)))
        inner = op("add", k(1.0), op("mul", k(0.044715 * off), op("mul", v, v)))
        t = op("tanh", op("mul", op("mul", k(c), v), inner))
        y = op("mul", op("mul", v, k(0.5)), op("add", t, k(1.0)))
    elif form == "div":  # x * (1 + tanh(((x * x * x) * k + x) * c)) / 2
        inner = op("add", op("mul", op("mul", op("mul", v, v), v), k(0.044715)), v)
        y = op("div", op("mul", v, op("add", k(1.0), op("tanh", op("mul", inner, k(c))))), k(2.0 * off))
    else:  # 0.5 * (x * (1 + erf(x / sqrt(2))))
        e = op("erf", op("div", v, k(math.sqrt(2.0) * off)))
        y = op("mul", k(0.5), op("mul", v, op("add", k(1.0), e)))
    return made if draw(st.booleans()) else [y]


STEPS = base.STEPS + [_identity, _duplicate, _constant_expr, _dense, _images, _gelu_written]


@st.composite
def pass_graphs(draw: Draw) -> Graph:
    return base.build_random_graph(draw, STEPS, 14)


def _run(g: Graph, feeds: dict[str, np.ndarray], params: dict[str, np.ndarray]) -> list[np.ndarray]:
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return run_graph(g, feeds, params)


PIPELINES = [*PASS_NAMES, *(f"O{level}" for level in LEVELS), "O3-tensorflow"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(g=pass_graphs(), sizes=st.tuples(st.integers(2, 3), st.integers(2, 3)), seed=st.integers(0, 2**16))
def test_every_pass_and_level_keeps_numpy_results(g: Graph, sizes: tuple[int, int], seed: int) -> None:
    verify(g)
    env = {"B": sizes[0], "T": sizes[1]}
    assume(all(not d.unknown and d.evaluate(env) > 0 for v in g.all_values() for d in v.type.shape))
    rng = np.random.default_rng(seed)
    feeds = {v.name: rng.normal(size=[d.evaluate(env) for d in v.type.shape]).astype(np.float32) for v in g.inputs}
    params = init_params(g, seed)
    want = _run(g, feeds, params)
    before = print_graph(g)
    for name in PIPELINES:
        level, _, target = name[1:].partition("-")
        passes = level_pipeline(int(level), target or None) if name.startswith("O") else [make_pass(name)]
        opt = optimize(g, passes=passes)  # verifies after every pass that changed the graph
        verify(opt)
        assert opt.output_names() == g.output_names()
        got = _run(opt, feeds, params)
        exact = name in ("dce", "cse", "fold", "O1")
        for a, b in zip(want, got):
            assert a.dtype == b.dtype and a.shape == b.shape, name
            if exact:
                np.testing.assert_array_equal(b, a, err_msg=name)
            else:
                np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6, err_msg=name)
    assert print_graph(g) == before  # optimize works on a copy


# -- every sample at every level on every target ---------------------------------------------


def _models() -> list[tuple[Path, str]]:
    return [(p, m) for p in SAMPLES for m in dlir.load(p).models]


MODELS = _models()


def _tuple(x: Any) -> tuple[np.ndarray, ...]:
    return x if isinstance(x, tuple) else (x,)


@pytest.mark.slow
@pytest.mark.parametrize("path, model", MODELS, ids=[f"{p.stem}:{m}" for p, m in MODELS])
@pytest.mark.parametrize("level", sorted(LEVELS))
def test_samples_at_every_level_agree_with_the_unoptimised_reference(path: Path, model: str, level: int) -> None:
    prog = dlir.load(path)
    graph = prog.graph(model)
    feeds = random_inputs(graph, seed=level, size=3)
    want = _tuple(dlir.compile(prog, "numpy", model=model)(**feeds))
    for target in ["numpy", "torch", "tensorflow", "onnx"]:
        got = _tuple(dlir.compile(prog, target, model=model, opt_level=level)(**feeds))
        assert len(got) == len(want)
        for a, b in zip(want, got):
            assert a.dtype == b.dtype and a.shape == b.shape, target
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5, err_msg=f"{target} -O{level}")


# -- dlirc -----------------------------------------------------------------------------------

RESMLP = str(ROOT / "samples" / "resmlp.dlir")


def test_dlirc_ir_levels_and_custom_pipelines() -> None:
    plain = dlirc("ir", RESMLP)
    o2 = dlirc("ir", RESMLP, "-O", "2")
    assert plain.returncode == 0 and o2.returncode == 0, o2.stderr
    g0, g2 = parse_graph(plain.stdout), parse_graph(o2.stdout)
    assert count_nodes(g2) < count_nodes(g0) and g2.output_names() == g0.output_names()
    custom = dlirc("ir", RESMLP, "--passes", "simplify,dce,cse,fuse")  # simplify: the written-out GELUs
    assert custom.returncode == 0 and count_nodes(parse_graph(custom.stdout)) == count_nodes(g2)


def test_dlirc_ir_print_after_flags() -> None:
    r = dlirc("ir", RESMLP, "-O2", "--print-after-all")
    assert r.returncode == 0, r.stderr
    heads = [line for line in r.stdout.splitlines() if line.startswith("# IR after")]
    assert [h.split("'")[1] for h in heads] == list(LEVELS[2])
    r = dlirc("ir", RESMLP, "-O2", "--print-after=dce")
    heads = [line for line in r.stdout.splitlines() if line.startswith("# IR after")]
    assert len(heads) == 1 and heads[0].startswith("# IR after pass 3 'dce' (changed, ")
    r = dlirc("ir", RESMLP, "-O2", "--print-after-change")
    heads = [line for line in r.stdout.splitlines() if line.startswith("# IR after")]
    assert heads and all("(changed," in h for h in heads)
    r = dlirc("ir", RESMLP, "-O2", "--print-after=csee")
    assert r.returncode == 2 and "unknown pass 'csee'" in r.stderr and "did you mean 'cse'" in r.stderr


def test_dlirc_ir_pass_timing_and_dump(tmp_path: Path) -> None:
    r = dlirc("ir", RESMLP, "-O1", "--pass-timing", "--dump-ir", str(tmp_path / "d"))
    assert r.returncode == 0, r.stderr
    assert "pass timing for ResMLP: 3 pass(es)" in r.stdout and "time (ms)" in r.stdout
    files = sorted(p.name for p in (tmp_path / "d").iterdir())
    assert files == ["00-input.ir", "01-fold.ir", "02-dce.ir", "03-cse.ir"]
    bad = dlirc("ir", RESMLP, "--passes", "cse,frob")
    assert bad.returncode == 2 and "unknown pass 'frob'" in bad.stderr and "Traceback" not in bad.stderr


def test_dlirc_compile_optimised_onnx_agrees(tmp_path: Path) -> None:
    import onnxruntime as ort

    out = tmp_path / "m.onnx"
    r = dlirc("compile", RESMLP, "--target", "onnx", "-O", "2", "-o", str(out), "--pass-timing")
    assert r.returncode == 0, r.stderr
    assert "pass timing for ResMLP" in r.stderr
    prog = dlir.load(RESMLP)
    feeds = random_inputs(prog.graph(), seed=0, size=3)
    want = _tuple(dlir.compile(prog, "numpy")(**feeds))
    got = ort.InferenceSession(out.read_bytes(), providers=["CPUExecutionProvider"]).run(None, feeds)
    for a, b in zip(want, got):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
    o0 = tmp_path / "m0.onnx"
    assert dlirc("compile", RESMLP, "--target", "onnx", "-o", str(o0)).returncode == 0
    import onnx

    assert len(onnx.load(str(out)).graph.node) < len(onnx.load(str(o0)).graph.node)


# -- fuse: conv + bias + activation ----------------------------------------------------------

_CONV = 'stride=[1, 1], padding=[1, 1, 1, 1], dilation=[1, 1], groups=1'


def test_fuse_conv_bias_activation_into_one_conv2d() -> None:
    check(
        "fuse",
        f"""model M(%x: f32[B, 2, 5, 5]) -> (y: f32[B, 3, 5, 5], z: f32[B, 3, 5, 5]) {{
          param %w: f32[3, 2, 3, 3] = normal(std=1.0)
          param %b: f32[3, 1, 1] = normal(std=1.0)
          %c: f32[B, 3, 5, 5] = conv2d(%x, %w) {{{_CONV}}}
          %a: f32[B, 3, 5, 5] = add(%c, %b)
          %y: f32[B, 3, 5, 5] = relu(%a)
          %c2: f32[B, 3, 5, 5] = conv2d(%x, %w) {{{_CONV}}}
          %z: f32[B, 3, 5, 5] = gelu(%c2) {{approximate="tanh"}}
          return y=%y, z=%z
        }}""",
        f"""model M(%x: f32[B, 2, 5, 5]) -> (y: f32[B, 3, 5, 5], z: f32[B, 3, 5, 5]) {{
          param %w: f32[3, 2, 3, 3] = normal(std=1.0)
          param %b: f32[3, 1, 1] = normal(std=1.0)
          %b.flat: f32[3] = reshape(%b) {{shape=[3]}}
          %y: f32[B, 3, 5, 5] = conv2d(%x, %w, %b.flat) {{{_CONV}, act="relu"}}
          %z: f32[B, 3, 5, 5] = conv2d(%x, %w) {{{_CONV}, act="gelu_tanh"}}
          return y=%y, z=%z
        }}""",
    )


def test_fuse_leaves_a_shared_conv_result_and_conv_false_alone() -> None:
    text = f"""model M(%x: f32[B, 2, 5, 5]) -> (y: f32[B, 3, 5, 5], c: f32[B, 3, 5, 5]) {{
          param %w: f32[3, 2, 3, 3] = normal(std=1.0)
          %c: f32[B, 3, 5, 5] = conv2d(%x, %w) {{{_CONV}}}
          %y: f32[B, 3, 5, 5] = relu(%c)
          return y=%y, c=%c
        }}"""
    check("fuse", text, text)  # the conv result is an output too: no fusion
    single = text.replace(", c: f32[B, 3, 5, 5])", ")").replace(", c=%c", "")
    check("fuse{conv=false}", single, single)
    g = run_pipeline("fuse{linear=false}", single)
    assert [(n.op, n.attrs.get("act")) for n in g.nodes] == [("conv2d", "relu")]



def test_fuse_keeps_a_bias_added_after_the_fused_activation() -> None:
    # relu(conv) + b: the relu joins the conv; the bias, added after it, must stay an add.
    g = run_pipeline(
        "fuse",
        f"""model M(%x: f32[B, 2, 5, 5]) -> (y: f32[B, 3, 5, 5]) {{
          param %w: f32[3, 2, 3, 3] = normal(std=1.0)
          param %b: f32[3, 1, 1] = normal(std=1.0)
          %c: f32[B, 3, 5, 5] = conv2d(%x, %w) {{{_CONV}}}
          %r: f32[B, 3, 5, 5] = relu(%c)
          %y: f32[B, 3, 5, 5] = add(%r, %b)
          return y=%y
        }}""",
    )
    assert [(n.op, n.attrs.get("act")) for n in g.nodes] == [("conv2d", "relu"), ("add", None)]


@pytest.mark.parametrize("target", ["torch", "tensorflow", "onnx"])
def test_cnn_at_O2_has_fused_conv_activations_and_agrees(target: str) -> None:
    prog = dlir.load(ROOT / "samples" / "cnn.dlir")
    g = optimize(prog.graph("LeNet"), 2)
    assert [n.attrs["act"] for n in g.nodes if n.op == "conv2d"] == ["relu", "relu"]
    assert "relu" not in {n.op for n in g.nodes}
    feeds = random_inputs(prog.graph("LeNet"), seed=1, size=2)
    want = dlir.compile(prog, "numpy", model="LeNet")(**feeds)
    got = dlir.compile(prog, target, model="LeNet", opt_level=2)(**feeds)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# -- simplify: GELU written out --------------------------------------------------------------

_GELU_FORMS = """model M(%x: f32[B, 4], %v: f32[4]) -> (a: f32[B, 4], b: f32[B, 4], c: f32[4]) {
  %half: f32[] = constant() {value=0.5, dtype=f32}
  %one: f32[] = constant() {value=1.0, dtype=f32}
  %three: f32[] = constant() {value=3, dtype=f32}
  %k: f32[] = constant() {value=0.044715, dtype=f32}
  %c: f32[] = constant() {value=CUBIC_C, dtype=f32}
  %r2: f32[] = constant() {value=1.4142135623730951, dtype=f32}
  %a1: f32[B, 4] = mul(%half, %x)
  %a2: f32[B, 4] = pow(%x, %three)
  %a3: f32[B, 4] = mul(%k, %a2)
  %a4: f32[B, 4] = add(%x, %a3)
  %a5: f32[B, 4] = mul(%c, %a4)
  %a6: f32[B, 4] = tanh(%a5)
  %a7: f32[B, 4] = add(%one, %a6)
  %a: f32[B, 4] = mul(%a1, %a7)
  %b1: f32[B, 4] = mul(%x, %x)
  %b2: f32[B, 4] = mul(%b1, %k)
  %b3: f32[B, 4] = add(%b2, %one)
  %b4: f32[B, 4] = mul(%x, %c)
  %b5: f32[B, 4] = mul(%b4, %b3)
  %b6: f32[B, 4] = tanh(%b5)
  %b7: f32[B, 4] = add(%b6, %one)
  %b8: f32[B, 4] = mul(%x, %b7)
  %b: f32[B, 4] = mul(%b8, %half)
  %c1: f32[4] = div(%v, %r2)
  %c2: f32[4] = erf(%c1)
  %c3: f32[4] = add(%one, %c2)
  %c4: f32[4] = mul(%v, %half)
  %c5: f32[4] = mul(%c4, %c3)
  return a=%a, b=%b, c=%c5
}"""


def test_simplify_turns_written_out_gelus_into_the_op() -> None:
    # resmlp's form, the Megatron form (c * x * (1 + k x^2), products regrouped) and the erf form
    before = _GELU_FORMS.replace("CUBIC_C", "0.7978845608")
    g = check(
        "simplify,dce",
        before,
        """model M(%x: f32[B, 4], %v: f32[4]) -> (a: f32[B, 4], b: f32[B, 4], c: f32[4]) {
          %a: f32[B, 4] = gelu(%x) {approximate="tanh"}
          %b: f32[B, 4] = gelu(%x) {approximate="tanh"}
          %c5: f32[4] = gelu(%v) {approximate="none"}
          return a=%a, b=%b, c=%c5
        }""",
    )
    rng = np.random.default_rng(0)
    feeds = {"x": rng.normal(size=(3, 4)).astype(np.float32) * 3, "v": rng.normal(size=4).astype(np.float32)}
    want = _run(parse_graph(before), feeds, {})
    for a, b in zip(want, _run(g, feeds, {})):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "old, new, n_gelu",
    [
        ("value=0.7978845608", "value=0.7979", 1),  # sqrt(2/pi) to 4 digits only (a and b read it)
        ("value=0.044715", "value=0.0447", 1),
        ("value=0.5, dtype", "value=0.25, dtype", 0),  # all three read the 0.5
        ("value=3, dtype", "value=2, dtype", 2),  # x**2: not GELU
        ("return a=%a,", "return a=%a6,", 2),  # an inner value read elsewhere
        ("return a=%a,", "return a=%a1,", 2),
    ],
)
def test_simplify_leaves_near_miss_gelus_alone(old: str, new: str, n_gelu: int) -> None:
    text = _GELU_FORMS.replace("CUBIC_C", "0.7978845608").replace(old, new)
    assert text.count(new) == 1
    g = run_pipeline("simplify", text)
    assert "%a: f32[B, 4] = mul(%a1, %a7)" in print_graph(g)
    assert len([n for n in g.nodes if n.op == "gelu"]) == n_gelu


def test_resmlp_at_O2_uses_the_gelu_op_and_agrees_on_every_target() -> None:
    prog = dlir.load(ROOT / "samples" / "resmlp.dlir")
    g = optimize(prog.graph("ResMLP"), 2)
    assert [n.attrs["act"] for n in g.nodes if n.op == "linear"] == ["relu", *["gelu_tanh", "none"] * 3, "none"]
    assert not {"tanh", "pow", "mul"} & {n.op for n in g.nodes}
    feeds = random_inputs(prog.graph("ResMLP"), seed=2, size=3)
    want = _tuple(dlir.compile(prog, "numpy", model="ResMLP")(**feeds))
    for target in ["numpy", "torch", "tensorflow", "onnx"]:
        got = _tuple(dlir.compile(prog, target, model="ResMLP", opt_level=2)(**feeds))
        for a, b in zip(want, got):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5, err_msg=target)


# -- dce: unread scan emits ------------------------------------------------------------------


def test_dce_drops_unread_scan_emits_and_the_body_nodes_only_they_needed() -> None:
    # ys.b is read by nobody: it leaves the node, its emit the body, and %e (only it needed) goes.
    # Both carries stay (each step needs them) although nothing reads %c_last.
    check(
        "dce",
        """model M(%x: f32[B, T, 4], %h0: f32[B, 4]) -> (y: f32[B, T, 4], h: f32[B, 4]) {
          %ys.a: f32[B, T, 4], %ys.b: f32[B, T, 4], %h_last: f32[B, 4], %c_last: f32[B, 4] = scan(%x, %h0, %h0) {axis=1, reverse=false, n_carry=2}
          body step(%x_t: f32[B, 4], %h: f32[B, 4], %c: f32[B, 4]) -> (h: f32[B, 4], c: f32[B, 4], a: f32[B, 4], b: f32[B, 4]) {
            %c.1: f32[B, 4] = add(%c, %x_t)
            %h.1: f32[B, 4] = mul(%h, %c.1)
            %e: f32[B, 4] = exp(%h.1)
            return h=%h.1, c=%c.1, a=%x_t, b=%e
          }
          return y=%ys.a, h=%h_last
        }""",
        """model M(%x: f32[B, T, 4], %h0: f32[B, 4]) -> (y: f32[B, T, 4], h: f32[B, 4]) {
          %ys.a: f32[B, T, 4], %h_last: f32[B, 4], %c_last: f32[B, 4] = scan(%x, %h0, %h0) {axis=1, reverse=false, n_carry=2}
          body step(%x_t: f32[B, 4], %h: f32[B, 4], %c: f32[B, 4]) -> (h: f32[B, 4], c: f32[B, 4], a: f32[B, 4]) {
            %c.1: f32[B, 4] = add(%c, %x_t)
            %h.1: f32[B, 4] = mul(%h, %c.1)
            return h=%h.1, c=%c.1, a=%x_t
          }
          return y=%ys.a, h=%h_last
        }""",
    )


def test_dce_keeps_every_emit_that_is_read() -> None:
    # one emit read by a later node, one by the output; the final carry unread
    text = """model M(%x: f32[B, T, 4], %h0: f32[B, 4]) -> (y: f32[B, T, 4]) {
      %ys.a: f32[B, T, 4], %ys.b: f32[B, T, 4], %h_last: f32[B, 4] = scan(%x, %h0) {axis=1, reverse=false, n_carry=1}
      body step(%x_t: f32[B, 4], %h: f32[B, 4]) -> (h: f32[B, 4], a: f32[B, 4], b: f32[B, 4]) {
        %h.1: f32[B, 4] = add(%h, %x_t)
        %e: f32[B, 4] = exp(%h.1)
        return h=%h.1, a=%h.1, b=%e
      }
      %y: f32[B, T, 4] = add(%ys.a, %ys.b)
      return y=%y
    }"""
    check("dce", text, text)


def test_lstm_at_O2_stacks_no_hidden_states_and_agrees_on_every_target() -> None:
    prog = dlir.load(ROOT / "samples" / "lstm.dlir")
    g = optimize(prog.graph("LSTMClassifier"), 2)
    (scan,) = [n for n in g.nodes if n.op == "scan"]
    assert scan.body is not None and len(scan.outputs) == scan.attrs["n_carry"] == len(scan.body.outputs) == 2
    feeds = random_inputs(prog.graph("LSTMClassifier"), seed=3, size=3)
    want = dlir.compile(prog, "numpy", model="LSTMClassifier")(**feeds)
    for target in ["numpy", "torch", "tensorflow", "onnx"]:
        got = dlir.compile(prog, target, model="LSTMClassifier", opt_level=2)(**feeds)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=target)


_LSTM_LOSS = """
model Loss(x: f32[B, T, 32], labels: i64[B]) -> f32[] {
    net = LSTMClassifier()
    return cross_entropy(net(x), labels)
}
"""


def test_dce_keeps_the_emits_a_scan_gradient_reads() -> None:
    """The backward scan reads the carries the forward scan saves as emits: they stay at -O2;
    the unused hidden states go; the gradients agree with the unoptimised ones."""
    prog = dlir.loads((ROOT / "samples" / "lstm.dlir").read_text() + _LSTM_LOSS, "lstm_loss.dlir")
    from dlir.autodiff import autodiff

    g = optimize(autodiff(prog.graph("Loss")), 2)
    forward = [n for n in g.nodes if n.op == "scan" and not n.attrs["reverse"]]
    assert forward and all(n.body is not None for n in forward)
    emits = [name for n in forward for name, _ in n.body.outputs[n.attrs["n_carry"] :]]  # type: ignore[union-attr]
    assert emits and all(name.startswith("saved.") for name in emits)
    rng = np.random.default_rng(4)
    feeds = {"x": rng.normal(size=(2, 3, 32)).astype(np.float32), "labels": np.array([1, 4])}
    plain_out, plain = dlir.compile(prog, "numpy", model="Loss", grad=True)(**feeds)
    for target in ["numpy", "torch"]:
        out, grads = dlir.compile(prog, target, model="Loss", grad=True, opt_level=2)(**feeds)
        np.testing.assert_allclose(out, plain_out, rtol=1e-5, atol=1e-6, err_msg=target)
        for k in plain:
            np.testing.assert_allclose(grads[k], plain[k], rtol=1e-5, atol=1e-6, err_msg=f"{target} {k}")


_SCAN_NO_EMIT_READ = """
model M(x: f32[B, T, 3]) -> f32[B, 3] {
    hs, h = scan x_t in x along 1 carry h = sum(x, axis=1) {
        h = tanh(h * 0.5 + x_t)
        emit h * 2.0
    }
    return h
}
"""


@pytest.mark.parametrize("target", ["numpy", "torch", "tensorflow", "onnx"])
def test_a_scan_without_emits_after_dce_runs_on_every_target(target: str) -> None:
    prog = dlir.loads(_SCAN_NO_EMIT_READ, "scan_no_emit.dlir")
    g = optimize(prog.graph("M"), passes="dce")
    (scan,) = [n for n in g.nodes if n.op == "scan"]
    assert len(scan.outputs) == 1 and scan.body is not None
    assert [n.op for n in scan.body.nodes if n.op != "constant"] == ["mul", "add", "tanh"]  # emit h * 2 gone
    feeds = random_inputs(prog.graph("M"), seed=5, size=3)
    want = dlir.compile(prog, "numpy", model="M")(**feeds)
    got = dlir.compile(prog, target, model="M", passes="dce")(**feeds)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
