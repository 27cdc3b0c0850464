"""Source text -> Lark parse tree, with syntax errors turned into located ParseErrors."""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any, cast

from dlir.errors import ParseError, SourceLoc
from dlir.ir.gc_pause import gc_paused

# Friendly names for the grammar's terminals in "expected ..." messages.
_TOKEN_NAMES = {
    "NAME": "a name",
    "INT": "an integer",
    "FLOAT": "a number",
    "STRING": "a string",
    "DTYPE": "a dtype",
    "COMP_OP": "a comparison",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "COMMA": "','",
    "COLON": "':'",
    "EQUAL": "'='",
    "PLUS": "'+'",
    "MINUS": "'-'",
    "STAR": "'*'",
    "SLASH": "'/'",
    "AT": "'@'",
    "DOT": "'.'",
    "QMARK": "'?'",
    "__ANON_0": "'->'",
    "$END": "the end of the file",
}

MAX_SOURCE_BYTES = 16 * 1024 * 1024
MAX_CACHED_CHARS = 64 * 1024  # larger sources are parsed each time rather than kept in memory


@functools.lru_cache(maxsize=1)
def _parser() -> Any:
    import lark

    text = resources.files("dlir.grammar").joinpath("dlir.lark").read_text(encoding="utf-8")
    return lark.Lark(text, parser="lalr", propagate_positions=True, maybe_placeholders=True, cache=True)


def decode_source(data: bytes, filename: str) -> str:
    """UTF-8 text, or a ParseError pointing at the first invalid byte."""
    if len(data) > MAX_SOURCE_BYTES:
        raise ParseError(f"file is larger than {MAX_SOURCE_BYTES // (1024 * 1024)} MiB", SourceLoc(filename, 1, 1))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        before = data[: e.start]
        line = before.count(b"\n") + 1
        col = e.start - (before.rfind(b"\n") + 1) + 1
        raise ParseError(
            f"invalid UTF-8 byte 0x{data[e.start]:02x}",
            SourceLoc(filename, line, col),
            hint="dlir files must be UTF-8 text",
        ) from None


def parse(text: str, filename: str) -> Any:
    """Parse source text into a Lark tree; syntax errors become ParseError."""
    import lark

    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise ParseError("NUL character in source", SourceLoc(filename, line, 1), hint="is this a binary file?")
    try:
        return _parse_cached(text) if len(text) <= MAX_CACHED_CHARS else _parse_tree(text)
    except lark.exceptions.UnexpectedToken as e:
        tok = e.token
        what = "end of file" if tok.type == "$END" else f"'{tok}'"
        expected = _expected(e.expected)
        loc = SourceLoc(filename, tok.line or _last_line(text), tok.column or 1)
        raise ParseError(f"unexpected {what}", loc, hint=f"expected {expected}" if expected else None) from None
    except lark.exceptions.UnexpectedCharacters as e:
        pos = cast(int, e.pos_in_stream)  # UnexpectedCharacters always sets it
        ch = text[pos] if pos < len(text) else "?"
        raise ParseError(
            f"unexpected character {ch!r}", SourceLoc(filename, e.line, e.column), hint=_char_hint(ch)
        ) from None
    except lark.exceptions.UnexpectedEOF as e:
        raise ParseError(
            "unexpected end of file", SourceLoc(filename, _last_line(text), 1), hint=f"expected {_expected(e.expected)}"
        ) from None


def _parse_tree(text: str) -> Any:
    with gc_paused():  # see dlir.ir.gc_pause: a parse tree is many long-lived objects
        return _parser().parse(text)


# Every program that says `use nn` parses the same library text again; its tree
# (like any parse tree here) is only read, never changed, so the trees of a few
# small texts are kept. A text that fails to parse is not kept: it raises each time.
_parse_cached = functools.lru_cache(maxsize=8)(_parse_tree)


def _last_line(text: str) -> int:
    return max(1, text.count("\n") + (0 if text.endswith("\n") else 1))


def _expected(names: Any) -> str:
    items = sorted({_TOKEN_NAMES.get(n, f"'{n.lower()}'" if n.isupper() and n.isalpha() else n) for n in names})
    if len(items) > 8:
        items = items[:8] + ["..."]
    return ", ".join(items)


def _char_hint(ch: str) -> str | None:
    if ch == "'":
        return "strings use double quotes"
    if ch in ";":
        return "statements are separated by newlines, not ';'"
    return None
