"""Every op dlir knows, each defined once; importing this package registers them all."""

from dlir.ops import backward, control, conv, elementwise, gather_scatter, indexing, linalg, logic, nn, reduce, shape  # noqa: F401
from dlir.ops.registry import REGISTRY, Attr, OpDef, all_ops, check_attrs, get_op, lowered_ops

__all__ = ["REGISTRY", "Attr", "OpDef", "all_ops", "check_attrs", "get_op", "lowered_ops"]
