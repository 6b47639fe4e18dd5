"""Which representation of a task's model a GET asks for, and its cache validators.

The trap (docs/protocol.md, "model.json content negotiation"): every DISCO client GETs
`/tasks/:taskID/model.json` and decodes the body as a JSON array of the bytes of a
msgpack-encoded TF.js `ModelArtifacts`, while standard tools (`tf.loadLayersModel(url)`) expect
the TF.js layers `model.json` there. The two are told apart by the `Accept` header: the 2.1.1
client (axios 0.27) always sends axios' default `application/json, text/plain, */*`; TF.js'
`fetch` (node-fetch, undici or a browser) sends `*/*` or nothing. `?format=disco|tfjs` overrides
the guess.
"""

from __future__ import annotations

from enum import StrEnum

# axios' default Accept header, compared without spaces and case.
AXIOS_ACCEPT_PREFIX = "application/json,text/plain"


class ModelFormat(StrEnum):
    """The two representations of a model the server can send."""

    DISCO = "disco"  # JSON array of byte-integers of the msgpack ModelArtifacts
    TFJS = "tfjs"  # standard TF.js layers files: model.json + binary weights


def is_axios_accept(accept: str | None) -> bool:
    """True for the Accept header axios sends by default (what the DISCO JS client sends)."""
    if not accept:
        return False
    normalized = "".join(accept.split()).lower()
    return normalized.startswith(AXIOS_ACCEPT_PREFIX)


def choose_format(accept: str | None, requested: ModelFormat | None) -> ModelFormat:
    """An explicit `?format=` wins; else the DISCO encoding for axios, TF.js for everyone else."""
    if requested is not None:
        return requested
    return ModelFormat.DISCO if is_axios_accept(accept) else ModelFormat.TFJS


def make_etag(variant: str, round_: int, version: int, weights_sha256: str) -> str:
    """A strong ETag naming the representation, round, model version and weights digest.

    A task's topology never changes, so the weights' digest identifies the model's content.
    """
    return f'"{variant}-r{round_}-v{version}-{weights_sha256[:16]}"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether `If-None-Match` names `etag` (weak comparison, as RFC 9110 asks for GET)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    bare = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == bare for tag in if_none_match.split(","))
