"""/docs and /redoc work on a server without internet: every asset they load comes from it."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

ASSET_REFERENCE = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")
ABSOLUTE_URL = re.compile(r"""https?://[^\s"'<>)]+""")


@pytest.mark.parametrize(
    ("page", "expected_assets"),
    [
        ("/docs", {"swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"}),
        ("/redoc", {"redoc.standalone.js", "favicon.png"}),
    ],
)
def test_docs_pages_load_only_local_assets(
    app_client: TestClient, page: str, expected_assets: set[str]
) -> None:
    response = app_client.get(page)
    assert response.status_code == 200
    html = response.text
    # Nothing the browser would fetch from elsewhere (CDN, Google fonts, validator badge).
    assert ABSOLUTE_URL.findall(html) == []
    references = ASSET_REFERENCE.findall(html)
    assert {ref.rsplit("/", 1)[-1] for ref in references} >= expected_assets
    for reference in references:
        asset = app_client.get(reference)
        assert asset.status_code == 200, reference
        assert len(asset.content) > 1000, reference
    # The page reads the schema from this server.
    assert "/openapi.json" in html
    assert app_client.get("/openapi.json").status_code == 200


def test_swagger_ui_validator_badge_is_off(app_client: TestClient) -> None:
    """Swagger UI's default validator badge would call validator.swagger.io."""
    assert '"validatorUrl": null' in app_client.get("/docs").text


def test_docs_assets_are_not_in_the_api_schema(app_client: TestClient) -> None:
    paths = app_client.get("/openapi.json").json()["paths"]
    assert not any(path.startswith(("/docs", "/redoc")) for path in paths)
