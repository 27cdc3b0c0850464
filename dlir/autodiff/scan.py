"""The VJP of ``scan``: a reverse scan, not an unrolled loop.

For a scan ``(h', e) = body(x_t, h)`` (closure values ``c`` read from outside),
the backward pass is one more scan over the same ``xs``, walking the other way:

- the forward scan also emits the carries entering each step (``saved``), so the
  backward step knows ``h_t`` without recomputing the loop;
- the backward body reads ``h_t`` and the emits' cotangents ``ge_t`` at its step with
  a counter carry (``gather`` at ``-1, -2, ...`` going backwards, ``0, 1, ...``
  forwards), replays the forward body on ``(x_t, h_t)`` and differentiates it
  with the ordinary reverse sweep, seeded with the carries' cotangents ``gh``
  (carried from step to step) and ``ge_t``;
- it carries ``gh`` to the previous step, sums the closure values' cotangents in
  carries, and emits ``x_t``'s cotangent.

After it: ``gh`` are the inits' cotangents, the sums the closures', the stacked
emits xs's. The backward scan is itself a scan with a body of ordinary ops, so it
lowers everywhere and can be differentiated again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from dlir.ir.graph import Graph, Node, Value
from dlir.ir.scan import emit_scan, scan_body
from dlir.ir.types import DType, TensorType
from dlir.ops.control import register_scan_vjp, stacked_type, step_type

if TYPE_CHECKING:
    from dlir.autodiff.builder import GradBuilder


def scan_vjp(b: GradBuilder, node: Node, cts: list[Value]) -> list[Value | None]:
    from dlir.ir.graph import body_reads

    body = node.body
    assert body is not None
    k, axis, reverse = node.attrs["n_carry"], node.attrs["axis"], node.attrs["reverse"]
    xs, inits = node.inputs[0], node.inputs[1:]
    m = len(node.outputs) - k
    g_ys, g_last = cts[:m], cts[m:]
    saved = _save_carries(b.graph, node)

    own = {id(v) for v in _defined(body)}
    closure = list(dict.fromkeys(v for v in body_reads(body) if id(v) not in own))
    closure = [v for v in closure if v.type.dtype.is_float and b.is_active(v)]
    floats = [i for i in range(k) if inits[i].type.dtype.is_float]
    want_xs = b.needs(0) and xs.type.dtype.is_float

    # The backward body: inputs x_t, counter, gh (float carries), sums (closures).
    counter_t = TensorType.make(DType.i64, [1])
    carry_types = [counter_t] + [inits[i].type for i in floats] + [c.type for c in closure]
    names = ["x_t", "step"] + [f"d.{body.inputs[1 + i].name}" for i in floats] + [f"d.{c.name}" for c in closure]
    bb = scan_body(b.graph, step_type(xs.type, axis), carry_types, names, name=f"d.{body.name}", loc=node.loc)
    x_t, step = bb.inputs[0], bb.inputs[1]
    gh = dict(zip(floats, bb.inputs[2 : 2 + len(floats)], strict=True))
    sums = bb.inputs[2 + len(floats) :]
    inner = type(b)(bb, node.loc, "d")

    def at_step(stacked: Value) -> Value:
        picked = inner.op("gather", stacked, step, axis=axis)
        return inner.op("squeeze", picked, axes=[axis])

    h_t = [at_step(s) for s in saved]
    mapping: dict[Value, Value] = {body.inputs[0]: x_t, **dict(zip(body.inputs[1:], h_t, strict=True))}
    first_replay = len(bb.nodes)
    _replay(body, bb, mapping)
    replayed = bb.nodes[first_replay:]

    seeds: list[tuple[Value, Value]] = []
    for i in floats:
        seeds.append((_mapped(mapping, body.outputs[i][1]), gh[i]))
    for j, (_, e) in enumerate(body.outputs[k : k + m]):  # (the saved carries come after)
        # an emit nothing reads (an LSTM's hidden states when only its last h is used) seeds nothing
        if e.type.dtype.is_float and not _known_zero(g_ys[j]):
            seeds.append((_mapped(mapping, e), at_step(g_ys[j])))
    variables = ([x_t] if want_xs else []) + [h_t[i] for i in floats] + closure
    grads = _reverse(bb, variables, replayed, seeds)

    one = inner.op("constant", value=1 if reverse else -1, dtype=DType.i64)
    outputs: list[tuple[str, Value]] = [("step", inner.add(step, one))]
    for i in floats:
        outputs.append((f"d.{body.inputs[1 + i].name}", grads.get(h_t[i]) or inner.zeros_like(h_t[i])))
    # A closure weight's cotangent that is a product p^T q of two step values (the hidden-to-hidden
    # weight of an RNN) is not summed in a carry one matmul a step: p and q are emitted and one
    # matmul over every step's rows follows the loop.
    products = {c: pq for c in closure if c in grads and (pq := _outer_product(bb, grads[c])) is not None}
    summed = [c for c in closure if c not in products]
    for c, s in zip(closure, sums, strict=True):
        if c in products:
            bb.inputs.remove(s)
        else:
            outputs.append((f"d.{c.name}", inner.add(s, grads[c]) if c in grads else s))
    if want_xs:
        outputs.append(("d.x_t", grads.get(x_t) or inner.zeros_like(x_t)))
    # p or q read from a saved stack at this step is that stack: it need not be stacked again
    already: dict[int, Value] = {}
    for pq in products.values():
        for v in pq:
            st = _saved_stack_read(bb, v, step, axis)
            if st is not None:
                already[id(v)] = st
    n_carried = 1 + len(floats) + len(summed)  # the outputs before the emits
    emits = {id(v): i for i, (_, v) in enumerate(outputs[n_carried:])}
    for c, (p, q) in products.items():
        for kind, v in (("rows", p), ("cols", q)):
            if id(v) not in already and id(v) not in emits:
                emits[id(v)] = len(outputs) - n_carried
                outputs.append((f"d.{c.name}.{kind}", v))
    bb.outputs = outputs
    _prune_body(bb)
    _save_instead_of_replay(b.graph, node, bb, replayed, mapping, at_step)

    start = b.op("constant", value=[0 if reverse else -1], dtype=DType.i64)
    starts = [start] + [g_last[i] for i in floats] + [b.zeros_like(c) for c in summed]
    outs = emit_scan(b.graph, xs, starts, bb, axis, reverse=not reverse, loc=node.loc)
    d_xs = outs[0] if want_xs else None
    lasts = outs[-n_carried:]
    d_inits = dict(zip(floats, lasts[1 : 1 + len(floats)], strict=True))
    for c, total in zip(summed, lasts[1 + len(floats) :], strict=True):
        b.add_closure_cotangent(c, total)
    all_emits = outs[: len(outs) - n_carried]
    for c, (p, q) in products.items():
        rows, cols = (already[id(v)] if id(v) in already else all_emits[emits[id(v)]] for v in (p, q))
        b.add_closure_cotangent(c, b.rows_product(rows, cols))
    return [d_xs] + [d_inits.get(i) for i in range(k)]


def _known_zero(v: Value) -> bool:
    """``v`` is zeros by construction: a zero constant, maybe broadcast (GradBuilder.zeros)."""
    node = v.producer
    if node is not None and node.op == "broadcast_to":
        node = node.inputs[0].producer
    return node is not None and node.op == "constant" and not np.any(np.asarray(node.attrs["value"]))


def _outer_product(bb: Graph, v: Value) -> tuple[Value, Value] | None:
    """(p, q) when ``v`` is ``transpose(p) @ q`` of two rank-2 values of the body's step, else None."""
    mm = v.producer
    if mm is None or mm.op != "matmul" or mm not in bb.nodes:
        return None
    t, q = mm.inputs
    tr = t.producer
    if tr is None or tr.op != "transpose" or list(tr.attrs["perm"]) != [1, 0] or tr not in bb.nodes:
        return None
    p = tr.inputs[0]
    steps = {id(o) for n in bb.nodes for o in n.outputs} | {id(i) for i in bb.inputs}
    if p.type.rank != 2 or q.type.rank != 2 or id(p) not in steps or id(q) not in steps:
        return None
    return p, q


def _saved_stack_read(bb: Graph, v: Value, step: Value, axis: int) -> Value | None:
    """The stack ``S`` when ``v`` is ``squeeze(gather(S, step, axis))`` with ``S`` from outside the body."""
    sq = v.producer
    if sq is None or sq.op != "squeeze" or list(sq.attrs.get("axes") or []) != [axis]:
        return None
    ga = sq.inputs[0].producer
    if ga is None or ga.op != "gather" or ga.inputs[1] is not step or ga.attrs["axis"] != axis:
        return None
    stack = ga.inputs[0]
    inside = stack in bb.inputs or (stack.producer is not None and stack.producer in bb.nodes)
    return None if inside else stack


def _save_instead_of_replay(
    g: Graph,
    node: Node,
    bb: Graph,
    replayed: list[Node],
    mapping: dict[Value, Value],
    at_step: Callable[[Value], Value],
) -> None:
    """Values of the forward step that the backward step reads are emitted by the forward scan and
    read back at their step, as autograd saves them, instead of being computed again (the gates
    of an LSTM: a matmul and four activations per step). The replay left unread is pruned."""
    replay = {id(n) for n in replayed}
    made_by_replay = {id(o): o for n in bb.nodes if id(n) in replay for o in n.outputs}
    original = {id(new): old for old, new in mapping.items() if id(new) in made_by_replay}
    axis = node.attrs["axis"]

    def worth_saving(v: Value) -> bool:
        # a constant is cheaper to make again than to stack; a value of rank < axis cannot be stacked
        return id(v) in original and v.type.rank >= axis and v.producer is not None and v.producer.op != "constant"

    wanted: dict[int, Value] = {}
    for n in bb.nodes:
        if id(n) not in replay:
            wanted.update((id(v), v) for v in n.inputs if worth_saving(v))
    wanted.update((id(v), v) for _, v in bb.outputs if worth_saving(v))
    if not wanted:
        return
    first = min(i for i, n in enumerate(bb.nodes) if id(n) in replay)
    before = len(bb.nodes)
    read_back = {}
    for key in wanted:
        stacked = _save_value(g, node, original[key])
        read_back[key] = at_step(stacked)
    fresh = bb.nodes[before:]
    del bb.nodes[before:]
    bb.nodes[first:first] = fresh  # read before the replay, so before anything that used it
    for n in bb.nodes:
        n.inputs = [read_back.get(id(v), v) for v in n.inputs]
    bb.outputs = [(name, read_back.get(id(v), v)) for name, v in bb.outputs]
    _prune_body(bb)


def _save_value(g: Graph, node: Node, v: Value) -> Value:
    """Make the forward scan emit its body's value ``v`` at every step (once); the stacked value."""
    body = node.body
    assert body is not None
    k, axis = node.attrs["n_carry"], node.attrs["axis"]
    emits = body.outputs[k:]
    for j, (name, e) in enumerate(emits):
        if e is v and name.startswith("saved."):
            return node.outputs[j]
    m = len(emits)
    body.outputs.append((f"saved.{v.name}", v))
    stacked = stacked_type(v.type, node.inputs[0].type, axis)
    out = Value(g.fresh_name(f"saved.{v.name}"), stacked, "node", producer=node, loc=node.loc)
    node.outputs.insert(m, out)
    return out


def _save_carries(g: Graph, node: Node) -> list[Value]:
    """Make the forward scan also emit each carry as it enters a step; the stacked carries.

    A scan differentiated before (grad of grad) already emits them: those are reused.
    """
    body = node.body
    assert body is not None
    k, axis = node.attrs["n_carry"], node.attrs["axis"]
    saved = []
    for h in body.inputs[1:]:
        emits = body.outputs[k:]
        found = [j for j, (name, v) in enumerate(emits) if v is h and name.startswith("saved.")]
        if found:
            saved.append(node.outputs[found[0]])
            continue
        m = len(emits)
        body.outputs.append((f"saved.{h.name}", h))
        stacked = stacked_type(h.type, node.inputs[0].type, axis)
        v = Value(g.fresh_name(f"saved.{h.name}"), stacked, "node", producer=node, loc=node.loc)
        node.outputs.insert(m, v)
        saved.append(v)
    return saved


def _defined(g: Graph) -> list[Value]:
    out = list(g.inputs)
    for n in g.nodes:
        out.extend(n.outputs)
        if n.body is not None:
            out.extend(_defined(n.body))
    return out


def _mapped(mapping: dict[Value, Value], v: Value) -> Value:
    return mapping.get(v, v)


def _replay(src: Graph, dst: Graph, mapping: dict[Value, Value]) -> None:
    """Copy ``src``'s nodes into ``dst`` (fresh names), reading ``mapping[v]`` for ``src``'s values."""
    for n in src.nodes:
        outs = [Value(dst.fresh_name(o.name), o.type, "node", loc=o.loc) for o in n.outputs]
        copy = Node(n.op, [_mapped(mapping, v) for v in n.inputs], _copy_attrs(n.attrs), outs, n.loc)
        for o, new in zip(n.outputs, outs, strict=True):
            new.producer = copy
            mapping[o] = new
        if n.body is not None:
            copy.body = _replay_body(n.body, dst, mapping)
        dst.nodes.append(copy)


def _replay_body(src: Graph, outer: Graph, mapping: dict[Value, Value]) -> Graph:
    body = Graph(src.name, loc=src.loc, _used=outer._used, _next=outer._next)
    for v in src.inputs:
        new = Value(outer.fresh_name(v.name), v.type, "input", loc=v.loc)
        body.inputs.append(new)
        mapping[v] = new
    _replay(src, body, mapping)
    body.outputs = [(name, _mapped(mapping, v)) for name, v in src.outputs]
    return body


def _copy_attrs(attrs: dict[str, object]) -> dict[str, object]:
    return {k: (list(v) if isinstance(v, list) else v) for k, v in attrs.items()}


def _reverse(
    bb: Graph, variables: list[Value], nodes: list[Node], seeds: list[tuple[Value, Value]]
) -> dict[Value, Value]:
    from dlir.autodiff.builder import GradBuilder
    from dlir.autodiff.transform import Reverse

    sweep = Reverse(bb, variables, nodes)
    b = GradBuilder(bb)
    for v, c in seeds:
        if v in sweep.active:
            sweep.accumulate(b, v, c, ())
    return sweep.run({})


def _prune_body(bb: Graph) -> None:
    from dlir.autodiff.transform import prune

    prune(bb)


__all__ = ["scan_vjp"]


register_scan_vjp(scan_vjp)  # ops/control.py's scan OpDef reaches it through this hook
