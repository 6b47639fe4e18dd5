"""Image folders: a label per sub-folder, or a labels CSV; resized to the task's size."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from disco.client.data.dataset import DataError, Dataset

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


def read_image(
    path: Path, height: int, width: int, channels: int, resize: bool, normalize: bool
) -> npt.NDArray[np.float32]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            converted = image.convert("L" if channels == 1 else "RGB")
            if converted.size != (width, height):
                if not resize:
                    raise DataError(
                        f"{path.name}: image is {converted.size[0]}x{converted.size[1]}, "
                        f"the task expects {width}x{height}"
                    )
                converted = converted.resize((width, height), Image.Resampling.BILINEAR)
            array = np.asarray(converted, dtype=np.float32)
            if normalize:
                array /= 255.0
    except (UnidentifiedImageError, OSError) as error:
        raise DataError(f"{path.name}: not a readable image ({error})") from None
    return array.reshape(height, width, channels)


def _labels_from_csv(labels_csv: Path, folder: Path) -> list[tuple[Path, str]]:
    pairs: list[tuple[Path, str]] = []
    with labels_csv.open(newline="", encoding="utf-8-sig") as handle:
        for line, row in enumerate(csv.reader(handle), start=1):
            if not row:
                continue
            if len(row) < 2:
                raise DataError(f"{labels_csv.name}, line {line}: expected 'file,label'")
            name, label = row[0].strip(), row[1].strip()
            candidates = [folder / name] + [folder / f"{name}{s}" for s in sorted(IMAGE_SUFFIXES)]
            found = next((c for c in candidates if c.is_file()), None)
            if found is None:
                if line == 1:
                    continue  # a header row (e.g. 'file_name,class'): it names no image
                raise DataError(f"{labels_csv.name}, line {line}: no image {name!r} in {folder}")
            pairs.append((found, label))
    return pairs


def load_image_folder(
    path: str | Path,
    height: int,
    width: int,
    label_list: Sequence[str],
    channels: int = 3,
    labels_csv: str | Path | None = None,
    resize: bool = True,
    normalize: bool = True,
) -> Dataset:
    """Images under `path`: either one sub-folder per label, or files listed in `labels_csv`.

    `labels_csv` rows are `file_name,label` (the file name with or without its extension; a
    header row is skipped). Images are resized to height×width (with `resize=False` another size
    is an error) and, with `normalize`, pixels scaled from 0..255 to [0, 1]; labels become
    indices into `label_list` (the task's LABEL_LIST).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    if labels_csv is not None:
        pairs = _labels_from_csv(Path(labels_csv), folder)
    else:
        pairs = [
            (file, sub.name)
            for sub in sorted(p for p in folder.iterdir() if p.is_dir())
            for file in sorted(sub.iterdir())
            if file.suffix.lower() in IMAGE_SUFFIXES
        ]
    if not pairs:
        hint = (
            "its labels file lists none"
            if labels_csv
            else (
                "expected one sub-folder per label, or a labels CSV (file_name,label) given with "
                "labels_csv / --labels"
            )
        )
        raise DataError(f"{folder}: no images found ({hint})")
    index = {str(label): i for i, label in enumerate(label_list)}
    unknown = sorted({label for _, label in pairs if label not in index})
    if unknown:
        raise DataError(
            f"{folder}: label(s) {', '.join(map(repr, unknown))} are not in the task's "
            f"LABEL_LIST ({', '.join(label_list)})"
        )
    x = np.stack(
        [read_image(file, height, width, channels, resize, normalize) for file, _ in pairs]
    )
    y = np.asarray([index[label] for _, label in pairs], dtype=np.int64)
    return Dataset(x, y, num_classes=len(label_list))
