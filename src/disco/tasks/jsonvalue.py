"""Checks that a decoded value is plain JSON we can store and serve back.

Iterative (no recursion), so hostile nesting cannot raise RecursionError; rejects what
`json.dumps(allow_nan=False)` would refuse later, at a point where the caller can still answer
with a clear 4xx naming the field.
"""

from __future__ import annotations

import math
from typing import Final

MAX_JSON_DEPTH: Final = 100


def json_problem(
    value: object, where: str, max_depth: int = MAX_JSON_DEPTH
) -> tuple[str, str] | None:
    """(path, message) of a non-JSON part of `value`, or None when all of it is JSON.

    Paths read like `where.key[0].other`; with `where=""` they start at the first key.
    """
    stack: list[tuple[object, str, int]] = [(value, where, 0)]
    while stack:
        item, path, depth = stack.pop()
        if item is None or isinstance(item, str | bool | int):
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                return path or "value", "must be a finite number"
            continue
        if depth >= max_depth:
            return path or "value", f"nested deeper than {max_depth} levels"
        if isinstance(item, list):
            stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item))
        elif isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    return path or "value", "object keys must be strings"
                stack.append((child, f"{path}.{key}" if path else key, depth + 1))
        else:
            return path or "value", f"{type(item).__name__} is not a JSON value"
    return None
