"""Counter-based random numbers for dropout masks, bit-identical on every machine and every framework.

Framework RNGs (torch, tensorflow, numpy's ``Generator``) disagree with one another and across versions,
so a mask drawn for one target could not be reproduced on another. Threefry-2x32 (Random123, as in JAX)
is a pure function of a key and a counter built from 32-bit adds, rotations and xors, so numpy computes
exactly the bits any target would. Keying by ``(seed, site)`` and counting by ``(step, global sample index)``
gives a sample the same mask whether it is drawn alone, in a batch, or by a data-parallel worker.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

__all__ = ["threefry2x32", "uniform", "dropout_mask"]

_ROTATIONS = (13, 15, 26, 6, 17, 29, 16, 24)
_PARITY = np.uint32(0x1BD11BDA)
_MAX_U32 = 0xFFFFFFFF

_MASK_DTYPES: set[np.dtype[Any]] = {np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)}
try:
    import ml_dtypes

    _MASK_DTYPES.add(np.dtype(ml_dtypes.bfloat16))
except ImportError:  # bfloat16 masks are optional; the rest of the module needs numpy only
    pass


def _u32(x: ArrayLike, name: str) -> np.ndarray:
    # A bare Python int would make numpy pick int64 (or fail above 2**63) and a wrapped-around negative
    # would silently select another stream, so range-check before converting rather than casting blindly.
    a = np.asarray(x)
    if a.dtype == np.uint32:
        return a
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must be uint32 integers, got dtype {a.dtype}")
    if a.size and (a.min() < 0 or a.max() > _MAX_U32):
        raise ValueError(f"{name} must lie in [0, 2**32), got values in [{a.min()}, {a.max()}]")
    return a.astype(np.uint32)


def threefry2x32(key0: ArrayLike, key1: ArrayLike, ctr0: ArrayLike, ctr1: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Threefry-2x32 with 20 rounds, as in Random123 and JAX's ``threefry_2x32``.

    Args:
        key0: First key word, uint32 (array or int); broadcast with the other arguments.
        key1: Second key word.
        ctr0: First counter word.
        ctr1: Second counter word.

    Returns:
        The two uint32 output words ``(x0, x1)``, each of the broadcast shape.

    Raises:
        TypeError: An argument is not integer.
        ValueError: An argument lies outside [0, 2**32).
    """
    k0, k1, c0, c1 = np.broadcast_arrays(_u32(key0, "key0"), _u32(key1, "key1"), _u32(ctr0, "ctr0"), _u32(ctr1, "ctr1"))
    ks = (k0, k1, k0 ^ k1 ^ _PARITY)
    # Wrapping mod 2**32 is the cipher; numpy only warns about it for 0-d inputs, which became scalars.
    with np.errstate(over="ignore"):
        x0 = c0 + ks[0]
        x1 = c1 + ks[1]
        for i in range(20):
            r = _ROTATIONS[i % 8]
            x0 = x0 + x1
            x1 = ((x1 << np.uint32(r)) | (x1 >> np.uint32(32 - r))) ^ x0
            if i % 4 == 3:
                j = i // 4 + 1
                x0 = x0 + ks[j % 3]
                x1 = x1 + ks[(j + 1) % 3] + np.uint32(j)
    return np.asarray(x0, np.uint32), np.asarray(x1, np.uint32)


def uniform(seed: int, step: int, site: int, sample_index: np.ndarray, per_sample: int) -> np.ndarray:
    """Uniform float32 numbers in [0, 1), ``per_sample`` of them for each listed sample.

    Element ``e`` of sample ``i`` is word ``e % 2`` of ``threefry2x32(seed mod 2**32, site, step,
    i * ceil(per_sample / 2) + e // 2)``, mapped to ``(x >> 8) * 2**-24``. It depends on nothing else, in
    particular not on which other samples are drawn in the same call or in what order.

    Args:
        seed: Run seed; any Python int, taken mod 2**32.
        step: Training step, in [0, 2**32).
        site: Which dropout in the model, in [0, 2**32), so that two sites draw independent masks.
        sample_index: Global indices of the samples in the data set, int ``[N]``, each >= 0.
        per_sample: Numbers wanted per sample, >= 0.

    Returns:
        float32 ``[N, per_sample]``; every value is a multiple of 2**-24, exact in float32.

    Raises:
        ValueError: Bad ``sample_index`` or ``per_sample``, or a counter that does not fit in 32 bits.
    """
    idx = np.asarray(sample_index)
    if idx.ndim != 1 or idx.dtype.kind not in "iu":
        raise ValueError(f"sample_index must be a 1-D integer array, got {idx.dtype} of shape {idx.shape}")
    if per_sample < 0:
        raise ValueError(f"per_sample must be >= 0, got {per_sample}")
    half = -(-per_sample // 2)
    if idx.size and idx.min() < 0:
        raise ValueError(f"sample_index must be >= 0, got {idx.min()}")
    # Wrapping the counter would hand two samples the same numbers; refuse instead of repeating silently.
    if idx.size and int(idx.max()) * half + half - 1 > _MAX_U32:
        raise ValueError(
            f"sample {int(idx.max())} with {per_sample} numbers per sample needs a counter above 2**32 - 1"
        )
    ctr = (idx.astype(np.int64)[:, None] * half + np.arange(half, dtype=np.int64)).astype(np.uint32)
    x0, x1 = threefry2x32(seed % 2**32, _u32(site, "site"), _u32(step, "step"), ctr)
    bits = np.stack([x0, x1], axis=-1).reshape(idx.shape[0], 2 * half)[:, :per_sample]
    # 24 bits fill float32's significand, so the product is exact and every platform gets the same value.
    return (bits >> np.uint32(8)).astype(np.float32) * np.float32(2.0**-24)


def dropout_mask(
    seed: int,
    step: int,
    site: int,
    sample_index: np.ndarray,
    sample_shape: tuple[int, ...],
    p: float,
    dtype: DTypeLike = np.float32,
) -> np.ndarray:
    """Inverted-dropout mask: ``1 / (1 - p)`` where ``uniform(...) >= p``, 0 elsewhere.

    Args:
        seed: Run seed, as for :func:`uniform`.
        step: Training step.
        site: Which dropout in the model.
        sample_index: Global indices of the samples, int ``[N]``.
        sample_shape: Shape of one sample's activation.
        p: Drop probability, in [0, 1).
        dtype: float16, float32, float64, or ``ml_dtypes.bfloat16`` when ml_dtypes is installed.

    Returns:
        ``[N, *sample_shape]`` of ``dtype``, holding only 0 and ``1 / (1 - p)`` rounded once to ``dtype``.

    Raises:
        ValueError: ``p`` outside [0, 1) or an unsupported ``dtype``.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability p must be in [0, 1), got {p}")
    dt = np.dtype(dtype)
    if dt not in _MASK_DTYPES:
        raise ValueError(f"dropout masks are floating point ({', '.join(sorted(map(str, _MASK_DTYPES)))}), got {dt}")
    n = np.asarray(sample_index).shape[0]
    u = uniform(seed, step, site, sample_index, math.prod(sample_shape))
    # The keep test is in float32, the precision targets draw in, so no target can round p differently.
    keep = u >= np.float32(p)
    scale = np.asarray(1.0 / (1.0 - p)).astype(dt)
    return np.where(keep, scale, np.zeros((), dt)).reshape(n, *sample_shape)
