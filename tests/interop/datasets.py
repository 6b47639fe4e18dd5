"""Titanic-like CSV files for the interop tests: the real ones when `../shared` has them, else
deterministic generated ones with the same columns and a learnable signal.

The 2.1.1 client's titanic task reads `PassengerId, Age, SibSp, Parch, Fare, Pclass` and predicts
`Survived`; an empty `Age` cell becomes NaN in its tensors, which makes its weights NaN after one
batch (the reason the real `titanic_train.csv` is "poisoned" and `titanic_train_filled.csv` is not).
"""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path

HEADER = (
    "PassengerId", "Survived", "Pclass", "Name", "Sex", "Age",
    "SibSp", "Parch", "Ticket", "Fare", "Cabin", "Embarked",
)  # fmt: skip

SHARED_DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
SHARED_FILLED = SHARED_DATASETS / "titanic_train_filled.csv"
SHARED_UNFILLED = SHARED_DATASETS / "titanic_train.csv"


def titanic_rows(count: int, seed: int = 0, missing_age_every: int = 0) -> list[list[str]]:
    """`count` passenger rows; survival depends on class, age and sex through a logistic model.

    With `missing_age_every = k > 0`, every k-th row (the first one included) has an empty Age.
    """
    rng = random.Random(seed)
    rows: list[list[str]] = []
    for index in range(count):
        pclass = rng.choice((1, 2, 3))
        sex = rng.choice(("male", "female"))
        age = round(rng.uniform(1.0, 70.0), 1)
        fare = round({1: 80.0, 2: 25.0, 3: 9.0}[pclass] * rng.uniform(0.5, 1.5), 4)
        logit = 1.6 * (2 - pclass) - 0.05 * (age - 30) + (1.5 if sex == "female" else -1.0)
        survived = int(rng.random() < 1 / (1 + math.exp(-logit)))
        blank_age = missing_age_every > 0 and index % missing_age_every == 0
        rows.append([
            str(index + 1), str(survived), str(pclass), f"Passenger, Mr. Number {index + 1}", sex,
            "" if blank_age else f"{age:g}", str(rng.randint(0, 3)), str(rng.randint(0, 2)),
            f"T {1000 + index}", f"{fare:g}", "", rng.choice("SCQ"),
        ])  # fmt: skip
    return rows


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    """Write `rows` under the titanic header (quoted where needed, as Kaggle's file is)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


def read_rows(path: Path) -> list[list[str]]:
    """Data rows of a titanic CSV (header checked, dropped)."""
    with path.open(newline="", encoding="utf-8") as src:
        reader = csv.reader(src)
        header = tuple(next(reader))
        if header != HEADER:
            raise ValueError(f"{path}: unexpected header {header}")
        return [row for row in reader if row]


def good_shards(out_dir: Path, parts: int, rows: int = 900) -> list[Path]:
    """`parts` disjoint CSV files without missing values, one per client.

    From `../shared/datasets/titanic_train_filled.csv` when present, generated otherwise.
    """
    source = read_rows(SHARED_FILLED) if SHARED_FILLED.is_file() else titanic_rows(rows, seed=1)
    return [write_csv(out_dir / f"titanic-part{i}.csv", source[i::parts]) for i in range(parts)]


def nan_csv(out_dir: Path, rows: int = 200) -> Path:
    """A CSV with empty Age cells (NaN for the client): the real unfilled file when present."""
    if SHARED_UNFILLED.is_file():
        return SHARED_UNFILLED
    return write_csv(out_dir / "titanic-missing-age.csv", titanic_rows(rows, 2, 5))
