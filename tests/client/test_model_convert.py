"""TF.js topology -> torch: layer support, weight layout round trips, clear errors (no node)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from disco.client.model import UnsupportedLayerError, build_model  # noqa: E402
from support.model_zoo import zoo_models  # noqa: E402


def _random_weights(specs: list[tuple[str, list[int]]], seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for name, shape in specs:
        array = rng.normal(0, 0.3, size=shape).astype(np.float32)
        if name.endswith("moving_variance"):
            array = np.abs(array) + 0.5
        out.append(array)
    return out


@pytest.mark.parametrize("name", sorted(zoo_models()))
def test_weights_round_trip_exactly(name: str) -> None:
    topology, specs, input_shape = zoo_models()[name]
    model = build_model(topology, specs)
    weights = _random_weights(specs, seed=1)
    model.set_tfjs_weights(weights)
    exported = model.tfjs_weights()
    assert [w.shape for w in exported] == [tuple(s) for _, s in specs]
    for a, b in zip(weights, exported, strict=True):
        np.testing.assert_array_equal(a, b)
    model.eval()
    x = torch.from_numpy(np.random.default_rng(2).normal(size=(3, *input_shape)).astype(np.float32))
    y = model(x)
    assert y.shape[0] == 3 and torch.isfinite(y).all()


def test_dense_kernel_is_transposed_and_conv_kernel_permuted() -> None:
    topology: dict[str, Any] = {
        "class_name": "Sequential",
        "config": {
            "name": "s",
            "layers": [
                {
                    "class_name": "Conv2D",
                    "config": {
                        "name": "c",
                        "filters": 2,
                        "kernel_size": [1, 1],
                        "use_bias": False,
                        "batch_input_shape": [None, 1, 1, 3],
                    },
                },
                {"class_name": "Flatten", "config": {"name": "f"}},
                {"class_name": "Dense", "config": {"name": "d", "units": 1, "use_bias": False}},
            ],
        },
    }
    specs = [("c/kernel", [1, 1, 3, 2]), ("d/kernel", [2, 1])]
    model = build_model(topology, specs)
    conv = np.arange(6, dtype=np.float32).reshape(1, 1, 3, 2)  # [kh, kw, in, out]
    dense = np.array([[1.0], [10.0]], dtype=np.float32)  # [in, out]
    model.set_tfjs_weights([conv, dense])
    x = torch.tensor([[[[1.0, 2.0, 3.0]]]])  # NHWC
    # conv out channel o = sum_i x_i * conv[0,0,i,o]; dense = out0 + 10*out1
    out0 = 1 * 0 + 2 * 2 + 3 * 4
    out1 = 1 * 1 + 2 * 3 + 3 * 5
    assert model(x).item() == pytest.approx(out0 + 10 * out1)


def test_flatten_uses_nhwc_order() -> None:
    topology = {
        "class_name": "Sequential",
        "config": {
            "layers": [
                {
                    "class_name": "Flatten",
                    "config": {"name": "f", "batch_input_shape": [None, 2, 2, 2]},
                }
            ]
        },
    }
    model = build_model(topology, [])
    x = torch.arange(8, dtype=torch.float32).reshape(1, 2, 2, 2)
    assert model(x).tolist() == [list(range(8))]


def test_unsupported_layer_is_named() -> None:
    topology = {
        "class_name": "Sequential",
        "config": {"layers": [{"class_name": "LSTM", "config": {"name": "my_lstm", "units": 3}}]},
    }
    with pytest.raises(UnsupportedLayerError, match=r"my_lstm.*LSTM"):
        build_model(topology, [])


def test_wrong_weight_shapes_are_refused() -> None:
    topology, specs, _ = zoo_models()["dense_mlp"]
    model = build_model(topology, specs)
    weights = _random_weights(specs, seed=0)
    weights[0] = weights[0].T.copy()
    with pytest.raises(ValueError, match=r"shape"):
        model.set_tfjs_weights(weights)
    with pytest.raises(ValueError, match=r"expected"):
        model.set_tfjs_weights(weights[:-1])


def test_manifest_naming_unknown_weight_is_refused() -> None:
    topology, specs, _ = zoo_models()["dense_mlp"]
    with pytest.raises(ValueError, match=r"no 'dense_1/kernel'|matches no layer"):
        build_model(topology, [("other/kernel", [4, 8]), *specs[1:]])
