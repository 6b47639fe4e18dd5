"""Tabular and image loaders: right arrays, and one clear error per kind of bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from disco.client.data import DataError, load_image_folder, load_tabular
from disco.simulation.builtin_data import digits_as_mnist, titanic_like_csv, write_titanic_like
from disco.simulation.splits import split_dirichlet, split_iid
from support.tasks import make_task

SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets"
INPUTS = ["PassengerId", "Age", "SibSp", "Parch", "Fare", "Pclass"]


def test_titanic_like_loads_with_task_columns(tmp_path: Path) -> None:
    path = write_titanic_like(tmp_path / "t.csv", n=50, seed=1)
    data = load_tabular(path, INPUTS, ["Survived"])
    assert data.x.shape == (50, 6) and data.y.shape == (50, 1)
    assert data.x.dtype == np.float32
    assert set(np.unique(data.y)) <= {0.0, 1.0}
    assert titanic_like_csv(n=5, seed=3) == titanic_like_csv(n=5, seed=3)


def test_missing_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("PassengerId,Age\n1,2\n")
    with pytest.raises(DataError, match=r"missing column.*'Survived'"):
        load_tabular(path, ["PassengerId", "Age"], ["Survived"])


def test_non_numeric_cell_is_located(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,2\n3,x\n")
    with pytest.raises(DataError, match=r"line 3, column 'b': 'x' is not a number"):
        load_tabular(path, ["a"], ["b"])


def test_empty_cells_error_drop_or_mean(tmp_path: Path) -> None:
    path = write_titanic_like(tmp_path / "t.csv", n=200, seed=2, missing_age=0.2)
    with pytest.raises(DataError, match=r"empty cells.*'Age'"):
        load_tabular(path, INPUTS, ["Survived"])
    dropped = load_tabular(path, INPUTS, ["Survived"], missing="drop")
    filled = load_tabular(path, INPUTS, ["Survived"], missing="mean")
    assert len(dropped) < 200 and len(filled) == 200
    assert np.isfinite(filled.x).all()


def test_wrong_cell_count_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b,c\n1,2,3\n4,5\n")
    with pytest.raises(DataError, match=r"line 3: 2 fields, the header has 3"):
        load_tabular(path, ["a"], ["b"])


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/datasets is not present")
def test_real_malformed_titanic_files() -> None:
    with pytest.raises(DataError, match=r"missing column.*'PassengerId'"):
        load_tabular(SHARED / "titanic_wrong_passengerID.csv", INPUTS, ["Survived"])
    # One column short (no Embarked), but every column the task uses is there: it loads.
    assert len(load_tabular(SHARED / "titanic_wrong_number_columns.csv", INPUTS, ["Survived"])) == 1
    with pytest.raises(DataError, match=r"empty cells"):
        load_tabular(SHARED / "titanic_train.csv", INPUTS, ["Survived"])
    assert len(load_tabular(SHARED / "titanic_train_filled.csv", INPUTS, ["Survived"])) == 891


def _write_png(path: Path, size: tuple[int, int], color: tuple[int, int, int]) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def test_image_folder_per_label(tmp_path: Path) -> None:
    _write_png(tmp_path / "cat" / "a.png", (40, 30), (255, 0, 0))
    _write_png(tmp_path / "dog" / "b.png", (32, 32), (0, 0, 255))
    data = load_image_folder(tmp_path, 32, 32, ["dog", "cat"], channels=3)
    assert data.x.shape == (2, 32, 32, 3)
    assert data.y.tolist() == [1, 0]
    assert data.x[0, 0, 0].tolist() == pytest.approx([1.0, 0.0, 0.0])
    with pytest.raises(DataError, match=r"is 40x30, the task expects 32x32"):
        load_image_folder(tmp_path, 32, 32, ["dog", "cat"], resize=False)
    with pytest.raises(DataError, match=r"'cat' are not in the task's LABEL_LIST"):
        load_image_folder(tmp_path, 32, 32, ["dog", "bird"])


def test_image_labels_csv(tmp_path: Path) -> None:
    _write_png(tmp_path / "0.png", (8, 8), (0, 0, 0))
    _write_png(tmp_path / "1.png", (8, 8), (255, 255, 255))
    labels = tmp_path / "labels.csv"
    labels.write_text("0,frog\n1,truck\n")
    data = load_image_folder(tmp_path, 4, 4, ["frog", "truck"], channels=1, labels_csv=labels)
    assert data.x.shape == (2, 4, 4, 1) and data.y.tolist() == [0, 1]
    labels.write_text("0,frog\n7,truck\n")
    with pytest.raises(DataError, match=r"no image '7'"):
        load_image_folder(tmp_path, 4, 4, ["frog", "truck"], labels_csv=labels)


def test_digits_as_mnist_and_splits() -> None:
    data = digits_as_mnist()
    assert data.x.shape == (1797, 28, 28, 1) and data.num_classes == 10
    assert data.x.min() >= 0.0 and data.x.max() <= 1.0
    parts = split_iid(data, 4, seed=0)
    assert sum(len(p) for p in parts) == len(data)
    skewed = split_dirichlet(data, 10, alpha=0.5, seed=0)
    assert sum(len(p) for p in skewed) == len(data)
    # Non-IID: some participant is dominated by few classes.
    top_share = max(np.bincount(p.class_labels()).max() / len(p) for p in skewed)
    assert top_share > 0.3


def test_files_the_system_refuses_are_data_errors(tmp_path: Path) -> None:
    """What the OS or the decoder refuses becomes a DataError naming the path."""
    from disco.client.data.loading import load_task_data

    info = make_task(inputColumns=["a"], outputColumns=["b"]).training_information
    binary = tmp_path / "t.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81" * 10)
    with pytest.raises(DataError, match=r"t\.csv: not a UTF-8 text file"):
        load_task_data(info, binary)
    image_info = make_task(
        dataType="image", IMAGE_H=2, IMAGE_W=2, LABEL_LIST=["x"]
    ).training_information
    with pytest.raises(DataError, match=r"labels\.csv"):
        load_task_data(image_info, tmp_path, labels_csv=tmp_path / "labels.csv")
