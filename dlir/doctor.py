"""``dlirc doctor``: does this installation compute what the numpy reference computes?

Versions say little about numbers: the same TensorFlow gives other results on a
CPU where its oneDNN rewrites are on, ONNX Runtime fuses differently at each
graph-optimisation level, a GPU may round matmuls to TF32. The doctor runs every
registered op case (all of them side by side in a few graphs, see
:func:`dlir.ops.case_kit.build_suites`) and every sample model on every installed
target, on every usable device, in each configuration that can change numbers,
against the numpy reference; prints one row per (target, device, configuration);
names the first op that disagrees, as a .dlir call with its types; and exits 1
on any disagreement.

Configurations: torch with its oneDNN (mkldnn) kernels on and off, ONNX Runtime at
``ORT_ENABLE_ALL`` and ``ORT_DISABLE_ALL``, TensorFlow with ``TF_ENABLE_ONEDNN_OPTS``
1 and 0. TensorFlow reads that variable once per process, so each TensorFlow
configuration runs in a child process (``dlirc doctor --only tensorflow
--format json``) and reports back as JSON. GPUs run with TF32 off.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlir.errors import DlirError, UsageError

# The module each target needs, to tell "not installed" from a failure.
FRAMEWORK = {"torch": "torch", "tensorflow": "tensorflow", "onnx": "onnxruntime"}
SAMPLE_TOL = 1e-5  # float32 samples: within rtol/atol 1e-5 of the reference, as `dlirc compare`


@dataclass
class Finding:
    """The first disagreement in one configuration."""

    what: str  # "op case layer_norm-last_axis" or "sample resmlp:ResMLP"
    op: str  # the op, or "" for a sample
    call: str  # the .dlir-level description
    detail: str


@dataclass
class Row:
    target: str
    device: str
    config: str
    cases: int = 0
    worst: float = 0.0  # max |got - want| / (1 + |want|) over every float result
    verdict: str = "ok"  # ok | FAIL | not installed | no GPU
    first: Finding | None = None
    seconds: float = 0.0
    failed: list[str] = field(default_factory=list)  # every disagreeing case or sample


@dataclass
class Config:
    """One way of running a target that may change its numbers."""

    name: str
    enter: Callable[[], contextlib.AbstractContextManager[Any]]


# -- the work every configuration does ----------------------------------------------------


class Checks:
    """The op suites and the samples with their reference results, built once."""

    def __init__(self, with_samples: bool = True) -> None:
        from dlir.ops.case_kit import build_suites
        from dlir.ops.cases import CASES
        from dlir.runtime.runner import NumpyRunner

        self.suites = build_suites(CASES)
        self.suite_refs = []
        for s in self.suites:
            ref = NumpyRunner(s.graph)
            self.suite_refs.append([_outputs(ref(**s.feeds(k))) for k in range(len(s.bindings))])
        self.samples = _sample_models() if with_samples else []
        self.sample_refs = []
        for _, graph, feeds in self.samples:
            ref = NumpyRunner(graph)
            self.sample_refs.append((ref.params, _outputs(ref(**feeds))))

    def run(self, target: str, device: str, row: Row) -> None:
        """Every check on ``target``/``device``, in the configuration already entered; fills ``row``."""
        from dlir.compare import agree
        from dlir.targets import runner_class

        cls = runner_class(target)
        for suite, refs in zip(self.suites, self.suite_refs, strict=True):
            self._run_suite(cls, suite, refs, device, row)
        for (name, graph, feeds), (params, want) in zip(self.samples, self.sample_refs, strict=True):
            row.cases += 1
            try:
                run = cls(graph, seed=0, device=device)
                run.load_params(params)
                got = _outputs(run(**feeds))
            except DlirError as e:
                _fail(row, Finding(f"sample {name}", "", name, f"does not run: {e.message}"))
                continue
            except Exception as e:  # noqa: BLE001 - a framework error is this target's failure
                _fail(row, Finding(f"sample {name}", "", name, f"does not run: {type(e).__name__}: {e}"))
                continue
            for (out, _), g, w in zip(graph.outputs, got, want, strict=True):
                row.worst = max(row.worst, _scaled(g, w))
                if not agree(w, g, SAMPLE_TOL, SAMPLE_TOL):
                    _fail(
                        row,
                        Finding(f"sample {name}", "", f"{name} output {out}", f"max scaled error {_scaled(g, w):.3g}"),
                    )
                    break

    def _run_suite(self, cls: Any, suite: Any, refs: list[list[np.ndarray]], device: str, row: Row) -> None:
        from dlir.ops.case_kit import build_case, compare, describe

        row.cases += len(suite.cases)
        try:
            run = cls(suite.graph, seed=0, device=device)
            results = [_outputs(run(**suite.feeds(k))) for k in range(len(suite.bindings))]
        except Exception:  # noqa: BLE001 - find which case breaks the whole graph
            results = None
        why: str | None
        for i, case in enumerate(suite.cases):
            for k, env in enumerate(suite.bindings):
                n = len(suite.outputs[i])
                first = sum(len(o) for o in suite.outputs[:i])
                want = refs[k][first : first + n]
                if results is None:
                    got, why = _run_alone(cls, build_case(case)[0], case, env, k, device)
                    if got is None:
                        _fail(row, Finding(f"op case {case.id}", case.op, describe(case), why))
                        break
                else:
                    got = results[k][first : first + n]
                bad = [(g, w, compare(g, w)) for g, w in zip(got, want, strict=True)]
                for g, w, _ in bad:
                    row.worst = max(row.worst, _scaled(g, w))
                why = next((m for _, _, m in bad if m), None)
                if why is not None:
                    _fail(row, Finding(f"op case {case.id}", case.op, describe(case), f"at {env}: {why}"))
                    break


def _run_alone(cls: Any, graph: Any, case: Any, env: dict[str, int], k: int, device: str) -> tuple[Any, str]:
    from dlir.ops.case_kit import make_feeds

    try:
        return _outputs(cls(graph, seed=0, device=device)(**make_feeds(case, env, seed=k))), ""
    except DlirError as e:
        return None, f"does not compile: {e.message}"
    except Exception as e:  # noqa: BLE001
        return None, f"does not run: {type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"


def _fail(row: Row, finding: Finding) -> None:
    row.verdict = "FAIL"
    row.failed.append(finding.what)
    if row.first is None:
        row.first = finding


def _scaled(g: np.ndarray, w: np.ndarray) -> float:
    from dlir.ops.case_kit import scaled_error

    return scaled_error(g, w)


def _outputs(result: Any) -> list[np.ndarray]:
    return [np.asarray(r) for r in (result if isinstance(result, tuple) else (result,))]


def _sample_models() -> list[tuple[str, Any, dict[str, np.ndarray]]]:
    import importlib.resources

    import dlir
    from dlir.compare import random_inputs

    samples = Path(str(importlib.resources.files("dlir.samples")))
    out = []
    for path in sorted(samples.glob("*.dlir")):
        prog = dlir.load(path)
        for model in prog.models:
            graph = prog.graph(model)
            out.append((f"{path.stem}:{model}", graph, random_inputs(graph, seed=1, size=3)))
    return out


# -- targets, devices, configurations ---------------------------------------------------------


def installed(target: str) -> bool:
    return importlib.util.find_spec(FRAMEWORK[target]) is not None


def cuda_devices() -> dict[str, bool]:
    """Whether each installed target can really run on a CUDA GPU here."""
    out = {}
    if installed("torch"):
        import torch

        out["torch"] = bool(torch.cuda.is_available())
    if installed("onnx"):
        from dlir.backends.onnx.runner import cuda_usable

        out["onnx"] = cuda_usable()
    if installed("tensorflow"):
        from dlir.backends.tensorflow.runner import import_tf

        out["tensorflow"] = bool(import_tf().config.list_physical_devices("GPU"))
    return out


def configs(target: str, device: str) -> list[Config]:
    """The configurations of ``target`` on ``device`` run in this process (TensorFlow's run in children)."""
    if target == "torch":

        @contextlib.contextmanager
        def mkldnn(on: bool) -> Iterator[None]:
            import torch

            # (torch.backends.mkldnn.flags() would also set its TF32 flag, with a warning on CPU builds)
            # a ContextProp descriptor, typed as itself: assigning a bool sets the flag
            saved, torch.backends.mkldnn.enabled = torch.backends.mkldnn.enabled, on  # type: ignore[assignment]
            try:
                yield
            finally:
                torch.backends.mkldnn.enabled = saved

        if device == "cuda":
            return [Config("TF32 off", contextlib.nullcontext)]
        return [Config("mkldnn on", lambda: mkldnn(True)), Config("mkldnn off", lambda: mkldnn(False))]
    if target == "onnx":
        from dlir.backends.onnx.runner import graph_optimization

        extra = ", TF32 off" if device == "cuda" else ""
        return [
            Config(f"ORT_ENABLE_ALL{extra}", lambda: graph_optimization("ORT_ENABLE_ALL")),
            Config(f"ORT_DISABLE_ALL{extra}", lambda: graph_optimization("ORT_DISABLE_ALL")),
        ]
    return [Config(_tf_config_name(), contextlib.nullcontext)]


def _tf_config_name() -> str:
    on = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    return {"1": "oneDNN on", "0": "oneDNN off"}.get(on or "", "oneDNN default")


def _tf_in_children(device: str, samples: bool) -> list[Row]:
    """TensorFlow's rows, one child process per oneDNN setting (TensorFlow reads it at import)."""
    rows: list[Row] = []
    for setting in ("1", "0"):
        env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=setting, TF_CPP_MIN_LOG_LEVEL="2")
        cmd = [
            sys.executable,
            "-m",
            "dlir.cli",
            "doctor",
            "--only",
            "tensorflow",
            "--format",
            "json",
            "--device",
            device,
        ]
        if not samples:
            cmd.append("--no-samples")
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        try:
            rows += [_row_from_json(r) for r in json.loads(proc.stdout)["rows"]]
        except (ValueError, KeyError):
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            name = "oneDNN on" if setting == "1" else "oneDNN off"
            rows.append(Row("tensorflow", "cpu", name, verdict="FAIL", first=Finding("the check itself", "", "", tail)))
    return rows


def _row_from_json(d: dict[str, Any]) -> Row:
    first = d.pop("first")
    return Row(**d, first=Finding(**first) if first else None)


# -- the command ---------------------------------------------------------------------------


def doctor(targets: list[str], device: str, samples: bool = True, children: bool = True) -> list[Row]:
    """One row per (target, device, configuration); TensorFlow's come from child processes when ``children``."""
    from dlir.targets import BACKEND_TARGETS

    gpu = cuda_devices() if device in ("auto", "cuda") else {}
    if device == "cuda" and not any(gpu.values()):
        raise UsageError(
            "--device cuda: no installed framework can use a CUDA GPU here",
            hint="torch sees no GPU, ONNX Runtime's CUDA provider does not load, TensorFlow lists no GPU; "
            "run `dlirc doctor` (auto) to check the CPU",
        )
    rows: list[Row] = []
    checks: Checks | None = None
    for target in (t for t in BACKEND_TARGETS if t in targets):
        devices = ["cuda"] if device == "cuda" else ["cpu"] + (["cuda"] if gpu.get(target) else [])
        if not installed(target):
            rows += [Row(target, d, "-", verdict="not installed") for d in devices]
            continue
        if target == "tensorflow" and children:
            rows += _tf_in_children(device, samples)
            continue
        for d in devices:
            if d == "cuda" and not gpu.get(target):
                rows.append(Row(target, d, "-", verdict="no GPU"))
                continue
            for cfg in configs(target, d):
                checks = checks or Checks(with_samples=samples)
                row = Row(target, d, cfg.name)
                start = time.perf_counter()
                with cfg.enter():
                    checks.run(target, d, row)
                row.seconds = time.perf_counter() - start
                rows.append(row)
    return rows


def render(rows: list[Row]) -> str:
    from dlir.compare import text_table

    table = [
        (
            r.target,
            r.device,
            r.config,
            str(r.cases) if r.cases else "-",
            f"{r.worst:.2g}" if r.cases else "-",
            r.verdict if r.verdict != "FAIL" else f"FAIL ({len(r.failed)})",
            f"{r.seconds:.1f}" if r.cases else "-",
        )
        for r in rows
    ]
    lines = [text_table(("target", "device", "configuration", "cases", "worst error", "verdict", "s"), table)]
    bad = [r for r in rows if r.verdict == "FAIL"]
    for r in bad:
        f = r.first
        assert f is not None
        lines.append(f"\n{r.target} ({r.device}, {r.config}): first disagreement: {f.what}")
        if f.call:
            lines.append(f"  {f.call}")
        if f.op:
            from dlir.ops import get_op

            lines.append(f"  {f.op}: {get_op(f.op).doc}")
        lines.append(f"  {f.detail}")
        if len(r.failed) > 1:
            more = ", ".join(r.failed[1:6]) + (", ..." if len(r.failed) > 6 else "")
            lines.append(f"  also: {more}")
    lines.append(
        "\nworst error: max |target - numpy| / (1 + |numpy|) over every float result; the verdict uses "
        "rtol/atol 1e-5 (float32), 1e-10 (float64), exact for every other dtype."
    )
    lines.append("all targets agree with the numpy reference" if not bad else f"{len(bad)} configuration(s) disagree")
    return "\n".join(lines)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("doctor", help="check that this machine's targets compute the numpy reference's numbers")
    p.add_argument("--device", default="auto", help="auto (the CPU, and each GPU a target can use), cpu or cuda")
    p.add_argument("--only", default="", help="comma-separated targets (default: every target)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--no-samples", action="store_true", help="the op cases only")


def cmd_doctor(args: argparse.Namespace, sources: dict[str, str]) -> int:
    from dlir.targets import BACKEND_TARGETS

    targets = [t.strip() for t in args.only.split(",") if t.strip()] or list(BACKEND_TARGETS)
    for t in targets:
        if t not in BACKEND_TARGETS:
            raise UsageError(f"unknown target '{t}'", hint="targets: " + ", ".join(BACKEND_TARGETS))
    device = args.device
    if device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"unknown device '{device}'", hint="auto, cpu or cuda")
    as_json = args.format == "json"
    start = time.perf_counter()
    rows = doctor(targets, device, samples=not args.no_samples, children=not as_json)
    if as_json:
        print(json.dumps({"rows": [asdict(r) for r in rows], "seconds": time.perf_counter() - start}))
    else:
        print(render(rows))
        print(f"({time.perf_counter() - start:.0f} s)")
    return 1 if any(r.verdict == "FAIL" for r in rows) else 0
