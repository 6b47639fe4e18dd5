"""Pure parts of the `disco` CLI and the simulation: splits, quorum, plans, tables, log, plot."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from disco.cli.commands import (
    TrainView,
    UsageError,
    check_output_prefix,
    cli_data_error,
    model_size,
    participants_of,
    plan_rounds,
    resolve_scheme,
    round_line,
    simulation_table,
    tasks_table,
    train_summary,
)
from disco.cli.main import build_parser
from disco.cli.plot import plot_rounds
from disco.client.data.dataset import DataError, Dataset
from disco.client.session import History, RoundRecord
from disco.protocol.messages import RoundStatus
from disco.simulation.local_server import quorum_problem, with_quorum
from disco.simulation.ray_engine import cpus_per_participant
from disco.simulation.results import SimulationResult, SimulationRound, combine_rounds
from disco.simulation.splits import (
    majority_rate,
    parse_split,
    split_data,
    split_dirichlet,
    split_iid,
)
from disco.tasks.schema import TrainingInformation
from support.tasks import make_task


def _labelled(n: int, classes: int = 10) -> Dataset:
    y = np.arange(n, dtype=np.int64) % classes
    return Dataset(np.arange(n, dtype=np.float32).reshape(n, 1), y, num_classes=classes)


def _record(round_: int, **overrides: object) -> RoundRecord:
    values: dict[str, object] = {
        "round": round_,
        "epoch": 0,
        "batches": 10,
        "loss": 0.5,
        "accuracy": 0.8,
        "participants": 2,
        "aggregated": True,
        "seconds": 0.1,
    }
    values.update(overrides)
    return RoundRecord(**values)  # type: ignore[arg-type]


def _render(table: object, width: int = 80) -> str:
    console = Console(width=width, file=io.StringIO(), record=True)
    console.print(table)
    return console.export_text()


# -- splits ---------------------------------------------------------------------------------


def test_iid_split_is_a_partition_of_nearly_equal_parts() -> None:
    parts = split_iid(_labelled(103), 4, seed=1)
    assert sorted(len(p) for p in parts) == [25, 26, 26, 26]
    values = np.sort(np.concatenate([p.x[:, 0] for p in parts]))
    assert np.array_equal(values, np.arange(103, dtype=np.float32))


def test_dirichlet_split_is_a_skewed_partition() -> None:
    data = _labelled(1000)
    parts = split_dirichlet(data, 10, alpha=0.1, seed=0)
    values = np.sort(np.concatenate([p.x[:, 0] for p in parts]))
    assert np.array_equal(values, np.arange(1000, dtype=np.float32))
    assert min(len(p) for p in parts) >= 2
    # Small alpha: most participants are dominated by few classes (IID would give ~10% each).
    top_share = [np.bincount(p.class_labels()).max() / len(p) for p in parts]
    assert np.median(top_share) > 0.4


def test_dirichlet_split_is_deterministic_for_a_seed() -> None:
    first = split_data(_labelled(300), 5, "dirichlet:0.5", seed=3)
    second = split_data(_labelled(300), 5, "dirichlet:0.5", seed=3)
    assert [p.x.tolist() for p in first] == [p.x.tolist() for p in second]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("iid", ("iid", None)), ("dirichlet:0.5", ("dirichlet", 0.5))],
)
def test_parse_split(text: str, expected: tuple[str, float | None]) -> None:
    assert parse_split(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "IID",
        "dirichlet:",
        "dirichlet:x",
        "dirichlet:0",
        "dirichlet:-1",
        "dirichlet:nan",
        "zipf:1",
    ],
)
def test_parse_split_refuses_bad_values(text: str) -> None:
    with pytest.raises(ValueError, match="split"):
        parse_split(text)


def test_split_refuses_more_participants_than_samples() -> None:
    with pytest.raises(ValueError, match="cannot split 3 samples among 4"):
        split_iid(_labelled(3), 4)


def test_majority_rate() -> None:
    data = Dataset(np.zeros((4, 1), np.float32), np.array([[1], [0], [1], [1]], np.float32))
    assert majority_rate(data) == 0.75


# -- quorum ---------------------------------------------------------------------------------


def test_with_quorum_sets_both_minimums_on_a_copy() -> None:
    task = make_task(minimumReadyPeers=3, epochs=2)
    copied = with_quorum(task, 5)
    assert copied.to_json()["trainingInformation"] == {
        **task.to_json()["trainingInformation"],
        "minimumReadyPeers": 5,
        "minNbOfParticipants": 5,
        "epochs": 2,
    }
    assert copied.training_information.min_ready_peers == 5
    assert copied.training_information.min_participants == 5
    assert task.to_json() == make_task(minimumReadyPeers=3, epochs=2).to_json()


def test_quorum_problem_only_for_stated_minimums_above_n() -> None:
    task = make_task(minimumReadyPeers=3)
    message = quorum_problem(task, "decentralized", 2)
    assert message is not None and "minimumReadyPeers=3" in message
    assert quorum_problem(task, "decentralized", 3) is None
    assert quorum_problem(task, "federated", 2) is None  # minNbOfParticipants not stated


# -- train helpers --------------------------------------------------------------------------


def test_plan_rounds_follows_batch_size_and_round_duration() -> None:
    info = make_task(batchSize=30, roundDuration=10, epochs=20).training_information
    assert plan_rounds(300, info) == plan_rounds(300, info, epochs=20)
    plan = plan_rounds(300, info)
    assert (plan.batches_per_epoch, plan.epochs, plan.rounds) == (10, 20, 20)
    assert plan_rounds(301, info, epochs=3).rounds == 4  # 11 batches per epoch, 33 batches
    assert plan_rounds(301, info, rounds=7) == type(plan)(11, None, 7)


def test_resolve_scheme() -> None:
    def info(scheme: str) -> TrainingInformation:
        return make_task(scheme=scheme).training_information

    assert resolve_scheme(info("Federated"), None, secure=False) == "federated"
    assert resolve_scheme(info("federated"), "decentralized", secure=True) == "decentralized"
    with pytest.raises(UsageError, match="--secure"):
        resolve_scheme(info("federated"), None, secure=True)
    with pytest.raises(UsageError, match="not supported"):
        resolve_scheme(info("local"), None, secure=False)
    assert resolve_scheme(None, None, secure=False) == "federated"  # no task at hand
    assert resolve_scheme(None, "decentralized", secure=True) == "decentralized"


def test_train_summary() -> None:
    records = [_record(0), _record(1, aggregated=False, loss=0.25, accuracy=0.9)]
    text = train_summary(records, 3.0, interrupted=False)
    assert text.startswith("done: 2 rounds (1 aggregated) in 3.0 s")
    assert "loss 0.2500, accuracy 0.900" in text
    assert train_summary(records, 1.0, interrupted=True).startswith("interrupted after 2 rounds")
    assert train_summary([], 1.0, interrupted=True) == "no round completed before the interruption"


def test_round_line_is_numbered_within_the_run() -> None:
    line = round_line(_record(41, epoch=2, participants=3), 2, 7)
    assert line == "round 2/7  epoch 3  loss 0.5000  accuracy 0.800  participants 3"
    alone = round_line(_record(0, aggregated=False, participants=0), 1, 7)
    assert alone.endswith("(no aggregate: kept the local model)")


def test_the_privacy_spent_is_printed_each_round_and_at_the_end() -> None:
    records = [_record(0, epsilon=0.84), _record(1, epsilon=1.2345)]
    assert round_line(records[1], 2, 2).endswith("participants 2  ε 1.23")
    assert train_summary(records, 1.0, interrupted=False).endswith("; privacy spent ε = 1.23")
    assert "ε" not in train_summary([_record(0)], 1.0, interrupted=False)


def test_train_view_says_what_the_round_waits_for(capsys: pytest.CaptureFixture[str]) -> None:
    view = TrainView(plan_rounds(10, make_task().training_information), live=False)
    alone = RoundStatus(3, 1, 1, 2, "participants")
    view.on_status(alone)
    view.on_status(alone)  # unchanged: printed once
    view.on_status(RoundStatus(3, 3, 2, 2, "contributions", deadline_ms=9000))
    view.on_status(RoundStatus(3, 3, 2, 2, "contributions", deadline_ms=8000))  # only time left
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "waiting for participants: 1 of 2 (round 3)",
        "waiting for contributions: 2 of 3, 9 s left (round 3)",
    ]


def test_cli_data_error_speaks_in_flags() -> None:
    missing = cli_data_error(
        DataError("t.csv: 2 row(s) have empty cells (use missing='drop' or 'mean')")
    )
    assert "--missing drop or --missing mean" in str(missing)
    size = cli_data_error(DataError("a.png: image is 8x8, the task expects 28x28"))
    assert str(size).endswith("(pass --resize to resize images to the task's size)")


def test_check_output_prefix(tmp_path: Path) -> None:
    json_path, png_path = check_output_prefix(str(tmp_path / "run.v1"))
    assert (json_path.name, png_path.name) == ("run.v1.json", "run.v1.png")
    with pytest.raises(OSError, match="does not exist"):
        check_output_prefix(str(tmp_path / "missing" / "run"))


# -- tasks table ----------------------------------------------------------------------------


def test_model_size_from_manifest() -> None:
    manifest = {"weightsManifest": [{"weights": [{"shape": [3, 4]}, {"shape": [4]}]}]}
    assert model_size(manifest) == 16
    assert model_size({"weightsManifest": [{"weights": [{"shape": "x"}]}]}) is None
    assert model_size(None) is None


def test_participants_of_adds_federated_and_decentralized() -> None:
    assert participants_of({"currentNumberOfParticipants": 2, "connectedPeers": 3}) == 5
    assert participants_of({"currentNumberOfParticipants": 1}) == 1
    assert participants_of({"connectedPeers": True}) is None
    assert participants_of({}) is None


def test_tasks_table_fits_80_columns_with_every_header() -> None:
    tasks = [make_task("titanic", title="Titanic", scheme="Federated"), make_task("odd")]
    text = _render(
        tasks_table(
            "http://127.0.0.1:8080",
            tasks,
            [10981, None],
            [{"round": 4, "currentNumberOfParticipants": 2}, {}],
        )
    )
    assert max(len(line) for line in text.splitlines()) <= 80
    for header in ("id", "title", "scheme", "data type", "model size", "round", "participants"):
        assert header in text
    titanic = next(line for line in text.splitlines() if "titanic" in line)
    assert "10,981" in titanic and "tabular" in titanic and " 4 " in titanic
    odd = next(line for line in text.splitlines() if "odd" in line)
    assert odd.count("?") == 3  # size, round, participants unknown


# -- simulation results ---------------------------------------------------------------------


def test_combine_rounds_uses_participant_zero_for_evaluation() -> None:
    first = History("t", "federated", [_record(0, val_accuracy=0.7, val_loss=0.6, loss=1.0)])
    second = History("t", "federated", [_record(0, loss=3.0, seconds=0.5, aggregated=False)])
    (row,) = combine_rounds([first, second])
    assert row == SimulationRound(
        round=1, participants=2, loss=2.0, accuracy=0.7, val_loss=0.6, seconds=0.5, aggregated=1
    )


def test_result_json_log_round_trips(tmp_path: Path) -> None:
    result = SimulationResult("titanic", "federated", 2, "iid", False, majority_rate=0.6)
    result.rounds = [
        SimulationRound(i, 2, 1.0 / i, 0.6 + 0.05 * i, 0.5, 0.1, 2) for i in range(1, 5)
    ]
    data = json.loads(result.write_json(tmp_path / "log.json").read_text())
    assert data["final_accuracy"] == pytest.approx(0.8)
    assert data["mean_accuracy_last_3"] == pytest.approx(0.75)
    assert [r["round"] for r in data["rounds"]] == [1, 2, 3, 4]
    assert data["majority_rate"] == 0.6


def test_simulation_table_shows_missing_evaluation_as_dash() -> None:
    result = SimulationResult("t", "decentralized", 3, "iid", True)
    result.rounds = [SimulationRound(1, 3, 0.5, None, None, 0.2, 3)]
    text = _render(simulation_table(result))
    assert "secure" in text
    row = next(line for line in text.splitlines() if line.strip().startswith("1 "))
    assert row.split().count("-") == 2


def test_plot_is_a_readable_png(tmp_path: Path) -> None:
    from PIL import Image

    rows = [SimulationRound(i, 2, 1.0 / i, 0.5 + 0.1 * i, 0.4, 0.1, 2) for i in range(1, 4)]
    rows.append(SimulationRound(4, 2, 0.2, None, None, 0.1, 0))
    path = plot_rounds(rows, "test", tmp_path / "plot.png", majority_rate=0.6)
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (1100, 440)


# -- ray and parser -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cpus", "n", "expected"),
    [(2, 2, 1.0), (2, 3, 0.6666), (2, 10, 0.2), (8, 2, 1.0), (1, 300, 0.0033), (0, 3, 0.0)],
)
def test_cpus_per_participant(cpus: float, n: int, expected: float) -> None:
    share = cpus_per_participant(cpus, n)
    assert share == pytest.approx(expected)
    assert share * n <= cpus + 1e-9  # every participant is scheduled at once


@pytest.mark.parametrize(
    "argv",
    [
        ["simulate", "--task", "t", "--clients", "0"],
        ["simulate", "--task", "t", "--clients", "2", "--split", "dirichlet:-1"],
        ["simulate", "--task", "t", "--clients", "2", "--holdout", "1.5"],
        ["train", "--task", "t", "--data", "x", "--round-timeout", "nan"],
        ["train", "--task", "t", "--data", "x", "--scheme", "local"],
    ],
)
def test_parser_refuses_bad_values(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_parser_defaults() -> None:
    args = build_parser().parse_args(["simulate", "--task", "mnist", "--clients", "3"])
    assert (args.scheme, args.rounds, args.split, args.server, args.engine) == (
        "federated",
        10,
        "iid",
        None,
        "local",
    )
    assert (args.missing, args.resize, args.loopback_only) == ("error", False, False)


def test_an_unreachable_ray_address_fails_fast() -> None:
    import socket

    from disco.server.runner import free_port
    from disco.simulation.ray_engine import RayEngineError, reachable_address

    with pytest.raises(RayEngineError, match="cannot reach the Ray cluster"):
        reachable_address(f"ray://127.0.0.1:{free_port()}", timeout_s=2)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        reachable_address(f"127.0.0.1:{listener.getsockname()[1]}", timeout_s=2)
    reachable_address("auto")  # left to Ray


def test_main_reports_disco_errors_in_one_line_and_other_errors_as_unexpected(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI catches DiscoError (exit 1, its message) and nothing broader as a user error."""
    from disco.cli import commands, main
    from disco.client.remote import ServerError

    def fails_with(error: Exception) -> Any:
        def run(args: object) -> int:
            raise error

        return run

    monkeypatch.setattr(commands, "tasks_command", fails_with(ServerError("no server here")))
    assert main.main(["tasks"]) == 1
    assert capsys.readouterr().err.strip() == "disco: error: no server here"
    monkeypatch.setattr(commands, "tasks_command", fails_with(ValueError("a bug")))
    assert main.main(["tasks"]) == 1
    assert "unexpected ValueError: a bug" in capsys.readouterr().err
    monkeypatch.setattr(commands, "tasks_command", fails_with(UsageError("contradiction")))
    assert main.main(["tasks"]) == 2
