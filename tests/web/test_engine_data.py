"""The engine's data preparation against the Python client's: same rules, same messages.

Every file is generated here (no ../shared). Each bad file gives the Python client's message
(`disco.client.data`), lists the bad lines, and nothing leaves the page.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright.sync_api import Browser, Page

from disco.client.data.dataset import DataError
from disco.client.data.images import load_image_folder
from disco.client.data.tabular import load_tabular
from disco.simulation.builtin_data import titanic_like_csv
from web.browser import ConsoleLog, new_page
from web.engine import open_engine, text_file_arg

INPUTS = ["PassengerId", "Age", "SibSp", "Parch", "Fare", "Pclass"]
OUTPUTS = ["Survived"]

READ_TABULAR = """async ({file, missing, labelled}) => {
    const task = (await disco.listTasks(server)).find((t) => t.taskID === "titanic");
    const blob = fileFrom(file.name, file.data, file.type);
    const error = await dataErrorOf(disco.readTabular(task, blob, { missing, labelled }));
    if (error) return { error };
    const data = await disco.readTabular(task, blob, { missing, labelled });
    return { size: data.size, shape: data.sampleShape, x: Array.from(data.x),
             y: data.y && Array.from(data.y), notes: data.notes, sources: data.sources };
}"""


@pytest.fixture(scope="module")
def engine_page(web_server: str, browser: Browser) -> Iterator[tuple[Page, ConsoleLog]]:
    page, console = new_page(browser)
    open_engine(page, web_server)
    yield page, console
    page.context.close()


def read_in_browser(
    page: Page, name: str, text: str, missing: str = "error", labelled: bool = True
) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(
        READ_TABULAR,
        {"file": text_file_arg(name, text), "missing": missing, "labelled": labelled},
    )
    return result


def python_message(tmp_path: Path, name: str, text: str, missing: str = "error") -> str:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataError) as raised:
        load_tabular(path, INPUTS, OUTPUTS, missing=missing)  # type: ignore[arg-type]
    return str(raised.value)


def test_titanic_with_empty_ages_is_refused_with_the_python_message(
    engine_page: tuple[Page, ConsoleLog], tmp_path: Path
) -> None:
    text = titanic_like_csv(n=200, seed=3, missing_age=0.2)
    result = read_in_browser(engine_page[0], "titanic_train.csv", text)
    error = result["error"]
    assert error["name"] == "DataError"
    assert error["message"] == python_message(tmp_path, "titanic_train.csv", text)
    assert "use missing='drop' or 'mean'" in error["message"]
    # then one issue per line with an empty cell, in order, each naming the column
    rows = list(csv.reader(io.StringIO(text)))
    age = rows[0].index("Age")
    empty = [line for line, row in enumerate(rows[1:], start=2) if row[age] == ""]
    assert [issue["line"] for issue in error["issues"][1:]] == empty[: len(error["issues"]) - 1]
    assert all("'Age'" in issue["message"] for issue in error["issues"][1:])


@pytest.mark.parametrize("missing", ["drop", "mean"])
def test_missing_policies_give_the_python_values(
    engine_page: tuple[Page, ConsoleLog], tmp_path: Path, missing: str
) -> None:
    text = titanic_like_csv(n=150, seed=4, missing_age=0.25)
    path = tmp_path / "t.csv"
    path.write_text(text)
    expected = load_tabular(path, INPUTS, OUTPUTS, missing=missing)  # type: ignore[arg-type]
    result = read_in_browser(engine_page[0], "t.csv", text, missing)
    assert "error" not in result, result.get("error")
    assert result["size"] == len(expected.x) and result["shape"] == [6]
    np.testing.assert_allclose(np.reshape(result["x"], (-1, 6)), expected.x, rtol=1e-6)
    np.testing.assert_allclose(np.reshape(result["y"], (-1, 1)), expected.y, rtol=1e-6)
    assert result["notes"] and "row(s)" in result["notes"][0]
    if missing == "drop":  # the rows' file lines, as the Python client's ids
        assert result["sources"] == list(expected.ids)


def test_a_missing_column_names_it(
    engine_page: tuple[Page, ConsoleLog], tmp_path: Path
) -> None:
    rows = titanic_like_csv(n=20, seed=5).splitlines()
    header = rows[0].split(",")
    fare = header.index("Fare")
    # drop the Fare column (no quoted commas after it in this layout: cut from the right)
    cut = [",".join(r.rsplit(",", len(header) - fare)[:1] + r.rsplit(",", len(header) - fare)[2:])
           for r in rows]
    text = "\n".join(cut) + "\n"
    assert "Fare" not in cut[0]
    result = read_in_browser(engine_page[0], "no-fare.csv", text)
    assert result["error"]["message"] == python_message(tmp_path, "no-fare.csv", text)
    assert "missing column(s) 'Fare'" in result["error"]["message"]


def test_wrong_field_counts_are_listed_line_by_line(
    engine_page: tuple[Page, ConsoleLog], tmp_path: Path
) -> None:
    rows = titanic_like_csv(n=30, seed=6).splitlines()
    rows[4] += ",extra"
    rows[9] = rows[9].rsplit(",", 2)[0]
    text = "\n".join(rows) + "\n"
    result = read_in_browser(engine_page[0], "broken.csv", text)
    error = result["error"]
    assert error["message"].startswith(python_message(tmp_path, "broken.csv", text))
    assert [issue["line"] for issue in error["issues"]] == [5, 10]
    assert error["issues"][1]["message"] == (
        "broken.csv, line 10: 10 fields, the header has 12 (use missing='drop' to skip such rows)"
    )
    # with missing="drop" such rows are skipped, as the Python client does
    path = tmp_path / "broken.csv"
    expected = load_tabular(path, INPUTS, OUTPUTS, missing="drop")
    dropped = read_in_browser(engine_page[0], "broken.csv", text, "drop")
    assert dropped["size"] == len(expected.x) == 28
    np.testing.assert_allclose(np.reshape(dropped["x"], (-1, 6)), expected.x, rtol=1e-6)
    assert dropped["notes"] == [
        "skipped 2 row(s) whose number of fields differs from the header's 12 (lines 5, 10)"
    ]


def test_a_cell_that_is_not_a_number(
    engine_page: tuple[Page, ConsoleLog], tmp_path: Path
) -> None:
    text = "PassengerId,Survived,Pclass,Age,SibSp,Parch,Fare\n1,0,3,22,1,0,7.25\n2,1,1,old,1,0,71\n"
    result = read_in_browser(engine_page[0], "words.csv", text)
    assert result["error"]["message"] == python_message(tmp_path, "words.csv", text)


def test_prediction_data_needs_no_output_column(engine_page: tuple[Page, ConsoleLog]) -> None:
    text = "PassengerId,Pclass,Age,SibSp,Parch,Fare\n1,3,22,1,0,7.25\n2,1,38,1,0,71.28\n"
    result = read_in_browser(engine_page[0], "unlabelled.csv", text, labelled=False)
    assert result["size"] == 2 and result["y"] is None


# ------------------------------------------------------------------------------ images

READ_IMAGES = """async ({files, resize}) => {
    const task = (await disco.listTasks(server)).find((t) => t.taskID === "mnist");
    const images = files.map(
        (f) => ({ file: fileFrom(f.name, f.data, "image/png"), path: f.path }));
    const options = { resize, channels: 1 };
    const error = await dataErrorOf(disco.readImages(task, images, options));
    if (error) return { error };
    const data = await disco.readImages(task, images, options);
    return { size: data.size, shape: data.sampleShape,
             x: Array.from(data.x), y: Array.from(data.y) };
}"""


def png(size: tuple[int, int], seed: int) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0]), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def image_folder(root: Path, sizes: dict[str, tuple[int, int]]) -> list[dict[str, str]]:
    import base64

    files = []
    for index, (relative, size) in enumerate(sorted(sizes.items())):
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png(size, index))
        files.append({
            "name": path.name, "path": relative,
            "data": base64.b64encode(path.read_bytes()).decode("ascii"),
        })
    return files


def test_images_match_the_python_loader(
    engine_page: tuple[Page, ConsoleLog], tmp_path: Path
) -> None:
    files = image_folder(tmp_path, {"3/a.png": (28, 28), "3/b.png": (28, 28), "7/c.png": (28, 28)})
    expected = load_image_folder(tmp_path, 28, 28, [str(i) for i in range(10)], channels=1)
    result = engine_page[0].evaluate(READ_IMAGES, {"files": files, "resize": False})
    assert "error" not in result, result.get("error")
    assert result["size"] == 3 and result["shape"] == [28, 28, 1]
    np.testing.assert_allclose(np.reshape(result["x"], (3, 28, 28, 1)), expected.x, atol=1e-6)
    assert result["y"] == [3, 3, 7] == expected.y.tolist()


def test_an_image_of_the_wrong_size_is_refused(
    engine_page: tuple[Page, ConsoleLog], tmp_path: Path
) -> None:
    files = image_folder(tmp_path, {"1/ok.png": (28, 28), "1/big.png": (32, 30)})
    with pytest.raises(DataError) as raised:
        load_image_folder(tmp_path, 28, 28, [str(i) for i in range(10)], channels=1, resize=False)
    result = engine_page[0].evaluate(READ_IMAGES, {"files": files, "resize": False})
    assert result["error"]["message"] == str(raised.value) == (
        "big.png: image is 32x30, the task expects 28x28"
    )
    resized = engine_page[0].evaluate(READ_IMAGES, {"files": files, "resize": True})
    assert resized["size"] == 2


def test_labels_outside_the_task_are_refused(
    engine_page: tuple[Page, ConsoleLog], tmp_path: Path
) -> None:
    files = image_folder(tmp_path, {"cat/a.png": (28, 28)})
    result = engine_page[0].evaluate(READ_IMAGES, {"files": files, "resize": False})
    assert "label(s) 'cat' are not in the task's LABEL_LIST" in result["error"]["message"]


# ------------------------------------------------------------------------------ nothing sent

def test_bad_data_sends_nothing(web_server: str, browser: Browser) -> None:
    """A page that reads bad data and then tries to train opens no connection at all."""
    page, console = new_page(browser)
    try:
        open_engine(page, web_server)
        sockets: list[str] = []
        posts: list[str] = []
        page.on("websocket", lambda ws: sockets.append(ws.url))
        page.on("request", lambda r: posts.append(r.url) if r.method != "GET" else None)
        text = titanic_like_csv(n=50, seed=8, missing_age=0.3)
        outcome = page.evaluate(
            """async (file) => {
                const task = await disco.getTask(server, "titanic");
                const blob = fileFrom(file.name, file.data, file.type);
                const read = await dataErrorOf(disco.readTabular(task, blob));
                const unlabelled = await disco.readTabular(
                    task, blob, { missing: "drop", labelled: false });
                const run = disco.train({ server, task, data: unlabelled, rounds: 1 });
                const trained = await dataErrorOf(run.done);
                return { read, trained };
            }""",
            text_file_arg("titanic_train.csv", text),
        )
        assert outcome["read"]["name"] == "DataError"
        assert outcome["trained"]["name"] == "DataError"
        assert "labelled" in outcome["trained"]["message"]
        assert sockets == [] and posts == []
    finally:
        page.context.close()
    assert console.errors == []
