"""Data that works offline, for simulations and tests: no download, deterministic.

- `titanic_like(n, seed)`: a CSV table with the real Titanic column names and a learnable
  survival signal in the columns DISCO's titanic task uses.
- `digits_as_mnist()`: scikit-learn's bundled 8×8 digits, upsampled to MNIST's 28×28×1.
"""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import numpy as np

from disco.client.data.dataset import DataError, Dataset
from disco.client.data.tabular import load_tabular
from disco.tasks.schema import Task

TITANIC_COLUMNS = [
    "PassengerId",
    "Survived",
    "Pclass",
    "Name",
    "Sex",
    "Age",
    "SibSp",
    "Parch",
    "Ticket",
    "Fare",
    "Cabin",
    "Embarked",
]


def titanic_like_rows(n: int = 891, seed: int = 0, missing_age: float = 0.0) -> list[list[str]]:
    """Rows shaped like titanic_train.csv; survival is driven by class, fare, age and family.

    With `missing_age` > 0 that fraction of Age cells is left empty, as in the real file.
    """
    rng = np.random.default_rng(seed)
    pclass = rng.choice([1, 2, 3], size=n, p=[0.24, 0.21, 0.55])
    sex = rng.choice(["male", "female"], size=n, p=[0.65, 0.35])
    age = np.clip(rng.normal(30, 13, size=n), 0.5, 80).round(1)
    sibsp = rng.choice([0, 1, 2, 3], size=n, p=[0.68, 0.23, 0.06, 0.03])
    parch = rng.choice([0, 1, 2], size=n, p=[0.76, 0.13, 0.11])
    fare = np.round(
        np.where(
            pclass == 1,
            rng.gamma(4, 20, n),
            np.where(pclass == 2, rng.gamma(4, 5, n), rng.gamma(3, 3, n)),
        ),
        4,
    )
    logit = (
        1.8 * (pclass == 1)
        + 0.7 * (pclass == 2)
        - 1.2
        + 0.012 * fare
        - 0.035 * (age - 30)
        - 0.4 * (sibsp >= 2)
    )
    survived = (rng.uniform(size=n) < 1 / (1 + np.exp(-2.0 * logit))).astype(int)
    rows = []
    for i in range(n):
        age_cell = "" if rng.uniform() < missing_age else f"{age[i]:g}"
        rows.append(
            [
                str(i + 1),
                str(survived[i]),
                str(pclass[i]),
                f"Passenger, Mx. Number{i + 1}",
                str(sex[i]),
                age_cell,
                str(sibsp[i]),
                str(parch[i]),
                f"T{rng.integers(1000, 99999)}",
                f"{fare[i]:g}",
                "",
                str(rng.choice(["S", "C", "Q"])),
            ]
        )
    return rows


def titanic_like_csv(n: int = 891, seed: int = 0, missing_age: float = 0.0) -> str:
    """The CSV text of `titanic_like_rows`, with the header."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(TITANIC_COLUMNS)
    writer.writerows(titanic_like_rows(n, seed, missing_age))
    return buffer.getvalue()


def write_titanic_like(
    path: str | Path, n: int = 891, seed: int = 0, missing_age: float = 0.0
) -> Path:
    """Write a titanic-like CSV file and return its path."""
    target = Path(path)
    target.write_text(titanic_like_csv(n, seed, missing_age), encoding="utf-8")
    return target


def digits_as_mnist() -> Dataset:
    """scikit-learn's digits (1,797 images, bundled with the package), as 28×28×1 in [0, 1]."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:  # pragma: no cover - sklearn is part of the client extra
        raise DataError("scikit-learn is needed for the built-in digits data") from None
    import torch
    import torch.nn.functional as F

    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    resized = F.interpolate(images, size=(28, 28), mode="bilinear", align_corners=False)
    x = resized.permute(0, 2, 3, 1).contiguous().numpy().astype(np.float32)
    return Dataset(x, digits.target.astype(np.int64), num_classes=10)


def builtin_dataset(task: Task) -> Dataset:
    """Offline data for a default task, or DataError when there is none."""
    info = task.training_information
    if info.data_type == "tabular" and task.task_id == "titanic":
        with tempfile.TemporaryDirectory() as folder:
            path = write_titanic_like(Path(folder) / "titanic.csv")
            return load_tabular(path, info.input_columns or [], info.output_columns or [])
    if info.data_type == "image" and task.task_id == "mnist":
        return digits_as_mnist()
    raise DataError(f"no built-in data for task {task.task_id!r}: pass --data PATH")
