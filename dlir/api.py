"""The Python API: ``dlir.load``, ``dlir.loads``, ``dlir.compile``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal

from dlir.errors import DlirError, ParseError, SourceLoc, TypeError_, UsageError, did_you_mean
from dlir.frontend.parse import decode_source, parse
from dlir.frontend.scope import DefRef
from dlir.ir.graph import Graph
from dlir.targets import check_target, runner_class


class Program:
    """A parsed .dlir file: its definitions, and the graph of each model on demand."""

    def __init__(self, text: str, filename: str = "<string>") -> None:
        self.text = text
        self.filename = filename
        self.defs: dict[str, DefRef] = {}
        self.sources: dict[str, str] = {filename: text}  # every file the program reads, for error messages
        self._graphs: dict[str, Graph] = {}
        with self._located():
            self._collect(parse(text, filename))

    @property
    def models(self) -> list[str]:
        return [n for n, d in self.defs.items() if d.kind == "model"]

    def graph(self, model: str | None = None) -> Graph:
        """The IR graph of ``model`` (the file's only model when None)."""
        name = self.choose_model(model)
        if name not in self._graphs:
            from dlir.frontend.elaborate import Elaborator

            with self._located():
                self._graphs[name] = Elaborator(self.defs, self.filename).build(name)
        return self._graphs[name]

    def choose_model(self, model: str | None) -> str:
        models = self.models
        if model is None:
            if len(models) == 1:
                return models[0]
            if not models:
                raise UsageError(
                    f"{self.filename} defines no model", hint="add `model Name(x: f32[B, 4]) -> ... { ... }`"
                )
            raise UsageError(
                f"{self.filename} defines several models ({', '.join(models)})",
                hint="choose one with --model NAME (or model=...)",
            )
        if model not in models:
            raise UsageError(
                f"{self.filename} has no model '{model}'",
                hint=did_you_mean(model, models) or f"its models: {', '.join(models) or 'none'}",
            )
        return model

    def _collect(self, tree: Any) -> None:
        library: dict[str, DefRef] = {}
        for item in tree.children:
            if item.data == "use_stmt":
                library.update(self._use(item.children[0]))
                continue
            kind = {"layer_def": "layer", "model_def": "model", "fn_expr": "fn", "fn_block": "fn"}[item.data]
            tok = item.children[0]
            name = str(tok)
            if name in self.defs:
                prev = self.defs[name].tree.children[0]
                raise TypeError_(
                    f"'{name}' is defined twice (first at line {prev.line})",
                    SourceLoc(self.filename, tok.line, tok.column),
                    hint="rename one of them",
                )
            self.defs[name] = DefRef(kind, name, item, self.filename)
        # The file's own definitions shadow the library's, as a local def shadows an import.
        for name, d in library.items():
            self.defs.setdefault(name, d)

    def _use(self, tok: Any) -> dict[str, DefRef]:
        from dlir.stdlib import libraries, library_source

        found = library_source(str(tok))
        if found is None:
            raise TypeError_(
                f"no library '{tok}'",
                SourceLoc(self.filename, tok.line, tok.column),
                hint=did_you_mean(str(tok), libraries()) or "libraries: " + ", ".join(libraries()),
            )
        file, text = found
        self.sources[file] = text
        lib = Program(text, file)  # libraries do not `use` each other in a cycle: nn uses nothing
        return {n: d for n, d in lib.defs.items() if d.kind != "model"}

    def _located(self) -> _SourceAttach:
        return _SourceAttach(self)


class _SourceAttach:
    """Fills in the source line of errors raised while reading this program."""

    def __init__(self, prog: Program) -> None:
        self.prog = prog

    def __enter__(self) -> None:
        return None

    def __exit__(self, et: Any, e: Any, tb: Any) -> Literal[False]:
        if isinstance(e, DlirError) and e.loc is not None and e.loc.file in self.prog.sources and e.source_line is None:
            lines = self.prog.sources[e.loc.file].splitlines()
            if 0 < e.loc.line <= len(lines):
                e.source_line = lines[e.loc.line - 1]
        return False


def loads(text: str, filename: str = "<string>") -> Program:
    """Parse dlir source text."""
    return Program(text, filename)


def load(path: str | os.PathLike[str]) -> Program:
    """Read and parse a .dlir file."""
    p = os.fspath(path)
    try:
        with open(p, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise DlirError(f"no such file: '{p}'", SourceLoc(p, 0, 0), hint="check the path") from None
    except IsADirectoryError:
        raise DlirError(f"'{p}' is a directory, not a .dlir file", SourceLoc(p, 0, 0)) from None
    except OSError as e:
        raise DlirError(f"cannot read '{p}': {e.strerror}", SourceLoc(p, 0, 0)) from None
    return Program(decode_source(data, p), p)


def compile(  # noqa: A001 - the pinned API name
    prog: Program | str,
    target: str = "numpy",
    model: str | None = None,
    opt_level: int = 0,
    seed: int = 0,
    grad: bool | Sequence[str] = False,
    device: str = "auto",
    passes: str | None = None,
) -> Any:
    """Compile a model of ``prog`` for ``target`` and return its runner.

    ``opt_level`` 0..3 picks the optimisation pipeline (``dlir.passes.LEVELS``, and at 3 the
    passes of ``target``: ``dlir.passes.TARGET_PASSES``);
    ``passes`` (e.g. ``"cse,dce"``) replaces it with a pipeline of your own.
    """
    if isinstance(prog, str):
        prog = load(prog)
    check_target(target)
    if opt_level not in (0, 1, 2, 3):
        raise UsageError(f"opt_level must be 0..3, got {opt_level}")
    if device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"unknown device '{device}'", hint="auto, cpu or cuda")
    graph = prog.graph(model)
    wrt: list[str] = []
    if grad:
        graph, wrt = _with_gradients(graph, grad)
    if opt_level or passes is not None:
        from dlir.passes import optimize

        # A copy: the program's cached graph stays as the frontend built it.
        graph = optimize(graph, opt_level, passes, target=target)
    runner = runner_class(target)(graph, seed=seed, device=device)
    if grad:
        from dlir.autodiff import GradRunner

        return GradRunner(runner, len(graph.outputs) - len(wrt), wrt)
    return runner


def _with_gradients(graph: Graph, grad: bool | Sequence[str]) -> tuple[Graph, list[str]]:
    """A copy of ``graph`` that also outputs its gradients (``grad``: True for every param, or names)."""
    from dlir.autodiff import add_gradients
    from dlir.ir.clone import clone_graph

    if grad is True:
        wrt = None
    elif isinstance(grad, (list, tuple)) and all(isinstance(n, str) for n in grad):
        wrt = list(grad)
    else:
        raise UsageError(f"grad must be True, False or a list of param/input names, got {grad!r}")
    new = clone_graph(graph)
    added = add_gradients(new, wrt=wrt)
    return new, [name.partition(".")[2] for name, _ in added]


__all__ = ["Program", "load", "loads", "compile", "ParseError"]
