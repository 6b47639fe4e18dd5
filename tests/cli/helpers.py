"""Assertions and waits shared by the CLI tests."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import pytest

RunDisco = Callable[..., subprocess.CompletedProcess[str]]
StartDisco = Callable[..., subprocess.Popen[str]]


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll `condition` every 50 ms; fail the test naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Non-zero exit, no traceback, exactly one stderr line holding every fragment."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("disco: error: "), line
    for fragment in fragments:
        assert fragment in line, line
    return line


def run_in_process(
    capsys: pytest.CaptureFixture[str], *args: str
) -> subprocess.CompletedProcess[str]:
    """`disco ARGS` in this process (no interpreter start-up: cheap for refusals and reports)."""
    from disco.cli.main import main

    status = main(list(args))
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(["disco", *args], status, captured.out, captured.err)
