"""The same weights give the same outputs in the browser engine and in the Python client."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import torch
from playwright.sync_api import Page

from disco.client.api import model_for
from disco.client.remote import fetch_model
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

    model = model_for({}, run_async(fetch))
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
