"""``dlirc viz``: the IR drawn as one self-contained page (or an SVG), laid out in Python.

:mod:`.layout` places the boxes (layers, nested scan clusters), :mod:`.svg`
draws them, :mod:`.page` wraps the drawing with search, pan/zoom and folding,
and :mod:`.marks` colours nodes by the error between two targets (``--diff``).
The same input gives the same bytes; the page fetches nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dlir.errors import UsageError

SUFFIXES = (".html", ".svg")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("viz", help="draw the IR as a self-contained HTML page or an SVG")
    p.add_argument("file", help="a .dlir file")
    p.add_argument("--model", help="which model of the file (default: its only model)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.html|OUT.svg", help="the page, or the drawing alone")
    p.add_argument("-O", dest="opt_level", type=int, default=0, choices=[0, 1, 2, 3], help="optimisation level")
    p.add_argument("--grad", action="store_true", help="draw the gradient graph next to the forward one")
    p.add_argument("--diff", metavar="A,B", help="colour nodes by the error between two targets, e.g. numpy,torch")
    p.add_argument("--rtol", type=float, default=1e-5, help="--diff tolerance (as dlirc diff)")
    p.add_argument("--atol", type=float, default=1e-5)
    p.add_argument("--seed", type=int, default=0, help="--diff: seed of the random inputs and the init")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])


def _check_output(out: str) -> Path:
    path = Path(out)
    if path.suffix.lower() not in SUFFIXES:
        raise UsageError(
            f"-o {out}: viz writes .html (the page) or .svg (the drawing alone)",
            hint=f"e.g. -o {path.with_suffix('.html').name}",
        )
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"cannot write '{out}': no directory '{parent}'", hint=f"create it first: mkdir -p {parent}")
    return path


def _targets(spec: str) -> tuple[str, str]:
    from dlir.targets import check_target

    parts = [t.strip() for t in spec.split(",") if t.strip()]
    if len(parts) != 2:
        raise UsageError(f"--diff needs exactly two targets, got '{spec}'", hint="e.g. --diff numpy,torch")
    return check_target(parts[0]), check_target(parts[1])


def cmd_viz(args: argparse.Namespace, sources: dict[str, str]) -> int:
    import dlir
    from dlir.runtime.files import write_atomic
    from dlir.viz.draw import draw

    out = _check_output(args.output)
    targets = _targets(args.diff) if args.diff else None
    prog = dlir.load(args.file)
    sources.update(prog.sources)
    graph = prog.graph(args.model)
    text = draw(
        graph,
        args.file,
        opt_level=args.opt_level,
        grad=args.grad,
        diff=targets,
        rtol=args.rtol,
        atol=args.atol,
        seed=args.seed,
        device=args.device,
        svg_only=out.suffix.lower() == ".svg",
    )
    write_atomic(out, text.encode("utf-8"))
    print(f"wrote {out}")
    return 0
