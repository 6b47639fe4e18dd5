"""DISCO tasks: the Task schema, TF.js model artifacts and their encodings, the on-disk store."""

from disco.tasks.artifacts import ArtifactsError, ModelArtifacts, WeightSpec
from disco.tasks.disco_encoding import decode_disco_model, encode_disco_model
from disco.tasks.schema import Task, TaskValidationError, parse_task
from disco.tasks.store import StoredTask, TaskExistsError, TaskNotFoundError, TaskStore

__all__ = [
    "ArtifactsError",
    "ModelArtifacts",
    "StoredTask",
    "Task",
    "TaskExistsError",
    "TaskNotFoundError",
    "TaskStore",
    "TaskValidationError",
    "WeightSpec",
    "decode_disco_model",
    "encode_disco_model",
    "parse_task",
]
