"""Params as safetensors files keyed by dotted dlir names, checked against a graph."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from dlir.errors import RuntimeMismatch, did_you_mean
from dlir.ir.graph import Graph


def save_safetensors(
    params: Mapping[str, np.ndarray], path: str | os.PathLike[str], metadata: dict[str, str] | None = None
) -> None:
    """Write ``params`` (and string ``metadata``) atomically (temp file + rename, a new file's mode)."""
    from safetensors.numpy import save

    from dlir.runtime.files import write_atomic

    # (not np.ascontiguousarray: it turns a scalar into shape (1,))
    arrays = {k: np.asarray(v) for k, v in params.items()}
    contiguous = {k: a if a.flags.c_contiguous else a.copy(order="C") for k, a in arrays.items()}
    write_atomic(Path(path), save(contiguous, metadata=metadata))


def load_safetensors(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise RuntimeMismatch(f"cannot read weights: no file '{path}'") from None
    except (SafetensorError, OSError, ValueError) as e:
        raise RuntimeMismatch(
            f"cannot read weights from '{path}': {e}", hint="the file must be a .safetensors file"
        ) from None


def checked_params(graph: Graph, given: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Validate names, shapes and dtypes of ``given`` against the graph's params.

    Unknown names and mismatched types are errors; params not given keep their values.
    """
    known = {p.name: p for p in graph.params}
    out: dict[str, np.ndarray] = {}
    for name, arr in given.items():
        p = known.get(name)
        if p is None:
            raise RuntimeMismatch(
                f"'{name}' is not a param of model {graph.name}",
                hint=did_you_mean(name, known) or f"its params are: {', '.join(known) or 'none'}",
            )
        a = np.asarray(arr)
        want = p.type.static_shape()
        if a.shape != want or a.dtype != p.type.dtype.numpy:
            raise RuntimeMismatch(
                f"param '{name}' is declared {p.type}, but the value given is {a.dtype} with shape {a.shape}",
                p.loc,
            )
        out[name] = a
    return out
