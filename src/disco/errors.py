"""The root of every error this package raises on purpose.

Catching `DiscoError` catches the failures a user or a peer can cause (bad data, a refused
request, an unreachable server, a malformed frame) and nothing else: a bug still surfaces as
its own exception. Subclasses keep a standard base (`ValueError`, `ConnectionError`, ...) where
callers rely on it. This module imports nothing, so every layer may depend on it.
"""


class DiscoError(Exception):
    """A failure with a message meant for the user; subclasses say where it comes from."""
