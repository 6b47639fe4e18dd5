"""Decentralized rounds of browser peers with Python and 2.1.1 Node peers, loopback WebRTC only.

The scenario (tests/web/decentralized_scenario.py) runs in a network namespace holding only
`lo`, so Chromium's WebRTC can only use 127.0.0.1; each browser peer reports the selected ICE
candidate pair of every connection (getStats), which must be loopback. Every peer contributes
known weights for two rounds and must end each with the mean of all inputs.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from support.node import node_missing_reason

SCENARIO = Path(__file__).with_name("decentralized_scenario.py")
ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-3
BROWSERS, PYTHONS, NODES = 2, 1, 1


def decode(tensors: list[dict[str, Any]]) -> list[np.ndarray]:
    return [np.frombuffer(base64.b64decode(t["data"]), "<f4") for t in tensors]


def run_scenario(mode: str) -> dict[str, Any]:
    """The scenario in `unshare -n` (root: the test set-up and CI run as root)."""
    command = (
        "ip link set lo up && exec "
        f"{sys.executable} {SCENARIO} {mode} {BROWSERS} {PYTHONS} {NODES}"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")])}
    done = subprocess.run(
        ["unshare", "-n", "bash", "-c", command],
        capture_output=True, timeout=180, env=env, check=False, cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-4000:]
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["clear", "secure"])
def test_browser_python_and_node_peers_average_together(mode: str) -> None:
    if (reason := node_missing_reason()) is not None:
        pytest.fail(reason)
    result = run_scenario(mode)
    inputs = [[decode(r) for r in peer] for peer in result["inputs"]]
    peers = len(inputs)
    assert result["kinds"] == ["browser"] * BROWSERS + ["python"] * PYTHONS + ["node"] * NODES
    assert result["consoleErrors"] == [[]] * BROWSERS
    for peer, (kind, got) in enumerate(zip(result["kinds"], result["results"], strict=True)):
        warnings = result["consoleWarnings"]  # a browser says which peer it left out, and why
        assert got["aggregated"] == [True, True], (kind, got["aggregated"], warnings)
        assert got["participants"] == [peers, peers], (kind, got["participants"], warnings)
        for round_, tensors in enumerate(got["rounds"]):
            expected = [
                np.mean([inputs[p][round_][k].astype(np.float64) for p in range(peers)], axis=0)
                for k in range(len(inputs[0][round_]))
            ]
            own = inputs[peer][round_]  # no input is already the mean
            far = max(float(np.max(np.abs(o - e))) for o, e in zip(own, expected, strict=True))
            assert far > 0.1
            error = max(
                float(np.max(np.abs(g - e))) for g, e in zip(decode(tensors), expected, strict=True)
            )
            assert error <= TOLERANCE, f"{kind} peer {peer} round {round_}: {error:.3g}"
        if kind == "browser":  # every connection of the browser peers is on loopback
            pairs = got["pairs"]
            assert len(pairs) == peers - 1, pairs
            for pair in pairs:
                assert pair["local"] == "127.0.0.1" and pair["remote"] == "127.0.0.1", pair
