"""Evaluate a task's model on local labelled data, or predict with it on unlabelled data.

The model is the server's current global model or a local model (a TF.js layers folder or its
model.json, as `disco train --save-model` writes). Classes are the task's: LABEL_LIST for
images, 0/1 for a single sigmoid output, output indices otherwise.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from disco.client.data.dataset import DataError, Dataset
from disco.client.data.images import IMAGE_SUFFIXES, read_image
from disco.client.data.loading import (
    IMAGE_NORMALIZE,
    IMAGE_RESIZE,
    image_size_of,
    input_channels,
)
from disco.client.data.tabular import Missing, load_tabular
from disco.client.model.torch_task import TaskModel
from disco.client.training import LocalTrainer
from disco.tasks.artifacts import ModelArtifacts, read_layers_folder
from disco.tasks.schema import TrainingInformation


@dataclass(frozen=True)
class Evaluation:
    """Loss, accuracy and the confusion matrix (rows: true class, columns: predicted)."""

    samples: int
    loss: float
    accuracy: float
    class_names: list[str]
    confusion: npt.NDArray[np.int64]

    def _correct_share(self, axis: int) -> npt.NDArray[np.float64]:
        totals = self.confusion.sum(axis=axis).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio: npt.NDArray[np.float64] = np.diag(self.confusion) / totals
        return ratio

    @property
    def precision(self) -> npt.NDArray[np.float64]:
        """Per class: correct predictions of it / all predictions of it (NaN if never predicted)."""
        return self._correct_share(axis=0)

    @property
    def recall(self) -> npt.NDArray[np.float64]:
        """Per class: correct predictions of it / its true samples (NaN if it has none)."""
        return self._correct_share(axis=1)

    @property
    def support(self) -> npt.NDArray[np.int64]:
        """Per class: true samples."""
        counts: npt.NDArray[np.int64] = self.confusion.sum(axis=1)
        return counts

    def as_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "loss": self.loss,
            "accuracy": self.accuracy,
            "classes": [
                {
                    "class": name,
                    "support": int(self.support[i]),
                    "precision": _finite_or_none(self.precision[i]),
                    "recall": _finite_or_none(self.recall[i]),
                }
                for i, name in enumerate(self.class_names)
            ],
            "confusion": self.confusion.tolist(),
        }


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


@dataclass(frozen=True)
class Predictions:
    """One prediction per input: its id (file line or image path), class and probabilities."""

    ids: list[str]
    class_names: list[str]
    probabilities: npt.NDArray[np.float32]

    @property
    def labels(self) -> list[str]:
        return [self.class_names[int(i)] for i in predicted_classes(self.probabilities)]

    def write_csv(self, path: str | Path, id_column: str = "id") -> Path:
        """`id,prediction,p(<class>)...` rows."""
        target = Path(path)
        with target.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow([id_column, "prediction", *(f"p({c})" for c in self.class_names)])
            for row_id, label, probs in zip(self.ids, self.labels, self.probabilities, strict=True):
                writer.writerow([row_id, label, *(f"{p:.6f}" for p in probs)])
        return target


def class_names(info: TrainingInformation, outputs: int) -> list[str]:
    """The task's class names for a model with `outputs` output units."""
    labels = info.label_list
    if labels is not None and len(labels) == outputs:
        return list(labels)
    if outputs == 1:
        return ["0", "1"]
    return [str(i) for i in range(outputs)]


def class_probabilities(output: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """One column per class: a single sigmoid output p becomes (1 - p, p)."""
    if output.ndim == 2 and output.shape[1] == 1:
        return np.concatenate([1.0 - output, output], axis=1).astype(np.float32)
    return output.astype(np.float32)


def predicted_classes(probabilities: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
    classes: npt.NDArray[np.int64] = np.argmax(probabilities, axis=1).astype(np.int64)
    return classes


def true_classes(dataset: Dataset) -> npt.NDArray[np.int64]:
    return dataset.class_labels()


@torch.no_grad()
def model_outputs(
    model: TaskModel, x: npt.NDArray[np.float32], batch_size: int = 256
) -> npt.NDArray[np.float32]:
    """The model's outputs for every input, in inference mode."""
    model.eval()
    chunks = [
        model(torch.from_numpy(x[start : start + batch_size])).numpy()
        for start in range(0, len(x), batch_size)
    ]
    if not chunks:
        raise DataError("no samples to run the model on")
    return np.concatenate(chunks).astype(np.float32)


def evaluate(model: TaskModel, info: TrainingInformation, dataset: Dataset) -> Evaluation:
    """Loss (the task's), accuracy and confusion matrix of `model` on `dataset`."""
    metrics = LocalTrainer(model, info).evaluate(dataset)
    outputs = model_outputs(model, dataset.x)
    probabilities = class_probabilities(outputs)
    names = class_names(info, outputs.shape[1])
    n = len(names)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (true_classes(dataset), predicted_classes(probabilities)), 1)
    return Evaluation(len(dataset), metrics.loss, metrics.accuracy, names, confusion)


def predict(model: TaskModel, info: TrainingInformation, inputs: Dataset) -> Predictions:
    """Class probabilities for every input (ids: file lines or image paths)."""
    outputs = model_outputs(model, inputs.x)
    probabilities = class_probabilities(outputs)
    names = class_names(info, outputs.shape[1])
    ids = list(inputs.ids) if inputs.ids is not None else [str(i) for i in range(len(inputs))]
    return Predictions(ids, names, probabilities)


def load_inputs(
    info: TrainingInformation,
    path: str | Path,
    model_topology: Mapping[str, Any],
    missing: Missing = "error",
    resize: bool = True,
) -> Dataset:
    """Unlabelled inputs: a CSV's input columns, or every image under a folder."""
    data_type = info.data_type
    if data_type == "tabular":
        return load_tabular(path, info.input_columns or [], [], missing=missing)
    if data_type == "image":
        folder = Path(path)
        files = sorted(
            p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not files:
            raise DataError(f"{folder}: no images found")
        preprocessing = info.preprocessing_functions or []
        height, width = image_size_of(info)
        channels = input_channels(model_topology)
        x = np.stack(
            [
                read_image(
                    file,
                    height,
                    width,
                    channels,
                    resize or IMAGE_RESIZE in preprocessing,
                    IMAGE_NORMALIZE in preprocessing,
                )
                for file in files
            ]
        )
        ids = tuple(str(file.relative_to(folder)) for file in files)
        return Dataset(x, np.zeros(len(files), dtype=np.int64), ids=ids)
    raise DataError(f"data type {data_type!r} is not supported by the Python client")


def read_local_model(path: str | Path) -> ModelArtifacts:
    """A local model: a TF.js layers folder (model.json + weights) or its model.json."""
    target = Path(path)
    if target.is_file():
        return read_layers_folder(target.parent, target.name)
    if not (target / "model.json").is_file():
        raise DataError(f"{target}: no model.json (expected a TF.js layers model folder)")
    return read_layers_folder(target)


def describe_classes(evaluation: Evaluation) -> Sequence[tuple[str, int, float, float]]:
    """(class, support, precision, recall) rows."""
    return [
        (name, int(evaluation.support[i]), evaluation.precision[i], evaluation.recall[i])
        for i, name in enumerate(evaluation.class_names)
    ]
