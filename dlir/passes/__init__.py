"""Optimisation passes and the pass manager (see :mod:`dlir.passes.manager`).

Importing this package registers every pass: ``dce``, ``cse``, ``fold``, ``simplify``, ``fuse``,
``licm``, ``rnn``, ``layout``, ``autodiff``.
"""

from dlir.passes import autodiff, cse, dce, fold, fuse, layout, licm, rnn, simplify  # noqa: F401  (register the passes)
from dlir.passes.manager import (
    LEVELS,
    PASSES,
    TARGET_PASSES,
    DumpIR,
    Instrument,
    Pass,
    PassManager,
    PassRecord,
    PassTiming,
    PrintIR,
    all_passes,
    count_nodes,
    level_pipeline,
    make_pass,
    optimize,
    parse_pipeline,
    register_pass,
)

__all__ = [
    "LEVELS",
    "PASSES",
    "TARGET_PASSES",
    "DumpIR",
    "Instrument",
    "Pass",
    "PassManager",
    "PassRecord",
    "PassTiming",
    "PrintIR",
    "all_passes",
    "count_nodes",
    "level_pipeline",
    "make_pass",
    "optimize",
    "parse_pipeline",
    "register_pass",
]
