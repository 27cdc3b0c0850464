"""The corpus models built in PyTorch: torchvision, timm, Hugging Face transformers and torch.nn.

Every builder makes its model with random init (the caller seeds torch) and never downloads a
weight: torchvision gets ``weights=None`` (and ``weights_backbone=None`` for the segmentation
heads, whose default backbone weights would be fetched), timm ``pretrained=False``, transformers
a tiny ``Config`` object through the model class itself. Each returns the module in eval mode and
its example inputs by ONNX input name. Sizes are chosen small (low resolution, two layers, width
32) so the whole corpus imports and runs on every target in CI on two cores.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Inputs = dict[str, np.ndarray]


def _image(n: int = 1, size: int = 64, channels: int = 3) -> Inputs:
    return {"x": np.random.default_rng(0).standard_normal((n, channels, size, size)).astype(np.float32)}


def _tokens(vocab: int, n: int = 2, t: int = 8, mask: bool = True) -> Inputs:
    rng = np.random.default_rng(0)
    out = {"input_ids": rng.integers(0, vocab, (n, t)).astype(np.int64)}
    if mask:
        # the second sequence is padded: the exported mask logic must really mask something
        m = np.ones((n, t), np.int64)
        m[-1, t - 3 :] = 0
        out["attention_mask"] = m
    return out


def _sequence(n: int = 2, t: int = 5, f: int = 8) -> Inputs:
    return {"x": np.random.default_rng(0).standard_normal((n, t, f)).astype(np.float32)}


def torchvision_vision() -> None:
    """Import torchvision's model code on a CPU-only torch.

    The torchvision wheel on PyPI is built for the CUDA torch; on the CPU build its C++ extension
    does not load, and ``import torchvision`` then fails in ``_meta_registrations`` (``operator
    torchvision::nms does not exist``). That module and ``_autograd_registrations`` only register
    kernels for the extension's detection ops (nms, roi_align, deform_conv2d, ...), which no model
    of the corpus calls: where the import fails, both are replaced by empty modules and it is retried.
    """
    import sys
    import types

    try:
        import torchvision  # noqa: F401

        return
    except RuntimeError as e:
        if "torchvision::" not in str(e):
            raise
    for mod in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[mod]
    for stub in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        sys.modules[stub] = types.ModuleType(stub)
    import torchvision  # noqa: F401, F811


def tv(name: str, size: int = 64, **kw: Any) -> Any:
    def build() -> tuple[Any, Inputs]:
        torchvision_vision()
        import torchvision.models as tvm

        return getattr(tvm, name)(weights=None, **kw), _image(size=size)

    return build


def tv_segmentation(name: str, size: int = 64) -> Any:
    def build() -> tuple[Any, Inputs]:
        torchvision_vision()
        import torch
        import torchvision.models.segmentation as seg

        net = getattr(seg, name)(weights=None, weights_backbone=None, num_classes=3)

        class OutOnly(torch.nn.Module):  # the heads return a dict; export the "out" map
            def __init__(self) -> None:
                super().__init__()
                self.net = net

            def forward(self, x: Any) -> Any:
                return self.net(x)["out"]

        return OutOnly(), _image(size=size)

    return build


def tv_vit() -> tuple[Any, Inputs]:
    """vit_b_16's width, heads and patch (768, 12, 16) at 32x32 pixels and 2 layers instead of 12."""
    torchvision_vision()
    from torchvision.models.vision_transformer import VisionTransformer

    net = VisionTransformer(
        image_size=32, patch_size=16, num_layers=2, num_heads=12, hidden_dim=768, mlp_dim=3072, num_classes=10
    )
    return net, _image(size=32)


def timm_model(name: str, size: int = 64, **kw: Any) -> Any:
    def build() -> tuple[Any, Inputs]:
        torchvision_vision()  # timm imports torchvision
        import timm

        return timm.create_model(name, pretrained=False, num_classes=10, **kw), _image(size=size)

    return build


# Tiny configs: two layers of width 32, a vocabulary of 100 (the models' own code, nothing downloaded).
TINY_TEXT: dict[str, Any] = dict(
    vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
    max_position_embeddings=64,
)  # fmt: skip
TINY_DISTILBERT: dict[str, Any] = dict(
    vocab_size=100, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=64
)
TINY_GPT2: dict[str, Any] = dict(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=64)
TINY_T5: dict[str, Any] = dict(vocab_size=100, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2)


def hf(config_name: str, model_name: str, mask: bool = True, **cfg: Any) -> Any:
    """A transformers model from a tiny config, exported as its last hidden state."""

    def build() -> tuple[Any, Inputs]:
        import torch
        import transformers

        config = getattr(transformers, config_name)(**cfg)
        net = getattr(transformers, model_name)(config)
        vocab = int(cfg.get("vocab_size", 100))

        class LastHidden(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.net = net

            def forward(self, input_ids: Any, attention_mask: Any = None) -> Any:
                kw = {} if attention_mask is None else {"attention_mask": attention_mask}
                return self.net(input_ids=input_ids, **kw).last_hidden_state

        return LastHidden(), _tokens(vocab, mask=mask)

    return build


def hf_whisper_encoder() -> tuple[Any, Inputs]:
    import torch
    import transformers

    cfg = transformers.WhisperConfig(
        num_mel_bins=16, max_source_positions=16, d_model=32, encoder_layers=2, encoder_attention_heads=2,
        decoder_layers=1, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=100,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
    )  # fmt: skip
    enc = transformers.WhisperModel(cfg).get_encoder()

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc = enc

        def forward(self, input_features: Any) -> Any:
            return self.enc(input_features).last_hidden_state

    feats = np.random.default_rng(0).standard_normal((1, 16, 32)).astype(np.float32)  # 2 x max_source_positions
    return Encoder(), {"input_features": feats}


def hf_vit() -> tuple[Any, Inputs]:
    import torch
    import transformers

    cfg = transformers.ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    net = transformers.ViTModel(cfg, add_pooling_layer=False)

    class LastHidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, pixel_values: Any) -> Any:
            return self.net(pixel_values=pixel_values).last_hidden_state

    return LastHidden(), {"pixel_values": _image(size=32)["x"]}


def nn_recurrent(kind: str) -> Any:
    """torch.nn.LSTM / GRU / RNN: two layers, bidirectional, batch first, with initial states."""

    def build() -> tuple[Any, Inputs]:
        import torch

        rnn = getattr(torch.nn, kind)(8, 16, num_layers=2, bidirectional=True, batch_first=True)

        class Seq(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.rnn = rnn

            def forward(self, x: Any) -> Any:
                return self.rnn(x)[0]

        return Seq(), _sequence()

    return build


def nn_transformer_encoder() -> tuple[Any, Inputs]:
    import torch

    layer = torch.nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, batch_first=True)
    return torch.nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False), _sequence(f=32)


def nn_multihead_attention() -> tuple[Any, Inputs]:
    import torch

    mha = torch.nn.MultiheadAttention(32, 4, batch_first=True)

    class SelfAttention(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mha = mha

        def forward(self, x: Any) -> Any:
            return self.mha(x, x, x, need_weights=False)[0]

    return SelfAttention(), _sequence(f=32)
