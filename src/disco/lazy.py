"""Names of a package imported on first use (PEP 562), so that importing the package stays
cheap: `disco.client` and `disco.simulation` export names whose modules pull in torch, and the
CLI imports those packages for commands that never train."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """The module `__getattr__` of `package`: `where[name]` is the module defining `name`, which
    is imported at the first use of `name`; the value is then kept in the package's namespace."""

    def attribute(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    return attribute
