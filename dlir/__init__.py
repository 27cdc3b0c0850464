"""dlir: write a model once, run the same numbers on PyTorch, TensorFlow and ONNX Runtime.

Importing dlir is cheap: it pulls in no framework; the parser and backends load
on first use.
"""

from dlir.api import Program, compile, load, loads
from dlir.errors import DlirError

__version__ = "0.1.0"


def from_onnx(path, name=None):  # type: ignore[no-untyped-def]
    """Import an ONNX model: its dlir graph and weights (see :mod:`dlir.importer`)."""
    from dlir.importer import from_onnx as _from_onnx

    return _from_onnx(path, name)


__all__ = ["DlirError", "Program", "compile", "from_onnx", "load", "loads", "__version__"]
