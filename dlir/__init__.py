"""dlir: write a model once, run the same numbers on PyTorch, TensorFlow and ONNX Runtime."""

__version__ = "0.1.0"
