"""Hostile input on every channel: WebSocket, HTTP, fuzzed handlers and the OpenAPI schema."""
