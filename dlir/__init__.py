"""dlir: write a model once, run the same numbers on PyTorch, TensorFlow and ONNX Runtime.

Importing dlir is cheap: it pulls in no framework; the parser and backends load
on first use.
"""

from dlir.api import Program, compile, load, loads
from dlir.errors import DlirError

__version__ = "0.1.0"

__all__ = ["DlirError", "Program", "compile", "load", "loads", "__version__"]
