"""The server's state, typed, and the FastAPI dependencies that hand it to the routes.

One `ServerState` lives on the app (`app.state.disco`, read only by `server_state`). The app's
lifespan creates it (`start_state`: settings, the task store loaded, upload slots, the event bus
of live pages); then the
lifespans of the federated and decentralized routers (`APIRouter(lifespan=...)`, entered right
after it by the app's lifespan, and left right before `stop_state`) each start their hub and
publish it on the state with `running_hub`. Routes never read `app.state`: they declare what
they need (`StateDep`, `StoreDep`, `SettingsDep`, or a hub dependency of their router).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol, TypeVar

from fastapi import Depends
from starlette.applications import Starlette
from starlette.requests import HTTPConnection

from disco.server.decentralized.hub import SignalingHub
from disco.server.enrollment import Enrollment, TokenStore
from disco.server.events import EventBus
from disco.server.federated.hub import FederatedHub
from disco.server.metrics import ServerMetrics
from disco.server.settings import Settings
from disco.tasks.store import TaskNotFoundError, TaskStore

log = logging.getLogger("disco.server")

LAST_ROUNDS = 10
"""Completed rounds in a task's live snapshot."""
EVENT_INTERVAL_S = 0.2
"""At most one live snapshot per task this often (see `disco.server.events`)."""

# Task uploads read and decode whole bodies (up to max_body_bytes each, a few times that while
# decoding): at most this many at once bounds the memory they take together.
MAX_CONCURRENT_UPLOADS = 2


class TaskStatusReporter(Protocol):
    """A hub that reports the live progress of a task for `GET /tasks/{taskID}/status`.

    `task_status` returns the status keys it knows (see `disco.server.http.routes.TaskStatus`),
    or None when nothing runs for the task. It is called on the event loop: synchronous, cheap.
    """

    def task_status(self, task_id: str) -> Mapping[str, Any] | None: ...


class Hub(TaskStatusReporter, Protocol):
    """A service a router runs for the server's lifetime."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


@dataclass(eq=False)
class ServerState:
    """Everything the routes share; a hub is None while it is not running. `events` pushes
    `snapshot`s of the tasks that changed to live pages (`GET /events`)."""

    settings: Settings
    store: TaskStore
    upload_slots: asyncio.Semaphore
    enrollment: Enrollment
    metrics: ServerMetrics
    federated: FederatedHub | None = None
    decentralized: SignalingHub | None = None
    events: EventBus = field(init=False)

    def __post_init__(self) -> None:
        self.events = EventBus(self.snapshot, interval_s=EVENT_INTERVAL_S)

    def status_reporters(self) -> list[TaskStatusReporter]:
        """The running hubs, each of which may report on a task."""
        return [hub for hub in (self.federated, self.decentralized) if hub is not None]

    def snapshot(self, task_id: str) -> dict[str, Any] | None:
        """What live pages show of a task now (the data of `GET /events`' `task` events, see
        docs/protocol.md "Live events"); None for an unknown task."""
        try:
            stored = self.store.get(task_id)
        except TaskNotFoundError:
            return None
        info = stored.task.training_information
        federated = None if self.federated is None else self.federated.live_status(task_id)
        decentralized = (
            None if self.decentralized is None else self.decentralized.live_status(task_id)
        )
        round_ = max(stored.round, 0 if federated is None else int(federated["round"]))
        if str(info.scheme) == "decentralized" and decentralized is not None:
            last_rounds = decentralized["completedRounds"][-LAST_ROUNDS:]
        else:
            last_rounds = [entry.to_json() for entry in stored.history[-LAST_ROUNDS:]]
        return {
            "taskID": stored.task_id,
            "title": stored.task.display_information.task_title,
            "scheme": str(info.scheme),
            "dataType": info.data_type,
            "round": round_,
            "connected": {
                "federated": 0 if federated is None else federated["connected"],
                "decentralized": 0 if decentralized is None else decentralized["connected"],
            },
            "federated": federated,
            "decentralized": decentralized,
            "lastRounds": last_rounds,
        }


def server_state(app: Starlette) -> ServerState:
    """The app's state; RuntimeError before the app's lifespan created it."""
    try:
        state = app.state.disco
    except AttributeError:
        raise RuntimeError(
            "the server state is not set up: the app's lifespan has not run"
        ) from None
    if not isinstance(state, ServerState):
        raise RuntimeError(f"app.state.disco is not a ServerState: {type(state).__name__}")
    return state


async def start_state(
    app: Starlette, settings: Settings, metrics: ServerMetrics | None = None
) -> ServerState:
    """Load tasks (and defaults, and `tasks_dir`) and participant tokens from disk off the
    event loop; `metrics`: those the app's middleware counts into (new ones by default)."""
    store = TaskStore(settings.data_dir)
    await asyncio.to_thread(
        store.load, extra_tasks_dir=settings.tasks_dir, with_defaults=settings.load_default_tasks
    )
    tokens = TokenStore(settings.data_dir)
    await asyncio.to_thread(tokens.load)
    state = ServerState(
        settings, store, asyncio.Semaphore(MAX_CONCURRENT_UPLOADS), Enrollment(store, tokens),
        metrics or ServerMetrics(),
    )  # fmt: skip
    app.state.disco = state
    log.info("serving %d tasks from %s", len(store), settings.data_dir.resolve())
    return state


async def stop_state(app: Starlette) -> None:
    """End the event streams; nothing to flush: the store persists every change before it
    returns. The state stays readable (hubs None) so late connections are told the service is
    not running."""
    end_event_streams(app)
    log.debug("server state stopped")


def end_event_streams(app: Starlette) -> None:
    """End every open `GET /events` stream (at shut-down: they would hold it up otherwise)."""
    state = getattr(app.state, "disco", None)
    if isinstance(state, ServerState):
        state.events.close()


async def drain(app: Starlette) -> None:
    """The first step of a graceful stop, once the server accepts no new connections: end the
    event streams; the hubs refuse new connections, ask every live one to close (1001, "server
    shutting down"), and the federated one waits for a running aggregation to finish and its
    model to be persisted. Idempotent: the routers' lifespans close the hubs again later."""
    end_event_streams(app)
    state = getattr(app.state, "disco", None)
    if not isinstance(state, ServerState):
        return
    hubs = [hub for hub in (state.federated, state.decentralized) if hub is not None]
    log.info("stopping: closing %d service(s); a running aggregation is finished first", len(hubs))
    await asyncio.gather(*(hub.close() for hub in hubs))


H = TypeVar("H", bound=Hub)


@asynccontextmanager
async def running_hub(hub: H, publish: Callable[[H | None], None]) -> AsyncIterator[H]:
    """Start `hub` and publish it while it runs; on exit unpublish it first (new connections
    are then told the service is not running), then close it."""
    await hub.start()
    publish(hub)
    try:
        yield hub
    finally:
        publish(None)
        await hub.close()


# The dependencies below (and the routers' other trivial ones) are `async def` on purpose:
# FastAPI runs a plain `def` dependency in anyio's thread pool, a thread hop (and, the first
# time, the import of anyio's backend) for an attribute read.


async def _state(connection: HTTPConnection) -> ServerState:
    return server_state(connection.app)


async def _store(state: Annotated[ServerState, Depends(_state)]) -> TaskStore:
    return state.store


async def _settings(state: Annotated[ServerState, Depends(_state)]) -> Settings:
    return state.settings


StateDep = Annotated[ServerState, Depends(_state)]
"""The server state, for HTTP and WebSocket routes alike."""
StoreDep = Annotated[TaskStore, Depends(_store)]
SettingsDep = Annotated[Settings, Depends(_settings)]
