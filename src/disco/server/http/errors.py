"""Every error leaves the server as JSON `{"error": "<reason>"}`, with an accurate OpenAPI.

Client mistakes are 4xx with a reason naming the field; request validation failures (query, path,
headers) are 400, not FastAPI's 422, so the schema is rewritten to say so. Only genuine server
faults are 500, logged with their traceback and reported without internals.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from http import HTTPStatus
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

log = logging.getLogger("disco.server.http")


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: str


def error_response(
    status_code: int, reason: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """A JSON error response."""
    return JSONResponse({"error": reason}, status_code=status_code, headers=headers)


ERROR_CONTENT: Final = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
"""The error body's OpenAPI content, by reference (`install_openapi` adds the schema)."""


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for error codes, all with the `ErrorBody` schema.

    Given as content by reference rather than as a `model`: FastAPI builds a pydantic
    TypeAdapter for every `model` of every route (again for each inclusion, inside the first
    request), only for the OpenAPI document, which this reference describes alike.
    """
    return {
        code: {"description": HTTPStatus(code).phrase, "content": ERROR_CONTENT} for code in codes
    }


def _location(loc: Sequence[int | str]) -> str:
    """`('query', 'format')` -> 'query.format'; list indices as `[i]`."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "request"


def validation_reason(error: RequestValidationError) -> str:
    """One line naming every bad field, e.g. "query.format: Input should be 'disco' or 'tfjs'"."""
    problems = [
        f"{_location(item.get('loc', ()))}: {item.get('msg', 'invalid')}" for item in error.errors()
    ]
    return "; ".join(problems) or "invalid request"


async def _http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    reason = str(exc.detail)
    # Router-level 404/405 carry only the status phrase: say what was not found.
    if exc.status_code == 404 and reason == HTTPStatus.NOT_FOUND.phrase:
        reason = f"not found: {request.url.path}"
    headers = dict(exc.headers or {})
    if exc.status_code == 405 and reason == HTTPStatus.METHOD_NOT_ALLOWED.phrase:
        reason = f"method {request.method} not allowed on {request.url.path}"
        allowed = allowed_methods(request)
        if allowed:
            headers["Allow"] = ", ".join(allowed)
    return error_response(exc.status_code, reason, headers)


_METHODS: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path.

    Starlette's 405 names only the first route matching the path, but e.g. `/tasks` has one
    route for GET and another for POST. Probing each method against the (possibly nested)
    routers finds them all.
    """
    allowed = []
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return allowed


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(400, validation_reason(exc))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception to a JSON `{"error": ...}` response."""
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)


def _drop_validation_422(schema: dict[str, Any]) -> dict[str, Any]:
    """Remove the 422 responses FastAPI declares by default: this server answers 400 instead."""
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict):
                continue
            answers = operation.get("responses", {})
            if answers.pop("422", None) is not None and "400" not in answers:
                answers["400"] = {
                    "description": HTTPStatus.BAD_REQUEST.phrase,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
                    },
                }
    component_schemas = schema.get("components", {}).get("schemas", {})
    text = repr(schema.get("paths", {}))
    for name in ("HTTPValidationError", "ValidationError"):
        if f"#/components/schemas/{name}'" not in text:
            component_schemas.pop(name, None)
    if "ErrorBody" not in component_schemas:
        component_schemas["ErrorBody"] = ErrorBody.model_json_schema()
    return schema


def install_openapi(app: FastAPI) -> None:
    """Generate the OpenAPI document once, without FastAPI's 422 (see `_drop_validation_422`)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = _drop_validation_422(schema)
        return app.openapi_schema

    generator: Callable[[], dict[str, Any]] = openapi
    app.openapi = generator  # type: ignore[method-assign]
