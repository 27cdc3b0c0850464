"""``dlirc explain``: dynamic vs static, predicted from the IR and measured on every installed target.

For a few calls with different sizes of the symbolic dims, each target reports
how many graphs it built (``graph_builds``), how many ops each call ran
(``ops_per_call``), how each ``scan`` appears in what it runs (``loop_nodes``),
its per-call time, and (tensorflow) which dims would retrace. Each number is
first predicted from the IR (:mod:`dlir.explain.predict`), then measured
(:mod:`.torch_target`, :mod:`.tf_target`, :mod:`.onnx_target`); a prediction
that fails is a dlir bug and is reported as one (exit status 1).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from dlir.errors import UsageError


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "explain", help="dynamic vs static: graph builds, ops per call and loops, predicted and measured"
    )
    p.add_argument("file", help="a .dlir file")
    p.add_argument("--model", help="which model of the file (default: its only model)")
    p.add_argument(
        "--calls",
        metavar="SPEC",
        help='the sizes of the symbolic dims per call, e.g. "B=2,T=4;B=2,T=4;B=2,T=8" '
        "(default: two calls at one size, one with every dim doubled)",
    )
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("-O", dest="opt_level", type=int, default=0, choices=[0, 1, 2, 3], help="optimisation level")
    p.add_argument("--repeat", type=int, default=10, help="runs per call for the median time (default 10)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])


def cmd_explain(args: argparse.Namespace, sources: dict[str, str]) -> int:
    import dlir
    from dlir.explain.calls import default_calls, parse_calls
    from dlir.explain.run import explain
    from dlir.explain.text import render

    if args.repeat < 1:
        raise UsageError(f"--repeat must be at least 1, got {args.repeat}", hint="e.g. --repeat 10 (the default)")
    prog = dlir.load(args.file)
    sources.update(prog.sources)
    graph = prog.graph(args.model)
    calls = parse_calls(args.calls, graph) if args.calls is not None else default_calls(graph)
    report = explain(prog, args.model, calls, opt_level=args.opt_level, device=args.device, repeat=args.repeat)
    print(json.dumps(report.as_json(), indent=2) if args.format == "json" else render(report))
    return 1 if report.bugs() else 0
