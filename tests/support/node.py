"""Run node scripts of tests/interop/node (the real DISCO client and tfjs) from pytest."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

NODE_DIR = Path(__file__).resolve().parents[1] / "interop" / "node"


def node_missing_reason() -> str | None:
    """Why node scripts cannot run here, or None when they can."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (NODE_DIR / "node_modules" / "@epfml" / "discojs-node").is_dir():
        return "the npm test client is not installed (run ./scripts/test.sh)"
    return None


requires_node = pytest.mark.skipif(
    node_missing_reason() is not None, reason=node_missing_reason() or ""
)


def run_node_json(script: str, payload: Any = None, *args: str, timeout: float = 90.0) -> Any:
    """Run `node <script> args...` with `payload` as JSON on stdin; parse its last stdout line."""
    result = subprocess.run(
        ["node", script, *args],
        cwd=NODE_DIR,
        input=json.dumps(payload).encode() if payload is not None else b"",
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"node {script} exited {result.returncode}:\n{result.stderr.decode()[-4000:]}"
        )
    lines = result.stdout.decode().strip().splitlines()
    if not lines:
        raise AssertionError(
            f"node {script} printed nothing; stderr:\n{result.stderr.decode()[-4000:]}"
        )
    return json.loads(lines[-1])
