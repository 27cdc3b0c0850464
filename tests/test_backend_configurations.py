"""Each backend's agreement tests under the configurations the main run does not use.

A target's numbers can change with settings a user controls: TensorFlow's oneDNN
graph rewrites (``TF_ENABLE_ONEDNN_OPTS``, read once when TensorFlow loads; the
main run forces them on, see conftest.py), ONNX Runtime's graph optimisation
level (the main run uses ``ORT_ENABLE_ALL``, ONNX Runtime's default), torch's
oneDNN (mkldnn) kernels (on by default). Each test here runs that target's
tests again in a child pytest under the other setting, so a lowering that is
right in one configuration only fails CI on every machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHILD = "DLIR_TEST_CONFIG"  # set in the child runs; conftest.py applies it


def _other_onednn() -> str:
    return "0" if os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") == "1" else "1"


# The agreement suites: per-op cases, samples at every level, stdlib layers, imports and
# the committed conformance lists; each child runs the tests of these whose id names its target.
AGREEMENT = ["test_ops.py", "test_samples.py", "test_passes.py", "test_stdlib.py", "test_import.py", "test_scan.py"]
# name -> (environment of the child, test files, the -k selection)
RUNS = {
    "tensorflow-onednn-other": (
        {"TF_ENABLE_ONEDNN_OPTS": _other_onednn()},
        AGREEMENT + ["test_tf_rewrites.py", "test_tensorflow_backend.py", "test_layout.py"],
        "tensorflow or tf_",
    ),
    "onnx-ort-disable-all": ({CHILD: "ort-disable-all"}, AGREEMENT + ["test_onnx_backend.py"], "onnx and not tf2onnx"),
    "torch-mkldnn-off": ({CHILD: "torch-mkldnn-off"}, AGREEMENT + ["test_torch_backend.py"], "torch and not compile"),
}


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("DLIR_CONFIG_CHILD") == "1", reason="this is a child run itself")
@pytest.mark.parametrize("name", sorted(RUNS))
def test_target_tests_pass_in_the_other_configuration(name: str) -> None:
    extra, files, selection = RUNS[name]
    env = dict(os.environ, **extra, DLIR_CONFIG_CHILD="1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", selection, *(str(ROOT / "tests" / f) for f in files)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    summary = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
    assert proc.returncode == 0, f"{name} ({extra}): {summary}\n" + proc.stdout[-6000:] + proc.stderr[-2000:]
    assert " passed" in summary, f"{name}: the child run ran no test: {summary}"
