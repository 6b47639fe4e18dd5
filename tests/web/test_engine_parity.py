"""The same weights give the same outputs in the browser engine and in the Python client."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import torch
from playwright.sync_api import Page

from disco.client.api import model_for
from disco.client.remote import fetch_model
from disco.tasks.artifacts import ModelArtifacts
from disco.tasks.schema import Task, parse_task
from web.engine import open_engine, run_async

PREDICT = """async ({taskID, x, shape}) => {
    const model = await disco.loadModel(server, taskID);
    const input = disco.tf.tensor(x, shape, "float32");
    const output = model.predict(input);
    const values = Array.from(await output.data());
    disco.tf.dispose([input, output]);
    return values;
}"""


def python_outputs(server: str, task_id: str, x: np.ndarray) -> np.ndarray:
    async def fetch() -> object:
        async with httpx.AsyncClient(timeout=30) as http:
            return (await fetch_model(http, server, task_id)).artifacts

    model = model_for(run_async(fetch))
    model.eval()
    with torch.no_grad():
        out: np.ndarray = model(torch.from_numpy(x)).numpy()
    return out


@pytest.mark.parametrize(
    ("task_id", "shape"),
    [("titanic", (64, 6)), ("mnist", (16, 28, 28, 1)), ("cifar10", (8, 32, 32, 3))],
)
def test_browser_and_python_outputs_agree(
    web_server: str, page: Page, task_id: str, shape: tuple[int, ...]
) -> None:
    assert open_engine(page, web_server) == "wasm"
    rng = np.random.default_rng(7)
    if task_id == "titanic":  # PassengerId, Age, SibSp, Parch, Fare, Pclass as in the data
        x = np.stack([rng.integers(1, 892, shape[0]), rng.uniform(1, 80, shape[0]),
                      rng.integers(0, 5, shape[0]), rng.integers(0, 4, shape[0]),
                      rng.uniform(0, 300, shape[0]), rng.integers(1, 4, shape[0])], axis=1)
        x = x.astype(np.float32)
    else:
        x = rng.uniform(0, 1, shape).astype(np.float32)
    browser = np.asarray(
        page.evaluate(PREDICT, {"taskID": task_id, "x": x.ravel().tolist(), "shape": list(shape)}),
        dtype=np.float32,
    )
    python = python_outputs(web_server, task_id, x)
    np.testing.assert_allclose(browser.reshape(python.shape), python, atol=1e-4, rtol=0)
    assert float(np.std(python)) > 0  # the outputs differ per input: a real comparison


CONV_GRADIENTS = """async ({cases}) => {
    const tf = disco.tf;
    const out = {};
    for (const backend of ["cpu", "wasm"]) {
        await disco.initBackend(backend);
        out[backend] = cases.map((c) => tf.tidy(() => {
            const x = tf.tensor(c.x, c.xShape);
            const w = tf.tensor(c.w, c.wShape);
            const dy = tf.tensor(c.dy, c.dyShape);
            const f = (a, b) => tf.conv2d(a, b, c.strides, c.pad).mul(dy).sum();
            const [gx, gw] = tf.grads(f)([x, w]);
            return { gx: Array.from(gx.dataSync()), gw: Array.from(gw.dataSync()) };
        }));
    }
    await disco.initBackend("wasm");
    return out;
}"""


def test_conv2d_gradients_on_wasm_equal_the_cpu_kernels(web_server: str, page: Page) -> None:
    """The engine computes Conv2D filter gradients on wasm by im2col (TF.js has no kernel)."""
    open_engine(page, web_server)
    rng = np.random.default_rng(3)
    cases = []
    for x_shape, w_shape, strides, pad in [
        ((2, 9, 9, 3), (3, 3, 3, 4), 1, "valid"),
        ((2, 9, 9, 3), (3, 3, 3, 4), 1, "same"),
        ((1, 10, 11, 2), (3, 2, 2, 5), 2, "same"),
        ((3, 8, 8, 1), (5, 5, 1, 2), 2, "valid"),
    ]:
        def out_size(n: int, k: int, s: int = strides, p: str = pad) -> int:
            return -(-n // s) if p == "same" else (n - k) // s + 1

        dy_shape = (x_shape[0], out_size(x_shape[1], w_shape[0]), out_size(x_shape[2], w_shape[1]),
                    w_shape[3])
        cases.append({
            "x": rng.normal(size=x_shape).ravel().tolist(), "xShape": x_shape,
            "w": rng.normal(size=w_shape).ravel().tolist(), "wShape": w_shape,
            "dy": rng.normal(size=dy_shape).ravel().tolist(), "dyShape": dy_shape,
            "strides": strides, "pad": pad,
        })
    result = page.evaluate(CONV_GRADIENTS, {"cases": cases})
    for cpu, wasm in zip(result["cpu"], result["wasm"], strict=True):
        np.testing.assert_allclose(wasm["gw"], cpu["gw"], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(wasm["gx"], cpu["gx"], rtol=1e-4, atol=1e-4)


ONE_STEP = """async ({task, x, y, shape, classes}) => {
    const model = await disco.loadModel(server, task.taskID);
    const data = { kind: classes ? "image" : "tabular", size: shape[0],
                   sampleShape: shape.slice(1), x: Float32Array.from(x), y: Float32Array.from(y),
                   numClasses: classes ?? undefined, sources: [], notes: [] };
    const run = disco.train({ server, task, data, model, scheme: "local", rounds: 1, seed: 1 });
    const result = await run.done;
    return { loss: result.rounds[0].loss,
             weights: disco.modelWeights(model).map((w) => Array.from(w.values)) };
}"""


@pytest.mark.parametrize("task_id", ["titanic", "mnist"])
def test_one_training_step_gives_the_python_weights(
    web_server: str, page: Page, task_id: str
) -> None:
    """Same weights, same batch, the task's loss, SGD: same loss and same new weights."""
    from disco.client.data.dataset import Dataset
    from disco.client.remote import fetch_task
    from disco.client.training import LocalTrainer

    open_engine(page, web_server)

    async def fetch() -> tuple[Task, ModelArtifacts]:
        async with httpx.AsyncClient(timeout=30) as http:
            task = await fetch_task(http, web_server, task_id)
            return task, (await fetch_model(http, web_server, task_id)).artifacts

    served, artifacts = run_async(fetch)
    rng = np.random.default_rng(5)
    n = 16
    task = served.to_json()
    info = task["trainingInformation"]
    info.update(batchSize=n, roundDuration=1, learningRate=0.05,
                modelCompileData={**info["modelCompileData"], "optimizer": "sgd"})
    if task_id == "titanic":
        x = np.stack([rng.integers(1, 892, n), rng.uniform(1, 80, n), rng.integers(0, 5, n),
                      rng.integers(0, 4, n), rng.uniform(0, 100, n), rng.integers(1, 4, n)],
                     axis=1).astype(np.float32) / np.float32(100)
        y = rng.integers(0, 2, (n, 1)).astype(np.float32)
        data, classes = Dataset(x, y), None
    else:
        x = rng.uniform(0, 1, (n, 28, 28, 1)).astype(np.float32)
        labels = rng.integers(0, 10, n)
        data, classes = Dataset(x, labels.astype(np.int64), num_classes=10), 10
        y = labels.astype(np.float32)
    model = model_for(artifacts)
    trainer = LocalTrainer(model, parse_task(task).training_information, seed=1)
    metrics = trainer.step(data)
    python_weights = model.tfjs_weights()
    browser = page.evaluate(ONE_STEP, {"task": task, "x": x.ravel().tolist(),
                                       "y": y.ravel().tolist(), "shape": list(x.shape),
                                       "classes": classes})
    assert browser["loss"] == pytest.approx(metrics.loss, rel=1e-4, abs=1e-5)
    for got, want in zip(browser["weights"], python_weights, strict=True):
        np.testing.assert_allclose(np.asarray(got, np.float32), want.ravel(), atol=1e-4, rtol=0)
