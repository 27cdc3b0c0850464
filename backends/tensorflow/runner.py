"""Runs a graph on TensorFlow through the very file ``dlirc compile`` writes.

The runner generates the source, writes it to a private directory, imports it
with importlib and instantiates the model with the seed; numpy goes in, numpy
comes out. TensorFlow is imported here, on first use, never at package import.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from dlir.backends.tensorflow.codegen import class_name, generate_source, variable_name

from dlir.errors import UsageError
from dlir.ir.graph import Graph
from dlir.runtime.runner import Runner as BaseRunner

_counter = itertools.count()

# What TensorFlow prints while loading on a machine without CUDA: not news to the user.
_NOISE = re.compile(
    r"absl::InitializeLog|cudart_stub|cuda_platform|cuInit|cpu_feature_guard|"
    r"rebuild TensorFlow with the appropriate compiler flags|Unable to register cu|"
    r"computation placer already registered|TF-TRT Warning|oneDNN custom operations"
)


@contextlib.contextmanager
def _filtered_stderr() -> Iterator[None]:
    """Hold back the C++ log lines TensorFlow writes to fd 2 while it loads.

    They come before absl logging is set up, so TF_CPP_MIN_LOG_LEVEL cannot
    silence them. Lines that are not known noise are written back afterwards.
    """
    try:
        saved = os.dup(2)
    except OSError:  # no usable fd 2: nothing to filter
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        sys.stderr.flush()
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = [ln for ln in tmp.read().decode("utf-8", "replace").splitlines(True) if not _NOISE.search(ln)]
            if kept:
                sys.stderr.write("".join(kept))


_TF: ModuleType | None = None


def import_tf() -> ModuleType:
    """TensorFlow, imported once, quietly, with TF32 matmuls turned off."""
    global _TF
    if _TF is None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        with _filtered_stderr():
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")  # CUDA probing logs happen here
        # TF32 matmuls on Ampere+ lose ~3 digits: cross-target checks would fail.
        tf.config.experimental.enable_tensor_float_32_execution(False)
        _TF = tf
    return _TF


def _device_scope(tf: ModuleType, device: str) -> str | None:
    """The tf.device string for ``device`` ("auto": TensorFlow's own placement)."""
    if device == "auto":
        return None
    if device == "cpu":
        return "/CPU:0"
    m = re.fullmatch(r"(?:cuda|gpu)(?::(\d+))?", device)
    if m is None:
        raise UsageError(f"unknown device '{device}'", hint="use auto, cpu or cuda (cuda:N for another GPU)")
    index = int(m.group(1) or 0)
    gpus = tf.config.list_physical_devices("GPU")
    if index >= len(gpus):
        raise UsageError(
            f"device '{device}' asked for, but TensorFlow sees {len(gpus)} GPU(s)",
            hint="use --device auto or cpu here, or install a CUDA build of TensorFlow on a machine with a GPU",
        )
    return f"/GPU:{index}"


class Runner(BaseRunner):
    """A graph compiled to a ``tf.Module`` and run by TensorFlow."""

    target = "tensorflow"

    def __init__(self, graph: Graph, seed: int = 0, device: str = "auto") -> None:
        super().__init__(graph, seed, device)
        self.source = generate_source(graph)
        tf = import_tf()
        self._tf = tf
        self._device = _device_scope(tf, device)
        self._dir = tempfile.TemporaryDirectory(prefix="dlir-tf-")
        self.module_file = self._write(graph)
        with self._scope():
            self.py_module = self._import(self.module_file)
            self.module = getattr(self.py_module, class_name(graph))(seed=seed)

    def _write(self, graph: Graph) -> Path:
        path = Path(self._dir.name) / f"{class_name(graph).lower()}.py"
        path.write_text(self.source, encoding="utf-8")
        return path

    def _import(self, path: Path) -> ModuleType:
        # A unique module name per runner: two models of the same name never collide.
        name = f"dlir_generated_tf_{next(_counter)}"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod  # so that inspect and tf.function find the source
        spec.loader.exec_module(mod)
        return mod

    def _scope(self) -> Any:
        return self._tf.device(self._device) if self._device else contextlib.nullcontext()

    def _execute(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        args = [feeds[v.name] for v in self.graph.inputs]
        with self._scope():
            outs = self.module(*args)
        outs = outs if isinstance(outs, (tuple, list)) else (outs,)
        return [o.numpy() for o in outs]

    # Kept inputs are tf.Variables; one tf.function reads them, runs the module and assigns the
    # carried outputs back, so a step passes only the other inputs and returns only the loss.
    def _start_keeping(self, values: dict[str, np.ndarray]) -> None:
        tf = self._tf
        with self._scope():
            self._kept = {k: tf.Variable(v, trainable=False, name=variable_name(k)) for k, v in values.items()}
        free = [v for v in self.graph.inputs if v.name not in values]
        kept, carry, outs_kept = self._kept, self._carry, self._free
        call, inputs = self.module.__call__, list(self.graph.inputs)

        def step(*args: Any) -> Any:
            given = dict(zip((v.name for v in free), args, strict=True))
            outs = call(*(kept[v.name] if v.name in kept else given[v.name] for v in inputs))
            outs = list(outs) if isinstance(outs, (tuple, list)) else [outs]
            for i, name in carry:
                kept[name].assign(outs[i])
            return [outs[i] for i in outs_kept]

        spec = [
            tf.TensorSpec([None if not d.is_static else d.value for d in v.type.shape], tf.as_dtype(v.type.dtype.numpy))
            for v in free
        ]
        with self._scope():
            self._step_fn = tf.function(step, input_signature=spec, autograph=False).get_concrete_function()
        self._free_inputs = [v.name for v in free]

    def _step_kept(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self._scope():
            outs = self._step_fn(*(self._tf.constant(feeds[n]) for n in self._free_inputs))
        return [np.array(o.numpy(), copy=True) for o in outs]

    def _read_kept(self, name: str) -> np.ndarray:
        return np.array(self._kept[name].numpy(), copy=True)

    def _write_kept(self, values: dict[str, np.ndarray]) -> None:
        for k, v in values.items():
            self._kept[k].assign(v)

    def _params_changed(self) -> None:
        with self._scope():
            self.module.load_params(self._params)
