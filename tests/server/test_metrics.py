"""GET /metrics: Prometheus text that the Prometheus parser reads, whose figures move with a
federated round; JSON log lines carry task, client and round."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from disco.cli.server import load_settings
from disco.server.app import create_app
from disco.server.logs import JsonFormatter, log_context
from disco.server.metrics import ServerMetrics
from disco.server.receive_budget import ReceiveBudget
from disco.server.runner import serve_in_thread, uvicorn_config
from disco.server.settings import Settings
from disco.tasks.disco_encoding import encode_disco_model
from support.robust_ws import FedClient, filled, small_model, task_json

ADMIN = "metrics-admin"
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def base(tmp_path: Path) -> Iterator[str]:
    settings = Settings(data_dir=tmp_path, port=0, load_default_tasks=False, log_level="warning",
                        admin_token=ADMIN, round_deadline_s=30.0)  # fmt: skip
    with serve_in_thread(settings) as url:
        yield url


async def scrape(base: str) -> Samples:
    """Every sample of GET /metrics, read by Prometheus' own text parser."""
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{base}/metrics", headers=ADMIN_HEADERS)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What the federated server logs meanwhile, as `--log-format json` writes it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("disco.server.federated")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def test_metrics_move_with_a_round(base: str, json_lines: io.StringIO) -> None:
    async with httpx.AsyncClient() as http:  # the labels name tasks: admin only
        assert (await http.get(f"{base}/metrics")).status_code == 401
    task = "metered"
    body = {"task": task_json(task, minNbOfParticipants=2),
            "model": list(encode_disco_model(small_model()))}  # fmt: skip
    async with httpx.AsyncClient() as http:
        created = await http.post(f"{base}/tasks", json=body, headers=ADMIN_HEADERS)
    assert created.status_code == 201, created.text
    uploaded = created.request.content
    before = await scrape(base)
    a, b = await FedClient.open(base, task), await FedClient.open(base, task)
    try:
        round_, weights = await a.latest()
        shapes = [tuple(w.shape) for w in weights]
        during = await scrape(base)
        assert value(during, "disco_connections", task=task, scheme="federated") == 2
        future = await a.post(filled(shapes, 1.0), round_ + 5)
        assert future["status"] == "future"
        assert (await a.post(filled(shapes, 1.0), round_))["status"] == "accepted"
        assert (await b.post(filled(shapes, 3.0), round_))["status"] == "accepted"
        assert await a.wait_round(round_ + 1) == round_ + 1
    finally:
        await a.close()
        await b.close()
    after = await scrape(base)
    for _ in range(100):  # the server notices the closes a moment later
        if value(after, "disco_connections", task=task, scheme="federated") == 0:
            break
        await asyncio.sleep(0.05)
        after = await scrape(base)
    assert value(after, "disco_connections", task=task, scheme="federated") == 0
    assert value(after, "disco_rounds_completed_total", task=task) == 1
    assert value(after, "disco_contributions_total", task=task, result="accepted") == 2
    assert value(after, "disco_contributions_total", task=task, result="future") == 1
    for histogram in ("round_duration", "aggregation", "persistence"):
        name = f"disco_{histogram}_seconds_count"
        assert value(after, name, task=task) == 1, name
        assert value(after, f"disco_{histogram}_seconds_sum", task=task) > 0
    for direction in ("received", "sent"):
        name = f"disco_{direction}_bytes_total"
        ws_before, ws_after = (value(s, name, transport="websocket") for s in (before, after))
        grew = ws_after - ws_before
        assert grew > 2 * sum(4 * w.size for w in weights), name  # at least two models' worth
    lines = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    refused = next(line for line in lines if "refused (future)" in line["message"])
    assert (refused["task"], refused["client"], refused["round"]) == (task, a.client_id, round_ + 5)
    aggregated = next(line for line in lines if "aggregated" in line["message"])
    assert (aggregated["task"], aggregated["round"], aggregated["client"]) == (task, round_, None)
    # HTTP: the task's upload came in, the scrapes went out
    assert value(after, "disco_received_bytes_total", transport="http") >= len(uploaded)
    sent = "disco_sent_bytes_total"
    assert value(after, sent, transport="http") > value(before, sent, transport="http")


def test_the_receive_budget_is_reported_as_it_is_when_scraped() -> None:
    budget = ReceiveBudget(100)
    metrics = ServerMetrics(budget)
    granted: list[int] = []
    first = budget.reserve(80, lambda: granted.append(1))
    second = budget.reserve(50, lambda: granted.append(2))  # does not fit: waits
    now = parse(metrics.exposition().decode())
    assert value(now, "disco_ws_receive_budget_bytes") == 100
    assert value(now, "disco_ws_receive_held_bytes") == 80
    assert value(now, "disco_ws_receive_waiting") == 1
    assert value(now, "disco_ws_receive_waits_total") == 1
    first.release()
    assert granted == [2]
    now = parse(metrics.exposition().decode())
    assert value(now, "disco_ws_receive_held_bytes") == 50
    assert value(now, "disco_ws_receive_waiting") == 0
    assert value(now, "disco_ws_receive_waits_total") == 1
    second.release()
    assert value(parse(metrics.exposition().decode()), "disco_ws_receive_held_bytes") == 0


async def test_the_served_budget_is_the_one_the_websocket_protocol_reserves_from(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path, port=0, load_default_tasks=False,
                        admin_token=ADMIN, ws_receive_budget_bytes=5 << 20)  # fmt: skip
    app = create_app(settings)
    protocol = uvicorn_config(app, settings).ws
    assert not isinstance(protocol, str)
    assert getattr(protocol, "budget") is app.state.receive_budget  # noqa: B009
    with serve_in_thread(settings) as url:
        assert value(await scrape(url), "disco_ws_receive_budget_bytes") == 5 << 20


def test_json_log_lines_carry_task_client_and_round() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("disco.test.json")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        with log_context(task="titanic", client="alice"):
            logger.warning("update refused: %s", "stale", extra={"round": 3})
            logger.info("no round here")
        logger.error("outside")
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["message"] == "update refused: stale"
    assert (lines[0]["task"], lines[0]["client"], lines[0]["round"]) == ("titanic", "alice", 3)
    assert (lines[1]["task"], lines[1]["round"], lines[1]["level"]) == ("titanic", None, "info")
    assert (lines[2]["task"], lines[2]["client"]) == (None, None)


def test_log_format_option() -> None:
    assert load_settings(["--log-format", "json"]).log_format == "json"
    assert load_settings([]).log_format == "text"
