"""Helpers of the web app's page tests: data files they give the pages, and page actions."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from playwright.sync_api import Page

from disco.simulation.builtin_data import titanic_like_csv

WAIT_MS = 120_000
"""Upper bound of a training or a check in a test (the machine may be heavily loaded)."""


def titanic_file(folder: Path, name: str = "titanic_train.csv", *, n: int = 120, seed: int = 0,
                 missing_age: float = 0.0) -> Path:  # fmt: skip
    """A CSV in the real titanic format (header, quoted names; empty Age cells if asked)."""
    path = folder / name
    path.write_text(titanic_like_csv(n=n, seed=seed, missing_age=missing_age))
    return path


def without_column(source: Path, column: str, target: Path) -> Path:
    """`source` without one of its columns (a simple CSV: no quoted commas in that column)."""
    import csv

    with source.open(newline="") as f:
        rows = list(csv.reader(f))
    index = rows[0].index(column)
    with target.open("w", newline="") as f:
        csv.writer(f).writerows([row[:index] + row[index + 1 :] for row in rows])
    return target


def with_bad_field_counts(source: Path, target: Path, lines: tuple[int, ...]) -> Path:
    """`source` with one cell too many on the given (1-based) lines."""
    rows = source.read_text().splitlines()
    for line in lines:
        rows[line - 1] += ",extra"
    target.write_text("\n".join(rows) + "\n")
    return target


def png(width: int, height: int, seed: int = 0) -> bytes:
    """A grey-level PNG of random pixels."""
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def choose_file(page: Page, path: Path | list[Path], which: str = "files", nth: int = 0) -> None:
    """Give files to the page's data picker (its hidden file input `which`: files|folder|labels)."""
    page.locator(f'input[data-input="{which}"]').nth(nth).set_input_files(path)


def data_error(page: Page, nth: int = 0) -> str:
    """The text of the data picker's refusal, once shown."""
    box = page.locator("[data-data-error]").nth(nth)
    box.wait_for(timeout=WAIT_MS)
    where = box.locator("details")
    if where.count() > 0 and where.get_attribute("open") is None:
        where.locator("summary").click()  # "Where (n problems)": open the list, as a person would
    return box.inner_text()
