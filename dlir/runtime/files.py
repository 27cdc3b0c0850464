"""Files the commands read and write: atomic writes, ``--input NAME=FILE.npy`` arrays.

Below the commands (dlir.cli, dlir.diff, the importer's and the trainer's) that
share them, so none of them imports another's module for a helper.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from dlir.errors import DlirError, SourceLoc, UsageError


def write_atomic(path: Path, data: bytes) -> None:
    """Write via a temp file and rename, so a failure leaves no half-written file."""
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise UsageError(f"cannot write '{path}': no directory '{directory}'")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        # mkstemp makes the file 0600; an output gets the mode a new file gets here (or keeps its own)
        os.fchmod(fd, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise UsageError(f"cannot write '{path}': {e.strerror}") from None


def _umask() -> int:
    """The process's umask, read without changing it (os.umask would, for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def read_inputs(specs: list[str]) -> dict[str, Any]:
    """``--input NAME=FILE.npy`` arguments as arrays by input name."""
    out: dict[str, Any] = {}
    for spec in specs:
        name, sep, file = spec.partition("=")
        if not sep or not name or not file:
            raise UsageError(f"bad --input '{spec}'", hint="use --input NAME=FILE.npy")
        try:
            out[name] = np.load(file, allow_pickle=False)
        except FileNotFoundError:
            raise DlirError(
                f"no such file: '{file}'",
                SourceLoc(file, 0, 0),
                hint=f"--input {name}=FILE.npy needs an existing .npy file",
            ) from None
        except (ValueError, OSError) as e:
            raise DlirError(f"cannot read '{file}' as .npy: {e}", SourceLoc(file, 0, 0)) from None
    return out
