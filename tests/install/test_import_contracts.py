"""The import contracts of pyproject.toml hold, and `lint-imports` does fail on a back-edge.

scripts/test.sh runs `lint-imports` on the package itself; these tests run it on a copy of the
package with one offending import injected, so a contract that could never fail is caught.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint(tmp_path: Path, inject: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`lint-imports` with the project's contracts on a copy of src/ with `inject`ed lines."""
    source = tmp_path / "src"
    shutil.copytree(
        ROOT / "src" / "disco", source / "disco", ignore=shutil.ignore_patterns("__pycache__")
    )
    for module, line in (inject or {}).items():
        path = source / module
        path.write_text(path.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")
    environment = {**os.environ, "PYTHONPATH": str(source)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(ROOT / "pyproject.toml")],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_package_keeps_its_contracts(tmp_path: Path) -> None:
    result = _lint(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("disco/client/remote.py", "import disco.server.runner", "cli > simulation"),
        ("disco/protocol/framing.py", "from disco.tasks import schema", "cli > simulation"),
        ("disco/server/app.py", "import torch", "never import the client's heavy"),
    ],
    ids=["client-imports-server", "protocol-imports-tasks", "server-imports-torch"],
)
def test_a_back_edge_breaks_a_contract(
    tmp_path: Path, module: str, line: str, broken: str
) -> None:
    result = _lint(tmp_path, {module: line})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 kept, 1 broken" in result.stdout
    assert f"{broken}" in result.stdout.split("Broken contracts")[-1]
