"""The per-peer bounded outgoing queue."""

from __future__ import annotations

import asyncio

import pytest

from disco.protocol.errors import CloseCode
from disco.server.decentralized.outbox import CloseRequest, Outbox


async def test_frames_come_out_in_order() -> None:
    outbox = Outbox(max_frames=4, max_bytes=100)
    assert outbox.put(b"a")
    assert outbox.put(b"bc")
    assert (outbox.queued_frames, outbox.queued_bytes) == (2, 3)
    assert await outbox.get() == b"a"
    assert await outbox.get() == b"bc"
    assert outbox.queued_bytes == 0


async def test_get_waits_for_a_frame() -> None:
    outbox = Outbox(max_frames=4, max_bytes=100)
    getter = asyncio.create_task(outbox.get())
    await asyncio.sleep(0)
    assert not getter.done()
    outbox.put(b"x")
    assert await asyncio.wait_for(getter, 1.0) == b"x"


@pytest.mark.parametrize(("max_frames", "max_bytes", "frames"), [(2, 100, 3), (10, 5, 3)])
async def test_overflow_closes_with_policy_violation(
    max_frames: int, max_bytes: int, frames: int
) -> None:
    outbox = Outbox(max_frames=max_frames, max_bytes=max_bytes)
    results = [outbox.put(b"xx") for _ in range(frames)]
    assert results[-1] is False
    assert outbox.closed
    request = outbox.close_request
    assert request is not None and request.code == CloseCode.POLICY_VIOLATION
    assert "outgoing queue full" in request.reason
    assert outbox.queued_frames == 0  # dropped: the peer is cut off
    assert await asyncio.wait_for(outbox.get(), 1.0) is None
    assert not outbox.put(b"x")


async def test_close_wakes_waiters_and_first_request_wins() -> None:
    outbox = Outbox(max_frames=4, max_bytes=100)
    getter = asyncio.create_task(outbox.get())
    watcher = asyncio.create_task(outbox.wait_closed())
    await asyncio.sleep(0)
    outbox.close(1007, "bad frame")
    outbox.close(1001, "later")
    assert await asyncio.wait_for(getter, 1.0) is None
    assert await asyncio.wait_for(watcher, 1.0) == CloseRequest(1007, "bad frame")


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Outbox(max_frames=0, max_bytes=1)
