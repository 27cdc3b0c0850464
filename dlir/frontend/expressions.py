"""Evaluating expressions while elaborating: compile-time values fold, tensors become nodes.

An expression evaluates to a tensor (an IR :class:`Value`), a compile-time value
(int, float, bool, str, list, tuple, DType, Dim), a layer instance, or a reference
to a definition or op. Number literals next to a tensor take its dtype, as in
PyTorch and NumPy's weak scalars.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any, cast

from lark import Token, Tree

from dlir.errors import DlirError, TypeError_, did_you_mean
from dlir.frontend.scope import MISSING, DefRef, Frame, Instance, OpRef
from dlir.ir.builder import emit
from dlir.ir.graph import Value
from dlir.ir.types import NAMED_DTYPES, Dim, DType
from dlir.ops.registry import REGISTRY, all_ops, describe_value, get_op
from dlir.ops.shape import END

BINARY_OPS = {"add": "add", "sub": "sub", "mul": "mul", "div": "div", "matmul": "matmul", "pow": "pow"}
COMPARE_OPS = {"<": "less", "<=": "less_equal", ">": "greater", ">=": "greater_equal", "==": "equal", "!=": "not_equal"}
_PY_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


BUILTINS = ("shape", "rank")


class Builtin:
    """A compile-time function of the language (not an op): shape, rank."""

    def __init__(self, name: str) -> None:
        self.name = name


def is_tensor(v: Any) -> bool:
    return isinstance(v, Value)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# (evaluator class, rule name) -> its `_e_<rule>` method: eval runs for every node of every
# expression, and building the method name and looking it up each time cost as much as the rest.
_HANDLERS: dict[tuple[type, str], Callable[..., Any]] = {}


class ExprMixin:
    """Expression evaluation; mixed into the Elaborator."""

    graph: Any
    defs: dict[str, DefRef]
    auto_named: set[Value]

    # provided by the Elaborator (declarations only: the two with results need empty-body ignored)
    def loc(self, node: Any) -> Any: ...
    def string(self, tok: Token) -> str: ...  # type: ignore[empty-body]
    def instantiate(self, d: DefRef, call: Tree, name: str, frame: Frame) -> Instance: ...  # type: ignore[empty-body]
    def call_instance(self, inst: Instance, args: list[Any], call: Tree, frame: Frame) -> Any: ...
    def call_fn(self, d: DefRef, args: list[Any], call: Tree, frame: Frame) -> Any: ...

    def eval(self, node: Any, frame: Frame) -> Any:
        kind = node.data
        handler = _HANDLERS.get((type(self), kind))
        if handler is None:  # the first expression of this kind: find its _e_ method once
            handler = getattr(type(self), f"_e_{kind}", None)
            if handler is None:  # pragma: no cover - every expression rule has a handler
                raise AssertionError(kind)
            _HANDLERS[(type(self), kind)] = handler
        return handler(self, node, frame)

    # -- atoms -------------------------------------------------------------------------
    def _e_int_lit(self, n: Tree, f: Frame) -> int:
        return int(cast(Token, n.children[0]))

    def _e_float_lit(self, n: Tree, f: Frame) -> float:
        return float(cast(Token, n.children[0]))

    def _e_str_lit(self, n: Tree, f: Frame) -> str:
        return self.string(cast(Token, n.children[0]))

    def _e_true_lit(self, n: Tree, f: Frame) -> bool:
        return True

    def _e_false_lit(self, n: Tree, f: Frame) -> bool:
        return False

    def _e_dtype_lit(self, n: Tree, f: Frame) -> DType:
        return DType(str(n.children[0]))

    def _e_list_lit(self, n: Tree, f: Frame) -> list[Any]:
        return [self.eval(c, f) for c in n.children if c is not None]

    def _e_tuple_lit(self, n: Tree, f: Frame) -> tuple[Any, ...]:
        return tuple(self.eval(c, f) for c in n.children if c is not None)

    def _e_name(self, n: Tree, f: Frame) -> Any:
        name = str(n.children[0])
        v = f.lookup(name)
        if v is not MISSING:
            return v
        if name in f.symbols:
            return f.symbols[name]
        if name in self.defs:
            return self.defs[name]
        if name in REGISTRY or name in all_ops():  # all_ops() loads the registry (and sorts it): only on a miss
            return OpRef(name)
        if name in BUILTINS:
            return Builtin(name)
        if name in NAMED_DTYPES:  # u8, i8, i16: dtypes the grammar leaves as names (not reserved)
            return DType(name)
        cands = list(f.scope) + list(f.symbols) + list(self.defs) + list(all_ops()) + list(BUILTINS)
        raise TypeError_(f"unknown name '{name}'", self.loc(n), hint=did_you_mean(name, cands))

    def _e_getattr(self, n: Tree, f: Frame) -> Any:
        base = self.eval(n.children[0], f)
        attr = str(n.children[1])
        if isinstance(base, Instance):
            if attr in base.scope:
                return base.scope[attr]
            raise TypeError_(
                f"layer instance '{base.prefix}' has no '{attr}'",
                self.loc(n.children[1]),
                hint=did_you_mean(attr, base.scope) or f"it has: {', '.join(base.scope) or 'nothing'}",
            )
        raise TypeError_(
            f"cannot read '.{attr}' of {self.describe(base)}",
            self.loc(n.children[1]),
            hint="only layer instances have members",
        )

    # -- operators ---------------------------------------------------------------------
    def _binary(self, n: Tree, f: Frame) -> Any:
        a, b = (self.eval(c, f) for c in n.children)
        op = BINARY_OPS[n.data]
        if not is_tensor(a) and not is_tensor(b):
            return self.fold(op, a, b, n)
        return self.apply_op(op, [a, b], {}, n)

    _e_add = _e_sub = _e_mul = _e_div = _e_matmul = _e_pow = _binary

    def _e_neg(self, n: Tree, f: Frame) -> Any:
        v = self.eval(n.children[0], f)
        if is_tensor(v):
            return self.apply_op("neg", [v], {}, n)
        if _is_number(v) or isinstance(v, Dim):
            return -v
        raise TypeError_(f"cannot negate {self.describe(v)}", self.loc(n))

    def _e_compare(self, n: Tree, f: Frame) -> Any:
        a, tok, b = n.children
        va, vb = self.eval(a, f), self.eval(b, f)
        if not is_tensor(va) and not is_tensor(vb):
            try:
                return _PY_COMPARE[str(tok)](va, vb)
            except TypeError:
                raise TypeError_(f"cannot compare {self.describe(va)} with {self.describe(vb)}", self.loc(n)) from None
        return self.apply_op(COMPARE_OPS[str(tok)], [va, vb], {}, n)

    def fold(self, op: str, a: Any, b: Any, n: Tree) -> Any:
        """Arithmetic on compile-time values (config ints, dims)."""
        if isinstance(a, Dim) or isinstance(b, Dim):
            if (
                op in ("add", "sub", "mul")
                and all(isinstance(x, Dim) or isinstance(x, int) for x in (a, b))
                and not any(isinstance(x, bool) for x in (a, b))
            ):
                da, db = Dim.of(a), Dim.of(b)
                return da + db if op == "add" else da - db if op == "sub" else da * db
            if op == "div":
                q = Dim.of(a).exact_div(b) if isinstance(b, (Dim, int)) else None
                if q is not None:
                    return q
            raise TypeError_(
                f"cannot compute {op} of {self.describe(a)} and {self.describe(b)} at compile time", self.loc(n)
            )
        if not (_is_number(a) and _is_number(b)):
            raise TypeError_(f"cannot compute {op} of {self.describe(a)} and {self.describe(b)}", self.loc(n))
        try:
            if op == "add":
                return a + b
            if op == "sub":
                return a - b
            if op == "mul":
                return a * b
            if op == "div":
                return a / b
            if op == "pow":
                return a**b
        except (ZeroDivisionError, OverflowError) as e:
            raise TypeError_(f"compile-time arithmetic failed: {e}", self.loc(n)) from None
        raise TypeError_(f"'@' needs tensors, got {self.describe(a)} and {self.describe(b)}", self.loc(n))

    # -- calls -------------------------------------------------------------------------
    def eval_args(self, args: Tree | None, f: Frame) -> tuple[list[Any], dict[str, tuple[Any, Any]]]:
        pos: list[Any] = []
        kw: dict[str, tuple[Any, Any]] = {}
        for a in args.children if args is not None else []:
            if isinstance(a, Tree) and a.data == "kwarg":
                k = str(a.children[0])
                if k in kw:
                    raise TypeError_(f"keyword argument '{k}' given twice", self.loc(a))
                kw[k] = (self.eval(a.children[1], f), a)
            else:
                if kw:
                    raise TypeError_("positional argument after keyword arguments", self.loc(a))
                pos.append(self.eval(a, f))
        return pos, kw

    def _e_call(self, n: Tree, f: Frame) -> Any:
        callee = self.eval(n.children[0], f)
        if isinstance(callee, DefRef) and callee.kind in ("layer", "model"):
            raise TypeError_(
                f"bind the {callee.kind} to a name before calling it",
                self.loc(n),
                hint=f"`net = {callee.name}(...)` creates it with params net.*; then call `net(x)`",
            )
        pos, kw = self.eval_args(n.children[1], f)
        if isinstance(callee, OpRef):
            return self.call_op(callee.name, pos, kw, n)
        if isinstance(callee, Builtin):
            return self.call_builtin(callee.name, pos, kw, n)
        if kw:
            k, (_, where) = next(iter(kw.items()))
            raise TypeError_(
                f"keyword argument '{k}' is not allowed here",
                self.loc(where),
                hint="only ops and layer creation take keyword arguments",
            )
        if isinstance(callee, DefRef) and callee.kind == "fn":
            return self.call_fn(callee, pos, n, f)
        if isinstance(callee, Instance):
            return self.call_instance(callee, pos, n, f)
        raise TypeError_(f"{self.describe(callee)} is not callable", self.loc(n))

    def call_builtin(self, name: str, pos: list[Any], kw: dict[str, tuple[Any, Any]], n: Tree) -> Any:
        """Compile-time functions: ``shape(x)`` is the tuple of x's dims (ints or symbols)."""
        if kw or len(pos) != 1 or not is_tensor(pos[0]):
            raise TypeError_(f"{name}(x) takes one tensor", self.loc(n))
        t = pos[0].type
        if name == "shape":
            if any(d.unknown for d in t.shape):
                raise TypeError_(
                    f"shape(): {t} has an unknown dim",
                    self.loc(n),
                    hint="unknown dims (?) cannot be used at compile time",
                )
            return tuple(d.value if d.is_static else d for d in t.shape)
        return t.rank  # rank

    def call_op(self, name: str, pos: list[Any], kw: dict[str, tuple[Any, Any]], n: Tree) -> Any:
        try:
            opdef = get_op(name)
        except DlirError as e:
            raise e.with_loc(self.loc(n)) from None
        inputs: list[Any]
        rest = list(pos)
        if opdef.variadic:
            if not rest or not isinstance(rest[0], (list, tuple)):
                raise TypeError_(f"{name} takes a list of tensors first, e.g. {name}([a, b], axis=1)", self.loc(n))
            inputs = list(rest.pop(0))
        else:
            # Leading positional arguments fill the tensor inputs; a trailing optional
            # input ("b?") is only taken when it is a tensor (else it is an attribute).
            n_in = len(opdef.inputs)
            inputs = []
            while rest and len(inputs) < n_in and (not opdef.inputs[len(inputs)].endswith("?") or is_tensor(rest[0])):
                inputs.append(rest.pop(0))
            for iname in opdef.input_names[len(inputs) :]:
                if iname in kw:
                    inputs.append(kw.pop(iname)[0])
            if not opdef.accepts(len(inputs)):
                raise TypeError_(f"{opdef.arity_text()}, got {len(inputs)}", self.loc(n))
        attr_names = [a.name for a in opdef.attrs]
        if len(rest) > len(attr_names):
            raise TypeError_(
                f"{name} got {len(rest)} extra positional argument(s)",
                self.loc(n),
                hint=f"{name} takes attributes: {', '.join(attr_names) or 'none'}",
            )
        attrs: dict[str, Any] = dict(zip(attr_names, rest, strict=False))  # the rest: keywords or defaults
        for k, (v, where) in kw.items():
            if k in attrs:
                raise TypeError_(f"{name}: attribute '{k}' given twice", self.loc(where))
            attrs[k] = v
        for k, v in attrs.items():
            if is_tensor(v) or isinstance(v, Instance):
                raise TypeError_(
                    f"{name}: attribute '{k}' must be known at compile time, got {self.describe(v)}", self.loc(n)
                )
        return self.apply_op(name, inputs, attrs, n)

    def apply_op(self, name: str, inputs: list[Any], attrs: dict[str, Any], n: Tree) -> Any:
        # Literals take the dtype of a numeric neighbour (the branches of `where`, not its condition).
        dtypes = [v.type.dtype for v in inputs if is_tensor(v)]
        like = next((d for d in dtypes if d is not DType.bool), dtypes[0] if dtypes else None)
        tensors = [self.as_tensor(v, like, n) for v in inputs]
        outs = emit(self.graph, name, tensors, attrs, self.loc(n))
        for v in outs:
            if v.kind == "node" and v not in tensors:
                self.auto_named.add(v)
        return outs[0] if len(outs) == 1 else tuple(outs)

    def as_tensor(self, v: Any, like: DType | None, n: Any) -> Value:
        """A tensor from a value: literals become constants of the neighbour's dtype."""
        if is_tensor(v):
            return v
        if isinstance(v, Dim) and v.is_static:
            v = v.value
        if isinstance(v, bool):
            dt = DType.bool
        elif isinstance(v, int):
            dt = like if like is not None and like is not DType.bool else DType.i64
        elif isinstance(v, float):
            dt = like if like is not None and like.is_float else DType.f32
            if like is not None and not like.is_float and float(v).is_integer() is False:
                raise TypeError_(
                    f"the number {v} cannot be combined with a {like} tensor",
                    self.loc(n),
                    hint="cast the tensor first: cast(x, f32)",
                )
        elif isinstance(v, list) and v and all(_is_number(x) or isinstance(x, bool) for x in v):
            dt = like if like is not None else (DType.f32 if any(isinstance(x, float) for x in v) else DType.i64)
        else:
            raise TypeError_(f"expected a tensor, got {self.describe(v)}", self.loc(n))
        out = emit(self.graph, "constant", [], {"value": v, "dtype": dt}, self.loc(n))[0]
        self.auto_named.add(out)
        return out

    # -- indexing ----------------------------------------------------------------------
    def _e_index(self, n: Tree, f: Frame) -> Any:
        base = self.eval(n.children[0], f)
        subs = n.children[1].children
        if isinstance(base, (list, tuple)) and not is_tensor(base):
            if len(subs) != 1:
                raise TypeError_("a list takes one index", self.loc(n))
            i = self.eval(subs[0], f)
            if not isinstance(i, int) or isinstance(i, bool) or not -len(base) <= i < len(base):
                raise TypeError_(f"list index {i!r} is out of range for a list of {len(base)}", self.loc(n))
            return base[i]
        if not is_tensor(base):
            raise TypeError_(f"cannot index {self.describe(base)}", self.loc(n))
        return self.slice_tensor(base, subs, n, f)

    def slice_tensor(self, x: Value, subs: list[Any], n: Tree, f: Frame) -> Value:
        n_ell = sum(1 for s in subs if isinstance(s, Tree) and s.data == "ellipsis")
        if n_ell > 1:
            raise TypeError_("only one '...' is allowed in an index", self.loc(n))
        explicit = len(subs) - n_ell
        if explicit > x.type.rank:
            raise TypeError_(f"too many indices ({explicit}) for {x.type}", self.loc(n))
        starts, ends, axes, steps, drop = [], [], [], [], []
        axis = 0
        for s in subs:
            if isinstance(s, Tree) and s.data == "ellipsis":
                axis += x.type.rank - explicit
                continue
            if isinstance(s, Tree) and s.data in ("slice2", "slice3"):
                parts = [self.eval(c, f) if c is not None else None for c in s.children] + [None]
                lo, hi, st = parts[0], parts[1], parts[2] if s.data == "slice3" else None
                for what, v in (("start", lo), ("end", hi), ("step", st)):
                    if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
                        raise TypeError_(
                            f"slice {what} must be a compile-time int, got {self.describe(v)}", self.loc(s)
                        )
                if st is not None and st <= 0:
                    raise TypeError_(f"slice step {st} is not supported", self.loc(s), hint="steps must be positive")
                if (lo, hi, st) != (None, None, None) and (lo, hi, st) != (None, None, 1):
                    starts.append(lo or 0)
                    ends.append(END if hi is None else hi)
                    axes.append(axis)
                    steps.append(st or 1)
            else:
                i = self.eval(s, f)
                if is_tensor(i):
                    raise TypeError_(
                        "indexing with a tensor is not supported yet",
                        self.loc(s),
                        hint="index with compile-time ints and slices",
                    )
                if not isinstance(i, int) or isinstance(i, bool):
                    raise TypeError_(f"an index must be a compile-time int, got {self.describe(i)}", self.loc(s))
                d = x.type.shape[axis]
                if d.is_static and not -d.value <= i < d.value:
                    raise TypeError_(f"index {i} is out of range for axis {axis} of {x.type}", self.loc(s))
                starts.append(i)
                ends.append(END if i == -1 else i + 1)
                axes.append(axis)
                steps.append(1)
                drop.append(axis)
            axis += 1
        out = x
        if axes:
            out = self.apply_op("slice", [out], {"starts": starts, "ends": ends, "axes": axes, "steps": steps}, n)
        if drop:
            out = self.apply_op("squeeze", [out], {"axes": drop}, n)
        return out

    # -- messages ----------------------------------------------------------------------
    def describe(self, v: Any) -> str:
        """A value as an error names it: the frontend's own kinds here, the rest as the op registry does."""
        if isinstance(v, Instance):
            return f"the layer instance '{v.prefix}'"
        if isinstance(v, DefRef):
            return f"the {v.kind} {v.name}"
        if isinstance(v, OpRef):
            return f"the op {v.name}"
        return describe_value(v)
