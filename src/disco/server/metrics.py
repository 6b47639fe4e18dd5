"""What an operator watches: the server's Prometheus metrics, served as text at `GET /metrics`.

Every app has its own `ServerMetrics` (its own registry, so several servers in one process, as
in tests, never share counters). The figures:

- `disco_connections{task, scheme}`: open WebSocket connections (scheme federated or
  decentralized);
- `disco_rounds_completed_total{task}` and `disco_round_duration_seconds{task}`: federated rounds
  aggregated, and the time from a round's start (the previous round's publication, or the
  task's first connection) to its publication;
- `disco_contributions_total{task, result}`: federated updates, `result` being the post
  acknowledgement's status (accepted, or the refusal's reason: stale, future, invalid, closed);
- `disco_received_bytes_total{transport}`, `disco_sent_bytes_total{transport}`: request and
  response bodies (http) and WebSocket frames (websocket), counted by `TrafficMiddleware`
  (frames written through the WebSocket layer's direct path too);
- `disco_aggregation_seconds{task}`, `disco_persistence_seconds{task}`: time spent combining a
  round's updates and writing the new model to disk;
- `disco_ws_receive_budget_bytes`, `disco_ws_receive_held_bytes`, `disco_ws_receive_waiting`,
  `disco_ws_receive_waits_total`: the server-wide budget big incoming WebSocket frames share
  (`disco.server.receive_budget`), the bytes held now, the frames waiting for their turn now and
  since start. Waits that keep rising mean the budget is too small for the traffic (or a peer
  sends faster than the server folds updates): senders are then held back by TCP.

Labels only carry ids of tasks that exist (a connection to an unknown task is refused before it
counts), so the series stay bounded.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from disco.protocol.messages import PostStatus
from disco.server.receive_budget import ReceiveBudget
from disco.server.ws_transport import DIRECT_WRITE, FrameWriter, ServerFrame

Scheme = Literal["federated", "decentralized"]

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
"""The media type of `exposition()` (Prometheus text format 0.0.4)."""

_SECONDS_BUCKETS: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_ROUND_BUCKETS: Final = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


class ServerMetrics:
    """The server's metrics (see the module docstring) in a registry of their own."""

    def __init__(self, receive_budget: ReceiveBudget | None = None) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        if receive_budget is not None:
            registry.register(ReceiveBudgetCollector(receive_budget))
        # labels() validates and locks on every call; one post each: keep the children.
        self._contribution_counters: dict[tuple[str, PostStatus], Counter] = {}
        self.connections = Gauge(
            "disco_connections", "Open WebSocket connections", ["task", "scheme"],
            registry=registry,
        )  # fmt: skip
        self.rounds_completed = Counter(
            "disco_rounds_completed", "Federated rounds aggregated", ["task"], registry=registry
        )
        self.round_duration = Histogram(
            "disco_round_duration_seconds", "From a federated round's start to its publication",
            ["task"], buckets=_ROUND_BUCKETS, registry=registry,
        )  # fmt: skip
        self.contributions = Counter(
            "disco_contributions", "Federated updates, by the post acknowledgement's status",
            ["task", "result"], registry=registry,
        )  # fmt: skip
        self.received_bytes = Counter(
            "disco_received_bytes", "Bytes of request bodies and WebSocket frames received",
            ["transport"], registry=registry,
        )  # fmt: skip
        self.sent_bytes = Counter(
            "disco_sent_bytes", "Bytes of response bodies and WebSocket frames sent",
            ["transport"], registry=registry,
        )  # fmt: skip
        self.aggregation_seconds = Histogram(
            "disco_aggregation_seconds", "Time to combine a round's updates", ["task"],
            buckets=_SECONDS_BUCKETS, registry=registry,
        )  # fmt: skip
        self.persistence_seconds = Histogram(
            "disco_persistence_seconds", "Time to store a new global model", ["task"],
            buckets=_SECONDS_BUCKETS, registry=registry,
        )  # fmt: skip

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format."""
        return generate_latest(self.registry)

    def connected(self, task_id: str, scheme: Scheme) -> None:
        """A connection to an existing task started."""
        self.connections.labels(task_id, scheme).inc()

    def disconnected(self, task_id: str, scheme: Scheme) -> None:
        """A connection counted by `connected` ended."""
        self.connections.labels(task_id, scheme).dec()

    def contribution(self, task_id: str, status: PostStatus) -> None:
        """A federated update was accepted or refused (`status`: why)."""
        key = (task_id, status)
        counter = self._contribution_counters.get(key)
        if counter is None:
            counter = self._contribution_counters[key] = self.contributions.labels(
                task_id, status.value
            )
        counter.inc()

    def round_completed(
        self, task_id: str, round_s: float, aggregation_s: float, persistence_s: float
    ) -> None:
        """A federated round was aggregated, stored and published."""
        self.rounds_completed.labels(task_id).inc()
        self.round_duration.labels(task_id).observe(round_s)
        self.aggregation_seconds.labels(task_id).observe(aggregation_s)
        self.persistence_seconds.labels(task_id).observe(persistence_s)


class ReceiveBudgetCollector(Collector):
    """The receive budget's figures, read when scraped (the budget stays free of metric calls on
    the frame path)."""

    def __init__(self, budget: ReceiveBudget) -> None:
        self.budget = budget

    def collect(self) -> Iterator[Metric]:
        budget = self.budget
        yield GaugeMetricFamily(
            "disco_ws_receive_budget_bytes", "Bytes big incoming WebSocket frames may hold at once",
            value=budget.limit,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "disco_ws_receive_held_bytes", "Bytes held now by big incoming WebSocket frames",
            value=budget.held,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "disco_ws_receive_waiting", "Big incoming WebSocket frames waiting for the budget now",
            value=budget.waiting,
        )  # fmt: skip
        yield CounterMetricFamily(
            "disco_ws_receive_waits", "Big incoming WebSocket frames that waited for the budget",
            value=budget.waits,
        )  # fmt: skip


class TrafficMiddleware:
    """ASGI middleware counting the bytes of bodies and WebSocket frames, both ways."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        received = self.metrics.received_bytes.labels(kind)
        sent = self.metrics.sent_bytes.labels(kind)

        async def counting_receive() -> Message:
            message = await receive()
            size = _payload_size(message, "body" if kind == "http" else "bytes")
            if size:
                received.inc(size)
            return message

        async def counting_send(message: Message) -> None:
            size = _payload_size(message, "body" if kind == "http" else "bytes")
            await send(message)
            if size:
                sent.inc(size)

        if kind == "websocket":
            scope = _counting_direct_writes(scope, sent)
        await self.app(scope, counting_receive, counting_send)


def _counting_direct_writes(scope: Scope, sent: Counter) -> Scope:
    """`scope` with its direct frame writer (`ws_transport.DIRECT_WRITE`), if any, counting the
    frames it writes."""
    extensions = scope.get("extensions") or {}
    direct = extensions.get(DIRECT_WRITE)
    if direct is None:
        return scope
    write: FrameWriter = direct["write"]

    def counting_write(frame: ServerFrame) -> bool:
        if not write(frame):
            return False
        sent.inc(len(frame.payload))
        return True

    extension = {**direct, "write": counting_write}
    return {**scope, "extensions": {**extensions, DIRECT_WRITE: extension}}


def _payload_size(message: Message, key: str) -> int:
    """Bytes a body or frame message carries (a text frame counted as its UTF-8 length)."""
    payload = message.get(key)
    if payload:
        return len(payload)
    text = message.get("text")
    return len(text.encode("utf-8")) if isinstance(text, str) else 0
