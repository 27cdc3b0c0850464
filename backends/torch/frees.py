"""Free each local of the generated ``forward`` after its last read (``del a, b``).

Eager torch frees a tensor when its last Python reference goes. A function's
locals all live until it returns, so a long straight-line ``forward`` (a training
step: forward, backward and update in one body) would hold every intermediate
at once: a peak of the whole step's activations and gradients, and allocations
that the allocator cannot serve from memory the step freed, so each step faults
fresh pages in (mnist's step: ~2 600 page faults and ~3 ms of its ~23). Autograd
frees as it goes; so does the module once each name is deleted after the
statement that reads it last (torch.fx's generated code does the same, with
``name = None``).

Only names bound by top-level statements are freed. Names read inside a nested
function or lambda are left alone (a closure reads them when it is called, not
where it is written), and so are ``forward``'s arguments (the caller holds them)
and what it returns.
"""

from __future__ import annotations

import ast


def with_frees(body: list[str], keep: frozenset[str] = frozenset()) -> list[str]:
    """``body`` (the statements of a function, unindented lines) with ``del`` lines after the
    statement that reads a local last; ``keep``: names never freed (the arguments)."""
    source = "\n".join(body)
    lines = source.split("\n")  # one line each (an item may hold several): statements map to them
    statements = ast.parse(source).body
    bound: dict[str, int] = {}  # name -> the top-level assignment that binds it first
    closed: set[str] = set()  # read by a nested function: alive as long as it may be called
    last_read: dict[str, int] = {}
    for i, stmt in enumerate(statements):
        if isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                for n in ast.walk(target):
                    if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                        bound.setdefault(n.id, i)
        for node in ast.walk(stmt):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                closed |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                last_read[node.id] = i
    returned = {n.id for s in statements if isinstance(s, ast.Return) for n in ast.walk(s) if isinstance(n, ast.Name)}
    free_after: dict[int, list[str]] = {}
    for name, first in bound.items():
        if name in closed or name in returned or name in keep:
            continue
        # (a name never read goes right after the statement that binds it)
        free_after.setdefault(max(first, last_read.get(name, first)), []).append(name)
    out: list[str] = []
    done = 0  # lines copied so far
    for i, stmt in enumerate(statements):
        end = stmt.end_lineno or stmt.lineno
        out += lines[done:end]
        done = end
        if i in free_after:
            first_line = lines[stmt.lineno - 1]
            indent = first_line[: len(first_line) - len(first_line.lstrip())]
            out.append(f"{indent}del {', '.join(sorted(free_after[i]))}")
    return out + lines[done:]
