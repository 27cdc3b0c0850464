"""The ONNX target: a dlir graph as an ONNX ModelProto, run by ONNX Runtime.

``generate(graph)`` gives the bytes of the ``.onnx`` file; ``to_model`` the
ModelProto itself; ``Runner`` runs it (on CUDA when a GPU really works, else on
the CPU). Importing this package does not import onnxruntime: the Runner does,
when it is created.
"""

from __future__ import annotations

from .export import IR_VERSION, OPSET, generate, to_model
from .lowering import EMITTERS
from .runner import Runner, cuda_usable

SUFFIX = ".onnx"

__all__ = ["EMITTERS", "IR_VERSION", "OPSET", "Runner", "SUFFIX", "cuda_usable", "generate", "to_model"]
