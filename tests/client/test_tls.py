"""A federated round over TLS: a throwaway CA signs the server's certificate (`--ssl-certfile`,
`--ssl-keyfile`); the Python client and CLI trust that CA through their CA file option."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from disco.cli.main import main as disco_main
from disco.cli.server import tls_problem
from disco.client import Client
from disco.client.federated import FederatedError, FederatedSession
from disco.client.remote import ServerError
from disco.server.runner import serve_in_thread
from disco.server.settings import Settings
from support.tls import TlsFiles, make_tls_files

TASK = "titanic"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def https_server(tmp_path: Path, tls_files: TlsFiles) -> Iterator[str]:
    settings = Settings(
        data_dir=tmp_path / "data",
        port=0,
        log_level="warning",
        round_deadline_s=5.0,
        ssl_certfile=tls_files.server_cert,
        ssl_keyfile=tls_files.server_key,
    )
    with serve_in_thread(settings) as url:
        yield url


async def test_federated_round_over_tls(https_server: str, tls_files: TlsFiles) -> None:
    assert https_server.startswith("https://127.0.0.1:")
    client = Client(https_server, ca_file=tls_files.ca_cert)
    assert TASK in [t.task_id for t in await client.tasks_async()]

    async def participant(index: int) -> tuple[int, int]:
        async with FederatedSession(client.server, TASK, f"tls-{index}") as session:  # wss://
            round_, weights = await session.latest()
            update = [w + 0.01 * (index + 1) for w in weights]
            exchange = await session.contribute(update, round_, 10, timeout_s=30.0)
            assert exchange.weights is not None, "the round was not aggregated"
            return round_, exchange.round

    (start, after), (start2, after2) = await asyncio.gather(participant(0), participant(1))
    assert start == start2 and after == after2 == start + 1


async def test_untrusted_certificate_is_refused(https_server: str) -> None:
    """Without the CA file the system CAs do not know the server's issuer: no connection."""
    with pytest.raises(ServerError, match="CERTIFICATE_VERIFY_FAILED"):
        await Client(https_server).tasks_async()
    with pytest.raises(FederatedError, match="CERTIFICATE_VERIFY_FAILED"):
        async with FederatedSession(https_server, TASK):
            pass


def test_cli_tasks_over_tls(
    https_server: str, tls_files: TlsFiles, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["tasks", "--server", https_server, "--ca-file", str(tls_files.ca_cert)]
    assert disco_main(argv) == 0
    assert TASK in capsys.readouterr().out
    assert disco_main(["tasks", "--server", https_server]) == 1
    assert "CERTIFICATE_VERIFY_FAILED" in capsys.readouterr().err


def test_server_refuses_unusable_tls_files(tls_files: TlsFiles, tmp_path: Path) -> None:
    assert tls_problem(tls_files.server_cert, tls_files.server_key) is None
    assert "no such file" in str(tls_problem(tmp_path / "missing.pem", None))
    other = make_tls_files(tmp_path / "other")
    assert "cannot use certificate" in str(tls_problem(tls_files.server_cert, other.server_key))
    with pytest.raises(ValueError, match="ssl_certfile"):
        Settings(ssl_keyfile=tls_files.server_key)
