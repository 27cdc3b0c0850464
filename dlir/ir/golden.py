"""Golden IR tests: print -> parse -> print must be byte-identical, and match a file.

The entry points of golden IR tests (``tests/test_ir_text.py``, ``tests/test_scan.py``):
:mod:`dlir.ir.printer` writes the text and :mod:`dlir.ir.parser` reads it back.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from pathlib import Path

from dlir.errors import VerifyError
from dlir.ir.graph import Graph
from dlir.ir.parser import parse_program
from dlir.ir.printer import print_program
from dlir.ir.verifier import verify


def round_trip(graphs: Graph | Sequence[Graph]) -> str:
    """Verify, print, parse back, verify, print again; the texts must be identical. Returns the text."""
    gs = [graphs] if isinstance(graphs, Graph) else list(graphs)
    for g in gs:
        verify(g)
    text = print_program(gs)
    again = parse_program(text)
    for g in again:
        verify(g)
    text2 = print_program(again)
    if text2 != text:
        lines = difflib.unified_diff(text.splitlines(), text2.splitlines(), "printed", "reparsed", lineterm="")
        diff = "\n".join(lines)
        raise VerifyError("IR text does not survive print -> parse -> print:\n" + diff)
    return text


def check_golden(graphs: Graph | Sequence[Graph], path: str | os.PathLike[str], update: bool | None = None) -> None:
    """Compare the round-tripped text of ``graphs`` with a golden file.

    With ``update`` (default: the environment variable ``DLIR_UPDATE_GOLDEN=1``)
    the file is (re)written instead. A mismatch raises AssertionError with a diff.
    """
    text = round_trip(graphs)
    path = Path(path)
    if update is None:
        update = os.environ.get("DLIR_UPDATE_GOLDEN") == "1"
    if update or not path.exists():
        if not update:
            raise AssertionError(f"golden file {path} is missing; run with DLIR_UPDATE_GOLDEN=1 to create it")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    want = path.read_text(encoding="utf-8")
    if want != text:
        diff = "\n".join(difflib.unified_diff(want.splitlines(), text.splitlines(), str(path), "actual", lineterm=""))
        raise AssertionError(f"IR differs from {path} (DLIR_UPDATE_GOLDEN=1 rewrites it):\n{diff}")


__all__ = ["round_trip", "check_golden"]
