"""What every benchmark's JSON report shares: the machine it ran on, and writing it out."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]


def machine() -> dict[str, Any]:
    """Python, cores, RAM and the load average now (the dev machine is shared: say how busy)."""
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def write_report(report: dict[str, Any], output: Path) -> None:
    """`report` as indented JSON at `output` (folders created), announced on stderr."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written {output}", file=sys.stderr)
