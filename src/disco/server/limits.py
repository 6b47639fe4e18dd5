"""Per-IP limits an operator can set, so that one address cannot crowd everyone else out.

`ClientLimits` (ASGI middleware) caps, per client IP address:
- the connections it holds at once (HTTP requests in progress and open WebSockets:
  `Settings.max_connections_per_ip`);
- the rate at which it opens them (a token bucket: `requests_per_ip_per_s` sustained, bursts of
  `request_burst_per_ip`).
An HTTP request over a limit is answered 429 with a JSON reason and `Retry-After`; a WebSocket is
accepted and closed at once with 1008 and the reason (so a client sees why, not a bare 403).
Refusals are logged at most once per address every `LOG_EVERY_S`, so a flood cannot flood the
log. Both limits are off by default (every test client, like every participant behind one NAT,
shares an address): set them on an exposed server. The uvicorn timeouts that keep idle
connections from piling up are set in `disco.server.runner`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

from disco.protocol.errors import CloseCode
from disco.server.http.errors import error_response

log = logging.getLogger("disco.server.limits")

LOG_EVERY_S: Final = 10.0
MAX_TRACKED: Final = 10_000
"""Addresses whose buckets are kept; past this, idle (full) buckets are forgotten."""


@dataclass
class _Bucket:
    tokens: float
    updated: float


class ClientLimits:
    """ASGI middleware enforcing the per-IP limits (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        max_connections: int | None = None,
        rate_per_s: float | None = None,
        burst: int = 1,
    ) -> None:
        self.app = app
        self.max_connections = max_connections
        self.rate_per_s = rate_per_s
        self.burst = max(1, burst)
        self._open: dict[str, int] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._logged: dict[str, float] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket") or (
            self.max_connections is None and self.rate_per_s is None
        ):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        address = str(client[0]) if client else "unknown"
        refusal = self._admit(address)
        if refusal is not None:
            reason, retry_after_s = refusal
            self._log(address, kind, reason)
            await _refuse(scope, receive, send, reason, retry_after_s)
            return
        self._open[address] = self._open.get(address, 0) + 1
        try:
            await self.app(scope, receive, send)
        finally:
            left = self._open[address] - 1
            if left:
                self._open[address] = left
            else:
                del self._open[address]

    def _admit(self, address: str) -> tuple[str, float] | None:
        """None when `address` may open one more connection now, else (reason, retry after)."""
        if self.max_connections is not None and self._open.get(address, 0) >= self.max_connections:
            return (
                f"too many connections from your address (at most {self.max_connections} at once)",
                1.0,
            )
        if self.rate_per_s is None:
            return None
        now = time.monotonic()
        bucket = self._buckets.get(address)
        if bucket is None:
            if len(self._buckets) >= MAX_TRACKED:
                self._forget_idle(now)
            bucket = self._buckets[address] = _Bucket(float(self.burst), now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate_per_s)
        bucket.updated = now
        if bucket.tokens < 1.0:
            wait = (1.0 - bucket.tokens) / self.rate_per_s
            return (
                f"too many requests from your address (at most {self.rate_per_s:g} per second)",
                wait,
            )
        bucket.tokens -= 1.0
        return None

    def _forget_idle(self, now: float) -> None:
        assert self.rate_per_s is not None
        for address, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.updated) * self.rate_per_s >= self.burst:
                del self._buckets[address]
        if len(self._buckets) >= MAX_TRACKED:  # all busy: start over rather than grow
            self._buckets.clear()
        self._logged.clear()

    def _log(self, address: str, kind: str, reason: str) -> None:
        now = time.monotonic()
        if now - self._logged.get(address, -math.inf) >= LOG_EVERY_S:
            self._logged[address] = now
            log.warning("%s from %s refused: %s", kind, address, reason)


async def _refuse(
    scope: Scope, receive: Receive, send: Send, reason: str, retry_after_s: float
) -> None:
    """429 with a JSON reason, or a WebSocket accepted then closed with 1008 and the reason."""
    if scope["type"] == "http":
        headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))}
        await error_response(429, reason, headers)(scope, receive, send)
        return
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": int(CloseCode.POLICY_VIOLATION),
                "reason": reason})  # fmt: skip
