"""ONNX -> dlir IR: read a ModelProto safely and build a :class:`Graph` with its weights.

The importer is the inverse of ``backends/onnx``: initializers become params (their
values kept in :attr:`ImportedModel.params`), inputs with ``dim_param`` become
symbolic dims (unknown dims the graph needs equal become one: ``dim_unify``), and
each ONNX node becomes one or a few dlir ops (``onnx_ops``, ``onnx_shape_ops``).
Values known at import time (initializers used as shapes, ``Constant``, ``Shape``
of a static tensor and whatever is computed from them) are folded with the ops'
numpy references, so a ``Shape -> Gather -> Concat -> Reshape`` chain becomes one
``reshape`` with a static target.

Hostile files are refused with a :class:`DlirError`: undecodable protobuf, unknown
element types, cycles and dangling names, external data outside the model's folder,
absurd dims. Nothing outside the model's folder is read.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlir.errors import DlirError, SourceLoc
from dlir.importer.dim_unify import DimKey, DimUnion, MergeDims, key_label
from dlir.ir.graph import Graph
from dlir.ir.names import unique_name
from dlir.ir.types import Dim, DType, TensorType

MAX_DIM = 2**31 - 1
# Opsets 22..28 changed none of the covered ops' semantics (they widened type lists).
MAX_OPSET = 28
MAX_ELEMENTS = 2**32  # a declared tensor bigger than this is refused (16 GiB of f32)
RESERVED = set(
    "model layer fn param buffer forward return for in range scan along carry emit reverse use true false "
    "f16 bf16 f32 f64 i32 i64 bool".split()
)

# ONNX TensorProto element types dlir has.
ONNX_DTYPES = {
    1: DType.f32,
    10: DType.f16,
    11: DType.f64,
    16: DType.bf16,
    6: DType.i32,
    7: DType.i64,
    9: DType.bool,
    2: DType.u8,
    3: DType.i8,
    5: DType.i16,
}
DTYPES_TEXT = "dlir has f16 bf16 f32 f64 i32 i64 bool, and i8 i16 u8"
ONNX_TYPE_NAMES = {
    0: "UNDEFINED",
    1: "FLOAT",
    2: "UINT8",
    3: "INT8",
    4: "UINT16",
    5: "INT16",
    6: "INT32",
    7: "INT64",
    8: "STRING",
    9: "BOOL",
    10: "FLOAT16",
    11: "DOUBLE",
    12: "UINT32",
    13: "UINT64",
    14: "COMPLEX64",
    15: "COMPLEX128",
    16: "BFLOAT16",
}


class ImportError_(DlirError):
    """An ONNX file dlir cannot or will not import."""


@dataclass
class ImportedModel:
    """An imported ONNX model: its dlir graph and the initializer values by param name."""

    graph: Graph
    params: dict[str, np.ndarray] = field(default_factory=dict)
    opset: int = 0
    source_path: str = ""
    input_names: dict[str, str] = field(
        default_factory=dict
    )  # ONNX input name -> dlir input name (unused ones dropped)
    # dlir symbol -> the ONNX input dims unified into it (dim_param, or input[axis]), where more than one
    unified: dict[str, list[str]] = field(default_factory=dict)

    def compile(self, target: str = "numpy", device: str = "auto") -> Any:
        """A runner for ``target`` with the imported weights loaded."""
        from dlir.targets import check_target, runner_class

        check_target(target)
        run = runner_class(target)(self.graph, seed=0, device=device)
        if self.params:
            run.load_params(self.params)
        return run

    def to_source(self) -> str:
        from dlir.importer.to_source import graph_source, unified_note

        return graph_source(self.graph, unified_note(self.unified))


def ident(name: str, used: set[str]) -> str:
    """A dlir identifier derived from an ONNX name, unique in ``used``."""
    s = re.sub(r"[^A-Za-z0-9_]", "_", name) or "v"
    if not re.match(r"[A-Za-z_]", s):
        s = "v_" + s
    if s in RESERVED:
        s += "_"
    return unique_name(s, used, sep="_")


def _err(msg: str, path: str, hint: str | None = None) -> ImportError_:
    return ImportError_(msg, SourceLoc(path, 0, 0), hint=hint)


# -- reading the file ----------------------------------------------------------------


def read_model(path: str | os.PathLike[str]) -> Any:
    """The ModelProto in ``path``, external data resolved inside its folder only."""
    import onnx
    from google.protobuf.message import DecodeError

    p = os.fspath(path)
    try:
        data = Path(p).read_bytes()
    except FileNotFoundError:
        raise _err(f"no such file: '{p}'", p, "check the path") from None
    except IsADirectoryError:
        raise _err(f"'{p}' is a directory, not an .onnx file", p) from None
    except OSError as e:
        raise _err(f"cannot read '{p}': {e.strerror}", p) from None
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as e:
        raise _err(
            f"'{p}' is not a valid ONNX file (protobuf decode failed: {e})", p, "the file may be truncated or corrupt"
        ) from None
    if not model.HasField("graph") or (not model.graph.node and not model.graph.output):
        raise _err(f"'{p}' holds no ONNX graph", p, "the file may be truncated or not an ONNX model")
    folder = Path(p).resolve().parent
    for t in _all_initializers(model.graph):
        if t.data_location == 1:  # EXTERNAL
            _load_external(t, folder, p)
    return model


def _all_initializers(graph: Any) -> list[Any]:
    out = list(graph.initializer)
    for n in graph.node:
        for a in n.attribute:
            if a.HasField("t"):
                out.append(a.t)
    return out


def _load_external(t: Any, folder: Path, p: str) -> None:
    info = {e.key: e.value for e in t.external_data}
    loc = info.get("location", "")
    if not loc or os.path.isabs(loc):
        raise _err(
            f"initializer '{t.name}' has external data at '{loc}', an absolute or empty path",
            p,
            "external data must lie in the model's folder",
        )
    target = (folder / loc).resolve()
    if folder != target and folder not in target.parents:
        raise _err(
            f"initializer '{t.name}' points outside the model's folder: '{loc}'",
            p,
            "external data must lie in the model's folder",
        )
    try:
        offset = int(info.get("offset", "0"))
        length = int(info["length"]) if "length" in info else -1
    except ValueError:
        raise _err(f"initializer '{t.name}' has a bad external-data offset/length", p) from None
    if offset < 0:
        raise _err(f"initializer '{t.name}' has a negative external-data offset", p)
    try:
        with open(target, "rb") as fh:
            fh.seek(offset)
            data = fh.read(length if length >= 0 else -1)
    except OSError as e:
        raise _err(f"cannot read external data '{loc}' of initializer '{t.name}': {e.strerror}", p) from None
    if length >= 0 and len(data) != length:
        raise _err(f"external data '{loc}' of initializer '{t.name}' is truncated", p)
    t.raw_data = data
    del t.external_data[:]
    t.data_location = 0


def tensor_value(t: Any, p: str) -> np.ndarray:
    """A TensorProto as numpy, with its element type and size checked."""
    from onnx import numpy_helper

    if t.data_type not in ONNX_DTYPES:
        name = ONNX_TYPE_NAMES.get(t.data_type, str(t.data_type))
        raise _err(
            f"tensor '{t.name}' has element type {name}, which dlir does not support",
            p,
            DTYPES_TEXT,
        )
    if t.data_location == 1:  # EXTERNAL, not resolved by read_model: never read relative to the cwd
        raise _err(
            f"tensor '{t.name}' keeps its data in an external file",
            p,
            "import the model from its file path, so its folder is known",
        )
    dims = list(t.dims)
    _check_dims(dims, f"tensor '{t.name}'", p)
    try:
        a = numpy_helper.to_array(t)
    except Exception as e:  # noqa: BLE001 - onnx raises many kinds on malformed data
        raise _err(
            f"tensor '{t.name}' cannot be read: {e}", p, "its data does not match its declared type and shape"
        ) from None
    if tuple(a.shape) != tuple(dims):
        raise _err(f"tensor '{t.name}' holds {a.size} values but declares dims {dims}", p)
    dt = ONNX_DTYPES[t.data_type]
    return np.asarray(a, dtype=dt.numpy) if dt is not DType.bf16 else np.asarray(a)


def _check_dims(dims: list[int], what: str, p: str) -> None:
    n = 1
    for d in dims:
        if d < 0 or d > MAX_DIM:
            raise _err(f"{what} declares an absurd dim {d}", p)
        n *= d
    if n > MAX_ELEMENTS:
        raise _err(f"{what} declares {n} elements, more than dlir accepts ({MAX_ELEMENTS})", p)


def value_type(vi: Any, p: str, symbols: dict[DimKey, str], dims: DimUnion | None = None) -> TensorType:
    """The dlir type of a graph input/output ValueInfo (dim_param -> symbol).

    ``symbols`` maps each dim key already seen to its dlir symbol; ``dims`` says which
    keys were unified (one symbol, named after the class's representative).
    """
    tt = vi.type.tensor_type
    if not vi.type.HasField("tensor_type"):
        raise _err(f"'{vi.name}' is not a tensor; dlir imports tensor inputs only", p)
    if tt.elem_type not in ONNX_DTYPES:
        name = ONNX_TYPE_NAMES.get(tt.elem_type, str(tt.elem_type))
        raise _err(
            f"'{vi.name}' has element type {name}, which dlir does not support",
            p,
            DTYPES_TEXT,
        )
    if not tt.HasField("shape"):
        raise _err(f"input '{vi.name}' has no declared shape", p, "give the model's inputs a shape (dims may be named)")
    shape: list[Any] = []
    for i, d in enumerate(tt.shape.dim):
        if d.HasField("dim_value"):
            _check_dims([d.dim_value], f"'{vi.name}'", p)
            shape.append(d.dim_value)
        else:
            key: DimKey = ("param", d.dim_param) if d.dim_param else ("anon", vi.name, i)
            if dims is not None:
                dims.see(key)
                key = dims.find(key)
            if key not in symbols:
                base = key[1] if key[0] == "param" else f"N{len(symbols)}"
                symbols[key] = ident(base, set(symbols.values()) | RESERVED)
            shape.append(Dim.of(symbols[key]))
    return TensorType.make(ONNX_DTYPES[tt.elem_type], shape)


def opset_of(model: Any) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 7  # no default-domain opset: only other domains' ops, refused by name


def from_onnx(
    path: str | os.PathLike[str] | Any, name: str | None = None, constants: dict[str, np.ndarray] | None = None
) -> ImportedModel:
    """Import an ONNX model (a path or a ModelProto) as dlir IR plus its weights.

    ``constants`` fixes graph inputs to known values (ONNX inputs that dlir needs at
    import time, such as a Reshape's shape fed as an input); they leave the signature.
    """
    # they fill the handler table
    from dlir.importer import (  # noqa: F401
        onnx_attention,
        onnx_composite,
        onnx_conv_transpose,
        onnx_index,
        onnx_layout,
        onnx_logic,
        onnx_loop,
        onnx_losses,
        onnx_math,
        onnx_norms,
        onnx_ops,
        onnx_resize,
        onnx_rnn,
        onnx_shape_ops,
    )
    from dlir.importer.builder import Builder

    if isinstance(path, (str, os.PathLike)):
        p = os.fspath(path)
        model = read_model(p)
    else:
        model, p = path, "<model>"
    opset = opset_of(model)
    if opset > MAX_OPSET or opset < 7:
        raise _err(f"model uses opset {opset}; dlir imports opsets 7..{MAX_OPSET}", p)
    gname = ident(name or model.graph.name or Path(p).stem or "Model", set())
    if gname[0].islower():
        gname = gname[0].upper() + gname[1:]
    dims = DimUnion()
    while True:  # each retry merges two classes of input dims, so there are fewer retries than dims
        b = Builder(Graph(gname), opset, p, constants, dims)
        b.opsets = {("" if o.domain == "ai.onnx" else o.domain): int(o.version) for o in model.opset_import}
        b.opsets.setdefault("", opset)
        try:
            b.build(model.graph)
            break
        except DlirError as e:
            if dims.classes():  # the message shows merged names: say where they come from
                e.hint = (f"{e.hint}; " if e.hint else "") + f"input dims unified at import: {dims.describe()}"
            raise
        except MergeDims as m:
            merged = [dims.union(x, y) for x, y in m.pairs]  # every pair, not just up to the first new one
            if not any(merged):  # cannot happen (the pairs are distinct symbols); never loop forever
                raise _err(f"internal error: unifying the input dims {m.pairs} made no progress", p) from None
    names = {key: name for name, key in b.sym_keys.items()}
    unified = {names[r]: [key_label(k) for k in ks] for r, ks in dims.classes().items() if r in names}
    return ImportedModel(b.graph, b.params, opset, p, b.input_names, unified)


__all__ = ["from_onnx", "ImportedModel", "ImportError_", "read_model"]
