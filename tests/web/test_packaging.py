"""A built wheel ships the web app: everything build.json lists, so `pip install` serves /app/."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from disco.web import static_dir

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_wheel_contains_the_built_web_app(tmp_path: Path) -> None:
    root = static_dir()
    if root is None:
        pytest.fail("the web app is not built: run scripts/bootstrap.sh (or scripts/test.sh)")
    manifest = json.loads((root / "build.json").read_text())
    # Built from a copy: a build in the checkout would write build/ and *.egg-info there, under
    # the feet of tests running meanwhile on other workers.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(source)],
        check=True, timeout=240, capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("disco-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"disco/web/static/{name}" for name in manifest["files"]}
    expected.add("disco/web/static/build.json")
    assert expected <= names, sorted(expected - names)
    assert any(name.endswith(".wasm") for name in expected)
    assert "disco/web/static/index.html" in names
