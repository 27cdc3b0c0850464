"""Importers: other formats into dlir IR (ONNX today)."""

from dlir.importer.onnx_import import ImportedModel, from_onnx

__all__ = ["from_onnx", "ImportedModel"]
