"""Each install is self-sufficient: fresh virtualenvs with only the server (`pip install .`) or
only the client extra (`pip install '.[client]'`) run what the README promises.

The development venv has every extra (and dev's tools), so a dependency missing from an extra
would go unnoticed there. Here the project is built into a wheel once and pip installs it into two
new, isolated virtualenvs (no system site-packages) without its dependencies; each venv then gets
exactly the distributions pip would add for it: the closure of the wheel's declared requirements
(markers and extras evaluated as pip does), each linked file by file from the development venv
(same versions, no download or unpacking of torch's 750 MB). A module that imports a package no
requirement brings in fails there, as it would after a real `pip install`.
"""

from __future__ import annotations

import email.parser
import importlib.metadata
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from interop.harness import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT_S = 900.0
# Every module of these packages must import in the server-only install.
SERVER_SIDE = ("disco.errors", "disco.protocol", "disco.aggregation", "disco.tasks", "disco.server")
CLIENT_ONLY = ("torch", "aiortc", "httpx", "rich", "matplotlib", "sklearn", "PIL")

IMPORT_ALL = """
import importlib, pkgutil, sys
import disco
wanted = sys.argv[1:]
names = [m.name for m in pkgutil.walk_packages(disco.__path__, "disco.")]
chosen = [n for n in names if not wanted or any(n == w or n.startswith(w + ".") for w in wanted)]
for name in chosen:
    importlib.import_module(name)
print(len(chosen), "modules")
"""


def _environment() -> dict[str, str]:
    """This environment without anything that could add packages to the new venvs."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONSTARTUP")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("DISCO_")}
    return {**env, "PYTHONUNBUFFERED": "1", "PIP_NO_INPUT": "1"}


@dataclass(frozen=True)
class Venv:
    path: Path

    def bin(self, name: str) -> str:
        return str(self.path / "bin" / name)

    def run(self, *command: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.bin(command[0]), *command[1:]],
            env=_environment(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _build_wheel(work: Path) -> Path:
    """The project's wheel, built from a copy of its sources (the work tree stays untouched)."""
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(work / "dist"), str(source)],
        env=_environment(), check=True, timeout=300, capture_output=True,
    )  # fmt: skip
    (wheel,) = (work / "dist").glob("disco-*.whl")
    return wheel


def _closure(wheel: Path, extras: frozenset[str]) -> list[importlib.metadata.Distribution]:
    """The installed distributions that `pip install 'wheel[extras]'` would add (by name)."""
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        declared = email.parser.BytesParser().parsebytes(archive.read(metadata))
    wanted = [(Requirement(line), extras) for line in declared.get_all("Requires-Dist") or []]
    found: dict[str, importlib.metadata.Distribution] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    while wanted:
        requirement, context = wanted.pop()
        marker = requirement.marker
        if marker is not None and not any(
            marker.evaluate({"extra": extra}) for extra in (context or {""})
        ):
            continue
        name = canonicalize_name(requirement.name)
        key = (name, frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        distribution = importlib.metadata.distribution(name)
        assert requirement.specifier.contains(distribution.version, prereleases=True), (
            f"the development venv has {name} {distribution.version}, not {requirement}"
        )
        found[name] = distribution
        for line in distribution.requires or []:
            wanted.append((Requirement(line), frozenset(requirement.extras)))
    return list(found.values())


def _link_distributions(venv: Path, distributions: list[importlib.metadata.Distribution]) -> int:
    """Link every file the distributions installed (their RECORD) into the venv's site-packages."""
    (site,) = (venv / "lib").glob("python*/site-packages")
    linked = 0
    for distribution in distributions:
        files = distribution.files
        assert files is not None, f"{distribution.metadata['Name']} has no RECORD"
        for entry in files:
            if entry.parts[0] == ".." or entry.parts[0].endswith(".pth"):
                continue  # console scripts and path hooks of the development venv
            target = site / entry
            if target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(distribution.locate_file(entry))
            linked += 1
    return linked


def _install(work: Path, name: str, wheel: Path, extras: frozenset[str]) -> Venv:
    """A new venv (no pip, no system site-packages) with the wheel and its closure."""
    venv = work / name
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)],
        env=_environment(), check=True, timeout=120, capture_output=True,
    )  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
         "--no-deps", "--no-compile", "--progress-bar", "off", str(wheel)],
        env=_environment(), timeout=INSTALL_TIMEOUT_S, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, f"pip install for the {name} venv failed:\n{done.stderr[-3000:]}"
    linked = _link_distributions(venv, _closure(wheel, extras))
    print(f"{name} venv: {linked} files linked")
    return Venv(venv)


@dataclass(frozen=True)
class Installs:
    server: Venv
    client: Venv
    seconds: float


@pytest.fixture(scope="module")
def installs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installs]:
    """Both venvs, installed from one wheel."""
    work = tmp_path_factory.mktemp("extras")
    started = time.monotonic()
    wheel = _build_wheel(work)
    server = _install(work, "server", wheel, frozenset())
    client = _install(work, "client", wheel, frozenset({"client"}))
    seconds = time.monotonic() - started
    print(f"\nbuilt the wheel and both venvs in {seconds:.0f} s")
    yield Installs(server, client, seconds)
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def server_url(installs: Installs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`disco-server` of the server-only venv, on a free loopback port."""

    @dataclass
    class VenvServer(ServerProcess):
        def command(self) -> list[str]:
            return [installs.server.bin("disco-server"), *super().command()[1:]]

    server = VenvServer(tmp_path_factory.mktemp("server-data") / "data", start_timeout=60.0)
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


def test_the_server_install_runs_without_the_client_dependencies(installs: Installs) -> None:
    venv = installs.server
    absent = venv.run(
        "python", "-c",
        "import importlib.util, sys; "
        "print(*[m for m in sys.argv[1:] if importlib.util.find_spec(m)])",
        *CLIENT_ONLY,
    )  # fmt: skip
    assert absent.returncode == 0, absent.stderr
    assert absent.stdout.split() == [], "the server install pulled in client packages"
    imported = venv.run("python", "-c", IMPORT_ALL, *SERVER_SIDE)
    assert imported.returncode == 0, imported.stderr
    helped = venv.run("disco-server", "--help")
    assert helped.returncode == 0 and "--data-dir" in helped.stdout, helped.stderr


def test_the_server_install_says_the_client_is_missing(installs: Installs, server_url: str) -> None:
    venv = installs.server
    helped = venv.run("disco", "--help")
    assert helped.returncode == 0 and "simulate" in helped.stdout, helped.stderr
    listed = venv.run("disco", "tasks", "--server", server_url)
    assert listed.returncode == 1
    (line,) = listed.stderr.strip().splitlines()
    assert line.startswith("disco: error: disco tasks needs the Python client: ")
    assert "pip install 'disco[client]'" in line


def test_the_client_install_runs_the_cli(installs: Installs, server_url: str) -> None:
    venv = installs.client
    imported = venv.run("python", "-c", IMPORT_ALL, timeout=300)
    assert imported.returncode == 0, imported.stderr
    for command in ("disco", "disco-server"):
        helped = venv.run(command, "--help", timeout=120)
        assert helped.returncode == 0, helped.stderr
    listed = venv.run("disco", "tasks", "--server", server_url, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert "titanic" in listed.stdout and "mnist" in listed.stdout
