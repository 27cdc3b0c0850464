"""ONNX ``GroupNormalization`` written with dlir's reductions (as the spec's function body does).

The channels are cut into ``num_groups`` groups; each sample's group is normalised over its
channels and positions together (biased variance). Opset 18 scales and shifts per group
(``scale``, ``bias``: ``[num_groups]``); opset 21 fixed that to per channel (``[C]``), as torch's
``nn.GroupNorm`` does: the model's opset picks which.
"""

from __future__ import annotations

from typing import Any

from dlir.importer.builder import Builder, Operand, handles
from dlir.importer.onnx_ops import _scalar


@handles("GroupNormalization")
def _group_norm(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    x, scale, bias = ins[:3]
    t = b.type_of(x)
    groups = int(a["num_groups"])
    c = t.shape[1] if t.rank >= 2 else None
    if c is None or not all(d.is_static for d in t.shape[1:]) or c.value % groups:
        raise b.error(
            f"GroupNormalization: x: {t} must be [N, C, ...] with static C (a multiple of num_groups={groups}) "
            "and spatial dims"
        )
    n = t.shape[0].value if t.shape[0].is_static else t.shape[0]
    rest = 1
    for d in t.shape[1:]:
        rest *= d.value
    g = b.op("reshape", [x], shape=[n, groups, rest // groups])
    mu = b.op("mean", [g], axis=[2], keepdims=True)
    d = b.op("sub", [g, mu])
    var = b.op("mean", [b.op("mul", [d, d])], axis=[2], keepdims=True)
    y = b.op("div", [d, b.op("sqrt", [b.op("add", [var, _scalar(b, x, float(a.get("epsilon", 1e-5)))])])])
    shape = [n, *(dim.value for dim in t.shape[1:])]
    if b.opset < 21:  # per group, on the grouped view
        y = b.op(
            "add",
            [
                b.op("mul", [y, b.op("reshape", [scale], shape=[1, groups, 1])]),
                b.op("reshape", [bias], shape=[1, groups, 1]),
            ],
        )
        return b.op("reshape", [y], shape=shape)
    y = b.op("reshape", [y], shape=shape)
    per_channel = [1, c.value] + [1] * (t.rank - 2)
    return b.op(
        "add",
        [b.op("mul", [y, b.op("reshape", [scale], shape=per_channel)]), b.op("reshape", [bias], shape=per_channel)],
    )
