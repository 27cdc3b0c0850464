"""The run-cost table on a CUDA GPU: generated torch vs hand-written torch.nn, and ONNX Runtime's CUDA provider.

    .venv/bin/python benchmarks/bench_gpu.py [--batch 64] [--seq 32] [--repeat 50] [--samples mlp,cnn,...]
    .venv/bin/python benchmarks/bench_gpu.py --cpu-dry-run     # the same code path on the CPU, tiny sizes

Same models, weights and inputs as bench_vs_hand.py (tables a and b), on the
GPU: torch (the generated ``nn.Module`` at -O2 vs the hand-written ``torch.nn``
one, TF32 off, timed to ``torch.cuda.synchronize()``) and, where ONNX Runtime's
CUDA provider really loads (probed once, quietly), dlir's ONNX vs the
exported hand-written models in CUDA sessions. The "max diff" column is the
agreement with the CPU numpy reference (scaled: max |diff| / (1 + max |ref|));
the run stops if a model does not agree.

Without a GPU it prints one line saying so and exits 0. ``--cpu-dry-run`` runs
the whole path on the CPU with tiny sizes: the smoke test uses it, so that the
script works when a GPU machine runs it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_vs_hand as vh  # noqa: E402


def gpu_present() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def ort_cuda_providers() -> list[Any] | None:
    """ONNX Runtime's CUDA provider list when it really runs here, else None (the probe prints nothing)."""
    from dlir.backends.onnx.runner import CPU, CUDA, CUDA_OPTIONS, cuda_usable

    return [(CUDA, CUDA_OPTIONS), CPU] if cuda_usable() else None


def has_tensorflow() -> bool:
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu-dry-run", action="store_true", help="run every step on the CPU with tiny sizes")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seq", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--samples", default=",".join(vh.HANDS))
    args = ap.parse_args(argv)
    if not args.cpu_dry_run and not gpu_present():
        print("bench_gpu: no CUDA GPU here (torch sees none); nothing measured")
        return 0
    import torch

    samples = [s for s in args.samples.split(",") if s]
    if args.cpu_dry_run:
        device, providers, where = "cpu", ["CPUExecutionProvider"], "CPU dry run"
        args.batch, args.seq, args.repeat = 2, 4, 2
    else:
        # TF32 matmuls are ~1e-3 off in float32 (PITFALLS.md): keep both sides in true f32.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        device, providers, where = "cuda", ort_cuda_providers(), torch.cuda.get_device_name(0)
    print(f"bench_gpu: {where}; torch {torch.__version__}")
    vh.silence_loggers()
    t0 = time.perf_counter()
    cases = [vh.make_case(s, args.batch, args.seq) for s in samples]
    ratios = {"torch": vh.torch_table(
        cases, args.repeat, device,
        title=f"GPU run cost in torch ({device}, eager, inference_mode), generated -O2 vs hand-written torch.nn, "
              "median ms per call; max diff = agreement with the CPU numpy reference")}
    if providers is None:
        print("\n(ONNX Runtime: the CUDA provider does not load here; its table is skipped)")
    else:
        first = providers[0] if isinstance(providers[0], str) else providers[0][0]
        ratios["onnx"] = vh.onnx_table(
            cases, args.repeat, threads=0, providers=providers, with_tf=has_tensorflow(),
            title=f"GPU run cost in ONNX Runtime ({first}), dlir -O2 vs exported hand-written models, "
                  "median ms per call; max diff vs the CPU reference")
    vh.goals_table(ratios)
    print(f"\n(total {time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
