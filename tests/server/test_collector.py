"""The server process's garbage collector settings (`disco.server.collector`)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from disco.server import collector, runner
from disco.server.settings import Settings

PROBE = """
import gc
from disco.server.collector import tune_collector
before = gc.get_threshold()
tune_collector()
after = gc.get_threshold()
print(gc.get_freeze_count() > 1000, before[1:] == after[1:], after[0])
"""


def test_the_collector_skips_start_up_objects_and_young_garbage_waits_longer() -> None:
    """In a process of its own: freezing is for the whole process."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True
    ).stdout.split()
    assert out == ["True", "True", str(collector.YOUNG_THRESHOLD)]


def test_the_server_process_tunes_the_collector_once_the_app_is_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(runner, "tune_allocator", lambda: None)
    monkeypatch.setattr(runner, "start_idle_trimmer", lambda: None)
    monkeypatch.setattr(runner.signal, "signal", lambda *args: None)
    monkeypatch.setattr(runner, "create_app", lambda settings: calls.append("app"))
    monkeypatch.setattr(runner.DiscoServer, "__init__", lambda self, app, settings: None)
    monkeypatch.setattr(runner.DiscoServer, "run", lambda self: calls.append("run"))
    monkeypatch.setattr(runner, "tune_collector", lambda: calls.append("collector"))
    runner.run_server(Settings())
    assert calls == ["app", "collector", "run"]
