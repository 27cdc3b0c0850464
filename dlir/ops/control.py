"""Control flow: ``scan``, the one recurrence op. Its body is a graph.

A scan node (see ``dlir/ir/scan.py`` for the builder)::

    outputs = [ys_1..ys_m, last_1..last_k] = scan(xs, init_1..init_k) {axis, reverse, n_carry=k}
    body(x_t, h_1..h_k) -> (h_1'..h_k', e_1..e_m)

``x_t`` is ``xs`` with ``axis`` removed, ``h_i`` has the type of ``init_i`` and
so does ``h_i'``; ``ys_j`` is ``e_j`` with the sequence length inserted at
``axis``. The result types depend on the body, so the usual ``infer`` cannot give
them: :func:`scan_types` (``extra["infer_body"]``) is the shape rule the builder,
the IR-text parser and the verifier share. The numpy interpreter runs the body
step by step itself (``dlir/runtime/interpreter.py``); ``ref`` is never called.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np

from dlir.errors import TypeError_
from dlir.ir.graph import Graph, Value
from dlir.ir.types import TensorType
from dlir.ops.registry import Attr, OpDef, register


def step_type(xs: TensorType, axis: int) -> TensorType:
    """The type of one slice ``x_t`` of ``xs`` along ``axis`` (negative counts from the end)."""
    axis = axis % xs.rank if xs.rank else axis
    return TensorType(xs.dtype, xs.shape[:axis] + xs.shape[axis + 1 :])


def stacked_type(e: TensorType, xs: TensorType, axis: int) -> TensorType:
    """The type of the stacked emits of ``e``: xs's length along ``axis`` (>= 0) inserted at ``axis``."""
    return TensorType(e.dtype, e.shape[:axis] + (xs.shape[axis],) + e.shape[axis:])


def scan_types(ts: list[TensorType], a: dict[str, Any], body: Graph) -> list[TensorType]:
    """Result types of a scan node with inputs ``ts`` and this body; a TypeError_ names what does not fit."""
    k = a["n_carry"]
    if k != len(ts) - 1:
        raise TypeError_(f"scan: n_carry={k}, but the node has {len(ts) - 1} initial carry value(s) after xs")
    xs, inits = ts[0], ts[1:]
    axis = a["axis"]
    if not 0 <= axis < xs.rank:
        hint = f"xs has axes 0..{xs.rank - 1}" if xs.rank else "xs is a scalar"
        raise TypeError_(f"scan: axis {axis} does not exist for xs: {xs}", hint=hint)
    if body.params:
        names = ", ".join(p.name for p in body.params)
        raise TypeError_(
            f"scan: the body declares params ({names})",
            hint="params belong to the outermost graph; the body reads them",
        )
    _check_body_inputs(xs, axis, inits, body)
    carries = "carry" if k == 1 else "carries"
    if len(body.outputs) < k:
        raise TypeError_(f"scan: the body returns {len(body.outputs)} value(s), fewer than its {k} {carries}")
    for (name, v), h in zip(body.outputs[:k], body.inputs[1:], strict=True):
        if _type(v) != h.type:
            raise TypeError_(
                f"scan: carry '{name}' changes type in the body: it enters as {h.type} and leaves as {_type(v)}",
                hint="a carry keeps one type from step to step",
            )
    ys = []
    for name, e in body.outputs[k:]:
        et = _type(e)
        if axis > et.rank:
            raise TypeError_(
                f"scan: emit '{name}': {et} cannot be stacked along axis {axis}",
                hint=f"emits of a scan along axis {axis} need rank {axis} or more",
            )
        ys.append(stacked_type(et, xs, axis))
    return ys + list(inits)


def _check_body_inputs(xs: TensorType, axis: int, inits: list[TensorType], body: Graph) -> None:
    k = len(inits)
    if len(body.inputs) != 1 + k:
        raise TypeError_(
            f"scan: the body takes {len(body.inputs)} input(s), but a scan with {k} "
            f"carr{'y' if k == 1 else 'ies'} gives it {1 + k} (x_t, then the carries)"
        )
    x_t, want = body.inputs[0], step_type(xs, axis)
    if x_t.type != want:
        raise TypeError_(
            f"scan: body input %{x_t.name} is {x_t.type}, but a slice of xs: {xs} along axis {axis} is {want}"
        )
    for h, t in zip(body.inputs[1:], inits, strict=True):
        if h.type != t:
            raise TypeError_(f"scan: body input %{h.name} is {h.type}, but its initial value is {t}")


def _type(v: Any) -> TensorType:
    if not isinstance(v, Value):
        raise TypeError_(f"scan: the body returns {v!r}, not a value")
    return v.type


def _built_by_emit_scan(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    raise TypeError_(
        "scan cannot be built like other ops: its result types come from its body graph",
        hint="build it with dlir.ir.scan.emit_scan(graph, xs, inits, body, axis, reverse)",
    )


def _run_by_interpreter(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    raise TypeError_(
        "scan has no standalone numpy reference", hint="dlir.runtime.interpreter.run_graph runs its body step by step"
    )


# The VJP of scan is a reverse scan built by dlir.autodiff.scan, a higher layer (it runs the
# reverse sweep over the body): dlir.autodiff registers it here when it is imported, and
# nothing differentiates without importing dlir.autodiff.
_SCAN_VJP: list[Any] = []


def register_scan_vjp(rule: Any) -> None:
    """Called by dlir.autodiff.scan: the rule ``(builder, node, cotangents) -> input cotangents``."""
    _SCAN_VJP[:] = [rule]


def _scan_vjp(b: Any, node: Any, cts: list[Value]) -> list[Value | None]:
    """A reverse scan over the same xs (the rule dlir.autodiff.scan registered)."""
    (rule,) = _SCAN_VJP
    return cast("list[Value | None]", rule(b, node, cts))


register(
    OpDef(
        "scan",
        ("xs", "inits*"),
        (Attr("axis", "int"), Attr("reverse", "bool", False), Attr("n_carry", "int")),
        _built_by_emit_scan,
        _run_by_interpreter,
        doc="run the body graph over the slices of xs along axis, threading carries; stacks the emits",
        family="control",
        extra={"infer_body": scan_types},
        vjp=_scan_vjp,
    )
)
