"""TaskStore: persistence, reload, crash safety, broken folders, extra tasks, concurrency."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import disco.tasks.store as store_module
from disco.tasks.artifacts import ArtifactsError, ModelArtifacts, WeightSpec
from disco.tasks.atomic import atomic_write_json
from disco.tasks.defaults import DEFAULT_TASK_IDS
from disco.tasks.disco_encoding import decode_disco_model_text
from disco.tasks.schema import Task, parse_task
from disco.tasks.store import (
    HISTORY_LIMIT,
    META_FILE,
    MODEL_FILE,
    TASK_FILE,
    CompletedRound,
    TaskExistsError,
    TaskNotFoundError,
    TaskStore,
)


def make_task(task_id: str = "demo", **extra: Any) -> Task:
    return parse_task(
        {
            "taskID": task_id,
            "displayInformation": {"taskTitle": task_id.title()},
            "trainingInformation": {
                "modelID": f"{task_id}-model",
                "epochs": 1,
                "roundDuration": 1,
                "validationSplit": 0,
                "batchSize": 4,
                "modelCompileData": {"optimizer": "sgd", "loss": "mse", "metrics": []},
                "dataType": "other",
                "scheme": "federated",
            },
            **extra,
        }
    )


def make_model(seed: int = 0) -> ModelArtifacts:
    data = np.random.default_rng(seed).standard_normal(10).astype("<f4").tobytes()
    specs = [WeightSpec("dense/kernel", (4, 2)), WeightSpec("dense/bias", (2,))]
    return ModelArtifacts({"class_name": "Sequential", "config": {"layers": []}}, specs, data)


def weights_like(model: ModelArtifacts, value: float) -> list[np.ndarray[Any, Any]]:
    return [np.full(shape, value, dtype=np.float32) for shape in model.shapes()]


def fresh_store(path: Path, **tasks: ModelArtifacts) -> TaskStore:
    store = TaskStore(path)
    store.load(with_defaults=False)
    for task_id, model in tasks.items():
        store.add(make_task(task_id), model)
    return store


def reload(path: Path) -> TaskStore:
    store = TaskStore(path)
    store.load(with_defaults=False)
    return store


def task_dir(root: Path, task_id: str) -> Path:
    return root / "tasks" / task_id


# ----------------------------------------------------------------- defaults and reload


def test_first_start_persists_defaults_and_reload_is_byte_identical(tmp_path: Path) -> None:
    data_dir = tmp_path / "new" / "data"
    store = TaskStore(data_dir)
    store.load()
    assert [t.task_id for t in store.list()] == sorted(DEFAULT_TASK_IDS)
    for task_id in DEFAULT_TASK_IDS:
        folder = task_dir(data_dir, task_id)
        assert sorted(p.name for p in folder.iterdir()) == [
            META_FILE,
            MODEL_FILE,
            TASK_FILE,
            "weights-1.bin",
        ]
        model_json = json.loads((folder / MODEL_FILE).read_bytes())
        assert model_json["weightsManifest"][0]["paths"] == ["weights-1.bin"]
        meta = json.loads((folder / META_FILE).read_bytes())
        assert meta["current"]["round"] == 0 and meta["previous"] is None

    again = TaskStore(data_dir)
    again.load()
    for task_id in DEFAULT_TASK_IDS:
        a, b = store.get(task_id), again.get(task_id)
        assert a.task == b.task and a.round == b.round == 0
        assert a.weights_bin == b.weights_bin
        assert a.model_json == b.model_json
        assert a.disco_model == b.disco_model
        assert a.task_json == b.task_json


def test_without_defaults_an_empty_store_stays_empty(tmp_path: Path) -> None:
    store = TaskStore(tmp_path)
    store.load(with_defaults=False)
    assert store.list() == [] and len(store) == 0


def test_served_encodings(tmp_path: Path) -> None:
    model = make_model()
    store = fresh_store(tmp_path, demo=model)
    stored = store.get("demo")
    served = json.loads(stored.model_json)
    assert served["weightsManifest"][0]["paths"] == ["weights.bin"]
    assert stored.weights_bin == model.weight_data
    assert decode_disco_model_text(stored.disco_model) == model
    assert json.loads(stored.task_json) == make_task().to_json()
    assert stored.disco_model is stored.disco_model  # computed once per version
    assert stored.task_id == "demo" and stored.version == 1


# ----------------------------------------------------------------- add / get / list


def test_add_duplicate_and_unknown(tmp_path: Path) -> None:
    store = fresh_store(tmp_path, demo=make_model())
    with pytest.raises(TaskExistsError, match="'demo' already exists"):
        store.add(make_task("demo"), make_model(1))
    with pytest.raises(TaskNotFoundError, match="unknown task 'nope'"):
        store.get("nope")
    assert isinstance(TaskNotFoundError("x"), KeyError)
    assert "demo" in store and "nope" not in store


def test_list_is_sorted_and_custom_fields_survive_reload(tmp_path: Path) -> None:
    store = fresh_store(tmp_path)
    store.add(make_task("zeta", custom={"k": [1, None]}), make_model())
    store.add(make_task("alpha"), make_model())
    assert [t.task_id for t in store.list()] == ["alpha", "zeta"]
    again = reload(tmp_path)
    assert [t.task_id for t in again.list()] == ["alpha", "zeta"]
    assert again.get("zeta").task.to_json()["custom"] == {"k": [1, None]}


# ----------------------------------------------------------------- model updates


def test_update_model_persists_and_keeps_one_previous_version(tmp_path: Path) -> None:
    model = make_model()
    store = fresh_store(tmp_path, demo=model)
    folder = task_dir(tmp_path, "demo")
    first = store.get("demo")

    second = store.update_model("demo", weights_like(model, 1.0), 1)
    assert store.get("demo") is second and second.round == 1 and second.version == 2
    assert first.round == 0  # snapshots held by readers do not change
    assert sorted(p.name for p in folder.glob("weights-*")) == ["weights-1.bin", "weights-2.bin"]

    store.update_model("demo", weights_like(model, 2.0), 5)
    assert sorted(p.name for p in folder.glob("weights-*")) == ["weights-2.bin", "weights-3.bin"]
    meta = json.loads((folder / META_FILE).read_bytes())
    assert (meta["current"]["version"], meta["current"]["round"]) == (3, 5)
    assert meta["previous"]["version"] == 2

    again = reload(tmp_path)
    stored = again.get("demo")
    assert stored.round == 5 and stored.version == 3
    assert all((w == 2.0).all() for w in stored.weights())
    assert json.loads(stored.model_json) == json.loads(store.get("demo").model_json)
    assert again.update_model("demo", weights_like(model, 3.0), 6).version == 4


def test_committed_model_is_current_before_finish_and_a_late_finish_does_nothing(
    tmp_path: Path,
) -> None:
    model = make_model()
    store = fresh_store(tmp_path, demo=model)
    folder = task_dir(tmp_path, "demo")
    second, finish_second = store.commit_model("demo", weights_like(model, 1.0), 1)
    assert store.get("demo") is second and second.version == 2
    meta = json.loads((folder / META_FILE).read_bytes())
    assert meta["current"]["version"] == 2  # committed: what a restart loads
    assert reload(tmp_path).get("demo").round == 1
    store = reload(tmp_path)  # repaired model.json; the finish below belongs to the old store

    third, finish_third = store.commit_model("demo", weights_like(model, 2.0), 2)
    fourth, finish_fourth = store.commit_model("demo", weights_like(model, 3.0), 3)
    finish_fourth()
    finish_third()  # late: a newer model is committed, nothing is written or removed
    manifest = json.loads((folder / MODEL_FILE).read_bytes())["weightsManifest"]
    assert manifest[0]["paths"] == ["weights-4.bin"]
    assert sorted(p.name for p in folder.glob("weights-*")) == ["weights-3.bin", "weights-4.bin"]
    assert reload(tmp_path).get("demo").version == fourth.version == 4
    assert third.version == 3 and callable(finish_second)


def test_update_model_rejects_bad_input_without_changes(tmp_path: Path) -> None:
    model = make_model()
    store = fresh_store(tmp_path, demo=model)
    with pytest.raises(ArtifactsError, match="expected shape"):
        store.update_model("demo", [np.zeros((4, 3)), np.zeros(2)], 1)
    with pytest.raises(TaskNotFoundError):
        store.update_model("nope", weights_like(model, 0.0), 1)
    for bad_round in (-1, True, 1.5):
        with pytest.raises(ValueError, match="round"):
            store.update_model("demo", weights_like(model, 0.0), bad_round)  # type: ignore[arg-type]
    assert store.get("demo").version == 1
    assert reload(tmp_path).get("demo").weights_bin == model.weight_data


# ----------------------------------------------------------------- crash safety


def test_crash_before_commit_keeps_old_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = make_model()
    store = fresh_store(tmp_path, demo=model)
    real = os.replace

    def crash_on_meta(source: Any, target: Any) -> None:  # after the weights' rename
        if Path(target).name == META_FILE:
            raise OSError("power loss")
        real(source, target)

    monkeypatch.setattr(os, "replace", crash_on_meta)
    with pytest.raises(OSError, match="power loss"):
        store.update_model("demo", weights_like(model, 9.0), 1)
    assert store.get("demo").version == 1
    monkeypatch.setattr(os, "replace", real)

    folder = task_dir(tmp_path, "demo")
    assert (folder / "weights-2.bin").exists()  # the orphan the crash left
    again = reload(tmp_path)
    assert again.get("demo").weights_bin == model.weight_data
    assert not (folder / "weights-2.bin").exists()  # cleaned up at load


def test_crash_after_commit_repairs_model_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    model = make_model()
    store = fresh_store(tmp_path, demo=model)
    real = atomic_write_json

    def crash_on_model(path: Any, obj: Any) -> None:
        if Path(path).name == MODEL_FILE:
            raise OSError("power loss")
        real(path, obj)

    monkeypatch.setattr("disco.tasks.store.atomic_write_json", crash_on_model)
    with caplog.at_level(logging.ERROR):
        stored = store.update_model("demo", weights_like(model, 4.0), 1)
    assert stored.version == 2 and "model.json not updated" in caplog.text
    monkeypatch.setattr("disco.tasks.store.atomic_write_json", real)

    folder = task_dir(tmp_path, "demo")
    stale = json.loads((folder / MODEL_FILE).read_bytes())
    assert stale["weightsManifest"][0]["paths"] == ["weights-1.bin"]
    again = reload(tmp_path)
    assert again.get("demo").round == 1
    assert all((w == 4.0).all() for w in again.get("demo").weights())
    repaired = json.loads((folder / MODEL_FILE).read_bytes())
    assert repaired["weightsManifest"][0]["paths"] == ["weights-2.bin"]


def test_a_lost_weights_rename_falls_back_to_the_previous_version(tmp_path: Path) -> None:
    # commit_model fsyncs the folder once, after meta.json's rename: a power loss before that
    # may keep meta.json's rename and lose the weights file's
    model = make_model()
    store = fresh_store(tmp_path, demo=model)
    store.update_model("demo", weights_like(model, 1.0), 1)
    store.update_model("demo", weights_like(model, 2.0), 2)
    (task_dir(tmp_path, "demo") / "weights-3.bin").unlink()
    again = reload(tmp_path)
    stored = again.get("demo")
    assert (stored.version, stored.round) == (2, 1)
    assert all((w == 1.0).all() for w in stored.weights())
    assert again.update_model("demo", weights_like(model, 3.0), 2).version == 4


def test_corrupted_weights_fall_back_to_previous_version(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = make_model()
    store = fresh_store(tmp_path, demo=model)
    store.update_model("demo", weights_like(model, 1.0), 1)
    folder = task_dir(tmp_path, "demo")
    (folder / "weights-2.bin").write_bytes(b"\x00" * 40)
    with caplog.at_level(logging.WARNING):
        again = reload(tmp_path)
    assert "fails its sha256 check" in caplog.text and "using the previous model" in caplog.text
    stored = again.get("demo")
    assert stored.round == 0 and stored.weights_bin == model.weight_data
    # the next update does not reuse the corrupted version's number
    assert again.update_model("demo", weights_like(model, 2.0), 2).version == 3


def test_unusable_task_is_skipped_and_its_id_stays_reserved(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = fresh_store(tmp_path, demo=make_model(), other=make_model(1))
    (task_dir(tmp_path, "demo") / "weights-1.bin").unlink()
    with caplog.at_level(logging.ERROR):
        again = reload(tmp_path)
    assert [t.task_id for t in again.list()] == ["other"]
    assert "no usable weights" in caplog.text
    assert "demo" in again.broken
    with pytest.raises(TaskExistsError, match="could not be loaded"):
        again.add(make_task("demo"), make_model())
    assert store.get("demo")  # the first store is unaffected


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda f: (f / TASK_FILE).unlink(), "task.json is missing"),
        (lambda f: (f / TASK_FILE).write_text("{"), "cannot be read as JSON"),
        (lambda f: (f / TASK_FILE).write_text('{"taskID": "demo"}'), "displayInformation"),
        (lambda f: (f / MODEL_FILE).write_text("[]"), "model.json: must be a JSON object"),
        (lambda f: (f / META_FILE).write_text('{"format": 99}'), "unknown format"),
        (
            lambda f: (f / META_FILE).write_text(
                json.dumps(
                    {
                        "format": 1,
                        "current": {
                            "version": 1,
                            "round": 0,
                            "weights": "../x",
                            "sha256": "0" * 64,
                        },
                    }
                )
            ),
            "not a safe file name",
        ),
        (
            lambda f: (f / TASK_FILE).write_text(json.dumps(make_task("other").to_json())),
            "does not match the folder name",
        ),
    ],
)
def test_broken_folders_are_logged_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: Any, reason: str
) -> None:
    fresh_store(tmp_path, demo=make_model(), fine=make_model(1))
    damage(task_dir(tmp_path, "demo"))
    (tmp_path / "tasks" / "stray-file.txt").write_text("not a task")
    with caplog.at_level(logging.ERROR):
        again = reload(tmp_path)
    assert [t.task_id for t in again.list()] == ["fine"]
    assert reason in caplog.text
    assert reason in again.broken["demo"]


def test_unfinished_staging_folder_is_removed(tmp_path: Path) -> None:
    fresh_store(tmp_path, demo=make_model())
    staging = tmp_path / "tasks" / ".staging-x-1234"
    staging.mkdir()
    (staging / TASK_FILE).write_text("{}")
    again = reload(tmp_path)
    assert not staging.exists()
    assert [t.task_id for t in again.list()] == ["demo"]


def test_failed_add_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = fresh_store(tmp_path)

    def crash(path: Any, obj: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("disco.tasks.store.atomic_write_json", crash)
    with pytest.raises(OSError, match="disk full"):
        store.add(make_task("demo"), make_model())
    assert "demo" not in store
    assert list((tmp_path / "tasks").iterdir()) == []


# ----------------------------------------------------------------- extra tasks dir


def write_layers_task(folder: Path, task: Task, model: ModelArtifacts, shards: int = 1) -> None:
    folder.mkdir(parents=True)
    (folder / TASK_FILE).write_text(json.dumps(task.to_json()))
    data = model.weight_data
    cut = len(data) // shards
    names = [f"group1-shard{i + 1}of{shards}.bin" for i in range(shards)]
    for i, name in enumerate(names):
        (folder / name).write_bytes(data[i * cut : None if i == shards - 1 else (i + 1) * cut])
    model_json = model.to_layers_json()
    model_json["weightsManifest"][0]["paths"] = names
    (folder / MODEL_FILE).write_text(json.dumps(model_json))


def test_extra_tasks_dir(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data_dir, extra = tmp_path / "data", tmp_path / "extra"
    fresh_store(data_dir, saved=make_model(0))
    write_layers_task(extra / "new-task", make_task("new-task", note="kept"), make_model(1), 3)
    write_layers_task(extra / "dup", make_task("saved"), make_model(2))
    write_layers_task(extra / "bad", make_task("bad"), make_model(3))
    (extra / "bad" / "group1-shard1of1.bin").write_bytes(b"short")
    (extra / "no-task").mkdir()

    store = TaskStore(data_dir)
    with caplog.at_level(logging.INFO):
        store.load(extra_tasks_dir=extra, with_defaults=False)
    assert [t.task_id for t in store.list()] == ["new-task", "saved"]
    assert store.get("new-task").weights_bin == make_model(1).weight_data
    assert store.get("new-task").task.to_json()["note"] == "kept"
    assert store.get("saved").weights_bin == make_model(0).weight_data  # the saved one wins
    assert "task saved from" in caplog.text and "already present" in caplog.text
    assert "manifest declares" in caplog.text
    assert "task.json is missing" in caplog.text

    # persisted into data_dir: present without the extra dir on the next start
    assert [t.task_id for t in reload(data_dir).list()] == ["new-task", "saved"]


def test_missing_extra_dir_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = TaskStore(tmp_path / "data")
    with caplog.at_level(logging.ERROR):
        store.load(extra_tasks_dir=tmp_path / "absent", with_defaults=False)
    assert "does not exist" in caplog.text and len(store) == 0


# ----------------------------------------------------------------- concurrency


def test_concurrent_updates_are_serialized(tmp_path: Path) -> None:
    model = make_model()
    store = fresh_store(tmp_path, demo=model)
    errors: list[BaseException] = []

    def worker(value: float) -> None:
        try:
            for step in range(5):
                store.update_model("demo", weights_like(model, value), step + 1)
                store.get("demo").disco_model  # noqa: B018 - concurrent readers
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(float(i),)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    final = store.get("demo")
    assert final.version == 1 + 4 * 5
    again = reload(tmp_path)
    assert again.get("demo").weights_bin == final.weights_bin
    assert len(list(task_dir(tmp_path, "demo").glob("weights-*.bin"))) == 2


def test_concurrent_adds_of_one_id_create_it_once(tmp_path: Path) -> None:
    store = fresh_store(tmp_path)
    outcomes: list[str] = []
    lock = threading.Lock()

    def worker(seed: int) -> None:
        try:
            store.add(make_task("race"), make_model(seed))
            result = "added"
        except TaskExistsError:
            result = "exists"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["added"] + ["exists"] * 5
    assert reload(tmp_path).get("race").weights_bin == store.get("race").weights_bin


# ----------------------------------------------------------------- round history


def completed(round_: int) -> CompletedRound:
    return CompletedRound(round_, 1_700_000_000.0 + round_, contributions=2, seconds=0.5 * round_)


def test_history_is_committed_with_the_model_and_survives_a_restart(tmp_path: Path) -> None:
    model = make_model()
    store = fresh_store(tmp_path, demo=model)
    assert store.get("demo").history == ()
    store.update_model("demo", weights_like(model, 1.0), 1, completed(1))
    store.update_model("demo", weights_like(model, 2.0), 2)  # a round without a record
    stored = store.update_model("demo", weights_like(model, 3.0), 3, completed(3))
    assert stored.history == (completed(1), completed(3))

    meta = json.loads((task_dir(tmp_path, "demo") / META_FILE).read_bytes())
    assert meta["history"] == [completed(1).to_json(), completed(3).to_json()]
    assert reload(tmp_path).get("demo").history == (completed(1), completed(3))


def test_history_keeps_the_last_rounds_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = 4  # the real limit (HISTORY_LIMIT) would make hundreds of fsynced commits
    monkeypatch.setattr(store_module, "HISTORY_LIMIT", limit)
    model = make_model()
    store = fresh_store(tmp_path, demo=model)
    weights = weights_like(model, 1.0)
    for round_ in range(1, limit + 3):
        store.update_model("demo", weights, round_, completed(round_))
    history = reload(tmp_path).get("demo").history
    assert len(history) == limit
    assert (history[0].round, history[-1].round) == (3, limit + 2)
    assert HISTORY_LIMIT >= 100  # the served history covers a long training


def test_fallback_to_the_previous_model_drops_the_rounds_after_it(tmp_path: Path) -> None:
    model = make_model()
    store = fresh_store(tmp_path, demo=model)
    store.update_model("demo", weights_like(model, 1.0), 1, completed(1))
    store.update_model("demo", weights_like(model, 2.0), 2, completed(2))
    (task_dir(tmp_path, "demo") / "weights-3.bin").write_bytes(b"\x00" * 40)  # round 2's model
    stored = reload(tmp_path).get("demo")
    assert stored.round == 1 and stored.history == (completed(1),)


@pytest.mark.parametrize(
    "history",
    [
        "not a list",
        [{"round": 1, "time": 1.0, "contributions": 2}],
        [{"round": -1, "time": 1.0, "contributions": 2, "seconds": 0.1}],
        [{"round": 1, "time": "noon", "contributions": 2, "seconds": 0.1}],
        [{"round": 1, "time": 1.0, "contributions": True, "seconds": 0.1}],
    ],
)
def test_a_damaged_history_is_dropped_and_the_model_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, history: object
) -> None:
    model = make_model()
    store = fresh_store(tmp_path, demo=model)
    store.update_model("demo", weights_like(model, 1.0), 1, completed(1))
    meta_path = task_dir(tmp_path, "demo") / META_FILE
    meta = json.loads(meta_path.read_bytes())
    meta_path.write_text(json.dumps({**meta, "history": history}))
    with caplog.at_level(logging.WARNING):
        stored = reload(tmp_path).get("demo")
    assert stored.round == 1 and stored.history == ()
    assert "round history dropped" in caplog.text


def test_meta_without_history_loads(tmp_path: Path) -> None:
    """meta.json written before the history existed."""
    model = make_model()
    store = fresh_store(tmp_path, demo=model)
    store.update_model("demo", weights_like(model, 1.0), 1)
    meta_path = task_dir(tmp_path, "demo") / META_FILE
    meta = json.loads(meta_path.read_bytes())
    del meta["history"]
    meta_path.write_text(json.dumps(meta))
    stored = reload(tmp_path).get("demo")
    assert stored.round == 1 and stored.history == ()
