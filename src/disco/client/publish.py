"""Create a task from Python: a model and the task's settings, checked here as the server will.

The model is a `torch.nn.Module` (or the `pkg.module:function` factory that makes one), exported
to TF.js layers so every DISCO client can train it; a TF.js layers folder, uploaded as is; or,
with `torch_only=True`, any module, published as a PyTorch-only task (named float32 tensors,
rebuilt by each Python participant with the same factory).

Settings come from a (partial) DISCO task JSON — a dict or a YAML/JSON file — and from keyword
overrides named like the schema's fields (`epochs`, `batch_size`, `input_columns`, ...). The
result is validated by the task schema the server uses, so a refusal here has the server's
400 reason.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
from torch import nn

from disco.client.model.export import ExportError, export_tfjs
from disco.client.model.torch_task import (
    Outputs,
    TorchModelError,
    check_factory_name,
    make_module,
    torch_artifacts,
)
from disco.client.remote import ServerError
from disco.errors import DiscoError
from disco.tasks.artifacts import ArtifactsError, ModelArtifacts, read_layers_folder
from disco.tasks.schema import (
    ModelCompileData,
    Task,
    TorchModel,
    TrainingInformation,
    parse_task,
)
from disco.tasks.torch_model import (
    is_torch_topology,
    not_trainable_reason,
    torch_factory,
)

ADMIN_TOKEN_ENV: Final = "DISCO_ADMIN_TOKEN"


class SettingsError(DiscoError, ValueError):
    """Task settings that cannot be read or named; the message says which."""


_TASK_KEYS: Final = {"task_id": ("taskID",), "title": ("displayInformation", "taskTitle")}
_COMPILE_KEYS: Final = {
    name: ("trainingInformation", "modelCompileData", info.alias or name)
    for name, info in ModelCompileData.model_fields.items()
}
_TRAINING_KEYS: Final = {
    name: ("trainingInformation", info.alias or name)
    for name, info in TrainingInformation.model_fields.items()
    if name != "model_compile_data"
}
SETTING_KEYS: Final = {**_TASK_KEYS, **_COMPILE_KEYS, **_TRAINING_KEYS}


@dataclass(frozen=True)
class TaskDraft:
    """A validated task and its model files, ready to upload."""

    task: Task
    artifacts: ModelArtifacts
    notes: tuple[str, ...] = ()  # what was added or chosen for the user (printed by the CLI)

    @property
    def torch_only(self) -> bool:
        return is_torch_topology(self.artifacts.model_topology)


def read_settings(path: str | Path) -> dict[str, Any]:
    """A task settings file: YAML (.yaml, .yml) or JSON, holding a (partial) DISCO task."""
    file = Path(path)
    text = file.read_text(encoding="utf-8")
    if file.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise SettingsError(f"{file.name}: not valid YAML ({error})") from None
    else:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            raise SettingsError(f"{file.name}: not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise SettingsError(
            f"{file.name}: must hold a task object (taskID, trainingInformation...)"
        )
    return value


def _set(task: dict[str, Any], path: Sequence[str], value: Any) -> None:
    node = task
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[path[-1]] = value


def merge_settings(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`base` (a partial task JSON) with keyword settings applied; unknown keywords refused."""
    task = copy.deepcopy(dict(base))
    unknown = sorted(set(overrides) - set(SETTING_KEYS))
    if unknown:
        known = ", ".join(sorted(SETTING_KEYS))
        raise SettingsError(f"unknown task setting(s) {', '.join(unknown)} (known: {known})")
    for name, value in overrides.items():
        if value is not None:
            _set(task, SETTING_KEYS[name], value)
    return task


def with_defaults(task: Mapping[str, Any]) -> dict[str, Any]:
    """Fill what a new task may leave out: title, modelID, epochs, batch size, loss..."""
    filled = copy.deepcopy(dict(task))
    task_id = filled.get("taskID")
    display = filled.setdefault("displayInformation", {})
    if isinstance(display, dict) and isinstance(task_id, str):
        display.setdefault("taskTitle", task_id)
    info = filled.setdefault("trainingInformation", {})
    if not isinstance(info, dict):
        return filled
    if isinstance(task_id, str):
        info.setdefault("modelID", f"{task_id}-model")
    info.setdefault("epochs", 10)
    info.setdefault("batchSize", 32)
    info.setdefault("roundDuration", 10)
    info.setdefault("validationSplit", 0.2)
    info.setdefault("scheme", "federated")
    compile_data = info.setdefault("modelCompileData", {})
    if isinstance(compile_data, dict):
        compile_data.setdefault("optimizer", "adam")
        binary = info.get("dataType") == "tabular"
        compile_data.setdefault(
            "loss", "binaryCrossentropy" if binary else "categoricalCrossentropy"
        )
        compile_data.setdefault("metrics", ["accuracy"])
    if info.get("dataType") == "image":
        info.setdefault("preprocessingFunctions", ["normalize"])
    return filled


def model_input_shape(task: Task, module: nn.Module | None) -> tuple[int, ...]:
    """One sample's shape in PyTorch layout, from the task (and the module's first conv)."""
    info = task.training_information
    if info.data_type == "tabular" and info.input_columns:
        return (len(info.input_columns),)
    if info.data_type == "image" and info.image_h and info.image_w:
        first_conv = next(
            (m for m in (module.modules() if module else ()) if isinstance(m, nn.Conv2d)), None
        )
        channels = first_conv.in_channels if first_conv is not None else 3
        return (int(channels), int(info.image_h), int(info.image_w))
    raise SettingsError("cannot tell the model's input shape from the task: pass input_shape")


def final_activation(topology: Mapping[str, Any]) -> str | None:
    """The activation the TF.js model ends with (softmax, sigmoid...), or None."""
    config = topology.get("config")
    layers = config.get("layers") if isinstance(config, Mapping) else None
    if not isinstance(layers, list) or not layers:
        return None
    last = layers[-1] if topology.get("class_name") == "Sequential" else None
    if isinstance(config, Mapping) and last is None:
        outputs = config.get("output_layers") or []
        names = {str(o[0]) for o in outputs if isinstance(o, list) and o}
        last = next((layer for layer in layers if layer.get("name") in names), None)
    if not isinstance(last, Mapping):
        return None
    if last.get("class_name") == "Softmax":
        return "softmax"
    activation = (last.get("config") or {}).get("activation")
    return str(activation).replace("_", "").lower() if activation else None


def _head_for(loss: str) -> str | None:
    key = loss.replace("_", "").lower()
    if key in ("categoricalcrossentropy", "sparsecategoricalcrossentropy"):
        return "softmax"
    if key == "binarycrossentropy":
        return "sigmoid"
    return None


def _resolve_module(
    model: nn.Module | str, model_path: Sequence[str | Path]
) -> tuple[nn.Module, str | None]:
    if isinstance(model, nn.Module):
        return model, None
    factory = check_factory_name(model)
    return make_module(factory, model_path), factory


def prepare_task(
    task: Mapping[str, Any],
    model: nn.Module | str | Path | ModelArtifacts,
    *,
    torch_only: bool = False,
    input_shape: Sequence[int] | None = None,
    outputs: Outputs = "logits",
    model_path: Sequence[str | Path] = (),
) -> TaskDraft:
    """Validate the task and turn the model into its files (TF.js, or PyTorch-only)."""
    notes: list[str] = []
    draft = with_defaults(task)
    parsed = parse_task(draft)  # the server's checks and reasons
    if isinstance(model, ModelArtifacts):
        artifacts = model
    elif isinstance(model, Path) or (isinstance(model, str) and Path(model).is_dir()):
        folder = Path(model)
        if not (folder / "model.json").is_file():
            raise ArtifactsError(f"{folder}: no model.json (expected a TF.js layers folder)")
        artifacts = read_layers_folder(folder)
    else:
        module, factory = _resolve_module(model, model_path)
        shape = tuple(input_shape) if input_shape else model_input_shape(parsed, module)
        if torch_only:
            if factory is None:
                raise TorchModelError(
                    "a PyTorch-only task needs the factory participants call to build the "
                    "model: pass it as 'package.module:function' instead of a module"
                )
            artifacts = torch_artifacts(module, factory, shape, outputs)
        else:
            artifacts = _export(module, shape, parsed, notes)
    if is_torch_topology(artifacts.model_topology):
        parsed = _mark_torch_only(parsed, torch_factory(artifacts.model_topology))
    return TaskDraft(parsed, artifacts, tuple(notes))


def _export(
    module: nn.Module, shape: tuple[int, ...], task: Task, notes: list[str]
) -> ModelArtifacts:
    loss = task.training_information.model_compile_data.loss
    try:
        exported = export_tfjs(module, shape, name=task.task_id)
        head = _head_for(loss)
        if head is not None and final_activation(exported.artifacts.model_topology) != head:
            exported = export_tfjs(module, shape, name=task.task_id, output_activation=head)
            notes.append(f"added a final {head} layer: the task's loss {loss} reads probabilities")
    except ExportError as error:
        raise ExportError(
            f"{error}. Publish it as a PyTorch-only task instead (torch_only=True, "
            "--torch-only): Python participants can train it, JavaScript ones cannot"
        ) from None
    return exported.artifacts


def _mark_torch_only(task: Task, factory: str) -> Task:
    """The task with its `torchModel` (and, unless it has some, its UI limitations) saying
    why JavaScript and browser clients cannot train it."""
    reason = not_trainable_reason(task.task_id, factory)
    display = task.display_information
    if display.limitations is None:
        display = display.model_copy(update={"limitations": reason})
    marked = TorchModel(factory=factory, reason=reason)
    return task.model_copy(update={"torch_model": marked, "display_information": display})


def admin_token(explicit: str | None = None) -> str | None:
    """The admin token: given explicitly, else from DISCO_ADMIN_TOKEN."""
    return explicit or os.environ.get(ADMIN_TOKEN_ENV) or None


async def upload_task(
    http: httpx.AsyncClient, server: str, draft: TaskDraft, token: str | None = None
) -> Task:
    """POST /tasks (multipart model files): the stored task, or ServerError with why."""
    artifacts = draft.artifacts
    files = {
        "task.json": ("task.json", json.dumps(draft.task.to_json()).encode(), "application/json"),
        "model.json": (
            "model.json",
            json.dumps(artifacts.to_layers_json("weights.bin")).encode(),
            "application/json",
        ),
        "weights.bin": ("weights.bin", artifacts.weight_data, "application/octet-stream"),
    }
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = await http.post(f"{server}/tasks", files=files, headers=headers)
    except httpx.HTTPError as error:
        raise ServerError(f"cannot reach the server at {server}: {error}") from None
    if response.status_code != 201:
        try:
            reason = str(response.json().get("error") or response.json().get("detail"))
        except (ValueError, AttributeError):
            reason = response.text[:300]
        raise ServerError(f"the server refused the task ({response.status_code}): {reason}")
    try:
        return parse_task(response.json())
    except ValueError as error:  # not JSON, or not a task (TaskValidationError names the field)
        raise ServerError(f"the server did not answer with the task it created: {error}") from None
