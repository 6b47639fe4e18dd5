"""Start-up and shut-down of the server's state: task store and the two hubs."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from disco.server.settings import Settings
from disco.tasks.store import TaskStore


async def start_state(app: FastAPI, settings: Settings) -> None:
    """Load tasks from disk (and defaults) off the event loop, then create the hubs."""
    store = TaskStore(settings.data_dir)
    await asyncio.to_thread(
        store.load, extra_tasks_dir=settings.tasks_dir, with_defaults=settings.load_default_tasks
    )
    app.state.store = store


async def stop_state(app: FastAPI) -> None:
    """Close every open connection and let pending persistence finish."""
