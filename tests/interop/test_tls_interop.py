"""Two real 2.1.1 JS clients train titanic over https:// and wss:// (a throwaway CA, given to
Node through NODE_EXTRA_CA_CERTS)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from disco.server.runner import serve_in_thread
from disco.server.settings import Settings
from interop.datasets import good_shards
from interop.harness import ROUND_DEADLINE_S
from interop.test_federated_interop import adopted, train
from support.tls import make_tls_files

pytestmark = pytest.mark.interop


@pytest.fixture
def https_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    files = make_tls_files(tmp_path / "tls")
    monkeypatch.setenv("NODE_EXTRA_CA_CERTS", str(files.ca_cert))  # the node processes' trust
    settings = Settings(
        data_dir=tmp_path / "data",
        port=0,
        log_level="warning",
        round_deadline_s=ROUND_DEADLINE_S,
        ssl_certfile=files.server_cert,
        ssl_keyfile=files.server_key,
    )
    with serve_in_thread(settings) as url:
        yield url


async def test_js_clients_train_over_tls(
    https_server: str, tmp_path: Path, node_client_dir: Path
) -> None:
    assert https_server.startswith("https://")
    shards = good_shards(tmp_path / "data", 2)
    records = await asyncio.gather(
        *(train(https_server, f"c{i}", s, tmp_path / "barrier", 2) for i, s in enumerate(shards))
    )
    for record in records:
        assert record["ok"], record.get("error")
        assert record["closes"] == [], record["closes"]
        assert len(record["posts"]) >= 4
        assert adopted(record), "no aggregated weights came back over wss://"
