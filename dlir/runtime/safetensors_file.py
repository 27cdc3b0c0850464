"""The safetensors format written out, for ``dlirc compile --weights``.

A ``.safetensors`` file is an 8-byte little-endian header length, a JSON header
(``{"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}}``,
offsets into the bytes after the header, plus an optional ``__metadata__`` of
strings) and then the tensors' raw little-endian bytes, one after another.

:func:`safetensors_bytes` writes that (dlir side). :func:`read_safetensors` and
:func:`checked_weights` read it with numpy and the standard library alone: their
source is written into the generated torch and tensorflow files
(:func:`standalone_source`), as ``dlir.runtime.init`` does for the seeded init, so
a generated module reads its weights without dlir or the ``safetensors`` package.
Reading parses JSON and copies bytes; nothing in the file is executed.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import pprint
from collections.abc import Mapping
from typing import Any

import numpy as np

from dlir.ir.types import DType

# safetensors dtype -> the numpy dtype its bytes are read as. numpy has no bfloat16:
# BF16 is read as its 16-bit patterns (uint16), which the framework reinterprets.
SAFETENSORS_DTYPES = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "BF16": "<u2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "<i1",
    "U8": "<u1",
    "BOOL": "|b1",
}

_BY_NUMPY_NAME = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint8": "U8",
    "bool": "BOOL",
}


def safetensors_dtype(dtype: DType | np.dtype[Any] | type) -> str:
    """The safetensors name of a dlir or numpy dtype (numpy's ``bfloat16`` is ml_dtypes')."""
    if isinstance(dtype, DType):  # bf16 without DType.numpy, which needs ml_dtypes
        return "BF16" if dtype is DType.bf16 else _BY_NUMPY_NAME[np.dtype(dtype.numpy).name]
    name = np.dtype(dtype).name
    if name not in _BY_NUMPY_NAME:
        raise ValueError(f"safetensors has no dtype for {name}")
    return _BY_NUMPY_NAME[name]


def safetensors_bytes(arrays: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> bytes:
    """The bytes of a ``.safetensors`` file holding ``arrays`` (in name order, contiguous)."""
    header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
    blobs: list[bytes] = []
    offset = 0
    for name in sorted(arrays):
        a = np.asarray(arrays[name])
        st = safetensors_dtype(a.dtype)
        stored = a.view(np.uint16) if st == "BF16" else a
        blob = np.asarray(stored, dtype=SAFETENSORS_DTYPES[st]).tobytes(order="C")
        header[name] = {"dtype": st, "shape": list(a.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the tensors start 8-byte aligned, as the reference writer pads
    return len(text).to_bytes(8, "little") + text + b"".join(blobs)


def read_safetensors(path: str) -> dict[str, np.ndarray]:
    """Every tensor of the ``.safetensors`` file ``path`` as a numpy array (BF16 as its uint16 bits).

    The header is JSON and the data raw bytes: reading executes nothing from the file.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no weights file {path!r} (`dlirc compile --weights` writes it beside the generated module)"
        ) from None
    size = int.from_bytes(data[:8], "little") if len(data) >= 8 else -1
    if not 0 < size <= len(data) - 8:
        raise ValueError(f"{path!r} is not a .safetensors file (no header of a plausible length)")
    try:
        header = json.loads(data[8 : 8 + size].decode("utf-8"))
    except ValueError:
        raise ValueError(f"{path!r} is not a .safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path!r} is not a .safetensors file (its header is not a JSON object)")
    body = memoryview(data)[8 + size :]
    out: dict[str, np.ndarray] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = np.dtype(SAFETENSORS_DTYPES[entry["dtype"]])
            shape = tuple(int(n) for n in entry["shape"])
            begin, end = (int(n) for n in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path!r}: the entry {name!r} has no known dtype, shape and data_offsets") from None
        count = math.prod(shape)
        if min(shape, default=0) < 0 or not 0 <= begin <= end <= len(body) or end - begin != count * dtype.itemsize:
            raise ValueError(f"{path!r}: the bytes of {name!r} do not fit its shape {list(shape)} or the file")
        out[name] = np.frombuffer(body[begin:end], dtype=dtype, count=count).reshape(shape).copy()
    return out


def checked_weights(
    arrays: dict[str, np.ndarray], declared: dict[str, tuple[tuple[int, ...], str]], path: str
) -> dict[str, np.ndarray]:
    """``arrays`` read from ``path``, checked against the model's params: name -> (shape, safetensors dtype).

    Every declared param must be there with its shape and dtype, and nothing else.
    """
    unknown = sorted(set(arrays) - set(declared))
    if unknown:
        raise ValueError(f"{path!r} holds {', '.join(map(repr, unknown))}, which this model has no param for")
    for name, (shape, dtype) in declared.items():
        if name not in arrays:
            raise ValueError(f"{path!r} has no tensor {name!r} (declared {dtype}{list(shape)})")
        a = arrays[name]
        if a.shape != tuple(shape) or a.dtype != np.dtype(SAFETENSORS_DTYPES[dtype]):
            raise ValueError(
                f"{path!r}: {name!r} is {a.dtype}{list(a.shape)}, but the model declares {dtype}{list(shape)}"
            )
    return arrays


def standalone_source() -> str:
    """The reader as source for a generated file (which imports json, math and numpy as np)."""
    table = "SAFETENSORS_DTYPES = " + pprint.pformat(SAFETENSORS_DTYPES, sort_dicts=False, width=100)
    return "\n\n\n".join([table, inspect.getsource(read_safetensors), inspect.getsource(checked_weights)])


def weights_file(module_path: str | os.PathLike[str]) -> str:
    """Where ``dlirc compile --weights`` puts the weights of a generated file: beside it, as ``.safetensors``."""
    root, _ = os.path.splitext(os.fspath(module_path))
    return root + ".safetensors"
