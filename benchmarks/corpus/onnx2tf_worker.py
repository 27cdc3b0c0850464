"""Convert one ONNX file with onnx2tf and run the result: run by benchmarks/import_corpus.py in onnx2tf's own venv.

    PYTHON onnx2tf_worker.py MODEL.onnx INPUTS.npz

It imports nothing from dlir (that venv has onnx2tf's pinned tensorflow, onnx and numpy, not
dlir's) and prints one JSON line: {"ok_convert", "convert_s", "run_s", "outputs": path, "error"}.
The outputs are written to an .npz next to nothing of the caller's: a temp folder given by
``OUT_DIR`` (default: the system's temp dir). The caller compares them with ONNX Runtime.

onnx2tf turns channels-first tensors into channels-last ones (its documented behaviour): an input
is fed in the layout the converted model declares, and an output that onnx2tf reports as NHWC is
moved back to channels-first before the comparison, as a user of onnx2tf would do.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time


def _fit(x, shape):  # noqa: ANN001, ANN202 - runs in another venv, kept dependency-free
    """``x`` as the model's declared input ``shape`` wants it: as is, or with the channels axis moved last."""
    import numpy as np

    def matches(s):  # noqa: ANN001, ANN202
        return len(s) == len(shape) and all(d is None or d == e for d, e in zip(shape, s, strict=True))

    if matches(x.shape):
        return x
    moved = np.moveaxis(x, 1, -1)
    if matches(moved.shape):
        return moved
    raise ValueError(f"input of shape {x.shape} fits neither way the converted model's {tuple(shape)}")


def _offline_sample_images() -> None:
    """The sample images onnx2tf checks its per-op outputs on, made here instead of downloaded.

    For a model whose inputs all look like batches of RGB images, onnx2tf's conversion runs the
    ONNX model on 20 sample images it fetches from its GitHub releases unless a file of that name
    lies in the current folder (this machine has no network). Uniform [0, 1) pixels stand in for them:
    they guide its layout checks only, and the comparison below uses the corpus' own inputs.
    """
    import numpy as np

    name = "calibration_image_sample_data_20x128x128x3_float32.npy"
    if not os.path.exists(name):
        np.save(name, np.random.default_rng(0).uniform(0, 1, (20, 128, 128, 3)).astype(np.float32))


def main() -> int:
    model_path, inputs_path = sys.argv[1], sys.argv[2]
    out_dir = os.environ.get("OUT_DIR") or tempfile.mkdtemp(prefix="onnx2tf-out-")
    report = {"ok_convert": False, "convert_s": 0.0, "run_s": 0.0, "outputs": "", "error": ""}
    try:
        import numpy as np
        import onnx2tf

        with np.load(inputs_path) as z:
            inputs = {k: z[k] for k in z.files}
        _offline_sample_images()
        t0 = time.perf_counter()
        model = onnx2tf.convert(
            input_onnx_file_path=model_path,
            output_folder_path=os.path.join(out_dir, "saved_model"),
            disable_model_save=True,
            non_verbose=True,
        )
        report["convert_s"] = time.perf_counter() - t0
        report["ok_convert"] = True
        feeds = [_fit(inputs[name], list(inp.shape)) for name, inp in zip(inputs, model.inputs, strict=True)]
        t1 = time.perf_counter()
        outs = model(feeds if len(feeds) > 1 else feeds[0], training=False)
        report["run_s"] = time.perf_counter() - t1
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        # onnx2tf records, per ONNX output, whether it left that tensor channels-last
        nhwc = list((getattr(model, "onnx_output_layouts", None) or {}).values())
        arrays = {}
        for i, o in enumerate(outs):
            a = np.asarray(o)
            if i < len(nhwc) and nhwc[i] and a.ndim >= 3:
                a = np.moveaxis(a, -1, 1)
            arrays[f"out{i}"] = a
        path = os.path.join(out_dir, "outputs.npz")
        np.savez(path, **arrays)
        report["outputs"] = path
    except Exception as e:  # any failure of the converter or of its model is the result being measured
        report["error"] = f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
