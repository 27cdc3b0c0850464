"""Python source of a ``torch.nn.Module`` for a dlir graph.

The params become a tree of sub-modules so that ``state_dict()`` keys are exactly
the dotted dlir names (``fc1.w``, ``blk.0.w``). A name segment that is a plain
identifier is reached by attribute (``self.fc1.w``); one that is not (``lambda``,
``0``) or that would collide with an ``nn.Module`` attribute (``train``,
``__init__``) is reached through the module's own ``_modules`` /
``_parameters`` / ``_buffers`` dicts, which is exactly where torch keeps them.
Runs of sub-modules named ``0..n-1`` become an ``nn.ModuleList`` (``self.blk[0]``).

``forward`` has one statement per IR node; a ``scan`` node is a ``for`` loop over
the slices of its sequence with the body's statements inside (the body reads the
enclosing locals directly) and a ``torch.stack`` of each emit after it.

Generating needs no torch: only the runner imports it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from dlir.backends.codegen import (
    RESERVED,
    WEIGHTS_NAMES,
    Namespace,
    dim_expr,
    is_plain_identifier,
    loc_comment,
    py_num,
    py_str,
    read_weights,
    weights_reader,
)
from dlir.backends.lstm_training import skipped_nodes as lstm_skipped
from dlir.backends.lstm_training import trained_lstms
from dlir.backends.step_reads import loop_counters, squeezed_reads, stepped_only
from dlir.backends.torch.frees import with_frees
from dlir.backends.torch.fused_rnn import fused_scan_lines
from dlir.backends.torch.fused_rnn_training import backward_lines, forward_lines
from dlir.backends.torch.lowering import EMITTERS, Site, scalar_literal, takes_scalar
from dlir.backends.torch.lowering_grad import (
    batch_norm_train_grad,
    batch_norm_train_keeping_stats,
    layer_norm_grad,
    layer_norm_keeping_stats,
    max_pool2d_grad,
    pool_with_indices,
    shared_pool_geometry,
)
from dlir.backends.torch.step_patterns import batch_statistics, norms_with_grads, pools_with_grads

from dlir.errors import LoweringError, did_you_mean
from dlir.ir.graph import Graph, Init, Node, Value
from dlir.ir.rnn_cell import absorbed_projections, skipped_nodes
from dlir.ir.types import Dim, DType
from dlir.runtime.init import standalone_source

# Public attributes of torch.nn.Module (torch 2.13, and smart_apply, which importing
# Hugging Face transformers adds to nn.Module); a param or sub-module with one of
# these names cannot be an attribute. tests/test_torch_backend.py checks this list
# still covers the installed torch (transformers may be imported by then).
NN_MODULE_ATTRS = frozenset(
    """T_destination add_module apply bfloat16 buffers call_super_init children compile cpu cuda double
    dump_patches eval extra_repr float forward get_buffer get_extra_state get_parameter get_submodule half
    ipu load_state_dict modules mtia named_buffers named_children named_modules named_parameters parameters
    register_backward_hook register_buffer register_forward_hook register_forward_pre_hook
    register_full_backward_hook register_full_backward_pre_hook register_load_state_dict_post_hook
    register_load_state_dict_pre_hook register_module register_parameter register_state_dict_post_hook
    register_state_dict_pre_hook requires_grad_ set_extra_state set_submodule share_memory smart_apply state_dict to
    to_empty train training type xpu zero_grad""".split()
)

# Module-level names of the generated file besides the class.
FILE_GLOBALS = frozenset({"Any", "math", "np", "zlib", "fans", "draw", "_initial"}) | WEIGHTS_NAMES

INITIAL_HELPER = '''

def _initial(
    name: str, shape: tuple[int, ...], dtype: str, kind: str, args: dict[str, float], seed: int
) -> torch.Tensor:
    """dlir's seeded initial value of one param: the same numbers on every target."""
    if dtype == "bfloat16":  # numpy has no bfloat16: torch rounds the float64 draws, as dlir does
        return torch.from_numpy(draw(name, shape, np.float64, kind, args, seed)).to(torch.bfloat16)
    return torch.from_numpy(draw(name, shape, np.dtype(dtype), kind, args, seed))
'''


def attribute_ok(segment: str) -> bool:
    """Whether ``module.segment`` reaches a child registered under ``segment``."""
    return is_plain_identifier(segment) and not segment.startswith("_") and segment not in NN_MODULE_ATTRS


def register_ok(segment: str) -> bool:
    """Whether torch's register_*/add_module accept ``segment`` (no clash with an attribute)."""
    return not segment.startswith("_") and segment not in NN_MODULE_ATTRS


# -- the module tree ------------------------------------------------------------------


@dataclass(eq=False)
class Tree:
    """A sub-module: its children, its params/buffers, and the Python reaching it."""

    expr: str
    root: bool = False
    children: dict[str, Tree] = field(default_factory=dict)
    leaves: dict[str, Value] = field(default_factory=dict)

    @property
    def is_list(self) -> bool:
        """Children named 0..n-1 and nothing else: an nn.ModuleList (the model itself never is)."""
        n = len(self.children)
        return not self.root and n > 0 and not self.leaves and list(self.children) == [str(i) for i in range(n)]


def build_tree(graph: Graph) -> Tree:
    """The sub-module tree of ``graph``'s params, with an access expression per node."""
    root = Tree("self", root=True)
    for p in graph.params:
        segs = p.name.split(".")
        if not all(segs):
            raise LoweringError(f"param name '{p.name}' has an empty part", p.loc, hint="names are dotted identifiers")
        node = root
        for i, s in enumerate(segs[:-1]):
            if s in node.leaves:
                raise _clash(".".join(segs[: i + 1]), p)
            node = node.children.setdefault(s, Tree(""))
        if segs[-1] in node.children or segs[-1] in node.leaves:
            raise _clash(p.name, p)
        node.leaves[segs[-1]] = p
    for tree in _walk(root):  # numbered children in numeric order, so 0..n-1 is seen as a list
        tree.children = dict(sorted(tree.children.items(), key=lambda kv: _index_key(kv[0])))
    _assign_exprs(root)
    return root


def _index_key(seg: str) -> tuple[int, int, str]:
    return (0, int(seg), "") if seg.isdigit() and str(int(seg)) == seg else (1, 0, seg)


def _clash(name: str, p: Value) -> LoweringError:
    return LoweringError(
        f"'{name}' is both a param and a group of params, which a torch module tree cannot hold",
        p.loc,
        hint="rename the param or the layer instance",
    )


def _walk(tree: Tree) -> Iterator[Tree]:
    yield tree
    for c in tree.children.values():
        yield from _walk(c)


def _assign_exprs(tree: Tree) -> None:
    for seg, child in tree.children.items():
        if tree.is_list:
            child.expr = f"{tree.expr}[{seg}]"
        elif attribute_ok(seg):
            child.expr = f"{tree.expr}.{seg}"
        else:
            child.expr = f"{tree.expr}._modules[{py_str(seg)}]"
        _assign_exprs(child)


def leaf_expr(parent: Tree, seg: str, p: Value) -> str:
    """Python reading one param or buffer."""
    if attribute_ok(seg):
        return f"{parent.expr}.{seg}"
    table = "_parameters" if p.kind == "param" else "_buffers"
    return f"{parent.expr}.{table}[{py_str(seg)}]"


def param_exprs(tree: Tree) -> dict[Value, str]:
    out: dict[Value, str] = {}
    for t in _walk(tree):
        for seg, p in t.leaves.items():
            out[p] = leaf_expr(t, seg, p)
    return out


# -- __init__ ---------------------------------------------------------------------------


def _constructor(tree: Tree) -> str:
    if not tree.is_list:
        return "torch.nn.Module()"
    kids = [_constructor(c) for c in tree.children.values()]
    if all(k == "torch.nn.Module()" for k in kids):
        return f"torch.nn.ModuleList([torch.nn.Module() for _ in range({len(kids)})])"
    return f"torch.nn.ModuleList([{', '.join(kids)}])"


def _attach(parent: Tree, seg: str, value: str, kind: str) -> list[str]:
    """The statement(s) registering ``value`` as ``seg`` under ``parent``; kind: module|param|buffer."""
    method = {"module": "add_module", "param": "register_parameter", "buffer": "register_buffer"}[kind]
    table = {"module": "_modules", "param": "_parameters", "buffer": "_buffers"}[kind]
    if attribute_ok(seg) and kind != "buffer":
        return [f"{parent.expr}.{seg} = {value}"]
    if register_ok(seg):
        return [f"{parent.expr}.{method}({py_str(seg)}, {value})"]
    # register_* refuses names that are nn.Module attributes (train, __init__, ...);
    # torch's own table is what state_dict() and .to() read, so it is filled directly.
    why = f"# {py_str(seg)} is an nn.Module attribute name: it goes in torch's table directly"
    return [why, f"{parent.expr}.{table}[{py_str(seg)}] = {value}"]


def _tuple_src(items: list[str]) -> str:
    return f"({items[0]},)" if len(items) == 1 else "(" + ", ".join(items) + ")"


def _init_call(p: Value) -> str:
    if not p.type.is_static:
        raise LoweringError(
            f"param '{p.name}' has a symbolic shape {p.type}", p.loc, hint="param shapes must be known at compile time"
        )
    init = p.init or Init("zeros")
    args = "{" + ", ".join(f"{py_str(k)}: {py_num(v)}" for k, v in init.args) + "}"
    shape = _tuple_src([str(n) for n in p.type.static_shape()])
    dtype = "bfloat16" if p.type.dtype is DType.bf16 else np.dtype(p.type.dtype.numpy).name
    return f"_initial({py_str(p.name)}, {shape}, {py_str(dtype)}, {py_str(init.kind)}, {args}, seed)"


def _stored(p: Value) -> str:
    """One param's tensor from the checked weights ``w`` read in ``__init__``."""
    if p.type.dtype is DType.bf16:  # read as its 16-bit patterns: torch reinterprets them
        return f"torch.from_numpy(w[{py_str(p.name)}].view(np.int16)).view(torch.bfloat16)"
    return f"torch.from_numpy(w[{py_str(p.name)}])"


def init_body(graph: Graph, root: Tree, weights: str | None = None) -> list[str]:
    """Statements of ``__init__`` after ``super().__init__()``, in declaration order.

    Each sub-module is made just before its first param; a ModuleList makes its
    numbered children itself. With ``weights`` the values come from that file, read
    and checked first; without, from the seeded init.
    """
    lines: list[str] = []
    if weights is not None and graph.params:
        lines += read_weights(graph.params)
    made: set[int] = {id(root)}

    def mark(tree: Tree) -> None:
        made.add(id(tree))
        if tree.is_list:
            for c in tree.children.values():
                mark(c)

    for p in graph.params:
        *path, leaf = p.name.split(".")
        node = root
        for seg in path:
            child = node.children[seg]
            if id(child) not in made:
                lines += _attach(node, seg, _constructor(child), "module")
                mark(child)
            node = child
        value = _init_call(p) if weights is None else _stored(p)
        if p.kind == "param":
            grad = "" if p.type.dtype.is_float else ", requires_grad=False"
            value = f"torch.nn.Parameter({value}{grad})"
        stmts = _attach(node, leaf, value, "param" if p.kind == "param" else "buffer")
        stmts[-1] += loc_comment(p.loc)
        lines += stmts
    return lines


# -- forward ------------------------------------------------------------------------------


def all_nodes(graph: Graph) -> Iterator[Node]:
    """The graph's nodes and, after each scan node, its body's nodes (recursively)."""
    for node in graph.nodes:
        yield node
        if node.body is not None:
            yield from all_nodes(node.body)


def _symbols_used(graph: Graph) -> list[str]:
    """Symbols appearing in node attributes (e.g. reshape to [B, -1]), in a stable order."""
    seen: dict[str, None] = {}

    def scan(v: Any) -> None:
        if isinstance(v, Dim):
            for s in sorted(v.symbols):
                seen.setdefault(s, None)
        elif isinstance(v, (list, tuple)):
            for x in v:
                scan(x)

    for node in all_nodes(graph):
        for v in node.attrs.values():
            scan(v)
    return list(seen)


def _text(s: str) -> str:
    """User text made safe for a comment (no line breaks can get through)."""
    return s.encode("unicode_escape").decode("ascii")


@dataclass
class Rendered:
    source: str
    class_name: str


@dataclass
class Scope:
    """What writing statements needs: identifiers so far, symbol sizes, where constants go."""

    ns: Namespace
    names: dict[Value, str]
    sym_names: dict[str, str]
    device: str | None
    literals: dict[Value, str]
    # Loop counters written as Python ints (see _loop_counters), and the values computed from them.
    py_ints: set[Value] = field(default_factory=set)
    # Scan outputs kept as the Python list of their steps (step_patterns.stepped_only) -> that list's
    # name and whether the scan walked backwards; shared with the scopes of nested bodies.
    unstacked: set[Value] = field(default_factory=set)
    step_lists: dict[Value, tuple[str, bool]] = field(default_factory=dict)
    cpu_kernels: bool = False  # the module runs on the CPU only (see render)


def _bind_symbols(graph: Graph, scope: Scope, outermost: bool) -> list[str]:
    """``B = x.shape[0]`` for the symbols the graph's nodes use that its inputs bind.

    A scan body binds those only its own inputs have (hand-written IR); the model
    must bind every other one.
    """
    lines: list[str] = []
    sources = graph.symbol_sources()
    for sym in _symbols_used(graph):
        if sym in scope.sym_names:
            continue
        if sym not in sources:
            if not outermost:
                continue  # a nested body binds it, or the model's check below fails
            raise LoweringError(
                f"symbol {sym} is used in a shape but no input has it as a dim of its own",
                graph.loc,
                hint=f"declare an input with {sym} as one of its dims",
            )
        v, axis = sources[sym]
        scope.sym_names[sym] = scope.ns.name(sym, ("sym", sym))
        lines.append(f"{scope.sym_names[sym]} = {scope.names[v]}.shape[{axis}]")
    return lines


def node_lines(graph: Graph, scope: Scope) -> list[str]:
    """One statement per node of ``graph`` (a loop per scan node)."""
    lines: list[str] = []
    names = scope.names
    fused = absorbed_projections(graph)  # LSTM/GRU scans the rnn pass marked: one torch kernel each
    skipped = skipped_nodes(fused)
    lstms = trained_lstms(graph) if scope.cpu_kernels else {}  # a training step's LSTM: two oneDNN calls
    skipped |= lstm_skipped(lstms)
    pools = pools_with_grads(graph)  # forward max pools whose indices the backward reads
    indices: dict[Node, str] = {}
    norms = norms_with_grads(graph)  # forward norms whose statistics the backward reads
    stats: dict[Node, str] = {}
    batch_stats = batch_statistics(graph)  # batch norms whose kernel gives the running update's mean and var
    squeezable = squeezed_reads(graph)  # step reads whose squeezes can take the list's step as it is
    aliases: set[Node] = set()
    for node in graph.nodes:
        if node.outputs[0] in scope.literals or node in skipped:
            continue  # written where it is used, as a number; or a projection a fused scan computes
        if node in aliases:  # a squeeze of a step read that left the step as it is; a batch statistic
            names.setdefault(node.outputs[0], names[node.inputs[0]])
            continue
        if node in fused:
            lines += fused_scan_lines(node, fused[node], scope)
            continue
        if node in lstms:
            pair = lstms[node]
            lines += forward_lines(pair, scope) if node is pair.forward else backward_lines(pair, scope)
            continue
        if node.op == "scan":
            lines += scan_lines(node, scope)
            continue
        sym_names = scope.sym_names
        dim = lambda d, syms=sym_names: dim_expr(d, syms)  # noqa: E731 (bound now: B023)
        site = Site(node, [names[v] for v in node.inputs], dim, scope.device)
        outs = [scope.ns.name(v.name, v) for v in node.outputs]
        if node in pools:  # a forward max pool that keeps its indices for its backward
            geometry = shared_pool_geometry(site)
            assert geometry is not None
            indices[pools[node]] = scope.ns.name(f"{node.outputs[0].name}_indices")
            rhs = pool_with_indices(site.x, *geometry)
            outs.append(indices[pools[node]])
        elif node in indices:
            rhs = max_pool2d_grad(site, indices[node])
        elif node in norms or node in batch_stats:
            # a forward norm that keeps its statistics for its backward, or whose kernel's running
            # buffers take the batch's mean and variance for the running update
            kept = [scope.ns.name(f"{node.outputs[0].name}_{part}") for part in ("mean", "rstd")]
            if node in norms:
                stats[norms[node]] = ", ".join(kept)
            if node.op == "layer_norm":
                rhs = layer_norm_keeping_stats(site)
            else:
                running = None
                if node in batch_stats:
                    mean, var = (n.outputs[0] for n in batch_stats[node])
                    running = (scope.ns.name(mean.name, mean), scope.ns.name(var.name, var))
                    names.update({mean: running[0], var: running[1]})
                    aliases.update(batch_stats[node])
                    zeros = f"{site.x}.new_zeros({site.dim(node.inputs[0].type.shape[1])})"
                    lines.append(f"{running[0]}, {running[1]} = {zeros}, {zeros}{loc_comment(node.loc)}")
                rhs = batch_norm_train_keeping_stats(site, running)
            outs += kept
        elif node in stats:
            grad = batch_norm_train_grad if node.op == "batch_norm_train_grad" else layer_norm_grad
            rhs = grad(site, stats[node])
        elif node.op == "gather" and node.inputs[0] in scope.step_lists and node.inputs[1] in scope.py_ints:
            # step t of a forward scan's saved steps, read from the list it collected
            steps, reverse = scope.step_lists[node.inputs[0]]
            at = f"-1 - {site.args[1]}" if reverse else site.args[1]
            rhs = f"{steps}[{at}]"
            if node in squeezable:
                aliases.update(squeezable[node])
            else:
                rhs += f".unsqueeze({node.attrs['axis'] % node.inputs[0].type.rank})"
        elif node.op == "gather" and node.inputs[1] in scope.py_ints:
            # a backward scan reading step t of a saved stack: a view, not an indexing copy
            rhs = f"{site.x}.narrow({node.attrs['axis'] % node.inputs[0].type.rank}, {site.args[1]}, 1)"
        else:
            emitter = EMITTERS.get(node.op)
            if emitter is None:
                raise LoweringError(
                    f"the torch target has no lowering for op '{node.op}'",
                    node.loc,
                    hint=did_you_mean(node.op, EMITTERS) or "see `dlirc ops` for what each target supports",
                )
            rhs = emitter(site)
        # (a pool's indices and a norm's statistics follow the node's own results in outs)
        names.update(zip(node.outputs, outs[: len(node.outputs)], strict=True))
        # split returns a tuple even for one piece
        target = ", ".join(outs) if len(outs) > 1 or node.op != "split" else f"({outs[0]},)"
        lines.append(f"{target} = {rhs}{loc_comment(node.loc)}")
    return lines


def scan_lines(node: Node, scope: Scope) -> list[str]:
    """A scan node as a Python loop over the slices of xs, its body's statements inside.

    Each emit is collected in a list and stacked along the scan axis after the
    loop; a reversed walk reverses its list first, so ys[t] comes from x_t.
    """
    body = node.body
    assert body is not None, "a scan node owns its body"
    axis, k, reverse = node.attrs["axis"], node.attrs["n_carry"], node.attrs["reverse"]
    ns, names = scope.ns, scope.names
    xs, inits = names[node.inputs[0]], [names[v] for v in node.inputs[1:]]
    x_t, *carries = (ns.name(v.name, v) for v in body.inputs)
    names.update(zip(body.inputs, [x_t, *carries], strict=True))
    n_emit = len(body.outputs) - k
    ys = [ns.name(v.name, v) for v in node.outputs[:n_emit]]
    steps = [ns.name(f"{y}_steps") for y in ys]
    counters = loop_counters(node)
    inits = [str(counters[j]) if j in counters else init for j, init in enumerate(inits)]
    lines = [f"{', '.join(carries)} = {', '.join(inits)}"] if k else []
    lines += [f"{acc} = []" for acc in steps]
    slices = f"{xs}.unbind({axis})"
    lines.append(f"for {x_t} in {f'reversed({slices})' if reverse else slices}:")
    inner = Scope(
        ns, names, dict(scope.sym_names), scope.device, scope.literals, set(), scope.unstacked, scope.step_lists
    )
    for j in counters:
        inner.py_ints.add(body.inputs[1 + j])
        inner.py_ints.add(body.outputs[j][1])
    loop = _bind_symbols(body, inner, outermost=False) + node_lines(body, inner)
    results = [names[v] for _, v in body.outputs]
    loop += [f"{acc}.append({e})" for acc, e in zip(steps, results[k:], strict=True)]
    changed = [(h, new) for h, new in zip(carries, results[:k], strict=True) if h != new]
    if changed:
        loop.append(f"{', '.join(h for h, _ in changed)} = {', '.join(new for _, new in changed)}")
    lines[-1] += loc_comment(node.loc)
    lines += ["    " + line for line in loop or ["pass"]]
    for v, y, acc in zip(node.outputs, ys, steps, strict=False):
        if v in scope.unstacked:
            scope.step_lists[v] = (acc, reverse)
        else:
            lines.append(f"{y} = torch.stack({acc + '[::-1]' if reverse else acc}, dim={axis})")
    for j, (v, h) in enumerate(zip(node.outputs[n_emit:], carries, strict=True)):
        # a counter's last value goes back to being the tensor its type says
        last = f"torch.tensor([{h}], device={scope.device})" if j in counters and scope.device else h
        lines.append(f"{ns.name(v.name, v)} = {last}")
    names.update((v, ns.name(v.name, v)) for v in node.outputs)
    return lines


def forward_body(graph: Graph, ns: Namespace, names: dict[Value, str], cpu_kernels: bool = False) -> list[str]:
    """Statements of ``forward``: symbol sizes, one line per node, the return."""
    literals = _inline_constants(graph)
    names.update(literals)
    device = _device_expr(graph, names)
    scope = Scope(ns, names, {}, device, literals, unstacked=stepped_only(graph), cpu_kernels=cpu_kernels)
    lines = _bind_symbols(graph, scope, outermost=True)
    lines += node_lines(graph, scope)
    results = [names[v] for _, v in graph.outputs]
    what = "  # " + ", ".join(_text(n) for n, _ in graph.outputs) if results != graph.output_names() else ""
    lines.append("return " + (", ".join(results) if results else "()") + what)
    return lines


def _pinned(graph: Graph) -> set[int]:
    """Values that must stay tensors: the model's outputs and every scan body's results."""
    out = {id(v) for _, v in graph.outputs}
    for node in all_nodes(graph):
        if node.body is not None:
            out |= {id(v) for _, v in node.body.outputs}
    return out


def _inline_constants(graph: Graph) -> dict[Value, str]:
    """Scalar constants that every user can take as a plain number: ``0.5 * h``, not a tensor.

    An operand pair never gets two numbers (the result must stay a tensor), and a
    constant that is a model output or a scan body's result (a carry, an emit)
    stays a tensor. Scan bodies count: their nodes read outer constants too.
    """
    pinned = _pinned(graph)
    candidates = {
        n.outputs[0]: lit
        for n in all_nodes(graph)
        if n.op == "constant" and id(n.outputs[0]) not in pinned and (lit := scalar_literal(n)) is not None
    }
    for node in all_nodes(graph):
        for i, v in enumerate(node.inputs):
            if v not in candidates:
                continue
            others = [u for j, u in enumerate(node.inputs) if j != i]
            if not takes_scalar(node, i) or any(u in candidates for u in others):
                candidates.pop(v)  # candidates only shrink, so no pair is left with two numbers
    return candidates


def _device_expr(graph: Graph, names: dict[Value, str]) -> str | None:
    """Where new tensors (constants) go: with the inputs, or else with the params."""
    for v in list(graph.inputs) + list(graph.params):
        return f"{names[v]}.device"
    return None


def _uses_f(lines: list[str]) -> bool:
    return any(re.search(r"(?<![\w.])F\.", line) for line in lines)


def render(graph: Graph, weights: str | None = None, cpu_kernels: bool = False) -> Rendered:
    """The whole generated file and the name of its class.

    ``weights``: the name of a ``.safetensors`` file beside the generated one that the
    constructor reads (``dlirc compile --weights``) instead of making the seeded init.
    ``cpu_kernels``: the module runs on the CPU only, so it may call oneDNN's kernels that have
    no CUDA form (a training step's LSTM: :mod:`dlir.backends.torch.fused_rnn_training`).
    """
    cls = Namespace(RESERVED | FILE_GLOBALS).name(graph.name or "Model")
    tree = build_tree(graph)
    names: dict[Value, str] = param_exprs(tree)
    ns = Namespace(RESERVED | FILE_GLOBALS | {cls})
    args = [ns.name(v.name, v) for v in graph.inputs]
    names.update(zip(graph.inputs, args, strict=True))
    body = with_frees(forward_body(graph, ns, names, cpu_kernels), keep=frozenset(args))
    init = init_body(graph, tree, weights)
    n_out = len(graph.outputs)
    ret = "torch.Tensor" if n_out == 1 else "tuple[" + (", ".join(["torch.Tensor"] * n_out) or "()") + "]"
    sig = ", ".join(["self"] + [f"{a}: torch.Tensor" for a in args])
    out = [
        f"# Generated by dlir from model {_text(graph.name)}. Do not edit: change the .dlir source and recompile.",
        "#   inputs:  " + (", ".join(_text(f"{v.name}: {v.type}") for v in graph.inputs) or "none"),
        "#   outputs: " + (", ".join(_text(f"{n}: {v.type}") for n, v in graph.outputs) or "none"),
        "",
        "import torch",
    ]
    if _uses_f(body):
        out.append("import torch.nn.functional as F")
    at = out.index("import torch")
    if weights is not None:
        # The weights file beside this one, read with numpy: the file needs torch and numpy, not dlir.
        out[at:at] = ["import json", "import math", "import os", "", "import numpy as np"]
        out += ["", "", *weights_reader(weights)]
        doc = "the weights are read from WEIGHTS_FILE (or the .safetensors file given)"
        sig_init = "def __init__(self, weights: str = WEIGHTS_FILE) -> None:"
    else:
        doc = "the weights start as the seeded dlir init"
        sig_init = "def __init__(self, seed: int = 0) -> None:"
        if graph.params:
            # The seeded init, written out: the file needs torch and numpy, not dlir.
            out[at:at] = ["import math", "import zlib", "from typing import Any", "", "import numpy as np"]
            out += ["", "", standalone_source().rstrip("\n")]
            out.append(INITIAL_HELPER.rstrip("\n"))
    out += [
        "",
        "",
        f"class {cls}(torch.nn.Module):",
        f'    """state_dict() keys are the dotted dlir names; {doc}."""',
        "",
        f"    {sig_init}",
        "        super().__init__()",
    ]
    out += ["        " + line for line in init]
    out += ["", f"    def forward({sig}) -> {ret}:"]
    out += ["        " + line for line in body]
    return Rendered("\n".join(out) + "\n", cls)


def generate(graph: Graph, weights: str | None = None) -> bytes:
    """The torch file for ``graph``, as UTF-8 bytes (reading ``weights`` beside it, if given)."""
    return render(graph, weights).source.encode("utf-8")
