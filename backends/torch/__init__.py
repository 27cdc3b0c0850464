"""The torch target: a dlir graph as the readable source of a ``torch.nn.Module``.

Importing this package does not import torch; creating a :class:`Runner` does.
"""

from dlir.backends.torch.codegen import generate
from dlir.backends.torch.lowering import EMITTERS
from dlir.backends.torch.runner import Runner

SUFFIX = ".py"

__all__ = ["EMITTERS", "SUFFIX", "Runner", "generate"]
