"""Shared pieces of Python code generation for the torch and tensorflow targets.

Generated code never contains user text except as identifiers that went through
:class:`Namespace`, numbers, and string literals written with :func:`py_str`.
"""

from __future__ import annotations

import builtins
import keyword
import math
import re

from dlir.errors import SourceLoc
from dlir.ir.types import Dim

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")

# Names the generated modules rely on; a user name never shadows them.
RESERVED = frozenset(
    set(keyword.kwlist)
    | set(keyword.softkwlist)
    | set(dir(builtins))
    | {"self", "torch", "tf", "np", "nn", "F", "math", "dlir", "super", "__init__", "__class__"}
)


class Namespace:
    """Hands out legal, unique Python identifiers derived from dlir names.

    ``fc1.w`` becomes ``fc1_w``; ``lambda`` becomes ``lambda_``; a clash gets a
    numeric suffix. Asking again for the same key returns the same identifier.
    """

    def __init__(self, reserved: set[str] | frozenset[str] = RESERVED) -> None:
        self._reserved = set(reserved)
        self._taken: set[str] = set()
        self._by_key: dict[object, str] = {}

    def name(self, base: str, key: object | None = None) -> str:
        if key is not None and key in self._by_key:
            return self._by_key[key]
        cand = re.sub(r"[^A-Za-z0-9_]", "_", base) or "v"
        if cand[0].isdigit():
            cand = "v_" + cand
        if cand in self._reserved or cand.startswith("__"):
            cand = cand.strip("_") + "_" if cand.strip("_") else "v_"
            if cand in self._reserved:
                cand += "_"
        out, i = cand, 1
        while out in self._taken or out in self._reserved:
            out = f"{cand}_{i}"
            i += 1
        assert _IDENT.match(out) and not keyword.iskeyword(out)
        self._taken.add(out)
        if key is not None:
            self._by_key[key] = out
        return out


def is_plain_identifier(name: str) -> bool:
    """A name usable as-is as an attribute (no keyword, no dunder)."""
    return bool(_IDENT.match(name)) and not keyword.iskeyword(name) and not name.startswith("__")


def py_str(s: str) -> str:
    """A safe Python string literal."""
    return repr(str(s))


def py_num(v: float | int | bool) -> str:
    """A Python literal for a number, including inf and nan."""
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, int):
        return str(v)
    if math.isnan(v):
        return "float('nan')"
    if math.isinf(v):
        return "float('inf')" if v > 0 else "float('-inf')"
    return repr(float(v))


def loc_comment(loc: SourceLoc) -> str:
    """A trailing comment naming the .dlir source line (file names escaped).

    For a node of a library layer (the stdlib), the user's line that called it comes
    first and the library's line second: ``# m.dlir:4:12, inside <stdlib>/nn.dlir:18:27``.
    """
    if loc.line <= 0:
        return ""
    if loc.site is not None and loc.site.line > 0:
        return f"  # {_loc_text(loc.site)}, inside {_loc_text(loc)}"
    return f"  # {_loc_text(loc)}"


def _loc_text(loc: SourceLoc) -> str:
    file = loc.file.encode("unicode_escape").decode("ascii").replace("\n", " ")
    return f"{file}:{loc.line}:{loc.col}"


def dim_expr(d: Dim | int, sym_names: dict[str, str]) -> str:
    """Python source for a dim from the identifiers holding symbol values."""
    if isinstance(d, int):
        return str(d)
    assert not d.unknown
    parts = []
    for mono, coef in d.terms:
        factors = [sym_names[s] for s in mono]
        if coef != 1 or not factors:
            factors.insert(0, str(coef))
        parts.append(" * ".join(factors))
    return " + ".join(parts) if parts else "0"
