"""``dlirc compile --weights``: the weights in a .safetensors file beside the generated module.

- dlir's own safetensors writer and the reader written into generated files agree with the
  ``safetensors`` package, both ways, on every dtype (bf16 as its bits);
- the generated torch and tensorflow modules read the file in an interpreter where dlir cannot
  be imported and compute what the numpy reference computes, with the seeded init or with the
  weights ``--params`` gives;
- a wrong or missing file is a clear message (from dlirc, and from the generated module), and a
  failed compile writes nothing.
"""

from __future__ import annotations

import json
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import dlir
from dlir.compare import random_inputs
from dlir.runtime.init import init_params
from dlir.runtime.safetensors_file import checked_weights, read_safetensors, safetensors_bytes
from dlir.runtime.weights import save_safetensors

ROOT = Path(__file__).resolve().parent.parent

EVERY_DTYPE = """
model Dtypes(x: f32[B, 3]) -> f32[B, 3] {
    param a: f32[4, 3] = glorot_uniform
    param b: f64[2, 3, 3] = glorot_normal
    param c: f16[5, 3] = he_uniform
    param d: bf16[3, 2] = he_normal
    param e: f32[] = constant(0.5)
    param f: i64[3] = zeros
    param g: i32[2] = ones
    buffer h: bool[2] = ones
    buffer i: f32[0, 3] = zeros
    return x + a[0] * e
}
"""


def _arrays() -> dict[str, np.ndarray]:
    return init_params(dlir.loads(EVERY_DTYPE).graph(), seed=3)


def _bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint16) if a.dtype.name == "bfloat16" else a


def test_dlirs_writer_is_read_by_the_safetensors_package_bit_for_bit() -> None:
    import torch
    from safetensors.torch import load

    arrays = _arrays()
    got = load(safetensors_bytes(arrays))
    assert set(got) == set(arrays)
    for name, want in arrays.items():
        t = got[name]
        g = t.view(torch.int16).numpy().view(np.uint16) if t.dtype == torch.bfloat16 else t.numpy()
        assert g.shape == want.shape and g.dtype == _bits(want).dtype, name
        assert np.array_equal(g, _bits(want)), name


def test_the_embedded_reader_reads_the_packages_files(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    arrays = _arrays()
    tensors = {
        k: torch.from_numpy(v.view(np.int16).copy()).view(torch.bfloat16)
        if v.dtype.name == "bfloat16"
        else torch.from_numpy(v.copy())
        for k, v in arrays.items()
    }
    save_file(tensors, tmp_path / "w.safetensors", metadata={"format": "pt"})
    got = read_safetensors(str(tmp_path / "w.safetensors"))
    assert set(got) == set(arrays)
    for name, want in arrays.items():
        assert got[name].shape == want.shape and np.array_equal(got[name], _bits(want)), name
        assert got[name].flags.writeable, "torch.from_numpy warns on a read-only array"


def test_the_header_is_what_the_format_says() -> None:
    data = safetensors_bytes({"b": np.arange(3, dtype=np.int64), "a": np.ones((2, 2), np.float32)}, {"k": "v"})
    n = int.from_bytes(data[:8], "little")
    assert n % 8 == 0 and len(data) == 8 + n + 3 * 8 + 4 * 4
    header = json.loads(data[8 : 8 + n])
    assert header == {
        "__metadata__": {"k": "v"},
        "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
        "b": {"dtype": "I64", "shape": [3], "data_offsets": [16, 40]},
    }
    assert np.array_equal(np.frombuffer(data[8 + n + 16 :], "<i8"), [0, 1, 2])


def _file(header: dict[str, object], body: bytes) -> bytes:
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + body


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "no header of a plausible length"),
        ((10**9).to_bytes(8, "little") + b"{}", "no header of a plausible length"),
        ((4).to_bytes(8, "little") + b"{no}", "its header is not JSON"),
        ((2).to_bytes(8, "little") + b"[]", "not a JSON object"),
        (_file({"x": {"dtype": "Q9", "shape": [1], "data_offsets": [0, 4]}}, bytes(4)), "no known dtype"),
        (_file({"x": {"dtype": "F32", "shape": [1]}}, bytes(4)), "no known dtype"),
        (_file({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, bytes(4)), "do not fit"),
        (_file({"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, bytes(8)), "do not fit"),
        (_file({"x": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, bytes(8)), "do not fit"),
    ],
)
def test_a_broken_file_is_a_clear_error(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=message):
        read_safetensors(str(path))


def test_checked_weights_holds_the_file_to_the_params() -> None:
    declared = {"w": ((2, 3), "F32")}
    ok = {"w": np.zeros((2, 3), np.float32)}
    assert checked_weights(ok, declared, "f") is ok
    with pytest.raises(ValueError, match=r"'w' is float32\[3, 2\], but the model declares F32\[2, 3\]"):
        checked_weights({"w": np.zeros((3, 2), np.float32)}, declared, "f")
    with pytest.raises(ValueError, match=r"'w' is float64\[2, 3\]"):
        checked_weights({"w": np.zeros((2, 3))}, declared, "f")
    with pytest.raises(ValueError, match="has no tensor 'w'"):
        checked_weights({}, declared, "f")
    with pytest.raises(ValueError, match="holds 'v', which this model has no param for"):
        checked_weights({**ok, "v": np.zeros(1)}, declared, "f")
    with pytest.raises(FileNotFoundError, match="dlirc compile --weights"):
        read_safetensors("/nonexistent/w.safetensors")


def _dlirc(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dlir.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def _site_packages() -> str:
    return next(p for p in site.getsitepackages() if Path(p, "numpy").is_dir())


def _run_without_dlir(tmp_path: Path, target: str, stem: str, cls: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """The outputs of the generated ``stem.py``'s ``cls()`` on ``inputs``, where dlir cannot be imported."""
    np.savez(tmp_path / "inputs.npz", *inputs)
    script = textwrap.dedent(f"""
        import importlib.util, sys
        sys.path[:0] = [{str(tmp_path)!r}]
        sys.path.append({_site_packages()!r})
        assert importlib.util.find_spec("dlir") is None, "dlir is importable: the test proves nothing"
        assert importlib.util.find_spec("safetensors") is not None  # there, but the module must not need it
        sys.modules["safetensors"] = None  # any import of it fails
        import numpy as np
        mod = __import__({stem!r})
        data = np.load("inputs.npz")
        ins = [data[f"arr_{{i}}"] for i in range(len(data.files))]
        net = getattr(mod, {cls!r})()
        if {target!r} == "torch":
            import torch
            net.eval()
            with torch.no_grad():
                out = net(*[torch.from_numpy(a) for a in ins])
        else:
            out = net(*ins)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        np.savez("outputs.npz", *[o.numpy() for o in outs])
    """)
    r = subprocess.run(
        [sys.executable, "-S", "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    data = np.load(tmp_path / "outputs.npz")
    return [data[f"arr_{i}"] for i in range(len(data.files))]


def _close(got: list[np.ndarray], want: tuple[np.ndarray, ...]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("target, suffix", [("torch", "torch"), ("tensorflow", "tf")])
def test_the_module_reads_its_weights_beside_it_without_dlir(tmp_path: Path, target: str, suffix: str) -> None:
    """The lstm sample at -O2 (torch's fused kernel): the seeded init through the file."""
    sample = ROOT / "samples" / "lstm.dlir"
    out = tmp_path / f"lstm_{suffix}.py"
    r = _dlirc("compile", sample, "--target", target, "-O2", "--weights", "-o", out)
    assert r.returncode == 0, r.stderr
    assert f"wrote {tmp_path / f'lstm_{suffix}.safetensors'}" in r.stdout
    source = out.read_text()
    assert "draw(" not in source and "import zlib" not in source, "the seeded init is not needed any more"
    prog = dlir.load(sample)
    feeds = random_inputs(prog.graph(), seed=4, size=3)
    want = dlir.compile(prog, "numpy", seed=0)(**feeds)
    got = _run_without_dlir(tmp_path, target, out.stem, "LSTMClassifier", list(feeds.values()))
    _close(got, want if isinstance(want, tuple) else (want,))


@pytest.mark.slow
@pytest.mark.parametrize("target", ["torch", "tensorflow"])
def test_params_given_are_the_weights_the_module_reads(tmp_path: Path, target: str) -> None:
    """--params: every dtype's values from the file, not the seeded init, in the module."""
    src = tmp_path / "dtypes.dlir"
    src.write_text(EVERY_DTYPE)
    seeded = init_params(dlir.loads(EVERY_DTYPE).graph(), 9).items()
    # every param but the bf16 d (safetensors.numpy cannot write it): d keeps the seeded init
    given = {k: ~v if v.dtype == bool else v + 1 for k, v in seeded if k != "d"}
    save_safetensors(given, tmp_path / "trained.safetensors")
    out = tmp_path / "dtypes_mod.py"
    r = _dlirc("compile", src, "--target", target, "--params", tmp_path / "trained.safetensors", "-o", out)
    assert r.returncode == 0, r.stderr
    stored = read_safetensors(str(tmp_path / "dtypes_mod.safetensors"))
    want = {**init_params(dlir.loads(EVERY_DTYPE).graph(), 0), **given}
    assert set(stored) == set(want)
    for name, w in want.items():
        assert np.array_equal(stored[name], _bits(w)), name
    x = np.random.default_rng(0).normal(size=(2, 3)).astype(np.float32)
    run = dlir.compile(dlir.loads(EVERY_DTYPE), "numpy")
    run.load_params(want)
    _close(_run_without_dlir(tmp_path, target, out.stem, "Dtypes", [x]), (run(x=x),))


def test_compile_errors_are_messages_and_write_nothing(tmp_path: Path) -> None:
    src = tmp_path / "m.dlir"
    src.write_text(EVERY_DTYPE)
    out = tmp_path / "m_torch.py"
    r = _dlirc("compile", src, "--target", "torch", "--params", tmp_path / "missing.safetensors", "-o", out)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "no file" in r.stderr and "missing.safetensors" in r.stderr
    save_safetensors({"a": np.zeros((3, 4), np.float32)}, tmp_path / "wrong.safetensors")
    r = _dlirc("compile", src, "--target", "torch", "--params", tmp_path / "wrong.safetensors", "-o", out)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "param 'a' is declared f32[4, 3], but the value given is float32 with shape (3, 4)" in r.stderr
    r = _dlirc("compile", src, "--target", "onnx", "--weights")
    assert r.returncode == 2 and "an .onnx file holds its weights" in r.stderr and "Traceback" not in r.stderr
    r = _dlirc("compile", src, "--target", "torch", "--weights", "-o", tmp_path / "w.safetensors")
    assert r.returncode == 2 and "over the output" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.dlir", "wrong.safetensors"]


def test_onnx_embeds_the_params_given(tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    src = tmp_path / "m.dlir"
    src.write_text(EVERY_DTYPE)
    save_safetensors({"a": np.full((4, 3), 7.0, np.float32)}, tmp_path / "p.safetensors")
    r = _dlirc("compile", src, "--target", "onnx", "--params", tmp_path / "p.safetensors", "-o", tmp_path / "m.onnx")
    assert r.returncode == 0, r.stderr
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(tmp_path / "m.onnx").graph.initializer}
    assert np.array_equal(inits["a"], np.full((4, 3), 7.0, np.float32))
    assert np.array_equal(inits["b"], init_params(dlir.loads(EVERY_DTYPE).graph(), 0)["b"])


def test_the_module_says_what_is_wrong_with_its_weights(tmp_path: Path) -> None:
    import torch  # noqa: F401 (the generated module imports it)

    src = tmp_path / "m.dlir"
    src.write_text(EVERY_DTYPE)
    out = tmp_path / "net_torch.py"
    assert _dlirc("compile", src, "--target", "torch", "--weights", "-o", out).returncode == 0
    sys.path.insert(0, str(tmp_path))
    try:
        mod = __import__("net_torch")
        mod.Dtypes()  # the file beside it
        arrays = read_safetensors(str(tmp_path / "net_torch.safetensors"))
        arrays["b"] = np.zeros((3, 3), np.float64)
        arrays["d"] = arrays["d"].view(_arrays()["d"].dtype)  # bf16 was read as its bits
        (tmp_path / "other.safetensors").write_bytes(safetensors_bytes(arrays))
        with pytest.raises(ValueError, match=r"'b' is float64\[3, 3\], but the model declares F64\[2, 3, 3\]"):
            mod.Dtypes(str(tmp_path / "other.safetensors"))
        (tmp_path / "net_torch.safetensors").unlink()
        with pytest.raises(FileNotFoundError, match="net_torch.safetensors"):
            mod.Dtypes()
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("net_torch", None)
