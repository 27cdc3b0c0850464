"""Elaborating ``scan`` statements into one scan node that owns a body graph.

``ys, h_last = scan [reverse] x_t in xs along AXIS carry h = h0, c = c0 { ...; emit e }``

The body's statements run once, at compile time, in a frame where ``x_t`` and the
carries are the body graph's inputs; the names around the scan stay visible
(closure), carries are updated by rebinding, and each ``emit`` executed adds one
emitted value. Names bound in the body stay in the body.

The body's nodes are built in the model's graph like any others and moved into
the body graph once the body has run, so whatever the body creates that is not
a node — params, layer instances — stays on the model's graph, where it belongs.
"""

from __future__ import annotations

from collections import ChainMap
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from lark import Token, Tree

from dlir.errors import TypeError_
from dlir.frontend.expressions import is_tensor
from dlir.frontend.scope import Frame
from dlir.ir.graph import Node, Value
from dlir.ir.scan import emit_scan, normalize_axis, scan_body, step_type
from dlir.ir.types import TensorType

if TYPE_CHECKING:
    from dlir.frontend.elaborate import Elaborator


@dataclass
class ScanState:
    """What one scan body has emitted so far."""

    axis: int
    emits: list[Value] = field(default_factory=list)
    seen: dict[int, TensorType] = field(default_factory=dict)  # id of an emit statement -> its type


@dataclass
class ScanFrame(Frame):
    """The frame of a scan body: ``emit`` statements report to ``scan``."""

    scan: ScanState | None = None


def exec_scan_stmt(el: Elaborator, st: Tree, frame: Frame) -> None:
    """Execute a ``scan_assign`` or an ``emit_stmt``."""
    if st.data == "emit_stmt":
        if not isinstance(frame, ScanFrame) or frame.scan is None:
            raise TypeError_(
                "emit is only allowed inside a scan body",
                el.loc(st),
                hint="emit adds one value per step to the results of a scan",
            )
        _emit(el, st, frame, frame.scan)
    else:
        _scan(el, st, frame)


def _scan(el: Elaborator, st: Tree, frame: Frame) -> None:
    targets = [str(t) for t in st.children[0].children]
    expr = st.children[1]
    reverse_tok, x_tok, xs_expr, axis_expr, *carries, block = expr.children
    xs = el.eval(xs_expr, frame)
    if not is_tensor(xs):
        raise TypeError_(
            f"scan iterates over a tensor, but xs is {el.describe(xs)}",
            el.loc(xs_expr),
            hint="`scan x_t in xs along 1 ...` slices the tensor xs along axis 1",
        )
    axis = _axis(el, axis_expr, xs, frame)
    names, inits = _carries(el, carries, cast(Token, x_tok), frame)
    carry_toks = [cast(Token, c.children[0]) for c in carries]
    # Body inputs are named as bind() names values: with the layer's prefix (rnn.h).
    prefix = frame.owner.prefix + "." if frame.owner is not None and frame.owner.prefix and frame.kind != "fn" else ""
    bases = [prefix + n for n in [str(x_tok), *names]]
    body = scan_body(
        el.graph,
        step_type(xs.type, axis),
        [v.type for v in inits],
        bases,
        locs=[el.loc(t) for t in [x_tok, *carry_toks]],
        loc=el.loc(expr),
    )
    state = ScanState(axis)
    local: dict[str, Any] = dict(zip([str(x_tok)] + names, body.inputs, strict=True))
    inner = ScanFrame(
        ChainMap(local, *frame.scope.maps),
        frame.owner,
        frame.symbols,
        frame.loops,
        frame.created,
        frame.kind,
        scan=state,
    )
    body.nodes = _run_body(el, block, inner)
    new = [
        _carry_out(el, n, local[n], h.type, block, tok)
        for n, h, tok in zip(names, body.inputs[1:], carry_toks, strict=True)
    ]
    m, k = len(state.emits), len(names)
    if len(targets) != m + k:
        carries_text = "carry" if k == 1 else "carries"
        raise TypeError_(
            f"{len(targets)} name(s) to bind, but this scan gives {m + k}: "
            f"{m} stacked emit(s), then {k} final {carries_text}",
            el.loc(st),
            hint="bind the stacked emits first, then the final carries: `ys, h_last = scan ...`",
        )
    emit_names = [t if t not in names else f"emit{j}" for j, t in enumerate(targets[:m])]
    body.outputs = list(zip(names, new, strict=True)) + list(zip(emit_names, state.emits, strict=True))
    outs = emit_scan(el.graph, xs, inits, body, axis, reverse_tok is not None, el.loc(expr), names=targets)
    for name, v in zip(targets, outs, strict=True):
        el.auto_named.add(v)
        el.bind(name, v, frame, st)


def _run_body(el: Elaborator, block: Tree, inner: ScanFrame) -> list[Node]:
    """Run the body's statements; the nodes they build move from the model's graph into the body."""
    g = el.graph
    start = len(g.nodes)
    for s in block.children:
        if s.data == "return_stmt":
            raise TypeError_(
                "return is not allowed inside a scan body",
                el.loc(s),
                hint="a scan gives its emits and final carries: `ys, h = scan ...`; return after it",
            )
        el.exec_stmt(s, inner)
    nodes = g.nodes[start:]
    del g.nodes[start:]
    return nodes


def _axis(el: Elaborator, axis_expr: Tree, xs: Value, frame: Frame) -> int:
    axis = el.eval(axis_expr, frame)
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise TypeError_(f"`along` takes a compile-time int axis, got {el.describe(axis)}", el.loc(axis_expr))
    ax = normalize_axis(axis, xs.type.rank)
    if ax is None:
        r = xs.type.rank
        hint = f"xs has axes 0..{r - 1} (or -{r}..-1)" if r else "xs is a scalar: there is nothing to iterate over"
        raise TypeError_(f"scan along axis {axis}, but xs: {xs.type} has no axis {axis}", el.loc(axis_expr), hint=hint)
    return ax


def _carries(el: Elaborator, carries: list[Tree], x_tok: Token, frame: Frame) -> tuple[list[str], list[Value]]:
    names: list[str] = []
    inits: list[Value] = []
    for c in carries:
        tok, e = c.children
        name = str(tok)
        if name in names or name == str(x_tok):
            what = "the slice" if name == str(x_tok) else "another carry"
            raise TypeError_(
                f"carry '{name}' has the name of {what}",
                el.loc(tok),
                hint="each carry and the slice need their own names",
            )
        v = el.eval(e, frame)
        if not is_tensor(v):
            v = el.as_tensor(v, None, e)  # `carry n = 0` starts a scalar counter
        names.append(name)
        inits.append(v)
    return names, inits


def _carry_out(el: Elaborator, name: str, v: Any, t: TensorType, block: Tree, tok: Token) -> Value:
    """The carry's value at the end of the body; it must keep its type."""
    if is_tensor(v) and v.type == t:
        return v
    where = _last_binding(block, name)
    got = f"leaves as {v.type}" if is_tensor(v) else f"is rebound to {el.describe(v)}"
    raise TypeError_(
        f"carry '{name}' changes type inside the scan body: it enters as {t} and {got}",
        el.loc(where if where is not None else tok),
        hint=f"a carry keeps one type from step to step: make the new '{name}' {t}, or change its initial value",
    )


def _last_binding(block: Tree, name: str) -> Tree | None:
    """The last statement of the body (outside nested scans) that binds ``name``."""
    last = None
    for st in block.children:
        if not isinstance(st, Tree):
            continue
        if st.data in ("assign", "scan_assign") and name in [str(t) for t in st.children[0].children]:
            last = st
        elif st.data == "for_stmt":
            last = _last_binding(st.children[2], name) or last
    return last


def _emit(el: Elaborator, st: Tree, frame: Frame, state: ScanState) -> None:
    v = el.eval(st.children[0], frame)
    if not is_tensor(v):
        v = el.as_tensor(v, None, st)
    seen = state.seen.get(id(st))
    if seen is not None and seen != v.type:
        raise TypeError_(
            f"emit of inconsistent shapes: this emit gives {v.type} here, "
            f"but {seen} in an earlier iteration of its loop",
            el.loc(st),
            hint="every value one emit statement produces must have the same type; "
            "emit values of other shapes from their own emit",
        )
    if state.axis > v.type.rank:
        raise TypeError_(
            f"emit of {v.type} cannot be stacked along axis {state.axis}",
            el.loc(st),
            hint=f"the stacked result puts the sequence axis at position {state.axis}: "
            f"emit a tensor of rank {state.axis} or more",
        )
    state.seen[id(st)] = v.type
    state.emits.append(v)
