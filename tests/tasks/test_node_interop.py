"""disco.tasks against the real JS stack: DISCO 2.1.1's isTask and model (de)serialization,
msgpack-lite and tfjs 4.22.0 `loadLayersModel`. Skipped when node or node_modules is missing."""

from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest

from disco.tasks.defaults import default_tasks
from disco.tasks.disco_encoding import EXT_ARRAY_BUFFER, decode_disco_model_text
from disco.tasks.store import TaskStore
from support.node import NODE_DIR, node_missing_reason

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(node_missing_reason() is not None, reason=node_missing_reason() or ""),
]

SCRIPT = Path(__file__).parent / "node" / "disco_tasks.js"
DEFAULTS = {task.task_id: (task, model) for task, model in default_tasks()}


def run_js(request: dict[str, Any]) -> Any:
    """Run disco_tasks.js with the interop client's node_modules; return its JSON answer."""
    env = {**os.environ, "NODE_PATH": str(NODE_DIR / "node_modules")}
    result = subprocess.run(
        ["node", str(SCRIPT)],
        input=json.dumps(request).encode(),
        capture_output=True,
        timeout=90,
        check=False,
        env=env,
        cwd=NODE_DIR,
    )
    stderr = result.stderr.decode(errors="replace")[-4000:]
    assert result.returncode == 0, f"node exited {result.returncode}:\n{stderr}"
    lines = result.stdout.decode().strip().splitlines()
    assert lines, f"node printed nothing:\n{stderr}"
    return json.loads(lines[-1])


def f32(b64: str) -> bytes:
    return base64.b64decode(b64)


def test_real_client_accepts_default_tasks_and_rejects_ours_rejections() -> None:
    tasks = [task.to_json() for task, _ in DEFAULTS.values()]
    broken = json.loads(json.dumps(tasks[0]))
    broken["trainingInformation"]["epochs"] = "20"  # we reject it too (see test_schema)
    assert run_js({"op": "isTask", "tasks": [*tasks, broken]})["results"] == [
        True,
        True,
        True,
        False,
    ]


@pytest.mark.parametrize("task_id", list(DEFAULTS))
def test_real_client_decodes_our_model_json(task_id: str, tmp_path: Path) -> None:
    """GET /tasks/:id/model.json as the 2.1.1 client reads it: tfjs rebuilds the same model."""
    store = TaskStore(tmp_path / "data")
    store.load()
    stored = store.get(task_id)
    payload = tmp_path / "model.json"
    payload.write_bytes(stored.disco_model)

    answer = run_js({"op": "decode", "file": str(payload)})
    model = DEFAULTS[task_id][1]
    assert answer["isEncoded"] is True
    assert answer["weightDataIsArrayBuffer"] is True
    assert answer["keys"][:4] == ["modelTopology", "format", "generatedBy", "convertedBy"]
    assert answer["weightNames"] == [s.name for s in model.weight_specs]
    assert [tuple(s) for s in answer["weightShapes"]] == model.shapes()
    assert f32(answer["weights"]) == model.weight_data
    # tfjs re-serializes our topology unchanged: it is exactly tfjs's own JSON
    assert answer["topology"] == model.model_topology
    outputs = np.frombuffer(f32(answer["outputs"]), dtype="<f4")
    assert np.isfinite(outputs).all() and answer["outputShape"][-1] in (1, 10)


def test_python_decodes_what_the_real_client_encodes(tmp_path: Path) -> None:
    """pushTask's `model`: serialization.model.encode of a compiled tfjs model."""
    payload = tmp_path / "pushed.json"
    answer = run_js({"op": "encode", "file": str(payload)})
    text = payload.read_bytes()
    artifacts = decode_disco_model_text(text)
    assert artifacts.weight_data == f32(answer["weights"])
    assert [s.name for s in artifacts.weight_specs] == answer["weightNames"]
    assert [list(s) for s in artifacts.shapes()] == answer["weightShapes"]
    assert artifacts.model_topology == answer["topology"]
    assert artifacts.extra["userDefinedMetadata"] == {"epoch": 3}
    assert artifacts.extra["format"] == "layers-model"
    # msgpack-lite wrote weightData as an ArrayBuffer ext, as our encoder does
    raw = msgpack.unpackb(bytes(json.loads(text)), raw=False)
    assert raw["weightData"] == msgpack.ExtType(EXT_ARRAY_BUFFER, artifacts.weight_data)


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A loopback static file server (stopped after the test)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize("task_id", list(DEFAULTS))
def test_tfjs_load_layers_model_reads_store_files(
    task_id: str, tmp_path: Path, http_root: tuple[Path, str]
) -> None:
    """Both the served pair (model.json + weights.bin) and the on-disk folder load in tfjs."""
    root, base = http_root
    store = TaskStore(tmp_path / "data")
    store.load()
    model = DEFAULTS[task_id][1]
    updated = store.update_model(task_id, [w * 0.5 for w in model.weights()], 1)

    served = root / "served"
    served.mkdir()
    (served / "model.json").write_bytes(updated.model_json)
    (served / "weights.bin").write_bytes(updated.weights_bin)
    on_disk = root / "disk"
    on_disk.symlink_to(tmp_path / "data" / "tasks" / task_id, target_is_directory=True)

    for folder in ("served", "disk"):
        answer = run_js({"op": "load_url", "url": f"{base}/{folder}/model.json"})
        assert f32(answer["weights"]) == updated.weights_bin
        assert answer["topology"] == model.model_topology
        assert np.isfinite(np.frombuffer(f32(answer["outputs"]), dtype="<f4")).all()
