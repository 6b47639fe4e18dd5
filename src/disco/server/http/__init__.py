"""HTTP side of the server: tasks API, model files, content negotiation, uploads, JSON errors,
the live event stream and the web app."""

from disco.server.http.docs import install_docs
from disco.server.http.errors import install_error_handlers, install_openapi
from disco.server.http.live import router as live_router
from disco.server.http.metrics import router as metrics_router
from disco.server.http.routes import router
from disco.server.http.tokens import router as tokens_router
from disco.server.http.webapp import router as webapp_router

__all__ = [
    "install_docs",
    "install_error_handlers",
    "install_openapi",
    "live_router",
    "metrics_router",
    "router",
    "tokens_router",
    "webapp_router",
]
