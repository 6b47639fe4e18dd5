"""Benchmark: a browser participant's masking in a secure federated round, against Python's.

Run: `.venv/bin/python bench/secagg_browser.py` (`--quick`: P = 1e5 only). Needs the built web
app and Debian's chromium (`scripts/bootstrap.sh test`).

Set-up. A disco-server in a thread (it only serves the engine) and one headless Chromium with the
test flags. For P = 1e5 and 1e6 values and N = 10 participants (a full graph: 9 pairwise masks
plus the self mask), the page runs the engine's `secagg.encode` (fixed point mod 2^64, 32-bit
limbs) and `secagg.mask` (AES-256-CTR expansion through WebCrypto, limb additions); the Python
side runs `disco.aggregation.masking.encode` and `mask` (numpy, `cryptography`) on the same
sizes in this process. Median of 5 repetitions after one warm-up, each side timed by itself
(performance.now / perf_counter). The browser's bytes are checked equal to Python's on the first
repetition, so the two compute the same thing.

The table is printed and written as JSON to bench/results/secagg_browser.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from disco.aggregation import masking  # noqa: E402
from disco.server.runner import serve_in_thread  # noqa: E402
from disco.server.settings import Settings  # noqa: E402
from web.browser import launch_chromium, new_page  # noqa: E402
from web.engine import open_engine  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "secagg_browser.json"
PARTICIPANTS = 10
REPEATS = 5

MASK_IN_PAGE = """async ({size, seeds, index, repeats, summands}) => {
    const s = disco.secagg;
    const unhex = (t) => Uint8Array.from(t.match(/../g), (h) => parseInt(h, 16));
    const values = new Float64Array(size);
    for (let i = 0; i < size; i++) values[i] = Math.sin(i) * 3;
    const pairs = new Map(seeds.pairs.map(([j, h]) => [j, unhex(h)]));
    const self = unhex(seeds.self);
    const encodeMs = [], maskMs = [];
    const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    let first = null;
    for (let r = 0; r <= repeats; r++) {
        const t0 = performance.now();
        const encoded = s.encode(values, 24, summands);
        const t1 = performance.now();
        const masked = await s.mask(encoded, self, pairs, index);
        const t2 = performance.now();
        if (r === 0) {
            const bytes = s.toBytes(masked);
            first = hex(bytes.subarray(0, 64)) + hex(bytes.subarray(bytes.length - 64));
        } else {
            encodeMs.push(t1 - t0);
            maskMs.push(t2 - t1);
        }
    }
    return { encodeMs, maskMs, first };
}"""


def python_side(size: int, self_seed: bytes, pairs: dict[int, bytes], index: int) -> dict[str, Any]:
    values = np.sin(np.arange(size, dtype=np.float64)) * 3
    encode_ms: list[float] = []
    mask_ms: list[float] = []
    first = ""
    for r in range(REPEATS + 1):
        t0 = time.perf_counter()
        encoded = masking.encode(values, 24, summands=PARTICIPANTS)
        t1 = time.perf_counter()
        masked = masking.mask(encoded, self_seed, pairs, index)
        t2 = time.perf_counter()
        if r == 0:
            raw = masked.astype("<u8").tobytes()
            first = raw[:64].hex() + raw[-64:].hex()
        else:
            encode_ms.append(1000 * (t1 - t0))
            mask_ms.append(1000 * (t2 - t1))
    return {"encodeMs": encode_ms, "maskMs": mask_ms, "first": first}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="P = 1e5 only")
    args = parser.parse_args()
    sizes = [100_000] if args.quick else [100_000, 1_000_000]
    index = 4
    self_seed = secrets.token_bytes(32)
    pairs = {j: secrets.token_bytes(32) for j in range(1, PARTICIPANTS + 1) if j != index}
    rows: list[dict[str, Any]] = []
    seeds = {"self": self_seed.hex(), "pairs": [[j, s.hex()] for j, s in pairs.items()]}
    with (
        serve_in_thread(Settings(port=0, log_level="warning")) as server,
        launch_chromium() as browser,
    ):
        page, _ = new_page(browser)
        open_engine(page, server)
        for size in sizes:
            arg = {"size": size, "index": index, "repeats": REPEATS,
                   "summands": PARTICIPANTS, "seeds": seeds}
            in_page = page.evaluate(MASK_IN_PAGE, arg)
            python = python_side(size, self_seed, pairs, index)
            if in_page["first"] != python["first"]:
                raise SystemExit(f"P={size}: the browser's masked bytes differ from Python's")
            browser_total = statistics.median(
                e + m for e, m in zip(in_page["encodeMs"], in_page["maskMs"], strict=True)
            )
            python_total = statistics.median(
                e + m for e, m in zip(python["encodeMs"], python["maskMs"], strict=True)
            )
            rows.append({
                "P": size,
                "browser_encode_ms": statistics.median(in_page["encodeMs"]),
                "browser_mask_ms": statistics.median(in_page["maskMs"]),
                "browser_total_ms": browser_total,
                "python_total_ms": python_total,
                "browser_over_python": browser_total / python_total,
            })
        page.context.close()
    print(f"masking by one participant, N = {PARTICIPANTS} (self mask + 9 pairwise), "
          f"median of {REPEATS}")
    print(f"{'P':>9} {'browser encode':>15} {'browser mask':>13} {'browser total':>14} "
          f"{'python total':>13} {'browser/python':>15}")
    for row in rows:
        print(f"{row['P']:>9} {row['browser_encode_ms']:>12.1f} ms "
              f"{row['browser_mask_ms']:>10.1f} ms {row['browser_total_ms']:>11.1f} ms "
              f"{row['python_total_ms']:>10.1f} ms {row['browser_over_python']:>15.2f}")
    RESULTS.write_text(json.dumps({
        "benchmark": "secagg_browser",
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "participants": PARTICIPANTS,
        "repeats": REPEATS,
        "rows": rows,
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
