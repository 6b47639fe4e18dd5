"""Creating tasks from Python and the CLI: settings merged and checked like the server does."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from disco.client import Client  # noqa: E402
from disco.client.model.export import ExportError  # noqa: E402
from disco.client.publish import (  # noqa: E402
    final_activation,
    merge_settings,
    prepare_task,
    read_settings,
)
from disco.client.remote import ServerError  # noqa: E402
from disco.tasks.schema import TaskValidationError  # noqa: E402

TABULAR = {
    "taskID": "mlp-task",
    "trainingInformation": {
        "dataType": "tabular",
        "inputColumns": ["a", "b", "c"],
        "outputColumns": ["y"],
    },
}


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))


def test_settings_are_named_like_the_schema() -> None:
    task = merge_settings(TABULAR, {"epochs": 3, "batch_size": 16, "title": "My MLP"})
    assert task["trainingInformation"]["epochs"] == 3
    assert task["trainingInformation"]["batchSize"] == 16
    assert task["displayInformation"]["taskTitle"] == "My MLP"
    with pytest.raises(ValueError, match=r"unknown task setting.*batchsize"):
        merge_settings(TABULAR, {"batchsize": 16})


def test_defaults_fill_a_minimal_task_and_a_sigmoid_head_is_added() -> None:
    draft = prepare_task(TABULAR, _mlp())
    info = draft.task.training_information
    assert (
        info.model_id == "mlp-task-model" and info.model_compile_data.loss == "binaryCrossentropy"
    )
    assert final_activation(draft.artifacts.model_topology) == "sigmoid"
    assert any("sigmoid" in note for note in draft.notes)


def test_invalid_settings_give_the_servers_reasons(app_client: Any) -> None:
    bad = merge_settings(TABULAR, {"epochs": 0})
    with pytest.raises(TaskValidationError) as local:
        prepare_task(bad, _mlp())
    # The same task, sent to the server as is, is refused with the same reason.
    draft = prepare_task(TABULAR, _mlp())
    body = dict(draft.task.to_json())
    body["trainingInformation"] = {**body["trainingInformation"], "epochs": 0}
    files = {
        "task.json": json.dumps(body).encode(),
        "model.json": json.dumps(draft.artifacts.to_layers_json()).encode(),
        "weights.bin": draft.artifacts.weight_data,
    }
    response = app_client.post("/tasks", files={k: (k, v) for k, v in files.items()})
    assert response.status_code == 400
    assert str(local.value) in response.json()["error"]


def test_yaml_settings_file(tmp_path: Path) -> None:
    path = tmp_path / "task.yaml"
    path.write_text(
        textwrap.dedent(
            """
            taskID: from-yaml
            trainingInformation:
              dataType: tabular
              inputColumns: [a, b, c]
              outputColumns: [y]
              epochs: 4
            """
        )
    )
    draft = prepare_task(read_settings(path), _mlp())
    assert draft.task.task_id == "from-yaml" and draft.task.training_information.epochs == 4
    path.write_text("taskID: [unclosed")
    with pytest.raises(ValueError, match=r"task\.yaml: not valid YAML"):
        read_settings(path)


def test_a_module_the_exporter_refuses_suggests_torch_only() -> None:
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 1)

        def forward(self, x: Any) -> Any:
            return self.fc(x) * 3.0

    with pytest.raises(ExportError, match="PyTorch-only task instead"):
        prepare_task(TABULAR, Scaled())


def test_admin_token_from_the_environment(
    make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from disco.server.runner import serve_in_thread

    monkeypatch.delenv("DISCO_ADMIN_TOKEN", raising=False)
    with serve_in_thread(make_settings(admin_token="s3cret", load_default_tasks=False)) as server:
        client = Client(server)
        with pytest.raises(ServerError, match="401"):
            client.create_task(_mlp(), TABULAR)
        monkeypatch.setenv("DISCO_ADMIN_TOKEN", "s3cret")
        created = client.create_task(_mlp(), TABULAR, title="Guarded")
        assert created.display_information.task_title == "Guarded"
        assert httpx.get(f"{server}/tasks/mlp-task").status_code == 200
