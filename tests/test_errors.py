"""Every user mistake is a DlirError at the right FILE:LINE:COL with a hint — never a traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dlir
from dlir.errors import DlirError, RuntimeMismatch

DENSE = '''layer Dense(n_in: int, n_out: int) {
    param w: f32[n_in, n_out] = glorot_uniform
    forward(x) { return x @ w }
}
'''


def error_of(src: str, model: str | None = None) -> DlirError:
    with pytest.raises(DlirError) as info:
        prog = dlir.loads(src, "m.dlir")
        for m in [model] if model else prog.models:
            prog.graph(m)
    return info.value


# (source, line, col, message fragment, hint fragment or None)
CASES = {
    "syntax": ("model M(x: f32[3]) -> f32[3] {\n    y = x +\n}\n", 3, 1, "unexpected '}'", "expected"),
    "unknown_name": ("model M(x: f32[3]) -> f32[3] {\n    return x + xx\n}\n", 2, 16, "unknown name 'xx'", "did you mean 'x'"),
    "unknown_op": ("model M(x: f32[3]) -> f32[3] {\n    return relux(x)\n}\n", 2, 12, "unknown name 'relux'", "did you mean 'relu'"),
    "unknown_attr": ("model M(x: f32[2, 3]) -> f32[2, 3] {\n    return softmax(x, axes=1)\n}\n", 2, 12, "softmax has no attribute 'axes'", "did you mean 'axis'"),
    "ill_typed_attr": ("model M(x: f32[2, 3]) -> f32[2, 3] {\n    return softmax(x, axis=\"one\")\n}\n", 2, 12, "'axis' must be an int, got the string 'one'", None),
    "attr_choice": ("model M(x: f32[3]) -> f32[3] {\n    return activation(x, \"rellu\")\n}\n", 2, 12, "not one of", "did you mean 'relu'"),
    "shape_mismatch": ("model M(x: f32[B, 3], y: f32[B, 4]) -> f32[B, 3] {\n    return x + y\n}\n", 2, 12, "f32[B, 3] and f32[B, 4]", "broadcast"),
    "symbol_mismatch": ("model M(x: f32[B, 3], y: f32[N, 3]) -> f32[B, 3] {\n    return x + y\n}\n", 2, 12, "f32[B, 3] and f32[N, 3]", None),
    "dtype_mismatch": ("model M(x: f32[3], y: f64[3]) -> f32[3] {\n    return x * y\n}\n", 2, 12, "dtypes differ: f32[3] and f64[3]", "cast("),
    "matmul_inner": ("model M(x: f32[B, 3], w: f32[4, 2]) -> f32[B, 2] {\n    return x @ w\n}\n", 2, 12, "inner dims differ (3 vs 4) for f32[B, 3] @ f32[4, 2]", None),
    "layer_arity": (DENSE + "model M(x: f32[B, 3]) -> f32[B, 2] {\n    d = Dense(3)\n    return d(x)\n}\n", 6, 9, "needs the config argument 'n_out'", "Dense(n_in, n_out)"),
    "forward_arity": (DENSE + "model M(x: f32[B, 3]) -> f32[B, 2] {\n    d = Dense(3, 2)\n    return d(x, x)\n}\n", 7, 12, "forward takes 1 argument", None),
    "config_type": (DENSE + "model M(x: f32[B, 3]) -> f32[B, 2] {\n    d = Dense(3, 2.5)\n    return d(x)\n}\n", 6, 9, "'n_out' of Dense must be int, got 2.5", None),
    "duplicate_def": (DENSE + DENSE, 5, 7, "'Dense' is defined twice (first at line 1)", "rename"),
    "recursive": ("layer A(n: int) {\n    inner = A(n)\n    forward(x) { return x }\n}\nmodel M(x: f32[3]) -> f32[3] {\n    a = A(1)\n    return a(x)\n}\n", 2, 13, "recursive definition: A -> A", "inlined"),
    "output_type": ("model M(x: f32[B, 3]) -> f32[B, 4] {\n    return x\n}\n", 2, 5, "declared f32[B, 4], but the value returned is f32[B, 3]", None),
    "output_count": ("model M(x: f32[3]) -> (a: f32[3], b: f32[3]) {\n    return x\n}\n", 2, 5, "declares 2 output(s) but returns 1", None),
    "loop_too_large": ("model M(x: f32[3]) -> f32[3] {\n    for i in range(1000000000) { x = x + 1 }\n    return x\n}\n", 2, 5, "more than the limit of 100000", "scan"),
    "param_symbolic": ("model M(x: f32[B, 3]) -> f32[B, 3] {\n    param w: f32[B, 3] = zeros\n    return x * w\n}\n", 2, 14, "not known at compile time", None),
    "unknown_init": ("model M(x: f32[3]) -> f32[3] {\n    param w: f32[3] = glorot_unifrom\n    return x * w\n}\n", 2, 23, "unknown initializer", "glorot_uniform"),
    "duplicate_instance": (DENSE + "model M(x: f32[B, 3]) -> f32[B, 3] {\n    d = Dense(3, 3)\n    d = Dense(3, 3)\n    return d(x)\n}\n", 7, 9, "created twice", "own name"),
    "unbound_layer_call": (DENSE + "model M(x: f32[B, 3]) -> f32[B, 2] {\n    return Dense(3, 2)(x)\n}\n", 6, 12, "bind the layer to a name", None),
    "no_return": ("model M(x: f32[3]) -> f32[3] {\n    y = x\n}\n", 1, 30, "has no return", None),
    "bad_reshape": ("model M(x: f32[B, 6]) -> f32[B, 6] {\n    return reshape(x, [B, -1, -1])\n}\n", 2, 12, "at most one -1", None),
    "unbound_symbol_in_output": ("model M(x: f32[B, 3]) -> f32[Q, 3] {\n    return x\n}\n", 1, 30, "unknown dim 'Q'", None),
    "single_quote": ("model M(x: f32[3]) -> f32[3] {\n    return activation(x, 'relu')\n}\n", 2, 26, "unexpected character", "double quotes"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_user_mistakes_are_located(name: str) -> None:
    src, line, col, msg, hint = CASES[name]
    e = error_of(src)
    assert e.loc is not None and (e.loc.file, e.loc.line, e.loc.col) == ("m.dlir", line, col), e.render()
    assert msg in e.message, e.render()
    if hint is not None:
        assert e.hint and hint in e.hint, e.render()
    text = e.render()
    assert text.startswith(f"m.dlir:{line}:{col}: error: ")
    assert "^" in text.splitlines()[2]  # source line then caret


def test_caret_sits_under_the_culprit() -> None:
    e = error_of(CASES["unknown_name"][0])
    _, src_line, caret = e.render().splitlines()[:3]
    assert src_line[caret.index("^")] == "x" and src_line[caret.index("^") :].startswith("xx")


def test_invalid_utf8_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.dlir"
    bad.write_bytes(b"model M(x: f32[3]) -> f32[3] {\n  return x # caf\xe9\n}\n")
    with pytest.raises(DlirError) as info:
        dlir.load(bad)
    assert (info.value.loc.line, info.value.loc.col) == (2, 17)
    assert "UTF-8" in info.value.message + (info.value.hint or "")
    with pytest.raises(DlirError, match="no such file"):
        dlir.load(tmp_path / "missing.dlir")


def test_unknown_library_is_located() -> None:
    e = error_of("use nm\nmodel M(x: f32[3]) -> f32[3] { return x }")
    assert (e.loc.line, e.loc.col) == (1, 5) and "no library 'nm'" in e.message and "nn" in (e.hint or "")


RUNTIME = "model M(x: f32[B, 3], y: f32[B]) -> f32[B, 3] { return x * unsqueeze(y, [1]) }"


@pytest.mark.parametrize(
    "inputs, fragment",
    [
        ({"x": np.ones((2, 3), np.float32), "z": np.ones(2, np.float32)}, "has no input 'z'"),
        ({"x": np.ones((2, 3), np.float32)}, "missing input 'y'"),
        ({"x": np.ones((2, 3)), "y": np.ones(2, np.float32)}, "input 'x' is declared f32[B, 3], but a float64 array of shape (2, 3)"),
        ({"x": np.ones((2, 4), np.float32), "y": np.ones(2, np.float32)}, "axis 1 must be 3"),
        ({"x": np.ones((2, 3, 1), np.float32), "y": np.ones(2, np.float32)}, "rank 2"),
        ({"x": np.ones((2, 3), np.float32), "y": np.ones(5, np.float32)}, "B = 5 here, but B = 2 from input 'x'"),
    ],
)
def test_runtime_inputs_are_checked_by_name_dtype_and_shape(inputs: dict[str, np.ndarray], fragment: str) -> None:
    r = dlir.compile(dlir.loads(RUNTIME), "numpy")
    with pytest.raises(RuntimeMismatch) as info:
        r(**inputs)
    assert fragment in info.value.message


def test_load_params_rejects_unknown_names_and_wrong_shapes(tmp_path: Path) -> None:
    r = dlir.compile(dlir.loads(DENSE + "model M(x: f32[B, 3]) -> f32[B, 2] { d = Dense(3, 2) \n return d(x) }"), "numpy")
    with pytest.raises(RuntimeMismatch, match="did you mean 'd.w'"):
        r.load_params({"d.ww": np.zeros((3, 2), np.float32)})
    with pytest.raises(RuntimeMismatch, match=r"declared f32\[3, 2\]"):
        r.load_params({"d.w": np.zeros((2, 3), np.float32)})
    r.load_params({"d.w": np.full((3, 2), 2.0, np.float32)})
    r.save_params(tmp_path / "w.safetensors")
    r2 = dlir.compile(dlir.loads(DENSE + "model M(x: f32[B, 3]) -> f32[B, 2] { d = Dense(3, 2) \n return d(x) }"), "numpy")
    r2.load_params(tmp_path / "w.safetensors")
    np.testing.assert_array_equal(r2.params["d.w"], 2.0)
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(RuntimeMismatch, match="cannot read weights"):
        r2.load_params(tmp_path / "junk.safetensors")


SAMPLES = sorted(Path(__file__).resolve().parent.parent.joinpath("samples").glob("*.dlir"))
_SEEDS = [p.read_text() for p in SAMPLES] + [src for src, *_ in CASES.values()]


TOKENS = list("(){}[],:=+-*/@<>.#\"\n ?0123456789xyB") + [
    "f32", "i64", "model ", "layer ", "fn ", "param ", "forward", "return ", "for ", " in ", "range", "scan ",
    "along ", "carry ", "emit ", "use ", "true", "false", "relu", "x", "M", "->", "**", "...", "1e5", "\xe9",
]


def _check_only_dlir_errors(text: str) -> None:
    try:
        prog = dlir.loads(text, "fuzz.dlir")
        for m in prog.models:
            prog.graph(m)
    except DlirError as e:
        e.render()  # rendering must not fail either


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=40).map("".join))
def test_random_text_only_raises_dlir_errors(text: str) -> None:
    _check_only_dlir_errors(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_SEEDS), st.data())
def test_mutated_sources_only_raise_dlir_errors(seed: str, data: st.DataObject) -> None:
    text = seed
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, max(0, len(text) - 1)))
        j = data.draw(st.integers(i, min(len(text), i + 8)))
        piece = data.draw(st.sampled_from(["", "x", "0", "-1", "(", ")", "[", "]", "{", "}", ",", "B", "f64", "@", "**", "relu", "99999", '"', "...", ":", "1e400"]))
        text = text[:i] + piece + text[j:]
    _check_only_dlir_errors(text)
