"""Start-up and shut-down of the server's own state: settings and the task store.

The federated and decentralized hubs are not created here: each is created by the lifespan of
its router (`APIRouter(lifespan=...)` in `federated/routes.py` / `decentralized/routes.py`), which
FastAPI runs right after `start_state` and stops right before `stop_state` (CONTRACTS.md). They can
rely on `app.state.settings` and `app.state.store` being set.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI

from disco.server.settings import Settings
from disco.tasks.store import TaskStore

log = logging.getLogger("disco.server")

# Task uploads read and decode whole bodies (up to max_body_bytes each, a few times that while
# decoding): at most this many at once bounds the memory they take together.
MAX_CONCURRENT_UPLOADS = 2


async def start_state(app: FastAPI, settings: Settings) -> None:
    """Load tasks from disk (and defaults, and `tasks_dir`) off the event loop."""
    app.state.settings = settings
    store = TaskStore(settings.data_dir)
    await asyncio.to_thread(
        store.load, extra_tasks_dir=settings.tasks_dir, with_defaults=settings.load_default_tasks
    )
    app.state.store = store
    app.state.upload_slots = asyncio.Semaphore(MAX_CONCURRENT_UPLOADS)
    log.info("serving %d tasks from %s", len(store), settings.data_dir.resolve())


async def stop_state(app: FastAPI) -> None:
    """Nothing to flush: the store persists every change before it returns."""
    log.debug("server state stopped")
