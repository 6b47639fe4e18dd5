"""On-disk task store: every task with its current global model, persisted crash-safely.

Layout, one folder per task::

    <data_dir>/tasks/<taskID>/task.json       the Task JSON as received
                             /model.json      TF.js layers JSON naming the current weights file
                             /weights-<v>.bin float32 LE weights of version v (current, previous)
                             /meta.json       {format, current: {version, round, weights, sha256},
                                               previous: {...} | null,
                                               history: [{round, time, contributions, seconds}]}
                                                                        ← the commit point

A new global model is written to a new `weights-<v>.bin`, then meta.json is atomically replaced
to point at it (commit), then model.json (the server publishes the new round between the two:
`commit_model`); so a crash at any moment leaves a complete earlier or later version. On load
the weights are checked against meta's sha256; a bad current version falls back to the previous
one. New tasks are assembled in a hidden staging folder and renamed into place. Broken folders
are logged and skipped, never fatal.

The round history (the last `HISTORY_LIMIT` completed rounds of the global model) lives in
meta.json, so it is committed by the same atomic rename as the model it describes: after a crash
it never names a round whose model was lost. An unreadable history is logged and dropped, never
fatal (the model matters, the history is informational).

All methods are synchronous and thread-safe; the server calls them through `asyncio.to_thread`.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import logging
import math
import os
import re
import secrets
import shutil
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeGuard

from numpy.typing import ArrayLike

from disco.errors import DiscoError
from disco.tasks.artifacts import (
    ArtifactsError,
    ModelArtifacts,
    check_file_name,
    read_layers_folder,
)
from disco.tasks.atomic import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_together,
    dumps_json,
    fsync_dir,
    is_temp_file,
)
from disco.tasks.defaults import DEFAULT_TASK_IDS, default_tasks
from disco.tasks.disco_encoding import byte_array_json, encode_disco_model
from disco.tasks.schema import Task, TaskValidationError, parse_task
from disco.weights import Weights

logger = logging.getLogger(__name__)

TASKS_SUBDIR: Final = "tasks"
TASK_FILE: Final = "task.json"
MODEL_FILE: Final = "model.json"
META_FILE: Final = "meta.json"
SERVED_WEIGHTS_PATH: Final = "weights.bin"
STAGING_PREFIX: Final = ".staging-"
META_FORMAT: Final = 1
HISTORY_LIMIT: Final = 500
"""Completed rounds kept per task (meta.json is rewritten once a round: it stays small)."""
_WEIGHTS_FILE_RE: Final = re.compile(r"weights-([0-9]+)\.bin")
_SHA256_RE: Final = re.compile(r"[0-9a-f]{64}")


class TaskStoreError(DiscoError):
    """Base of the store's errors."""


class TaskExistsError(TaskStoreError):
    """A task with this taskID already exists (or its folder is taken by a broken copy)."""


class TaskNotFoundError(TaskStoreError, KeyError):
    """No task with this taskID."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "task not found"


class BrokenTaskError(TaskStoreError):
    """A task folder that cannot be loaded; the message says why."""


# --------------------------------------------------------------------------- versions


def weights_file_name(version: int) -> str:
    """File holding the weights of model version `version`."""
    return f"weights-{version}.bin"


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One persisted global model: version counter, training round, weights file, checksum."""

    version: int
    round: int
    weights: str
    sha256: str

    def to_json(self) -> dict[str, Any]:
        """The entry written in meta.json."""
        return {
            "version": self.version,
            "round": self.round,
            "weights": self.weights,
            "sha256": self.sha256,
        }

    @classmethod
    def from_json(cls, obj: object, where: str) -> ModelVersion:
        """Validate a meta.json entry."""
        if not isinstance(obj, Mapping):
            raise BrokenTaskError(f"{where}: must be an object")
        version, round_, sha = obj.get("version"), obj.get("round"), obj.get("sha256")
        if not (_is_count(version) and version >= 1):
            raise BrokenTaskError(f"{where}.version: must be an integer >= 1")
        if not _is_count(round_):
            raise BrokenTaskError(f"{where}.round: must be an integer >= 0")
        if not isinstance(sha, str) or _SHA256_RE.fullmatch(sha) is None:
            raise BrokenTaskError(f"{where}.sha256: must be a lowercase hex SHA-256")
        try:
            weights = check_file_name(obj.get("weights"), f"{where}.weights")
        except ArtifactsError as error:
            raise BrokenTaskError(str(error)) from None
        return cls(version, round_, weights, sha)


@dataclass(frozen=True, slots=True)
class CompletedRound:
    """One completed round of a task's global model, for its round history.

    `round` is the round of the model it produced (1 after the first aggregation), `time` the
    Unix time that model was stored, `contributions` the number of updates aggregated into it,
    `seconds` the time from the round's first accepted update to its aggregation.
    """

    round: int
    time: float
    contributions: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """The entry written in meta.json and served by `GET /tasks/{taskID}/history`."""
        return {
            "round": self.round,
            "time": self.time,
            "contributions": self.contributions,
            "seconds": self.seconds,
        }

    @classmethod
    def from_json(cls, obj: object) -> CompletedRound:
        """Validate a meta.json history entry; BrokenTaskError when it is not one."""
        if not isinstance(obj, Mapping):
            raise BrokenTaskError("history entry: must be an object")
        round_, time_, count, seconds = (
            obj.get("round"), obj.get("time"), obj.get("contributions"), obj.get("seconds"),
        )  # fmt: skip
        if not (_is_count(round_) and _is_count(count)):
            raise BrokenTaskError("history entry: round and contributions must be integers >= 0")
        if not (_is_finite_nonnegative(time_) and _is_finite_nonnegative(seconds)):
            raise BrokenTaskError("history entry: time and seconds must be numbers >= 0")
        return cls(round_, float(time_), count, float(seconds))


def _is_finite_nonnegative(value: object) -> TypeGuard[float]:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def _read_history(
    meta: Mapping[str, Any], up_to_round: int, where: Path
) -> tuple[CompletedRound, ...]:
    """meta.json's history, without rounds after `up_to_round` (the model in use); () when
    missing or unreadable (logged: the history is informational)."""
    entries = meta.get("history", [])
    try:
        if not isinstance(entries, list):
            raise BrokenTaskError("history: must be an array")
        history = tuple(CompletedRound.from_json(entry) for entry in entries)
    except BrokenTaskError as error:
        logger.warning("%s: round history dropped: %s", where, error)
        return ()
    return tuple(entry for entry in history if entry.round <= up_to_round)[-HISTORY_LIMIT:]


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _meta_json(
    current: ModelVersion,
    previous: ModelVersion | None,
    history: Sequence[CompletedRound] = (),
) -> dict[str, Any]:
    return {
        "format": META_FORMAT,
        "current": current.to_json(),
        "previous": None if previous is None else previous.to_json(),
        "history": [entry.to_json() for entry in history],
    }


# --------------------------------------------------------------------------- stored task


class StoredTask:
    """A task with one version of its global model and the history of the rounds that led to
    it; encodings computed once, on demand."""

    __slots__ = ("_cache", "_cache_lock", "artifacts", "history", "model_version", "task")

    def __init__(
        self,
        task: Task,
        artifacts: ModelArtifacts,
        model_version: ModelVersion,
        history: tuple[CompletedRound, ...] = (),
    ) -> None:
        self.task = task
        self.artifacts = artifacts
        self.model_version = model_version
        self.history = history
        self._cache: dict[str, bytes] = {}
        self._cache_lock = threading.RLock()  # disco_model computes disco_msgpack

    @property
    def task_id(self) -> str:
        """The taskID."""
        return self.task.task_id

    @property
    def round(self) -> int:
        """Training round the current global model belongs to (0: initial model)."""
        return self.model_version.round

    @property
    def version(self) -> int:
        """Persisted model version counter (grows by one per `update_model`)."""
        return self.model_version.version

    def _cached(self, key: str, compute: Callable[[], bytes]) -> bytes:
        value = self._cache.get(key)
        if value is None:
            with self._cache_lock:
                value = self._cache.get(key)
                if value is None:
                    value = compute()
                    self._cache[key] = value
        return value

    def rendered(self, name: str) -> bool:
        """Whether the encoding `name` ("disco_model", "model_json", ...) is computed already:
        reading it then costs nothing."""
        return name in self._cache

    @property
    def task_json(self) -> bytes:
        """The Task JSON text, as received."""
        return self._cached(
            "task_json", lambda: json.dumps(self.task.to_json(), ensure_ascii=False).encode()
        )

    @property
    def model_json(self) -> bytes:
        """TF.js layers model.json whose manifest names `weights.bin` (for tf.loadLayersModel)."""
        return self._cached(
            "model_json",
            lambda: json.dumps(
                self.artifacts.to_layers_json(SERVED_WEIGHTS_PATH), allow_nan=False
            ).encode(),
        )

    @property
    def weights_bin(self) -> bytes:
        """The weights file: every tensor's float32 LE bytes, in weight order."""
        return self.artifacts.weight_data

    @property
    def disco_msgpack(self) -> bytes:
        """msgpack of TF.js ModelArtifacts, as DISCO clients encode models."""
        return self._cached("disco_msgpack", lambda: encode_disco_model(self.artifacts))

    @property
    def disco_model(self) -> bytes:
        """JSON array of the msgpack's byte-integers: what DISCO clients GET as model.json."""
        return self._cached("disco_model", lambda: byte_array_json(self.disco_msgpack))

    def weights(self) -> Weights:
        """Read-only float32 views of the current global weights."""
        return self.artifacts.weights()


# --------------------------------------------------------------------------- helpers


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        raise BrokenTaskError(f"{path.name} is missing") from None
    except (OSError, ValueError) as error:  # JSONDecodeError, UnicodeDecodeError are ValueErrors
        raise BrokenTaskError(f"{path.name}: cannot be read as JSON ({error})") from None


def _single_file_model_json(model_json: object, weights_name: str) -> dict[str, Any]:
    """model.json with its manifest folded into one group stored in `weights_name`."""
    if not isinstance(model_json, Mapping):
        raise BrokenTaskError(f"{MODEL_FILE}: must be a JSON object")
    groups = model_json.get("weightsManifest")
    if not isinstance(groups, list) or not all(
        isinstance(g, Mapping) and isinstance(g.get("weights"), list) for g in groups
    ):
        raise BrokenTaskError(f"{MODEL_FILE}: weightsManifest must be an array of groups")
    specs = [spec for group in groups for spec in group["weights"]]
    return {**model_json, "weightsManifest": [{"paths": [weights_name], "weights": specs}]}


def _manifest_names(model_json: Mapping[str, Any]) -> list[Any]:
    groups = model_json.get("weightsManifest")
    if not isinstance(groups, list):
        return []
    return [p for g in groups if isinstance(g, Mapping) for p in (g.get("paths") or [])]


# --------------------------------------------------------------------------- store


class TaskStore:
    """Tasks by taskID, each with its current global model, mirrored on disk under data_dir."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.data_dir = Path(data_dir)
        self.tasks_dir = self.data_dir / TASKS_SUBDIR
        self._lock = threading.RLock()
        self._tasks: dict[str, StoredTask] = {}
        self._reserved: set[str] = set()
        self._broken: dict[str, str] = {}
        self._next_version: dict[str, int] = {}
        self._write_locks: dict[str, threading.Lock] = {}

    # ----------------------------------------------------------------- queries

    def list(self) -> builtins.list[Task]:
        """Every task, ordered by taskID."""
        return [stored.task for stored in self.stored()]

    def stored(self) -> builtins.list[StoredTask]:
        """Every task with its current model, ordered by taskID."""
        with self._lock:
            return [self._tasks[task_id] for task_id in sorted(self._tasks)]

    def get(self, task_id: str) -> StoredTask:
        """The task and its current model; TaskNotFoundError when unknown."""
        with self._lock:
            stored = self._tasks.get(task_id)
        if stored is None:
            raise TaskNotFoundError(f"unknown task {task_id!r}")
        return stored

    def __contains__(self, task_id: object) -> bool:
        with self._lock:
            return task_id in self._tasks

    def __len__(self) -> int:
        with self._lock:
            return len(self._tasks)

    @property
    def broken(self) -> dict[str, str]:
        """Task folders found on disk but skipped at load, with the reason."""
        with self._lock:
            return dict(self._broken)

    # ----------------------------------------------------------------- start-up

    def load(
        self, extra_tasks_dir: str | os.PathLike[str] | None = None, with_defaults: bool = True
    ) -> None:
        """Load saved tasks, then add missing default tasks, then tasks from `extra_tasks_dir`.

        Added tasks are persisted, so later starts find them among the saved ones. A folder
        that cannot be loaded is logged and skipped.
        """
        self.tasks_dir.mkdir(parents=True, exist_ok=True)
        for folder in sorted(self.tasks_dir.iterdir()):
            if folder.name.startswith(STAGING_PREFIX) and folder.is_dir():
                logger.info("removing unfinished task folder %s", folder)
                shutil.rmtree(folder, ignore_errors=True)
            elif folder.is_dir() and not folder.name.startswith("."):
                self._load_saved_folder(folder)
        if with_defaults:
            self._add_defaults()
        if extra_tasks_dir is not None:
            self._add_extra_tasks(Path(extra_tasks_dir))
        logger.info("task store ready: %d tasks (%s)", len(self), ", ".join(sorted(self._tasks)))

    def _load_saved_folder(self, folder: Path) -> None:
        try:
            stored, next_version = self._read_saved(folder)
        except (BrokenTaskError, TaskValidationError, ArtifactsError, OSError) as error:
            logger.error("task folder %s skipped: %s", folder, error)
            with self._lock:
                self._broken[folder.name] = str(error)
            return
        with self._lock:
            self._tasks[stored.task_id] = stored
            self._next_version[stored.task_id] = next_version

    def _read_saved(self, folder: Path) -> tuple[StoredTask, int]:
        task = parse_task(_read_json(folder / TASK_FILE))
        if task.task_id != folder.name:
            raise BrokenTaskError(f"taskID {task.task_id!r} does not match the folder name")
        model_json = _read_json(folder / MODEL_FILE)
        meta = _read_json(folder / META_FILE)
        if not isinstance(meta, Mapping) or meta.get("format") != META_FORMAT:
            raise BrokenTaskError(f"{META_FILE}: unknown format")
        current = ModelVersion.from_json(meta.get("current"), f"{META_FILE}.current")
        previous = None
        if meta.get("previous") is not None:
            previous = ModelVersion.from_json(meta["previous"], f"{META_FILE}.previous")

        problems = []
        for candidate in (current, previous):
            if candidate is None:
                continue
            path = folder / candidate.weights
            try:
                data = path.read_bytes()
            except OSError as error:
                problems.append(f"version {candidate.version}: {candidate.weights}: {error}")
                continue
            if _sha256(data) != candidate.sha256:
                problems.append(
                    f"version {candidate.version}: {candidate.weights} fails its sha256 check"
                )
                continue
            artifacts = ModelArtifacts.from_layers(
                _single_file_model_json(model_json, candidate.weights), {candidate.weights: data}
            )
            if candidate is not current:
                logger.warning(
                    "task %s: %s; using the previous model (version %d, round %d)",
                    task.task_id,
                    "; ".join(problems),
                    candidate.version,
                    candidate.round,
                )
            if _manifest_names(model_json) != [candidate.weights]:
                self._write_model_json(folder, artifacts, candidate.weights)
            self._remove_unreferenced(folder, {v.weights for v in (current, previous) if v})
            versions = [current.version] + ([previous.version] if previous else [])
            history = _read_history(meta, candidate.round, folder / META_FILE)
            return StoredTask(task, artifacts, candidate, history), max(versions) + 1
        raise BrokenTaskError("no usable weights: " + "; ".join(problems))

    def _add_defaults(self) -> None:
        with self._lock:
            missing = [i for i in DEFAULT_TASK_IDS if i not in self._tasks]
        if not missing:
            return
        for task, artifacts in default_tasks():
            if task.task_id not in missing:
                continue
            try:
                self.add(task, artifacts)
            except (TaskExistsError, OSError) as error:
                logger.error("default task %s not added: %s", task.task_id, error)

    def _add_extra_tasks(self, root: Path) -> None:
        if not root.is_dir():
            logger.error("tasks directory %s does not exist; no extra tasks loaded", root)
            return
        for folder in sorted(root.iterdir()):
            if not folder.is_dir() or folder.name.startswith("."):
                continue
            try:
                task = parse_task(_read_json(folder / TASK_FILE))
                if task.task_id in self:
                    logger.info("task %s from %s already present", task.task_id, folder)
                    continue
                self.add(task, read_layers_folder(folder, MODEL_FILE))
            except (
                BrokenTaskError,
                TaskValidationError,
                ArtifactsError,
                TaskExistsError,
                OSError,
            ) as error:
                logger.error("task folder %s skipped: %s", folder, error)

    # ----------------------------------------------------------------- changes

    def add(self, task: Task, artifacts: ModelArtifacts) -> StoredTask:
        """Persist a new task with its initial model (round 0); TaskExistsError on a taken id."""
        if not isinstance(task, Task) or not isinstance(artifacts, ModelArtifacts):
            raise TypeError("add() needs a Task and ModelArtifacts")
        task_id = task.task_id
        with self._lock:
            if task_id in self._tasks or task_id in self._reserved:
                raise TaskExistsError(f"task {task_id!r} already exists")
            if task_id in self._broken:
                raise TaskExistsError(
                    f"task {task_id!r}: a folder with this id exists on disk but could not be "
                    f"loaded ({self._broken[task_id]}); remove or repair it first"
                )
            self._reserved.add(task_id)
        try:
            version = ModelVersion(1, 0, weights_file_name(1), _sha256(artifacts.weight_data))
            self._create_folder(task, artifacts, version)
            stored = StoredTask(task, artifacts, version)
            with self._lock:
                self._tasks[task_id] = stored
                self._next_version[task_id] = version.version + 1
        finally:
            with self._lock:
                self._reserved.discard(task_id)
        logger.info("task %s added (%d parameters)", task_id, artifacts.parameter_count)
        return stored

    def _create_folder(self, task: Task, artifacts: ModelArtifacts, version: ModelVersion) -> None:
        self.tasks_dir.mkdir(parents=True, exist_ok=True)
        final = self.tasks_dir / task.task_id
        if final.exists():
            raise TaskExistsError(f"task {task.task_id!r}: {final} already exists on disk")
        staging = self.tasks_dir / f"{STAGING_PREFIX}{task.task_id}-{secrets.token_hex(4)}"
        staging.mkdir()
        try:
            atomic_write_bytes(staging / version.weights, artifacts.weight_data)
            atomic_write_json(staging / MODEL_FILE, artifacts.to_layers_json(version.weights))
            atomic_write_json(staging / TASK_FILE, task.to_json())
            atomic_write_json(staging / META_FILE, _meta_json(version, None))
            os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        fsync_dir(self.tasks_dir)

    def _write_lock(self, task_id: str) -> threading.Lock:
        with self._lock:
            return self._write_locks.setdefault(task_id, threading.Lock())

    def update_model(
        self,
        task_id: str,
        weights: Sequence[ArrayLike],
        round: int,
        completed: CompletedRound | None = None,
    ) -> StoredTask:
        """Persist a new global model for `round` and make it current; `completed` (the round
        that produced it) is appended to the task's round history in the same commit.

        Raises TaskNotFoundError, ArtifactsError (shapes differ from the task's model),
        ValueError (bad round) or OSError (disk); the previous model stays current on error.
        """
        stored, finish = self.commit_model(task_id, weights, round, completed)
        finish()
        return stored

    def commit_model(
        self,
        task_id: str,
        weights: Sequence[ArrayLike],
        round: int,
        completed: CompletedRound | None = None,
    ) -> tuple[StoredTask, Callable[[], None]]:
        """`update_model` up to its commit point, and the rest as a function.

        When this returns, the new weights file and meta.json are durable and the model is the
        current one (what `get` and the HTTP routes serve). `finish()` writes model.json and
        removes older weight files: nothing a reader waits for, so the caller may run it later,
        in another thread (the round engine publishes a new round in between); a crash before
        it leaves a stale model.json, repaired at load. `finish` does nothing once a newer model
        was committed (that one's `finish` does the work). Same errors as `update_model`.
        """
        if not _is_count(round):
            raise ValueError(f"round must be an integer >= 0, got {round!r}")
        with self._write_lock(task_id):
            current = self.get(task_id)
            artifacts = current.artifacts.with_weights(weights)
            folder = self.tasks_dir / task_id
            with self._lock:
                number = self._next_version.get(task_id, current.version + 1)
            # The checksum is computed while the weights are written (both release the GIL),
            # and both files are fsynced at once, then renamed, then the folder fsynced once:
            # a crash that kept meta.json's rename alone finds its weights file missing, and
            # load falls back to the previous version (durable since its own commit), as if
            # the crash came first.
            name = weights_file_name(number)
            history = current.history
            if completed is not None:
                history = (*history, completed)[-HISTORY_LIMIT:]
            with ThreadPoolExecutor(max_workers=1) as hashing:
                digest = hashing.submit(_sha256, artifacts.weight_data)

                def version() -> ModelVersion:
                    return ModelVersion(number, round, name, digest.result())

                def meta() -> bytes:
                    return dumps_json(_meta_json(version(), current.model_version, history))

                atomic_write_together(
                    folder, [(name, lambda: artifacts.weight_data), (META_FILE, meta)]
                )
            committed = version()
            stored = StoredTask(current.task, artifacts, committed, history)
            with self._lock:
                self._tasks[task_id] = stored
                self._next_version[task_id] = number + 1
        previous = current.model_version.weights

        def finish() -> None:
            with self._write_lock(task_id):
                with self._lock:
                    latest = self._tasks.get(task_id)
                if latest is None or latest.model_version.version != committed.version:
                    return  # deleted, or a newer model committed: its own finish runs
                try:
                    self._write_model_json(folder, artifacts, committed.weights)
                except OSError as error:  # committed already; the next load repairs model.json
                    logger.error("task %s: model.json not updated: %s", task_id, error)
                self._remove_unreferenced(folder, {committed.weights, previous})

        return stored, finish

    @staticmethod
    def _write_model_json(folder: Path, artifacts: ModelArtifacts, weights_name: str) -> None:
        atomic_write_json(folder / MODEL_FILE, artifacts.to_layers_json(weights_name))

    @staticmethod
    def _remove_unreferenced(folder: Path, keep: set[str]) -> None:
        """Delete our own stale files: old weight versions and interrupted temp files."""
        try:
            entries = list(folder.iterdir())
        except OSError as error:
            logger.warning("cannot list %s for clean-up: %s", folder, error)
            return
        for entry in entries:
            stale_weights = _WEIGHTS_FILE_RE.fullmatch(entry.name) and entry.name not in keep
            if stale_weights or is_temp_file(entry.name):
                with contextlib.suppress(OSError):
                    entry.unlink()
