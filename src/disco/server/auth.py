"""Admin access: a shared bearer token guarding the routes that change the server's tasks.

Without `Settings.admin_token` every route is open (a local or trusted deployment). With it, a
request must carry `Authorization: Bearer <token>` or `X-Admin-Token: <token>`; a missing token is
401 (with `WWW-Authenticate`), a wrong one 403. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from disco.server.settings import Settings
from disco.server.state import SettingsDep

ADMIN_HEADER = "X-Admin-Token"


def presented_token(authorization: str | None, admin_header: str | None) -> str | None:
    """The token a request carries: the bearer credential first, else the `X-Admin-Token` value.

    An `Authorization` header of another scheme (e.g. Basic) counts as no token.
    """
    if authorization:
        scheme, _, credential = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and credential.strip():
            return credential.strip()
    if admin_header is not None and admin_header.strip():
        return admin_header.strip()
    return None


def token_matches(presented: str, expected: str) -> bool:
    """Constant-time comparison (on UTF-8 bytes: `compare_digest` refuses non-ASCII str)."""
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))


NO_ADMIN_TOKEN = (
    "this route needs the server's admin token, and the server has none: start it with "
    "DISCO_ADMIN_TOKEN (or --admin-token)"
)


def check_admin(
    settings: Settings,
    authorization: str | None,
    admin_header: str | None,
    strict: bool = False,
) -> None:
    """Raise 401/403 unless the request may administer the server. Without an admin token the
    server is open, except for `strict` routes (participant tokens), which are then refused."""
    if settings.admin_token is None:
        if strict:
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail=NO_ADMIN_TOKEN)
        return
    presented = presented_token(authorization, admin_header)
    if presented is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=f"admin token required: send 'Authorization: Bearer <token>' "
            f"or '{ADMIN_HEADER}: <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not token_matches(presented, settings.admin_token):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="admin token rejected")


# Declared through FastAPI's security classes so that OpenAPI documents both ways to authenticate;
# auto_error=False because the check (and whether a token is needed at all) is ours.
_bearer = HTTPBearer(auto_error=False, description="the server's admin token (if it has one)")
_admin_header = APIKeyHeader(
    name=ADMIN_HEADER, auto_error=False, description="alternative to the bearer header"
)


async def require_admin(
    settings: SettingsDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    admin_header: Annotated[str | None, Depends(_admin_header)],
) -> None:
    """FastAPI dependency: runs before the endpoint reads the body, so no upload is wasted."""
    authorization = f"Bearer {bearer.credentials}" if bearer is not None else None
    check_admin(settings, authorization, admin_header)


async def require_admin_token(
    settings: SettingsDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    admin_header: Annotated[str | None, Depends(_admin_header)],
) -> None:
    """`require_admin` for routes that hand out access (participant tokens): refused outright
    when the server has no admin token, instead of open to anyone."""
    authorization = f"Bearer {bearer.credentials}" if bearer is not None else None
    check_admin(settings, authorization, admin_header, strict=True)
