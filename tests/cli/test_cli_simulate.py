"""`disco simulate` end to end (subprocess, in-process server, built-in offline data).

Figures on a 2-core machine (seed 0): titanic, 4 federated clients, 12 rounds: mean held-out
accuracy of the last 5 rounds ~0.80 against a majority-class rate of 0.64; digits as MNIST,
10 clients, Dirichlet(0.5), 8 rounds: ~0.94 held-out accuracy (>= 0.85 from round 5), ~12 s.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from cli.helpers import RunDisco
from disco.simulation.builtin_data import write_titanic_like

pytestmark = pytest.mark.slow

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _simulate(disco: RunDisco, workdir: Path, *args: str) -> dict[str, Any]:
    """Run `disco simulate ARGS --output sim`; check the outputs; return the JSON log."""
    result = disco("simulate", *args, "--output", "sim")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "held-out accuracy over the last 3 rounds" in result.stdout
    assert "log: sim.json  plot: sim.png" in result.stdout
    log: dict[str, Any] = json.loads((workdir / "sim.json").read_text())
    png = workdir / "sim.png"
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(png) as image:
        image.verify()
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size == (1100, 440)
    return log


def _accuracies(log: dict[str, Any]) -> list[float]:
    return [float(row["accuracy"]) for row in log["rounds"]]


def test_titanic_four_federated_clients_beat_the_majority_class(
    disco: RunDisco, workdir: Path
) -> None:
    log = _simulate(disco, workdir, "--task", "titanic", "--clients", "4", "--rounds", "12")
    assert (log["task_id"], log["scheme"], log["clients"], log["split"]) == (
        "titanic",
        "federated",
        4,
        "iid",
    )
    assert [row["round"] for row in log["rounds"]] == list(range(1, 13))
    assert all(row["participants"] == 4 and row["aggregated"] == 4 for row in log["rounds"])
    assert sum(log["train_sizes"]) + log["held_out"] == 891
    recent = sum(_accuracies(log)[-5:]) / 5
    assert 0.6 < log["majority_rate"] < 0.7
    assert recent >= log["majority_rate"] + 0.08, (recent, log["majority_rate"])


def test_digits_ten_non_iid_clients_reach_85_percent(disco: RunDisco, workdir: Path) -> None:
    log = _simulate(
        disco,
        workdir,
        "--task",
        "mnist",
        "--clients",
        "10",
        "--split",
        "dirichlet:0.5",
        "--rounds",
        "8",
    )
    assert log["split"] == "dirichlet:0.5" and len(log["train_sizes"]) == 10
    assert all(row["participants"] == 10 for row in log["rounds"])
    assert log["final_accuracy"] >= 0.85, _accuracies(log)
    assert _accuracies(log)[0] < 0.85  # it is the collaboration that gets there


def test_three_secure_decentralized_peers_complete(disco: RunDisco, workdir: Path) -> None:
    log = _simulate(
        disco,
        workdir,
        "--task",
        "titanic",
        "--clients",
        "3",
        "--scheme",
        "decentralized",
        "--secure",
        "--rounds",
        "3",
    )
    assert (log["scheme"], log["secure"]) == ("decentralized", True)
    assert [(row["participants"], row["aggregated"]) for row in log["rounds"]] == [(3, 3)] * 3
    assert all(0.0 <= accuracy <= 1.0 for accuracy in _accuracies(log))


def test_two_decentralized_peers_with_own_csv(disco: RunDisco, workdir: Path) -> None:
    """The task asks for 3 ready peers; the in-process server's copy asks for the 2 simulated."""
    csv = write_titanic_like(workdir / "own.csv", n=200, seed=5)
    log = _simulate(
        disco,
        workdir,
        "--task",
        "titanic",
        "--clients",
        "2",
        "--scheme",
        "decentralized",
        "--rounds",
        "2",
        "--data",
        str(csv),
        "--round-timeout",
        "30",
    )
    assert [(row["participants"], row["aggregated"]) for row in log["rounds"]] == [(2, 2)] * 2
    assert sum(log["train_sizes"]) + log["held_out"] == 200


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed")
def test_ray_engine_runs_participants_as_actors(disco: RunDisco, workdir: Path) -> None:
    log = _simulate(
        disco,
        workdir,
        "--task",
        "titanic",
        "--clients",
        "2",
        "--rounds",
        "2",
        "--engine",
        "ray",
    )
    assert log["engine"] == "ray"
    assert [(row["participants"], row["aggregated"]) for row in log["rounds"]] == [(2, 2)] * 2
    assert all(row["accuracy"] is not None for row in log["rounds"])


def test_simulation_against_a_running_server(
    disco: RunDisco, workdir: Path, live_server: str
) -> None:
    log = _simulate(
        disco,
        workdir,
        "--task",
        "titanic",
        "--clients",
        "2",
        "--rounds",
        "2",
        "--server",
        live_server,
        "--round-timeout",
        "30",
    )
    assert log["server"] == live_server
    assert [(row["participants"], row["aggregated"]) for row in log["rounds"]] == [(2, 2)] * 2
