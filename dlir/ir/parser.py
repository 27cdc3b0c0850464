"""The IR-text parser: reads what :mod:`dlir.ir.printer` writes back into graphs.

Recursive descent over the tokens of :mod:`dlir.ir.lexer` (no Lark: ``import dlir``
stays light). Node result types are taken from the text and
checked against the op's shape rule; every mistake is a :class:`DlirError` at
the line and column of the offending token in the IR text.

``round_trip`` and ``check_golden``, the entry points for golden IR tests, are in
:mod:`dlir.ir.golden`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

from dlir.errors import UNKNOWN_LOC, DlirError, ParseError, SourceLoc, TypeError_, did_you_mean
from dlir.ir.graph import Graph, Init, Node, Value
from dlir.ir.lexer import Tok, tokenize
from dlir.ir.types import DTYPE_NAMES, UNKNOWN, Dim, DType, TensorType
from dlir.ops.registry import OpDef, check_attrs, get_op


@dataclass(frozen=True)
class _Sym:
    """A bare word in an attribute or dim: a symbol, true/false/none, inf/nan or a dtype."""

    name: str
    neg: bool = False


class _Parser:
    def __init__(self, text: str, filename: str) -> None:
        self.file = filename
        self.lines = text.split("\n")
        self.toks = tokenize(text, filename)
        self.i = 0
        # Visible values, innermost graph last (body graphs see their enclosing ones).
        self.scopes: list[dict[str, Value]] = []

    # -- tokens -----------------------------------------------------------------------
    def peek(self, k: int = 0) -> Tok:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def next(self) -> Tok:
        tok = self.peek()
        self.i += 1
        return tok

    def at(self, text: str, kind: str | None = None) -> bool:
        tok = self.peek()
        return tok.text == text and tok.kind in ((kind,) if kind else ("punct", "name"))

    def accept(self, text: str) -> bool:
        if self.at(text):
            self.i += 1
            return True
        return False

    def expect(self, text: str) -> Tok:
        if not self.at(text):
            raise self.error(f"expected '{text}', found {_describe(self.peek())}", self.peek())
        return self.next()

    def expect_kind(self, kind: str, what: str) -> Tok:
        if self.peek().kind != kind:
            raise self.error(f"expected {what}, found {_describe(self.peek())}", self.peek())
        return self.next()

    def loc_of(self, tok: Tok) -> SourceLoc:
        return SourceLoc(self.file, tok.line, tok.col)

    def error(self, msg: str, tok: Tok, cls: type[DlirError] = ParseError, hint: str | None = None) -> DlirError:
        return self.locate(cls(msg, hint=hint), tok)

    def locate(self, e: DlirError, tok: Tok) -> DlirError:
        e.loc = self.loc_of(tok)
        e.source_line = self.lines[tok.line - 1] if 0 < tok.line <= len(self.lines) else None
        return e

    # -- program and graphs -----------------------------------------------------------
    def program(self) -> list[Graph]:
        graphs = []
        while self.peek().kind != "eof":
            graphs.append(self.graph("model"))
        return graphs

    def graph(self, keyword: str, parent: Graph | None = None) -> Graph:
        self.expect(keyword)
        g = Graph(self.name("a graph name"))
        if parent is not None:
            g._used = parent._used  # a body shares its parent's value names: they are unique across the nest
            g._next = parent._next
        self.scopes.append({})
        self.expect("(")
        while not self.at(")"):
            tok = self.expect_kind("value", "an input such as %x: f32[B, 4]")
            self.expect(":")
            t = self.type_()
            self.define(tok, g)
            v = g.add_input(_value_name(tok), t)
            self.scopes[-1][v.name] = v
            if not self.accept(","):
                break
        self.expect(")")
        self.expect("->")
        declared = self.output_decls()
        g.loc = self.opt_loc()
        self.expect("{")
        self.statements(g)
        self.check_outputs(g, declared)
        self.expect("}")
        self.scopes.pop()
        return g

    def output_decls(self) -> list[tuple[Tok, str, TensorType]]:
        self.expect("(")
        out = []
        while not self.at(")"):
            tok = self.peek()
            name = self.name("an output name")
            self.expect(":")
            out.append((tok, name, self.type_()))
            if not self.accept(","):
                break
        self.expect(")")
        return out

    def statements(self, g: Graph) -> None:
        while True:
            tok = self.peek()
            if tok.kind == "name" and tok.text in ("param", "buffer"):
                self.param(g)
            elif tok.kind == "name" and tok.text == "input":
                self.input_loc(g)
            elif tok.kind == "name" and tok.text == "return":
                self.next()
                self.returns(g)
                return
            elif tok.kind == "value" or (tok.kind == "name" and self.peek(1).text == "("):
                self.node(g)
            else:
                what = "a statement (input, param, buffer, %v = op(...), return)"
                raise self.error(f"expected {what}, found {_describe(tok)}", tok)

    def returns(self, g: Graph) -> None:
        while not self.at("}"):
            name = self.name("an output name")
            self.expect("=")
            g.outputs.append((name, self.use()))
            if not self.accept(","):
                break

    def check_outputs(self, g: Graph, declared: list[tuple[Tok, str, TensorType]]) -> None:
        names = [n for n, _ in g.outputs]
        if names != [n for _, n, _ in declared]:
            at = declared[0][0] if declared else self.peek()
            raise self.error(
                f"the header declares outputs ({', '.join(n for _, n, _ in declared)}) "
                f"but return gives ({', '.join(names)})",
                at,
            )
        for (tok, name, t), (_, v) in zip(declared, g.outputs, strict=True):
            if v.type != t:
                raise self.error(f"output {name} is declared {t} but returns %{v.name}: {v.type}", tok, TypeError_)

    # -- statements -------------------------------------------------------------------
    def param(self, g: Graph) -> None:
        kind = self.next().text
        tok = self.expect_kind("value", "a param name such as %fc1.w")
        self.expect(":")
        t = self.type_()
        init = self.init() if self.accept("=") else None
        self.define(tok, g)
        # A missing init parses (hand-written IR); the verifier reports it.
        loc = self.opt_loc()
        v = g.add_param(_value_name(tok), t, init, buffer=kind == "buffer", loc=loc)  # type: ignore[arg-type]
        self.scopes[-1][v.name] = v

    def input_loc(self, g: Graph) -> None:
        """``input %x loc(...)``: where a graph input was declared."""
        self.next()
        tok = self.expect_kind("value", "an input such as %x")
        v = next((v for v in g.inputs if v.name == _value_name(tok)), None)
        if v is None:
            raise self.error(f"%{_value_name(tok)} is not an input of {g.name}", tok)
        if v.loc != UNKNOWN_LOC:
            raise self.error(f"the location of %{v.name} is given twice", tok)
        if not self.at("loc", "name"):
            raise self.error(f"expected loc(...), found {_describe(self.peek())}", self.peek())
        v.loc = self.opt_loc()

    def node(self, g: Graph) -> None:
        results: list[tuple[Tok, TensorType]] = []
        if self.peek().kind == "value":
            while True:
                tok = self.expect_kind("value", "a result such as %t: f32[B, 4]")
                self.expect(":")
                results.append((tok, self.type_()))
                if not self.accept(","):
                    break
            self.expect("=")
        op_tok = self.expect_kind("name", "an op name")
        opdef = self.opdef(op_tok)
        self.expect("(")
        inputs: list[Value] = []
        while not self.at(")"):
            inputs.append(self.use())
            if not self.accept(","):
                break
        self.expect(")")
        attrs = self.canonical(opdef, op_tok, inputs, self.attrs(opdef, op_tok))
        loc = self.opt_loc()
        body = self.graph("body", g) if self.at("body", "name") else None
        self.check_types(opdef, op_tok, inputs, attrs, results, body)
        outs = []
        for tok, t in results:
            self.define(tok, g)
            v = Value(_value_name(tok), t, "node", loc=loc)
            g.claim_name(v.name)
            self.scopes[-1][v.name] = v
            outs.append(v)
        node = Node(op_tok.text, inputs, attrs, outs, loc, body)
        for v in outs:
            v.producer = node
        g.nodes.append(node)

    def opdef(self, tok: Tok) -> OpDef:
        try:
            opdef = get_op(tok.text)
        except DlirError as e:
            raise self.locate(e, tok) from None
        if opdef.expand is not None:
            raise self.error(f"'{tok.text}' is a frontend-only op and cannot appear in IR", tok, TypeError_)
        return opdef

    def check_types(
        self,
        opdef: OpDef,
        op_tok: Tok,
        inputs: list[Value],
        attrs: dict[str, Any],
        results: list[tuple[Tok, TensorType]],
        body: Graph | None = None,
    ) -> None:
        if not opdef.accepts(len(inputs)):
            raise self.error(f"{opdef.arity_text()}, got {len(inputs)}", op_tok, TypeError_)
        infer_body = opdef.extra.get("infer_body")
        if infer_body is not None and body is None:
            raise self.error(f"{opdef.name} needs a body graph after it: body NAME(...) -> (...) {{ ... }}", op_tok)
        try:
            if infer_body is not None:
                expected = infer_body([v.type for v in inputs], attrs, body)
            else:
                expected = opdef.infer([v.type for v in inputs], attrs)
        except DlirError as e:
            raise self.locate(e, op_tok) from None
        if len(expected) != len(results):
            raise self.error(
                f"{opdef.name} gives {len(expected)} result(s) here, but {len(results)} are written",
                results[0][0] if results else op_tok,
                TypeError_,
            )
        for (tok, t), want in zip(results, expected, strict=True):
            if t != want:
                raise self.error(
                    f"%{_value_name(tok)} is written {t}, but {opdef.name} gives {want}",
                    tok,
                    TypeError_,
                    hint="result types must be what the op's shape rule infers",
                )

    # -- attributes -------------------------------------------------------------------
    def canonical(self, opdef: OpDef, op_tok: Tok, inputs: list[Value], attrs: dict[str, Any]) -> dict[str, Any]:
        """Attributes whose default depends on the input types are fixed as the builder fixes them."""
        if opdef.canonical is None:
            return attrs
        try:
            return opdef.canonical([v.type for v in inputs], attrs)
        except DlirError as e:
            raise self.locate(e, op_tok) from None

    def attrs(self, opdef: OpDef, op_tok: Tok) -> dict[str, Any]:
        given: dict[str, Any] = {}
        toks: dict[str, Tok] = {}
        if self.accept("{"):
            while not self.at("}"):
                tok = self.peek()
                name = self.name("an attribute name")
                if name in given:
                    raise self.error(f"attribute '{name}' given twice", tok)
                self.expect("=")
                vtok = self.peek()
                a = opdef.attr(name)
                try:
                    given[name] = _convert(a.kind if a else None, self.attr_value())
                except _Bad as e:
                    raise self.error(f"{opdef.name}: attribute '{name}' {e}", vtok, TypeError_) from None
                toks[name] = tok
                if not self.accept(","):
                    break
            self.expect("}")
        try:
            return check_attrs(opdef, given)
        except DlirError as e:
            at = next((t for n, t in toks.items() if f"'{n}'" in e.message or f" {n}=" in e.message), op_tok)
            raise self.locate(e, at) from None

    def attr_value(self) -> Any:
        tok = self.peek()
        if tok.kind == "str":
            self.next()
            return json.loads(tok.text)
        if self.accept("["):
            items = []
            while not self.at("]"):
                items.append(self.attr_value())
                if not self.accept(","):
                    break
            self.expect("]")
            return items
        return self.expr()

    def expr(self) -> Any:
        """A number, a word, or a polynomial of ints and symbols (``B*T + 2``) as a Dim."""
        start = self.peek()
        terms = [(-1 if self.accept("-") else 1, self.factors())]
        while self.at("+") or self.at("-"):
            terms.append((1 if self.next().text == "+" else -1, self.factors()))
        if len(terms) == 1 and len(terms[0][1]) == 1:
            sign, (atom,) = terms[0]
            return atom if sign > 0 else _negate(atom)
        total = Dim.of(0)
        for sign, factors in terms:
            term = Dim.of(sign)
            for f in factors:
                try:
                    term = term * _as_dim(f)
                except _Bad as e:
                    raise self.error(f"bad dim expression: {e}", start) from None
            total = total + term
        return total

    def factors(self) -> list[Any]:
        out = [self.atom()]
        while self.accept("*"):
            out.append(self.atom())
        return out

    def atom(self) -> Any:
        tok = self.next()
        if tok.kind == "num":
            return int(tok.text) if tok.text.isdigit() else float(tok.text)
        if tok.kind == "name" or tok.text == "?":
            return _Sym(tok.text)
        raise self.error(f"expected a value, found {_describe(tok)}", tok)

    # -- pieces ------------------------------------------------------------------------
    def type_(self) -> TensorType:
        tok = self.expect_kind("name", "a type such as f32[B, 4]")
        if tok.text not in DTYPE_NAMES:
            raise self.error(f"unknown dtype '{tok.text}'", tok, hint=did_you_mean(tok.text, DTYPE_NAMES))
        self.expect("[")
        dims = []
        while not self.at("]"):
            dtok = self.peek()
            try:
                dims.append(_as_dim(self.expr()))
            except _Bad as e:
                raise self.error(f"bad dim: {e}", dtok) from None
            if not self.accept(","):
                break
        self.expect("]")
        return TensorType(DType(tok.text), tuple(dims))

    def init(self) -> Init:
        kind = self.name("an init such as zeros()")
        self.expect("(")
        args = []
        while not self.at(")"):
            key = self.name("an init argument name")
            self.expect("=")
            vtok = self.peek()
            v = self.expr()
            if isinstance(v, _Sym) and v.name in ("inf", "nan"):
                v = _to_float(v)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise self.error("init arguments are numbers", vtok)
            args.append((key, v))
            if not self.accept(","):
                break
        self.expect(")")
        return Init(kind, tuple(args))

    def opt_loc(self) -> SourceLoc:
        if not (self.at("loc", "name") and self.peek(1).text == "("):
            return UNKNOWN_LOC
        self.next()
        self.expect("(")
        file = json.loads(self.expect_kind("str", "a quoted file name").text)
        self.expect(":")
        line = int(self.expect_kind("num", "a line number").text)
        self.expect(":")
        col = int(self.expect_kind("num", "a column number").text)
        self.expect(")")
        return SourceLoc(file, line, col)

    def name(self, what: str) -> str:
        tok = self.next()
        if tok.kind == "name":
            return tok.text
        if tok.kind == "str":
            return cast(str, json.loads(tok.text))
        raise self.error(f"expected {what}, found {_describe(tok)}", tok)

    def define(self, tok: Tok, g: Graph) -> None:
        name = _value_name(tok)
        if any(name in scope for scope in self.scopes) or name in g._used:
            raise self.error(f"%{name} is defined twice", tok, hint="every value is assigned exactly once (SSA)")

    def use(self) -> Value:
        tok = self.expect_kind("value", "a value such as %x")
        name = _value_name(tok)
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        known = [n for s in self.scopes for n in s]
        hint = did_you_mean(name, known) or "values must be defined before use"
        raise self.error(f"undefined value %{name}", tok, hint=hint)


class _Bad(Exception):
    """An attribute value of the wrong kind (becomes a located DlirError)."""


def _value_name(tok: Tok) -> str:
    body = tok.text[1:]
    return json.loads(body) if body.startswith('"') else body


def _describe(tok: Tok) -> str:
    return "the end of the text" if tok.kind == "eof" else f"'{tok.text}'"


def _negate(atom: Any) -> Any:
    if isinstance(atom, _Sym):
        return _Sym(atom.name, not atom.neg)
    return -atom


def _as_dim(v: Any) -> Dim:
    if isinstance(v, Dim):
        return v
    if isinstance(v, int):
        return Dim.of(v)
    if isinstance(v, _Sym):
        d = UNKNOWN if v.name == "?" else Dim.of(v.name)
        return -d if v.neg else d
    raise _Bad(f"expected an int, a symbol or ?, got {v!r}")


def _to_float(v: _Sym) -> float:
    x = float(v.name)
    return -x if v.neg else x


def _word(v: Any, words: dict[str, Any], what: str) -> Any:
    if isinstance(v, _Sym) and not v.neg and v.name in words:
        return words[v.name]
    raise _Bad(f"must be {what}")


_BOOLS = {"true": True, "false": False}


def _convert(kind: str | None, v: Any) -> Any:
    """Turn a parsed attribute value into what the attribute kind holds."""
    if kind in ("ints", "axes?", "dims") and isinstance(v, list):
        return [_convert(kind + "[]", x) for x in v]
    if kind == "dims[]":
        return v if isinstance(v, int) else _as_dim(v)
    if kind in ("int", "ints", "ints[]", "axes?", "axes?[]"):
        if kind == "axes?" and v == _Sym("none"):
            return None
        if isinstance(v, int):
            return v
        raise _Bad("must be an int" + (" or a list of ints" if kind != "int" else ""))
    if kind in ("float", "float?"):
        if kind == "float?" and v == _Sym("none"):
            return None
        if isinstance(v, (int, float)):
            return v
        if isinstance(v, _Sym) and v.name in ("inf", "nan"):
            return _to_float(v)
        raise _Bad("must be a number" + (" or none" if kind == "float?" else ""))
    if kind == "bool":
        return _word(v, _BOOLS, "true or false")
    if kind == "str":
        if isinstance(v, str):
            return v
        raise _Bad("must be a quoted string")
    if kind == "dtype":
        return _word(v, {d: DType(d) for d in DTYPE_NAMES}, "a dtype such as f32")
    if kind == "scalar":
        if isinstance(v, list):
            return [_convert("scalar", x) for x in v]
        if isinstance(v, (int, float)):
            return v
        if isinstance(v, _Sym) and v.name in ("inf", "nan"):
            return _to_float(v)
        return _word(v, _BOOLS, "a number, true, false or a list of them")
    return _generic(v)


def _generic(v: Any) -> Any:
    if isinstance(v, list):
        return [_generic(x) for x in v]
    if isinstance(v, _Sym) and not v.neg:
        return {"true": True, "false": False, "none": None}.get(v.name, v.name)
    return v


# -- public API ----------------------------------------------------------------------


def parse_program(text: str, filename: str = "<ir>") -> list[Graph]:
    """Every graph in ``text``; a DlirError at the offending line:col on bad input."""
    return _Parser(text, filename).program()


def parse_graph(text: str, filename: str = "<ir>") -> Graph:
    """The one graph in ``text``."""
    p = _Parser(text, filename)
    g = p.graph("model")
    if p.peek().kind != "eof":
        raise p.error(f"expected the end of the text after graph {g.name}, found {_describe(p.peek())}", p.peek())
    return g


__all__ = ["parse_graph", "parse_program"]
