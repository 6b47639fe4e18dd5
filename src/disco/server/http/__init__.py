"""HTTP side of the server: tasks API, model files, content negotiation, uploads, JSON errors."""

from disco.server.http.errors import install_error_handlers, install_openapi
from disco.server.http.routes import router

__all__ = ["install_error_handlers", "install_openapi", "router"]
