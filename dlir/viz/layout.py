"""A layered layout of the IR, computed in Python: no Graphviz, no browser, the same numbers every time.

Values flow down: a box sits one layer below the lowest of the boxes it reads.
Params and constants float to just above their first reader, so a model with
many weights does not get one long row of them. Within a layer, boxes are
ordered by the mean x of what they read (one barycenter sweep) and packed left
to right with a gap, which is why no two boxes overlap. A ``scan`` is a cluster:
its body is laid out the same way, recursively, and the cluster is one box of
the body's size in the enclosing layer. Coordinates are absolute.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dlir.errors import SourceLoc
from dlir.ir.graph import Graph, Node, Value, body_reads

CHAR_W = 7.3  # px per character of the 12 px monospace font the page uses
LINE_H = 15.0
PAD = 8.0
GAP_X = 22.0
GAP_Y = 36.0
HEADER = 24.0  # a cluster's title bar


@dataclass(eq=False)
class Box:
    """One drawn item: an IR node, a scan cluster, a model input, param or output."""

    kind: str  # "node" | "scan" | "input" | "param" | "output"
    name: str  # node: its first output's IR name; value: its name; output: the output's name
    op: str  # the op ("scan" for a cluster); "" for values
    lines: list[str]
    loc: SourceLoc | None = None
    x: float = 0.0
    y: float = 0.0
    w: float = 0.0
    h: float = 0.0
    children: list[Box] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    node: Node | None = None

    def move(self, dx: float, dy: float) -> None:
        self.x += dx
        self.y += dy
        for c in self.children:
            c.move(dx, dy)
        for e in self.edges:
            e.move(dx, dy)


@dataclass(eq=False)
class Edge:
    src: Box
    dst: Box
    value: str  # the value it carries

    points: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    def route(self) -> None:
        s, d = self.src, self.dst
        self.points = (s.x + s.w / 2, s.y + s.h, d.x + d.w / 2, d.y)

    def move(self, dx: float, dy: float) -> None:
        x1, y1, x2, y2 = self.points
        self.points = (x1 + dx, y1 + dy, x2 + dx, y2 + dy)


def short_loc(loc: SourceLoc | None) -> str:
    if loc is None or loc.line <= 0:
        return ""
    return f"{loc.file.rsplit('/', 1)[-1]}:{loc.line}"


def _types(values: list[Value]) -> str:
    return ", ".join(str(v.type) for v in values)


def _sized(box: Box) -> Box:
    box.w = max(len(s) for s in box.lines) * CHAR_W + 2 * PAD
    box.h = len(box.lines) * LINE_H + 2 * PAD - 4
    return box


def _node_box(node: Node) -> Box:
    outs = ", ".join(f"%{v.name}" for v in node.outputs)
    lines = [f"{node.op}  {outs}", _types(node.outputs)]
    if node.loc.line > 0:
        lines.append(short_loc(node.loc))
    return _sized(Box("node", node.outputs[0].name if node.outputs else node.op, node.op, lines, node.loc, node=node))


def layout(graph: Graph, with_outputs: bool = True) -> Box:
    """The whole graph as one root box (kind "graph") holding every box and edge."""
    root = Box("graph", graph.name, "", [graph.name])
    _lay(graph, root, top=True, with_outputs=with_outputs)
    return root


def _lay(graph: Graph, into: Box, top: bool, with_outputs: bool) -> None:
    """Lay ``graph`` out inside ``into``: sets its children, edges and size (children at the origin)."""
    made: dict[Value, Box] = {}
    items: list[tuple[Box, list[Value]]] = []  # each box and the values it reads (closures included)
    for v in graph.inputs:
        made[v] = _sized(Box("input", v.name, "", [f"input %{v.name}", str(v.type)], v.loc))
        items.append((made[v], []))
    if top:
        for p in graph.params:
            made[p] = _sized(Box("param", p.name, "", [f"{p.kind} %{p.name}", str(p.type)], p.loc))
            items.append((made[p], []))
    for node in graph.nodes:
        reads = list(node.inputs)
        if node.body is not None:
            box = _cluster(node)
            own = set(node.body.all_values())
            reads += [v for v in dict.fromkeys(body_reads(node.body)) if v not in own]
        else:
            box = _node_box(node)
        for v in node.outputs:
            made[v] = box
        items.append((box, reads))
    if top and with_outputs:
        for name, v in graph.outputs:
            items.append((_sized(Box("output", name, "", [f"output {name}", str(v.type)], v.loc)), [v]))
    boxes = [b for b, _ in items]
    deps = {b: [made[v] for v in reads if v in made] for b, reads in items}
    layers = _layers(boxes, deps)
    _place(boxes, deps, layers, into)
    for b, reads in items:
        for v in dict.fromkeys(reads):
            if v in made:
                e = Edge(made[v], b, v.name)
                e.route()
                into.edges.append(e)
    into.children = boxes


def _cluster(node: Node) -> Box:
    assert node.body is not None
    outs = ", ".join(f"%{v.name}" for v in node.outputs)
    rev = " reverse" if node.attrs.get("reverse") else ""
    title = f"scan{rev} along {node.attrs.get('axis')}  {outs}"
    box = Box("scan", node.outputs[0].name, "scan", [title, short_loc(node.loc)], node.loc, node=node)
    _lay(node.body, box, top=False, with_outputs=False)
    width = max([len(s) for s in box.lines]) * CHAR_W + 2 * PAD
    for c in box.children:  # the body below the title bar; the cluster itself stays at the origin
        c.move(PAD, HEADER + PAD)
    for e in box.edges:
        e.move(PAD, HEADER + PAD)
    inner_w = max((c.x + c.w for c in box.children), default=0.0) + PAD
    inner_h = max((c.y + c.h for c in box.children), default=HEADER) + PAD
    box.w, box.h = max(width, inner_w), inner_h
    return box


def _layers(boxes: list[Box], deps: dict[Box, list[Box]]) -> dict[Box, int]:
    """Longest path from the inputs; params and constants one layer above their first reader."""
    floating = {b for b in boxes if b.kind == "param" or (b.kind == "node" and not deps[b])}
    layer: dict[Box, int] = {}
    for b in boxes:  # topological order: inputs, params, nodes as the graph lists them, outputs
        fixed = [layer[d] for d in deps[b] if d not in floating]
        layer[b] = 0 if b.kind == "input" else 1 + max(fixed, default=0)
    readers: dict[Box, list[int]] = {}
    for b in boxes:
        for d in deps[b]:
            readers.setdefault(d, []).append(layer[b])
    for b in floating:
        layer[b] = max(0, min(readers.get(b, [1])) - 1)
    return layer


def _place(boxes: list[Box], deps: dict[Box, list[Box]], layer: dict[Box, int], into: Box) -> None:
    rows: dict[int, list[Box]] = {}
    for b in boxes:
        rows.setdefault(layer[b], []).append(b)
    order = {b: i for i, b in enumerate(boxes)}
    y = 0.0
    width = 0.0
    for k in sorted(rows):
        row = rows[k]
        placed = [d for b in row for d in deps[b] if layer[d] < k]

        def key(b: Box, placed: list[Box] = placed) -> tuple[float, int]:
            xs = [d.x + d.w / 2 for d in deps[b] if d in placed]
            return (sum(xs) / len(xs) if xs else float(order[b]) * 1e-3, order[b])

        row.sort(key=key)
        x = 0.0
        for b in row:
            b.move(x - b.x, y - b.y)
            x += b.w + GAP_X
        width = max(width, x - GAP_X)
        y += max(b.h for b in row) + GAP_Y
    for k in sorted(rows):  # centre every row on the widest
        row = rows[k]
        span = row[-1].x + row[-1].w - row[0].x
        for b in row:
            b.move((width - span) / 2, 0.0)
    into.w = max(into.w, width)
    into.h = max(into.h, y - GAP_Y)


def walk(box: Box) -> list[Box]:
    """Every box under ``box``, depth-first."""
    out = []
    for c in box.children:
        out.append(c)
        out += walk(c)
    return out
