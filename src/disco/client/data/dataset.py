"""An in-memory labelled dataset, with the splits simulations and validation need."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from disco.errors import DiscoError


class DataError(DiscoError, ValueError):
    """Local data that does not fit the task; the message says which file, row or column."""


@dataclass(frozen=True)
class Dataset:
    """Inputs `x` (float32, TF.js layout: [n, features] or [n, H, W, C]) and targets `y`.

    `y` is float32 [n, outputs] for regression/binary tasks, or int64 class indices [n] for
    classification over `num_classes` classes.
    """

    x: npt.NDArray[np.float32]
    y: npt.NDArray[np.float32] | npt.NDArray[np.int64]
    num_classes: int | None = None
    ids: tuple[str, ...] | None = None  # where each sample comes from (file line, image path)

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise DataError(f"{len(self.x)} inputs but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, indices: npt.NDArray[np.int64]) -> Dataset:
        ids = None if self.ids is None else tuple(self.ids[int(i)] for i in indices)
        return Dataset(self.x[indices], self.y[indices], self.num_classes, ids)

    def split(self, fraction: float, seed: int = 0) -> tuple[Dataset, Dataset]:
        """Shuffle and cut: the first part holds `1 - fraction`, the second `fraction`."""
        if not 0.0 <= fraction < 1.0:
            raise ValueError("the split fraction must be in [0, 1)")
        order = np.random.default_rng(seed).permutation(len(self))
        cut = len(self) - round(len(self) * fraction)
        return self.subset(order[:cut]), self.subset(order[cut:])

    def class_labels(self) -> npt.NDArray[np.int64]:
        """Integer labels for partitioning (binary targets are thresholded at 0.5)."""
        if self.y.ndim == 1:
            return self.y.astype(np.int64)
        if self.y.shape[1] == 1:
            return (self.y[:, 0] >= 0.5).astype(np.int64)
        labels: npt.NDArray[np.int64] = np.argmax(self.y, axis=1).astype(np.int64)
        return labels
