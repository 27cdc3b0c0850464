"""One worker's view of a data-parallel job: its rank, the job's size, and the collectives it needs.

The engine is torch.distributed (DESIGN.md section 9): ``gloo`` on CPU, ``nccl``
on GPU, set up from the environment a torchrun-style launcher gives every worker
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). Every
collective has a timeout, so a worker whose peer died stops with an error instead
of waiting for ever. Values cross as numpy arrays: the ONNX Runtime and
TensorFlow targets keep their gradients in their own tensors and have no
collective engine that torch.distributed could call, so the host is where they
meet (one copy of the gradients each way per step).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np

from dlir.errors import DlirError

DEFAULT_TIMEOUT_S = 120.0  # every collective; a dead peer is reported after at most this long


class WorkerLost(DlirError):
    """A collective failed: another worker died, hung or could not be reached."""


@dataclass(frozen=True)
class World:
    """``rank`` of ``size`` workers; ``backend`` is torch.distributed's (``gloo``, ``nccl``)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str = "gloo"
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def is_main(self) -> bool:
        """Rank 0: the worker that prints, writes checkpoints and outputs."""
        return self.rank == 0

    @staticmethod
    def from_env(device: str = "auto", timeout_s: float = DEFAULT_TIMEOUT_S) -> World:
        """The world a torchrun-style launcher described in this process's environment,
        with its process group started (``nccl`` when the worker trains on a GPU)."""
        import torch
        import torch.distributed as dist

        rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        on_gpu = device == "cuda" or (device == "auto" and torch.cuda.is_available())
        backend = "nccl" if on_gpu else "gloo"
        if on_gpu:
            torch.cuda.set_device(local_rank)
        if not dist.is_initialized():
            dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
        return World(rank, size, local_rank, backend, timeout_s)

    def shard(self, rows: np.ndarray) -> np.ndarray:
        """This worker's part of a global batch: contiguous, sizes differing by at most one
        (the last, uneven batch too; a worker may get none)."""
        return np.array_split(rows, self.size)[self.rank]

    def all_reduce_sum(self, flat: np.ndarray) -> np.ndarray:
        """The element-wise sum of ``flat`` over all workers (one collective)."""
        if self.size == 1:
            return flat
        t = self._tensor(flat)
        self._collective("all_reduce", lambda dist: dist.all_reduce(t, op=dist.ReduceOp.SUM))
        return t.cpu().numpy()

    def broadcast(self, flat: np.ndarray) -> np.ndarray:
        """Rank 0's ``flat`` on every worker."""
        if self.size == 1:
            return flat
        t = self._tensor(flat)
        self._collective("broadcast", lambda dist: dist.broadcast(t, src=0))
        return t.cpu().numpy()

    def close(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()

    def _tensor(self, flat: np.ndarray) -> Any:
        import torch

        t = torch.from_numpy(np.ascontiguousarray(flat).copy())
        return t.cuda() if self.backend == "nccl" else t

    def _collective(self, what: str, call: Any) -> None:
        import torch.distributed as dist

        try:
            call(dist)
        except (RuntimeError, dist.DistBackendError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise WorkerLost(
                f"worker rank {self.rank}: {what} across {self.size} workers failed: {first}",
                hint="another worker stopped or cannot be reached; its own error says why",
            ) from None


__all__ = ["World", "WorkerLost", "DEFAULT_TIMEOUT_S"]
