"""Pick the loader a task's `dataType` calls for."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from disco.client.data.dataset import DataError, Dataset
from disco.client.data.images import load_image_folder
from disco.client.data.tabular import Missing, load_tabular
from disco.tasks.schema import TrainingInformation
from disco.tasks.torch_model import is_torch_topology


def input_channels(model_topology: Mapping[str, Any]) -> int:
    """Channels of an image model's input (last axis of its batch_input_shape), default 3.

    A PyTorch-only model declares its (C, H, W) `input_shape` instead.
    """
    config = model_topology.get("config", {})
    if is_torch_topology(model_topology) and isinstance(config, Mapping):
        shape = config.get("input_shape")
        if isinstance(shape, list) and len(shape) == 3 and isinstance(shape[0], int):
            return int(shape[0])
    layers = config.get("layers", []) if isinstance(config, Mapping) else config
    for layer in layers:
        shape = (layer.get("config") or {}).get("batch_input_shape")
        if isinstance(shape, list) and len(shape) == 4 and isinstance(shape[-1], int):
            return int(shape[-1])
    return 3


IMAGE_NORMALIZE: Final = "normalize"  # DISCO's ImagePreprocessing values
IMAGE_RESIZE: Final = "resize"
log = logging.getLogger(__name__)


def load_task_data(
    info: TrainingInformation,
    path: str | Path,
    model_topology: Mapping[str, Any] | None = None,
    missing: Missing = "error",
    labels_csv: str | Path | None = None,
    resize: bool = True,
) -> Dataset:
    """Load local data for a task: CSV for 'tabular', an image folder for 'image'.

    Images are preprocessed as the task says (`preprocessingFunctions`: "normalize" scales
    pixels to [0, 1], "resize" resizes to IMAGE_H x IMAGE_W), as DISCO's JavaScript client does,
    so every participant feeds the model the same values. Every failure is a DataError naming
    the path, including what the operating system refused (permissions, a folder where a file
    was expected) and files that are not text.
    """
    try:
        return _load_by_type(info, path, model_topology, missing, labels_csv, resize)
    except OSError as error:
        raise DataError(f"{error.filename or path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file") from None


def warn_if_smaller_than_a_batch(dataset: Dataset, info: TrainingInformation, name: str) -> None:
    """A participant with less than one batch of data trains, but should know what it means."""
    batch_size = info.batch_size
    if 0 < len(dataset) < batch_size:
        log.warning(
            "%s: %d sample(s), fewer than one batch (the task's batchSize is %d): every round "
            "trains on these few samples only, and the accuracy shown is measured on them",
            name,
            len(dataset),
            int(batch_size),
        )


def image_size_of(info: TrainingInformation) -> tuple[int, int]:
    """(height, width) of an image task's inputs (the task schema requires both)."""
    size = info.image_size
    if size is None:
        raise DataError("the task has no IMAGE_H/IMAGE_W: cannot size its images")
    return size


def _load_by_type(
    info: TrainingInformation,
    path: str | Path,
    model_topology: Mapping[str, Any] | None,
    missing: Missing,
    labels_csv: str | Path | None,
    resize: bool,
) -> Dataset:
    data_type = info.data_type
    if data_type == "tabular":
        return load_tabular(
            path, info.input_columns or [], info.output_columns or [], missing=missing
        )
    if data_type == "image":
        preprocessing = info.preprocessing_functions or []
        labels = info.label_list
        if not labels:
            raise DataError("the task has no LABEL_LIST: cannot map image labels to classes")
        height, width = image_size_of(info)
        return load_image_folder(
            path,
            height,
            width,
            labels,
            channels=input_channels(model_topology or {}),
            labels_csv=labels_csv,
            resize=resize or IMAGE_RESIZE in preprocessing,
            normalize=IMAGE_NORMALIZE in preprocessing,
        )
    raise DataError(f"data type {data_type!r} is not supported by the Python client")
