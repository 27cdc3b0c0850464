"""dlir.train.threefry: the cipher against published answers, and the keying of uniforms and dropout masks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dlir.train.threefry import dropout_mask, threefry2x32, uniform

# Random123 kat_vectors (threefry2x32, 20 rounds) and JAX's threefry_2x32 tests: (key, counter, output).
KAT = [
    ((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
]
IDX = np.arange(10, dtype=np.int64)


@pytest.mark.parametrize(("key", "ctr", "out"), KAT)
def test_threefry_known_answers(key: tuple[int, int], ctr: tuple[int, int], out: tuple[int, int]) -> None:
    x0, x1 = threefry2x32(*key, *ctr)
    assert (int(x0), int(x1)) == out
    assert x0.dtype == x1.dtype == np.uint32
    x0, x1 = threefry2x32(*(np.uint32(v) for v in (*key, *ctr)))
    assert (int(x0), int(x1)) == out


def test_threefry_known_answers_in_one_vectorised_call() -> None:
    k0, k1, c0, c1, y0, y1 = (np.array(col, np.uint32) for col in zip(*(k + c + o for k, c, o in KAT)))
    x0, x1 = threefry2x32(k0, k1, c0, c1)
    np.testing.assert_array_equal(x0, y0)
    np.testing.assert_array_equal(x1, y1)


def test_threefry_vectorised_equals_element_by_element() -> None:
    rng = np.random.default_rng(0)
    k0, k1, c0, c1 = rng.integers(0, 2**32, size=(4, 200), dtype=np.uint64).astype(np.uint32)
    x0, x1 = threefry2x32(k0, k1, c0, c1)
    for i in range(200):
        e0, e1 = threefry2x32(int(k0[i]), int(k1[i]), int(c0[i]), int(c1[i]))
        assert (int(x0[i]), int(x1[i])) == (int(e0), int(e1))


def test_threefry_broadcasts_a_scalar_key_over_counters() -> None:
    c1 = np.arange(12, dtype=np.uint32).reshape(3, 4)
    x0, x1 = threefry2x32(7, 9, 0, c1)
    assert x0.shape == x1.shape == (3, 4)
    e0, e1 = threefry2x32(np.full(12, 7), np.full(12, 9), np.zeros(12, np.int64), c1.ravel())
    np.testing.assert_array_equal(x0.ravel(), e0)
    np.testing.assert_array_equal(x1.ravel(), e1)
    assert len(set(x0.ravel().tolist())) == 12


def test_threefry_rejects_words_outside_uint32() -> None:
    with pytest.raises(ValueError, match="key0"):
        threefry2x32(-1, 0, 0, 0)
    with pytest.raises(ValueError, match="ctr1"):
        threefry2x32(0, 0, 0, 2**32)
    with pytest.raises(TypeError, match="ctr0"):
        threefry2x32(0, 0, 0.5, 0)


def test_uniform_follows_the_documented_keying() -> None:
    seed, step, site, per_sample = 2**32 + 11, 5, 3, 7
    idx = np.array([0, 4, 123], np.int64)
    u = uniform(seed, step, site, idx, per_sample)
    assert u.shape == (3, 7) and u.dtype == np.float32
    half = math.ceil(per_sample / 2)
    for row, i in enumerate(idx):
        for e in range(per_sample):
            x = threefry2x32(11, site, step, int(i) * half + e // 2)[e % 2]
            assert u[row, e] == np.float32((int(x) >> 8) * 2.0**-24)


def test_uniform_values_are_24_bit_fractions_in_unit_interval() -> None:
    u = uniform(0, 0, 0, np.arange(1000, dtype=np.int64), 100)
    assert u.min() >= 0.0 and u.max() < 1.0
    k = u.astype(np.float64) * 2**24
    np.testing.assert_array_equal(k, np.round(k))


def test_uniform_does_not_depend_on_batch_composition() -> None:
    whole = uniform(42, 7, 1, IDX, 9)
    np.testing.assert_array_equal(whole, np.concatenate([uniform(42, 7, 1, IDX[:5], 9), uniform(42, 7, 1, IDX[5:], 9)]))
    perm = np.random.default_rng(1).permutation(10)
    shuffled = uniform(42, 7, 1, IDX[perm], 9)
    np.testing.assert_array_equal(shuffled[np.argsort(perm)], whole)
    np.testing.assert_array_equal(uniform(42, 7, 1, np.array([6]), 9)[0], whole[6])


def test_uniform_streams_differ_by_seed_step_site_and_sample() -> None:
    base = uniform(1, 2, 3, IDX, 16)
    for other in (uniform(2, 2, 3, IDX, 16), uniform(1, 3, 3, IDX, 16), uniform(1, 2, 4, IDX, 16)):
        assert np.mean(other == base) < 0.01
    assert np.mean(base[0] == base[1]) < 0.1
    np.testing.assert_array_equal(uniform(-1, 2, 3, IDX, 16), uniform(2**32 - 1, 2, 3, IDX, 16))


def test_uniform_is_roughly_uniform() -> None:
    u = uniform(123, 0, 0, np.arange(1000, dtype=np.int64), 100)
    assert abs(float(u.mean()) - 0.5) < 0.01
    hist, _ = np.histogram(u, bins=10, range=(0.0, 1.0))
    assert np.all(np.abs(hist / u.size - 0.1) < 0.01)


def test_uniform_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="1-D integer"):
        uniform(0, 0, 0, np.zeros((2, 2), np.int64), 4)
    with pytest.raises(ValueError, match=">= 0"):
        uniform(0, 0, 0, np.array([-1]), 4)
    with pytest.raises(ValueError, match="2\\*\\*32"):
        uniform(0, 0, 0, np.array([2**31]), 4)
    with pytest.raises(ValueError, match="step"):
        uniform(0, 2**32, 0, IDX, 4)
    with pytest.raises(ValueError, match="site"):
        uniform(0, 0, -1, IDX, 4)
    with pytest.raises(ValueError, match="per_sample"):
        uniform(0, 0, 0, IDX, -1)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_mask_keeps_about_one_minus_p(p: float) -> None:
    m = dropout_mask(9, 1, 0, np.arange(1000, dtype=np.int64), (10, 10), p, np.float32)
    assert m.shape == (1000, 10, 10) and m.dtype == np.float32
    scale = np.float32(1.0 / (1.0 - p))
    assert set(np.unique(m).tolist()) == {0.0, float(scale)}
    assert abs(float(np.mean(m != 0)) - (1.0 - p)) < 0.01
    u = uniform(9, 1, 0, np.arange(1000, dtype=np.int64), 100).reshape(m.shape)
    np.testing.assert_array_equal(m != 0, u >= np.float32(p))


def _mask_dtypes() -> list[object]:
    dtypes: list[object] = [np.float16, np.float32, np.float64]
    try:
        import ml_dtypes
    except ImportError:
        return dtypes
    return [*dtypes, ml_dtypes.bfloat16]


@pytest.mark.parametrize("dtype", _mask_dtypes())
def test_dropout_mask_values_in_each_dtype(dtype: object) -> None:
    p = 0.3
    m = dropout_mask(5, 2, 1, IDX, (3, 4), p, dtype)
    assert m.shape == (10, 3, 4) and m.dtype == np.dtype(dtype)
    kept = m != 0
    assert 0 < kept.sum() < kept.size
    np.testing.assert_array_equal(m[kept].astype(np.float64), float(np.asarray(1.0 / (1.0 - p)).astype(dtype)))
    np.testing.assert_array_equal(kept, dropout_mask(5, 2, 1, IDX, (3, 4), p, np.float32) != 0)


def test_dropout_mask_does_not_depend_on_batch_composition() -> None:
    whole = dropout_mask(3, 4, 2, IDX, (2, 5), 0.5, np.float32)
    halves = [dropout_mask(3, 4, 2, part, (2, 5), 0.5, np.float32) for part in (IDX[:5], IDX[5:])]
    np.testing.assert_array_equal(whole, np.concatenate(halves))
    perm = np.random.default_rng(2).permutation(10)
    np.testing.assert_array_equal(dropout_mask(3, 4, 2, IDX[perm], (2, 5), 0.5, np.float32)[np.argsort(perm)], whole)
    assert not np.array_equal(whole, dropout_mask(3, 4, 3, IDX, (2, 5), 0.5, np.float32))


def test_dropout_mask_p_zero_keeps_everything() -> None:
    m = dropout_mask(0, 0, 0, IDX, (7,), 0.0, np.float64)
    np.testing.assert_array_equal(m, np.ones((10, 7)))


@pytest.mark.parametrize("p", [1.0, 1.5, -0.1])
def test_dropout_mask_rejects_p_outside_unit_interval(p: float) -> None:
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
        dropout_mask(0, 0, 0, IDX, (4,), p, np.float32)


def test_dropout_mask_rejects_integer_dtype() -> None:
    with pytest.raises(ValueError, match="floating point"):
        dropout_mask(0, 0, 0, IDX, (4,), 0.5, np.int32)
