"""Deal a dataset to simulated participants: IID, or non-IID by Dirichlet label proportions."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from disco.client.data.dataset import DataError, Dataset
from disco.client.options import OptionsError


def split_iid(data: Dataset, n: int, seed: int = 0) -> list[Dataset]:
    """Shuffle and deal the data into n nearly equal parts."""
    if n < 1 or n > len(data):
        raise DataError(f"cannot split {len(data)} samples among {n} participants")
    order = np.random.default_rng(seed).permutation(len(data))
    return [data.subset(part) for part in np.array_split(order, n)]


def split_dirichlet(
    data: Dataset, n: int, alpha: float, seed: int = 0, min_size: int = 2
) -> list[Dataset]:
    """Non-IID split: each class is spread over participants by Dirichlet(alpha) proportions.

    Small alpha gives each participant few classes. Draws are repeated (bounded) until every
    participant holds at least `min_size` samples.
    """
    if not alpha > 0 or not math.isfinite(alpha):
        raise OptionsError("the Dirichlet alpha must be a positive number")
    if n < 1 or n * min_size > len(data):
        raise DataError(f"cannot split {len(data)} samples among {n} participants")
    labels = data.class_labels()
    rng = np.random.default_rng(seed)
    for _ in range(100):
        parts: list[list[int]] = [[] for _ in range(n)]
        for label in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == label))
            shares = rng.dirichlet(np.full(n, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(members)).astype(int)
            for part, chunk in zip(parts, np.split(members, cuts), strict=True):
                part.extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_size:
            return [data.subset(np.asarray(sorted(p), dtype=np.int64)) for p in parts]
    raise DataError(f"no Dirichlet({alpha}) split gave every participant {min_size} samples")


def parse_split(how: str) -> tuple[str, float | None]:
    """`iid` -> ("iid", None); `dirichlet:ALPHA` -> ("dirichlet", alpha); OptionsError else."""
    if how == "iid":
        return "iid", None
    if how.startswith("dirichlet:"):
        try:
            alpha = float(how.split(":", 1)[1])
        except ValueError:
            raise OptionsError(f"bad split {how!r}: expected dirichlet:ALPHA") from None
        if not alpha > 0 or not math.isfinite(alpha):
            raise OptionsError(f"bad split {how!r}: ALPHA must be a positive number")
        return "dirichlet", alpha
    raise OptionsError(f"unknown split {how!r} (iid or dirichlet:ALPHA)")


def split_data(data: Dataset, n: int, how: str, seed: int = 0) -> list[Dataset]:
    """`iid` or `dirichlet:ALPHA`."""
    kind, alpha = parse_split(how)
    if kind == "iid" or alpha is None:
        return split_iid(data, n, seed)
    return split_dirichlet(data, n, alpha, seed)


def class_counts(parts: Sequence[Dataset]) -> list[npt.NDArray[np.int64]]:
    """Per-participant label histograms (to show how non-IID a split is)."""
    width = max((int(p.class_labels().max()) + 1 for p in parts if len(p)), default=0)
    return [np.bincount(p.class_labels(), minlength=width) for p in parts]


def majority_rate(data: Dataset) -> float:
    """Accuracy of always predicting the most frequent class."""
    counts = np.bincount(data.class_labels())
    return float(counts.max() / counts.sum())
