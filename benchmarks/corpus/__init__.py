"""The importer's real-model corpus: models users export, built with random init, as ONNX files.

``CORPUS`` names every model; ``exported(entry)`` returns its ``.onnx`` file and example inputs,
exporting it on first use (``torch.onnx.export``, opset 17, or tf2onnx for Keras) into a cache
folder keyed by the versions of every library that shapes the file, so a new torch or
transformers release exports again, and an unchanged set-up does not pay for it twice.
Used by ``tests/test_import_corpus.py`` and ``benchmarks/import_corpus.py``.

The cache is ``$DLIR_CORPUS_CACHE`` if set, else ``<tmp>/dlir-corpus/<key>``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from corpus import keras_models as K
from corpus import torch_models as T

OPSET = 17


@dataclass(frozen=True)
class Entry:
    name: str
    family: str  # torchvision, timm, transformers, torch.nn, keras
    build: Callable[[], tuple[Any, dict[str, np.ndarray]]]

    @property
    def exporter(self) -> str:
        return "tf2onnx" if self.family == "keras" else "torch.onnx"


def _e(family: str, name: str, build: Callable[[], tuple[Any, dict[str, np.ndarray]]]) -> Entry:
    return Entry(name, family, build)


CORPUS: list[Entry] = [
    _e("torchvision", "resnet18", T.tv("resnet18")),
    _e("torchvision", "mobilenet_v3_small", T.tv("mobilenet_v3_small")),
    _e("torchvision", "efficientnet_b0", T.tv("efficientnet_b0")),
    _e("torchvision", "squeezenet1_1", T.tv("squeezenet1_1")),
    _e("torchvision", "shufflenet_v2_x0_5", T.tv("shufflenet_v2_x0_5")),
    _e("torchvision", "regnet_y_400mf", T.tv("regnet_y_400mf")),
    _e("torchvision", "mnasnet0_5", T.tv("mnasnet0_5")),
    _e("torchvision", "convnext_tiny", T.tv("convnext_tiny", size=32)),
    _e("torchvision", "vit_b_16_2layers_32px", T.tv_vit),
    _e("torchvision", "lraspp_mobilenet_v3_large", T.tv_segmentation("lraspp_mobilenet_v3_large")),
    _e("torchvision", "deeplabv3_mobilenet_v3_large", T.tv_segmentation("deeplabv3_mobilenet_v3_large")),
    _e("timm", "timm_resnet10t", T.timm_model("resnet10t")),
    _e("timm", "timm_mobilenetv4_conv_small", T.timm_model("mobilenetv4_conv_small")),
    _e("timm", "timm_deit_tiny_32px", T.timm_model("deit_tiny_patch16_224", size=32, img_size=32)),
    _e("timm", "timm_efficientvit_m0", T.timm_model("efficientvit_m0")),
    _e("transformers", "bert_tiny", T.hf("BertConfig", "BertModel", **T.TINY_TEXT)),
    _e("transformers", "distilbert_tiny", T.hf("DistilBertConfig", "DistilBertModel", **T.TINY_DISTILBERT)),
    _e("transformers", "gpt2_tiny", T.hf("GPT2Config", "GPT2Model", **T.TINY_GPT2)),
    _e("transformers", "t5_encoder_tiny", T.hf("T5Config", "T5EncoderModel", **T.TINY_T5)),
    _e("transformers", "whisper_encoder_tiny", T.hf_whisper_encoder),
    _e("transformers", "vit_tiny", T.hf_vit),
    _e("torch.nn", "nn_lstm_bidirectional", T.nn_recurrent("LSTM")),
    _e("torch.nn", "nn_gru_bidirectional", T.nn_recurrent("GRU")),
    _e("torch.nn", "nn_rnn_bidirectional", T.nn_recurrent("RNN")),
    _e("torch.nn", "nn_transformer_encoder", T.nn_transformer_encoder),
    _e("torch.nn", "nn_multihead_attention", T.nn_multihead_attention),
    _e("keras", "keras_mobilenet_v2", K.application("MobileNetV2", alpha=0.35)),
    _e("keras", "keras_mobilenet_v3_small", K.application("MobileNetV3Small", alpha=0.75, include_preprocessing=True)),
    # Keras' EfficientNets are not here: tf2onnx 1.17 leaves B0's Normalization constants as unfed graph
    # inputs (ONNX Runtime refuses the file) and crashes in its transpose optimizer on V2B0
    _e("keras", "keras_mobilenet_v1", K.application("MobileNet", alpha=0.25)),
    _e("keras", "keras_lstm", K.recurrent("LSTM", bidirectional=False)),
    _e("keras", "keras_bidirectional_lstm", K.recurrent("LSTM", bidirectional=True)),
    _e("keras", "keras_gru", K.recurrent("GRU", bidirectional=False)),
]
BY_NAME = {e.name: e for e in CORPUS}
assert len(BY_NAME) == len(CORPUS), "corpus names must be unique"

# Every library whose version changes what an exported file holds.
LIBRARIES = ("torch", "torchvision", "timm", "transformers", "tensorflow", "keras", "tf2onnx", "onnx")


def versions() -> dict[str, str]:
    out = {}
    for lib in LIBRARIES:
        try:
            out[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            out[lib] = "none"
    return out


def cache_dir() -> Path:
    if os.environ.get("DLIR_CORPUS_CACHE"):
        return Path(os.environ["DLIR_CORPUS_CACHE"])
    h = hashlib.sha256()
    for k, v in sorted(versions().items()):
        h.update(f"{k}={v}\n".encode())
    here = Path(__file__).parent
    for f in ("__init__.py", "torch_models.py", "keras_models.py"):  # a changed builder exports again
        h.update((here / f).read_bytes())
    return Path(tempfile.gettempdir()) / "dlir-corpus" / h.hexdigest()[:16]


def exported(entry: Entry) -> tuple[Path, dict[str, np.ndarray]]:
    """The entry's ONNX file and its example inputs (by ONNX input name), exported when not cached."""
    folder = cache_dir()
    onnx_path, inputs_path = folder / f"{entry.name}.onnx", folder / f"{entry.name}.inputs.npz"
    if not (onnx_path.exists() and inputs_path.exists()):
        folder.mkdir(parents=True, exist_ok=True)
        proto, inputs = _export(entry)
        _write_atomic(onnx_path, proto.SerializeToString())
        tmp = inputs_path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, **inputs)
        os.replace(tmp, inputs_path)
    with np.load(inputs_path, allow_pickle=False) as z:
        return onnx_path, {k: z[k] for k in z.files}


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # two processes exporting the same model both write whole files


def _export(entry: Entry) -> tuple[Any, dict[str, np.ndarray]]:
    if entry.exporter == "tf2onnx":
        return _export_keras(entry)
    return _export_torch(entry)


def _export_torch(entry: Entry) -> tuple[Any, dict[str, np.ndarray]]:
    import io

    import onnx
    import torch

    torch.manual_seed(0)
    model, inputs = entry.build()
    model.eval()
    _trained_looking_norms(model)
    args = tuple(torch.from_numpy(v) for v in inputs.values())
    buf = io.BytesIO()
    # The TorchScript exporter, as most published exports were made (and no onnxscript needed), with
    # its default constant folding. Not under no_grad: there torch.nn's attention and transformer
    # layers take their fused fast path (_native_multi_head_attention), which has no ONNX export.
    torch.onnx.export(model, args, buf, input_names=list(inputs), opset_version=OPSET, dynamo=False)
    return onnx.load_from_string(buf.getvalue()), inputs


def _trained_looking_norms(model: Any) -> None:
    """Seeded, distinct affine params and running statistics for every batch norm.

    Freshly built, every batch norm is the identity (weight 1, bias 0, mean 0, var 1), so
    the exporter's constant folding gives many convs the same folded bias and deduplicates
    them into ``Identity`` nodes that no trained model's export has (onnx2torch, which reads
    a conv's bias only from an initializer, would fail on every CNN for that alone).
    """
    import torch

    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                n = m.num_features
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
                if m.affine:
                    m.weight.copy_(0.5 + torch.rand(n, generator=g))
                    m.bias.copy_(0.1 * torch.randn(n, generator=g))


def _export_keras(entry: Entry) -> tuple[Any, dict[str, np.ndarray]]:
    import keras
    import tensorflow as tf
    import tf2onnx

    keras.utils.set_random_seed(0)
    model, inputs = entry.build()
    ((name, x),) = inputs.items()
    spec = [tf.TensorSpec(x.shape, tf.as_dtype(x.dtype), name=name)]
    fn = tf.function(lambda t: model(t, training=False), input_signature=spec)
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=OPSET)
    # tf2onnx names the input after the TensorSpec, possibly with a ":0" suffix
    return proto, {proto.graph.input[0].name: x}
