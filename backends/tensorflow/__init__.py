"""The TensorFlow target: a dlir graph becomes the source of a ``tf.Module``.

``generate(graph)`` writes the file (no TensorFlow needed); ``Runner`` imports
TensorFlow when it is created. Importing this package does not import TensorFlow.
"""

from dlir.backends.tensorflow.codegen import generate, generate_source
from dlir.backends.tensorflow.lowering import EMITTERS
from dlir.backends.tensorflow.runner import Runner

SUFFIX = ".py"

__all__ = ["EMITTERS", "SUFFIX", "Runner", "generate", "generate_source"]
