"""Running the ONNX model with ONNX Runtime: provider choice and the Runner.

onnxruntime-gpu lists ``CUDAExecutionProvider`` even where CUDA cannot load,
and then logs errors when a session asks for it. So CUDA is probed once per
process, with ONNX Runtime's logging silenced, by running a one-node model; the
result decides ``device="auto"``. onnxruntime is imported only here, lazily.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
from collections.abc import Iterator
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from dlir.errors import UsageError
from dlir.ir.graph import Graph
from dlir.ir.types import DType
from dlir.runtime.runner import Runner as BaseRunner

from .export import IR_VERSION, OPSET, to_model

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
DEVICES = ("auto", "cpu", "cuda")
# TF32 matmuls on Ampere+ are ~1e-3 off in float32; dlir promises the same numbers.
CUDA_OPTIONS = {"device_id": 0, "use_tf32": 0}
_ORT_DEFAULT_SEVERITY = 2  # warnings and above: onnxruntime's default logger level

_cuda_probe: bool | None = None


def _probe_model() -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    g = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "probe", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    return m.SerializeToString()


def cuda_usable() -> bool:
    """Whether ONNX Runtime really runs on CUDA here (probed once per process, silently)."""
    global _cuda_probe
    if _cuda_probe is None:
        _cuda_probe = _probe_cuda()
    return _cuda_probe


def _probe_cuda() -> bool:
    import onnxruntime as ort

    if CUDA not in ort.get_available_providers():
        return False
    # A failed CUDA load is logged at error level through the default logger,
    # which session options do not reach: raise its threshold for the probe.
    ort.set_default_logger_severity(4)
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            sess = ort.InferenceSession(_probe_model(), _session_options(ort), providers=[(CUDA, CUDA_OPTIONS)])
            if sess.get_providers()[:1] != [CUDA]:
                return False
            x = np.arange(4, dtype=np.float32)
            return bool(np.array_equal(sess.run(None, {"x": x})[0], x + x))
    except Exception:  # noqa: BLE001 - any failure means "no usable CUDA"
        return False
    finally:
        ort.set_default_logger_severity(_ORT_DEFAULT_SEVERITY)


# ONNX Runtime's graph optimisation level for new sessions. Its default, ORT_ENABLE_ALL,
# fuses nodes into kernels of its own; `dlirc doctor` and the suite check that the numbers
# hold at ORT_DISABLE_ALL too.
_GRAPH_OPT = "ORT_ENABLE_ALL"
GRAPH_OPT_LEVELS = ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL")


@contextlib.contextmanager
def graph_optimization(level: str) -> Iterator[None]:
    """Sessions made inside run at ``level`` (one of GRAPH_OPT_LEVELS)."""
    global _GRAPH_OPT
    if level not in GRAPH_OPT_LEVELS:
        raise UsageError(f"unknown ONNX Runtime graph optimisation level '{level}'", hint=", ".join(GRAPH_OPT_LEVELS))
    saved, _GRAPH_OPT = _GRAPH_OPT, level
    try:
        yield
    finally:
        _GRAPH_OPT = saved


def _session_options(ort: Any) -> Any:
    so = ort.SessionOptions()
    # Errors only: "some nodes were assigned to the CPU" notes are expected.
    so.log_severity_level = 3
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _GRAPH_OPT)
    return so


def choose_providers(device: str) -> list[Any]:
    """ONNX Runtime providers for ``device``: "auto", "cpu" or "cuda"."""
    if device not in DEVICES:
        raise UsageError(f"unknown device '{device}'", hint="auto, cpu or cuda")
    if device == "cpu":
        return [CPU]
    if cuda_usable():
        return [(CUDA, CUDA_OPTIONS), CPU]
    if device == "cuda":
        raise UsageError(
            "device 'cuda' asked for, but ONNX Runtime has no usable CUDA on this machine",
            hint="onnxruntime's CUDAExecutionProvider could not run (no GPU, or CUDA/cuDNN libraries missing); "
            "use device 'auto' or 'cpu'",
        )
    return [CPU]


class Runner(BaseRunner):
    """The model as an ONNX Runtime session: numpy in, numpy out.

    ``model`` is the ModelProto (params as initializers); ``providers`` the
    execution providers in use. New params rebuild the model and the session.
    """

    target = "onnx"

    def __init__(self, graph: Graph, seed: int = 0, device: str = "auto") -> None:
        self._requested = choose_providers(device)  # a bad device fails before any work
        super().__init__(graph, seed, device)
        self.model: onnx.ModelProto
        self.providers: list[str] = []
        self._build()

    def _build(self) -> None:
        import onnxruntime as ort

        self.model = to_model(self.graph, self._params)
        self._session = ort.InferenceSession(
            self.model.SerializeToString(), _session_options(ort), providers=self._requested
        )
        self.providers = list(self._session.get_providers())

    def _params_changed(self) -> None:
        self._build()

    def _execute(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        names = self.graph.output_names()
        if not any(v.type.dtype is DType.bf16 for v in (*self.graph.inputs, *(v for _, v in self.graph.outputs))):
            return list(self._session.run(names, feeds))
        return self._execute_bf16(feeds, names)

    # -- kept inputs: OrtValues bound with IO binding, on the session's device ------------------
    def _ort_device(self) -> str:
        return "cuda" if self.providers[:1] == [CUDA] else "cpu"

    def _put(self, a: np.ndarray) -> Any:
        import onnxruntime as ort

        a = np.require(a, requirements="C")  # (np.ascontiguousarray makes a rank-0 array rank 1)
        if a.dtype == DType.bf16.numpy:
            return ort.OrtValue.ortvalue_from_numpy_with_onnx_type(a.view(np.uint16), TensorProto.BFLOAT16)
        return ort.OrtValue.ortvalue_from_numpy(a, self._ort_device(), 0)

    def _get(self, handle: Any) -> np.ndarray:
        if handle.data_type() == "tensor(bfloat16)":
            return _bf16_array(handle)
        return np.array(handle.numpy(), copy=True)

    def _run_kept(self, args: list[Any]) -> list[Any]:
        binding = self._session.io_binding()
        for v, a in zip(self.graph.inputs, args, strict=True):
            binding.bind_ortvalue_input(v.name, a)
        for name in self.graph.output_names():
            binding.bind_output(name, self._ort_device())
        self._session.run_with_iobinding(binding)
        return list(binding.get_outputs())

    def _execute_bf16(self, feeds: dict[str, np.ndarray], names: list[str]) -> list[np.ndarray]:
        # onnxruntime's numpy bridge does not know bfloat16: pass such tensors as
        # OrtValues over their raw 16-bit patterns.
        import onnxruntime as ort

        vals = {}
        for k, a in feeds.items():
            # np.require, not np.ascontiguousarray: that makes a rank-0 array rank 1.
            a = np.require(a, requirements="C")
            if a.dtype == DType.bf16.numpy:
                vals[k] = ort.OrtValue.ortvalue_from_numpy_with_onnx_type(a.view(np.uint16), TensorProto.BFLOAT16)
            else:
                vals[k] = ort.OrtValue.ortvalue_from_numpy(a)
        outs = self._session.run_with_ort_values(names, vals)
        return [
            _bf16_array(o) if v.type.dtype is DType.bf16 else o.numpy()
            for (_, v), o in zip(self.graph.outputs, outs, strict=True)
        ]


def _bf16_array(value: Any) -> np.ndarray:
    """A bfloat16 OrtValue (in CPU memory) as a numpy array, copied from its raw bytes."""
    raw = ctypes.string_at(value.data_ptr(), value.tensor_size_in_bytes())
    return np.frombuffer(raw, dtype=np.uint16).reshape(value.shape()).view(DType.bf16.numpy).copy()
