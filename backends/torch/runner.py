"""Running a graph on PyTorch: generate the module's source, import it, call it.

The source is written to a private temporary directory and imported like any
other file (no ``exec`` of strings), so tracebacks, ``inspect`` and
``torch.compile`` see real source lines.
"""

from __future__ import annotations

import importlib.util
import itertools
import shutil
import sys
import tempfile
import weakref
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from dlir.backends.torch.codegen import render

from dlir.errors import UsageError
from dlir.ir.graph import Graph
from dlir.runtime.runner import Runner as BaseRunner

_counter = itertools.count()


def _onednn_available() -> bool:
    """torch was built with oneDNN (mkldnn): its CPU kernels the generated code may call."""
    import torch

    return bool(torch.backends.mkldnn.is_available())


def resolve_device(device: str) -> str:
    """``auto`` -> cuda when torch sees a GPU, else cpu; ``cuda`` without one is an error."""
    import torch

    if device == "auto":
        return resolve_device("cuda") if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UsageError(
                f"device '{device}' was asked for, but torch sees no CUDA GPU",
                hint="use --device cpu (or auto), or install a CUDA build of torch on a machine with a GPU",
            )
        _tf32_off(torch)
        return device
    raise UsageError(f"unknown device '{device}'", hint="devices: auto, cpu, cuda, cuda:N")


def _tf32_off(torch: Any) -> None:
    # cuDNN convolutions (and, where enabled, matmuls) on Ampere+ round to TF32 (~1e-3):
    # dlir promises the reference's numbers, so the GPU computes in full float32.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def _import_file(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # inspect and torch.compile look modules up here
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _cleanup(directory: str, module_name: str) -> None:
    sys.modules.pop(module_name, None)
    shutil.rmtree(directory, ignore_errors=True)


def to_torch(a: np.ndarray, device: str) -> Any:
    """A numpy array as a torch tensor on ``device`` (bfloat16 moves as raw bits)."""
    import torch

    if not a.flags.c_contiguous:  # (np.ascontiguousarray would turn a scalar into shape (1,))
        a = a.copy(order="C")
    if a.dtype.name == "bfloat16":
        return torch.from_numpy(a.view(np.int16).copy()).view(torch.bfloat16).to(device)
    if not a.flags.writeable:  # torch.from_numpy warns on read-only arrays
        a = a.copy()
    return torch.from_numpy(a).to(device)


def to_numpy(t: Any) -> np.ndarray:
    """A torch tensor as a numpy array that shares no memory with the module or the inputs."""
    import torch

    t = t.detach()
    if t.dtype == torch.bfloat16:
        import ml_dtypes  # type: ignore[import-not-found]

        return t.view(torch.int16).cpu().numpy().copy().view(ml_dtypes.bfloat16)
    return t.cpu().numpy().copy()


class Runner(BaseRunner):
    """The graph as a generated ``torch.nn.Module``, run in eval mode without autograd.

    ``source`` is the generated Python file, ``module`` the instantiated module.
    """

    target = "torch"

    def __init__(self, graph: Graph, seed: int = 0, device: str = "auto") -> None:
        super().__init__(graph, seed, device)
        self.device = resolve_device(device)
        rendered = render(graph, cpu_kernels=self.device == "cpu" and _onednn_available())
        self.source = rendered.source
        self._dir = tempfile.mkdtemp(prefix="dlir_torch_")
        self._module_name = f"dlir_generated_{next(_counter)}_{rendered.class_name}"
        path = Path(self._dir) / f"{self._module_name}.py"
        path.write_text(self.source, encoding="utf-8")
        weakref.finalize(self, _cleanup, self._dir, self._module_name)
        self.py_module = _import_file(path, self._module_name)
        cls = getattr(self.py_module, rendered.class_name)
        self.module = cls(seed=seed).to(self.device).eval()

    def _execute(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        import torch

        args = [to_torch(feeds[v.name], self.device) for v in self.graph.inputs]
        with torch.no_grad():
            out = self.module(*args)
        outs = list(out) if isinstance(out, tuple) else [out]
        arrays = [to_numpy(t) for t in outs]
        for (name, v), a in zip(self.graph.outputs, arrays, strict=True):
            assert a.dtype == v.type.dtype.numpy, f"torch output '{name}' is {a.dtype}, declared {v.type}"
        return arrays

    def _put(self, a: np.ndarray) -> Any:
        return to_torch(a, self.device)

    def _get(self, handle: Any) -> np.ndarray:
        return to_numpy(handle)

    def _run_kept(self, args: list[Any]) -> list[Any]:
        import torch

        with torch.no_grad():
            out = self.module(*args)
        return list(out) if isinstance(out, tuple) else [out]

    def _params_changed(self) -> None:
        state = {k: to_torch(v, self.device) for k, v in self._params.items()}
        self.module.load_state_dict(state, strict=True)
