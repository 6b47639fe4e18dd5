"""PyTorch-only tasks: any nn.Module, built by a named factory on each Python participant.

The acceptance run: a transformer the TF.js exporter refuses, trained federated by three Python
clients, reaches a held-out accuracy well above chance.
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from disco.client import Client  # noqa: E402
from disco.client.api import model_for  # noqa: E402
from disco.client.data.dataset import Dataset  # noqa: E402
from disco.client.model.export import ExportError, export_tfjs  # noqa: E402
from disco.client.model.torch_task import (  # noqa: E402
    TorchModelError,
    build_torch_model,
    make_module,
    torch_artifacts,
)
from disco.client.options import DecentralizedOptions, TrainOptions  # noqa: E402
from disco.client.remote import fetch_model  # noqa: E402
from disco.client.training import LocalTrainer  # noqa: E402
from support.node import requires_node, run_node_json  # noqa: E402

FEATURES = 6
MODELS = textwrap.dedent(
    f"""
    import torch
    from torch import nn


    class FeatureTransformer(nn.Module):
        \"\"\"Each feature is a token (FT-Transformer style): custom forward, attention.\"\"\"

        def __init__(self, features={FEATURES}, dim=16, hidden=16):
            super().__init__()
            self.embed = nn.Linear(1, dim)
            self.position = nn.Parameter(torch.randn(features, dim) * 0.1)
            self.encoder = nn.TransformerEncoderLayer(
                dim, 2, hidden, dropout=0.0, batch_first=True
            )
            self.head = nn.Linear(dim, 1)

        def forward(self, x):
            tokens = self.embed(x.unsqueeze(-1)) + self.position
            return self.head(self.encoder(tokens).mean(dim=1))


    def make_transformer():
        torch.manual_seed(0)
        return FeatureTransformer()


    def make_wider():
        return FeatureTransformer(dim=24)
    """
)
COLUMNS = [f"f{i}" for i in range(FEATURES)]


def _rule(x: np.ndarray) -> np.ndarray:
    """The label the participants learn: an interaction no single feature reveals."""
    return ((x[:, 0] + x[:, 1] * x[:, 2]) > 0).astype(np.float32)


def _write_csv(path: Path, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(seed).normal(size=(n, FEATURES)).astype(np.float32)
    y = _rule(x)
    rows = [",".join([*COLUMNS, "y"])]
    rows += [
        ",".join(f"{v:.5f}" for v in (*features, label))
        for features, label in zip(x, y, strict=True)
    ]
    path.write_text("\n".join(rows) + "\n")
    return x, y


@pytest.fixture
def model_path(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "byom_transformer.py").write_text(MODELS)
    yield folder
    sys.modules.pop("byom_transformer", None)


def _task(task_id: str, **training: Any) -> dict[str, Any]:
    return {
        "taskID": task_id,
        "trainingInformation": {
            "dataType": "tabular",
            "inputColumns": COLUMNS,
            "outputColumns": ["y"],
            "batchSize": 16,
            "epochs": 10,
            "roundDuration": 5,
            "learningRate": 0.01,
            "minNbOfParticipants": 3,
            **training,
        },
    }


def test_the_exporter_refuses_it_and_the_torch_format_takes_it(model_path: Path) -> None:
    module = make_module("byom_transformer:make_transformer", [model_path])
    with pytest.raises(ExportError, match=r"not supported by the TF\.js exporter"):
        export_tfjs(module, (FEATURES,))
    artifacts = torch_artifacts(module, "byom_transformer:make_transformer", (FEATURES,))
    names = [spec.name for spec in artifacts.weight_specs]
    assert names[:3] == ["position", "embed.weight", "embed.bias"]
    assert "encoder.self_attn.in_proj_weight" in names
    specs = [(s.name, list(s.shape)) for s in artifacts.weight_specs]
    rebuilt = build_torch_model(artifacts.model_topology, specs, [model_path])
    for a, b in zip(rebuilt.tfjs_weights(), artifacts.weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_module_that_does_not_match_the_task_is_refused_before_training(
    model_path: Path,
) -> None:
    module = make_module("byom_transformer:make_transformer", [model_path])
    artifacts = torch_artifacts(module, "byom_transformer:make_wider", (FEATURES,))
    specs = [(s.name, list(s.shape)) for s in artifacts.weight_specs]
    with pytest.raises(TorchModelError) as error:
        build_torch_model(artifacts.model_topology, specs, [model_path])
    message = str(error.value)
    assert "does not match the task's model" in message
    assert "parameter 'position': the module has shape [6, 24], the task [6, 16]" in message


async def _train_three(server: str, task_id: str, parts: list[Path], model_path: Path) -> Any:
    client = Client(server)
    return await asyncio.gather(
        *(
            client.train_async(
                task_id,
                part,
                TrainOptions(round_timeout_s=60, seed=i, model_path=[model_path]),
            )
            for i, part in enumerate(parts)
        )
    )


@pytest.mark.slow
def test_three_python_clients_train_a_transformer_federated(
    live_server: str, tmp_path: Path, model_path: Path
) -> None:
    client = Client(live_server)
    created = client.create_task(
        "byom_transformer:make_transformer",
        _task("ft-transformer"),
        torch_only=True,
        model_path=[model_path],
    )
    assert created.torch_model is not None
    assert created.torch_model.factory == "byom_transformer:make_transformer"
    assert "PyTorch-only" in created.torch_model.reason
    parts = [tmp_path / f"part{i}.csv" for i in range(3)]
    for i, part in enumerate(parts):
        _write_csv(part, 160, seed=i)
    held_x, held_y = _write_csv(tmp_path / "held.csv", 600, seed=99)

    async def untrained_accuracy() -> float:
        async with httpx.AsyncClient() as http:
            remote = await fetch_model(http, live_server, "ft-transformer")
        model = model_for(remote.artifacts, [model_path])
        return (
            LocalTrainer(model, created.training_information)
            .evaluate(Dataset(held_x, held_y[:, None]))
            .accuracy
        )

    before = asyncio.run(untrained_accuracy())
    histories = asyncio.run(_train_three(live_server, "ft-transformer", parts, model_path))
    rounds = [len(h.rounds) for h in histories]
    assert all(r.aggregated and r.participants == 3 for h in histories for r in h.rounds)
    after = asyncio.run(untrained_accuracy())  # the server's global model after training
    majority = max(held_y.mean(), 1 - held_y.mean())
    print(
        f"PyTorch-only transformer, 3 federated clients, {rounds[0]} rounds: held-out accuracy "
        f"{before:.3f} -> {after:.3f} (majority class {majority:.3f}, 600 held-out samples)"
    )
    assert after > majority + 0.2


@pytest.mark.interop
@requires_node
def test_the_real_js_client_lists_it_and_is_told_why_it_cannot_train(
    live_server: str, model_path: Path
) -> None:
    Client(live_server).create_task(
        "byom_transformer:make_transformer",
        _task("ft-js"),
        torch_only=True,
        model_path=[model_path],
    )
    listed = run_node_json("fetch_tasks.mjs", None, live_server)
    assert "ft-js" in listed["taskIDs"]  # the 2.1.1 client accepts the whole list
    assert "PyTorch-only" in listed["tasks"]["ft-js"]["torchModel"]["reason"]
    # What the JS client asks for (DISCO encoding) is refused with the reason.
    response = httpx.get(
        f"{live_server}/tasks/ft-js/model.json",
        headers={"Accept": "application/json, text/plain, */*"},
    )
    assert response.status_code == 409
    assert "train it with the Python client" in response.json()["error"]


@pytest.mark.slow
def test_three_python_peers_train_it_decentralized(
    live_server: str, tmp_path: Path, model_path: Path
) -> None:
    Client(live_server).create_task(
        "byom_transformer:make_transformer",
        _task("ft-peers", scheme="decentralized", minimumReadyPeers=3),
        torch_only=True,
        model_path=[model_path],
    )
    parts = [tmp_path / f"peer{i}.csv" for i in range(3)]
    for i, part in enumerate(parts):
        _write_csv(part, 48, seed=i)

    async def train() -> Any:
        return await asyncio.gather(
            *(
                Client(live_server).train_async(
                    "ft-peers",
                    part,
                    TrainOptions(
                        rounds=2,
                        round_timeout_s=30,
                        model_path=[model_path],
                        decentralized=DecentralizedOptions(loopback_only=True),
                    ),
                )
                for part in parts
            )
        )

    histories = asyncio.run(train())
    for history in histories:
        assert history.scheme == "decentralized"
        assert [(r.participants, r.aggregated) for r in history.rounds] == [(3, True)] * 2
    finals = [h.final_weights for h in histories]
    for other in finals[1:]:
        for a, b in zip(other, finals[0], strict=True):
            np.testing.assert_allclose(a, b, atol=1e-6)
