"""Training: optimizers as IR (``optim.py``), the trainer (``trainer.py``), data sets (``data.py``).

``train_step_graph(loss_graph, Adam(lr=...))`` is one whole training step as a
graph; :class:`Trainer` compiles it for a target and runs it on minibatches.
``Trainer(..., world=world)`` is one data-parallel worker (``parallel.py``,
``world.py``), and :func:`run_workers` starts N of them (``launch.py``).
"""

from dlir.train.data import Dataset, digits, load_dataset
from dlir.train.launch import WorkerFailed, run_workers
from dlir.train.optim import SGD, Adam, Optimizer, make_optimizer, train_step_graph
from dlir.train.trainer import Evaluator, Trainer, find_forward_model, loss_curve_png
from dlir.train.world import World

__all__ = [
    "SGD",
    "Adam",
    "Optimizer",
    "make_optimizer",
    "train_step_graph",
    "Trainer",
    "Evaluator",
    "find_forward_model",
    "loss_curve_png",
    "Dataset",
    "digits",
    "load_dataset",
    "World",
    "run_workers",
    "WorkerFailed",
]
