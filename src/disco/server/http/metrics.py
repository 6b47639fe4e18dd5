"""`GET /metrics`: the server's Prometheus metrics (`disco.server.metrics`) for a scraper.

Guarded like the admin routes: open on a server without an admin token, else the scraper sends
it (`authorization: {credentials: ...}` in Prometheus' scrape config), since the labels name
tasks, enrolled ones included.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from disco.server.auth import require_admin
from disco.server.metrics import CONTENT_TYPE
from disco.server.state import StateDep

router = APIRouter()


@router.get(
    "/metrics",
    dependencies=[Depends(require_admin)],
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format"}},
    tags=["operations"],
)
async def metrics(state: StateDep) -> Response:
    """Connections, rounds, contributions, traffic and timings, in the Prometheus text format."""
    return Response(state.metrics.exposition(), media_type=CONTENT_TYPE)
