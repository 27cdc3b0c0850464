"""Errors at the user's line: a mistake that surfaces inside a library layer is reported where the
user's file called it, with the chain of layers as notes (as rustc's "in this macro invocation")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import dlir
from dlir.errors import DlirError

NESTED = """use nn

fn twice(x) = x @ x

layer Block(d: int) {
    fc = Dense(d, 4)
    forward(h) {
        return fc(h)
    }
}

model Inner(x: f32[B, 6]) -> f32[B, 4] {
    blk = Block(5)
    return blk(x)
}

model Outer(x: f32[B, 6]) -> f32[B, 4] {
    net = Inner()
    return net(x)
}

model UsesFn(x: f32[B, 6]) -> f32[B, 6] {
    return twice(x)
}

model Direct(x: f32[B, 10]) -> f32[B, 3] {
    fc = Dense(12, 3)
    return fc(x)
}

model Deep(x: f32[B, T, 8]) -> f32[B, T, 8] {
    tb = TransformerBlock(6, 2, 16)
    return tb(x)
}

model BadConfig(x: f32[B, 4]) -> f32[B, 4] {
    fc = Dense(4, 4, act="relux")
    return fc(x)
}

model MissingArg(x: f32[B, 4]) -> f32[B, 4] {
    fc = Dense(4)
    return fc(x)
}
"""


def _error(model: str) -> DlirError:
    with pytest.raises(DlirError) as info:
        dlir.loads(NESTED, "m.dlir").graph(model)
    return info.value


def _stdlib_line(text: str) -> int:
    """The line of the stdlib that contains ``text`` (so the test does not pin line numbers)."""
    from dlir.stdlib import library_source

    found = library_source("nn")
    assert found is not None
    return next(i for i, line in enumerate(found[1].splitlines(), 1) if text in line)


def test_a_stdlib_layer_error_points_at_the_users_call() -> None:
    e = _error("Direct")
    assert (e.loc.file, e.loc.line) == ("m.dlir", 28) and "inner dims differ (10 vs 12)" in e.message
    assert e.notes == [
        "in layer Dense (fc), created at m.dlir:27:10",
        f"inside Dense at <stdlib>/nn.dlir:{_stdlib_line('return activation(x @ w + b, act)')}:27",
    ]


def test_a_users_layer_keeps_its_line_and_names_each_level() -> None:
    e = _error("Outer")
    assert (e.loc.file, e.loc.line, e.loc.col) == ("m.dlir", 8, 16)  # `fc(h)` in Block: the user's line
    assert e.notes[0] == "in layer Dense (net.blk.fc), created at m.dlir:6:10"
    assert e.notes[1].startswith("inside Dense at <stdlib>/nn.dlir:")
    assert e.notes[2:] == ["in layer Block (net.blk), created at m.dlir:13:11", "in model Inner (net), created at m.dlir:18:11"]


def test_a_fn_names_its_call() -> None:
    e = _error("UsesFn")
    assert (e.loc.file, e.loc.line) == ("m.dlir", 3) and e.notes == ["in fn twice, called at m.dlir:23:12"]


def test_stdlib_inside_stdlib_walks_back_to_the_user() -> None:
    e = _error("Deep")
    assert (e.loc.file, e.loc.line, e.loc.col) == ("m.dlir", 33, 12)
    assert e.notes[0] == "in layer TransformerBlock (tb), created at m.dlir:32:10"
    kinds = [n.split(" at ")[0] for n in e.notes]
    assert kinds == [
        "in layer TransformerBlock (tb), created", "inside TransformerBlock",
        "in layer MultiHeadAttention (tb.attn), created", "inside MultiHeadAttention",
        "in layer Dense (tb.attn.q_proj), created", "inside Dense",
    ]


def test_a_bad_config_of_a_stdlib_layer_points_at_the_users_lines() -> None:
    e = _error("BadConfig")  # act is checked where forward uses it: at the call, with the creation as a note
    assert (e.loc.file, e.loc.line) == ("m.dlir", 38) and "relux" in e.message
    assert e.notes[0] == "in layer Dense (fc), created at m.dlir:37:10"


def test_the_cli_prints_the_users_line_then_the_notes(tmp_path: Path) -> None:
    (tmp_path / "m.dlir").write_text(NESTED)
    r = subprocess.run([sys.executable, "-m", "dlir.cli", "check", str(tmp_path / "m.dlir"), "--model", "Direct"],
                       capture_output=True, text=True)
    lines = r.stderr.splitlines()
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert lines[0].startswith(f"{tmp_path / 'm.dlir'}:28:12: error: matmul")
    assert lines[1].strip() == "return fc(x)" and lines[2].strip() == "^"
    assert lines[3].startswith("note: in layer Dense (fc), created at") and lines[4].startswith("note: inside Dense at <stdlib>/nn.dlir:")
    assert lines[5].startswith("hint:")


def test_a_missing_config_argument_is_reported_in_the_users_file() -> None:
    """It used to carry the user's line and column but the stdlib's file name (and so its source line)."""
    e = _error("MissingArg")
    assert (e.loc.file, e.loc.line, e.loc.col) == ("m.dlir", 42, 10) and "needs the config argument 'n_out'" in e.message
    assert e.notes == []
