"""Reading and decoding `POST /tasks` bodies: bounded streaming, JSON (`pushTask`) and multipart.

Two body formats create a task:

* JSON `{task, model, weights?}`, what the 2.1.1 client's `pushTask` sends: `model` is a JSON array
  of the byte-integers of a msgpack TF.js `ModelArtifacts`; `weights` is the same model's weights in
  the legacy encoding. The model's `weightData` is the truth; `weights`, when present, must decode
  and agree with it (tensor count, shapes and float32 values) or the upload is refused, since a
  disagreement means a broken client.
* multipart/form-data with the TF.js layers files: `task.json`, `model.json` and every weight file
  its manifest names. A part is found by its file name, else by its field name (`task` and `model`
  are accepted for the two JSON parts).

Every refusal is an `UploadError` whose reason starts with the field at fault.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import numpy as np
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from disco.errors import DiscoError
from disco.protocol.errors import ProtocolError
from disco.protocol.weights import decode_weights
from disco.tasks.artifacts import ArtifactsError, ModelArtifacts, manifest_paths
from disco.tasks.disco_encoding import bytes_from_int_array, decode_disco_model
from disco.tasks.schema import Task, TaskValidationError, parse_task
from disco.weights import WeightsError, check_shapes

MAX_PARTS: Final = 256
TASK_PART: Final = "task.json"
MODEL_PART: Final = "model.json"
_PART_ALIASES: Final = {TASK_PART: "task", MODEL_PART: "model"}

T = TypeVar("T")


class UploadError(DiscoError):
    """A request body that cannot create a task; `status` is the HTTP answer (400, 413, 415)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class TaskUpload:
    """A decoded, validated upload, ready for `TaskStore.add`."""

    task: Task
    artifacts: ModelArtifacts


# --------------------------------------------------------------------------- reading the body


def declared_length(content_length: str | None, limit: int) -> int | None:
    """The Content-Length, refused up front (413) when above `limit` so nothing is read."""
    if content_length is None:
        return None
    text = content_length.strip()
    if not text.isdigit():
        raise UploadError("Content-Length: must be a non-negative integer")
    length = int(text)
    if length > limit:
        raise UploadError(_too_large(limit, f"{length} bytes"), status=413)
    return length


def _too_large(limit: int, size: str) -> str:
    return f"body: {size} exceed the limit of {limit} bytes (server setting max_body_bytes)"


async def read_limited(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """Concatenate a streamed body, stopping with 413 as soon as it grows past `limit`."""
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise UploadError(_too_large(limit, f"more than {limit} bytes"), status=413)
    return bytes(body)


# --------------------------------------------------------------------------- content types


def media_type(content_type: str | None) -> str:
    """`multipart/form-data; boundary=x` -> 'multipart/form-data' (lower case, '' if absent)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json_type(content_type: str | None) -> bool:
    """application/json, any `+json` type, or no Content-Type at all (taken as JSON)."""
    kind = media_type(content_type)
    return kind in ("", "application/json") or kind.endswith("+json")


def is_multipart_type(content_type: str | None) -> bool:
    """multipart/form-data."""
    return media_type(content_type) == "multipart/form-data"


def parse_upload(body: bytes, content_type: str | None) -> TaskUpload:
    """Dispatch on Content-Type (415 for anything but JSON and multipart). CPU-bound: offload."""
    if is_multipart_type(content_type):
        return parse_multipart_upload(body, content_type or "")
    if is_json_type(content_type):
        return parse_json_upload(body)
    raise UploadError(
        f"Content-Type: {media_type(content_type)!r} is not supported; "
        "send application/json ({task, model, weights}) or multipart/form-data "
        "(task.json, model.json, weight files)",
        status=415,
    )


# --------------------------------------------------------------------------- JSON helpers


def _load_json(data: bytes, where: str) -> Any:
    """Parse JSON text, naming `where` on failure (deep nesting included)."""
    try:
        return json.loads(data)
    except UnicodeDecodeError:
        raise UploadError(f"{where}: not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise UploadError(f"{where}: not valid JSON ({error})") from None
    except RecursionError:
        raise UploadError(f"{where}: JSON nested too deeply") from None


def _task(obj: object, where: str) -> Task:
    """Validate a task; each problem is prefixed by `where` ('task.trainingInformation...')."""
    try:
        return parse_task(obj)
    except TaskValidationError as error:
        problems = [
            f"{where}: {message}" if path == "task" else f"{where}.{path}: {message}"
            for path, message in error.problems
        ]
        raise UploadError("; ".join(problems) or f"{where}: invalid task") from None
    except RecursionError:
        raise UploadError(f"{where}: nested too deeply") from None


def _artifacts(build: Callable[[], T], where: str) -> T:
    """Run an artifacts decoder, turning its errors into an UploadError naming `where`."""
    try:
        return build()
    except (ArtifactsError, ProtocolError) as error:
        reason = str(error)
        raise UploadError(reason if reason.startswith(where) else f"{where}: {reason}") from None
    except RecursionError:
        raise UploadError(f"{where}: nested too deeply") from None


# --------------------------------------------------------------------------- JSON body (pushTask)


def check_weights_agree(weights_field: object, artifacts: ModelArtifacts) -> None:
    """`pushTask`'s `weights` must decode and equal the model's own weights (as float32)."""
    try:
        weights, _ = decode_weights(weights_field)
        check_shapes(weights, artifacts.shapes())
    except (ProtocolError, WeightsError) as error:
        raise UploadError(f"weights: {error}") from None
    for index, (given, own) in enumerate(zip(weights, artifacts.weights(), strict=True)):
        if not np.array_equal(np.asarray(given, dtype=np.float32), own, equal_nan=True):
            name = artifacts.weight_specs[index].name
            raise UploadError(
                f"weights: tensor {index} ({name}) differs from the model's weightData"
            )


def parse_json_upload(body: bytes) -> TaskUpload:
    """Decode `{task, model, weights?}` as the 2.1.1 client's `pushTask` sends it."""
    obj = _load_json(body, "body")
    if not isinstance(obj, dict):
        raise UploadError("body: must be a JSON object {task, model, weights}")
    if "task" not in obj:
        raise UploadError("task: required")
    task = _task(obj["task"], "task")
    if "model" not in obj:
        raise UploadError("model: required (JSON array of the bytes of a msgpack TF.js model)")
    model_bytes = _artifacts(lambda: _model_bytes(obj["model"]), "model")
    artifacts = _artifacts(lambda: decode_disco_model(model_bytes), "model")
    if obj.get("weights") is not None:
        check_weights_agree(obj["weights"], artifacts)
    return TaskUpload(task, artifacts)


def _model_bytes(value: object) -> bytes:
    """The `model` field's bytes; raises (via bytes_from_int_array) naming the field."""
    data = bytes_from_int_array(value, "model")
    if not data:
        raise ArtifactsError("model: must not be empty")
    return data


# --------------------------------------------------------------------------- multipart body


@dataclass
class Part:
    """One part of a multipart body."""

    name: str | None = None
    filename: str | None = None
    data: bytearray = field(default_factory=bytearray)


def _decode_header_value(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", errors="replace")


def split_multipart(body: bytes, boundary: bytes, max_parts: int = MAX_PARTS) -> list[Part]:
    """The parts of a complete multipart body (UploadError when malformed or truncated)."""
    parts: list[Part] = []
    header_field = bytearray()
    header_value = bytearray()
    headers: dict[str, bytes] = {}
    finished = False

    def on_part_begin() -> None:
        if len(parts) >= max_parts:
            raise UploadError(f"body: more than {max_parts} multipart parts")
        parts.append(Part())
        headers.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1].data += data[start:end]

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        headers[header_field.decode("latin-1").lower()] = bytes(header_value)
        header_field.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        disposition = headers.get("content-disposition")
        if disposition is None:
            raise UploadError(f"body: multipart part {len(parts) - 1} has no Content-Disposition")
        _, options = parse_options_header(disposition)
        parts[-1].name = _decode_header_value(options.get(b"name"))
        parts[-1].filename = _decode_header_value(options.get(b"filename"))

    def on_end() -> None:
        nonlocal finished
        finished = True

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_part_data": on_part_data,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_end": on_end,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as error:
        raise UploadError(f"body: malformed multipart data ({error})") from None
    if not finished:
        raise UploadError("body: multipart data ends before its closing boundary")
    return parts


def _base_name(filename: str) -> str:
    """Browsers send bare names, some tools a path: compare on the last component only."""
    return filename.replace("\\", "/").rsplit("/", 1)[-1]


def find_part(parts: list[Part], name: str) -> Part | None:
    """The part holding file `name`: by file name first, then by field name (or its alias)."""
    by_file = [p for p in parts if p.filename is not None and _base_name(p.filename) == name]
    if not by_file:
        names = {name, _PART_ALIASES.get(name, name)}
        by_file = [p for p in parts if p.name in names]
    if len(by_file) > 1:
        raise UploadError(f"{name}: sent {len(by_file)} times")
    return by_file[0] if by_file else None


def boundary_of(content_type: str) -> bytes:
    """The boundary parameter of a multipart Content-Type (400 when missing)."""
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise UploadError("Content-Type: multipart/form-data needs a boundary parameter")
    if len(boundary) > 200:
        raise UploadError("Content-Type: multipart boundary is too long")
    return boundary


def parse_multipart_upload(body: bytes, content_type: str) -> TaskUpload:
    """Decode multipart task.json + model.json + the weight files the manifest names."""
    parts = split_multipart(body, boundary_of(content_type))
    task_part = find_part(parts, TASK_PART)
    if task_part is None:
        raise UploadError(f"{TASK_PART}: required part is missing")
    task = _task(_load_json(bytes(task_part.data), TASK_PART), TASK_PART)
    model_part = find_part(parts, MODEL_PART)
    if model_part is None:
        raise UploadError(f"{MODEL_PART}: required part is missing")
    model_json = _load_json(bytes(model_part.data), MODEL_PART)
    names = _artifacts(lambda: manifest_paths(model_json), MODEL_PART)
    files: dict[str, bytes] = {}
    for name in names:
        part = find_part(parts, name)
        if part is None:
            raise UploadError(f"{name}: weight file named in model.json is missing")
        files[name] = bytes(part.data)
    artifacts = _artifacts(lambda: ModelArtifacts.from_layers(model_json, files), MODEL_PART)
    return TaskUpload(task, artifacts)
