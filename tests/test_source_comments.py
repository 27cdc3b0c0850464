"""Generated code names the user's .dlir line first: a statement that comes from a stdlib layer
says which line of the user's file called (or created) the layer, and then the stdlib's line."""

from __future__ import annotations

import re

import pytest

import dlir
from dlir.ir.parser import parse_graph
from dlir.ir.printer import print_graph
from dlir.targets import backend

SOURCE = """use nn

layer Block(d: int) {
    fc = Dense(d, 4)
    forward(h) {
        return fc(h)
    }
}

model Net(x: f32[B, T, 8]) -> f32[B, T, 4] {
    fc = Dense(8, 8, act="relu")
    blk = Block(8)
    tb = TransformerBlock(8, 2, 16)
    h = fc(x) * 2.0
    h = tb(h)
    return blk(h)
}
"""

COMMENT = re.compile(r"# (m\.dlir|<stdlib>/nn\.dlir):(\d+):(\d+)(?:, inside <stdlib>/nn\.dlir:(\d+):(\d+))?$")


def _stdlib_line(text: str) -> int:
    from dlir.stdlib import library_source

    found = library_source("nn")
    assert found is not None
    return next(i for i, line in enumerate(found[1].splitlines(), 1) if text in line)


def _located(target: str) -> list[tuple[str, str, int, int, int | None]]:
    """(statement, file, line, col, stdlib line or None) of every statement with a location comment."""
    graph = dlir.loads(SOURCE, "m.dlir").graph("Net")
    source = backend(target).generate(graph).decode()
    out = []
    for line in source.splitlines():
        code, _, comment = line.partition("  # ")
        m = COMMENT.match("# " + comment) if comment else None
        if m:
            stdlib = int(m[4]) if m[4] else None
            out.append((code.strip(), m[1], int(m[2]), int(m[3]), stdlib))
    return out


@pytest.mark.parametrize("target", ["torch", "tensorflow"])
def test_every_statement_names_the_users_line_first(target: str) -> None:
    located = _located(target)
    assert len(located) > 40
    assert {file for _, file, *_ in located} == {"m.dlir"}, "a comment starts at the stdlib, not the user's file"
    dense = _stdlib_line("return activation(x @ w + b, act)")
    sites = {(line, col) for _, _, line, col, stdlib in located if stdlib == dense}
    # fc(x) in Net; fc(h) in the user's Block (its own line, not Net's blk(h)); Dense inside TransformerBlock
    assert {(14, 9), (6, 16), (15, 9)} <= sites and (16, 12) not in sites
    # Dense's param w: created at fc = Dense(...) in Net, in Block, and inside TransformerBlock
    w_line = _stdlib_line("param w: f32[n_in, n_out]")
    assert {line for _, _, line, _, stdlib in located if stdlib == w_line} == {11, 4, 13}
    # the user's own statement (the `* 2.0`) has no stdlib note
    assert any(line == 14 and stdlib is None for _, _, line, _, stdlib in located)


def test_the_ir_text_keeps_the_ops_own_location() -> None:
    """The site is the user's view in generated code; the IR text and its round trip stay as they are."""
    graph = dlir.loads(SOURCE, "m.dlir").graph("Net")
    text = print_graph(graph)
    assert 'loc("<stdlib>/nn.dlir":' in text and "inside" not in text
    assert print_graph(parse_graph(text)) == text
