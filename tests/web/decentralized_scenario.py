"""Decentralized rounds between browser, Python and 2.1.1 Node peers, on loopback WebRTC only.

Run by tests/web/test_decentralized_browser.py inside a network namespace that has nothing but
`lo` (`unshare -n`), so that Chromium, which offers every address of the machine as an ICE
candidate, can only use 127.0.0.1. This script starts the server (a thread), one headless
Chromium with a page per browser peer, the Python peer (aiortc, loopback-only mode) and the
Node peer, runs AGGREGATION_ROUNDS rounds with known inputs and prints one JSON line: what
each peer got, and the selected ICE candidate pairs of the browser peers.

usage (PYTHONPATH=src:tests): python tests/web/decentralized_scenario.py
       <clear|secure> <browsers> <pythons> <nodes>
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from disco.client.decentralized import DecentralizedCommunicator
from disco.client.options import DecentralizedOptions
from disco.server.runner import serve_in_thread
from disco.server.settings import Settings
from disco.tasks.schema import parse_task
from interop.harness import run_node_async
from interop.p2p import (
    Barrier,
    decentralized_task,
    encode_tensors,
    peer_inputs,
    titanic,
    write_task_folder,
)
from web.browser import WEBRTC_FLAGS, launch_chromium, new_page
from web.engine import open_engine

TIMEOUT_MS = 60_000

BROWSER_PEER = """async ({task, secure, rounds, timeoutMs}) => {
    const f32 = (text) =>
        new Float32Array(Uint8Array.from(atob(text), (c) => c.charCodeAt(0)).buffer);
    const b64 = (values) => {
        const bytes = new Uint8Array(Float32Array.from(values).buffer);
        let text = "";
        for (let i = 0; i < bytes.length; i += 8192) {
            text += String.fromCharCode(...bytes.subarray(i, i + 8192));
        }
        return btoa(text);
    };
    const peer = await disco.DecentralizedCommunicator.connect(
        { server, task, secure, roundTimeoutMs: timeoutMs, iceServers: [] });
    const id = peer.peerID;
    const out = { id, rounds: [], participants: [], aggregated: [] };
    for (const [index, tensors] of rounds.entries()) {
        const weights = tensors.map((t) => ({ shape: t.shape, values: f32(t.data) }));
        const result = await peer.exchange(weights, index);
        out.aggregated.push(result.weights !== null);
        out.participants.push(result.participants);
        out.rounds.push((result.weights ?? weights).map(
            (w) => ({ shape: w.shape, data: b64(w.values) })));
    }
    out.pairs = await peer.connections();
    window.peer = peer;  // it leaves with the others (see main)
    return out;
}"""


def main() -> None:
    mode, browsers, pythons, nodes = sys.argv[1], *map(int, sys.argv[2:5])
    secure = mode == "secure"
    peers = browsers + pythons + nodes
    task_id = f"titanic-{mode}-web"
    _, artifacts = titanic()
    task = decentralized_task(task_id, secure)
    task["trainingInformation"]["minimumReadyPeers"] = peers
    shapes = [tuple(spec.shape) for spec in artifacts.weight_specs]
    inputs = [peer_inputs(seed, shapes) for seed in range(peers)]
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        write_task_folder(root / "tasks", task, artifacts)
        settings = Settings(data_dir=root / "data", tasks_dir=root / "tasks", port=0,
                            log_level="warning", load_default_tasks=False)
        with serve_in_thread(settings) as server, launch_chromium(WEBRTC_FLAGS) as chromium:
            pages = []
            for _ in range(browsers):
                page, console = new_page(chromium)
                open_engine(page, server)
                pages.append((page, console))
            results: list[Any] = [None] * peers
            # every peer leaves once all are done with their rounds (interop.p2p.Barrier says
            # why): a 2.1.1 peer leaving at once can take its last message with it
            barrier = Barrier.create(root, peers)

            async def others() -> None:
                async def python_peer(index: int) -> dict[str, Any]:
                    out: dict[str, Any] = {"rounds": [], "participants": [], "aggregated": []}
                    async with DecentralizedCommunicator(
                        server, parse_task(task), secure=secure,
                        round_timeout_s=TIMEOUT_MS / 1000,
                        options=DecentralizedOptions(loopback_only=True),
                    ) as peer:
                        for round_, weights in enumerate(inputs[index]):
                            got = await peer.exchange(weights, round_, 10)
                            out["aggregated"].append(got.weights is not None)
                            out["participants"].append(got.participants)
                            out["rounds"].append(encode_tensors(got.weights or weights))
                        await barrier.leave_together(f"python-{index}")
                    return out

                async def node_peer(index: int) -> dict[str, Any]:
                    request = Path(scratch) / f"node-{index}.json"
                    request.write_text(json.dumps({
                        "url": server, "taskID": task_id, "timeoutMs": TIMEOUT_MS,
                        "barrier": barrier.request(),
                        "rounds": [encode_tensors(r) for r in inputs[index]],
                    }))
                    result: dict[str, Any] = await run_node_async(
                        "decentralized_aggregate.mjs", str(request), timeout=TIMEOUT_MS / 1000 + 15
                    )
                    return result

                first = browsers
                jobs = [python_peer(first + i) for i in range(pythons)]
                jobs += [node_peer(first + pythons + i) for i in range(nodes)]
                for index, result in enumerate(await asyncio.gather(*jobs), start=first):
                    results[index] = result

            # Playwright's sync API is bound to this thread: the other peers run in another.
            worker_error: list[BaseException] = []

            def work() -> None:
                try:
                    asyncio.run(others())
                except BaseException as error:  # reported below
                    worker_error.append(error)

            worker = threading.Thread(target=work, name="other-peers")
            worker.start()
            # the browser peers run concurrently: start each, then collect them
            for index in range(browsers):
                pages[index][0].evaluate(
                    f"(request) => {{ window.peerRun = ({BROWSER_PEER})(request); return true; }}",
                    {"task": task, "secure": secure, "timeoutMs": TIMEOUT_MS,
                     "rounds": [encode_tensors(r) for r in inputs[index]]},
                )
            for index in range(browsers):
                results[index] = pages[index][0].evaluate("() => window.peerRun")
                barrier.done(f"browser-{index}")
            barrier.wait(TIMEOUT_MS / 1000)
            for page, _ in pages:
                page.evaluate("() => window.peer.close()")
            worker.join(TIMEOUT_MS / 1000 + 30)
            if worker_error:
                raise worker_error[0]
            errors = [console.errors for _, console in pages]
            warnings = [[m for m in console.messages if m.startswith("warning")]
                        for _, console in pages]
            for page, _ in pages:
                page.context.close()
    expected_inputs = [[encode_tensors(r) for r in peer] for peer in inputs]
    print(json.dumps({"results": results, "inputs": expected_inputs, "consoleErrors": errors,
                      "consoleWarnings": warnings,
                      "kinds": ["browser"] * browsers + ["python"] * pythons + ["node"] * nodes}))


if __name__ == "__main__":
    main()
