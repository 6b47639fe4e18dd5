"""TF.js layers artifacts: round trips, sharded manifests, size/shape/path validation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from disco.tasks.artifacts import (
    ArtifactsError,
    ModelArtifacts,
    WeightSpec,
    manifest_paths,
    read_layers_folder,
)

TOPOLOGY = {"class_name": "Sequential", "config": {"name": "m", "layers": []}}


def make_artifacts(seed: int = 0) -> ModelArtifacts:
    rng = np.random.default_rng(seed)
    specs = [WeightSpec("d/kernel", (3, 2)), WeightSpec("d/bias", (2,)), WeightSpec("e", ())]
    data = rng.standard_normal(9).astype("<f4").tobytes()
    return ModelArtifacts(TOPOLOGY, specs, data, {"format": "layers-model", "convertedBy": None})


def test_weights_are_float32_views_in_spec_order() -> None:
    a = make_artifacts()
    flat = np.frombuffer(a.weight_data, dtype="<f4")
    w = a.weights()
    assert [x.shape for x in w] == [(3, 2), (2,), ()] == a.shapes()
    assert all(x.dtype == np.float32 for x in w)
    np.testing.assert_array_equal(w[0].ravel(), flat[:6])
    np.testing.assert_array_equal(w[1], flat[6:8])
    assert w[2] == flat[8]
    assert not w[0].flags.writeable  # views of immutable bytes
    assert a.parameter_count == 9


def test_with_weights_replaces_values_and_checks_shapes() -> None:
    a = make_artifacts()
    new: list[Any] = [np.full((3, 2), 1.5), np.arange(2, dtype=np.int64), np.float64(7.0)]
    b = a.with_weights(new)
    assert b.weight_specs == a.weight_specs and b.model_topology == a.model_topology
    assert b.extra == a.extra
    np.testing.assert_array_equal(b.weights()[0], np.full((3, 2), 1.5, dtype=np.float32))
    np.testing.assert_array_equal(b.weights()[1], [0.0, 1.0])
    assert b.weights()[2] == 7.0
    assert a.weights()[0][0, 0] != 1.5  # the original is untouched

    with pytest.raises(
        ArtifactsError, match=r"weight 1 \(d/bias\): expected shape \[2\], got \[3\]"
    ):
        a.with_weights([new[0], np.zeros(3), new[2]])
    with pytest.raises(ArtifactsError, match="expected 3 weight tensors, got 2"):
        a.with_weights(new[:2])
    with pytest.raises(ArtifactsError, match="not numeric"):
        a.with_weights([new[0], np.array(["a", "b"]), new[2]])


def test_layers_json_round_trip() -> None:
    a = make_artifacts()
    model_json = a.to_layers_json("w.bin")
    assert model_json["weightsManifest"] == [
        {
            "paths": ["w.bin"],
            "weights": [
                {"name": "d/kernel", "shape": [3, 2], "dtype": "float32"},
                {"name": "d/bias", "shape": [2], "dtype": "float32"},
                {"name": "e", "shape": [], "dtype": "float32"},
            ],
        }
    ]
    assert model_json["format"] == "layers-model" and model_json["convertedBy"] is None
    text = json.dumps(model_json)
    back = ModelArtifacts.from_layers(json.loads(text), {"w.bin": a.weight_data})
    assert back == a


def test_sharded_manifest_concatenates_paths_and_groups() -> None:
    a = make_artifacts()
    data = a.weight_data
    model_json = {
        "modelTopology": TOPOLOGY,
        "weightsManifest": [
            {
                "paths": ["g1-shard1", "g1-shard2"],
                "weights": [s.to_json() for s in a.weight_specs[:2]],
            },
            {"paths": ["g2"], "weights": [a.weight_specs[2].to_json()]},
        ],
        "userDefinedMetadata": {"epoch": 1},
    }
    files = {"g1-shard1": data[:10], "g1-shard2": data[10:32], "g2": data[32:]}
    back = ModelArtifacts.from_layers(model_json, files)
    assert back.weight_data == data
    assert back.extra == {"userDefinedMetadata": {"epoch": 1}}
    assert manifest_paths(model_json) == ["g1-shard1", "g1-shard2", "g2"]


def _model_json(paths: list[Any], weights: list[Any] | None = None) -> dict[str, Any]:
    specs = weights if weights is not None else [{"name": "k", "shape": [2, 2], "dtype": "float32"}]
    return {"modelTopology": TOPOLOGY, "weightsManifest": [{"paths": paths, "weights": specs}]}


def test_manifest_size_mismatch_says_expected_and_actual() -> None:
    with pytest.raises(ArtifactsError, match=r"declares 16 bytes for 1 tensors.*hold 12 bytes"):
        ModelArtifacts.from_layers(_model_json(["w.bin"]), {"w.bin": bytes(12)})
    with pytest.raises(ArtifactsError, match="hold 20 bytes"):
        ModelArtifacts.from_layers(_model_json(["w.bin"]), {"w.bin": bytes(20)})


@pytest.mark.parametrize(
    ("model_json", "message"),
    [
        ([], "must be a JSON object"),
        ({"weightsManifest": []}, "modelTopology must be an object"),
        ({"modelTopology": TOPOLOGY}, "weightsManifest must be an array"),
        (_model_json([]), r"paths: must be a non-empty array"),
        (_model_json(["../w.bin"]), "not a safe file name"),
        (_model_json(["a/w.bin"]), "not a safe file name"),
        (_model_json([".."]), "not a safe file name"),
        (_model_json([7]), "must be a non-empty string"),
        (_model_json(["missing.bin"]), "weight file 'missing.bin' is missing"),
        (_model_json(["w.bin"], [{"name": "k", "shape": [-1], "dtype": "float32"}]), "shape"),
        (_model_json(["w.bin"], [{"name": "k", "shape": [2.0], "dtype": "float32"}]), "shape"),
        (_model_json(["w.bin"], [{"name": "k", "shape": [True], "dtype": "float32"}]), "shape"),
        (_model_json(["w.bin"], [{"name": "k", "shape": [1], "dtype": "int32"}]), "dtype"),
        (_model_json(["w.bin"], [{"shape": [1], "dtype": "float32"}]), "name: must be a string"),
        (
            _model_json(
                ["w.bin"], [{"name": "k", "shape": [1], "quantization": {"dtype": "uint8"}}]
            ),
            "quantized",
        ),
    ],
)
def test_bad_model_json_is_rejected(model_json: Any, message: str) -> None:
    with pytest.raises(ArtifactsError, match=message):
        ModelArtifacts.from_layers(model_json, {"w.bin": bytes(16)})


def test_constructor_keeps_specs_and_bytes_consistent() -> None:
    with pytest.raises(ArtifactsError, match="need 8 bytes, got 4 bytes"):
        ModelArtifacts(TOPOLOGY, [WeightSpec("k", (2,))], bytes(4))
    with pytest.raises(ArtifactsError, match="reserved keys"):
        ModelArtifacts(TOPOLOGY, [], b"", {"weightsManifest": []})
    ok = ModelArtifacts(TOPOLOGY, [WeightSpec("k", (2,))], bytearray(8))  # type: ignore[arg-type]
    assert isinstance(ok.weight_data, bytes)


def test_unsafe_served_weights_path_is_refused() -> None:
    with pytest.raises(ArtifactsError):
        make_artifacts().to_layers_json("../x.bin")


def test_read_layers_folder(tmp_path: Path) -> None:
    a = make_artifacts()
    (tmp_path / "model.json").write_text(json.dumps(a.to_layers_json("weights.bin")))
    (tmp_path / "weights.bin").write_bytes(a.weight_data)
    assert read_layers_folder(tmp_path) == a

    (tmp_path / "weights.bin").unlink()
    with pytest.raises(ArtifactsError, match=r"'weights\.bin' is missing"):
        read_layers_folder(tmp_path)
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(ArtifactsError, match="not valid JSON"):
        read_layers_folder(tmp_path)


def test_tfjs_artifacts_shape() -> None:
    a = make_artifacts()
    tfjs = a.to_tfjs_artifacts()
    assert tfjs["weightData"] == a.weight_data
    assert [s["name"] for s in tfjs["weightSpecs"]] == ["d/kernel", "d/bias", "e"]
    assert tfjs["format"] == "layers-model"
