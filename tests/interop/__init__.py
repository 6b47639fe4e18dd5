"""Interop tests: the real DISCO JS client (@epfml/discojs-node@2.1.1) against this server."""
