"""What a torch emitter sees of one IR node, and small helpers every emitter table shares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dlir.ir.graph import Node
from dlir.ir.types import Dim, DType, TensorType

TORCH_DTYPES = {
    DType.f16: "torch.float16",
    DType.bf16: "torch.bfloat16",
    DType.f32: "torch.float32",
    DType.f64: "torch.float64",
    DType.i32: "torch.int32",
    DType.i64: "torch.int64",
    DType.bool: "torch.bool",
    DType.i8: "torch.int8",
    DType.i16: "torch.int16",
    DType.u8: "torch.uint8",
}


@dataclass(frozen=True)
class Site:
    """What an emitter sees of one node.

    ``args`` are Python expressions for the node's inputs, ``dim`` writes a
    (possibly symbolic) dim as Python, and ``device`` is an expression naming the
    device new tensors belong on (None: torch's default).
    """

    node: Node
    args: list[str]
    dim: Callable[[Dim | int], str]
    device: str | None

    def attr(self, name: str) -> Any:
        return self.node.attrs[name]

    @property
    def x(self) -> str:
        return self.args[0]

    @property
    def in_type(self) -> TensorType:
        return self.node.inputs[0].type

    @property
    def out_type(self) -> TensorType:
        return self.node.outputs[0].type


Emitter = Callable[[Site], str]


def torch_dtype(dt: DType) -> str:
    return TORCH_DTYPES[dt]


def tuple_src(items: list[str]) -> str:
    """A Python tuple display: ``(a,)`` for one item."""
    return f"({items[0]},)" if len(items) == 1 else "(" + ", ".join(items) + ")"
