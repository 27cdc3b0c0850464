"""How long dlir takes to start and to compile: a table to read, not a test.

    .venv/bin/python benchmarks/bench_compile.py [--samples DIR] [--repeat N] [--target onnx]

Rows: interpreter start-up, `import dlir` (subprocess, best of 5), what dominates
that import (`python -X importtime`), `dlirc check` and `dlirc compile --target T`
on every samples/*.dlir (subprocess, best of --repeat), and `dlir.compile` in
process (`dlir.load`, then load + compile: the first call, which
imports the framework, and the best of --repeat after it). Anything not written yet (the CLI,
the API, a backend, the samples) shows as a note instead of a number.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def best_of(n: int, fn: Callable[[], object]) -> float:
    """The shortest of n wall times in seconds: the least disturbed by the rest of the machine."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


class Failed(Exception):
    """A command or call that did not succeed; its message goes into the table."""


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def run_ok(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, env=child_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise Failed(f"exit {proc.returncode}: {lines[-1] if lines else ''}"[:100])


def timed(n: int, fn: Callable[[], object]) -> str:
    try:
        return f"{best_of(n, fn) * 1000:9.1f} ms"
    except Failed as err:
        return f"  -- {err}"


def dlirc_command() -> list[str] | None:
    """`dlirc` beside this interpreter (a venv), else on PATH; None before dlir.cli exists."""
    if importlib.util.find_spec("dlir.cli") is None:
        return None
    beside = Path(sys.executable).parent / "dlirc"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("dlirc")
    return [found] if found else [sys.executable, "-c", "import sys; from dlir.cli import main; sys.exit(main())"]


# --- import time ---------------------------------------------------------------------------------


def import_rows(repeat: int, cwd: Path) -> list[tuple[str, str]]:
    py = sys.executable
    return [
        ("python -c pass (start-up)", timed(repeat, lambda: run_ok([py, "-c", "pass"], cwd))),
        ("python -c 'import dlir'", timed(repeat, lambda: run_ok([py, "-c", "import dlir"], cwd))),
        ("python -c 'import dlir.cli'", timed(repeat, lambda: run_ok([py, "-c", "import dlir.cli"], cwd))),
    ]


def importtime(module: str, cwd: Path) -> list[tuple[int, int, str]]:
    """(self us, cumulative us, dotted name) of every module that `import module` loads."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        cwd=cwd, env=child_env(), capture_output=True, text=True,
    )
    rows = []
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "self [us]" not in line:
            self_us, cum_us, name = (part.strip() for part in line[len("import time:"):].split("|"))
            rows.append((int(self_us), int(cum_us), name))
    return rows


def by_package(rows: list[tuple[int, int, str]], top: int) -> list[tuple[str, str]]:
    """Self time summed per top-level package: which library the import time goes to."""
    totals: dict[str, int] = {}
    for self_us, _, name in rows:
        package = name.split(".")[0]
        totals[package] = totals.get(package, 0) + self_us
    ranked = sorted(totals.items(), key=lambda item: -item[1])[:top]
    return [(package, f"{us / 1000:9.1f} ms") for package, us in ranked]


def by_module(rows: list[tuple[int, int, str]], top: int) -> list[tuple[str, str]]:
    ranked = sorted(rows, reverse=True)[:top]
    return [(name, f"{s / 1000:7.1f} ms self {c / 1000:8.1f} ms cum") for s, c, name in ranked]


# --- compile time --------------------------------------------------------------------------------


def cli_rows(samples: list[Path], target: str, repeat: int, out: Path) -> list[tuple[str, str]]:
    dlirc = dlirc_command()
    if dlirc is None:
        return [("dlirc", "  -- dlir.cli not written yet")]
    rows = []
    for sample in samples:
        name = sample.relative_to(ROOT) if sample.is_relative_to(ROOT) else sample
        rows.append((f"dlirc check {name}", timed(repeat, lambda: run_ok([*dlirc, "check", str(sample)], out))))
        target_file = out / f"{sample.stem}.out"
        compile_cmd = [*dlirc, "compile", str(sample), "--target", target, "-o", str(target_file)]
        rows.append((f"dlirc compile --target {target} {name}", timed(repeat, lambda: run_ok(compile_cmd, out))))
    return rows


def api_rows(samples: list[Path], target: str, repeat: int) -> list[tuple[str, str]]:
    try:
        import dlir
    except ImportError as err:  # the package itself is broken: say so in the table
        return [("import dlir", f"  -- {err}")]
    if not (hasattr(dlir, "load") and hasattr(dlir, "compile")):
        return [("dlir.load / dlir.compile", "  -- not written yet")]
    rows = []
    for sample in samples:

        def load_once(sample: Path = sample) -> None:
            try:
                dlir.load(str(sample))
            except Exception as err:  # noqa: BLE001 - any failure becomes a note in the table
                raise Failed(f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:100]) from err

        def compile_once(sample: Path = sample) -> None:
            try:
                dlir.compile(dlir.load(str(sample)), target=target)
            except Exception as err:  # noqa: BLE001 - any failure becomes a note in the table
                raise Failed(f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:100]) from err

        rows.append((f"dlir.load {sample.name} (best)", timed(repeat, load_once)))
        rows.append((f"dlir.compile {target} {sample.name} (first)", timed(1, compile_once)))
        rows.append((f"dlir.compile {target} {sample.name} (best)", timed(repeat, compile_once)))
    return rows


# --- output --------------------------------------------------------------------------------------


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    width = max([len(label) for label, _ in rows] + [len(title)])
    print(f"\n{title}\n{'-' * (width + 16)}")
    for label, value in rows:
        print(f"{label:<{width}}  {value}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=Path, default=ROOT / "samples", help="folder of .dlir files")
    parser.add_argument("--repeat", type=int, default=3, help="best of N for compile timings")
    parser.add_argument("--import-repeat", type=int, default=5, help="best of N for import timings")
    parser.add_argument("--target", default="onnx", help="compile target (default onnx)")
    parser.add_argument("--top", type=int, default=12, help="rows of the import-time breakdown")
    args = parser.parse_args(argv)

    samples = sorted(args.samples.glob("*.dlir")) if args.samples.is_dir() else []
    print(f"python {sys.version.split()[0]} at {sys.executable}; {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="dlir-bench-") as tmp:
        work = Path(tmp)
        print_table("start-up (subprocess, best of %d)" % args.import_repeat, import_rows(args.import_repeat, work))
        modules = ["dlir", "dlir.cli"] if importlib.util.find_spec("dlir.cli") else ["dlir"]
        for module in modules:
            rows = importtime(module, work)
            print_table(f"import {module}: self time by top-level package (-X importtime)", by_package(rows, args.top))
            print_table(f"import {module}: slowest modules (-X importtime)", by_module(rows, args.top))
        if not samples:
            print(f"\nno samples in {args.samples}: no compile timings")
            return 0
        print_table(f"dlirc (subprocess, best of {args.repeat})", cli_rows(samples, args.target, args.repeat, work))
        print_table(f"in process (best of {args.repeat} after the first)", api_rows(samples, args.target, args.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
