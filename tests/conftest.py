"""Suite-wide set-up that must happen before any framework is imported.

TensorFlow reads ``TF_ENABLE_ONEDNN_OPTS`` once, when it loads. Its default
depends on the CPU (on with AVX-512, off without), so the same suite would test
different graph rewrites on different machines. The suite therefore runs with
the oneDNN rewrites forced on, the stricter mode, wherever the caller has not
chosen. ``tests/test_backend_configurations.py`` runs each target's tests again
in a child process under the other configurations; ``DLIR_TEST_CONFIG`` names
the one a child applies here. See "Same numbers everywhere" in README.md.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def pytest_configure(config: pytest.Config) -> None:
    wanted = os.environ.get("DLIR_TEST_CONFIG", "")
    if wanted == "ort-disable-all":
        from dlir.backends.onnx import runner

        runner.graph_optimization("ORT_DISABLE_ALL").__enter__()  # for the whole child run
    elif wanted == "torch-mkldnn-off":
        import torch

        torch.backends.mkldnn.enabled = False
    elif wanted:
        raise pytest.UsageError(f"DLIR_TEST_CONFIG={wanted!r}: use ort-disable-all or torch-mkldnn-off")
