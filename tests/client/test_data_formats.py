"""DISCO's data formats and their checks: malformed titanic files, image layouts, preprocessing.

Every file is generated here (../shared may be absent).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from disco.client.data import DataError, load_task_data
from disco.client.data.loading import warn_if_smaller_than_a_batch
from disco.simulation.builtin_data import TITANIC_COLUMNS, titanic_like_csv
from disco.tasks.defaults import default_tasks
from disco.tasks.schema import TrainingInformation

TASKS = {task.task_id: task.training_information for task, _ in default_tasks()}
TITANIC = TASKS["titanic"]


def _titanic(path: Path, n: int = 40) -> Path:
    path.write_text(titanic_like_csv(n, seed=3))
    return path


def _break_rows(path: Path, lines: dict[int, str]) -> Path:
    """Replace the given 1-based file lines."""
    content = path.read_text().splitlines()
    for number, text in lines.items():
        content[number - 1] = text
    path.write_text("\n".join(content) + "\n")
    return path


def test_wrong_number_of_fields_is_an_error_naming_the_line(tmp_path: Path) -> None:
    csv = _break_rows(
        _titanic(tmp_path / "titanic_wrong_number_columns.csv"),
        {7: "6,0,3,Moran,male,,0,0,330877,8.4583", 12: "11,1,3,a,b,c,4,1,1,PP 9549,16.7,G6,S,X"},
    )
    with pytest.raises(DataError) as error:
        load_task_data(TITANIC, csv)
    assert str(error.value) == (
        "titanic_wrong_number_columns.csv, line 7: 10 fields, the header has 12 "
        "(use missing='drop' to skip such rows)"
    )


def test_missing_drop_skips_misshapen_rows_and_reports_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    csv = _break_rows(_titanic(tmp_path / "t.csv"), {7: "6,0,3", 12: "1,2,3,4,5,6,7,8,9,0,1,2,3"})
    with caplog.at_level(logging.WARNING, logger="disco.client.data"):
        data = load_task_data(TITANIC, csv, missing="drop")
    assert len(data) == 38
    assert "t.csv: skipped 2 row(s) whose number of fields differs from the header's 12 " in (
        caplog.text
    )
    assert "(lines 7, 12)" in caplog.text


def test_lines_are_file_lines_even_with_multi_line_quoted_fields(tmp_path: Path) -> None:
    header = ",".join(TITANIC_COLUMNS)
    good = "1,0,3,Braund,male,22,1,0,A/5 21171,7.25,,S"
    csv = tmp_path / "quoted.csv"
    csv.write_text(
        f'{header}\n{good}\n2,1,1,"Cumings,\nMrs. John",female,38,1,0,PC 17599,71.28,C85,C\n'
        "3,1,3,short\n"
    )
    with pytest.raises(DataError, match=r"quoted\.csv, line 5: 4 fields"):
        load_task_data(TITANIC, csv)


def test_a_renamed_column_names_what_is_missing(tmp_path: Path) -> None:
    csv = _titanic(tmp_path / "titanic_wrong_passengerID.csv")
    csv.write_text(csv.read_text().replace("PassengerId", "Id", 1))
    with pytest.raises(DataError, match=r"missing column\(s\) 'PassengerId'"):
        load_task_data(TITANIC, csv)


def test_fewer_samples_than_one_batch_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    csv = _titanic(tmp_path / "one.csv", n=1)
    data = load_task_data(TITANIC, csv)
    with caplog.at_level(logging.WARNING, logger="disco.client.data"):
        warn_if_smaller_than_a_batch(data, TITANIC, csv.name)
    assert len(data) == 1
    assert "one.csv: 1 sample(s), fewer than one batch (the task's batchSize is 30)" in (
        caplog.text
    )


def _images(folder: Path, count: int, size: int = 32) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = []
    for i in range(count):
        pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")
        names.append(str(i))
    return names


def test_cifar10_folder_plus_labels_csv_with_a_header(tmp_path: Path) -> None:
    names = _images(tmp_path / "images", 4)
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "file_name,class\n" + "".join(f"{n},frog\n" for n in names[:3]) + "3.png,cat\n"
    )
    data = load_task_data(TASKS["cifar10"], tmp_path / "images", labels_csv=labels)
    assert data.x.shape == (4, 32, 32, 3) and data.x.max() <= 1.0  # the task says normalize
    cifar = list(TASKS["cifar10"].label_list or [])
    assert data.y.tolist() == [cifar.index("frog")] * 3 + [cifar.index("cat")]
    labels.write_text("0,frog\n9,frog\n")
    with pytest.raises(DataError, match=r"labels\.csv, line 2: no image '9'"):
        load_task_data(TASKS["cifar10"], tmp_path / "images", labels_csv=labels)


def test_preprocessing_follows_the_task(tmp_path: Path) -> None:
    _images(tmp_path / "frog", 2, size=20)
    def preprocessed(*functions: str) -> TrainingInformation:
        return TASKS["cifar10"].model_copy(update={"preprocessing_functions": list(functions)})

    with pytest.raises(DataError, match="the task expects 32x32"):
        load_task_data(preprocessed(), tmp_path, resize=False)
    raw = load_task_data(preprocessed("resize"), tmp_path, resize=False)
    assert raw.x.shape == (2, 32, 32, 3) and raw.x.max() > 1.0  # not normalized: 0..255
    scaled = load_task_data(preprocessed("resize", "normalize"), tmp_path, resize=False)
    np.testing.assert_allclose(scaled.x, raw.x / 255.0, rtol=1e-6)


def test_an_empty_folder_explains_both_layouts(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="one sub-folder per label, or a labels CSV"):
        load_task_data(TASKS["cifar10"], tmp_path)
