"""Hostile frames on every WebSocket route, against a live loopback server.

For each bad input (one subtest each): a clear answer (close code 1003/1007/1008/1009 with a
reason, or an error reply where the protocol has one), exactly one log line (a warning, no
traceback), and nothing else changes: every task's model (in memory, persisted, served) is
identical before and after. Well-behaved clients stay connected through the whole attack and
complete a round afterwards.
"""

from __future__ import annotations

import logging
import math
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest

from disco.protocol.framing import pack
from disco.protocol.weights import decode_weights, encode_legacy, encode_native
from disco.server.app import create_app
from disco.weights import Weights
from robustness.conftest import (
    DECENTRALIZED_TASK,
    FEDERATED_TASK,
    MAX_FRAME_BYTES,
    LiveServer,
    hostile_settings,
    prepare_data_dir,
)
from robustness.helpers import Connections, LogWatch, WsClient, fingerprint, state_fingerprint

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2.*")
    from starlette.testclient import TestClient
    from starlette.websockets import WebSocketDisconnect

FEDERATED_ROUTES = ("federated", "feai")
DECENTRALIZED_ROUTES = ("decentralized", "deai")

Case = tuple[str, bytes | str, int, str]
"""(id, frame, expected close code, fragment of the close reason and of the log line)."""


def _frame(message: dict[str, Any]) -> bytes:
    return pack(message)


def _post(round_: Any, weights: Any = "x", **extra: Any) -> bytes:
    return pack({"type": 8, "weights": weights, "round": round_, **extra})


def _signal(peer: Any, signal: Any = None, *, drop: str | None = None) -> bytes:
    message = {"type": 2, "peer": peer, "signal": {"type": "offer"} if signal is None else signal}
    if drop is not None:
        del message[drop]
    return pack(message)


OVERSIZED = b"\x00" * (MAX_FRAME_BYTES + 1)

ENVELOPE: list[Case] = [
    ("text", "hello", 1003, "text frames"),
    ("text-json", '{"type": 0}', 1003, "text frames"),
    ("reserved-byte", b"\xc1", 1007, "not valid msgpack"),
    ("truncated", b"\x93\x01", 1007, "not decodable msgpack"),
    ("empty", b"", 1007, "not decodable msgpack"),
    ("trailing-bytes", pack({"type": 0}) + b"\x00", 1007, "trailing bytes"),
    ("claims-4g-array", b"\xdd\xff\xff\xff\xff", 1007, "not decodable msgpack"),
    ("deep-nesting", b"\x91" * 60_000 + b"\xc0", 1007, "frame"),
    ("ext-type", msgpack.packb(msgpack.ExtType(5, b"x")), 1007, "ext type 5"),
    ("array", msgpack.packb([8, 1]), 1007, "must be a msgpack map, got array"),
    ("integer", msgpack.packb(8), 1007, "must be a msgpack map, got int"),
    ("nil", msgpack.packb(None), 1007, "must be a msgpack map, got nil"),
    ("int-keys", msgpack.packb({1: 2}), 1007, "keys must be strings"),
    ("no-type", _frame({"round": 1}), 1007, "no integer 'type'"),
    ("type-str", _frame({"type": "8"}), 1007, "no integer 'type'"),
    ("type-float", _frame({"type": 8.0}), 1007, "no integer 'type'"),
    ("type-bool", _frame({"type": True}), 1007, "no integer 'type'"),
    ("type-nil", _frame({"type": None}), 1007, "no integer 'type'"),
    ("type-unknown", _frame({"type": 99}), 1007, "unknown message type 99"),
    ("type-negative", _frame({"type": -1}), 1007, "unknown message type -1"),
    ("type-2**64-1", _frame({"type": 2**64 - 1}), 1007, "unknown message type"),
    ("peer-to-peer-type", _frame({"type": 5, "peer": 1, "weights": []}), 1007, "not allowed"),
    ("unused-type", _frame({"type": 12}), 1007, "not allowed"),
    ("oversized", OVERSIZED, 1009, "1009"),
]

FEDERATED_CLOSING: list[Case] = [
    *ENVELOPE,
    ("decentralized-type", _frame({"type": 3}), 1007, "not allowed on the federated channel"),
    ("server-only-type", _frame({"type": 4, "peers": []}), 1007, "not allowed"),
    ("weights-missing", _frame({"type": 8, "round": 0}), 1007, "no 'weights' field"),
    ("weights-str", _post(0), 1007, "weights must be"),
    ("weights-nil", _post(0, None), 1007, "weights must be"),
    ("weights-byte-300", _post(0, [300]), 1007, "legacy weights"),
    ("weights-byte-negative", _post(0, [-1]), 1007, "legacy weights"),
    ("weights-byte-float", _post(0, [1.5]), 1007, "legacy weights"),
    ("weights-not-msgpack", _post(0, [0xC1]), 1007, "legacy weights"),
    ("weights-not-array", _post(0, list(msgpack.packb({"a": 1}))), 1007, "legacy weights"),
    ("weights-str-data", _post(0, list(msgpack.packb([{"shape": [1], "data": ["a"]}]))), 1007,
     "array of numbers"),
    ("weights-nil-data", _post(0, list(msgpack.packb([{"shape": [2], "data": [1.0, None]}]))),
     1007, "array of numbers"),
    ("weights-shape-vs-data", _post(0, list(msgpack.packb([{"shape": [2], "data": [1.0]}]))),
     1007, "needs 2 values"),
    ("weights-negative-dim", _post(0, list(msgpack.packb([{"shape": [-1], "data": []}]))), 1007,
     "must hold integers"),
    ("weights-huge-dims", _post(0, list(msgpack.packb([{"shape": [2**31, 2**31], "data": []}]))),
     1007, "must hold integers"),
    ("weights-f64-encoding", _post(0, {"encoding": "f64le", "shapes": [[1]], "data": bytes(8)}),
     1007, "unsupported weights encoding"),
    ("weights-native-odd-bytes", _post(0, {"encoding": "f32le", "shapes": [[1]], "data": b"123"}),
     1007, "holds 3 bytes"),
    ("weights-native-data-list", _post(0, {"encoding": "f32le", "shapes": [[1]], "data": [1.0]}),
     1007, "must be msgpack bin"),
    ("round-missing", _frame({"type": 8, "weights": "x"}), 1007, "no 'round' field"),
    ("round-negative", _post(-1), 1007, "must be in 0..2147483647, got -1"),
    ("round-2**31", _post(2**31), 1007, "must be in 0..2147483647"),
    ("round-2**63", _post(2**63), 1007, "must be in 0..2147483647"),
    ("round-2**64-1", _post(2**64 - 1), 1007, "must be in 0..2147483647"),
    ("round-int64-min", _post(-(2**63)), 1007, "must be in 0..2147483647"),
    ("round-float", _post(1.5), 1007, "'round' must be an integer, got float"),
    ("round-integral-float", _post(0.0), 1007, "'round' must be an integer, got float"),
    ("round-nan", _post(math.nan), 1007, "'round' must be an integer, got float"),
    ("round-inf", _post(math.inf), 1007, "'round' must be an integer, got float"),
    ("round-str", _post("0"), 1007, "'round' must be an integer, got str"),
    ("round-bool", _post(True), 1007, "'round' must be an integer, got bool"),
    ("round-nil", _post(None), 1007, "'round' must be an integer, got nil"),
    ("samples-negative", _post(0, numSamples=-1), 1007, "'numSamples' must be in"),
    ("samples-float", _post(0, numSamples=2.5), 1007, "'numSamples' must be an integer"),
    ("samples-disagree", _post(0, numSamples=1, nbSamples=2), 1007, "disagree"),
    ("metadata-value-int", _frame({"type": 9, "taskId": "t", "clientId": "c", "round": 0,
                                   "metadataId": "m", "metadata": 5}), 1007,
     "'metadata' must be a string, got int"),
    ("metadata-round-negative", _frame({"type": 9, "taskId": "t", "clientId": "c", "round": -5,
                                        "metadataId": "m", "metadata": "v"}), 1007,
     "'round' must be in"),
    ("metadata-id-too-long", _frame({"type": 9, "taskId": "t", "clientId": "c", "round": 0,
                                     "metadataId": "m" * 2000, "metadata": "v"}), 1007,
     "at most 1024"),
    ("metadata-map-no-client", _frame({"type": 10, "taskId": "t", "round": 0,
                                       "metadataId": "m"}), 1007, "no 'clientId' field"),
    ("metadata-map-round-float", _frame({"type": 10, "taskId": "t", "clientId": "c",
                                         "round": 1.0, "metadataId": "m"}), 1007,
     "must be an integer, got float"),
]

DECENTRALIZED_CLOSING: list[Case] = [
    *ENVELOPE,
    ("federated-type", _post(0), 1007, "not allowed on the decentralized channel"),
    ("server-only-type", _frame({"type": 4, "peers": []}), 1007, "not allowed"),
    ("peer-missing", _signal(1, drop="peer"), 1007, "no 'peer' field"),
    ("peer-negative", _signal(-1), 1007, "'peer' must be in 0..9007199254740991, got -1"),
    ("peer-2**63", _signal(2**63), 1007, "'peer' must be in 0..9007199254740991"),
    ("peer-2**64-1", _signal(2**64 - 1), 1007, "'peer' must be in 0..9007199254740991"),
    ("peer-float", _signal(1.5), 1007, "'peer' must be an integer, got float"),
    ("peer-nan", _signal(math.nan), 1007, "'peer' must be an integer, got float"),
    ("peer-str", _signal("1"), 1007, "'peer' must be an integer, got str"),
    ("peer-bool", _signal(True), 1007, "'peer' must be an integer, got bool"),
    ("signal-missing", _signal(1, drop="signal"), 1007, "no 'signal' field"),
    ("signal-str", _signal(1, "offer"), 1007, "'signal' must be a map, got str"),
    ("signal-array", _signal(1, [1, 2]), 1007, "'signal' must be a map, got array"),
    ("signal-nil", pack({"type": 2, "peer": 1, "signal": None}), 1007,
     "'signal' must be a map, got nil"),
]

DECENTRALIZED_BEFORE_HELLO: list[Case] = [
    ("ready-before-hello", _frame({"type": 3}), 1008, "send clientConnected"),
    ("signal-before-hello", _signal(1), 1008, "send clientConnected"),
]


def _ids(cases: list[Case]) -> list[str]:
    return [case[0] for case in cases]


# --------------------------------------------------------------------------- helpers


def shifted(weights: Weights, delta: float) -> Weights:
    return [np.asarray(w + np.float32(delta), dtype=np.float32) for w in weights]


def with_value(weights: Weights, value: float) -> Weights:
    """A copy with one coordinate set to `value` (NaN, Inf...)."""
    out = [np.array(w, dtype=np.float32) for w in weights]
    out[0].reshape(-1)[3] = value
    return out


def legacy_with_float64(weights: Weights, value: float) -> list[int]:
    """Legacy weights whose first value is a float64 (as the JS client writes numbers)."""
    entries = [{"shape": list(w.shape), "data": w.reshape(-1).tolist()} for w in weights]
    entries[0]["data"][0] = value
    return list(msgpack.packb(entries, use_bin_type=True))


ReplyCase = tuple[str, Callable[[Weights, int], dict[str, Any]], str, str]
"""(id, message from (global weights, round), expected status, fragment of the error)."""

FEDERATED_REPLIES: list[ReplyCase] = [
    ("nan-legacy", lambda w, r: {"type": 8, "round": r,
                                 "weights": encode_legacy(with_value(w, math.nan))},
     "invalid", "NaN or Inf"),
    ("nan-native", lambda w, r: {"type": 8, "round": r,
                                 "weights": encode_native(with_value(w, math.nan))},
     "invalid", "NaN or Inf"),
    ("inf-native", lambda w, r: {"type": 8, "round": r,
                                 "weights": encode_native(with_value(w, math.inf))},
     "invalid", "NaN or Inf"),
    ("minus-inf-legacy", lambda w, r: {"type": 8, "round": r,
                                       "weights": encode_legacy(with_value(w, -math.inf))},
     "invalid", "NaN or Inf"),
    ("float32-overflow", lambda w, r: {"type": 8, "round": r,
                                       "weights": legacy_with_float64(w, 1e300)},
     "invalid", "NaN or Inf"),
    ("no-tensors", lambda w, r: {"type": 8, "round": r, "weights": encode_native([])},
     "invalid", "expected 8 weight tensors, got 0"),
    ("missing-tensor", lambda w, r: {"type": 8, "round": r, "weights": encode_legacy(w[:-1])},
     "invalid", "expected 8 weight tensors, got 7"),
    ("extra-tensor", lambda w, r: {"type": 8, "round": r, "weights": encode_native([*w, w[-1]])},
     "invalid", "expected 8 weight tensors, got 9"),
    ("transposed", lambda w, r: {"type": 8, "round": r,
                                 "weights": encode_native([w[0].T, *w[1:]])},
     "invalid", "has shape [124, 6], expected [6, 124]"),
    ("flattened", lambda w, r: {"type": 8, "round": r,
                                "weights": encode_native([w[0].reshape(-1), *w[1:]])},
     "invalid", "has shape [744], expected [6, 124]"),
    ("scalar-tensors", lambda w, r: {"type": 8, "round": r,
                                     "weights": encode_native([np.ones((), np.float32)] * 8)},
     "invalid", "has shape [], expected"),
    ("future-round", lambda w, r: {"type": 8, "round": 2**31 - 1, "weights": encode_native(w)},
     "future", "ahead of the server's round"),
]


async def open_federated(connections: Connections, route: str) -> WsClient:
    client = await connections.open(f"/{route}/{FEDERATED_TASK}/{uuid.uuid4()}")
    assert await client.request({"type": 0}) == {"type": 0}
    return client


async def open_peer(connections: Connections, route: str, hello: bool = True) -> WsClient:
    path = f"/deai/{DECENTRALIZED_TASK}"
    if route == "decentralized":
        path = f"/decentralized/{DECENTRALIZED_TASK}/{uuid.uuid4()}"
    client = await connections.open(path)
    if hello:
        reply = await client.request({"type": 0})
        assert reply["type"] == 1 and type(reply["id"]) is int, reply
    return client


async def latest(client: WsClient) -> tuple[int, Weights, dict[str, Any]]:
    reply = await client.request({"type": 11})
    assert reply["type"] == 11, reply
    weights, _ = decode_weights(reply["weights"])
    return int(reply["round"]), weights, reply


async def peer_id_of(client: WsClient) -> int:
    """clientConnected again: the server repeats the peer's id (a liveness probe)."""
    reply = await client.request({"type": 0})
    assert reply["type"] == 1, reply
    return int(reply["id"])


async def expect_closed(client: WsClient, code: int, fragment: str) -> None:
    got_code, reason = await client.closed()
    assert got_code == code, (got_code, reason)
    assert reason, "a close without a reason"
    if code != 1009:  # uvicorn (websockets) words the 1009 reason itself
        assert fragment in reason, reason


# --------------------------------------------------------------------------- federated


async def test_federated_hostile_input(
    live: LiveServer, connections: Connections, logs: LogWatch, subtests: pytest.Subtests
) -> None:
    """Every hostile input on both routes while a client is connected; it then trains a round.

    One subtest per (route, input): its answer, its one log line, the model untouched.
    """
    good = await open_federated(connections, "feai")
    round_, weights, latest_before = await latest(good)
    served_before = await fingerprint(live.url)
    state_before = state_fingerprint(live.app)
    logs.clear()

    for route in FEDERATED_ROUTES:
        for name, frame, code, fragment in FEDERATED_CLOSING:
            with subtests.test(msg=f"{route}: {name}"):
                hostile = await open_federated(connections, route)
                await hostile.send(frame)
                await expect_closed(hostile, code, fragment)
                await logs.expect_next(fragment)
                assert state_fingerprint(live.app) == state_before
        hostile = await open_federated(connections, route)
        for name, build, status, fragment in FEDERATED_REPLIES:
            with subtests.test(msg=f"{route}: {name}"):
                reply = await hostile.request(build(weights, round_))
                assert reply["type"] == 8 and reply["status"] == status, reply
                assert reply["round"] == round_ and fragment in reply["error"], reply
                await logs.expect_next(fragment)
                assert state_fingerprint(live.app) == state_before
        # The refusals left the connection open and usable.
        assert (await hostile.request({"type": 13}))["statistics"]["round"] == round_
    await logs.expect_total(2 * (len(FEDERATED_CLOSING) + len(FEDERATED_REPLIES)))
    assert logs.notable() == [r for r in logs.records if r.levelno >= logging.INFO]

    assert (await latest(good))[2] == latest_before
    assert await fingerprint(live.url) == served_before

    # The bystander trains a round as if nothing happened (it is the only participant).
    update = shifted(weights, 0.25)
    reply = await good.request({"type": 8, "round": round_, "weights": encode_legacy(update)})
    assert reply == {"type": 8, "round": round_ + 1, "status": "accepted"}
    new_round, new_weights, _ = await latest(good)
    assert new_round == round_ + 1
    for got, want in zip(new_weights, update, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    served_after = await fingerprint(live.url)
    assert served_after[FEDERATED_TASK] != served_before[FEDERATED_TASK]
    del served_after[FEDERATED_TASK], served_before[FEDERATED_TASK]
    assert served_after == served_before


async def test_client_id_cannot_forge_log_lines(
    connections: Connections, logs: LogWatch
) -> None:
    """A clientID with a (percent-encoded) newline stays on one escaped log line."""
    hostile = await connections.open(f"/federated/{FEDERATED_TASK}/evil%0AINFO%20forged")
    assert await hostile.request({"type": 0}) == {"type": 0}
    logs.clear()
    await hostile.send(b"\xc1")
    await expect_closed(hostile, 1007, "msgpack")
    record = await logs.expect_one("evil\\nINFO forged")
    assert "\n" not in record.getMessage()


REFUSED_AT_CONNECTION = [
    ("/federated/nope/c1", "unknown task 'nope'"),
    ("/feai/nope/c2", "unknown task 'nope'"),
    ("/decentralized/nope/c3", "unknown task: nope"),
    ("/deai/nope", "unknown task: nope"),
    ("/deai/%0Aforged", "unknown task: \\nforged"),
    (f"/federated/{FEDERATED_TASK}/c4?encoding=base64", "unknown encoding 'base64'"),
    (f"/feai/{FEDERATED_TASK}/c5?encoding=", "unknown encoding ''"),
    (f"/deai/{DECENTRALIZED_TASK}?peerUpdates=maybe", "peerUpdates must be"),
    (f"/decentralized/{DECENTRALIZED_TASK}/c6?peerUpdates=", "peerUpdates must be"),
]


async def test_connections_refused_at_start(
    connections: Connections, logs: LogWatch, subtests: pytest.Subtests
) -> None:
    """Unknown task, bad query parameters: 1008 with a reason, one warning each."""
    for path, fragment in REFUSED_AT_CONNECTION:
        with subtests.test(msg=path):
            client = await connections.open(path)
            code, reason = await client.closed()
            assert code == 1008 and fragment.replace("\\n", "\n") in reason, (code, reason)
            await logs.expect_next(fragment)
    with subtests.test(msg="clientID already connected"):
        first = await open_federated(connections, "federated")
        client_id = first.ws.request.path.rsplit("/", 1)[1]  # type: ignore[union-attr]
        second = await connections.open(f"/feai/{FEDERATED_TASK}/{client_id}")
        code, reason = await second.closed()
        assert code == 1008 and "already connected" in reason, (code, reason)
        await logs.expect_next("already connected")
        assert (await first.request({"type": 13}))["type"] == 13
    await logs.expect_total(len(REFUSED_AT_CONNECTION) + 1)


# --------------------------------------------------------------------------- decentralized


async def test_decentralized_hostile_input(
    live: LiveServer, connections: Connections, logs: LogWatch, subtests: pytest.Subtests
) -> None:
    """Every hostile input on both routes while peers are connected; they then start a round."""
    good = [await open_peer(connections, route) for route in ("deai", "deai", "decentralized")]
    ids = [await peer_id_of(peer) for peer in good]
    served_before = await fingerprint(live.url)
    state_before = state_fingerprint(live.app)
    logs.clear()

    for route in DECENTRALIZED_ROUTES:
        for name, frame, code, fragment in DECENTRALIZED_CLOSING + DECENTRALIZED_BEFORE_HELLO:
            with subtests.test(msg=f"{route}: {name}"):
                hello = name not in _ids(DECENTRALIZED_BEFORE_HELLO)
                hostile = await open_peer(connections, route, hello=hello)
                await hostile.send(frame)
                await expect_closed(hostile, code, fragment)
                await logs.expect_next(fragment)
                assert state_fingerprint(live.app) == state_before
        with subtests.test(msg=f"{route}: undeliverable signals"):
            hostile = await open_peer(connections, route)
            own = await peer_id_of(hostile)
            # To oneself: a client bug, a warning.
            reply = await hostile.request({"type": 2, "peer": own, "signal": {"type": "offer"}})
            assert reply == {"type": 1, "id": own, "peer": own, "error": "cannot signal yourself"}
            await logs.expect_next("cannot signal yourself")
            # To a peer that is not (or no longer) there: a normal race, info.
            unknown = 2**53 - 1
            reply = await hostile.request(
                {"type": 2, "peer": unknown, "signal": {"type": "offer"}}
            )
            assert reply["type"] == 1 and reply["id"] == own and reply["peer"] == unknown
            assert "is not connected" in reply["error"]
            await logs.expect_next("is not connected", level=logging.INFO)
            assert await peer_id_of(hostile) == own  # still connected
            await hostile.ws.close()
    cases = len(DECENTRALIZED_CLOSING) + len(DECENTRALIZED_BEFORE_HELLO) + 2
    await logs.expect_total(2 * cases)

    assert [await peer_id_of(peer) for peer in good] == ids
    offer = {"type": "offer", "sdp": "v=0\r\na=max-message-size:262144\r\n"}
    await good[0].send({"type": 2, "peer": ids[1], "signal": offer})
    assert await good[1].receive() == {"type": 2, "peer": ids[0], "signal": offer}
    for peer in good:
        await peer.send({"type": 3})
    for peer, own in zip(good, ids, strict=True):
        reply = await peer.receive()
        assert reply["type"] == 4 and sorted(reply["peers"]) == sorted(set(ids) - {own}), reply
    assert state_fingerprint(live.app) == state_before
    assert await fingerprint(live.url) == served_before


# --------------------------------------------------------------------------- in-process limit


@pytest.mark.parametrize(
    "path",
    [
        f"/federated/{FEDERATED_TASK}/c1",
        f"/feai/{FEDERATED_TASK}/c2",
        f"/decentralized/{DECENTRALIZED_TASK}/c3",
        f"/deai/{DECENTRALIZED_TASK}",
    ],
)
def test_frame_limit_holds_without_the_transport(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    """Behind a server that does not enforce ws_max_size, the handlers close with 1009 too."""
    prepare_data_dir(tmp_path / "data")
    app = create_app(hostile_settings(tmp_path / "data", max_frame_bytes=1024))
    caplog.set_level(logging.INFO, logger="disco")
    with TestClient(app) as client, client.websocket_connect(path) as ws:
        ws.send_bytes(pack({"type": 0}))
        assert ws.receive_bytes()
        caplog.clear()
        ws.send_bytes(pack({"type": 0, "padding": "x" * 2048}))
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_bytes()
    assert closed.value.code == 1009
    assert "exceeds the limit of 1024 bytes" in closed.value.reason
    visible = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert [r.levelno for r in visible] == [logging.WARNING], [r.getMessage() for r in visible]
    assert "exceeds the limit of 1024 bytes" in visible[0].getMessage()
    assert visible[0].exc_info is None
