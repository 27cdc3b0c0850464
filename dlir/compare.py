"""Cross-target agreement: random inputs, every target against the numpy reference."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dlir.ir.graph import Graph


@dataclass
class Row:
    model: str
    target: str
    output: str
    max_abs: float
    max_rel: float
    ok: bool
    note: str = ""


def random_inputs(
    graph: Graph, seed: int = 0, size: int = 3, env: dict[str, int] | None = None
) -> dict[str, np.ndarray]:
    """Inputs for every model input; each symbol gets ``size`` (+1 per extra symbol), or its size in ``env``."""
    rng = np.random.default_rng(seed)
    if env is None:
        env = {sym: size + i for i, sym in enumerate(graph.symbol_sources())}
    feeds: dict[str, np.ndarray] = {}
    for v in graph.inputs:
        shape = tuple(1 if d.unknown else d.evaluate(env) for d in v.type.shape)
        dt = v.type.dtype
        arr: np.ndarray
        if dt.is_float:
            arr = rng.standard_normal(shape)
        elif dt.is_int:
            arr = rng.integers(0, 2, shape)
        else:
            arr = rng.random(shape) < 0.5
        feeds[v.name] = np.asarray(arr).astype(dt.numpy)
    return feeds


def errors(ref: np.ndarray, got: np.ndarray) -> tuple[float, float]:
    """Max absolute and max relative error (relative to |ref|, where it is nonzero)."""
    if ref.shape != got.shape:
        return float("inf"), float("inf")
    if ref.size == 0:
        return 0.0, 0.0
    r = ref.astype(np.float64)
    g = got.astype(np.float64)
    same = (r == g) | (np.isnan(r) & np.isnan(g))
    diff = np.where(same, 0.0, np.abs(r - g))
    rel = np.where(same, 0.0, diff / np.maximum(np.abs(r), np.finfo(np.float64).tiny))
    return float(np.nanmax(np.where(np.isnan(diff), np.inf, diff))), float(
        np.nanmax(np.where(np.isnan(rel), np.inf, rel))
    )


def agree(ref: np.ndarray, got: np.ndarray, rtol: float, atol: float) -> bool:
    if ref.shape != got.shape or ref.dtype != got.dtype:
        return False
    if ref.dtype.kind in "biu":
        return bool(np.array_equal(ref, got))
    return bool(np.allclose(got, ref, rtol=rtol, atol=atol, equal_nan=True))


def compare_program(
    prog: Any, models: list[str], targets: list[str], seed: int, size: int, rtol: float, atol: float
) -> list[Row]:
    import dlir

    rows: list[Row] = []
    for m in models:
        graph = prog.graph(m)
        feeds = random_inputs(graph, seed, size)
        ref = _as_tuple(dlir.compile(prog, "numpy", model=m, seed=seed)(**feeds))
        for t in targets:
            if t == "numpy":
                continue
            got = _as_tuple(dlir.compile(prog, t, model=m, seed=seed)(**feeds))
            for name, r, g in zip(graph.output_names(), ref, got, strict=True):
                a, rel = errors(r, g)
                note = "" if r.dtype == g.dtype else f"dtype {g.dtype} != {r.dtype}"
                rows.append(Row(m, t, name, a, rel, agree(r, g, rtol, atol), note))
    return rows


def _as_tuple(x: Any) -> tuple[np.ndarray, ...]:
    return x if isinstance(x, tuple) else (x,)


def format_table(rows: list[Row]) -> str:
    head = ("model", "target", "output", "max abs err", "max rel err", "agrees")
    body = [
        (
            r.model,
            r.target,
            r.output,
            f"{r.max_abs:.3g}",
            f"{r.max_rel:.3g}",
            ("yes" if r.ok else "NO") + (f" ({r.note})" if r.note else ""),
        )
        for r in rows
    ]
    return text_table(head, body)


def text_table(head: tuple[str, ...], body: Sequence[tuple[str, ...]]) -> str:
    """Columns padded to their widest cell, a rule under the header."""
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(tuple("-" * w for w in widths))] + [line(r) for r in body])


def ops_table() -> str:
    """The op x target table: which ops each backend lowers."""
    from dlir.ops.registry import all_ops
    from dlir.targets import BACKEND_TARGETS, backend

    tables = {t: getattr(backend(t), "EMITTERS", {}) for t in BACKEND_TARGETS}
    head = ("op", "numpy") + BACKEND_TARGETS
    body = []
    for name, op in all_ops().items():
        if op.expand is not None:
            cells = ("expands",) * (1 + len(BACKEND_TARGETS))
        else:
            cells = ("yes",) + tuple("yes" if name in tables[t] else "-" for t in BACKEND_TARGETS)
        body.append((name,) + cells)
    return text_table(head, body)
