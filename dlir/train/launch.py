"""Start data-parallel workers the way ``torchrun`` does: torch.distributed's elastic launcher.

:func:`run_workers` runs ``fn(world, *args)`` in ``nproc`` fresh processes on this
machine (``nnodes`` machines run it once each, with their ``node_rank``) and
returns each local worker's result by global rank. Rendezvous is torch's
``static`` one (torchrun's ``--node-rank`` with ``--master-addr``/``--master-port``):
node 0 listens on ``rdzv_endpoint``; alone on one machine that is a free port of
the loopback address. A worker that fails or dies makes the launcher stop the
others and raise one :class:`WorkerFailed` that names its rank and its error;
nothing restarts it (``max_restarts=0``): dlir's checkpoints, not the launcher,
are how a run continues.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

from dlir.errors import DlirError, UsageError
from dlir.train.world import DEFAULT_TIMEOUT_S, WorkerLost, World

LOOPBACK = "127.0.0.1"


class WorkerFailed(DlirError):
    """A data-parallel worker raised an error or died."""


def run_workers(
    fn: Callable[..., Any],
    args: tuple[Any, ...] = (),
    *,
    nproc: int,
    nnodes: int = 1,
    node_rank: int = 0,
    rdzv_endpoint: str | None = None,
    device: str = "auto",
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> dict[int, Any]:
    """``fn(world, *args)`` on ``nproc`` workers of this node; returns ``{global rank: result}``.

    ``fn`` must be importable by name (a module-level function): workers are
    fresh interpreters (the ``spawn`` start method, as CUDA needs).
    """
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    host, port = _endpoint(nproc, nnodes, node_rank, rdzv_endpoint)
    with tempfile.TemporaryDirectory(prefix="dlir-workers-") as logs, _quiet_launcher(), _threads_per_worker(nproc):
        config = LaunchConfig(
            min_nodes=nnodes,
            max_nodes=nnodes,
            nproc_per_node=nproc,
            run_id="dlir",
            rdzv_backend="static",
            rdzv_endpoint=f"{host}:{port}",
            rdzv_configs={"rank": node_rank, "timeout": int(timeout_s)},
            max_restarts=0,
            monitor_interval=0.1,
            start_method="spawn",
            logs_specs=DefaultLogsSpecs(log_dir=logs),
        )
        try:
            results: dict[int, Any] = elastic_launch(config, _worker)(fn, args, device, timeout_s)
        except ChildFailedError as e:
            raise _failure(e) from None
    return results


_PAYLOAD = "dlir worker error: "  # what a worker's error becomes, for the launcher to read back
_GRACE_S = 3.0


def _worker(fn: Callable[..., Any], args: tuple[Any, ...], device: str, timeout_s: float) -> Any:
    """What each worker process runs: join the process group, run ``fn``, leave."""
    world = World.from_env(device, timeout_s)
    try:
        return fn(world, *args)
    except DlirError as e:  # the launcher sees only the text the elastic agent records
        if isinstance(e, WorkerLost):
            # The peer that went away is the cause: let the launcher see its exit first
            # (it reports the first worker it finds stopped and stops the rest).
            time.sleep(_GRACE_S)
        hint, e.hint = e.hint, None
        text = e.render({}).removeprefix("dlir: error: ")
        payload = {"text": text, "hint": hint, "lost": isinstance(e, WorkerLost)}
        raise RuntimeError(_PAYLOAD + json.dumps(payload)) from None
    finally:
        world.close()


def _failure(e: Any) -> WorkerFailed:
    """One error for the worker that failed first of its own accord (not because a peer went away)."""
    reports = []
    for rank, failure in sorted(e.failures.items()):
        recorded = failure.message.get("message") if isinstance(failure.message, dict) else None
        text = str(recorded or "")
        if _PAYLOAD in text:
            payload = json.loads(text[text.index(_PAYLOAD) + len(_PAYLOAD) :])
        elif text:
            payload = {"text": text, "hint": None, "lost": False}
        elif failure.exitcode < 0:
            payload = {"text": f"killed by {signal.Signals(-failure.exitcode).name}", "hint": None, "lost": False}
        else:
            payload = {"text": f"exited with status {failure.exitcode}", "hint": None, "lost": False}
        reports.append((payload["lost"], rank, payload))
    lost, rank, payload = min(reports, key=lambda r: (r[0], r[1]))
    others = sorted(r for _, r, _ in reports if r != rank)
    more = f" (rank{'s' if len(others) > 1 else ''} {', '.join(map(str, others))} stopped with it)" if others else ""
    return WorkerFailed(
        f"worker rank {rank} failed: {payload['text']}{more}",
        hint=payload["hint"] or "the launcher stopped the other workers; nothing was written after the last checkpoint",
    )


def _endpoint(nproc: int, nnodes: int, node_rank: int, rdzv_endpoint: str | None) -> tuple[str, int]:
    if nproc < 1 or nnodes < 1:
        raise UsageError(f"--nproc and --nnodes must be at least 1 (got {nproc}, {nnodes})")
    if not 0 <= node_rank < nnodes:
        raise UsageError(f"--node-rank must be in [0, {nnodes}) (got {node_rank})")
    if rdzv_endpoint is None:
        if nnodes > 1:
            raise UsageError(
                "several machines need a rendezvous endpoint",
                hint="give every node --rdzv-endpoint HOST:PORT of node 0",
            )
        return LOOPBACK, _free_port()
    host, _, port_text = rdzv_endpoint.rpartition(":")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError(f"--rdzv-endpoint must be HOST:PORT (got '{rdzv_endpoint}')", hint="e.g. 10.0.0.1:29500")
    port = int(port_text)
    if node_rank == 0 and _in_use(host, port):
        raise UsageError(
            f"port {port} on {host} is in use: node 0 cannot listen there for the workers' rendezvous",
            hint="choose another port in --rdzv-endpoint, or stop what uses it",
        )
    return host, port


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


def _in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host if host not in ("localhost",) else LOOPBACK, port))
        except OSError:
            return True
    return False


@contextlib.contextmanager
def _quiet_launcher() -> Iterator[None]:
    """The launcher logs every worker's failure with a traceback: dlir reports it once, itself."""
    names = ("torch.distributed.elastic", "torch.distributed.launcher", "torch.multiprocessing")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


@contextlib.contextmanager
def _threads_per_worker(nproc: int) -> Iterator[None]:
    """The cores shared among this node's workers (the launcher would set 1 and warn)."""
    had = os.environ.get("OMP_NUM_THREADS")
    if had is None:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    try:
        yield
    finally:
        if had is None:
            os.environ.pop("OMP_NUM_THREADS", None)


__all__ = ["run_workers", "WorkerFailed", "LOOPBACK"]
