"""The torch emitters of gather_elements, scatter_elements, scatter_nd, cumsum and topk.

torch's gather/scatter want int64 indices without negatives: they are wrapped first,
as the reference does. topk is a stable sort cut to k (``torch.topk`` leaves the order
of equal values open; ONNX puts the lower index first).
"""

from __future__ import annotations

from dlir.backends.torch.site import Emitter, Site, torch_dtype

_REDUCE = {"add": "sum", "mul": "prod", "max": "amax", "min": "amin"}


def _wrapped(s: Site, i: str, axis: int) -> str:
    n = s.in_type.shape[axis]
    size = str(n.value) if n.is_static else f"{s.x}.shape[{axis}]"
    return f"torch.where({i} < 0, {i} + {size}, {i}).long()"


def _gather_elements(s: Site) -> str:
    ax = s.attr("axis")
    return f"torch.gather({s.x}, {ax}, {_wrapped(s, s.args[1], ax)})"


def _scatter_elements(s: Site) -> str:
    x, i, u = s.args
    ax, red = s.attr("axis"), s.attr("reduction")
    idx = _wrapped(s, i, ax)
    if red == "none":
        return f"torch.scatter({x}, {ax}, {idx}, {u})"
    return f"torch.scatter_reduce({x}, {ax}, {idx}, {u}, {_REDUCE[red]!r}, include_self=True)"


def _scatter_nd(s: Site) -> str:
    x, i, u = s.args
    k = s.node.inputs[1].type.shape[-1].value
    # index_put reads negative positions from the end, as the reference
    where = "(" + "".join(f"{i}[..., {j}], " for j in range(k)) + ")"
    accumulate = ", accumulate=True" if s.attr("reduction") == "add" else ""
    return f"torch.index_put({x}, {where}, {u}{accumulate})"


def _cumsum(s: Site) -> str:
    ax = s.attr("axis")
    x = f"{s.x}.flip({ax})" if s.attr("reverse") else s.x
    dt = s.in_type.dtype
    # torch sums integers in int64 unless told otherwise
    total = f"torch.cumsum({x}, {ax}, dtype={torch_dtype(dt)})" if dt.is_int else f"torch.cumsum({x}, {ax})"
    if s.attr("exclusive"):  # shifted by one along axis, 0 first: the sums the reference makes
        n = s.in_type.shape[ax]
        size = str(n.value) if n.is_static else f"{s.x}.shape[{ax}]"
        total = f"torch.cat([torch.zeros_like({x}.narrow({ax}, 0, 1)), {total}.narrow({ax}, 0, {size} - 1)], {ax})"
    return f"{total}.flip({ax})" if s.attr("reverse") else total


def _topk(s: Site) -> str:
    ax, k = s.attr("axis"), s.attr("k")
    desc = "True" if s.attr("largest") else "False"
    return f"[t.narrow({ax}, 0, {k}) for t in torch.sort({s.x}, dim={ax}, descending={desc}, stable=True)]"


GATHER_EMITTERS: dict[str, Emitter] = {
    "gather_elements": _gather_elements,
    "scatter_elements": _scatter_elements,
    "scatter_nd": _scatter_nd,
    "cumsum": _cumsum,
    "topk": _topk,
}
