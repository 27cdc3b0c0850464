"""The one error hierarchy of dlir.

Every user mistake becomes a :class:`DlirError` that knows where in the source it
happened and renders as ``FILE:LINE:COL: error: message``, the source line, a caret
and a hint. ``assert`` is kept for dlir's own invariants.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class SourceLoc:
    """A position in a source file (1-based line and column).

    A position inside a library definition (the stdlib) also knows ``site``: the line
    of the user's file whose call led there, which generated code names first. It is
    not part of the position's identity (equality, hash, the IR text).
    """

    file: str
    line: int
    col: int
    site: SourceLoc | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


UNKNOWN_LOC = SourceLoc("<unknown>", 0, 0)


class DlirError(Exception):
    """A mistake in the user's input, with its location and a hint."""

    kind = "error"

    def __init__(
        self,
        message: str,
        loc: SourceLoc | None = None,
        hint: str | None = None,
        source_line: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.loc = loc
        self.hint = hint
        self.source_line = source_line
        # "in layer Dense (fc), created at m.dlir:3:10": how the user's line led to the fault
        self.notes: list[str] = []

    def with_loc(self, loc: SourceLoc | None) -> DlirError:
        """Attach ``loc`` when the error has none yet; returns self."""
        if self.loc is None or self.loc == UNKNOWN_LOC:
            self.loc = loc
        return self

    def render(self, sources: dict[str, str] | None = None) -> str:
        """Format as ``FILE:LINE:COL: error: msg``, the line, a caret and the hint."""
        where = str(self.loc) if self.loc and self.loc.line > 0 else (self.loc.file if self.loc else "dlir")
        out = [f"{where}: error: {self.message}"]
        line = self.source_line
        if line is None and self.loc is not None and sources and self.loc.file in sources:
            lines = sources[self.loc.file].splitlines()
            if 0 < self.loc.line <= len(lines):
                line = lines[self.loc.line - 1]
        if line is not None and self.loc is not None and self.loc.col > 0:
            out.append(f"    {line}")
            # Tabs keep their width so the caret lines up under the culprit.
            prefix = "".join(ch if ch == "\t" else " " for ch in line[: self.loc.col - 1])
            out.append(f"    {prefix}^")
        out += [f"note: {n}" for n in self.notes]
        if self.hint:
            out.append(f"hint: {self.hint}")
        return "\n".join(out)

    def __str__(self) -> str:
        return self.render()


class ParseError(DlirError):
    """The source text is not valid dlir (syntax, encoding)."""


class TypeError_(DlirError):
    """Names, types, shapes, dtypes or attributes do not fit."""


class VerifyError(DlirError):
    """The IR broke one of its invariants (a bug in dlir or in hand-written IR)."""


class PassError(DlirError):
    """A pass failed."""


class LoweringError(DlirError):
    """A target cannot express something in the graph."""


class RuntimeMismatch(DlirError):
    """Inputs given at run time do not match the model's declared types."""


class UsageError(DlirError):
    """The command line or API was called wrongly (exit status 2 in the CLI)."""


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """A 'did you mean' hint for a misspelt ``name``, or None."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=3, cutoff=0.6)
    if not close:
        return None
    return "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
