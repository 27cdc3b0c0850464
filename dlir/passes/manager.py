"""The pass manager: named passes, pipelines by level, verification and instruments.

A pass is a small dataclass whose fields are its options and whose ``run(graph)``
rewrites the graph in place and says whether it changed anything. Passes are
found by name (:func:`register_pass`), so a pipeline is a string such as
``"cse,dce"`` or ``"fold{fold_params=true},dce"``. :class:`PassManager` runs a
pipeline, verifies the graph after every pass that changed it, and reports a
failing pass as a :class:`~dlir.errors.PassError` naming the pass and showing the
IR around the fault. Instruments watch the run: :class:`PrintIR`
(print-after-all / print-after=NAME / print-after-change), :class:`PassTiming`
and :class:`DumpIR`.

Levels (DESIGN §5): ``-O0`` runs nothing; ``-O1`` fold, dce, cse; ``-O2`` adds
simplify, licm (scan bodies), fuse and rnn (marks scans that are exactly an LSTM/GRU
cell, which torch and ONNX lower to their fused kernels); ``-O3`` adds the passes of its target
(:data:`TARGET_PASSES`: ``layout`` for tensorflow, whose CPU conv kernels want NHWC).
"""

from __future__ import annotations

import dataclasses
import re
import sys
import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TextIO, cast

from dlir.errors import UNKNOWN_LOC, DlirError, PassError, UsageError, VerifyError, did_you_mean
from dlir.ir.gc_pause import gc_paused
from dlir.ir.graph import Graph, Node
from dlir.ir.printer import print_graph
from dlir.ir.verifier import ir_excerpt, verify


@dataclass
class Pass:
    """A named in-place graph rewrite; its options are its dataclass fields.

    A pass receives verified IR and leaves verified IR. While it works it may set
    ``self.at`` to the node it is looking at, so that a crash is shown there.
    Nodes a pass does not understand (unknown ops, bodies it does not look into)
    are left as they are.
    """

    name: ClassVar[str] = ""
    # Not annotated, so not a dataclass field (no option); the cast gives mypy the instance type.
    at = cast("object | None", None)

    def run(self, graph: Graph) -> bool:
        """Rewrite ``graph`` in place; return whether anything changed."""
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def describe(self) -> str:
        """``name`` or ``name{opt=value}`` for options that differ from their defaults."""
        changed = [
            f"{f.name}={_fmt_option(getattr(self, f.name))}"
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != f.default
        ]
        return self.name + ("{" + ",".join(changed) + "}" if changed else "")


PASSES: dict[str, type[Pass]] = {}


def register_pass(cls: type[Pass]) -> type[Pass]:
    """Class decorator: make a pass findable by its ``name``."""
    assert cls.name and cls.name not in PASSES, f"pass {cls.name!r} registered twice or unnamed"
    PASSES[cls.name] = cls
    return cls


def all_passes() -> dict[str, type[Pass]]:
    _load_passes()
    return dict(sorted(PASSES.items()))


def _load_passes() -> None:
    import dlir.passes  # noqa: F401  (each pass module registers itself)


# -- pipelines ---------------------------------------------------------------------------

LEVELS: dict[int, tuple[str, ...]] = {
    0: (),
    1: ("fold", "dce", "cse"),
    # simplify leaves the nodes it bypassed for dce; cse after simplify merges what it made alike.
    # fuse after cse, so that values cse merged are seen with all their users.
    # rnn last: it marks scans whose body is exactly an LSTM/GRU cell, as licm and fuse left them.
    2: ("fold", "simplify", "dce", "cse", "licm", "fuse", "rnn"),
    3: ("fold", "simplify", "dce", "cse", "licm", "fuse", "rnn"),  # + TARGET_PASSES
}

# Passes a level adds for one target, after the level's own.
TARGET_PASSES: dict[tuple[int, str], tuple[str, ...]] = {
    (3, "tensorflow"): ("layout",),  # conv stacks channels-last, transposed at their ends only
}


def level_pipeline(level: int, target: str | None = None) -> list[Pass]:
    """The passes of ``-O{level}`` for ``target`` (None: the target-independent ones)."""
    if level not in LEVELS:
        raise UsageError(f"unknown optimisation level {level}", hint="use 0, 1, 2 or 3")
    names = LEVELS[level] + TARGET_PASSES.get((level, target or ""), ())
    return [make_pass(n) for n in names]


def make_pass(name: str, options: dict[str, str | Any] | None = None) -> Pass:
    """The pass ``name`` with ``options`` (strings from a pipeline text are converted)."""
    passes = all_passes()
    if name not in passes:
        raise UsageError(f"unknown pass '{name}'", hint=did_you_mean(name, passes) or "passes: " + ", ".join(passes))
    cls = passes[name]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, raw in (options or {}).items():
        if key not in fields:
            known = ", ".join(fields) or "no options"
            raise UsageError(
                f"pass '{name}' has no option '{key}'", hint=did_you_mean(key, fields) or f"{name} takes {known}"
            )
        kwargs[key] = _convert_option(name, key, fields[key].default, raw)
    return cls(**kwargs)


_ITEM = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_-]*)\s*(?:\{([^{}]*)\})?\s*$")


def parse_pipeline(text: str) -> list[Pass]:
    """``"fold{fold_params=true},dce,cse"`` -> passes. An empty text is the empty pipeline."""
    out = []
    for item in _split_items(text):
        m = _ITEM.match(item)
        if not m:
            raise UsageError(
                f"bad pass '{item.strip()}' in pipeline '{text}'", hint="write NAME or NAME{option=value,...}"
            )
        options: dict[str, str] = {}
        for kv in filter(str.strip, (m.group(2) or "").split(",")):
            key, sep, value = kv.partition("=")
            if not sep or not key.strip():
                raise UsageError(f"bad option '{kv.strip()}' of pass {m.group(1)}", hint="write option=value")
            options[key.strip()] = value.strip()
        out.append(make_pass(m.group(1), options))
    return out


def _split_items(text: str) -> list[str]:
    items, depth, cur = [], 0, ""
    for ch in text:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    items.append(cur)
    return [i for i in items if i.strip()]


def _convert_option(pass_name: str, key: str, default: Any, raw: Any) -> Any:
    if not isinstance(raw, str) or isinstance(default, str):
        return raw
    try:
        if isinstance(default, bool):
            return {"true": True, "false": False, "1": True, "0": False}[raw.lower()]
        if isinstance(default, int):
            return _to_int(raw)
        if isinstance(default, float):
            return float(raw)
    except (KeyError, ValueError):
        pass
    else:
        return raw
    want = {bool: "true or false", int: "an int", float: "a number"}[type(default)]
    raise UsageError(f"option {key} of pass {pass_name} must be {want}, got '{raw}'")


def _to_int(raw: str) -> int:
    """``10``, ``1e6`` or ``1_000`` (whole numbers only)."""
    try:
        return int(raw)
    except ValueError:
        x = float(raw)
        if not x.is_integer():
            raise
        return int(x)


def _fmt_option(v: Any) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


# -- instruments -------------------------------------------------------------------------


@dataclass
class PassRecord:
    """What one pass did in one run."""

    index: int  # 1-based position in the pipeline
    name: str
    description: str
    changed: bool
    seconds: float
    verify_seconds: float
    nodes_before: int
    nodes_after: int


class Instrument:
    """Watches a pipeline run; override the hooks you need."""

    def before_pipeline(self, graph: Graph) -> None:
        pass

    def after_pass(self, record: PassRecord, graph: Graph) -> None:
        pass

    def after_pipeline(self, records: list[PassRecord], graph: Graph) -> None:
        pass


class PrintIR(Instrument):
    """Print the IR after passes: all of them, those named in ``only``, and/or only when they changed it.

    Each print starts with a ``#`` comment line, so the stream stays readable as IR text.
    """

    def __init__(
        self, stream: TextIO | None = None, only: Iterable[str] | None = None, changed_only: bool = False
    ) -> None:
        self.stream = stream
        self.only = set(only) if only is not None else None
        self.changed_only = changed_only

    def after_pass(self, record: PassRecord, graph: Graph) -> None:
        if self.only is not None and record.name not in self.only:
            return
        if self.changed_only and not record.changed:
            return
        what = f"changed, {record.nodes_before} -> {record.nodes_after} nodes" if record.changed else "no change"
        out = self.stream or sys.stderr
        out.write(f"# IR after pass {record.index} '{record.description}' ({what})\n")
        out.write(print_graph(graph) + "\n")


class PassTiming(Instrument):
    """A table of the time each pass (and the verifier after it) took, printed after the pipeline."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self.records: list[PassRecord] = []

    def after_pipeline(self, records: list[PassRecord], graph: Graph) -> None:
        self.records = list(records)
        (self.stream or sys.stderr).write(format_timing(graph.name, records) + "\n")


def format_timing(model: str, records: Sequence[PassRecord]) -> str:
    """The pass timing table."""
    run = sum(r.seconds for r in records)
    ver = sum(r.verify_seconds for r in records)
    total = run + ver
    lines = [f"pass timing for {model}: {len(records)} pass(es), {total * 1e3:.3f} ms total"]
    header = ("#", "pass", "time (ms)", "%", "verify (ms)", "nodes", "changed")
    rows = [
        (
            str(r.index),
            r.description,
            f"{r.seconds * 1e3:.3f}",
            f"{100 * r.seconds / total:.1f}%" if total > 0 else "-",
            f"{r.verify_seconds * 1e3:.3f}" if r.changed else "-",
            f"{r.nodes_before} -> {r.nodes_after}",
            "yes" if r.changed else "no",
        )
        for r in records
    ]
    share = f"{100 * run / total:.1f}%" if total > 0 else "-"
    rows.append(("", "total", f"{run * 1e3:.3f}", share, f"{ver * 1e3:.3f}", "", ""))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    right = {0, 2, 3, 4}
    for row in [header, *rows]:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  " + "  ".join(cells).rstrip())
    return "\n".join(lines)


class DumpIR(Instrument):
    """Write the IR before the pipeline (``00-input.ir``) and after each pass (``01-fold.ir``, ...) into a folder."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.files: list[Path] = []

    def before_pipeline(self, graph: Graph) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"cannot create the dump folder '{self.dir}': {e.strerror}") from None
        self._write(0, "input", graph)

    def after_pass(self, record: PassRecord, graph: Graph) -> None:
        self._write(record.index, record.name, graph)

    def _write(self, index: int, name: str, graph: Graph) -> None:
        path = self.dir / f"{index:02d}-{name}.ir"
        try:
            path.write_text(print_graph(graph), encoding="utf-8")
        except OSError as e:
            raise UsageError(f"cannot write '{path}': {e.strerror}") from None
        self.files.append(path)


# -- the manager -------------------------------------------------------------------------


class PassManager:
    """Runs passes in order on a graph (in place), verifying after each pass that changed it."""

    def __init__(self, passes: Sequence[Pass], *, verify: bool = True, instruments: Sequence[Instrument] = ()) -> None:
        self.passes = list(passes)
        self.verify = verify
        self.instruments = list(instruments)
        self.records: list[PassRecord] = []

    @classmethod
    def for_level(cls, level: int, **kwargs: Any) -> PassManager:
        return cls(level_pipeline(level), **kwargs)

    @classmethod
    def from_text(cls, text: str, **kwargs: Any) -> PassManager:
        return cls(parse_pipeline(text), **kwargs)

    def describe(self) -> str:
        return ",".join(p.describe() for p in self.passes)

    def run(self, graph: Graph) -> bool:
        """Run the pipeline on ``graph`` in place; return whether any pass changed it."""
        if self.verify:
            verify(graph)  # a pass receives verified IR; a fault here is not any pass's
        self.records = []
        for inst in self.instruments:
            inst.before_pipeline(graph)
        for i, p in enumerate(self.passes, 1):
            record = self._run_one(i, p, graph)
            self.records.append(record)
            for inst in self.instruments:
                inst.after_pass(record, graph)
        for inst in self.instruments:
            inst.after_pipeline(self.records, graph)
        return any(r.changed for r in self.records)

    def _run_one(self, index: int, p: Pass, graph: Graph) -> PassRecord:
        before = count_nodes(graph)
        p.at = None
        t0 = time.perf_counter()
        try:
            changed = bool(p.run(graph))
        except Exception as e:  # noqa: BLE001 - every failure becomes a PassError naming the pass
            raise _crash(p, graph, e) from e
        t1 = t2 = time.perf_counter()
        if changed and self.verify:
            try:
                verify(graph)
            except VerifyError as e:
                raise PassError(
                    f"pass '{p.describe()}' left invalid IR: {e.message}",
                    e.loc,
                    hint=(e.hint + "; " if e.hint else "")
                    + f"this is a bug in the pass; --print-after={p.name} shows its output",
                ) from e
            t2 = time.perf_counter()
        return PassRecord(index, p.name, p.describe(), changed, t1 - t0, t2 - t1, before, count_nodes(graph))


def _crash(p: Pass, graph: Graph, e: Exception) -> PassError:
    at = p.at
    where = f" at {at!r}" if isinstance(at, Node) else ""
    frame = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
    origin = f" (raised at {Path(frame.filename).name}:{frame.lineno})" if frame else ""
    what = e.message if isinstance(e, DlirError) else f"{type(e).__name__}: {e}"
    excerpt = ir_excerpt(graph, at if at is not None else graph)
    loc = at.loc if isinstance(at, Node) and at.loc != UNKNOWN_LOC else (e.loc if isinstance(e, DlirError) else None)
    return PassError(
        f"pass '{p.describe()}' failed{where}: {what}{origin}\n{excerpt}",
        loc,
        hint="this is a bug in the pass; run without it (--passes) to get on",
    )


def count_nodes(graph: Graph) -> int:
    """Nodes of ``graph`` and of the bodies inside it."""
    return len(graph.nodes) + sum(count_nodes(n.body) for n in graph.nodes if n.body is not None)


def optimize(
    graph: Graph,
    opt_level: int = 2,
    passes: str | Sequence[Pass] | None = None,
    *,
    instruments: Sequence[Instrument] = (),
    verify: bool = True,
    target: str | None = None,
) -> Graph:
    """An optimised copy of ``graph`` (``graph`` itself is never changed).

    ``passes`` (a pipeline text such as ``"cse,dce"`` or a list of passes)
    replaces the pipeline of ``opt_level``, which includes the passes of
    ``target`` (:data:`TARGET_PASSES`). With nothing to run and no
    instruments, ``graph`` itself is returned.
    """
    from dlir.ir.clone import clone_graph

    pipeline = (
        parse_pipeline(passes)
        if isinstance(passes, str)
        else list(passes)
        if passes is not None
        else level_pipeline(opt_level, target)
    )
    if not pipeline and not instruments:
        return graph
    with gc_paused():  # see dlir.ir.gc_pause: keeps the cost per node flat in big models
        work = clone_graph(graph)
        PassManager(pipeline, verify=verify, instruments=instruments).run(work)
    return work


__all__ = [
    "Pass",
    "PASSES",
    "register_pass",
    "all_passes",
    "make_pass",
    "parse_pipeline",
    "level_pipeline",
    "LEVELS",
    "TARGET_PASSES",
    "PassManager",
    "PassRecord",
    "Instrument",
    "PrintIR",
    "PassTiming",
    "DumpIR",
    "format_timing",
    "count_nodes",
    "optimize",
]
