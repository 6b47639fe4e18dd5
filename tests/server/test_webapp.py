"""The web app under /app/ and `GET /` content negotiation (browser vs DISCO clients)."""

from __future__ import annotations

import gzip
import json

import httpx
import pytest

from disco.server.http.webapp import IMMUTABLE, REVALIDATE, wants_html
from disco.web import static_dir

CHROME_ACCEPT = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
)
AXIOS_ACCEPT = "application/json, text/plain, */*"  # the 2.1.1 JS client (axios 0.27)


@pytest.fixture
def built() -> None:
    if static_dir() is None:
        pytest.fail("the web app is not built: run scripts/bootstrap.sh (or scripts/test.sh)")


def build_manifest() -> dict[str, object]:
    root = static_dir()
    assert root is not None
    manifest: dict[str, object] = json.loads((root / "build.json").read_text())
    return manifest


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        (CHROME_ACCEPT, True),
        ("text/html", True),
        ("TEXT/HTML; q=0.5", True),
        ("text/html;q=0", False),
        (AXIOS_ACCEPT, False),
        ("*/*", False),
        ("application/json", False),
        (None, False),
        ("", False),
    ],
)
def test_wants_html(accept: str | None, html: bool) -> None:
    assert wants_html(accept) is html


async def test_root_sends_browsers_to_the_app(
    built: None, async_client: httpx.AsyncClient
) -> None:
    response = await async_client.get("/", headers={"Accept": CHROME_ACCEPT})
    assert response.status_code == 307
    assert response.headers["location"] == "/app/"
    assert "Accept" in response.headers["vary"]


@pytest.mark.parametrize("accept", [AXIOS_ACCEPT, "*/*", None])
async def test_root_keeps_identifying_the_server_to_clients(
    built: None, async_client: httpx.AsyncClient, accept: str | None
) -> None:
    headers = {"Accept": accept} if accept is not None else {}
    request = async_client.build_request("GET", "/", headers=headers)
    if accept is None:
        del request.headers["accept"]
    response = await async_client.send(request)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text.startswith("disco server")


async def test_model_json_negotiation_is_unchanged_for_browsers(
    built: None, async_client: httpx.AsyncClient
) -> None:
    """A page's fetch of model.json (Accept */*) still gets the TF.js layers file."""
    response = await async_client.get("/tasks/titanic/model.json", headers={"Accept": "*/*"})
    assert response.status_code == 200
    assert "modelTopology" in response.json()
    disco = await async_client.get("/tasks/titanic/model.json", headers={"Accept": AXIOS_ACCEPT})
    assert isinstance(disco.json(), list)


async def test_index_is_revalidated_and_references_hashed_assets(
    built: None, async_client: httpx.AsyncClient
) -> None:
    response = await async_client.get("/app/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == REVALIDATE
    assert "/app/assets/app-" in response.text
    again = await async_client.get("/app/", headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304
    assert (await async_client.get("/app", follow_redirects=False)).headers["location"] == "/app/"


async def test_engine_has_a_stable_url_and_hashed_immutable_module(
    built: None, async_client: httpx.AsyncClient
) -> None:
    stable = await async_client.get("/app/disco.js")
    assert stable.status_code == 200
    assert stable.headers["content-type"].startswith("text/javascript")
    assert stable.headers["cache-control"] == REVALIDATE
    engine = str(build_manifest()["engine"])
    assert f'"./{engine}"' in stable.text
    module = await async_client.get(f"/app/{engine}", headers={"Accept-Encoding": "gzip"})
    assert module.status_code == 200
    assert module.headers["cache-control"] == IMMUTABLE
    assert module.headers["content-encoding"] == "gzip"  # httpx decoded it
    assert "export" in module.text
    plain = await async_client.get(f"/app/{engine}", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert plain.content == module.content


async def test_wasm_binaries_are_served_locally(
    built: None, async_client: httpx.AsyncClient
) -> None:
    wasm = build_manifest()["wasm"]
    assert isinstance(wasm, dict) and "tfjs-backend-wasm-simd.wasm" in wasm
    for served in wasm.values():
        response = await async_client.get(
            f"/app/assets/{served.removeprefix('./')}", headers={"Accept-Encoding": "identity"}
        )
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/wasm"
        assert response.headers["cache-control"] == IMMUTABLE
        assert response.content[:4] == b"\0asm"


async def test_gzip_twin_is_the_same_file(built: None, async_client: httpx.AsyncClient) -> None:
    root = static_dir()
    assert root is not None
    raw = (root / "disco.js").read_bytes()
    assert gzip.decompress((root / "disco.js.gz").read_bytes()) == raw


@pytest.mark.parametrize(
    "path",
    ["/app/..%2Fbuild.json", "/app/assets/../../__init__.py", "/app/.disco-built",
     "/app/nothing.js", "/app/assets/missing-0000.js"],
)
async def test_no_file_outside_the_build_and_no_made_up_file(
    built: None, async_client: httpx.AsyncClient, path: str
) -> None:
    response = await async_client.get(path)
    assert response.status_code == 404
    assert "error" in response.json()


async def test_page_routes_get_the_index(built: None, async_client: httpx.AsyncClient) -> None:
    response = await async_client.get("/app/tasks/titanic")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")


async def test_head_of_an_asset(built: None, async_client: httpx.AsyncClient) -> None:
    response = await async_client.head("/app/disco.js", headers={"Accept-Encoding": "identity"})
    assert response.status_code == 200
    assert response.content == b""
    root = static_dir()
    assert root is not None
    assert int(response.headers["content-length"]) == (root / "disco.js").stat().st_size
