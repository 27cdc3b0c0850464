"""Checkpoints: everything a training run needs to continue bit for bit.

One safetensors file: params, buffers and optimizer state as tensors
(``param/``, ``buffer/``, ``state/`` prefixes), and in its metadata the epoch
reached, the step count (it keys the dropout masks), the shuffle generator's
state, the loss history and the early-stopping bookkeeping, as JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlir.errors import UsageError
from dlir.runtime.weights import save_safetensors

KINDS = ("param", "buffer", "state")


@dataclass
class Checkpoint:
    params: dict[str, np.ndarray]
    buffers: dict[str, np.ndarray]
    state: dict[str, np.ndarray]
    epoch: int  # epochs completed
    losses: list[float]
    rng: dict[str, Any]  # numpy's bit-generator state after the last completed epoch
    history: list[dict[str, float]] = field(default_factory=list)
    best: float = float("inf")  # the best validation loss so far
    stale: int = 0  # epochs since it improved

    def save(self, path: str | Path) -> None:
        tensors = {
            f"{k}/{n}": v
            for k, group in zip(KINDS, (self.params, self.buffers, self.state), strict=True)
            for n, v in group.items()
        }
        meta = {
            "epoch": self.epoch,
            "losses": self.losses,
            "rng": self.rng,
            "history": self.history,
            "best": self.best if np.isfinite(self.best) else None,
            "stale": self.stale,
        }
        save_safetensors(tensors, path, metadata={"dlir.checkpoint": json.dumps(meta)})


def load_checkpoint(path: str | Path) -> Checkpoint:
    """A checkpoint written by :meth:`Checkpoint.save`; a UsageError for anything else."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "np") as f:
            meta_text = (f.metadata() or {}).get("dlir.checkpoint")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except FileNotFoundError:
        raise UsageError(f"--resume: no file '{path}'") from None
    except (SafetensorError, OSError, ValueError) as e:
        raise UsageError(
            f"--resume: cannot read '{path}': {e}", hint="give a checkpoint written by dlirc train --checkpoint"
        ) from None
    if meta_text is None:
        raise UsageError(
            f"--resume: '{path}' is a weights file, not a checkpoint", hint="checkpoints are written by --checkpoint"
        )
    meta = json.loads(meta_text)
    groups: dict[str, dict[str, np.ndarray]] = {k: {} for k in KINDS}
    for key, v in tensors.items():
        kind, _, name = key.partition("/")
        groups[kind][name] = v
    best = meta["best"] if meta["best"] is not None else float("inf")
    return Checkpoint(
        groups["param"],
        groups["buffer"],
        groups["state"],
        meta["epoch"],
        meta["losses"],
        meta["rng"],
        meta["history"],
        best,
        meta["stale"],
    )


__all__ = ["Checkpoint", "load_checkpoint"]
