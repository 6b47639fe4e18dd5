"""`GET /metrics`: the server's Prometheus metrics (`disco.server.metrics`) for a scraper.

Guarded like the admin routes: open on a server without an admin token, else the scraper sends
it (`authorization: {credentials: ...}` in Prometheus' scrape config), since the labels name
tasks, enrolled ones included.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from disco.server.auth import ADMIN_HEADER, check_admin
from disco.server.http.errors import responses
from disco.server.metrics import CONTENT_TYPE
from disco.server.state import SettingsDep, StateDep

router = APIRouter()


async def metrics_access(request: Request, settings: SettingsDep) -> None:
    """The admin check, read from the headers directly: the route is open on a server without
    an admin token, so its OpenAPI entry declares no security scheme."""
    check_admin(settings, request.headers.get("authorization"), request.headers.get(ADMIN_HEADER))


@router.get(
    "/metrics",
    dependencies=[Depends(metrics_access)],
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format"},
        **responses(401, 403),
    },
    tags=["operations"],
)
async def metrics(state: StateDep) -> Response:
    """Connections, rounds, contributions, traffic and timings, in the Prometheus text format.
    On a server with an admin token, send it (`Authorization: Bearer` or `X-Admin-Token`)."""
    return Response(state.metrics.exposition(), media_type=CONTENT_TYPE)
