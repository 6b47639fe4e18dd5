"""One exception root: every exception class the package defines derives from DiscoError."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

pytest.importorskip("torch")  # the client's modules are part of the walk

import disco
from disco.errors import DiscoError


def _package_exceptions() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for module_info in pkgutil.walk_packages(disco.__path__, "disco."):
        module = importlib.import_module(module_info.name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__.startswith("disco."):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return list(found.values())


def test_every_exception_class_derives_from_disco_error() -> None:
    exceptions = _package_exceptions()
    assert len(exceptions) >= 27, sorted(e.__qualname__ for e in exceptions)
    strays = sorted(
        f"{e.__module__}.{e.__qualname__}" for e in exceptions if not issubclass(e, DiscoError)
    )
    assert strays == []


def test_standard_bases_are_kept() -> None:
    """Callers that catch ValueError, KeyError or ConnectionError keep working."""
    from disco.client.decentralized import DecentralizedError
    from disco.client.remote import ServerError
    from disco.protocol.errors import ProtocolError
    from disco.tasks.store import TaskNotFoundError

    assert issubclass(ProtocolError, ValueError)
    assert issubclass(TaskNotFoundError, KeyError)
    assert issubclass(DecentralizedError, ConnectionError)
    assert issubclass(ServerError, RuntimeError)
