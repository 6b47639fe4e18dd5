"""Python and real DISCO 2.1.1 JavaScript peers in the same decentralized rounds.

Two node processes (the real `@epfml/discojs-node` client, via
node/decentralized_aggregate.mjs) and one Python `DecentralizedCommunicator` meet on a
`disco-server` subprocess; everyone's WebRTC stays on loopback (JS: node/loopback_wrtc.cjs +
the preloaded loopback_ifaddrs.so; Python: `loopback_only=True`). Each peer must end every
round with the mean of the three inputs, in clear text and with DISCO's secure aggregation (the
Python peer detects the JS peers and runs the DISCO-compatible mode). Also: our chunk framing
against the real client's, byte for byte.

All three peers leave together (`Barrier`; node/decentralized_common.mjs `leaveTogether`
explains why: the 2.1.1 client does not wait for its own last sends, and a fast Python peer
exposes that).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from disco.client import DecentralizedOptions
from disco.client.decentralized import DecentralizedCommunicator
from disco.client.decentralized.webrtc import is_loopback_address
from disco.protocol.chunking import DISCO_CHUNK_SIZE, Reassembler, chunk_message
from disco.tasks.schema import parse_task
from interop.harness import run_node, run_node_async
from interop.p2p import (
    AGGREGATION_ROUNDS,
    CLEAR_TASK,
    PROCESS_TIMEOUT_S,
    SCRIPT_TIMEOUT_MS,
    SECURE_TASK,
    Barrier,
    Tensors,
    check_loopback,
    decentralized_task,
    decode_tensors,
    encode_tensors,
    max_abs_diff,
    mean_of,
    peer_inputs,
    titanic,
)

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

JS_PEERS = 2
PEERS = JS_PEERS + 1


async def python_peer(
    url: str, task_id: str, secure: bool, rounds: list[Tensors], barrier: Barrier
) -> list[dict[str, Any]]:
    """The Python participant: one exchange per round; what it got, in which mode, how fast."""
    task = parse_task(decentralized_task(task_id, secure))
    out: list[dict[str, Any]] = []
    async with DecentralizedCommunicator(
        url,
        task,
        secure=secure,
        round_timeout_s=45.0,
        options=DecentralizedOptions(loopback_only=True),
    ) as peer:
        for index, weights in enumerate(rounds):
            exchange = await peer.exchange(weights, index, 10)
            assert peer.last_outcome is not None
            out.append(
                {
                    "exchange": exchange,
                    "mode": peer.last_outcome.mode,
                    "failure": peer.last_outcome.failure,
                    "timings": dict(peer.last_timings),
                    "peers": {i: link.is_python for i, link in peer.links.items()},
                    "addresses": [
                        a for link in peer.links.values() for a in link.local_candidate_addresses()
                    ],
                }
            )
        await barrier.leave_together("python")
    return out


@pytest.mark.parametrize(
    ("task_id", "secure", "mode", "tolerance"),
    [
        (CLEAR_TASK, False, "clear-text", 1e-5),
        # JS shares are float32 values in (-100, 100): ~1e-5 of absolute error on the sums.
        (SECURE_TASK, True, "secure-disco", 1e-3),
    ],
)
async def test_two_js_peers_and_a_python_peer_share_rounds(
    decentralized_server: str,
    tmp_path: Path,
    task_id: str,
    secure: bool,
    mode: str,
    tolerance: float,
) -> None:
    _, artifacts = titanic()
    shapes = artifacts.shapes()
    inputs = [peer_inputs(2000 + peer, shapes) for peer in range(PEERS)]
    barrier = Barrier.create(tmp_path, PEERS)
    runs = []
    for peer in range(JS_PEERS):
        request = tmp_path / f"js-peer{peer}.json"
        request.write_text(
            json.dumps(
                {
                    "url": decentralized_server,
                    "taskID": task_id,
                    "timeoutMs": SCRIPT_TIMEOUT_MS,
                    "barrier": barrier.request(),
                    "rounds": [encode_tensors(r) for r in inputs[peer]],
                }
            )
        )
        runs.append(
            run_node_async("decentralized_aggregate.mjs", str(request), timeout=PROCESS_TIMEOUT_S)
        )
    started = time.monotonic()
    *js_results, py_results = await asyncio.gather(
        *runs, python_peer(decentralized_server, task_id, secure, inputs[JS_PEERS], barrier)
    )
    print(
        f"{task_id}: {time.monotonic() - started:.2f} s for 2 JS + 1 Python peers;",
        "Python round timings:",
        [r["timings"] for r in py_results],
    )

    for round_index in range(AGGREGATION_ROUNDS):
        expected = mean_of([inputs[p][round_index] for p in range(PEERS)])
        for peer in range(PEERS):
            assert max_abs_diff(inputs[peer][round_index], expected) > 0.1, "inputs too close"
        for peer, result in enumerate(js_results):
            error = max_abs_diff(decode_tensors(result["rounds"][round_index]), expected)
            assert error <= tolerance, f"JS peer {peer} round {round_index + 1}: {error:.3g}"
        py = py_results[round_index]
        assert py["failure"] is None, f"Python peer round {round_index + 1}: {py['failure']}"
        assert py["mode"] == mode
        assert py["exchange"].participants == PEERS
        assert list(py["peers"].values()) == [False] * JS_PEERS, "JS peers taken for Python"
        assert py["addresses"] and all(map(is_loopback_address, py["addresses"]))
        error = max_abs_diff(py["exchange"].weights, expected)
        assert error <= tolerance, f"Python peer round {round_index + 1}: {error:.3g}"
    for result in js_results:
        assert result["participants"] == [PEERS] * AGGREGATION_ROUNDS
        check_loopback(result, PEERS - 1)


def test_chunks_are_those_of_the_real_client(node_client_dir: Path) -> None:
    """Same bytes as peer.js `chunk` (outside the sizes 16381-16384 it truncates), and the
    real client's chunks reassemble here."""
    sizes = [0, 1, 100, DISCO_CHUNK_SIZE - 4, DISCO_CHUNK_SIZE + 1, 3 * DISCO_CHUNK_SIZE + 77]
    request = json.dumps({"messageId": 65000, "sizes": sizes})
    js_chunks = run_node("mixed_chunks.mjs", request, timeout=60)
    assert len(js_chunks) == len(sizes)
    for index, (size, hex_chunks) in enumerate(zip(sizes, js_chunks, strict=True)):
        message = bytes(i % 251 for i in range(size))
        theirs = [bytes.fromhex(h) for h in hex_chunks]
        assert chunk_message(65000 + index, message) == theirs, f"message of {size} bytes"
        reassembler = Reassembler()
        rebuilt = [m for c in theirs if (m := reassembler.feed(c)) is not None]
        assert rebuilt == [message]
    assert all(len(c) // 2 <= DISCO_CHUNK_SIZE for hexes in js_chunks for c in hexes)
