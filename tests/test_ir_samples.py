"""Golden IR of the samples: print -> parse -> print is byte-identical, and the text means the same graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dlir
from dlir.compare import random_inputs
from dlir.ir.parser import parse_graph
from dlir.ir.printer import print_graph
from dlir.ir.verifier import verify
from dlir.runtime.interpreter import run_graph

ROOT = Path(__file__).resolve().parent.parent
MODELS = [(p, m) for p in sorted((ROOT / "samples").glob("*.dlir")) for m in dlir.load(p).models]


@pytest.mark.parametrize("path, model", MODELS, ids=[f"{p.stem}:{m}" for p, m in MODELS])
def test_sample_ir_round_trips_and_computes_the_same(path: Path, model: str) -> None:
    prog = dlir.load(path)
    graph = prog.graph(model)
    verify(graph)
    text = print_graph(graph)
    again = parse_graph(text)
    verify(again)
    assert print_graph(again) == text
    feeds = random_inputs(graph, seed=0, size=3)
    params = dlir.compile(prog, "numpy", model=model).params
    for a, b in zip(run_graph(graph, feeds, params), run_graph(again, feeds, params)):
        np.testing.assert_array_equal(a, b)


def test_mlp_ir_shows_the_inlined_layers() -> None:
    text = print_graph(dlir.load(ROOT / "samples" / "mlp.dlir").graph())
    lines = [line.split("loc(")[0].rstrip() for line in text.splitlines()]
    assert lines[0].startswith("model MLP(%x: f32[B, 784]") and lines[0].endswith("-> (out: f32[B, 10])")
    assert "  param %fc1.w: f32[784, 256] = glorot_uniform()" in lines
    assert "  %t: f32[B, 256] = matmul(%x, %fc1.w)" in lines
    assert "  %t.1: f32[B, 256] = relu(%fc1.y)" in lines  # activation(y, "relu") became relu
    assert lines[-2:] == ["  return out=%fc2.y", "}"]
