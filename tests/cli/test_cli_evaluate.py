"""`disco evaluate` / `disco predict` and Client.evaluate / Client.predict, run in-process."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from cli.helpers import assert_one_line_error, run_in_process
from disco.client import Client
from disco.client.remote import fetch_model
from disco.simulation.builtin_data import write_titanic_like
from disco.tasks.artifacts import write_layers_folder
from disco.tasks.defaults import CIFAR10_LABELS


def test_evaluate_reports_accuracy_per_class_and_a_confusion_matrix(
    live_server: str, tmp_path: Path
) -> None:
    csv_path = write_titanic_like(tmp_path / "titanic.csv", n=60, seed=4)
    client = Client(live_server)
    report = client.evaluate("titanic", csv_path)
    assert report.samples == 60 and report.class_names == ["0", "1"]
    assert report.confusion.sum() == 60
    assert report.accuracy == pytest.approx(np.trace(report.confusion) / 60)
    truth = np.loadtxt(csv_path, delimiter=",", skiprows=1, usecols=1, dtype=str)
    assert report.support.tolist() == [int((truth == "0").sum()), int((truth == "1").sum())]

    # The same model from a local folder gives the same report.
    async def download() -> Path:
        async with httpx.AsyncClient() as http:
            remote = await fetch_model(http, live_server, "titanic")
        return write_layers_folder(remote.artifacts, tmp_path / "model")

    local = client.evaluate("titanic", csv_path, model=asyncio.run(download()))
    assert local.confusion.tolist() == report.confusion.tolist()
    assert local.loss == pytest.approx(report.loss)


def test_cli_evaluate_and_predict(
    capsys: pytest.CaptureFixture[str], live_server: str, tmp_path: Path
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    rows = []
    for i in range(6):
        Image.fromarray(np.full((32, 32, 3), 40 * i, dtype=np.uint8)).save(images / f"{i}.png")
        rows.append(f"{i}.png,{CIFAR10_LABELS[i % 3]}")
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    plot = tmp_path / "confusion.png"
    result = run_in_process(
        capsys,
        "evaluate",
        "--server",
        live_server,
        "--task",
        "cifar10",
        "--data",
        str(images),
        "--labels",
        str(labels),
        "--plot",
        str(plot),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("cifar10: 6 samples, model the server's current global model: ")
    cells = [line.replace("│", " ").split() for line in lines]
    assert ["airplane", "2"] in [row[:2] for row in cells]  # class, support
    assert "confusion matrix (rows: true class, columns: predicted)" in result.stdout
    assert plot.stat().st_size > 1000 and plot.read_bytes()[:4] == b"\x89PNG"

    output = tmp_path / "predictions.csv"
    result = run_in_process(
        capsys,
        "predict",
        "--server",
        live_server,
        "--task",
        "cifar10",
        "--data",
        str(images),
        "--output",
        str(output),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"6 predictions written to {output} (")
    with output.open() as handle:
        table = list(csv.reader(handle))
    assert table[0][:2] == ["file", "prediction"] and len(table[0]) == 12
    assert [row[0] for row in table[1:]] == [f"{i}.png" for i in range(6)]
    assert all(row[1] in CIFAR10_LABELS for row in table[1:])
    assert all(abs(sum(float(p) for p in row[2:]) - 1) < 1e-4 for row in table[1:])


def test_predict_on_a_csv_names_file_lines(
    capsys: pytest.CaptureFixture[str], live_server: str, tmp_path: Path
) -> None:
    data = write_titanic_like(tmp_path / "new.csv", n=5, seed=1)
    output = tmp_path / "out.csv"
    result = run_in_process(
        capsys,
        "predict",
        "--server",
        live_server,
        "--task",
        "titanic",
        "--data",
        str(data),
        "--output",
        str(output),
    )
    assert result.returncode == 0, result.stderr
    with output.open() as handle:
        table = list(csv.reader(handle))
    assert table[0] == ["line", "prediction", "p(0)", "p(1)"]
    assert [row[0] for row in table[1:]] == ["2", "3", "4", "5", "6"]
    result = run_in_process(
        capsys,
        "evaluate",
        "--server",
        live_server,
        "--task",
        "titanic",
        "--data",
        str(data),
        "--model",
        str(tmp_path / "nowhere"),
    )
    assert_one_line_error(result, "nowhere: no model.json")
