"""What ``dlirc explain`` found: per target, each quantity predicted from the IR and measured."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Check:
    """One quantity: what the IR predicts and what running the target measured."""

    predicted: Any
    measured: Any

    @property
    def ok(self) -> bool:
        return bool(self.predicted == self.measured)

    def as_json(self) -> dict[str, Any]:
        return {"predicted": self.predicted, "measured": self.measured}


@dataclass
class Loop:
    """How one top-level scan runs on one target."""

    scan: str  # the scan's first output, as in the IR
    dlir_line: str  # file:line:col of the scan in the .dlir source
    runs_as: str  # "python for loop", "While", "Scan", "LSTM", "torch.lstm"
    generated_line: str  # where it is in the generated code (file:line, or the ONNX node)
    iterations: list[int | None]  # per call; None where the target runs it inside a kernel or graph

    def as_json(self) -> dict[str, Any]:
        return {
            "scan": self.scan,
            "dlir_line": self.dlir_line,
            "runs_as": self.runs_as,
            "generated_line": self.generated_line,
            "iterations": self.iterations,
        }


@dataclass
class TargetReport:
    target: str
    installed: bool = True
    device: str = ""
    why: str = ""  # the prediction's one-line reason
    what_ops: str = ""  # what ops_per_call counts on this target
    graph_builds: Check | None = None
    ops_per_call: Check | None = None
    loop_nodes: Check | None = None
    loops: list[Loop] = field(default_factory=list)
    retrace_dims: Check | None = None
    first_call_ms: list[float] = field(default_factory=list)
    median_ms: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the profiler's cross-check
    problems: list[str] = field(default_factory=list)  # failed predictions: dlir bugs
    failed: str = ""  # the target could not run the model at all

    def checks(self) -> dict[str, Check]:
        named = {
            "graph_builds": self.graph_builds,
            "ops_per_call": self.ops_per_call,
            "loop_nodes": self.loop_nodes,
            "retrace_dims": self.retrace_dims,
        }
        return {k: v for k, v in named.items() if v is not None}

    def bugs(self) -> list[str]:
        out = [
            f"{self.target}: {k} predicted {c.predicted}, measured {c.measured}"
            for k, c in self.checks().items()
            if not c.ok
        ]
        out += [f"{self.target}: {p}" for p in self.problems]
        return out + ([f"{self.target}: {self.failed}"] if self.failed else [])

    def as_json(self) -> dict[str, Any]:
        if not self.installed:
            return {"installed": False}
        out: dict[str, Any] = {"installed": True, "device": self.device, "why": self.why}
        if self.failed:
            return {**out, "failed": self.failed, "agrees": False}
        for k, c in self.checks().items():
            out[k] = c.as_json()
        if "ops_per_call" in out:
            out["ops_per_call"]["counts"] = self.what_ops
        if "loop_nodes" in out:
            out["loop_nodes"]["loops"] = [lp.as_json() for lp in self.loops]
        out["time_ms"] = {"first_call": self.first_call_ms, "median": self.median_ms}
        out.update(self.extra)
        out["agrees"] = not self.bugs()
        return out


@dataclass
class Report:
    model: str
    file: str
    opt_level: int
    calls: list[dict[str, int]]
    targets: dict[str, TargetReport]
    scans: list[dict[str, Any]]  # every scan site: name, dlir line, source text, trips per call

    def bugs(self) -> list[str]:
        return [b for t in self.targets.values() for b in t.bugs()]

    def as_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "file": self.file,
            "opt_level": self.opt_level,
            "calls": self.calls,
            "scans": self.scans,
            "targets": {t: r.as_json() for t, r in self.targets.items()},
            "bugs": self.bugs(),
        }
