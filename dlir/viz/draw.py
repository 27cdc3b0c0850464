"""One model to one page: optimise, differentiate, lay out, mark, draw."""

from __future__ import annotations

from typing import Any

from dlir.ir.graph import Graph
from dlir.viz.layout import Box, layout
from dlir.viz.page import html_page
from dlir.viz.svg import Marks, panel_svg, svg_document

PANEL_GAP = 90.0


def draw(
    graph: Graph,
    file: str,
    *,
    opt_level: int = 0,
    grad: bool = False,
    diff: tuple[str, str] | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    seed: int = 0,
    device: str = "cpu",
    svg_only: bool = False,
) -> str:
    """The page (or, with ``svg_only``, the SVG) of ``graph`` after ``-O opt_level``."""
    from dlir.passes import optimize

    forward = optimize(graph, opt_level)
    panels: list[tuple[str, str, Graph]] = [("forward", f"{graph.name} (forward, -O{opt_level})", forward)]
    if grad:
        from dlir.autodiff import autodiff

        panels.append(
            ("grad", f"{graph.name} with its gradient (--grad, -O{opt_level})", optimize(autodiff(graph), opt_level))
        )
    marks, summary = Marks(), ""
    if diff is not None:
        from dlir.viz.marks import diff_marks

        marks, summary = diff_marks(forward, diff, rtol, atol, seed, device)
    drawn: list[list[str]] = []
    x = 0.0
    height = 0.0
    for key, title, g in panels:
        root: Box = layout(g)
        root.move(x, 0.0)
        drawn.append(panel_svg(root, marks if key == "forward" else Marks(), key, title))
        x += root.w + PANEL_GAP
        height = max(height, root.h)
    svg = svg_document(drawn, x - PANEL_GAP, height, standalone=svg_only)
    if svg_only:
        return svg
    n = sum(_count(g) for _, _, g in panels[:1])
    info = f"{file}: model {graph.name}, {n} IR nodes, -O{opt_level}" + (", with its gradient" if grad else "")
    return html_page(f"dlir viz: {graph.name}", info, summary, diff is not None, svg)


def _count(g: Any) -> int:
    return sum(1 + (_count(n.body) if n.body is not None else 0) for n in g.nodes)
