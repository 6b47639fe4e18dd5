"""Wait for the next queued item unless a connection closes first (signaling and peer links)."""

from __future__ import annotations

import asyncio
from typing import TypeVar

from disco.errors import DiscoError

T = TypeVar("T")


class ClosedWhileWaiting(DiscoError):
    """The connection closed before an item arrived."""


async def next_item(queue: asyncio.Queue[T], closed: asyncio.Event, timeout_s: float) -> T:
    """The next item of `queue`; ClosedWhileWaiting once `closed` is set, TimeoutError after
    `timeout_s`. Queued items are returned even when the connection has closed since."""
    if not queue.empty():
        return queue.get_nowait()
    if closed.is_set():
        raise ClosedWhileWaiting
    getter = asyncio.ensure_future(queue.get())
    closing = asyncio.ensure_future(closed.wait())
    try:
        done, _ = await asyncio.wait(
            {getter, closing}, timeout=max(timeout_s, 0.0), return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        closing.cancel()
        if not getter.done():
            getter.cancel()
    if getter in done:
        return getter.result()
    if closed.is_set():
        raise ClosedWhileWaiting
    raise TimeoutError
