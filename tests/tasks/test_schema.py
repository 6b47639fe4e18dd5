"""Task schema: what DISCO's isTask accepts, field-named errors, unknown fields preserved."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from disco.aggregation import AggregatorName as Aggregator
from disco.tasks.defaults import cifar10_task, default_tasks, mnist_task, titanic_task
from disco.tasks.schema import (
    DEFAULT_MIN_PARTICIPANTS,
    DEFAULT_MINIMUM_READY_PEERS,
    Scheme,
    Task,
    TaskValidationError,
    parse_task,
)


def minimal_task() -> dict[str, Any]:
    return {
        "taskID": "demo",
        "displayInformation": {"taskTitle": "Demo"},
        "trainingInformation": {
            "modelID": "demo-model",
            "epochs": 2,
            "roundDuration": 1,
            "validationSplit": 0.1,
            "batchSize": 8,
            "modelCompileData": {"optimizer": "sgd", "loss": "meanSquaredError", "metrics": []},
            "dataType": "other",
            "scheme": "federated",
        },
    }


@pytest.mark.parametrize("make", [titanic_task, mnist_task, cifar10_task])
def test_default_task_json_is_accepted_and_served_back_unchanged(
    make: Callable[[], dict[str, Any]],
) -> None:
    raw = make()
    assert parse_task(raw).to_json() == raw


def test_default_tasks_are_tasks() -> None:
    ids = [task.task_id for task, _ in default_tasks()]
    assert ids == ["titanic", "mnist", "cifar10"]


def test_unknown_fields_preserved_at_every_level() -> None:
    raw = minimal_task()
    raw["custom"] = {"nested": [1, None, "x"]}
    raw["digest"] = {"algorithm": "sha256", "value": "ab", "note": 1}
    raw["displayInformation"]["extraText"] = "kept"
    raw["displayInformation"]["summary"] = {"preview": "p", "overview": "o", "more": True}
    raw["trainingInformation"]["futureKnob"] = 0.5
    raw["trainingInformation"]["nothing"] = None
    raw["trainingInformation"]["modelCompileData"]["extraArg"] = {"a": 1}
    assert parse_task(raw).to_json() == raw


def test_null_optional_fields_are_treated_as_absent() -> None:
    raw = minimal_task()
    raw["trainingInformation"]["noiseScale"] = None
    raw["displayInformation"]["summary"] = None
    task = parse_task(raw)
    assert task.training_information.noise_scale is None
    assert "noiseScale" not in task.to_json()["trainingInformation"]
    assert "summary" not in task.to_json()["displayInformation"]


def test_values_keep_their_json_types() -> None:
    raw = minimal_task()
    raw["trainingInformation"]["epochs"] = 3.0
    raw["trainingInformation"]["roundDuration"] = 2
    out = parse_task(raw).to_json()["trainingInformation"]
    assert type(out["epochs"]) is float
    assert type(out["roundDuration"]) is int


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(task: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = task
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        target[last] = value

    return apply


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def apply(task: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = task
        for key in parents:
            target = target[key]
        del target[last]

    return apply


BAD_CASES = [
    (_set("trainingInformation.epochs", True), "trainingInformation.epochs: must be a number"),
    (_set("trainingInformation.epochs", "3"), "trainingInformation.epochs: must be a number"),
    (_set("trainingInformation.epochs", 0), "trainingInformation.epochs: must be >= 1"),
    (_set("trainingInformation.epochs", 1.5), "trainingInformation.epochs: must be an integer"),
    (_set("trainingInformation.epochs", float("inf")), "trainingInformation.epochs: must be a"),
    (_set("trainingInformation.batchSize", None), "trainingInformation.batchSize: must be a"),
    (_drop("trainingInformation.modelID"), "trainingInformation.modelID: required"),
    (_drop("trainingInformation.roundDuration"), "trainingInformation.roundDuration: required"),
    (_set("trainingInformation.validationSplit", 1), "trainingInformation.validationSplit"),
    (_set("trainingInformation.dataType", 5), "trainingInformation.dataType: must be a string"),
    (_set("trainingInformation.decentralizedSecure", 1), "decentralizedSecure: must be a boolean"),
    (_set("trainingInformation.byzantineRobustAggregator", "yes"), "byzantineRobustAggregator"),
    (_set("trainingInformation.minimumReadyPeers", 2.5), "minimumReadyPeers: must be an integer"),
    (_set("trainingInformation.LABEL_LIST", ["a", 1]), "LABEL_LIST: item 1 must be a string"),
    (_set("trainingInformation.modelCompileData", "sgd"), "modelCompileData: must be a JSON obj"),
    (_drop("trainingInformation.modelCompileData.loss"), "modelCompileData.loss: required"),
    (_set("trainingInformation.modelCompileData.metrics", "acc"), "metrics: must be an array"),
    (_set("trainingInformation.dataType", "tabular"), "inputColumns is required"),
    (_set("trainingInformation.dataType", "image"), "IMAGE_H and IMAGE_W are required"),
    (_drop("displayInformation.taskTitle"), "displayInformation.taskTitle: required"),
    (_set("displayInformation.summary", {"preview": "p"}), "displayInformation.summary.overview"),
    (
        _set("displayInformation.dataExample", [{"columnName": "a", "columnData": True}]),
        "displayInformation.dataExample[0].columnData: must be a number",
    ),
    (
        _set("displayInformation.dataExample", [{"columnName": "a", "columnData": 1, "x": 2}]),
        "displayInformation.dataExample[0].x: unexpected field",
    ),
    (_set("digest", {"algorithm": "sha256"}), "digest.value: required"),
    (_drop("displayInformation"), "displayInformation: required"),
    (_set("trainingInformation", []), "trainingInformation: must be a JSON object"),
    (_set("taskID", 7), "taskID: must be a string"),
    (_set("taskID", ""), "taskID: must not be empty"),
    (_set("taskID", "../etc"), "taskID: must use only"),
    (_set("taskID", "a/b"), "taskID: must use only"),
    (_set("taskID", ".hidden"), "taskID: must use only"),
    (_set("taskID", ".."), "taskID: must use only"),
    (_set("taskID", "x" * 129), "taskID: must be at most 128"),
]


@pytest.mark.parametrize(("mutate", "message"), BAD_CASES)
def test_bad_tasks_are_rejected_naming_the_field(
    mutate: Callable[[dict[str, Any]], None], message: str
) -> None:
    raw = copy.deepcopy(minimal_task())
    mutate(raw)
    with pytest.raises(TaskValidationError) as info:
        parse_task(raw)
    assert message in str(info.value)
    assert info.value.problems


@pytest.mark.parametrize("value", [None, [], "task", 3])
def test_non_object_task_is_rejected(value: object) -> None:
    with pytest.raises(TaskValidationError, match=r"^task: must be a JSON object"):
        parse_task(value)


def test_several_problems_are_all_reported() -> None:
    raw = minimal_task()
    raw["trainingInformation"]["epochs"] = "x"
    raw["trainingInformation"]["batchSize"] = False
    with pytest.raises(TaskValidationError) as info:
        parse_task(raw)
    paths = [path for path, _ in info.value.problems]
    assert paths == ["trainingInformation.epochs", "trainingInformation.batchSize"]


def test_safe_task_ids_are_accepted() -> None:
    for task_id in ["a", "A-b_c.d", "0", "x..y", "_x", "-x"]:
        raw = minimal_task()
        raw["taskID"] = task_id
        assert parse_task(raw).task_id == task_id


def test_helpers_defaults() -> None:
    info = parse_task(minimal_task()).training_information
    assert info.min_participants == DEFAULT_MIN_PARTICIPANTS == 2
    assert info.min_ready_peers == DEFAULT_MINIMUM_READY_PEERS == 3
    assert info.aggregator is Aggregator.MEAN
    assert info.clipping_quantile == 0.75
    assert info.secure_aggregation is False
    assert info.share_bound == 100.0
    assert info.training_scheme is Scheme.FEDERATED


def test_helpers_read_the_fields() -> None:
    raw = minimal_task()
    raw["trainingInformation"].update(
        minNbOfParticipants=4.0,
        minimumReadyPeers=5,
        byzantineRobustAggregator=True,
        tauPercentile=0.5,
        decentralizedSecure=True,
        maxShareValue=10,
        scheme="Decentralized",
    )
    info = parse_task(raw).training_information
    assert info.min_participants == 4 and isinstance(info.min_participants, int)
    assert info.min_ready_peers == 5
    assert info.aggregator is Aggregator.CENTERED_CLIPPING
    assert info.clipping_quantile == 0.5
    assert info.secure_aggregation is True
    assert info.share_bound == 10.0
    assert info.training_scheme is Scheme.DECENTRALIZED


def test_unknown_scheme_is_kept_but_has_no_training_scheme() -> None:
    raw = minimal_task()
    raw["trainingInformation"]["scheme"] = "gossip"
    task = parse_task(raw)
    assert task.training_information.training_scheme is None
    assert task.to_json()["trainingInformation"]["scheme"] == "gossip"


def test_task_is_immutable() -> None:
    task = parse_task(minimal_task())
    with pytest.raises(Exception, match="frozen"):
        task.task_id = "other"  # type: ignore[misc]
    assert isinstance(task, Task)


def test_non_json_values_in_unknown_fields_are_rejected_with_their_path() -> None:
    raw = minimal_task()
    raw["trainingInformation"]["extra"] = {"values": [1.0, float("nan")]}
    with pytest.raises(TaskValidationError) as info:
        parse_task(raw)
    assert str(info.value) == "trainingInformation.extra.values[1]: must be a finite number"

    raw = minimal_task()
    deep: Any = "leaf"
    for _ in range(200):
        deep = {"d": deep}
    raw["custom"] = deep
    with pytest.raises(TaskValidationError, match="nested deeper than 100 levels"):
        parse_task(raw)

    raw = minimal_task()
    raw["custom"] = b"bytes"
    with pytest.raises(TaskValidationError, match=r"^custom: bytes is not a JSON value"):
        parse_task(raw)
