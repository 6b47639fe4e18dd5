"""The tasks API against the real client: fetchTasks, getLatestModel, pushTask, and plain TF.js.

Weights are compared by name through sha256 digests of their float32 bytes: node digests what the
client or TF.js decoded, Python digests the bytes the server serves in the weight files.
"""

from __future__ import annotations

import uuid

import pytest

from interop.harness import get_json, node_weights, run_node, served_layers_weights

pytestmark = pytest.mark.interop

DEFAULT_TASKS = ("titanic", "mnist", "cifar10")
NODE_TIMEOUT = 90.0


def test_fetch_tasks_accepts_the_served_list(shared_interop_server: str) -> None:
    """fetchTasks() only succeeds when every element of GET /tasks passes the client's isTask."""
    result = run_node("fetch_tasks.mjs", shared_interop_server, timeout=NODE_TIMEOUT)
    served = [task["taskID"] for task in get_json(f"{shared_interop_server}/tasks")]
    assert sorted(result["taskIDs"]) == sorted(served)
    assert set(DEFAULT_TASKS) <= set(result["taskIDs"])
    assert result["tasks"]["titanic"]["trainingInformation"]["scheme"] == "federated"


@pytest.mark.parametrize("task_id", DEFAULT_TASKS)
def test_default_model_loads_in_tfjs_and_in_the_client(
    shared_interop_server: str, task_id: str
) -> None:
    """The same weights reach tf.loadLayersModel(model.json), ?format=tfjs and getLatestModel()."""
    model_url = f"{shared_interop_server}/tasks/{task_id}/model.json"
    expected = served_layers_weights(f"{model_url}?format=tfjs")
    assert expected, "the served model has no weights"
    result = run_node(
        "inspect_model.mjs",
        shared_interop_server,
        task_id,
        model_url,  # no hint: TF.js for fetch(), the DISCO encoding for the client's axios
        f"{model_url}?format=tfjs",
        timeout=NODE_TIMEOUT,
    )
    loaded = [("getLatestModel", result["client"])] + [
        (f"tfjs {i}", described) for i, described in enumerate(result["tfjs"])
    ]
    assert len(loaded) == 3
    for how, described in loaded:
        assert node_weights(described["weights"]) == expected, how
        assert described["predictionFinite"], how
        assert described["inputShape"] == result["client"]["inputShape"], how
        assert described["outputShape"] == result["client"]["outputShape"], how


def test_push_task_round_trips(shared_interop_server: str) -> None:
    """pushTask() creates a task whose served model has the pushed weights, in both encodings."""
    base = shared_interop_server
    task_id = f"interop-push-{uuid.uuid4().hex[:12]}"
    pushed = run_node("push_task.mjs", base, task_id, timeout=NODE_TIMEOUT)
    expected = node_weights(pushed["weights"])
    assert len(expected) == 4  # two dense layers: kernel + bias each

    served_tasks = {task["taskID"]: task for task in get_json(f"{base}/tasks")}
    assert task_id in served_tasks
    served_info = served_tasks[task_id]["trainingInformation"]
    for key, value in pushed["task"]["trainingInformation"].items():
        assert served_info.get(key) == value, f"trainingInformation.{key}"
    # The client still accepts the whole list with the new task in it.
    listed = run_node("fetch_tasks.mjs", base, timeout=NODE_TIMEOUT)
    assert task_id in listed["taskIDs"]

    model_url = f"{base}/tasks/{task_id}/model.json"
    assert served_layers_weights(f"{model_url}?format=tfjs") == expected
    result = run_node(
        "inspect_model.mjs", base, task_id, f"{model_url}?format=tfjs", timeout=NODE_TIMEOUT
    )
    assert node_weights(result["client"]["weights"]) == expected
    assert node_weights(result["tfjs"][0]["weights"]) == expected
    assert result["client"]["inputShape"] == [None, 6]
