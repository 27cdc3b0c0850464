"""Real models through the importer: the corpus of benchmarks/corpus (issue 15).

Each model of torchvision, timm, Hugging Face transformers (tiny configs), torch.nn and Keras
applications is built with random init and exported to ONNX (cached, keyed by the libraries'
versions); the test imports it as ``dlirc import`` does and checks, against ONNX Runtime on the
same file (rtol 1e-3, atol 1e-4 x the output's scale):

- every target (numpy, torch, tensorflow, onnx) of the imported model;
- the ``.dlir`` source the importer writes: it parses, and the torch and tensorflow code
  generated from that text, with the written weights, imports and agrees.

Models dlir cannot import yet are in ``EXPECTED_FAILURES``, the one table of known failures, each
with its reason. They are strict xfails: the day a new op makes one pass, its test fails, saying
so, and its row is to be deleted.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from corpus import BY_NAME, CORPUS, Entry, exported  # noqa: E402
from corpus.check import TARGETS, check_dlir, check_source, mismatch, reference  # noqa: E402

# model -> why dlir fails on it today (the ONNX ops the importer refuses, as its error lists them)
EXPECTED_FAILURES: dict[str, str] = {}


def _params() -> list[object]:
    out = []
    for e in CORPUS:
        marks = []
        if e.name in EXPECTED_FAILURES:
            # raises=AssertionError: only a disagreement or a refusal found by the test counts as the
            # expected failure; an export or set-up crash is still an error
            marks.append(pytest.mark.xfail(strict=True, raises=AssertionError, reason=EXPECTED_FAILURES[e.name]))
        out.append(pytest.param(e, id=e.name, marks=marks))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("entry", _params())
def test_real_model_imports_and_every_target_agrees_with_onnx_runtime(entry: Entry) -> None:
    path, inputs = exported(entry)
    want = reference(path, inputs)
    m, results = check_dlir(path, inputs, want)
    failed = {t: r.detail for t, r in results.items() if not r.ok}
    assert not failed, f"{entry.name}: " + "; ".join(f"{t}: {d}" for t, d in failed.items())
    assert set(results) == set(TARGETS)
    source = check_source(path, m, inputs, want, ("torch", "tensorflow"))
    failed = {t: r.detail for t, r in source.items() if not r.ok}
    assert not failed, f"{entry.name}, from the written .dlir source: " + "; ".join(
        f"{t}: {d}" for t, d in failed.items()
    )


def test_the_expected_failure_table_names_only_corpus_models() -> None:
    assert set(EXPECTED_FAILURES) <= set(BY_NAME), set(EXPECTED_FAILURES) - set(BY_NAME)


def test_the_corpus_covers_every_family_the_issue_names() -> None:
    families = {e.family for e in CORPUS}
    assert families == {"torchvision", "timm", "transformers", "torch.nn", "keras"}


def test_the_comparison_catches_a_wrong_output_and_accepts_the_tolerance() -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((2, 50)).astype(np.float32) * 10  # scale ~30: atol ~3e-3
    assert mismatch(w.copy(), [w]) is None
    assert mismatch((w * (1 + 5e-4)).astype(np.float32), [w]) is None  # within rtol 1e-3
    off = w.copy()
    off[1, 7] += 0.1  # one element off by far more than the tolerance
    assert "1 of 100 elements" in (mismatch(off, [w]) or "")
    assert "shape" in (mismatch(w[:, :10], [w]) or "")
    assert "outputs" in (mismatch((w, w), [w]) or "")
    nan = w.copy()
    nan[0, 0] = np.nan
    assert mismatch(nan, [w]) is not None
    ids = np.arange(6, dtype=np.int64)
    assert mismatch(ids + (ids == 3), [ids]) is not None  # integers must be equal
