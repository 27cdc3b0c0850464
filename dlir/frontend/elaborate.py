"""Parse tree -> IR: name resolution, layer and model inlining, loop unrolling, typing.

One :class:`Elaborator` turns one model definition into a :class:`Graph`. Layers
are inlined at each call; their params get dotted names from the binding that
created them (``fc1.w``, ``blk.0.w`` inside loops). Every error carries the
file:line:col of the construct that caused it.
"""

from __future__ import annotations

import json
from collections import ChainMap
from typing import Any

from lark import Token, Tree

from dlir.errors import DlirError, SourceLoc, TypeError_, did_you_mean
from dlir.frontend.expressions import ExprMixin, is_tensor
from dlir.frontend.scan import exec_scan_stmt
from dlir.frontend.scope import MISSING, DefRef, Frame, Instance
from dlir.ir.gc_pause import gc_paused
from dlir.ir.graph import INIT_KINDS, Graph, Init, Value
from dlir.ir.types import DTYPE_NAMES, UNKNOWN, Dim, DType, TensorType

MAX_UNROLL = 100_000  # iterations of one static loop
MAX_DEPTH = 200  # nested layer/fn inlining


class Elaborator(ExprMixin):
    """Builds the graph of one model of a program."""

    def __init__(self, defs: dict[str, DefRef], filename: str) -> None:
        self.defs = defs
        self.file = filename
        self.graph: Graph = Graph("?")
        self.auto_named: set[Value] = set()
        self.stack: list[str] = []  # definitions being inlined, to refuse recursion
        self.files: list[str] = []  # the file of each definition on the stack
        self.user_file = filename  # errors are reported here first (a library's line becomes a note)
        # The user's line whose call is being inlined (one per definition on the stack): a
        # library position made under it carries it as its site.
        self.sites: list[SourceLoc | None] = []

    def loc(self, node: Any, file: str | None = None) -> SourceLoc:
        """Where ``node`` is: in the definition being elaborated, or in ``file``."""
        file = file or self.file
        meta = getattr(node, "meta", None)
        if isinstance(node, Token):
            line, col = node.line or 0, node.column or 0
        elif meta is not None and not getattr(meta, "empty", True):
            line, col = meta.line, meta.column
        else:
            line, col = 0, 0
        site = self.sites[-1] if self.sites and file != self.user_file else None
        return SourceLoc(file, line, col, site)

    def caller_loc(self, node: Any) -> SourceLoc:
        """Where ``node`` of the call being bound is: in the caller's file (inside a definition's enter)."""
        return self.loc(node, self.files[-1] if self.files else None)

    # -- the model ------------------------------------------------------------------
    def build(self, name: str) -> Graph:
        with gc_paused():  # see dlir.ir.gc_pause: keeps the cost per node flat in big models
            return self._build(name)

    def _build(self, name: str) -> Graph:
        d = self.defs[name]
        _, params, outs, body = d.tree.children
        self.graph = Graph(name, loc=self.loc(d.tree.children[0]))
        self.param_prefixes: set[str] = set()  # "a", "a.b" for a param "a.b.w": instance names in use
        root = Instance(d, "")
        symbols: dict[str, Dim] = {}
        frame = Frame(ChainMap(root.scope), root, symbols)
        inputs = self.model_inputs(params, frame, bind_new=True)
        for pname, (t, tok) in inputs.items():
            root.scope[pname] = self.graph.add_input(pname, t, self.loc(tok))
        self.check_bound_symbols(inputs, symbols)
        result, where = self.run_body(body, frame)
        names, declared = self.output_decls(outs, frame, len(result))
        self.check_outputs(d, result, declared, where)
        in_names = set(inputs)
        for n in names:
            if n in in_names:
                raise TypeError_(
                    f"output '{n}' has the name of an input",
                    self.loc(outs),
                    hint="outputs and inputs need distinct names",
                )
        self.graph.outputs = list(zip(names, result, strict=True))
        return self.graph

    def model_inputs(self, params: Any, frame: Frame, bind_new: bool) -> dict[str, tuple[TensorType, Token]]:
        out: dict[str, tuple[TensorType, Token]] = {}
        for p in params.children if params is not None else []:
            tok, ty = p.children
            if str(tok) in out:
                raise TypeError_(f"input '{tok}' is declared twice", self.loc(tok))
            out[str(tok)] = (self.eval_type(ty, frame, new_symbols=bind_new), tok)
        return out

    def check_bound_symbols(self, inputs: dict[str, tuple[TensorType, Token]], symbols: dict[str, Dim]) -> None:
        bare = {s for t, _ in inputs.values() for d in t.shape if d.is_symbol() for s in d.symbols}
        for name, (t, tok) in inputs.items():
            for d in t.shape:
                for s in d.symbols - bare:
                    raise TypeError_(
                        f"symbol {s} in input '{name}': {t} is not bound on its own by any input",
                        self.loc(tok),
                        hint=f"give some input a dim that is just {s}",
                    )

    def output_decls(self, outs: Any, frame: Frame, n: int) -> tuple[list[str], list[TensorType | None]]:
        if outs is None:
            return (["out"] if n == 1 else [f"out{i}" for i in range(n)]), [None] * n
        if outs.data == "out_single":
            return ["out"], [self.eval_type(outs.children[0], frame, new_symbols=False)]
        names: list[str] = []
        types: list[TensorType | None] = []
        for i, o in enumerate(outs.children):
            tok, ty = o.children
            name = str(tok) if tok is not None else f"out{i}"
            if name in names:
                raise TypeError_(f"output '{name}' is declared twice", self.loc(o))
            names.append(name)
            types.append(self.eval_type(ty, frame, new_symbols=False))
        return names, types

    def check_outputs(self, d: DefRef, result: list[Value], declared: list[TensorType | None], where: Any) -> None:
        if len(declared) != len(result):
            raise TypeError_(
                f"model {d.name} declares {len(declared)} output(s) but returns {len(result)}", self.loc(where)
            )
        for i, (v, t) in enumerate(zip(result, declared, strict=True)):
            if t is None:
                continue
            ok = (
                v.type.dtype == t.dtype
                and v.type.rank == t.rank
                and all(a.compatible(b) for a, b in zip(v.type.shape, t.shape, strict=True))
            )
            if not ok:
                raise TypeError_(
                    f"output {i} of model {d.name} is declared {t}, but the value returned is {v.type}",
                    self.loc(where),
                    hint="fix the declared type or the computation",
                )

    # -- bodies and statements ---------------------------------------------------------
    def run_body(self, block: Tree, frame: Frame) -> tuple[list[Value], Any]:
        """Execute a block that must end in `return`; returns the returned tensors."""
        stmts = block.children
        for i, st in enumerate(stmts):
            if st.data == "return_stmt":
                if i != len(stmts) - 1:
                    raise TypeError_("code after return is never run", self.loc(stmts[i + 1]))
                val = self.eval(st.children[0], frame)
                vals = list(val) if isinstance(val, tuple) else [val]
                for v in vals:
                    if not is_tensor(v):
                        raise TypeError_(f"return needs tensors, got {self.describe(v)}", self.loc(st))
                return vals, st
            self.exec_stmt(st, frame)
        raise TypeError_("this body has no return", self.loc(block), hint="end it with `return EXPR`")

    def exec_block(self, stmts: list[Tree], frame: Frame) -> None:
        for st in stmts:
            if st.data == "return_stmt":
                raise TypeError_("return is not allowed inside a loop", self.loc(st), hint="return after the loop")
            self.exec_stmt(st, frame)

    def exec_stmt(self, st: Tree, frame: Frame) -> None:
        kind = st.data
        if kind in ("param_stmt", "buffer_stmt"):
            self.declare_param(st, frame, buffer=kind == "buffer_stmt")
        elif kind == "assign":
            self.assign(st, frame)
        elif kind == "for_stmt":
            self.for_loop(st, frame)
        elif kind in ("scan_assign", "emit_stmt"):
            exec_scan_stmt(self, st, frame)
        elif kind == "forward_def":
            raise TypeError_("forward(...) is only allowed at the top of a layer", self.loc(st))
        else:  # pragma: no cover - the grammar has no other statements
            raise AssertionError(kind)

    def declare_param(self, st: Tree, frame: Frame, buffer: bool) -> None:
        tok, ty, init = st.children
        what = "buffer" if buffer else "param"
        owner = frame.owner
        if owner is None:
            raise TypeError_(
                f"a fn cannot declare a {what}", self.loc(st), hint="use a layer for anything with weights"
            )
        t = self.eval_type(ty, frame, new_symbols=False)
        if not t.is_static:
            raise TypeError_(
                f"{what} '{tok}' has a shape that is not known at compile time: {t}",
                self.loc(ty),
                hint="param shapes use ints and config arguments only",
            )
        key = str(tok) + frame.loop_suffix()
        full = owner.path(key)
        existing = owner.scope.get(str(tok))
        if key in frame.created:
            raise TypeError_(f"{what} '{tok}' is declared twice", self.loc(st))
        frame.created.add(key)
        if isinstance(existing, Value) and existing.kind in ("param", "buffer") and existing.name == full:
            owner.scope[str(tok)] = existing  # a model body run again: the same weights
            return
        if full in self.graph._used:  # params' names are claimed there (a set: linear in the model's size)
            raise TypeError_(
                f"{what} name '{full}' is already used",
                self.loc(st),
                hint="names of params and layer instances must be unique",
            )
        v = self.graph.add_param(full, t, self.eval_init(init, frame), buffer=buffer, loc=self.loc(tok))
        parts = full.split(".")
        self.param_prefixes.update(".".join(parts[:i]) for i in range(1, len(parts)))
        frame.scope.maps[0][str(tok)] = v
        owner.scope[str(tok)] = v

    def eval_init(self, init: Tree, frame: Frame) -> Init:
        name = str(init.children[0])
        if name not in INIT_KINDS:
            raise TypeError_(
                f"unknown initializer '{name}'",
                self.loc(init),
                hint=did_you_mean(name, INIT_KINDS) or "initializers: " + ", ".join(INIT_KINDS),
            )
        argnames = INIT_KINDS[name]
        pos, kw = self.eval_args(init.children[1] if len(init.children) > 1 else None, frame)
        if len(pos) > len(argnames):
            raise TypeError_(
                f"{name} takes at most {len(argnames)} argument(s) ({', '.join(argnames) or 'none'})", self.loc(init)
            )
        vals = dict(zip(argnames, pos, strict=False))  # the arguments not given take their defaults
        for k, (v, where) in kw.items():
            if k not in argnames or k in vals:
                raise TypeError_(
                    f"{name} has no argument '{k}'" if k not in argnames else f"argument '{k}' given twice",
                    self.loc(where),
                    hint=did_you_mean(k, argnames),
                )
            vals[k] = v
        for k, v in vals.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TypeError_(f"{name}: argument '{k}' must be a number, got {self.describe(v)}", self.loc(init))
        if name == "constant" and "value" not in vals:
            raise TypeError_("constant needs a value: constant(0.1)", self.loc(init))
        return Init(name, tuple((k, float(vals[k])) for k in argnames if k in vals))

    def assign(self, st: Tree, frame: Frame) -> None:
        targets = [str(t) for t in st.children[0].children]
        rhs = st.children[1]
        if len(targets) == 1 and isinstance(rhs, Tree) and rhs.data == "call":
            callee = self.eval(rhs.children[0], frame)
            if isinstance(callee, DefRef) and callee.kind in ("layer", "model"):
                self.bind(targets[0], self.instantiate(callee, rhs, targets[0], frame), frame, st)
                return
        val = self.eval(rhs, frame)
        if len(targets) == 1:
            self.bind(targets[0], val, frame, st)
            return
        if not isinstance(val, tuple) or len(val) != len(targets):
            got = len(val) if isinstance(val, tuple) else 1
            raise TypeError_(f"{len(targets)} names to bind but the right side gives {got} value(s)", self.loc(st))
        for name, v in zip(targets, val, strict=True):
            self.bind(name, v, frame, st)

    def bind(self, name: str, val: Any, frame: Frame, where: Any) -> None:
        if isinstance(val, Value) and val in self.auto_named:
            prefix = frame.owner.prefix if frame.owner is not None and frame.kind != "fn" else ""
            self.graph.rename(val, f"{prefix}.{name}" if prefix else name)
            self.auto_named.discard(val)
        frame.scope.maps[0][name] = val

    def for_loop(self, st: Tree, frame: Frame) -> None:
        var, args, body = st.children
        pos, kw = self.eval_args(args, frame)
        if kw or not 1 <= len(pos) <= 3 or not all(isinstance(v, int) and not isinstance(v, bool) for v in pos):
            raise TypeError_("range() takes 1 to 3 compile-time ints", self.loc(args))
        r = range(*pos)
        if len(r) > MAX_UNROLL:
            raise TypeError_(
                f"this loop would unroll {len(r)} times, more than the limit of {MAX_UNROLL}",
                self.loc(st),
                hint="static loops are unrolled at compile time; use scan for long recurrences",
            )
        for i in r:
            frame.scope.maps[0][str(var)] = i
            frame.loops.append(i)
            try:
                self.exec_block(body.children, frame)
            finally:
                frame.loops.pop()

    # -- layers, models, fns -----------------------------------------------------------
    def enter(self, name: str, where: Any) -> None:
        if name in self.stack:
            chain = " -> ".join(self.stack[self.stack.index(name) :] + [name])
            raise TypeError_(
                f"recursive definition: {chain}",
                self.loc(where),
                hint="layers and fns are inlined, so they cannot call themselves",
            )
        if len(self.stack) >= MAX_DEPTH:
            raise TypeError_(f"layers nest more than {MAX_DEPTH} deep", self.loc(where))
        self.stack.append(name)
        self.files.append(self.file)
        # A call written in the user's file is the site of everything a library does under it.
        self.sites.append(self.loc(where) if self.file == self.user_file else self.sites[-1] if self.sites else None)
        self.file = self.defs[name].file or self.file  # library definitions report their own file

    def leave(self) -> None:
        self.stack.pop()
        self.file = self.files.pop()
        self.sites.pop()

    def through(
        self, e: DlirError, d: DefRef, instance: str | None, site: SourceLoc, created: SourceLoc | None = None
    ) -> DlirError:
        """Re-point an error raised inside a layer, model or fn call, as rustc does for macros.

        An error in a library definition (the stdlib) moves to the line that called it, with
        the layer and the library line as notes, until it reaches the user's file; an error
        in the user's own definition stays on its line and gains a note naming the call.
        """
        what = f"{d.kind} {d.name}" + (f" ({instance})" if instance else "")
        origin = f"{what}, created at {created}" if created is not None else f"{what}, called at {site}"
        if e.loc == site:  # already the user's line (a config argument, say): the note would repeat it
            return e
        if e.loc is not None and e.loc.line > 0 and e.loc.file != self.user_file:
            e.notes[:0] = [f"in {origin}", f"inside {d.name} at {e.loc}"]
            e.loc, e.source_line = site, None
        else:
            e.notes.append(f"in {origin}")
        return e

    def instantiate(self, d: DefRef, call: Tree, name: str, frame: Frame) -> Instance:
        owner = frame.owner
        if owner is None or frame.kind == "fn":
            raise TypeError_(
                f"a fn cannot create the layer {d.name}", self.loc(call), hint="create layers in a layer or model"
            )
        key = name + frame.loop_suffix()
        if key in frame.created:
            raise TypeError_(
                f"layer instance '{name}' is created twice here; its params would clash",
                self.loc(call),
                hint="give each instance its own name (inside a for loop they are numbered for you)",
            )
        frame.created.add(key)
        if key in owner.children and owner.children[key].definition.name == d.name:
            return owner.children[key]  # a model body run again: reuse its layers
        inst = Instance(d, owner.path(key))
        if inst.prefix in self.param_prefixes:
            raise TypeError_(f"the name '{inst.prefix}' is already used by another layer instance", self.loc(call))
        pos, kw = self.eval_args(call.children[1], frame)
        inst.created = site = self.loc(call)
        self.enter(d.name, call)
        try:
            if d.kind == "model":
                if pos or kw:
                    raise TypeError_(
                        f"model {d.name} takes no arguments when created",
                        self.loc(call),
                        hint=f"create it, then call it: `{name} = {d.name}()`, then `{name}(x)`",
                    )
            else:
                self.bind_config(d, pos, kw, inst, call)
                self.init_layer(d, inst)
        except DlirError as e:
            raise self.through(e, d, inst.prefix, site, site) from None
        finally:
            self.leave()
        owner.children[key] = inst
        return inst

    def bind_config(
        self, d: DefRef, pos: list[Any], kw: dict[str, tuple[Any, Any]], inst: Instance, call: Tree
    ) -> None:
        params = d.tree.children[1]
        decls = params.children if params is not None else []
        names = [str(p.children[0]) for p in decls]
        if len(pos) > len(decls):
            raise TypeError_(
                f"layer {d.name} takes {len(decls)} config argument(s) ({', '.join(names)}), got {len(pos)}",
                self.caller_loc(call),
            )
        given = dict(zip(names, pos, strict=False))  # fewer positional arguments than config names is fine
        for k, (v, where) in kw.items():
            if k not in names:
                raise TypeError_(
                    f"layer {d.name} has no config argument '{k}'",
                    self.caller_loc(where),
                    hint=did_you_mean(k, names) or f"its arguments are: {', '.join(names) or 'none'}",
                )
            if k in given:
                raise TypeError_(f"config argument '{k}' given twice", self.caller_loc(where))
            given[k] = v
        for p in decls:
            pname, ptype, default = str(p.children[0]), str(p.children[1]), p.children[2]
            if pname not in given:
                if default is None:
                    raise TypeError_(
                        f"layer {d.name} needs the config argument '{pname}'",
                        self.caller_loc(call),
                        hint=f"{d.name}({', '.join(names)})",
                    )
                given[pname] = self.eval(default, Frame(ChainMap({}), None, {}, kind="fn"))
            inst.scope[pname] = self.check_config(d, pname, ptype, given[pname], call)

    def check_config(self, d: DefRef, name: str, ptype: str, v: Any, where: Any) -> Any:
        ok = {
            "int": isinstance(v, int) and not isinstance(v, bool),
            "float": isinstance(v, (int, float)) and not isinstance(v, bool),
            "str": isinstance(v, str),
            "bool": isinstance(v, bool),
        }
        if ptype not in ok:
            raise TypeError_(
                f"config argument '{name}' of {d.name} has type '{ptype}'; use int, float, str or bool",
                self.caller_loc(where),
            )
        if not ok[ptype]:
            raise TypeError_(
                f"config argument '{name}' of {d.name} must be {ptype}, got {self.describe(v)}", self.caller_loc(where)
            )
        return float(v) if ptype == "float" else v

    def init_layer(self, d: DefRef, inst: Instance) -> None:
        frame = Frame(ChainMap(inst.scope), inst, {}, kind="layer")
        for item in d.tree.children[2:]:
            if isinstance(item, Tree) and item.data == "forward_def":
                if inst.forward is not None:
                    raise TypeError_(f"layer {d.name} has two forward definitions", self.loc(item))
                inst.forward = item
            elif item.data == "return_stmt":
                raise TypeError_("return belongs inside forward(...)", self.loc(item))
            else:
                self.exec_stmt(item, frame)
        if inst.forward is None:
            raise TypeError_(f"layer {d.name} has no forward(...)", self.loc(d.tree.children[0]))

    def call_instance(self, inst: Instance, args: list[Any], call: Tree, frame: Frame) -> Any:
        d = inst.definition
        site = self.loc(call)
        self.enter(d.name, call)
        try:
            if d.kind == "model":
                return self.call_model(inst, args, call, frame)
            fparams, body = inst.forward.children
            decls = [(str(p.children[0]), p.children[1]) for p in fparams.children] if fparams is not None else []
            pnames = [n for n, _ in decls]
            required = sum(1 for _, default in decls if default is None)
            if not required <= len(args) <= len(decls):
                want = f"{len(pnames)}" if required == len(pnames) else f"{required} to {len(pnames)}"
                raise TypeError_(
                    f"{d.name}.forward takes {want} argument(s) ({', '.join(pnames)}), got {len(args)}", self.loc(call)
                )
            bound = dict(zip(pnames, args, strict=False))  # the rest take their defaults, below
            for pname, default in decls[len(args) :]:
                bound[pname] = self.eval(default, Frame(ChainMap({}, inst.scope), None, {}, kind="fn"))
            inner = frame.child(bound, inst, "forward")
            vals, _ = self.run_body(body, inner)
            return vals[0] if len(vals) == 1 else tuple(vals)
        except DlirError as e:
            raise self.through(e, d, inst.prefix, site, inst.created) from None
        finally:
            self.leave()

    def call_model(self, inst: Instance, args: list[Any], call: Tree, frame: Frame) -> Any:
        d = inst.definition
        _, params, outs, body = d.tree.children
        symbols: dict[str, Dim] = {}
        inner = Frame(ChainMap(inst.scope), inst, symbols, kind="model")
        decl = self.model_inputs(params, Frame(ChainMap({}), None, {}), bind_new=True)
        if len(args) != len(decl):
            raise TypeError_(
                f"model {d.name} takes {len(decl)} input(s) ({', '.join(decl)}), got {len(args)}", self.loc(call)
            )
        for (pname, (t, _)), a in zip(decl.items(), args, strict=True):
            a = self.as_tensor(a, t.dtype, call)
            self.unify(d.name, pname, t, a.type, symbols, call)
            inst.scope[pname] = a
        vals, where = self.run_body(body, inner)
        _, declared = self.output_decls(outs, inner, len(vals))
        self.check_outputs(d, vals, declared, where)
        return vals[0] if len(vals) == 1 else tuple(vals)

    def unify(
        self, model: str, name: str, decl: TensorType, got: TensorType, symbols: dict[str, Dim], where: Any
    ) -> None:
        """Bind the callee's symbols to the argument's dims, checking what is fixed."""
        bad = decl.dtype != got.dtype or decl.rank != got.rank
        for dd, gd in zip(decl.shape, got.shape, strict=True) if not bad else ():
            if dd.is_symbol():
                s = next(iter(dd.symbols))
                if s in symbols and not symbols[s].compatible(gd):
                    bad = True
                symbols.setdefault(s, gd)
            elif not dd.unknown and dd.symbols <= set(symbols):
                bad = bad or not _subst(dd, symbols).compatible(gd)
        if bad:
            raise TypeError_(
                f"input '{name}' of model {model} is declared {decl}, but the argument is {got}", self.loc(where)
            )

    def call_fn(self, d: DefRef, args: list[Any], call: Tree, frame: Frame) -> Any:
        name_tok, names, body = d.tree.children
        pnames = [str(n) for n in names.children] if names is not None else []
        if len(args) != len(pnames):
            raise TypeError_(
                f"fn {d.name} takes {len(pnames)} argument(s) ({', '.join(pnames)}), got {len(args)}", self.loc(call)
            )
        site = self.loc(call)
        self.enter(d.name, call)
        try:
            inner = Frame(ChainMap(dict(zip(pnames, args, strict=True))), frame.owner, frame.symbols, kind="fn")
            if d.tree.data == "fn_expr":
                return self.eval(body, inner)
            vals, _ = self.run_body(body, inner)
            return vals[0] if len(vals) == 1 else tuple(vals)
        except DlirError as e:
            raise self.through(e, d, None, site) from None
        finally:
            self.leave()

    # -- types ---------------------------------------------------------------------------
    def eval_type(self, ty: Tree, frame: Frame, new_symbols: bool) -> TensorType:
        word = str(ty.children[0])
        if word not in DTYPE_NAMES:
            raise TypeError_(
                f"unknown dtype '{word}'",
                self.loc(ty),
                hint=did_you_mean(word, DTYPE_NAMES) or "the dtypes are " + " ".join(DTYPE_NAMES),
            )
        dtype = DType(word)
        dims = [self.eval_dim(d, frame, new_symbols) for d in ty.children[1:] if d is not None]
        return TensorType(dtype, tuple(dims))

    def eval_dim(self, d: Any, frame: Frame, new_symbols: bool) -> Dim:
        kind = d.data
        if kind == "dim_int":
            return Dim.of(int(d.children[0]))
        if kind == "dim_unknown":
            return UNKNOWN
        if kind in ("dim_add", "dim_sub", "dim_mul"):
            a, b = (self.eval_dim(c, frame, new_symbols) for c in d.children)
            return a + b if kind == "dim_add" else a - b if kind == "dim_sub" else a * b
        name = str(d.children[0])
        v = frame.lookup(name)
        if v is not MISSING:
            if isinstance(v, Dim) or (isinstance(v, int) and not isinstance(v, bool)):
                return Dim.of(v)
            raise TypeError_(f"'{name}' is used as a dim but is {self.describe(v)}", self.loc(d))
        if name in frame.symbols:
            return frame.symbols[name]
        if new_symbols:
            frame.symbols[name] = Dim.of(name)
            return frame.symbols[name]
        raise TypeError_(
            f"unknown dim '{name}'",
            self.loc(d),
            hint=did_you_mean(name, list(frame.symbols) + [k for k in frame.scope])
            or "symbols are bound by the model's input types",
        )

    # -- strings -----------------------------------------------------------------------
    def string(self, tok: Token) -> str:
        text = str(tok)
        if "\\" not in text and text.isprintable():
            return text[1:-1]  # nothing to decode (most strings); json.loads rejects control characters
        try:
            s = json.loads(text)
        except ValueError:
            raise TypeError_("bad escape in string", self.loc(tok), hint='use \\" \\\\ \\n \\t or \\uXXXX') from None
        return str(s)


def _subst(d: Dim, symbols: dict[str, Dim]) -> Dim:
    out = Dim.of(0)
    for mono, coef in d.terms:
        term = Dim.of(coef)
        for s in mono:
            term = term * symbols[s]
        out = out + term
    return out


__all__ = ["Elaborator", "DlirError"]
