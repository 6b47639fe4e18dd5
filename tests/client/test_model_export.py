"""PyTorch -> TF.js export: same outputs in real @tensorflow/tfjs, exact round trip, clear refusals.

The whole zoo runs in one node process (tfjs_predict.mjs batch mode) to keep the suite fast.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from disco.client.model import build_model  # noqa: E402
from disco.client.model.export import (  # noqa: E402
    ExportError,
    TfjsExport,
    export_tfjs,
    image_from_tfjs,
    image_to_tfjs,
)
from disco.tasks.artifacts import read_layers_folder  # noqa: E402
from support.node import requires_node, run_node_json  # noqa: E402
from support.torch_zoo import randomize_batch_norms, torch_zoo  # noqa: E402

TOLERANCE = 1e-4


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, "<f4").tobytes()).decode()


def _exported_zoo() -> dict[str, tuple[nn.Module, TfjsExport, np.ndarray]]:
    """Each zoo model, exported, with a batch of inputs (PyTorch layout)."""
    generator = torch.Generator().manual_seed(11)
    out = {}
    for name, (module, shape) in torch_zoo().items():
        randomize_batch_norms(module, generator)
        module.eval()
        x = torch.rand((4, *shape), generator=generator).numpy()
        out[name] = (module, export_tfjs(module, shape, name=name), x)
    return out


@pytest.fixture(scope="module")
def exported() -> dict[str, tuple[nn.Module, TfjsExport, np.ndarray]]:
    return _exported_zoo()


def _torch_out(module: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return image_to_tfjs(module(torch.from_numpy(x))).numpy()


@pytest.mark.interop
@requires_node
def test_zoo_matches_real_tfjs(exported: dict[str, Any]) -> None:
    names = sorted(exported)
    requests = []
    for name in names:
        _, export, x = exported[name]
        tfjs = export.artifacts.to_tfjs_artifacts()
        tfjs_x = image_to_tfjs(torch.from_numpy(x)).numpy()
        requests.append(
            {
                "modelTopology": tfjs["modelTopology"],
                "weightSpecs": tfjs["weightSpecs"],
                "weightData": base64.b64encode(tfjs["weightData"]).decode(),
                "inputs": [{"shape": list(tfjs_x.shape), "data": _b64(tfjs_x)}],
            }
        )
    results = run_node_json("tfjs_predict.mjs", {"models": requests})["results"]
    errors = {}
    for name, result in zip(names, results, strict=True):
        assert "error" not in result, f"{name}: tfjs failed: {result.get('error')}"
        module, _, x = exported[name]
        out = result["outputs"][0]
        theirs = np.frombuffer(base64.b64decode(out["data"]), "<f4").reshape(out["shape"])
        ours = _torch_out(module, x)
        assert theirs.shape == ours.shape, name
        errors[name] = float(np.max(np.abs(theirs - ours)))
    print("max |torch - tfjs| per model:", json.dumps(errors))
    assert max(errors.values()) < TOLERANCE, errors


def test_round_trip_through_importer_is_exact(exported: dict[str, Any], tmp_path: Path) -> None:
    for name, (module, export, x) in exported.items():
        folder = export.save(tmp_path / name).parent
        artifacts = read_layers_folder(folder)
        assert artifacts.weight_data == export.artifacts.weight_data, name
        specs = [(s.name, list(s.shape)) for s in artifacts.weight_specs]
        imported = build_model(artifacts.model_topology, specs)
        imported.set_tfjs_weights(artifacts.weights())
        imported.eval()
        # The importer hands back the very same bytes, in the same order...
        assert imported.weight_names == export.weight_names, name
        for a, b in zip(imported.tfjs_weights(), export.weights(), strict=True):
            assert a.tobytes() == b.tobytes(), name
        # ...and the module's own state_dict comes back bit for bit.
        state = module.state_dict()
        restored = export.state_dict_from_tfjs(export.weights())
        assert set(restored) == {k for k in state if not k.endswith("num_batches_tracked")}
        for key, value in restored.items():
            assert torch.equal(value, state[key]), f"{name}: {key}"
        with torch.no_grad():
            theirs = imported(image_to_tfjs(torch.from_numpy(x))).numpy()
        np.testing.assert_allclose(theirs, _torch_out(module, x), atol=1e-5, err_msg=name)


def test_trained_tfjs_weights_load_back_into_the_module() -> None:
    module, shape = torch_zoo()["cnn_padding"]
    export = export_tfjs(module, shape)
    changed = [w * 1.5 + 0.25 for w in export.weights()]
    module.load_state_dict(export.state_dict_from_tfjs(changed), strict=False)
    again = export_tfjs(module, shape)
    for a, b in zip(again.weights(), changed, strict=True):
        np.testing.assert_array_equal(a, b)


def test_sequential_chain_exports_as_sequential_with_dense_rows_reordered() -> None:
    module = nn.Sequential(nn.Conv2d(2, 3, 2), nn.Flatten(), nn.Linear(3 * 2 * 2, 1))
    export = export_tfjs(module, (2, 3, 3))
    topology = export.artifacts.model_topology
    assert topology["class_name"] == "Sequential"
    layers = topology["config"]["layers"]
    assert [layer["class_name"] for layer in layers] == ["Conv2D", "Flatten", "Dense"]
    assert layers[0]["config"]["batch_input_shape"] == [None, 3, 3, 2]
    assert export.input_shape == (3, 3, 2)
    kernel = export.weights()[2][:, 0]
    torch_row = module[2].weight.detach().numpy()[0]
    # TF.js feature (h*2 + w)*3 + c is PyTorch feature c*4 + h*2 + w.
    assert kernel[1] == torch_row[4] and kernel[2] == torch_row[8] and kernel[3] == torch_row[1]
    assert image_from_tfjs(image_to_tfjs(torch.zeros(1, 2, 3, 4))).shape == (1, 2, 3, 4)


class _Gated(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent control flow
            return self.fc(x)
        return x


class _Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * 2.0


class _Shared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.fc(x))


class _RawParameter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x) * self.scale


class _Transformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(3, 8)
        self.encoder = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(x)).mean(dim=1))


@pytest.mark.parametrize(
    ("module", "shape", "message"),
    [
        (_Transformer(), (5, 3), "'encoder' (TransformerEncoderLayer) is not supported"),
        (nn.Sequential(nn.Linear(4, 4), nn.Hardswish()), (4,), "'1' (Hardswish)"),
        (_Gated(), (4,), "cannot trace the forward of _Gated"),
        (_Scaled(), (4,), "the constant 2.0"),
        (_Shared(), (4,), "module 'fc' (Linear) is called more than once"),
        (_RawParameter(), (4,), "parameter or buffer 'scale' is used directly"),
        (nn.Sequential(nn.Conv2d(4, 4, 3, groups=2)), (4, 5, 5), "groups=2"),
        (nn.Sequential(nn.Linear(4, 4), nn.GELU("tanh")), (4,), "GELU(approximate='tanh')"),
        (nn.Sequential(nn.Linear(4, 4), nn.ELU(0.5)), (4,), "alpha=0.5 (TF.js: only 1.0)"),
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten()), (1, 4, 4), "flattened feature map"),
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Linear(2, 2)), (1, 4, 4), "flatten it first"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_unsupported_models_are_refused_by_name(
    module: nn.Module, shape: tuple[int, ...], message: str
) -> None:
    with pytest.raises(ExportError) as error:
        export_tfjs(module, shape)
    assert message in str(error.value)


def test_refusal_names_the_source_line() -> None:
    where = r"at test_model_export\.py:\d+ \(return self\.fc\(x\) \* 2\.0\)"
    with pytest.raises(ExportError, match=where):
        export_tfjs(_Scaled(), (4,))
