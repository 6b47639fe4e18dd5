"""Server configuration: one typed object, built from CLI flags and environment
(`disco.cli.server.ServerOptions`, read by pydantic-settings) or directly by tests and embedders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from disco.server.logs import LogFormat

MiB = 1024 * 1024


def _lower(value: object) -> object:
    """Accept `INFO` as well as `info`: both spellings are common in env vars."""
    return value.lower() if isinstance(value, str) else value


EventLoop = Literal["auto", "asyncio", "uvloop"]

LogLevel = Annotated[
    Literal["critical", "error", "warning", "info", "debug", "trace"], BeforeValidator(_lower)
]


class Settings(BaseModel):
    """Every tunable of the server, with the embedded defaults `disco-server` starts with."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535, description="0: any free port")
    data_dir: Path = Path("disco-data")
    tasks_dir: Path | None = Field(
        default=None, description="extra task definitions loaded at start-up"
    )
    log_level: LogLevel = "info"
    log_format: LogFormat = Field(
        default="text", description="json: one JSON object per line, with task, client, round"
    )
    load_default_tasks: bool = True
    event_loop: EventLoop = Field(
        default="asyncio",
        description="the event loop uvicorn runs: asyncio (the standard library's), uvloop (when"
        " installed; not a dependency: it cut no measurable server CPU in back-to-back bench"
        " runs), or auto: uvloop when installed. Explicit, so that uvloop installed for another"
        " package does not silently change the server's loop (uvicorn's own default is auto)",
    )

    # TLS (uvicorn's): with a certificate the server speaks only https:// and wss://.
    ssl_certfile: Path | None = Field(
        default=None, description="PEM certificate chain (with the key too, unless ssl_keyfile)"
    )
    ssl_keyfile: Path | None = Field(default=None, description="PEM private key")

    # Input limits
    max_body_bytes: int = Field(default=256 * MiB, gt=0, description="largest HTTP request body")
    max_frame_bytes: int = Field(default=256 * MiB, gt=0, description="largest WebSocket frame")

    # Per-IP limits (`disco.server.limits`), off by default: participants behind one NAT share
    # an address. Over a limit: HTTP 429, WebSocket close 1008, each with a reason.
    max_connections_per_ip: int | None = Field(
        default=None, ge=1, description="HTTP requests in progress + open WebSockets per address"
    )
    requests_per_ip_per_s: float | None = Field(
        default=None, gt=0, description="sustained rate of new requests/WebSockets per address"
    )
    request_burst_per_ip: int = Field(
        default=50, ge=1, description="requests an address may make at once above that rate"
    )
    # uvicorn's connection limits: idle keep-alive connections are closed after
    # `keep_alive_timeout_s`; past `max_connections` new connections get 503 at once.
    keep_alive_timeout_s: int = Field(default=5, ge=1)
    request_header_timeout_s: float = Field(
        default=15.0,
        gt=0,
        description="seconds a request's head may take to arrive, from the connection's start or"
        " the request's first byte (`disco.server.http_protocol`); past it: 408 and close, so"
        " that silent or trickling connections cannot hold connection slots",
    )
    max_connections: int | None = Field(default=None, ge=1)

    # Access control: when set, POST /tasks and admin routes need `Authorization: Bearer <token>`
    # (or `X-Admin-Token`). Kept out of repr so it never lands in logs.
    admin_token: str | None = Field(default=None, min_length=1, repr=False)

    # WebSocket keepalive (uvicorn pings every connection): a peer that answers no ping within
    # the timeout is dropped, which is how a connection that died silently (frozen process,
    # vanished host: no FIN, no RST) is noticed. Generous by default: while the server decodes a
    # large frame it does not read pongs. None disables.
    ws_ping_interval_s: float | None = Field(default=20.0, gt=0)
    ws_ping_timeout_s: float | None = Field(default=60.0, gt=0)
    # WebSocket receive path (`disco.server.ws_transport`): frames over 256 KiB reserve their
    # length from one server-wide budget before they are read; a connection whose frame does
    # not fit is not read until earlier frames are done with (first come, first served).
    ws_receive_budget_bytes: int = Field(
        default=32 * MiB,
        gt=0,
        description="bytes that big incoming WebSocket frames may hold at once, server-wide"
        " (a bigger frame is read alone). 32 MiB: two 13.5 MB legacy posts or eight 4 MB native"
        " updates at a time. Reading is serial on the event loop anyway, so the budget mostly"
        " bounds how many frames are held and decoded at once: for 10 legacy clients at P=1e6"
        " the server's RSS above idle was 131 MB with 64 MiB, 85 MB with 32 MiB, 59 MB with"
        " 16 MiB, for the same round time; a native N=10 P=1e6 round took 0.98, 1.15 and 1.20 x"
        " a bare WebSocket transfer (bench/memory.py, bench/federated_round.py). The price: big"
        " uploads beyond the budget are received one after another, which costs nothing on a"
        " fast network (the event loop reads one socket at a time anyway) but serializes"
        " clients on slow links: raise it when many clients upload big models over slow links",
    )
    ws_min_receive_rate: float = Field(
        default=256 * 1024,
        gt=0,
        description="bytes/s below which a big frame's sender is closed with 1008 while other"
        " frames wait for the budget (a frame has max(10 s, length / rate) once its reservation"
        " is granted), so that a slow sender cannot keep the budget from others; a slow sender"
        " that keeps no one waiting is let be",
    )
    upload_resume_s: float = Field(
        default=600.0,
        ge=0,
        description="seconds a chunked upload cut short by a lost connection is kept for its"
        " client to resume on a new one (0: never kept, the client uploads again)",
    )
    resumable_uploads: int = Field(
        default=16,
        ge=0,
        description="interrupted uploads kept per task at most (the oldest goes first); each"
        " holds up to one model's float32 size on disk",
    )
    duplicate_client_grace_s: float = Field(
        default=2.0,
        ge=0,
        description="seconds a federated connection whose clientID is still connected waits for"
        " the old connection to go before it is refused (a client reconnecting right after its"
        " socket died is let in)",
    )

    # Federated round engine
    round_deadline_s: float = Field(
        default=5.0, gt=0, description="seconds after the quorum before a round aggregates anyway"
    )
    max_staleness: int = Field(
        default=1, ge=0, description="rounds an update may lag behind and still be accepted"
    )
    default_min_participants: int | None = Field(
        default=None,
        ge=1,
        description="quorum of tasks that omit minNbOfParticipants; None: DISCO's default"
        " (`disco.tasks.schema.DEFAULT_MIN_PARTICIPANTS`). Only the server reads the quorum, so"
        " it may differ from the task's default; the ready-peer minimum has no such setting:"
        " every peer reads it from the task, and they must agree",
    )
    aggregation_thread_threshold: int = Field(
        default=100_000,
        ge=0,
        description="parameters×clients above which aggregation leaves the loop",
    )

    # Decentralized signaling
    readiness_deadline_s: float = Field(
        default=3.0,
        gt=0,
        description="seconds after the minimum is ready before a round starts"
        " (under the 2.1.1 client's own 10 s wait for its peer list)",
    )

    @model_validator(mode="after")
    def _key_needs_certificate(self) -> Settings:
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ValueError("ssl_keyfile is set but ssl_certfile is not")
        return self

    @property
    def tls(self) -> bool:
        """Whether the server serves https:// and wss:// only."""
        return self.ssl_certfile is not None
