"""Small TF.js layers topologies covering every layer the torch converter supports.

Each entry: (modelTopology, [(weight name, shape)] in TF.js weight order, input shape).
"""

from __future__ import annotations

from typing import Any

Spec = list[tuple[str, list[int]]]
Zoo = dict[str, tuple[dict[str, Any], Spec, tuple[int, ...]]]


def _layer(class_name: str, **config: Any) -> dict[str, Any]:
    return {"class_name": class_name, "config": config}


def _sequential(*layers: dict[str, Any]) -> dict[str, Any]:
    return {
        "class_name": "Sequential",
        "config": {"name": "zoo", "layers": list(layers)},
        "keras_version": "tfjs-layers 4.22.0",
        "backend": "tensor_flow.js",
    }


def zoo_models() -> Zoo:
    """Models built to exercise padding, pooling, normalization, activations and merges."""
    dense_mlp = _sequential(
        _layer("Dense", name="dense_1", units=8, activation="relu", batch_input_shape=[None, 4]),
        _layer("Dropout", name="drop", rate=0.5),
        _layer("Dense", name="dense_2", units=3, activation="softmax"),
    )
    dense_specs: Spec = [
        ("dense_1/kernel", [4, 8]),
        ("dense_1/bias", [8]),
        ("dense_2/kernel", [8, 3]),
        ("dense_2/bias", [3]),
    ]
    cnn = _sequential(
        _layer(
            "Conv2D",
            name="conv_a",
            filters=4,
            kernel_size=[3, 3],
            strides=[2, 2],
            padding="same",
            activation="relu",
            batch_input_shape=[None, 11, 13, 3],
        ),
        _layer("BatchNormalization", name="bn", axis=-1, momentum=0.99, epsilon=0.001),
        _layer("MaxPooling2D", name="pool_a", pool_size=[2, 2], padding="same"),
        _layer(
            "Conv2D",
            name="conv_b",
            filters=5,
            kernel_size=[2, 3],
            padding="valid",
            activation="elu",
            use_bias=False,
        ),
        _layer("AveragePooling2D", name="pool_b", pool_size=[2, 2], strides=[1, 1], padding="same"),
        _layer("Flatten", name="flat"),
        _layer("Dense", name="out", units=2, activation="sigmoid"),
    )
    # BatchNormalization's moving statistics are non-trainable: TF.js lists them last.
    cnn_specs: Spec = [
        ("conv_a/kernel", [3, 3, 3, 4]),
        ("conv_a/bias", [4]),
        ("bn/gamma", [4]),
        ("bn/beta", [4]),
        ("conv_b/kernel", [2, 3, 4, 5]),
        ("out/kernel", [5 * 2 * 2, 2]),
        ("out/bias", [2]),
        ("bn/moving_mean", [4]),
        ("bn/moving_variance", [4]),
    ]
    gap = _sequential(
        _layer(
            "Conv2D",
            name="c",
            filters=6,
            kernel_size=[3, 3],
            activation="tanh",
            batch_input_shape=[None, 8, 8, 2],
        ),
        _layer("ReLU", name="relu"),
        _layer("GlobalAveragePooling2D", name="gap"),
        _layer("Dense", name="d", units=4),
        _layer("Softmax", name="sm"),
    )
    gap_specs: Spec = [
        ("c/kernel", [3, 3, 2, 6]),
        ("c/bias", [6]),
        ("d/kernel", [6, 4]),
        ("d/bias", [4]),
    ]

    def node(name: str, class_name: str, inbound: list[str], **config: Any) -> dict[str, Any]:
        return {
            "name": name,
            "class_name": class_name,
            "config": {"name": name, **config},
            "inbound_nodes": [[[src, 0, 0, {}] for src in inbound]] if inbound else [],
        }

    functional = {
        "class_name": "Model",
        "config": {
            "name": "fn",
            "layers": [
                node("inp", "InputLayer", [], batch_input_shape=[None, 5], dtype="float32"),
                node("a", "Dense", ["inp"], units=3, activation="relu"),
                node("b", "Dense", ["inp"], units=3, activation="tanh"),
                node("sum", "Add", ["a", "b"]),
                node("cat", "Concatenate", ["sum", "a"], axis=-1),
                node("act", "Activation", ["cat"], activation="sigmoid"),
            ],
            "input_layers": [["inp", 0, 0]],
            "output_layers": [["act", 0, 0]],
        },
        "keras_version": "tfjs-layers 4.22.0",
        "backend": "tensor_flow.js",
    }
    functional_specs: Spec = [
        ("a/kernel", [5, 3]),
        ("a/bias", [3]),
        ("b/kernel", [5, 3]),
        ("b/bias", [3]),
    ]
    return {
        "dense_mlp": (dense_mlp, dense_specs, (4,)),
        "cnn_same_padding_bn": (cnn, cnn_specs, (11, 13, 3)),
        "global_pooling": (gap, gap_specs, (8, 8, 2)),
        "functional_merge": (functional, functional_specs, (5,)),
    }
