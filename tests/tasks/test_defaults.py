"""Default tasks: deterministic Glorot-initialised models with tfjs-style topology and names."""

from __future__ import annotations

import math

import numpy as np
import pytest

from disco.tasks.defaults import CIFAR10_LABELS, default_tasks
from disco.tasks.initializers import fans, glorot_uniform
from disco.tasks.sequential import SequentialBuilder


def test_defaults_are_deterministic() -> None:
    first, second = default_tasks(), default_tasks()
    for (task_a, model_a), (task_b, model_b) in zip(first, second, strict=True):
        assert task_a == task_b
        assert model_a == model_b


def test_seeds_differ_per_task() -> None:
    (_, _), (_, mnist), (_, cifar) = default_tasks()
    assert mnist.weights()[0].ravel()[:9].tolist() != cifar.weights()[0].ravel()[:9].tolist()


def test_titanic_model_matches_disco_architecture() -> None:
    task, model = default_tasks()[0]
    info = task.training_information
    assert info.input_columns == ["PassengerId", "Age", "SibSp", "Parch", "Fare", "Pclass"]
    assert info.output_columns == ["Survived"]
    assert (info.epochs, info.round_duration, info.batch_size) == (20, 10, 30)
    assert info.model_compile_data.loss == "binaryCrossentropy"
    layers = model.model_topology["config"]["layers"]
    assert [(layer["class_name"], layer["config"]["units"]) for layer in layers] == [
        ("Dense", 124),
        ("Dense", 64),
        ("Dense", 32),
        ("Dense", 1),
    ]
    assert layers[0]["config"]["batch_input_shape"] == [None, 6]
    assert layers[0]["config"]["dtype"] == "float32"
    assert "batch_input_shape" not in layers[1]["config"]
    assert [layer["config"]["activation"] for layer in layers] == ["relu"] * 3 + ["sigmoid"]
    assert [s.name for s in model.weight_specs] == [
        f"dense_Dense{i}/{kind}" for i in range(1, 5) for kind in ("kernel", "bias")
    ]
    assert model.shapes() == [(6, 124), (124,), (124, 64), (64,), (64, 32), (32,), (32, 1), (1,)]
    assert model.model_topology["keras_version"] == "tfjs-layers 4.22.0"
    assert model.model_topology["backend"] == "tensor_flow.js"


@pytest.mark.parametrize(
    ("index", "shape", "flat"), [(1, (28, 28, 1), 1600), (2, (32, 32, 3), 2304)]
)
def test_image_models(index: int, shape: tuple[int, int, int], flat: int) -> None:
    task, model = default_tasks()[index]
    info = task.training_information
    assert (info.image_h, info.image_w) == shape[:2]
    assert len(info.label_list or []) == 10
    names = [layer["config"]["name"] for layer in model.model_topology["config"]["layers"]]
    assert names == [
        "conv2d_Conv2D1",
        "max_pooling2d_MaxPooling2D1",
        "conv2d_Conv2D2",
        "max_pooling2d_MaxPooling2D2",
        "flatten_Flatten1",
        "dense_Dense1",
        "dense_Dense2",
    ]
    assert model.shapes() == [
        (3, 3, shape[2], 32),
        (32,),
        (3, 3, 32, 64),
        (64,),
        (flat, 64),
        (64,),
        (64, 10),
        (10,),
    ]


def test_cifar10_labels_are_class_names() -> None:
    task, _ = default_tasks()[2]
    assert task.training_information.label_list == list(CIFAR10_LABELS)
    assert "airplane" in CIFAR10_LABELS and len(set(CIFAR10_LABELS)) == 10


def test_every_default_is_federated_with_complete_display_information() -> None:
    for task, _ in default_tasks():
        display = task.display_information
        assert task.training_information.scheme == "federated"
        for text in (
            display.task_title,
            display.model,
            display.tradeoffs,
            display.data_format_information,
            display.data_example_text,
            display.limitations,
        ):
            assert isinstance(text, str) and text
        assert display.summary is not None and display.summary.preview
    titanic = default_tasks()[0][0].display_information
    assert titanic.headers and titanic.data_example
    assert [e.column_name for e in titanic.data_example] == titanic.headers


def test_kernels_are_glorot_uniform_and_biases_zero() -> None:
    for _, model in default_tasks():
        for spec, tensor in zip(model.weight_specs, model.weights(), strict=True):
            if spec.name.endswith("/bias"):
                assert not tensor.any()
                continue
            fan_in, fan_out = fans(spec.shape)
            limit = math.sqrt(6 / (fan_in + fan_out))
            assert np.abs(tensor).max() <= limit
            if tensor.size >= 1000:  # uniform(-l, l) has variance l²/3
                assert tensor.var() == pytest.approx(limit**2 / 3, rel=0.1)


def test_fans_follow_keras() -> None:
    assert fans((6, 124)) == (6, 124)
    assert fans((3, 3, 32, 64)) == (288, 576)
    assert fans((5,)) == (5, 5)
    assert fans(()) == (1, 1)
    values = glorot_uniform(np.random.default_rng(0), (200, 300))
    assert values.dtype == np.float32 and values.shape == (200, 300)


def test_builder_rejects_impossible_layers() -> None:
    with pytest.raises(ValueError, match="empty shape"):
        SequentialBuilder((2, 2, 1)).conv2d(4, 3)
    with pytest.raises(ValueError, match=r"\(H, W, C\)"):
        SequentialBuilder((4,)).conv2d(4, 3)
    with pytest.raises(ValueError, match="positive"):
        SequentialBuilder((0,))
