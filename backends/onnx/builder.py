"""The state of one ONNX graph under construction: nodes, initializers, names, shape tensors.

Emitters (see :mod:`lowering`) call :class:`Builder` to add ONNX nodes for the dlir
node being lowered; the builder names every node and tensor uniquely, tags each
node with the dlir node's source location, shares constants, and computes
symbolic dims (``B``, ``B*T``) at run time from the inputs that bind them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from numpy.typing import DTypeLike
from onnx import TensorProto, helper, numpy_helper

from dlir.errors import UNKNOWN_LOC, LoweringError, SourceLoc
from dlir.ir.graph import Graph, Node, Value
from dlir.ir.names import unique_name
from dlir.ir.types import Dim, DType, TensorType

ONNX_DTYPES: dict[DType, int] = {
    DType.f16: TensorProto.FLOAT16,
    DType.bf16: TensorProto.BFLOAT16,
    DType.f32: TensorProto.FLOAT,
    DType.f64: TensorProto.DOUBLE,
    DType.i32: TensorProto.INT32,
    DType.i64: TensorProto.INT64,
    DType.bool: TensorProto.BOOL,
    DType.i8: TensorProto.INT8,
    DType.i16: TensorProto.INT16,
    DType.u8: TensorProto.UINT8,
}


def value_info(name: str, t: TensorType) -> onnx.ValueInfoProto:
    """A typed ValueInfo; symbolic dims as ``dim_param``, unknown ones unnamed."""
    shape: list[int | str | None] = []
    for d in t.shape:
        shape.append(None if d.unknown else d.value if d.is_static else str(d).replace(" ", ""))
    return helper.make_tensor_value_info(name, ONNX_DTYPES[t.dtype], shape)


def loc_text(loc: SourceLoc) -> str:
    """``file:line:col``, or "" when the location is unknown."""
    if loc == UNKNOWN_LOC or loc.line <= 0:
        return ""
    # Protobuf strings must be valid UTF-8; odd bytes in a file name become escapes.
    file = loc.file.encode("utf-8", "backslashreplace").decode("utf-8")
    return f"{file}:{loc.line}:{loc.col}"


class Builder:
    """Collects the nodes and initializers of one ONNX graph lowered from a dlir graph."""

    def __init__(self, graph: Graph, reserved: set[str]) -> None:
        self.graph = graph
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._taken: set[str] = set(reserved)
        self._node_names: set[str] = set()
        self._consts: dict[tuple[int, bytes, tuple[int, ...]], str] = {}
        self._dims: dict[Dim, str] = {}
        self._symbols = graph.symbol_sources()
        self.names: dict[Value, str] = {}  # dlir value -> ONNX tensor name
        # The dlir node being lowered: it names and locates every ONNX node added.
        self.node: Node | None = None
        self.dt: DType = DType.f32  # the dtype the current emitter computes in
        # Scans of ``graph`` lowered as one LSTM/GRU node, with their cells (set by export).
        self.fused_cells: dict[Node, Any] = {}

    # -- names ------------------------------------------------------------------
    def fresh(self, base: str) -> str:
        """A tensor name used nowhere else in the model."""
        return unique_name(base, self._taken)

    def _node_name(self, op_type: str) -> str:
        owner = self.node.outputs[0].name if self.node is not None and self.node.outputs else "graph"
        where = loc_text(self.node.loc) if self.node is not None else ""
        base = f"{owner}/{op_type}" + (f"@{where}" if where else "")
        name, i = base, 1
        while name in self._node_names:
            name = f"{base}#{i}"
            i += 1
        self._node_names.add(name)
        return name

    def _base(self) -> str:
        return self.node.outputs[0].name if self.node is not None and self.node.outputs else "t"

    # -- nodes ------------------------------------------------------------------
    def op(self, op_type: str, inputs: Sequence[str], **attrs: Any) -> str:
        """Add a one-output node; returns its output's name."""
        return self.op_n(op_type, inputs, 1, **attrs)[0]

    def op_n(
        self, op_type: str, inputs: Sequence[str], n_out: int, outputs: Sequence[str] | None = None, **attrs: Any
    ) -> list[str]:
        """Add a node with ``n_out`` outputs (fresh names unless ``outputs`` are given); returns their names."""
        outs = (
            list(outputs)
            if outputs is not None
            else [self.fresh(f"{self._base()}.{op_type.lower()}") for _ in range(n_out)]
        )
        doc = ""
        if self.node is not None:
            where = loc_text(self.node.loc)
            doc = f"dlir {self.node.op}" + (f" at {where}" if where else "")
        node = helper.make_node(op_type, list(inputs), outs, name=self._node_name(op_type), doc_string=doc, **attrs)
        self.nodes.append(node)
        return outs

    def pinned(self) -> set[str]:
        """Tensors kept for reuse by later nodes (shared shape pieces): never renamed."""
        return set(self._dims.values())

    def cast(self, x: str, dtype: DType) -> str:
        return self.op("Cast", [x], to=ONNX_DTYPES[dtype])

    # -- constants --------------------------------------------------------------
    def const(self, value: Any, dtype: DType | DTypeLike, base: str = "const") -> str:
        """An initializer holding ``value``; equal constants are shared."""
        np_dt = dtype.numpy if isinstance(dtype, DType) else np.dtype(dtype)
        arr = np.asarray(value).astype(np_dt)
        tensor = numpy_helper.from_array(arr)
        key = (tensor.data_type, arr.tobytes(), arr.shape)
        if key not in self._consts:
            tensor.name = self.fresh(base)
            self.initializers.append(tensor)
            self._consts[key] = tensor.name
        return self._consts[key]

    def scalar(self, value: float | int | bool) -> str:
        """A rank-0 constant in the dtype the current emitter computes in."""
        return self.const(value, self.dt, "c")

    def ints(self, values: Sequence[int] | np.ndarray) -> str:
        """A 1-D int64 constant (axes, shapes, slice bounds)."""
        return self.const(np.asarray(list(values), dtype=np.int64).reshape(len(values)), np.int64, "ints")

    # -- shapes -----------------------------------------------------------------
    def shape_tensor(self, dims: Sequence[int | Dim]) -> str:
        """A 1-D int64 tensor holding ``dims``; symbolic dims are computed from the inputs."""
        if all(isinstance(d, int) or d.is_static for d in dims):
            return self.ints([d if isinstance(d, int) else d.value for d in dims])
        parts: list[str] = []
        run: list[int] = []  # adjacent static dims share one constant
        for d in dims:
            if isinstance(d, int) or d.is_static:
                run.append(d if isinstance(d, int) else d.value)
                continue
            if run:
                parts.append(self.ints(run))
                run = []
            parts.append(self.dim_tensor(d))
        if run:
            parts.append(self.ints(run))
        return parts[0] if len(parts) == 1 else self.op("Concat", parts, axis=0)

    def dim_tensor(self, d: Dim) -> str:
        """A 1-element int64 tensor holding the run-time value of ``d``."""
        if d.is_static:
            return self.ints([d.value])
        if d.unknown:
            raise LoweringError("onnx: a shape attribute holds an unknown dim '?'", self._loc())
        if d in self._dims:
            return self._dims[d]
        total: str | None = None
        for mono, coef in d.terms:
            term = self._monomial(mono, coef)
            total = term if total is None else self.op("Add", [total, term])
        assert total is not None
        self._dims[d] = total
        return total

    def _monomial(self, mono: tuple[str, ...], coef: int) -> str:
        if not mono:
            return self.ints([coef])
        out = self._symbol(mono[0])
        for s in mono[1:]:
            out = self.op("Mul", [out, self._symbol(s)])
        return out if coef == 1 else self.op("Mul", [out, self.ints([coef])])

    def _symbol(self, sym: str) -> str:
        key = Dim.of(sym)
        if key in self._dims:
            return self._dims[key]
        if sym not in self._symbols:
            raise LoweringError(
                f"onnx: the size '{sym}' is used in a shape but no input has an axis of that size",
                self._loc(),
                hint="symbols in shapes must appear as a whole dim of some model input",
            )
        src, axis = self._symbols[sym]
        # Shape's start/end (opset 15+) read one axis without a Gather.
        name = self.op("Shape", [self.names[src]], start=axis, end=axis + 1)
        self._dims[key] = name
        return name

    def _loc(self) -> SourceLoc | None:
        return self.node.loc if self.node is not None else None
