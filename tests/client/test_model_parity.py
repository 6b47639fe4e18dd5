"""The same input gives the same output in PyTorch and in real @tensorflow/tfjs (node).

Checked for every default task and for a zoo of topologies covering each supported layer, before
and after a weights round trip through the torch model (export in TF.js layout, reload in tfjs).
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from disco.client.model import build_model  # noqa: E402
from support.model_zoo import zoo_models  # noqa: E402
from support.node import requires_node, run_node_json  # noqa: E402

pytestmark = [pytest.mark.interop, requires_node]


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, "<f4").tobytes()).decode()


def _tfjs_predict(
    topology: dict[str, Any],
    specs: list[tuple[str, list[int]]],
    weights: list[np.ndarray],
    x: np.ndarray,
) -> np.ndarray:
    payload = {
        "modelTopology": topology,
        "weightSpecs": [{"name": n, "shape": list(s), "dtype": "float32"} for n, s in specs],
        "weightData": base64.b64encode(
            b"".join(w.astype("<f4").tobytes() for w in weights)
        ).decode(),
        "inputs": [{"shape": list(x.shape), "data": _b64(x)}],
    }
    out = run_node_json("tfjs_predict.mjs", payload)["outputs"][0]
    return np.frombuffer(base64.b64decode(out["data"]), "<f4").reshape(out["shape"])


def _check_parity(
    topology: dict[str, Any],
    specs: list[tuple[str, list[int]]],
    weights: list[np.ndarray],
    input_shape: tuple[int, ...],
    seed: int,
) -> None:
    x = np.random.default_rng(seed).uniform(0, 1, size=(4, *input_shape)).astype(np.float32)
    model = build_model(topology, specs)
    model.set_tfjs_weights(weights)
    model.eval()
    with torch.no_grad():
        ours = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, _tfjs_predict(topology, specs, weights, x), atol=1e-4)
    # Round trip: perturb in torch, export in TF.js layout, and tfjs must agree again.
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.1)
    exported = model.tfjs_weights()
    with torch.no_grad():
        ours = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, _tfjs_predict(topology, specs, exported, x), atol=1e-4)


@pytest.mark.parametrize("name", sorted(zoo_models()))
def test_zoo_model_matches_tfjs(name: str) -> None:
    topology, specs, input_shape = zoo_models()[name]
    rng = np.random.default_rng(3)
    weights = []
    for weight_name, shape in specs:
        w = rng.normal(0, 0.4, size=shape).astype(np.float32)
        weights.append(np.abs(w) + 0.5 if weight_name.endswith("moving_variance") else w)
    _check_parity(topology, specs, weights, input_shape, seed=4)


def test_default_tasks_match_tfjs() -> None:
    from disco.tasks.defaults import default_tasks

    for task, artifacts in default_tasks():
        specs = [(s.name, list(s.shape)) for s in artifacts.weight_specs]
        info = task.to_json()["trainingInformation"]
        if info["dataType"] == "image":
            input_shape: tuple[int, ...] = (
                info["IMAGE_H"],
                info["IMAGE_W"],
                3 if task.task_id == "cifar10" else 1,
            )
        else:
            input_shape = (len(info["inputColumns"]),)
        _check_parity(artifacts.model_topology, specs, artifacts.weights(), input_shape, seed=5)
