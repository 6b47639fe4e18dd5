"""Tabular CSV loading with the task's `inputColumns` / `outputColumns`."""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from disco.client.data.dataset import DataError, Dataset

Missing = Literal["error", "drop", "mean"]
log = logging.getLogger(__name__)


def _line_list(lines: Sequence[int], shown: int = 10) -> str:
    text = ", ".join(str(line) for line in lines[:shown])
    return text + (f", ... ({len(lines) - shown} more)" if len(lines) > shown else "")


def _parse(cell: str, path: Path, line: int, column: str) -> float:
    text = cell.strip()
    if text == "":
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise DataError(
            f"{path.name}, line {line}, column {column!r}: {cell!r} is not a number"
        ) from None
    if math.isinf(value):
        raise DataError(f"{path.name}, line {line}, column {column!r}: infinite value")
    return value


def load_tabular(
    path: str | Path,
    input_columns: Sequence[str],
    output_columns: Sequence[str],
    missing: Missing = "error",
) -> Dataset:
    """Read the numeric columns a task uses from a CSV with a header row.

    Empty cells are refused by default (a model trained on them would post NaN weights);
    `missing="drop"` skips such rows and `missing="mean"` fills them with the column mean.
    A row with another number of fields than the header is an error naming its line, or, with
    `missing="drop"`, skipped; skipped rows are reported (logged as a warning).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    wanted = [*input_columns, *output_columns]
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        try:
            header = [name.strip() for name in next(reader)]
        except StopIteration:
            raise DataError(f"{path.name}: the file is empty") from None
        absent = [name for name in wanted if name not in header]
        if absent:
            raise DataError(
                f"{path.name}: missing column(s) {', '.join(map(repr, absent))} "
                f"(the task needs {', '.join(wanted)}; the file has {', '.join(header)})"
            )
        index = [header.index(name) for name in wanted]
        rows: list[list[float]] = []
        lines: list[int] = []
        misshapen: list[int] = []
        for row in reader:
            line = reader.line_num  # the file's line (a quoted field may span several)
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                if missing == "drop":
                    misshapen.append(line)
                    continue
                raise DataError(
                    f"{path.name}, line {line}: {len(row)} fields, the header has "
                    f"{len(header)} (use missing='drop' to skip such rows)"
                )
            rows.append([_parse(row[i], path, line, header[i]) for i in index])
            lines.append(line)
    if misshapen:
        log.warning(
            "%s: skipped %d row(s) whose number of fields differs from the header's %d (line%s %s)",
            path.name,
            len(misshapen),
            len(header),
            "s" if len(misshapen) > 1 else "",
            _line_list(misshapen),
        )
    if not rows:
        raise DataError(f"{path.name}: no data rows")
    table = np.asarray(rows, dtype=np.float64)
    holes = np.isnan(table)
    kept = lines
    if holes.any():
        if missing == "error":
            row_index, column = np.argwhere(holes)[0]
            raise DataError(
                f"{path.name}: {int(holes.any(axis=1).sum())} row(s) have empty cells, first at "
                f"line {lines[int(row_index)]}, column {wanted[int(column)]!r} "
                "(use missing='drop' or 'mean')"
            )
        if missing == "drop":
            dropped = np.asarray(holes.any(axis=1), dtype=bool)
            table = table[~dropped]
            kept = [line for line, gone in zip(lines, dropped.tolist(), strict=True) if not gone]
            if len(table) == 0:
                raise DataError(f"{path.name}: every row has an empty cell")
            log.warning(
                "%s: dropped %d row(s) with empty cells (line%s %s)",
                path.name,
                int(dropped.sum()),
                "s" if dropped.sum() > 1 else "",
                _line_list([lines[int(i)] for i in np.flatnonzero(dropped)]),
            )
        else:
            means = np.nanmean(table, axis=0)
            table = np.where(holes, means, table)
    n_in = len(input_columns)
    return Dataset(
        table[:, :n_in].astype(np.float32),
        table[:, n_in:].astype(np.float32),
        ids=tuple(str(line) for line in kept),  # file lines
    )
