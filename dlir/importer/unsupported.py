"""Nodes the importer has no handler for: folded when their inputs are known, else reported.

A node whose every input is known at import time (initializers, ``Constant``, the
``Shape`` of a static tensor and whatever is computed from those) is evaluated with
ONNX's own reference implementation (``onnx.reference``, numpy code that ships with
``onnx``), so an op dlir lacks never blocks a model when it only computes on
constants: torch.onnx's attention masks (``Mod``, ``And`` on ``Range``), shape
arithmetic left unfolded by ``do_constant_folding=False``. Ops dlir has are folded
by the handlers themselves, with dlir's own numpy references (``Builder.op``).

Whatever is left is refused in one message listing every such node, with its op's
domain and opset, and a hint where exporting the model differently would avoid it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dlir.errors import SourceLoc
from dlir.importer.onnx_import import ImportError_

MAX_FOLD_ELEMENTS = 2**24  # a node whose known inputs are bigger than this is not evaluated at import

# Re-exports that write an op dlir lacks as ops it has.
REEXPORT_HINTS = {
    "RotaryEmbedding": "opset <= 22 exporters write it as Mul/Add/Slice nodes",
    "Scatter": "re-export with opset >= 11, which writes ScatterElements",
    "If": "export with static shapes (or trace instead of scripting) so the branch is decided at export",
    "Loop": "export with static shapes (or trace instead of scripting) so the loop is unrolled at export",
    "SequenceConstruct": "dlir has no sequences: export with a fixed number of tensors",
    "SplitToSequence": "dlir has no sequences: export Split with a fixed number of outputs",
    "QuantizeLinear": "dlir imports float models: export before quantizing",
    "DequantizeLinear": "dlir imports float models: export before quantizing",
    "DynamicQuantizeLinear": "dlir imports float models: export before quantizing",
}
CONSTANT_FOLDING_HINT = (
    "it computes on the shape of an input with symbolic dims: export with static input shapes "
    "and do_constant_folding=True (torch.onnx) so it becomes a constant"
)


def is_known(x: Any) -> bool:
    """A value fully known at import: an array of numbers (not a vector of symbolic dims)."""
    return isinstance(x, np.ndarray) and x.dtype != object


def has_subgraph(n: Any) -> bool:
    return any(a.HasField("g") or len(a.graphs) for a in n.attribute)


def fold_with_reference(n: Any, ins: list[Any], opsets: dict[str, int]) -> list[np.ndarray] | None:
    """``n`` evaluated on its known inputs by ONNX's reference implementation; None when it cannot be."""
    if has_subgraph(n) or not all(x is None or is_known(x) for x in ins):
        return None
    if sum(x.size for x in ins if x is not None) > MAX_FOLD_ELEMENTS:
        return None
    from onnx import NodeProto, helper
    from onnx.reference import ReferenceEvaluator

    node = NodeProto()
    node.CopyFrom(n)
    names = [f"in{i}" if x is not None else "" for i, x in enumerate(ins)]
    node.ClearField("input")
    node.input.extend(names)
    outs = [f"out{i}" if o else "" for i, o in enumerate(n.output)]
    node.ClearField("output")
    node.output.extend(outs)
    try:
        feeds = {name: x for name, x in zip(names, ins, strict=True) if name}
        inputs = [
            helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(x.dtype), x.shape)
            for name, x in zip(names, ins, strict=True)
            if name
        ]
        outputs = [helper.make_empty_tensor_value_info(o) for o in outs if o]
        model = helper.make_model(
            helper.make_graph([node], "fold", inputs, outputs),
            opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()],
        )
        got = ReferenceEvaluator(model).run(None, feeds)
    except Exception:  # noqa: BLE001 - any failure of the reference means: not foldable, report the node
        return None
    results = [np.asarray(g) for g in got]
    if any(r.dtype == object for r in results):
        return None  # sequences, maps, strings: not values dlir can hold
    it = iter(results)
    return [next(it) if o else np.zeros(0) for o in outs]


def describe(n: Any, opsets: dict[str, int]) -> str:
    domain = n.domain or "ai.onnx"
    opset = opsets.get("" if domain == "ai.onnx" else domain)
    where = f"opset {opset}" if opset is not None else "no opset imported"
    return f"{n.op_type} (node '{n.name or '?'}', {domain} {where})"


def hint_for(n: Any, ins: list[Any]) -> str | None:
    """What re-export would avoid this node, if something would."""
    if n.domain not in ("", "ai.onnx"):
        return (
            f"ops of domain '{n.domain}' come from a runtime's graph optimizer or a custom exporter: "
            "export the plain ONNX model"
        )
    if any(isinstance(x, np.ndarray) and x.dtype == object for x in ins):
        return CONSTANT_FOLDING_HINT
    return REEXPORT_HINTS.get(n.op_type)


def unsupported_error(path: str, missing: list[tuple[Any, list[Any]]], opsets: dict[str, int]) -> ImportError_:
    """One error naming every node dlir cannot import (``missing``: node and its inputs as the builder had them)."""
    listed = [describe(n, opsets) for n, _ in missing]
    ops = sorted({n.op_type for n, _ in missing})
    hints: list[str] = []
    for n, ins in missing:
        h = hint_for(n, ins)
        if h is not None and f"{n.op_type}: {h}" not in hints:
            hints.append(f"{n.op_type}: {h}")
    return ImportError_(
        f"the model uses {len(missing)} node(s) of ops dlir cannot import: "
        + "; ".join(listed[:50])
        + (f"; ... {len(listed) - 50} more" if len(listed) > 50 else ""),
        SourceLoc(path, 0, 0),
        hint="unsupported ops: " + ", ".join(ops) + "".join(f"; {h}" for h in hints),
    )
