"""The targets and how to reach their backends.

Each backend package ``dlir.backends.<target>`` provides, without importing its
framework at import time:

- ``EMITTERS``: op name -> emitter, one entry per op it lowers;
- ``generate(graph) -> bytes``: the file ``dlirc compile`` writes (Python source
  for torch/tensorflow, which also take ``weights``, the name of the
  ``.safetensors`` file beside it that the module reads; a serialised ModelProto
  for onnx, which also takes ``seed`` and ``params`` since it embeds the weights);
- ``SUFFIX``: that file's suffix (``.py`` or ``.onnx``);
- ``Runner``: a :class:`dlir.runtime.runner.Runner` subclass that imports the
  framework when it is created.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from dlir.errors import UsageError, did_you_mean

TARGETS = ("numpy", "torch", "tensorflow", "onnx")
BACKEND_TARGETS = ("torch", "tensorflow", "onnx")


def check_target(target: str) -> str:
    if target not in TARGETS:
        raise UsageError(
            f"unknown target '{target}'", hint=did_you_mean(target, TARGETS) or "targets: " + ", ".join(TARGETS)
        )
    return target


def backend(target: str) -> ModuleType:
    """The backend package of a framework target."""
    check_target(target)
    if target == "numpy":
        raise UsageError(
            "the numpy target is the reference interpreter; it generates no file",
            hint="choose torch, tensorflow or onnx",
        )
    return importlib.import_module(f"dlir.backends.{target}")


def runner_class(target: str) -> Any:
    check_target(target)
    if target == "numpy":
        from dlir.runtime.runner import NumpyRunner

        return NumpyRunner
    return backend(target).Runner
