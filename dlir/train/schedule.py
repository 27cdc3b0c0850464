"""Learning-rate schedules, stepped once per epoch as torch's ``lr_scheduler``s are.

The step graph reads the learning rate as an input (``hyper.lr``), so a
schedule changes it between steps without recompiling anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dlir.errors import UsageError, did_you_mean

KINDS = ("constant", "step", "cosine")


@dataclass(frozen=True)
class Schedule:
    """``constant``; ``step`` (torch's StepLR: times ``gamma`` every ``step_size`` epochs);
    ``cosine`` (CosineAnnealingLR with ``T_max`` = the epochs, down to 0)."""

    kind: str = "constant"
    step_size: int = 1
    gamma: float = 0.1

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UsageError(
                f"unknown learning-rate schedule '{self.kind}'",
                hint=did_you_mean(self.kind, KINDS) or "schedules: " + ", ".join(KINDS),
            )
        if self.step_size < 1 or not 0.0 < self.gamma <= 1.0:
            raise UsageError(
                f"--lr-step-size must be >= 1 and --lr-gamma in (0, 1] (got {self.step_size}, {self.gamma})"
            )

    def lr(self, base: float, epoch: int, epochs: int) -> float:
        """The learning rate of (0-based) ``epoch`` of ``epochs``."""
        if self.kind == "step":
            return base * self.gamma ** (epoch // self.step_size)
        if self.kind == "cosine":
            return base * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
        return base


__all__ = ["Schedule", "KINDS"]
