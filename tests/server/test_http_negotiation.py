"""Content negotiation rules and cache validators (pure functions)."""

from __future__ import annotations

import pytest

from disco.server.http.negotiation import (
    ModelFormat,
    choose_format,
    etag_matches,
    is_axios_accept,
    make_etag,
)

AXIOS = "application/json, text/plain, */*"  # axios 0.27 default, sent by the 2.1.1 client


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (AXIOS, True),
        ("application/json, text/plain", True),
        ("Application/JSON,text/plain, */*", True),
        ("application/json,  text/plain;q=0.9", True),
        ("*/*", False),  # node-fetch / undici / browsers behind tf.loadLayersModel
        (None, False),
        ("", False),
        ("application/json", False),
        ("text/plain, application/json", False),
        ("application/octet-stream", False),
    ],
)
def test_axios_accept_is_recognized(accept: str | None, expected: bool) -> None:
    assert is_axios_accept(accept) is expected


def test_explicit_format_wins_over_accept() -> None:
    assert choose_format(AXIOS, None) is ModelFormat.DISCO
    assert choose_format("*/*", None) is ModelFormat.TFJS
    assert choose_format(None, None) is ModelFormat.TFJS
    assert choose_format(AXIOS, ModelFormat.TFJS) is ModelFormat.TFJS
    assert choose_format("*/*", ModelFormat.DISCO) is ModelFormat.DISCO


def test_etags_name_variant_round_and_content() -> None:
    sha = "ab" * 32
    tag = make_etag("disco", 3, 4, sha)
    assert tag.startswith('"') and tag.endswith('"')
    assert tag != make_etag("tfjs", 3, 4, sha)
    assert tag != make_etag("disco", 4, 5, sha)
    assert tag != make_etag("disco", 3, 4, "cd" * 32)


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        ('"a-1"', True),
        ('W/"a-1"', True),
        ('"x", "a-1"', True),
        ("*", True),
        ('"a-2"', False),
        ("", False),
        (None, False),
    ],
)
def test_if_none_match(header: str | None, matches: bool) -> None:
    assert etag_matches(header, '"a-1"') is matches
