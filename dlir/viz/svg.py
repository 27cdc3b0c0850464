"""The layout as SVG: one ``<g>`` per box with ``data-node`` (IR nodes) or ``data-value`` (inputs, params).

Every string that comes from the model file (names, types, file names) goes
through :func:`html.escape`, attributes and text alike. Numbers are written
with one decimal, so the same graph gives the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

from dlir.viz.layout import HEADER, LINE_H, PAD, Box, Edge


@dataclass
class Marks:
    """What ``--diff`` adds to a node: a class, and attributes such as ``data-error``."""

    classes: dict[str, str] = field(default_factory=dict)  # node name -> "agree" | "diverged" | "first" | ...
    attrs: dict[str, dict[str, str]] = field(default_factory=dict)
    titles: dict[str, str] = field(default_factory=dict)  # node name -> an extra tooltip line


def _n(v: float) -> str:
    return f"{v:.1f}"


def _attr(name: str, value: str) -> str:
    return f' {name}="{escape(value, quote=True)}"'


def _text_lines(box: Box, x: float, y: float, first_class: str = "op") -> list[str]:
    out = []
    has_loc = box.kind == "node" and box.loc is not None and box.loc.line > 0  # then its last line is the .dlir line
    for i, line in enumerate(box.lines):
        cls = first_class if i == 0 else ("loc" if has_loc and i == len(box.lines) - 1 else "ty")
        out.append(f'<text class="{cls}" x="{_n(x)}" y="{_n(y + i * LINE_H)}">{escape(line)}</text>')
    return out


def _title(box: Box, marks: Marks) -> str:
    parts = list(box.lines)
    if box.loc is not None and box.loc.line > 0:
        parts[-1] = str(box.loc)
    extra = marks.titles.get(box.name) if box.kind in ("node", "scan") else None
    if extra:
        parts.append(extra)
    return f"<title>{escape(chr(10).join(parts))}</title>"


def _box(box: Box, marks: Marks, panel: str) -> list[str]:
    if box.kind in ("node", "scan"):
        ident = _attr("data-node", box.name) + _attr("data-op", box.op)
    else:
        ident = _attr("data-value" if box.kind != "output" else "data-output", box.name)
    loc = _attr("data-loc", str(box.loc)) if box.loc is not None and box.loc.line > 0 else ""
    cls = f"{box.kind} {marks.classes.get(box.name, '')}".strip() if box.kind in ("node", "scan") else box.kind
    extra = (
        "".join(_attr(k, v) for k, v in sorted(marks.attrs.get(box.name, {}).items())) if box.kind != "input" else ""
    )
    head = f'<g class="{cls}"{ident}{loc}{extra}>'
    rect = f'<rect x="{_n(box.x)}" y="{_n(box.y)}" width="{_n(box.w)}" height="{_n(box.h)}" rx="4"/>'
    if box.kind != "scan":
        return [head, _title(box, marks), rect, *_text_lines(box, box.x + PAD, box.y + PAD + 10), "</g>"]
    out = [head, _title(box, marks), rect.replace("<rect", '<rect class="frame"')]
    out.append(
        f'<g class="header"><text class="op" x="{_n(box.x + PAD)}" y="{_n(box.y + 16)}">'
        f'<tspan class="toggle">&#9662;</tspan> {escape(box.lines[0])}</text>'
        f'<text class="loc" x="{_n(box.x + box.w - PAD)}" y="{_n(box.y + 16)}" text-anchor="end">'
        f"{escape(box.lines[1])}</text></g>"
    )
    out.append('<g class="body">')
    out += _edges(box.edges)
    for c in box.children:
        out += _box(c, marks, panel)
    out += ["</g>", "</g>"]
    return out


def _edges(edges: list[Edge]) -> list[str]:
    out = []
    for e in edges:
        x1, y1, x2, y2 = e.points
        my = (y1 + y2) / 2
        out.append(
            f'<path class="edge"{_attr("data-from", e.src.name)}{_attr("data-to", e.dst.name)}'
            f' d="M{_n(x1)},{_n(y1)} C{_n(x1)},{_n(my)} {_n(x2)},{_n(my)} {_n(x2)},{_n(y2)}"/>'
        )
    return out


def panel_svg(root: Box, marks: Marks, panel: str, title: str) -> list[str]:
    """One graph (the forward model, or its gradient) as a ``<g class="panel">``."""
    out = [f'<g class="panel"{_attr("data-panel", panel)}>']
    out.append(f'<text class="panel-title" x="{_n(root.x)}" y="{_n(root.y - 14)}">{escape(title)}</text>')
    out += _edges(root.edges)
    for c in root.children:
        out += _box(c, marks, panel)
    out.append("</g>")
    return out


STYLE = """
svg { font: 12px ui-monospace, "DejaVu Sans Mono", Menlo, monospace; }
.node rect, .input rect, .param rect, .output rect { stroke: #555; stroke-width: 1; }
.node rect { fill: #eef3fb; }
.input rect { fill: #e6f4e6; }
.output rect { fill: #fdf1dc; }
.param rect { fill: #f4f4f4; stroke-dasharray: 3 2; }
.scan > rect.frame { fill: #f8f6ff; fill-opacity: 0.6; stroke: #7b61c4; stroke-width: 1.5; }
.scan.collapsed > .body { display: none; }
.header { cursor: pointer; }
text.op { font-weight: bold; fill: #111; }
text.ty { fill: #334; }
text.loc { fill: #777; }
text.panel-title { font-size: 15px; font-weight: bold; fill: #333; }
.edge { fill: none; stroke: #8a8a8a; stroke-width: 1.1; }
.agree > rect { fill: #dcf5dc; }
.close > rect { fill: #fff3bf; }
.diverged > rect { fill: #ffd6cc; }
.downstream > rect { stroke: #d9480f; stroke-width: 2; stroke-dasharray: 5 3; }
.scan.diverged > rect.frame { fill: #ffe8e2; }
.scan.agree > rect.frame { fill: #eefaee; }
.first > rect { fill: #ff8a75; stroke: #c92a2a; stroke-width: 3.5; stroke-dasharray: none; }
.hit > rect { stroke: #1c7ed6; stroke-width: 4; stroke-dasharray: none; }
"""


def svg_document(panels: list[list[str]], width: float, height: float, standalone: bool) -> str:
    """The ``<svg>`` element holding every panel; ``standalone`` adds the XML header and the style."""
    margin = 30.0
    box = f"{_n(-margin)} {_n(-margin - 10)} {_n(width + 2 * margin)} {_n(height + 2 * margin + 10)}"
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" id="graph" viewBox="{box}" '
        f'width="{_n(width + 2 * margin)}" height="{_n(height + 2 * margin + 10)}">'
    )
    body = [head]
    if standalone:
        body.append(f"<style>{STYLE}</style>")
    for p in panels:
        body += p
    body.append("</svg>")
    text = "\n".join(body) + "\n"
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + text) if standalone else text


__all__ = ["Marks", "panel_svg", "svg_document", "STYLE", "HEADER"]
