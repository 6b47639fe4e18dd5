"""`disco tasks` and `disco train` as subprocesses against a loopback server; user errors.

Each user mistake must cost one clear stderr line and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from PIL import Image

from cli.helpers import RunDisco, StartDisco, assert_one_line_error, wait_until
from disco.server.runner import free_port
from disco.server.state import server_state
from disco.simulation.builtin_data import TITANIC_COLUMNS, write_titanic_like
from support.progress import Watch


def _status(server: str, task: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{server}/tasks/{task}/status", timeout=5) as response:
        body: dict[str, Any] = json.load(response)
    return body


def _titanic_csv(folder: Path, name: str = "titanic.csv", seed: int = 1) -> Path:
    return write_titanic_like(folder / name, n=120, seed=seed)


# -- disco tasks ----------------------------------------------------------------------------


def test_tasks_lists_the_servers_tasks(disco: RunDisco, live_server: str) -> None:
    result = disco("tasks", "--server", live_server)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    header = next(line for line in lines if "model size" in line)
    for column in ("id", "title", "scheme", "data type", "round", "participants"):
        assert column in header
    titanic = next(line for line in lines if line.split()[:1] == ["titanic"])
    assert "Titanic" in titanic and "federated" in titanic and "tabular" in titanic
    assert "10,981" in titanic  # the titanic model's parameter count
    assert {line.split()[0] for line in lines if line.split()} >= {"cifar10", "mnist", "titanic"}


# -- errors a user will hit -----------------------------------------------------------------


def test_unreachable_server_is_one_line(disco: RunDisco) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert_one_line_error(disco("tasks", "--server", url), "cannot reach the server", url)


def test_train_with_an_unreachable_server_is_one_line(disco: RunDisco, workdir: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    csv = _titanic_csv(workdir)
    result = disco("train", "--server", url, "--task", "titanic", "--data", str(csv))
    assert_one_line_error(result, "cannot reach the server")


def test_unknown_task_is_one_line(disco: RunDisco, live_server: str, workdir: Path) -> None:
    csv = _titanic_csv(workdir)
    result = disco("train", "--server", live_server, "--task", "nope", "--data", str(csv))
    assert_one_line_error(result, "unknown task 'nope'", "titanic")


def test_unknown_task_of_the_in_process_server_is_one_line(disco: RunDisco) -> None:
    result = disco("simulate", "--task", "nope", "--clients", "2")
    assert_one_line_error(result, "unknown task 'nope'", "--server")


def test_csv_missing_a_column_is_one_line(disco: RunDisco, live_server: str, workdir: Path) -> None:
    csv = workdir / "no-fare.csv"
    kept = [c for c in TITANIC_COLUMNS if c != "Fare"]
    csv.write_text(",".join(kept) + "\n" + ",".join("1" for _ in kept) + "\n")
    result = disco("train", "--server", live_server, "--task", "titanic", "--data", str(csv))
    assert_one_line_error(result, "no-fare.csv", "'Fare'")


def test_empty_csv_cells_suggest_the_flag(disco: RunDisco, live_server: str, workdir: Path) -> None:
    csv = write_titanic_like(workdir / "holes.csv", n=50, seed=2, missing_age=0.3)
    result = disco("train", "--server", live_server, "--task", "titanic", "--data", str(csv))
    assert_one_line_error(result, "holes.csv", "--missing drop")


def test_wrong_image_size_is_one_line(disco: RunDisco, live_server: str, workdir: Path) -> None:
    for label in ("3", "7"):
        (workdir / "digits" / label).mkdir(parents=True)
        Image.new("L", (8, 8), color=200).save(workdir / "digits" / label / "a.png")
    result = disco(
        "train", "--server", live_server, "--task", "mnist", "--data", str(workdir / "digits")
    )
    assert_one_line_error(result, "a.png", "8x8", "28x28", "--resize")


def test_secure_federated_is_a_usage_error(
    disco: RunDisco, live_server: str, workdir: Path
) -> None:
    csv = _titanic_csv(workdir)
    result = disco(
        "train", "--server", live_server, "--task", "titanic", "--data", str(csv), "--secure"
    )
    assert result.returncode == 2
    assert_one_line_error(result, "--secure", "decentralized")


def test_missing_output_folder_fails_before_training(disco: RunDisco, workdir: Path) -> None:
    result = disco("simulate", "--task", "titanic", "--clients", "2", "--output", "nowhere/sim")
    assert_one_line_error(result, "nowhere")


# -- disco train ----------------------------------------------------------------------------


@pytest.mark.slow
def test_two_participants_train_together(
    start_disco: StartDisco, live_server: str, workdir: Path
) -> None:
    children = [
        start_disco(
            "train",
            "--server",
            live_server,
            "--task",
            "titanic",
            "--data",
            str(_titanic_csv(workdir, f"part{i}.csv", seed=i)),
            "--epochs",
            "3",
            "--round-timeout",
            "30",
        )
        for i in range(2)
    ]
    outputs = Watch(children).wait_for_exit("the participants to finish")
    for child, (stdout, stderr) in zip(children, outputs, strict=True):
        assert child.returncode == 0, stderr
        assert "Traceback" not in stderr
        lines = stdout.splitlines()
        # 120 rows, batches of 30, rounds of 10 batches: 3 epochs = 12 batches = 2 rounds.
        assert lines[0].startswith("titanic: 120 local samples, federated, 2 rounds")
        assert [line.split()[1] for line in lines if line.startswith("round ")] == ["1/2", "2/2"]
        assert lines[-1].startswith("done: 2 rounds (2 aggregated)")
        assert "2 participants" in lines[-1]
    assert _status(live_server, "titanic")["round"] == 2


@pytest.mark.slow
def test_ctrl_c_leaves_a_federated_task(
    start_disco: StartDisco, served: tuple[str, FastAPI], workdir: Path
) -> None:
    server, app = served
    csv = _titanic_csv(workdir)
    # Alone in a task that needs two participants: it contributes, then waits for a round.
    child = start_disco("train", "--server", server, "--task", "titanic", "--data", str(csv))

    def sessions() -> int:
        hub = server_state(app).federated
        channel = hub.channels().get("titanic") if hub is not None else None
        return len(channel.sessions) if channel is not None else 0

    watch = Watch([child])
    watch.wait_until(lambda: sessions() == 1, "the participant to connect")
    watch.wait_until(
        lambda: _status(server, "titanic")["currentNumberOfParticipants"] == 1, "its post"
    )
    child.send_signal(signal.SIGINT)
    [(stdout, stderr)] = watch.wait_for_exit("the participant to leave")
    assert child.returncode == 130
    assert "Traceback" not in stderr
    assert stderr.splitlines() == ["disco: interrupted: left the task"]
    assert stdout.splitlines()[-1] == "no round completed before the interruption"
    wait_until(lambda: sessions() == 0, 10, "the server to see the participant leave")


@pytest.mark.slow
def test_ctrl_c_leaves_a_decentralized_task(
    start_disco: StartDisco, live_server: str, workdir: Path
) -> None:
    csv = _titanic_csv(workdir)
    # Alone among peers (the task waits for 3): it stays connected, waiting for a round.
    child = start_disco(
        "train",
        "--server",
        live_server,
        "--task",
        "titanic",
        "--data",
        str(csv),
        "--scheme",
        "decentralized",
        "--loopback-only",
    )
    watch = Watch([child])
    watch.wait_until(lambda: _status(live_server, "titanic")["readyPeers"] == 1, "its readiness")
    child.send_signal(signal.SIGINT)
    [(_, stderr)] = watch.wait_for_exit("the peer to leave")
    assert child.returncode == 130
    assert "Traceback" not in stderr
    assert stderr.splitlines() == ["disco: interrupted: left the task"]
    wait_until(
        lambda: _status(live_server, "titanic")["connectedPeers"] == 0, 10, "the peer to leave"
    )


@pytest.mark.slow
def test_three_secure_peers_train_together(
    start_disco: StartDisco, live_server: str, workdir: Path
) -> None:
    children = [
        start_disco(
            "train",
            "--server",
            live_server,
            "--task",
            "titanic",
            "--data",
            str(_titanic_csv(workdir, f"peer{i}.csv", seed=i)),
            "--scheme",
            "decentralized",
            "--secure",
            "--loopback-only",
            "--epochs",
            "3",
            "--round-timeout",
            "30",
        )
        for i in range(3)  # the titanic task waits for 3 ready peers
    ]
    outputs = Watch(children).wait_for_exit("the peers to finish")
    for child, (stdout, stderr) in zip(children, outputs, strict=True):
        assert child.returncode == 0, stderr
        assert "decentralized (secure), 2 rounds" in stdout.splitlines()[0]
        assert stdout.splitlines()[-1].startswith("done: 2 rounds (2 aggregated)")
        assert "3 participants" in stdout.splitlines()[-1]


def test_help_lists_the_commands(disco: RunDisco) -> None:
    result = disco("--help")
    assert result.returncode == 0
    for command in ("tasks", "train", "simulate"):
        assert command in result.stdout


def test_no_command_is_a_usage_error(disco: RunDisco) -> None:
    result: subprocess.CompletedProcess[str] = disco()
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


# -- start-up cost: what does not train does not import torch ----------------------------------

_IMPORTS_AFTER = """
import sys
from disco.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
heavy = sorted({"torch", "ray", "matplotlib", "fastapi", "uvicorn"} & set(sys.modules))
print("heavy:", ",".join(heavy))
"""


@pytest.mark.parametrize(
    ("args", "allowed"),
    [
        (["--help"], set()),
        (["tasks", "--server", "http://127.0.0.1:9"], set()),
        (["train", "--server", "http://127.0.0.1:9", "--task", "titanic", "--data", "x.csv"],
         set()),
        (["simulate", "--task", "titanic", "--clients", "0"], set()),
        (["simulate", "--task", "nope", "--clients", "2", "--output", "sim"],
         {"fastapi", "uvicorn"}),  # the in-process server's module, never started
    ],
    ids=["help", "tasks", "train-refused", "simulate-bad-argument", "simulate-unknown-task"],
)
def test_commands_that_do_not_train_leave_torch_unimported(
    workdir: Path, args: list[str], allowed: set[str]
) -> None:
    """torch costs seconds of CPU per start: only training, evaluation and simulation load it."""
    result = subprocess.run(
        [sys.executable, "-c", _IMPORTS_AFTER, *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    heavy = set(result.stdout.splitlines()[-1].removeprefix("heavy:").strip().split(",")) - {""}
    assert heavy <= allowed, (heavy, result.stderr)
    assert "torch" not in heavy
