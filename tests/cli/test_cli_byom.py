"""Bring your own model: `disco tasks create` from a PyTorch factory, then Python clients train."""

from __future__ import annotations

import json
import textwrap
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from cli.helpers import RunDisco, StartDisco, assert_one_line_error, run_in_process
from disco.simulation.builtin_data import write_titanic_like
from support.progress import Watch

MODELS = textwrap.dedent(
    """
    import torch
    from torch import nn


    def make_mlp():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 1))


    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 1)

        def forward(self, x):
            return self.fc(x) * 2.0


    def make_scaled():
        return Scaled()
    """
)
COLUMNS = "PassengerId,Age,SibSp,Parch,Fare,Pclass"


def _task(server: str, task_id: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{server}/tasks/{task_id}", timeout=5) as response:
        body: dict[str, Any] = json.load(response)
    return body


@pytest.fixture
def models(workdir: Path) -> Path:
    folder = workdir / "models"
    folder.mkdir()
    (folder / "byom_models.py").write_text(MODELS)
    return folder


def test_create_from_a_factory_then_two_clients_train(
    disco: RunDisco, start_disco: StartDisco, live_server: str, workdir: Path, models: Path
) -> None:
    created = disco(
        "tasks",
        "create",
        "--server",
        live_server,
        "--model",
        "byom_models:make_mlp",
        "--model-path",
        str(models),
        "--task-id",
        "my-titanic",
        "--title",
        "Titanic, my model",
        "--data-type",
        "tabular",
        "--input-columns",
        COLUMNS,
        "--output-columns",
        "Survived",
        "--batch-size",
        "30",
        "--epochs",
        "2",
        "--round-duration",
        "4",
        "--learning-rate",
        "0.01",
    )
    assert created.returncode == 0, created.stderr
    assert "note: added a final sigmoid layer" in created.stdout
    assert "created task my-titanic on" in created.stdout
    assert "TF.js layers model, 129 parameters, federated, tabular data" in created.stdout
    task = _task(live_server, "my-titanic")
    assert task["displayInformation"]["taskTitle"] == "Titanic, my model"
    assert task["trainingInformation"]["modelCompileData"]["loss"] == "binaryCrossentropy"

    children = [
        start_disco(
            "train",
            "--server",
            live_server,
            "--task",
            "my-titanic",
            "--data",
            str(write_titanic_like(workdir / f"part{i}.csv", n=120, seed=i)),
            "--round-timeout",
            "30",
        )
        for i in range(2)
    ]
    outputs = Watch(children).wait_for_exit("the participants to finish")
    for child, (stdout, stderr) in zip(children, outputs, strict=True):
        assert child.returncode == 0, stderr
        # 120 rows, batches of 30, rounds of 4 batches: 2 epochs = 8 batches = 2 rounds.
        assert stdout.splitlines()[0].startswith("my-titanic: 120 local samples, federated")
        assert stdout.splitlines()[-1].startswith("done: 2 rounds (2 aggregated)"), stdout
        assert "2 participants" in stdout.splitlines()[-1]


def test_create_refusals_are_one_line(
    capsys: pytest.CaptureFixture[str], live_server: str, models: Path
) -> None:
    base = ["tasks", "create", "--server", live_server, "--model-path", str(models)]
    tabular = ["--data-type", "tabular", "--input-columns", COLUMNS, "--output-columns", "y"]
    mlp = ["--model", "byom_models:make_mlp"]
    # The server's own reason, checked before anything is sent.
    result = run_in_process(capsys, *base, *mlp, "--task-id", "t", *tabular, "--epochs", "0")
    assert_one_line_error(result, "trainingInformation.epochs: must be >= 1")
    # A module the exporter refuses: the culprit, and the way out.
    result = run_in_process(
        capsys, *base, "--model", "byom_models:make_scaled", "--task-id", "t", *tabular
    )
    assert_one_line_error(result, "one operand is the constant 2.0", "--torch-only")
    result = run_in_process(
        capsys, *base, "--model", "byom_models:nope", "--task-id", "t", *tabular
    )
    assert_one_line_error(result, "byom_models has no 'nope'")
    # A task ID that exists already.
    result = run_in_process(capsys, *base, *mlp, "--task-id", "titanic", *tabular)
    assert_one_line_error(result, "409", "already exists")
    # Without the data type the schema needs.
    result = run_in_process(capsys, *base, *mlp, "--task-id", "t")
    assert_one_line_error(result, "trainingInformation.dataType: required")


def _cifar_folder(folder: Path, count: int, seed: int) -> tuple[Path, Path]:
    """`count` 32x32 PNGs named 0.png.. and a DISCO labels CSV (file_name,class, no suffix)."""
    import numpy as np
    from PIL import Image

    images = folder / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    classes = ["frog", "truck"]
    rows = []
    for i in range(count):
        label = classes[i % 2]
        base = (40, 160, 60) if label == "frog" else (200, 40, 40)  # learnable colours
        pixels = np.clip(rng.normal(base, 30, size=(32, 32, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(images / f"{i}.png")
        rows.append(f"{i},{label}")
    labels = folder / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    return images, labels


def test_cifar10_from_a_folder_and_a_labels_csv(
    start_disco: StartDisco, live_server: str, workdir: Path
) -> None:
    children = []
    for i in range(2):
        images, labels = _cifar_folder(workdir / f"client{i}", 20, seed=i)
        children.append(
            start_disco(
                "train",
                "--server",
                live_server,
                "--task",
                "cifar10",
                "--data",
                str(images),
                "--labels",
                str(labels),
                "--rounds",
                "1",
                "--round-timeout",
                "60",
            )
        )
    outputs = Watch(children).wait_for_exit("the participants to finish")
    for child, (stdout, stderr) in zip(children, outputs, strict=True):
        assert child.returncode == 0, stderr
        assert stdout.splitlines()[0].startswith("cifar10: 20 local samples, federated, 1 rounds")
        assert stdout.splitlines()[-1].startswith("done: 1 rounds (1 aggregated)"), stdout


def test_malformed_titanic_files_name_the_line(
    capsys: pytest.CaptureFixture[str], live_server: str, workdir: Path
) -> None:
    csv = write_titanic_like(workdir / "titanic_wrong_number_columns.csv", n=40, seed=2)
    lines = csv.read_text().splitlines()
    lines[4] = "4,1,1,Futrelle,female,35,1,0,113803,53.1"  # 10 fields for 12 columns
    csv.write_text("\n".join(lines) + "\n")
    train = ["train", "--server", live_server, "--task", "titanic", "--data", str(csv)]
    result = run_in_process(capsys, *train)
    assert_one_line_error(
        result,
        "titanic_wrong_number_columns.csv, line 5: 10 fields, the header has 12",
        "(use --missing drop to skip such rows)",
    )


def test_long_task_ids_are_never_cut(
    capsys: pytest.CaptureFixture[str], live_server: str, models: Path
) -> None:
    tabular = ["--data-type", "tabular", "--input-columns", COLUMNS, "--output-columns", "y"]
    ids = ["titanic-mine-with-a-long-identifier", "titanic-json-with-a-long-identifier"]
    for task_id in ids:
        created = run_in_process(
            capsys,
            "tasks",
            "create",
            "--server",
            live_server,
            "--model-path",
            str(models),
            "--model",
            "byom_models:make_mlp",
            "--task-id",
            task_id,
            *tabular,
        )
        assert created.returncode == 0, created.stderr
    listed = run_in_process(capsys, "tasks", "--server", live_server)  # stdout is not a terminal
    assert listed.returncode == 0, listed.stderr
    first_cells = [line.split()[0] for line in listed.stdout.splitlines()[1:] if line.strip()]
    assert first_cells[0] == "id"
    assert set(ids) <= set(first_cells)


def test_the_terminal_table_keeps_ids_whole_in_a_narrow_terminal() -> None:
    from rich.console import Console

    from disco.cli.commands import tasks_table
    from support.tasks import make_task

    tasks = [
        make_task(task_id, title="A title long enough to need wrapping here")
        for task_id in ("titanic-mine-with-a-long-identifier", "titanic-json")
    ]
    console = Console(width=60, record=True, force_terminal=True)
    console.print(tasks_table("http://x", tasks, [10, None], [{}, {}]))
    text = console.export_text()
    assert "titanic-mine-with-a-long-identifier" in text and "titanic-json" in text
    assert "…" not in text


@pytest.mark.slow
def test_sigterm_leaves_the_task_like_ctrl_c(
    start_disco: StartDisco, live_server: str, workdir: Path
) -> None:
    import signal

    csv = write_titanic_like(workdir / "alone.csv", n=60, seed=1)
    # Alone in a task that needs two participants: it contributes, then waits for a round.
    child = start_disco("train", "--server", live_server, "--task", "titanic", "--data", str(csv))

    def contributions() -> Any:
        url = f"{live_server}/tasks/titanic/status"
        return json.load(urllib.request.urlopen(url, timeout=5)).get("currentNumberOfParticipants")

    watch = Watch([child])
    watch.wait_until(lambda: contributions() == 1, "its contribution")
    child.send_signal(signal.SIGTERM)
    [(stdout, stderr)] = watch.wait_for_exit("the participant to leave")
    assert child.returncode == 143
    assert stderr.splitlines() == ["disco: terminated (SIGTERM): left the task"]
    assert stdout.splitlines()[-1] == "no round completed before the interruption"
