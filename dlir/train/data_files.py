"""Readers for the user's own data: ``PATH.csv`` tables and folders of class images.

They return plain arrays (float32 features or images, int64 class ids) and leave
the train/test split to :func:`dlir.train.data.load_dataset`. Every mistake in the
data is a :class:`~dlir.errors.UsageError` that names the file, raised before any
training starts; nothing is written to disk.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlir.errors import UsageError, did_you_mean

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


# -- class ids --------------------------------------------------------------------------------


def int_labels(values: np.ndarray, what: str) -> np.ndarray:
    """``values`` as int64 class ids ``[N]``; a UsageError unless they are whole numbers >= 0.

    Args:
        values: the labels as read (any int, bool or float dtype).
        what: how the error names them, e.g. ``"y in 'data.npz'"``.

    Returns:
        The labels as an int64 array.
    """
    if values.dtype.kind == "f":
        bad = ~np.isfinite(values) | (values != np.round(values))
        if bad.any():
            raise UsageError(
                f"{what} must be integer class ids, but it holds {float(values[bad][0])}",
                hint="labels are class ids 0, 1, ..., classes-1",
            )
    elif values.dtype.kind not in "iub":
        raise UsageError(f"{what} has dtype {values.dtype}: expected integer class ids")
    y = values.astype(np.int64)
    if y.size and y.min() < 0:
        raise UsageError(
            f"{what} has a negative class id ({y.min()})", hint="labels are class ids 0, 1, ..., classes-1"
        )
    return y


# -- csv ---------------------------------------------------------------------------------------


def read_csv(path: Path, label_column: str | int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A table of numbers: float32 features ``[N, F]`` and int64 labels ``[N]`` from one column.

    The first row is a header when any of its cells is not a number. Blank
    lines are skipped; cells are separated by commas.

    Args:
        path: the ``.csv`` file.
        label_column: the labels' column: a header name, or an index (negative
            counts from the end); default the last column.

    Returns:
        ``(x, y)``.
    """
    rows = _csv_rows(path)
    header = None
    if rows and not all(_is_number(c) for c in rows[0][1]):
        header = [c.strip() for c in rows[0][1]]
        rows = rows[1:]
    if not rows:
        raise UsageError(f"'{path}' has no data rows")
    width = len(header) if header is not None else len(rows[0][1])
    for line, cells in rows:
        if len(cells) != width:
            raise UsageError(f"'{path}' line {line} has {len(cells)} cells, but the table has {width} columns")
    if width < 2:
        raise UsageError(f"'{path}' has one column only: it needs feature columns and a label column")
    col = _label_index(path, label_column, header, width)
    values = _numbers(path, rows, header)
    col_name = f"'{header[col]}'" if header is not None else str(col)
    y = int_labels(values[:, col], f"the label column {col_name} of '{path}'")
    x = np.delete(values, col, axis=1).astype(np.float32)
    if not np.isfinite(x).all():
        raise UsageError(f"the features in '{path}' hold NaN or infinite values")
    return x, y


def _csv_rows(path: Path) -> list[tuple[int, list[str]]]:
    """The non-blank rows with their 1-based line numbers."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return [(i, r) for i, r in enumerate(csv.reader(fh), start=1) if any(c.strip() for c in r)]
    except UnicodeDecodeError:
        raise UsageError(f"cannot read '{path}' as csv: it is not UTF-8 text") from None
    except csv.Error as e:
        raise UsageError(f"cannot read '{path}' as csv: {e}") from None
    except OSError as e:
        raise UsageError(f"cannot read '{path}': {e.strerror}") from None


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _label_index(path: Path, label_column: str | int | None, header: list[str] | None, width: int) -> int:
    """The index of the label column, from a name, an index or the default (the last)."""
    if label_column is None:
        return width - 1
    if isinstance(label_column, str) and header is not None and label_column in header:
        return header.index(label_column)
    try:
        index = int(label_column)
    except ValueError:
        if header is None:
            raise UsageError(
                f"--label-column '{label_column}' names a column, but '{path}' has no header row",
                hint=f"give the column's index (0..{width - 1})",
            ) from None
        raise UsageError(
            f"--label-column '{label_column}': '{path}' has no such column",
            hint=did_you_mean(str(label_column), header) or "its columns: " + ", ".join(header),
        ) from None
    if not -width <= index < width:
        raise UsageError(f"--label-column {index} is out of range: '{path}' has {width} columns (0..{width - 1})")
    return index % width


def _numbers(path: Path, rows: list[tuple[int, list[str]]], header: list[str] | None) -> np.ndarray:
    """The cells as float64 ``[N, columns]``; a UsageError naming the first cell that is not a number."""
    try:
        return np.array([cells for _, cells in rows], dtype=np.float64)
    except ValueError:
        pass  # find the culprit for the message (slow, but only on the error path)
    for line, cells in rows:
        for j, cell in enumerate(cells):
            if not _is_number(cell):
                name = f" ('{header[j]}')" if header is not None else ""
                raise UsageError(f"'{path}' line {line}, column {j}{name}: {cell!r} is not a number")
    raise AssertionError("numpy refused a table whose every cell parses as a float")


# -- image folders -----------------------------------------------------------------------------


@dataclass
class ImageFolder:
    """The images of a class-folder tree: float32 ``[N, C, H, W]`` in [0, 1] and int64 labels."""

    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    class_names: list[str]


def read_image_folder(root: Path) -> ImageFolder:
    """A folder with one subfolder of images per class (torchvision ``ImageFolder`` layout).

    Classes are the subfolders sorted by name; a class's label is its index in
    that order. With ``train/`` and ``test/`` subfolders, each is such a tree
    (with the same class names) and gives the split. Images (.png, .jpg, .jpeg,
    in any case, found recursively; hidden files skipped) must all have one size.
    Grey images give C = 1; when any image has colour all become RGB (C = 3).

    Args:
        root: the folder.

    Returns:
        The images, with ``x_test``/``y_test`` None unless the folder has ``train/`` and ``test/``.
    """
    train, test = root / "train", root / "test"
    if train.is_dir() != test.is_dir():
        have, lack = ("train", "test") if train.is_dir() else ("test", "train")
        raise UsageError(
            f"folder '{root}' has {have}/ but no {lack}/",
            hint=f"add {lack}/ with the same class subfolders, or put the class subfolders directly in '{root}'",
        )
    if not train.is_dir():
        names = _class_names(root)
        files, y = _class_files(root, names)
        return ImageFolder(load_images(files), y, None, None, names)
    names = _class_names(train)
    test_names = _class_names(test)
    if test_names != names:
        only_train = sorted(set(names) - set(test_names))
        only_test = sorted(set(test_names) - set(names))
        raise UsageError(
            f"'{train}' and '{test}' have different classes: only in train/: {', '.join(only_train) or 'none'}; "
            f"only in test/: {', '.join(only_test) or 'none'}",
            hint="both need one subfolder per class, with the same names",
        )
    files, y = _class_files(train, names)
    test_files, y_test = _class_files(test, names)
    # One load, so that sizes and colour are checked (and made to agree) across both splits.
    x = load_images(files + test_files)
    return ImageFolder(x[: len(files)], y, x[len(files) :], y_test, names)


def _class_names(folder: Path) -> list[str]:
    # Hidden folders (.ipynb_checkpoints, .git) are never classes.
    names = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not names:
        raise UsageError(
            f"folder '{folder}' has no class subfolders",
            hint=f"put the images of each class in a subfolder: {folder}/cat/1.png, {folder}/dog/2.png, ...",
        )
    return names


def _class_files(folder: Path, names: list[str]) -> tuple[list[Path], np.ndarray]:
    """The image files of each class, in a fixed order, and their labels."""
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(names):
        found = sorted(
            p
            for p in (folder / name).rglob("*")
            # Hidden files include macOS's "._x.png" resource forks, which are not images.
            if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
        )
        if not found:
            raise UsageError(f"class folder '{folder / name}' has no images ({', '.join(IMAGE_SUFFIXES)})")
        files += found
        labels += [label] * len(found)
    return files, np.array(labels, dtype=np.int64)


def load_images(files: list[Path]) -> np.ndarray:
    """The images as float32 ``[N, C, H, W]`` in [0, 1] (pixels / 255), all of one size.

    Args:
        files: image files Pillow reads (PNG, JPEG).

    Returns:
        C = 1 when every image is grey, else 3 (grey ones repeated into RGB).
    """
    image_mod = _pillow()
    pixels: list[np.ndarray] = []
    first: tuple[Path, tuple[int, int]] | None = None
    for f in files:
        size, a = _read_image(image_mod, f)
        if first is None:
            first = (f, size)
        elif size != first[1]:
            raise UsageError(
                f"images differ in size: '{f}' is {size[0]}x{size[1]}, but '{first[0]}' is {first[1][0]}x{first[1][1]}",
                hint="all images must have one size (width x height); dlir does not resize them",
            )
        pixels.append(a)
    if any(a.ndim == 3 for a in pixels):
        pixels = [a if a.ndim == 3 else np.repeat(a[:, :, None], 3, axis=2) for a in pixels]
    else:
        pixels = [a[:, :, None] for a in pixels]
    # Stacked as uint8 and converted once: a cast per image is several times slower.
    return np.stack(pixels).transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)


def _read_image(image_mod: Any, f: Path) -> tuple[tuple[int, int], np.ndarray]:
    """``((width, height), uint8 [H, W] for grey or [H, W, 3])``; a UsageError naming a file Pillow cannot read."""
    try:
        with image_mod.open(f) as im:
            im.load()
            if im.mode in ("1", "LA"):  # grey modes: keep one channel
                im = im.convert("L")
            elif im.mode != "L":  # P, RGBA, CMYK, ...: as RGB, as torchvision's loader does
                im = im.convert("RGB")
            return im.size, np.asarray(im, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, image_mod.DecompressionBombError) as e:
        raise UsageError(f"cannot read image '{f}': {e}", hint="remove or replace the broken file") from None


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise UsageError("image folders need Pillow", hint="pip install pillow") from None
    return Image


__all__ = ["IMAGE_SUFFIXES", "ImageFolder", "int_labels", "load_images", "read_csv", "read_image_folder"]
