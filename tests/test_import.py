"""ONNX import: round trips through the exporter and torch.onnx, .dlir source output,
attribute mapping checked against ONNX Runtime, hostile files, and ONNX's own tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_samples import IDS, MODELS, TOL, _tuple

import dlir
from dlir.compare import random_inputs
from dlir.errors import DlirError
from dlir.importer import from_onnx
from dlir.importer.to_source import source_and_param_names
from dlir.ir.printer import print_graph

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ["numpy", "torch", "tensorflow", "onnx"]


def _exported(path: Path, model: str) -> tuple[Any, Any, dict[str, np.ndarray]]:
    from dlir.backends.onnx.export import to_model

    prog = dlir.load(path)
    graph = prog.graph(model)
    ref = dlir.compile(prog, "numpy", model=model)
    feeds = random_inputs(graph, seed=1, size=3)
    return to_model(graph, ref.params), _tuple(ref(**feeds)), feeds


def _agree(got: tuple[np.ndarray, ...], want: tuple[np.ndarray, ...]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, **TOL)


def _feeds_for(m: Any, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {m.input_names[k]: v for k, v in feeds.items() if k in m.input_names}


# -- dlir -> ONNX -> dlir ----------------------------------------------------------------


@pytest.mark.parametrize("path, model", MODELS, ids=IDS)
@pytest.mark.parametrize("target", TARGETS)
def test_exported_sample_imports_and_agrees(path: Path, model: str, target: str) -> None:
    proto, want, feeds = _exported(path, model)
    m = from_onnx(proto)
    _agree(_tuple(m.compile(target)(**_feeds_for(m, feeds))), want)


@pytest.mark.parametrize("path, model", MODELS, ids=IDS)
def test_dlir_onnx_dlir_onnx_is_the_same_graph(path: Path, model: str) -> None:
    from dlir.backends.onnx.export import to_model

    proto, want, feeds = _exported(path, model)
    m = from_onnx(proto)
    again = to_model(m.graph, m.params)
    m2 = from_onnx(again)
    _agree(_tuple(m2.compile("numpy")(**_feeds_for(m2, _feeds_for(m, feeds)))), want)
    # Import is a fixed point after one trip: the same IR, the same ONNX graph.
    assert print_graph(m2.graph) == print_graph(m.graph)
    third = to_model(m2.graph, m2.params)
    assert [n.op_type for n in third.graph.node] == [n.op_type for n in again.graph.node]


@pytest.mark.parametrize("path, model", MODELS, ids=IDS)
def test_imported_source_checks_and_runs(path: Path, model: str, tmp_path: Path) -> None:
    """The .dlir source of an imported model parses, and with its weights gives the same numbers."""
    proto, want, feeds = _exported(path, model)
    m = from_onnx(proto)
    text, renamed = source_and_param_names(m.graph)
    prog = dlir.loads(text, "imported.dlir")
    run = dlir.compile(prog, "numpy")
    run.load_params({renamed[k]: v for k, v in m.params.items()})
    _agree(_tuple(run(**_feeds_for(m, feeds))), want)


def test_imported_source_leaves_default_attributes_out() -> None:
    """Only attributes that differ from the op's defaults are written (no ``layout="NCHW"``,
    ``act="none"``, a pool's stride equal to its kernel), and the source rebuilds the same nodes."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
             for n, s in (("w1", (4, 2, 3, 3)), ("w2", (4, 4, 1, 1)), ("b2", (4,)))]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r"]),
        helper.make_node("Conv", ["r", "w2", "b2"], ["c2"], strides=[2, 2], auto_pad="SAME_UPPER"),
        helper.make_node("LRN", ["c2"], ["n"], size=3),
        helper.make_node("MaxPool", ["n"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("AveragePool", ["p"], ["q"], kernel_shape=[2, 2], strides=[1, 1], pads=[1, 1, 0, 0]),
    ]
    m = from_onnx(_model(nodes, [_vi("x", ["N", 2, 8, 8])], [_vi("q", None)], inits))
    text, _ = source_and_param_names(m.graph)
    assert "layout=" not in text and "act=" not in text, text
    assert "c1 = conv2d(x, w1, padding=[1, 1, 1, 1])\n" in text, text
    assert "c2 = conv2d(r, w2, b2, stride=[2, 2])\n" in text, text
    assert "n = lrn(c2, size=3)\n" in text and "p = max_pool2d(n, kernel=[2, 2])\n" in text, text
    assert "stride=[1, 1], padding=[1, 1, 0, 0], count_include_pad=false)" in text, text  # not the defaults
    again = dlir.loads(text, "imported.dlir").graph()
    assert [(n.op, n.attrs) for n in again.nodes] == [(n.op, n.attrs) for n in m.graph.nodes]


def test_dlirc_import_check_run(tmp_path: Path) -> None:
    from dlir.backends.onnx.export import to_model

    prog = dlir.load(ROOT / "samples" / "cnn.dlir")
    ref = dlir.compile(prog, "numpy")
    onnx.save(to_model(prog.graph(), ref.params), str(tmp_path / "lenet.onnx"))
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)

    def dlirc(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "dlir.cli", *args], capture_output=True, text=True, cwd=tmp_path)

    r = dlirc("import", "lenet.onnx", "-o", "lenet.dlir")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "lenet.safetensors").exists()
    assert "param conv1_w: f32[6, 1, 5, 5] = zeros" in (tmp_path / "lenet.dlir").read_text()
    assert dlirc("check", "lenet.dlir").returncode == 0
    r = dlirc("run", "lenet.dlir", "--params", "lenet.safetensors", "--input", "x=x.npy", "--output", "y.npz")
    assert r.returncode == 0, r.stderr
    np.testing.assert_allclose(np.load(tmp_path / "y.npz")["out"], ref(x=x), **TOL)


# -- torch.onnx.export of the generated torch modules ------------------------------------------


@pytest.mark.parametrize("path, model", MODELS, ids=IDS)
def test_torch_onnx_export_imports_and_agrees(path: Path, model: str, tmp_path: Path) -> None:
    import torch

    prog = dlir.load(path)
    graph = prog.graph(model)
    feeds = random_inputs(graph, seed=1, size=3)
    ref = dlir.compile(prog, "numpy", model=model)
    mod = dlir.compile(prog, "torch", model=model).module.eval()
    args = tuple(torch.from_numpy(feeds[v.name]) for v in graph.inputs)
    out = tmp_path / "exported.onnx"
    torch.onnx.export(mod, args, str(out), dynamo=False, input_names=[v.name for v in graph.inputs])
    try:
        m = from_onnx(out)
    except DlirError as e:
        pytest.skip(f"not covered by the importer: {e.message[:200]}")
    want = _tuple(ref(**feeds))
    for target in TARGETS:
        _agree(_tuple(m.compile(target)(**_feeds_for(m, feeds))), want)


# -- attribute mapping, against ONNX Runtime ------------------------------------------------------


def _model(nodes: list[Any], inputs: list[Any], outputs: list[Any], inits: list[Any] = (), opset: int = 13) -> Any:  # type: ignore[assignment]
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 7
    return m


def _ort(model: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, feeds)


def _check_against_ort(model: Any, feeds: dict[str, np.ndarray], targets: list[str] = TARGETS) -> Any:
    want = tuple(_ort(model, feeds))
    m = from_onnx(model)
    for t in targets:
        _agree(_tuple(m.compile(t)(**_feeds_for(m, feeds))), want)
    return m


def _vi(name: str, shape: list[Any], t: int = TensorProto.FLOAT) -> Any:
    return helper.make_tensor_value_info(name, t, shape)


@pytest.mark.parametrize("ta, tb, alpha, beta", [(0, 0, 1.0, 1.0), (1, 0, 0.5, 2.0), (0, 1, 1.0, 0.0), (1, 1, 2.0, 0.5)])
def test_gemm_attributes(ta: int, tb: int, alpha: float, beta: float) -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 3) if ta else (3, 4)).astype(np.float32)
    w = rng.standard_normal((5, 4) if tb else (4, 5)).astype(np.float32)
    c = rng.standard_normal((5,)).astype(np.float32)
    node = helper.make_node("Gemm", ["a", "w", "c"], ["y"], transA=ta, transB=tb, alpha=alpha, beta=beta)
    model = _model([node], [_vi("a", list(a.shape))], [_vi("y", [3, 5])], [numpy_helper.from_array(w, "w"), numpy_helper.from_array(c, "c")])
    _check_against_ort(model, {"a": a})


@pytest.mark.parametrize("opset, axis", [(11, 1), (11, 0), (11, 2), (13, 1), (13, -1)])
def test_softmax_axis_across_opsets(opset: int, axis: int) -> None:
    x = np.random.default_rng(1).standard_normal((2, 3, 4)).astype(np.float32)
    node = helper.make_node("Softmax", ["x"], ["y"], axis=axis)
    model = _model([node], [_vi("x", [2, 3, 4])], [_vi("y", [2, 3, 4])], opset=opset)
    _check_against_ort(model, {"x": x})


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID", "NOTSET"])
def test_conv_auto_pad(auto_pad: str) -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 2, 7, 6)).astype(np.float32)
    w = rng.standard_normal((4, 2, 4, 3)).astype(np.float32)
    kw: dict[str, Any] = {"auto_pad": auto_pad, "strides": [2, 1]}
    if auto_pad == "NOTSET":
        kw["pads"] = [1, 0, 2, 1]
    node = helper.make_node("Conv", ["x", "w"], ["y"], **kw)
    model = _model([node], [_vi("x", [1, 2, 7, 6])], [_vi("y", None)], [numpy_helper.from_array(w, "w")])
    _check_against_ort(model, {"x": x})


@pytest.mark.parametrize("op, ceil, include", [("MaxPool", 1, 0), ("AveragePool", 1, 0), ("AveragePool", 0, 1), ("AveragePool", 1, 1)])
def test_pool_ceil_mode_and_count_include_pad(op: str, ceil: int, include: int) -> None:
    x = np.random.default_rng(3).standard_normal((1, 2, 7, 7)).astype(np.float32)
    kw: dict[str, Any] = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": ceil}
    if op == "AveragePool":
        kw["count_include_pad"] = include
    model = _model([helper.make_node(op, ["x"], ["y"], **kw)], [_vi("x", [1, 2, 7, 7])], [_vi("y", None)])
    _check_against_ort(model, {"x": x})


def test_shape_subgraph_is_folded_into_one_reshape() -> None:
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape with a symbolic batch becomes reshape(x, [B, -1])."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["b"], axis=0),
        helper.make_node("Unsqueeze", ["b", "axes"], ["b1"]),
        helper.make_node("Concat", ["b1", "minus1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["y"]),
    ]
    inits = [numpy_helper.from_array(np.array(0, np.int64), "zero"), numpy_helper.from_array(np.array([0], np.int64), "axes"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus1")]
    model = _model(nodes, [_vi("x", ["N", 3, 4])], [_vi("y", ["N", 12])], inits)
    m = from_onnx(model)
    assert [n.op for n in m.graph.nodes] == ["reshape"]
    assert str(m.graph.nodes[0].outputs[0].type) == "f32[N, 12]"
    x = np.random.default_rng(4).standard_normal((5, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(m.compile("numpy")(x=x), x.reshape(5, 12))


def test_lrn_matches_onnxruntime() -> None:
    x = np.random.default_rng(5).standard_normal((1, 6, 3, 3)).astype(np.float32)
    node = helper.make_node("LRN", ["x"], ["y"], size=3, alpha=1e-2, beta=0.75, bias=2.0)
    _check_against_ort(_model([node], [_vi("x", [1, 6, 3, 3])], [_vi("y", [1, 6, 3, 3])]), {"x": x})


def test_old_opset_slice_squeeze_split_attributes() -> None:
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    nodes = [
        helper.make_node("Slice", ["x"], ["s"], starts=[0, 1], ends=[1, 1000], axes=[0, 2]),
        helper.make_node("Squeeze", ["s"], ["q"], axes=[0]),
        helper.make_node("Split", ["q"], ["a", "b"], axis=0, split=[1, 2]),
        helper.make_node("Unsqueeze", ["b"], ["y"], axes=[0]),
    ]
    model = _model(nodes, [_vi("x", [2, 3, 4])], [_vi("a", [1, 3]), _vi("y", [1, 2, 3])], opset=9)
    _check_against_ort(model, {"x": x})


# -- refusals ------------------------------------------------------------------------------------


def test_unsupported_ops_are_listed_in_one_error() -> None:
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="r"), helper.make_node("Det", ["a"], ["b"], name="hm1"),
             helper.make_node("LpPool", ["b"], ["c"], name="lp7", kernel_shape=[1]), helper.make_node("Det", ["c"], ["y"], name="hm2")]
    model = _model(nodes, [_vi("x", [2, 3])], [_vi("y", [2, 3])])
    with pytest.raises(DlirError) as e:
        from_onnx(model)
    msg = str(e.value)
    for part in ("Det (node 'hm1', ai.onnx opset 13)", "LpPool (node 'lp7'", "Det (node 'hm2'", "3 node(s)"):
        assert part in msg


def _relu_model(**over: Any) -> Any:
    return _model([helper.make_node("Relu", ["x"], ["y"])], [over.get("input", _vi("x", [2, 3]))], [_vi("y", [2, 3])], over.get("inits", []))


def test_truncated_and_corrupt_files(tmp_path: Path) -> None:
    good = _relu_model().SerializeToString()
    for name, data in {"trunc.onnx": good[: len(good) // 2], "junk.onnx": b"\xff\x00garbage" * 10, "empty.onnx": b""}.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DlirError) as e:
            from_onnx(tmp_path / name)
        assert name in str(e.value)
    with pytest.raises(DlirError, match="no such file"):
        from_onnx(tmp_path / "missing.onnx")


def test_wrong_element_type() -> None:
    with pytest.raises(DlirError, match="UINT16"):
        from_onnx(_relu_model(input=_vi("x", [2, 3], TensorProto.UINT16)))
    with pytest.raises(DlirError, match="STRING"):
        from_onnx(_relu_model(input=_vi("x", [2, 3], TensorProto.STRING)))


def test_cycles_and_dangling_names() -> None:
    cyc = [helper.make_node("Relu", ["x2"], ["x1"], name="a"), helper.make_node("Relu", ["x1"], ["x2"], name="b"),
           helper.make_node("Add", ["x", "x2"], ["y"], name="c")]
    with pytest.raises(DlirError, match="cycle"):
        from_onnx(_model(cyc, [_vi("x", [2, 3])], [_vi("y", [2, 3])]))
    dangling = [helper.make_node("Add", ["x", "nowhere"], ["y"], name="c")]
    with pytest.raises(DlirError, match="nowhere"):
        from_onnx(_model(dangling, [_vi("x", [2, 3])], [_vi("y", [2, 3])]))


def _empty_tensor(name: str, dims: list[int]) -> Any:
    t = TensorProto()
    t.name, t.data_type = name, TensorProto.FLOAT
    t.dims.extend(dims)
    return t


def test_absurd_dims() -> None:
    with pytest.raises(DlirError, match="absurd"):
        from_onnx(_relu_model(input=_vi("x", [2, 2**40])))
    t = _empty_tensor("w", [2**20, 2**20])
    with pytest.raises(DlirError, match="elements"):
        from_onnx(_relu_model(inits=[t]))
    short = _empty_tensor("w", [4, 4])
    short.raw_data = np.zeros(3, np.float32).tobytes()
    with pytest.raises(DlirError, match="w"):
        from_onnx(_relu_model(inits=[short]))


def test_external_data_outside_the_folder_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(6, dtype=np.float32).tobytes())
    folder = tmp_path / "model"
    folder.mkdir()
    for loc in ("../secret.bin", str(secret), "sub/../../secret.bin"):
        t = _empty_tensor("w", [2, 3])
        t.data_location = TensorProto.EXTERNAL
        t.external_data.add(key="location", value=loc)
        m = _model([helper.make_node("Add", ["x", "w"], ["y"])], [_vi("x", [2, 3])], [_vi("y", [2, 3])], [t])
        (folder / "m.onnx").write_bytes(m.SerializeToString())
        with pytest.raises(DlirError, match="folder"):
            from_onnx(folder / "m.onnx")
    # Inside the folder it is read.
    (folder / "w.bin").write_bytes(np.arange(6, dtype=np.float32).tobytes())
    t = _empty_tensor("w", [2, 3])
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value="w.bin")
    m = _model([helper.make_node("Add", ["x", "w"], ["y"])], [_vi("x", [2, 3])], [_vi("y", [2, 3])], [t])
    (folder / "m.onnx").write_bytes(m.SerializeToString())
    got = from_onnx(folder / "m.onnx").compile("numpy")(x=np.zeros((2, 3), np.float32))
    np.testing.assert_array_equal(got, np.arange(6, dtype=np.float32).reshape(2, 3))


def test_dlirc_import_error_has_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "bad.onnx").write_bytes(b"not onnx at all")
    r = subprocess.run([sys.executable, "-m", "dlir.cli", "import", str(tmp_path / "bad.onnx")], capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr and "not a valid ONNX file" in r.stderr
    assert not (tmp_path / "bad.dlir").exists()


# -- ONNX's own tests ---------------------------------------------------------------------------

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
LIGHT_MODELS = sorted(p.stem[len("light_"):] for p in LIGHT.glob("light_*.onnx"))


# ONNX's light models run on constant weights and an arange input, which drives most of them
# to logits of 1e10-1e12 that are all but equal. One float32 ulp there is 1e3-1e5, so the final
# softmax turns a one-ulp difference in any conv into a different answer (SqueezeNet on
# TensorFlow; AlexNet, Inception, ResNet-50, VGG-19 and ZFNet on torch's AVX-512 kernels). Where
# one ulp of the logits would move the softmax beyond the tolerance, the logits themselves are
# compared with the numpy reference (relative to their size), and the reference with ONNX's
# expected output.
SOFTMAX_TOL = 1e-3


def _softmax_input(m: Any) -> Any | None:
    """The logits, when the model's one output is a softmax of them."""
    (_, out), = m.graph.outputs
    if out.producer is None or out.producer.op != "softmax":
        return None
    return out.producer.inputs[0]


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_light_model_agrees_with_expected_output(name: str, target: str) -> None:
    from dlir.diff import probe_graph
    from dlir.targets import runner_class

    m = from_onnx(LIGHT / f"light_{name}.onnx")
    feeds = {}
    for v in m.graph.inputs:  # the inputs ONNX's runner makes for these models
        shape = v.type.static_shape()
        n = int(np.prod(shape))
        feeds[v.name] = (np.arange(n).reshape(shape) / n).astype(np.float32)
    want = numpy_helper.to_array(onnx.load_tensor(str(LIGHT / f"light_{name}_output_0.pb")))
    logits = _softmax_input(m)
    if logits is not None:
        probe = probe_graph(m.graph)  # every node's result, the logits among them
        probe.outputs = [(n, v) for n, v in probe.outputs if v.name == logits.name]
        ref, got = (runner_class(t)(probe, seed=0, device="cpu") for t in ("numpy", target))
        for r in (ref, got):
            r.load_params(m.params)
        ref_logits, got_logits = ref(**feeds), got(**feeds)
        scale = float(np.abs(ref_logits).max())
        if scale * np.finfo(np.float32).eps > SOFTMAX_TOL:
            # Up to 19 layers of float32 sums of values that grow to 1e31: summation order shows at 1e-5.
            np.testing.assert_allclose(got_logits, ref_logits, rtol=1e-4, atol=1e-4 * scale)
            np.testing.assert_allclose(m.compile("numpy")(**feeds), want, rtol=SOFTMAX_TOL, atol=1e-5)
            return
    np.testing.assert_allclose(m.compile(target)(**feeds), want, rtol=SOFTMAX_TOL, atol=1e-5)


CONFORMANCE = ROOT / "tests" / "conformance"


def _passing(target: str) -> list[str]:
    path = CONFORMANCE / f"passing_{target}.txt"
    return path.read_text().split() if path.exists() else []


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_committed_conformance_cases_still_pass(target: str) -> None:
    from dlir.importer.conformance import node_cases, run_case

    listed = set(_passing(target))
    if not listed:
        pytest.skip(f"no committed pass list for {target}")
    cases = [c for c in node_cases() if c.name in listed]
    assert len(cases) == len(listed), f"listed cases ONNX no longer ships: {sorted(listed - {c.name for c in cases})}"
    broken = [f"{r.case}: {r.status} {r.reason}" for c in cases for r in run_case(c, [target]) if r.status != "pass"]
    assert not broken, "\n".join(broken)


def test_import_and_conformance_commands_have_help() -> None:
    for sub in ("import", "conformance"):
        r = subprocess.run([sys.executable, "-m", "dlir.cli", sub, "--help"], capture_output=True, text=True)
        assert r.returncode == 0 and "usage: dlirc " + sub in r.stdout


def test_conformance_command_prints_a_table() -> None:
    r = subprocess.run([sys.executable, "-m", "dlir.cli", "conformance", "--targets", "numpy", "--filter", "test_relu"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "| Relu | 1/0/0 |" in r.stdout and "| **total** |" in r.stdout


def test_a_model_object_with_external_data_is_refused_not_read_from_the_cwd() -> None:
    t = _empty_tensor("w", [2, 3])
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value="w.bin")
    m = _model([helper.make_node("Add", ["x", "w"], ["y"])], [_vi("x", [2, 3])], [_vi("y", [2, 3])], [t])
    with pytest.raises(DlirError, match="external file"):
        from_onnx(m)


def test_source_of_a_scan_that_emits_and_swaps_old_carries_computes_the_same() -> None:
    """The body emits a carry's old value and swaps two carries: the written source must read
    the old values before it rebinds them (emits first, a parallel assignment for the carries)."""
    text = """
model Swap(xs: f32[2, 5, 3], h0: f32[2, 3], c0: f32[2, 3]) -> (ys: f32[2, 5, 3], h: f32[2, 3], c: f32[2, 3]) {
    ys, h, c = scan x_t in xs along 1 carry h = h0, c = c0 {
        emit h
        hn = h * 2.0 + x_t
        h = c
        c = hn
    }
    return (ys, h, c)
}
"""
    graph = dlir.loads(text).graph()
    source, _ = source_and_param_names(graph)
    feeds = random_inputs(graph, seed=4)
    want = dlir.compile(dlir.loads(text), "numpy")(**feeds)
    got = dlir.compile(dlir.loads(source, "written.dlir"), "numpy")(**feeds)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
