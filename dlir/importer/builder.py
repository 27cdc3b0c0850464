"""The importer's graph builder: ONNX values as IR values or import-time arrays, and folding.

A handler (``onnx_ops``, ``onnx_composite``) gets the node's inputs as :class:`Value`
(run-time tensors), numpy arrays (known at import time; ``object`` arrays hold
symbolic dims, e.g. the ``Shape`` of a ``[B, 16, 5, 5]`` tensor) or None (omitted
optional inputs), and returns its outputs in the same forms. :meth:`Builder.op`
folds a dlir op whose inputs are all known with the op's numpy reference, so shape
arithmetic never reaches the IR.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dlir.errors import DlirError, SourceLoc
from dlir.importer.dim_unify import DimKey, DimUnion, MergeDims, pinned_symbol, required_equal, symbol_pair
from dlir.importer.onnx_import import ImportError_, ident, tensor_value, value_type
from dlir.ir.builder import emit
from dlir.ir.graph import Graph, Init, Value, body_reads
from dlir.ir.types import Dim, DType, TensorType
from dlir.ops.registry import check_attrs, get_op
from dlir.passes.rewrite import removable  # the importer sits above the passes

Operand = Any  # Value | np.ndarray | None
SMALL_CONST = 64  # known tensors up to this many elements become `constant` nodes; bigger ones buffers
END = 2**63 - 1


def node_inputs(n: Any) -> list[str]:
    """A node's inputs, with the outer names its subgraphs (Scan bodies) read."""
    out = list(n.input)
    for a in n.attribute:
        if a.HasField("g"):
            out += sorted(free_names(a.g))
    return out


def free_names(g: Any) -> set[str]:
    defined = {i.name for i in g.input} | {t.name for t in g.initializer}
    free: set[str] = set()
    for n in g.node:
        free |= {i for i in node_inputs(n) if i and i not in defined}
        defined |= set(n.output)
    return free | ({o.name for o in g.output} - defined)


def supported(n: Any) -> bool:
    """Whether the importer has a handler for node ``n`` itself (its subgraphs not looked at)."""
    return n.domain in ("", "ai.onnx") and n.op_type in HANDLERS


def all_nodes_of(n: Any) -> list[Any]:
    """``n`` and every node of its subgraphs."""
    out = [n]
    for a in n.attribute:
        if a.HasField("g"):
            out += all_nodes(a.g)
    return out


def all_nodes(g: Any) -> list[Any]:
    out = []
    for n in g.node:
        out.append(n)
        for a in n.attribute:
            if a.HasField("g"):
                out += all_nodes(a.g)
    return out


# -- import-time records of symbolic dims (tf2onnx's ``0 < T`` and ``[T] * B``; read by onnx_loop) --


@dataclass(frozen=True)
class DimCompare:
    """A comparison of symbolic dims known at import: true exactly when ``gap >= 1``."""

    gap: Dim


@dataclass(frozen=True)
class DimFill:
    """A tensor of symbolic ``shape`` whose every element is the dim ``value`` (``Expand`` of a dim)."""

    value: Dim
    shape: tuple[Dim, ...]


def symbolic_record(x: Any) -> np.ndarray:
    """``x`` (a Dim or a record above) as a 0-d object array, the form known values take."""
    out = np.empty((), dtype=object)
    out[()] = x
    return out


# dlir's comparisons as ``lhs < rhs`` (operands swapped for greater*) and whether strict
_COMPARISONS = {
    "less": (False, True),
    "greater": (True, True),
    "less_equal": (False, False),
    "greater_equal": (True, False),
}


class NeedsConstant(ImportError_):
    """A graph input is used where dlir needs a value known at import (axes, shapes, pads)."""

    onnx_name: str = ""


class Builder:
    """Builds one dlir graph from an ONNX GraphProto."""

    def __init__(
        self,
        graph: Graph,
        opset: int,
        path: str,
        constants: dict[str, np.ndarray] | None = None,
        dims: DimUnion | None = None,
    ) -> None:
        self.constants = constants or {}
        self.dim_union = dims or DimUnion()  # input dims unified so far (tf2onnx's unk__N that must be equal)
        self.sym_keys: dict[str, DimKey] = {}  # dlir symbol of an input dim -> its ONNX dim key
        self.root: Builder = self
        self.graph = graph
        self.opset = opset
        self.path = path
        self.params: dict[str, np.ndarray] = {}
        self.env: dict[str, Operand] = {}
        self.used: set[str] = set()
        self.node_name = ""
        self._materialized: dict[int, tuple[np.ndarray, Value]] = {}
        self.consumed: set[str] = set()
        self.input_names: dict[str, str] = {}  # ONNX input name -> dlir input name
        self.const_names: dict[int, tuple[np.ndarray, str]] = {}
        self.opsets: dict[str, int] = {"": opset}  # domain -> opset version ("" is ai.onnx), set by from_onnx

    # -- errors ---------------------------------------------------------------
    def error(self, msg: str, hint: str | None = None) -> ImportError_:
        where = f"node '{self.node_name}': " if self.node_name else ""
        return ImportError_(where + msg, SourceLoc(self.path, 0, 0), hint=hint)

    # -- the graph ------------------------------------------------------------
    def build(self, g: Any) -> None:
        symbols: dict[DimKey, str] = {}
        self.consumed = {i for n in all_nodes(g) for i in n.input} | {o.name for o in g.output}
        inits = {t.name: t for t in g.initializer}
        for t in g.initializer:
            a = tensor_value(t, self.path)
            self.env[t.name] = a
            self._param(t.name, a)
        for name, a in self.constants.items():
            self.env[name] = np.asarray(a)
        for vi in g.input:
            if vi.name in self.constants:
                continue
            if vi.name in inits or vi.name not in self.consumed:
                continue  # old exporters list initializers as inputs too; unused inputs are dropped
            t = value_type(vi, self.path, symbols, self.dim_union)
            self.env[vi.name] = self.graph.add_input(ident(vi.name, self.used), t)
            self.input_names[vi.name] = self.env[vi.name].name
        self.sym_keys = {name: key for key, name in symbols.items()}
        self._build_nodes(self._toposort(g))
        self.node_name = ""
        for vo in g.output:
            if vo.name not in self.env:
                raise self.error(f"graph output '{vo.name}' is produced by no node", "the file is inconsistent")
            v = self.tensor(self.env[vo.name])
            self.graph.outputs.append((ident(vo.name, set(self.graph.output_names()) | RESERVED_OUT), v))
        self._drop_dead_nodes()
        self._prune_params()

    def child(self, body: Graph) -> Builder:
        """A builder for a body graph: it sees this graph's values (closure); its params go to the root graph."""
        c = Builder(body, self.opset, self.path)
        c.root = self.root
        c.env = dict(self.env)
        c.params, c.used, c.consumed = self.params, self.used, self.consumed
        c.const_names, c.input_names = self.const_names, self.input_names
        c._materialized = self._materialized
        return c

    def _param(self, name: str, a: np.ndarray) -> Value:
        if self.root is not self:
            return self.root._param(name, a)
        dt = DType.from_numpy(a.dtype)
        assert dt is not None
        pname = ident(name, self.used)
        kind_buffer = not dt.is_float
        v = self.graph.add_param(pname, TensorType.make(dt, a.shape), Init("zeros"), buffer=kind_buffer)
        self.params[pname] = a
        self._materialized[id(a)] = (a, v)
        return v

    def _drop_dead_nodes(self) -> None:
        """Nodes no output needs (a zero state that the LSTM handler made afresh) are not kept.

        Whole nodes only: a scan keeps all its results, so a second import of the same file
        numbers its values the same way.
        """
        live = {v for _, v in self.graph.outputs}
        kept = []
        for node in reversed(self.graph.nodes):
            if not any(v in live for v in node.outputs) and node.body is None and removable(node):
                continue
            kept.append(node)
            live.update(node.inputs)
            if node.body is not None:
                live.update(body_reads(node.body))
        self.graph.nodes = kept[::-1]

    def _prune_params(self) -> None:
        """Initializers only used at import time (shapes, axes) are not params."""
        used: set[int] = set()

        def visit(g: Graph) -> None:
            used.update(id(v) for _, v in g.outputs)
            for n in g.nodes:
                used.update(id(v) for v in n.inputs)
                if n.body is not None:
                    visit(n.body)

        visit(self.graph)
        keep = [p for p in self.graph.params if id(p) in used]
        for p in self.graph.params:
            if id(p) not in used:
                self.params.pop(p.name, None)
        self.graph.params = keep

    def _toposort(self, g: Any) -> list[Any]:
        known = set(self.env) | {""}
        produced: dict[str, Any] = {}
        for n in g.node:
            for o in n.output:
                if o and (o in produced or o in known):
                    raise self.error(
                        f"value '{o}' is defined twice (by node '{n.name or n.op_type}')", "the file is inconsistent"
                    )
                if o:
                    produced[o] = n
        for n in g.node:
            for i in node_inputs(n):
                if i not in known and i not in produced:
                    raise self.error(
                        f"node '{n.name or n.op_type}' reads '{i}', which nothing defines",
                        "a dangling name: the file is inconsistent",
                    )
        order: list[Any] = []
        pending = list(g.node)
        while pending:  # file order when the file is sorted (one pass), else as sorted as it can be
            rest = []
            for n in pending:
                if all(i in known for i in node_inputs(n)):
                    order.append(n)
                    known.update(o for o in n.output if o)
                else:
                    rest.append(n)
            if len(rest) == len(pending):
                names = ", ".join(f"'{n.name or n.op_type}'" for n in rest[:8])
                raise self.error(f"the graph has a cycle through nodes {names}", "ONNX graphs must be acyclic")
            pending = rest
        return order

    def _toposort_body(self, g: Any) -> list[Any]:
        saved = self.env
        try:
            self.env = {**self.env, **{vi.name: None for vi in g.input}}
            return self._toposort(g)
        finally:
            self.env = saved

    def _build_nodes(self, order: list[Any]) -> None:
        """Every node in order; one without a handler is folded when its inputs are known, else refused.

        The refusal comes after the whole graph, listing every node dlir cannot import
        (those downstream of a refused node too, when their own op is missing).
        """
        from dlir.importer.unsupported import fold_with_reference, is_known, unsupported_error

        missing: list[tuple[Any, list[Operand]]] = []
        blocked: set[str] = set()  # values computed from a refused node
        for n in order:
            lacking = [m for m in all_nodes_of(n) if not supported(m)]
            if any(i in blocked for i in node_inputs(n)):
                missing += [(m, []) for m in lacking]
                blocked.update(n.output)
                continue
            ins = [self.env[i] if i else None for i in n.input]
            if not lacking:
                try:
                    self._node(n)
                    continue
                except NeedsConstant:
                    raise
                except ImportError_:
                    # A handler that refuses an attribute still folds on constants (ONNX's reference).
                    folded = fold_with_reference(n, ins, self.root.opsets)
                    if folded is None or not all(is_known(x) or x is None for x in ins):
                        raise
                    self._bind_folded(n, folded)
                    continue
            folded = fold_with_reference(n, ins, self.root.opsets) if lacking == [n] else None
            if folded is None:
                missing += [(m, ins if m is n else []) for m in lacking]
                blocked.update(n.output)
                continue
            self._bind_folded(n, folded)
        if missing:
            raise unsupported_error(self.path, missing, self.root.opsets)

    def _bind_folded(self, n: Any, outs: list[np.ndarray]) -> None:
        for name, v in zip(n.output, outs, strict=False):
            if name:
                self.env[name] = v
                self.const_names[id(v)] = (v, name)

    def _node(self, n: Any) -> None:
        from onnx import helper

        self.node_name = n.name or f"{n.op_type}#{len(self.graph.nodes)}"
        ins = [self.env[i] if i else None for i in n.input]
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        self.out_names = [o if o in self.consumed else "" for o in n.output]
        self.node_op = n.op_type
        start = len(self.graph.nodes)
        try:
            outs = HANDLERS[n.op_type](self, ins, attrs)
        except ImportError_:
            raise
        except DlirError as e:
            raise self.error(f"{n.op_type}: {e.message}", e.hint) from None
        except (ValueError, TypeError, KeyError, IndexError, ZeroDivisionError, OverflowError) as e:
            # Malformed attributes (a missing kernel_shape, a string where ints belong) end here.
            raise self.error(
                f"{n.op_type}: cannot import this node ({type(e).__name__}: {e})",
                "the node's attributes or inputs do not match the ONNX spec",
            ) from None
        if not isinstance(outs, list):
            outs = [outs]
        for name, v in zip(self.out_names, outs, strict=False):  # an ONNX node may name fewer outputs than it has
            if name:
                if v is None:
                    raise self.error(f"{n.op_type}: output '{name}' is not supported (only the first outputs are)")
                fresh = any(v.producer is m for m in self.graph.nodes[start:]) if isinstance(v, Value) else False
                if fresh and v.producer is not None and len(v.producer.outputs) == 1:
                    self.graph.rename(v, ident(name, set()).replace("__", "_"))
                self.env[name] = v
                if isinstance(v, np.ndarray):
                    self.const_names[id(v)] = (v, name)
        for name in self.out_names[len(outs) :]:
            if name:
                raise self.error(f"{n.op_type}: output '{name}' is not supported")

    # -- operands -------------------------------------------------------------
    def tensor(self, x: Operand) -> Value:
        """``x`` as an IR value: known arrays become constants (small) or buffers."""
        if isinstance(x, Value):
            return x
        a = np.asarray(x)
        if a.dtype == object:
            raise self.error(
                "a shape with symbolic dims is used as a tensor; dlir keeps shapes static",
                "export the model with static shapes",
            )
        if id(x) in self._materialized:
            return self._materialized[id(x)][1]
        dt = DType.from_numpy(a.dtype)
        if dt is None:
            raise self.error(f"a constant of numpy dtype {a.dtype} has no dlir dtype")
        if a.size <= SMALL_CONST and dt is not DType.bf16:
            v = emit(self.graph, "constant", [], {"value": a.tolist(), "dtype": dt})[0]
        else:
            v = self._param(self.const_names[id(x)][1] if id(x) in self.const_names else f"const_{len(self.params)}", a)
        self._materialized[id(x)] = (x, v)
        return v

    def known(self, x: Operand, what: str) -> np.ndarray:
        if isinstance(x, Value) and x.kind == "input":
            onnx_name = next(k for k, v in self.input_names.items() if v == x.name)
            e = NeedsConstant(
                f"node '{self.node_name}': {what} is the graph input '{onnx_name}', "
                "but must be known when the model is imported",
                SourceLoc(self.path, 0, 0),
                hint="dlir's shapes and axes are compile-time attributes: make it an initializer",
            )
            e.onnx_name = onnx_name
            raise e
        if isinstance(x, Value) or x is None:
            raise self.error(
                f"{what} must be known when the model is imported (a constant or initializer)",
                "dlir's shapes and axes are compile-time attributes",
            )
        return np.asarray(x)

    def ints(self, x: Operand, what: str) -> list[int]:
        out = []
        for v in self.known(x, what).reshape(-1):
            if isinstance(v, Dim):
                if not v.is_static:
                    raise self.error(
                        f"{what} holds the symbolic dim {v}, but must be a number",
                        "export the model with static shapes",
                    )
                v = v.value
            out.append(int(v))
        return out

    def dims(self, x: Operand, what: str) -> list[Any]:
        """A shape vector: ints and symbolic dims (``Shape`` of a tensor with named dims)."""
        return [
            (v.value if v.is_static else v) if isinstance(v, Dim) else int(v) for v in self.known(x, what).reshape(-1)
        ]

    def type_of(self, x: Operand) -> TensorType:
        if isinstance(x, Value):
            return x.type
        a = np.asarray(x)
        dt = DType.i64 if a.dtype == object else DType.from_numpy(a.dtype)
        if dt is None:
            raise self.error(f"numpy dtype {a.dtype} has no dlir dtype")
        return TensorType.make(dt, a.shape)

    def shape(self, x: Operand) -> tuple[Dim, ...]:
        return self.type_of(x).shape

    def rank(self, x: Operand) -> int:
        return self.type_of(x).rank

    def op(self, name: str, inputs: list[Operand], **attrs: Any) -> Any:
        """``name(inputs) {attrs}``: folded when every input is known, else emitted."""
        if inputs and all(isinstance(x, np.ndarray) for x in inputs) and any(x.dtype == object for x in inputs):
            return self._sym_fold(name, inputs, attrs)
        if inputs and all(isinstance(x, np.ndarray) for x in inputs) and not _symbolic(attrs):
            opdef = get_op(name)
            full = check_attrs(opdef, attrs)
            types = [self.type_of(x) for x in inputs]
            if opdef.canonical is not None:
                full = opdef.canonical(types, full)
            opdef.infer(types, full)  # the shape rule's errors, even when folding
            outs: list[Any] = [np.asarray(o) for o in opdef.ref([np.asarray(x) for x in inputs], full)]
            outs = [o.astype(t.dtype.numpy) for o, t in zip(outs, opdef.infer(types, full), strict=True)]
            return outs[0] if len(outs) == 1 else outs
        vals = [self.tensor(x) for x in inputs]
        try:
            outs = emit(self.graph, name, vals, attrs)
        except DlirError as e:
            self._merge_dims(e, name, vals, attrs)
            raise
        return outs[0] if len(outs) == 1 else outs

    def _merge_dims(self, e: DlirError, name: str, vals: list[Value], attrs: dict[str, Any]) -> None:
        """Raise MergeDims when the refused op needs two different input symbols equal; ``from_onnx`` retries.

        An input symbol that must equal a static size is not fixed to it: ``e`` gets a hint saying so.
        """
        keys = self.root.sym_keys
        try:
            need = required_equal(name, [v.type for v in vals], attrs)
        except (KeyError, TypeError, ValueError, IndexError):
            return  # attributes the shape rule refused anyway: its error is the one to report
        pairs = []
        for a, b in need:
            syms = symbol_pair(a, b)
            if syms is not None and syms[0] in keys and syms[1] in keys:
                pairs.append((keys[syms[0]], keys[syms[1]]))
        if pairs:
            raise MergeDims(pairs)
        pinned = pinned_symbol(need, set(keys))
        if pinned is not None:
            sym, size = pinned
            e.hint = (
                f"the input dim {sym} must be {size} here; dlir makes unknown input dims that must be equal one "
                f"symbol, but does not fix one to a size: export the model with that dim static"
            )

    def _sym_fold(self, name: str, inputs: list[np.ndarray], attrs: dict[str, Any]) -> Any:
        """Shape arithmetic on vectors holding symbolic dims (``Shape`` of a ``[B, 16, 5, 5]`` tensor)."""
        if name in _COMPARISONS:
            return self._sym_compare(name, inputs)
        if name == "logical_and":
            return self._sym_and(inputs)
        if name == "broadcast_to" and inputs[0].size == 1 and isinstance(inputs[0].reshape(-1)[0], Dim):
            if any(isinstance(d, Dim) for d in attrs["shape"]):  # tf2onnx's ``[T] * B`` lengths stay a record
                return symbolic_record(DimFill(inputs[0].reshape(-1)[0], tuple(Dim.of(d) for d in attrs["shape"])))
        xs = [_as_dims(x) for x in inputs]
        if name in ("add", "sub", "mul", "div"):
            f = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b, "div": _dim_div}[name]
            out = np.frompyfunc(f, 2, 1)(xs[0], xs[1])
        elif name == "cast":
            out = xs[0]
        elif name in (
            "gather",
            "slice",
            "concat",
            "unsqueeze",
            "squeeze",
            "reshape",
            "flatten",
            "transpose",
            "prod",
            "broadcast_to",
        ):
            opdef = get_op(name)
            full = check_attrs(opdef, attrs)
            if opdef.canonical is not None:
                full = opdef.canonical([TensorType.make(DType.i64, x.shape) for x in inputs], full)
            if name == "gather":
                out = np.take(xs[0], np.asarray(inputs[1]).astype(np.int64), axis=full["axis"])
            else:
                out = opdef.ref(xs, full)[0]
        else:
            raise self.error(
                f"{name} on a shape with symbolic dims cannot be folded at import",
                "export the model with static shapes",
            )
        out = np.asarray(out, dtype=object)
        if all(isinstance(d, Dim) and d.is_static for d in out.reshape(-1)):
            return np.array([d.value for d in out.reshape(-1)], np.int64).reshape(out.shape)
        return out

    def _sym_compare(self, name: str, inputs: list[np.ndarray]) -> np.ndarray:
        """A comparison of symbolic dims: decided where the gap is a number, else a :class:`DimCompare`."""
        swap, strict = _COMPARISONS[name]
        lhs, rhs = np.broadcast_arrays(*inputs)
        if swap:
            lhs, rhs = rhs, lhs
        out = np.empty(lhs.shape, dtype=object)
        for i in np.ndindex(lhs.shape):
            gap = self.as_dim(rhs[i]) - self.as_dim(lhs[i]) + (0 if strict else 1)  # lhs < rhs  <=>  gap >= 1
            out[i] = bool(gap.value >= 1) if gap.is_static else DimCompare(gap)
        if all(isinstance(v, bool) for v in out.reshape(-1)):
            return out.astype(bool)
        return out

    def _sym_and(self, inputs: list[np.ndarray]) -> np.ndarray:
        """``a and b`` of decided comparisons (bools) and :class:`DimCompare` records (Keras' ``0 < T and 0 < M``)."""
        lhs, rhs = np.broadcast_arrays(*inputs)
        out = np.empty(lhs.shape, dtype=object)
        for i in np.ndindex(lhs.shape):
            x, y = lhs[i], rhs[i]
            if isinstance(x, (bool, np.bool_)):
                out[i] = y if x else False
            elif isinstance(y, (bool, np.bool_)):
                out[i] = x if y else False
            elif x == y:
                out[i] = x
            else:
                raise self.error(
                    f"And of two different comparisons of symbolic dims ({x}, {y}) cannot be decided at import",
                    "export the model with static shapes",
                )
        if all(isinstance(v, (bool, np.bool_)) for v in out.reshape(-1)):
            return out.astype(bool)
        return out

    def as_dim(self, v: Any) -> Dim:
        """A known scalar as a dim: a Dim as it is, a whole number (int or float) as a static one."""
        if isinstance(v, Dim):
            return v
        if isinstance(v, (bool, np.bool_)) or not float(v).is_integer():
            raise self.error(f"cannot compare the symbolic dim with the non-integer {v!r} at import")
        return Dim.of(int(v))


def _symbolic(v: Any) -> bool:
    """Whether an attribute value holds a symbolic dim (then the op runs, it is not folded)."""
    if isinstance(v, Dim):
        return not v.is_static
    if isinstance(v, dict):
        return any(_symbolic(x) for x in v.values())
    if isinstance(v, (list, tuple)):
        return any(_symbolic(x) for x in v)
    return False


def _as_dims(x: np.ndarray) -> np.ndarray:
    out = np.empty(x.shape, dtype=object)
    for i, v in np.ndenumerate(x):
        out[i] = v if isinstance(v, Dim) else Dim.of(int(v))
    return out


def _dim_div(a: Dim, b: Dim) -> Dim:
    q = a.exact_div(b)
    if q is None:
        raise DlirError(f"cannot divide the dim {a} by {b} exactly at import")
    return q


RESERVED_OUT = {"model", "param", "return"}

Handler = Callable[[Builder, list[Operand], dict[str, Any]], Any]
HANDLERS: dict[str, Handler] = {}


def handles(*names: str) -> Callable[[Handler], Handler]:
    def deco(f: Handler) -> Handler:
        for n in names:
            HANDLERS[n] = f
        return f

    return deco
