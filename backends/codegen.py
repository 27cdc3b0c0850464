"""Shared pieces of Python code generation for the torch and tensorflow targets.

Generated code never contains user text except as identifiers that went through
:class:`Namespace`, numbers, and string literals written with :func:`py_str`.
"""

from __future__ import annotations

import builtins
import keyword
import math
import re

from dlir.errors import LoweringError, SourceLoc
from dlir.ir.graph import Value
from dlir.ir.types import Dim
from dlir.runtime import safetensors_file

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")

# Names the generated modules rely on; a user name never shadows them.
RESERVED = frozenset(
    set(keyword.kwlist)
    | set(keyword.softkwlist)
    | set(dir(builtins))
    | {"self", "torch", "tf", "np", "nn", "F", "math", "dlir", "super", "__init__", "__class__"}
)


# Module-level names of a generated file that reads a weights file (``dlirc compile --weights``).
WEIGHTS_NAMES = frozenset({"json", "math", "os", "np", "WEIGHTS_FILE", "SAFETENSORS_DTYPES"}) | {
    "read_safetensors",
    "checked_weights",
}


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


def weights_reader(file_name: str) -> list[str]:
    """The module-level source a generated file needs to read its weights file ``file_name``.

    The reader of :mod:`dlir.runtime.safetensors_file` (numpy and the standard library:
    the file imports ``json``, ``math``, ``os`` and ``numpy as np``) and ``WEIGHTS_FILE``,
    the weights file's path beside the generated one.
    """
    where = f"os.path.join(os.path.dirname(os.path.abspath(__file__)), {py_str(file_name)})"
    return [safetensors_file.standalone_source().rstrip("\n"), "", f"WEIGHTS_FILE = {where}"]


def read_weights(params: list[Value]) -> list[str]:
    """The constructor's statement reading ``weights`` into ``w``, each param held to its shape and dtype."""
    lines = ["w = checked_weights(read_safetensors(weights), {"]
    for p in params:
        if not p.type.is_static:
            raise LoweringError(
                f"param '{p.name}' has a symbolic shape {p.type}",
                p.loc,
                hint="param shapes must be known at compile time",
            )
        dtype = safetensors_file.safetensors_dtype(p.type.dtype)
        lines.append(f"    {py_str(p.name)}: ({p.type.static_shape()!r}, {py_str(dtype)}),")
    return [*lines, "}, weights)"]
