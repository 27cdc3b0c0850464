"""The calls ``dlirc explain`` makes: one binding of the model's symbolic dims per call.

``--calls "B=2,T=4;B=2,T=4;B=2,T=8"`` is three calls; every call binds every
symbol that an input's type binds (``B`` and ``T`` in ``x: f32[B, T, 32]``). The
default is two calls at one size and one at another, which is the smallest set
that shows both a repeated signature and a changed one.
"""

from __future__ import annotations

import re

import numpy as np

from dlir.errors import UsageError, did_you_mean
from dlir.ir.graph import Graph

Call = dict[str, int]

_BINDING = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(-?\d+)\s*$")
MAX_DIM = 1 << 16  # a guard against typos: a dim of 10**9 would only exhaust memory


def symbols(graph: Graph) -> list[str]:
    """The symbolic dims the model's inputs bind, in the order they first appear."""
    return list(graph.symbol_sources())


def default_calls(graph: Graph) -> list[Call]:
    """Two calls at one size and one where every symbol is doubled (B=2,T=3; B=2,T=3; B=4,T=6)."""
    first = {s: 2 + i for i, s in enumerate(symbols(graph))}
    return [dict(first), dict(first), {s: 2 * n for s, n in first.items()}]


def parse_calls(spec: str, graph: Graph) -> list[Call]:
    """``"B=2,T=4;B=2,T=8"`` as one dict per call; every mistake is a UsageError with a hint."""
    syms = symbols(graph)
    example = ";".join([",".join(f"{s}={2 + i}" for i, s in enumerate(syms))] * 2) or ";"
    shown = ", ".join(syms) if syms else "none"
    calls: list[Call] = []
    for k, part in enumerate(spec.split(";"), start=1):
        call: Call = {}
        for item in (p for p in part.split(",") if p.strip()):
            m = _BINDING.match(item)
            if m is None:
                raise UsageError(
                    f"--calls: call {k}: cannot read '{item.strip()}'",
                    hint=f"write NAME=SIZE pairs, calls separated by ';', e.g. --calls \"{example}\"",
                )
            name, size = m.group(1), int(m.group(2))
            if name not in syms:
                hint = did_you_mean(name, syms) or f"the model's symbolic dims are: {shown}"
                raise UsageError(f"--calls: call {k}: model {graph.name} has no symbolic dim '{name}'", hint=hint)
            if name in call:
                raise UsageError(f"--calls: call {k} gives '{name}' twice", hint="give each dim once per call")
            if not 1 <= size <= MAX_DIM:
                raise UsageError(
                    f"--calls: call {k}: {name}={size} is not a size",
                    hint=f"sizes are integers from 1 to {MAX_DIM}",
                )
            call[name] = size
        missing = [s for s in syms if s not in call]
        if missing:
            raise UsageError(
                f"--calls: call {k} gives no size for {', '.join(missing)}",
                hint=f'every call binds every symbolic dim of the model ({shown}), e.g. --calls "{example}"',
            )
        calls.append(call)
    return calls


def describe(call: Call) -> str:
    """``B=2,T=4`` (``-`` for a model without symbolic dims)."""
    return ",".join(f"{k}={v}" for k, v in call.items()) or "-"


def feeds_for(graph: Graph, call: Call, seed: int) -> dict[str, np.ndarray]:
    """Seeded random inputs whose symbolic dims have the call's sizes."""
    from dlir.compare import random_inputs

    return random_inputs(graph, seed, env=call)
