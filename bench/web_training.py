"""Benchmark of the browser engine: in-browser training throughput and page load.

Run: `.venv/bin/python bench/web_training.py` (add `--quick` for fewer epochs). Needs the built
web app and Debian's chromium (`scripts/bootstrap.sh test`).

Set-up. A disco-server (default tasks) in a thread on a free loopback port and one headless
Chromium (the test flags: software rendering only, as on a server without a GPU). The same data
is trained on in the same run:

- titanic: `titanic_like_csv` (891 rows), read by the engine's `readTabular` in the page and by
  the Python client's `load_tabular`; the task's model, loss, optimizer and batch size (30);
- mnist: scikit-learn's digits as 28x28x1 (`digits_as_mnist`, 1,797 images), handed to the page
  as arrays (the engine's Dataset), the task's CNN and batch size.

Training throughput (samples/s): local training only (`scheme: "local"`: no communication),
`epochs` passes; the engine times its optimizer steps (`samplesPerSecond`), the Python client
(`LocalTrainer.step`, torch, its default threads) is timed the same way. The browser runs each
of its backends: wasm (the engine's default), cpu (pure JS) and webgl (software rasterizer here);
on mnist the two slow ones train on the first 60 images only (two batches), enough for a rate.

Page load: a fresh browser context (empty cache) opens `/app/` and waits until the tasks table is
drawn; then imports the engine and initialises its wasm backend. Reported: time to the table,
time to engine ready, and the bytes transferred (encoded body sizes of every response, gzip as
served), with and without the engine.

The table is printed and written as JSON to bench/results/web_training.json. Every step is
bounded in time; the server and the browser are always stopped.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from disco.client.data.dataset import Dataset  # noqa: E402
from disco.client.data.tabular import load_tabular  # noqa: E402
from disco.server.runner import serve_in_thread  # noqa: E402
from disco.server.settings import Settings  # noqa: E402
from disco.simulation.builtin_data import digits_as_mnist, titanic_like_csv  # noqa: E402
from disco.tasks.schema import Task  # noqa: E402
from web.browser import launch_chromium, new_page  # noqa: E402
from web.engine import open_engine, text_file_arg  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "web_training.json"
BACKENDS = ("wasm", "cpu", "webgl")

TRAIN_IN_PAGE = """async ({taskID, backend, epochs, csv, arrays, limit}) => {
    const used = await disco.initBackend(backend);
    if (used !== backend) return { backend: used, skipped: true };
    const task = await disco.getTask(server, taskID);
    let data;
    if (csv) {
        data = await disco.readTabular(task, fileFrom(csv.name, csv.data, csv.type));
    } else {
        const x = new Float32Array(Uint8Array.from(atob(arrays.x), (c) => c.charCodeAt(0)).buffer);
        const y = new Float32Array(Uint8Array.from(atob(arrays.y), (c) => c.charCodeAt(0)).buffer);
        data = { kind: "image", size: arrays.size, sampleShape: arrays.shape, x, y,
                 numClasses: arrays.classes, sources: [], notes: [] };
    }
    if (limit && limit < data.size) {  // the slow backends train on the first `limit` samples
        const per = data.x.length / data.size;
        const perY = data.y.length / data.size;
        data = { ...data, size: limit, x: data.x.slice(0, limit * per),
                 y: data.y.slice(0, limit * perY) };
    }
    const model = await disco.loadModel(server, taskID);
    const run = disco.train({ server, task, data, model, scheme: "local", epochs, seed: 1 });
    const result = await run.done;
    model.dispose();
    return { backend: used, samplesPerSecond: result.samplesPerSecond, samples: data.size * epochs,
             rounds: result.rounds.length, loss: result.rounds.at(-1).loss };
}"""

PAGE_LOAD = """() => {
    const entries = performance.getEntriesByType("resource").concat(
        performance.getEntriesByType("navigation"));
    return entries.map(
        (e) => ({ name: e.name, bytes: e.encodedBodySize, transfer: e.transferSize }));
}"""


def python_throughput(task: Task, artifacts: Any, data: Dataset, epochs: int) -> float:
    from disco.client.api import model_for
    from disco.client.training import LocalTrainer

    trainer = LocalTrainer(model_for(artifacts), task.training_information, seed=1)
    samples, seconds = 0, 0.0
    for _, batch in trainer.batches(data, epochs=epochs):
        started = time.perf_counter()
        metrics = trainer.step(batch)
        seconds += time.perf_counter() - started
        samples += metrics.samples
    return samples / seconds


def fetch(server: str, task_id: str) -> tuple[Task, Any]:
    import asyncio

    import httpx

    from disco.client.remote import fetch_model, fetch_task

    async def main() -> tuple[Task, Any]:
        async with httpx.AsyncClient(timeout=30) as http:
            task = await fetch_task(http, server, task_id)
            return task, (await fetch_model(http, server, task_id)).artifacts

    return asyncio.run(main())


def b64(array: np.ndarray) -> str:
    import base64

    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode("ascii")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one epoch per measurement")
    args = parser.parse_args()
    epochs = {"titanic": 1 if args.quick else 3, "mnist": 1}
    settings = Settings(data_dir=Path("/tmp") / f"disco-bench-web-{time.time_ns()}", port=0,
                        log_level="warning")
    rows: list[dict[str, Any]] = []
    load: dict[str, Any] = {}
    titanic_csv = titanic_like_csv(n=891, seed=0)
    csv_path = settings.data_dir.parent / f"{settings.data_dir.name}.csv"
    csv_path.write_text(titanic_csv)
    digits = digits_as_mnist()
    with serve_in_thread(settings) as server:
        tasks = {task_id: fetch(server, task_id) for task_id in ("titanic", "mnist")}
        info = tasks["titanic"][0].training_information
        data = {
            "titanic": load_tabular(csv_path, info.input_columns or [], info.output_columns or []),
            "mnist": digits,
        }
        python = {
            task_id: python_throughput(*tasks[task_id], data[task_id], epochs[task_id])
            for task_id in ("titanic", "mnist")
        }
        with launch_chromium() as browser:
            page, _ = new_page(browser)
            started = time.perf_counter()
            page.goto(server + "/app/")
            page.locator("#tasks tbody tr").first.wait_for()
            table_s = time.perf_counter() - started
            app_entries = page.evaluate(PAGE_LOAD)
            started = time.perf_counter()
            open_engine(page, server)
            engine_s = time.perf_counter() - started
            all_entries = page.evaluate(PAGE_LOAD)
            page.context.close()
            app_bytes = sum(e["bytes"] for e in app_entries)
            all_bytes = sum(e["bytes"] for e in all_entries)
            load = {
                "app_table_s": table_s, "app_bytes": app_bytes,
                "engine_ready_s": engine_s, "with_engine_bytes": all_bytes,
                "files": sorted({e["name"].rsplit("/", 1)[-1] for e in all_entries}),
            }
            for task_id in ("titanic", "mnist"):
                for backend in BACKENDS:
                    page, _ = new_page(browser)
                    open_engine(page, server)
                    # pure-JS kernels run a CNN at ~1 sample/s here: time a few batches only
                    slow = task_id == "mnist" and backend != "wasm"
                    request: dict[str, Any] = {"taskID": task_id, "backend": backend,
                                               "epochs": epochs[task_id], "csv": None,
                                               "arrays": None, "limit": 60 if slow else None}
                    if task_id == "titanic":
                        request["csv"] = text_file_arg("titanic.csv", titanic_csv)
                    else:
                        request["arrays"] = {
                            "x": b64(digits.x), "y": b64(digits.y.astype(np.float32)),
                            "size": len(digits), "shape": list(digits.x.shape[1:]),
                            "classes": digits.num_classes,
                        }
                    page.set_default_timeout(600_000)
                    try:
                        result = page.evaluate(TRAIN_IN_PAGE, request)
                    except Exception as error:  # e.g. a kernel missing on that backend
                        result = {"skipped": True, "error": str(error).splitlines()[0]}
                        print(f"{task_id} on {backend}: {result['error']}", file=sys.stderr)
                    page.context.close()
                    browser_sps = None if result.get("skipped") else result["samplesPerSecond"]
                    rows.append({
                        "task": task_id, "backend": backend,
                        "browser_samples_per_s": browser_sps,
                        "python_samples_per_s": python[task_id],
                        "browser_over_python": None if browser_sps is None
                        else browser_sps / python[task_id],
                        "epochs": epochs[task_id],
                        "browser_samples": result.get("samples"),
                        "python_samples": len(data[task_id]) * epochs[task_id],
                    })
    print(f"{'task':8} {'backend':8} {'browser samples/s':>18} {'python samples/s':>17} "
          f"{'browser/python':>15}")
    for row in rows:
        browser_text = (f"{row['browser_samples_per_s']:18.0f}"
                        if row["browser_samples_per_s"] is not None else f"{'n/a':>18}")
        ratio = (f"{row['browser_over_python']:15.2f}"
                 if row["browser_over_python"] is not None else f"{'n/a':>15}")
        print(f"{row['task']:8} {row['backend']:8} {browser_text} "
              f"{row['python_samples_per_s']:17.0f} {ratio}")
    print(f"page load: tasks table in {load['app_table_s']:.2f} s, {load['app_bytes'] / 1024:.0f}"
          f" KiB; engine ready (disco.js + wasm) after {load['engine_ready_s']:.2f} s more, "
          f"{load['with_engine_bytes'] / 1024:.0f} KiB in all (gzip as served)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "quick": args.quick, "training": rows, "page_load": load,
    }, indent=2) + "\n")
    print(f"written: {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
