"""The IR text's tokens: what :mod:`dlir.ir.parser` reads, one regular expression.

Whitespace and newlines separate tokens only; ``#`` starts a comment (golden files
may carry notes). A character no token starts with is a :class:`ParseError` at its
line and column.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from dlir.errors import ParseError, SourceLoc

_STRING = r'"(?:[^"\\\x00-\x1f]|\\.)*"'
_TOKEN = re.compile(
    rf"""
    (?P<ws>[ \t\r\n]+|\#[^\n]*)
  | (?P<value>%(?:[A-Za-z0-9_][A-Za-z0-9_.]*|{_STRING}))
  | (?P<str>{_STRING})
  | (?P<num>\d+\.\d*(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+)
  | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<punct>->|[()\[\]{{}},:=*+\-?])
    """,
    re.VERBOSE,
)


class Tok(NamedTuple):
    """One token and where it starts (1-based)."""

    kind: str  # value | str | num | name | punct | eof
    text: str
    line: int
    col: int


def tokenize(text: str, filename: str = "<ir>") -> list[Tok]:
    """Every token of ``text``, ending with an ``eof`` token."""
    toks: list[Tok] = []
    pos, line, line_start = 0, 1, 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            col = pos - line_start + 1
            src = text[line_start:].split("\n", 1)[0]
            raise ParseError(f"unexpected character {text[pos]!r}", SourceLoc(filename, line, col), source_line=src)
        kind = m.lastgroup or ""
        if kind != "ws":
            toks.append(Tok(kind, m.group(), line, pos - line_start + 1))
        newlines = m.group().count("\n")
        if newlines:
            line += newlines
            line_start = m.start() + m.group().rindex("\n") + 1
        pos = m.end()
    toks.append(Tok("eof", "", line, pos - line_start + 1))
    return toks
