"""Federated secure aggregation in the browser engine, checked against the Python side.

- parity: the engine's fixed point, AES-CTR masks, Shamir shares, HKDF, AES-GCM, commitments
  and key agreement (both curves) give the bytes `disco.aggregation.masking`/`shamir` and
  `disco.secagg.keys` give on the same inputs, and each side opens what the other sealed;
- a pure round: the Python `Coordinator` with two browser participants and two Python ones,
  one browser participant dropping after sharing (the server rebuilds its mask key from shares
  the browser made), on X25519 and on P-256 (the browser's fallback);
- the privacy account: the engine's ε and noise calibration equal dp-accounting's;
- a served round: two browser pages training titanic (client-side DP with an ε target) and one
  Python client share secure rounds; everyone adopts Σ n_i·w_i / Σ n_i within fixed-point
  precision, the task status counts the rounds as completed secure rounds and shows the ε the
  browsers reported.
"""

from __future__ import annotations

import secrets

import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, Page

from disco.aggregation import masking, shamir
from disco.client.federated import FederatedSession
from disco.client.secure_federated import SecureFederatedCommunicator
from disco.client.session import Exchange
from disco.privacy import epsilon, noise_for
from disco.secagg import Coordinator, Curve, KeyPair, Participant, PublicKeys, Stage
from disco.secagg.keys import Purpose, commitment, decrypt, derive, encrypt
from disco.simulation.builtin_data import titanic_like_csv
from disco.weights import Weights
from web.browser import ConsoleLog, new_page
from web.engine import open_engine, text_file_arg

HELPERS = """() => {
    window.hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    window.unhex = (text) => Uint8Array.from(text.match(/../g) ?? [], (h) => parseInt(h, 16));
}"""


def engine_page(page: Page, server: str) -> Page:
    open_engine(page, server)
    page.evaluate(HELPERS)
    return page


def test_arithmetic_matches_python(web_server: str, page: Page) -> None:
    engine_page(page, web_server)
    rng = np.random.default_rng(5)
    ulp = 2.0**-24
    values = [0.5 * ulp, 1.5 * ulp, 2.5 * ulp, -0.5 * ulp, -2.5 * ulp, -3.5 * ulp, 0.0, -0.0,
              1.0, -1.0, 2.0**20 + 0.3, -(2.0**30) - 0.7, *rng.normal(0, 50, 500).tolist()]
    raw = rng.integers(0, 2**63, 64, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    seed, self_seed = bytes(range(32)), secrets.token_bytes(32)
    pairs = {1: secrets.token_bytes(32), 5: secrets.token_bytes(32)}
    limit = masking.encoding_limit(24, 3)
    got = page.evaluate(
        """async ({values, raw, seed, selfSeed, pairs, limit}) => {
            const s = disco.secagg;
            const encoded = s.encode(values, 24, 3);
            const refused = [];
            for (const v of [limit * 1.001, -limit * 1.001, NaN]) {
                try { s.encode([v], 24, 3); } catch (e) { refused.push(e.name); }
            }
            const pairSeeds = new Map(pairs.map(([j, h]) => [j, unhex(h)]));
            const masked = await s.mask(encoded, unhex(selfSeed), pairSeeds, 3);
            const total = new Uint32Array(unhex(raw).buffer);
            return {
                encoded: hex(s.toBytes(encoded)),
                decoded: Array.from(s.decode(total, 24)),
                stream: hex(s.toBytes(await s.expand(unhex(seed), 300))),
                masked: hex(s.toBytes(masked)),
                refused,
            };
        }""",
        {"values": values, "raw": raw.astype("<u8").tobytes().hex(), "seed": seed.hex(),
         "selfSeed": self_seed.hex(), "pairs": [[j, s.hex()] for j, s in pairs.items()],
         "limit": limit},
    )
    encoded = masking.encode(np.array(values), 24, summands=3)
    assert got["encoded"] == encoded.astype("<u8").tobytes().hex()
    assert got["decoded"] == masking.decode(raw, 24).tolist()
    assert got["stream"] == masking.expand(seed, 300).astype("<u8").tobytes().hex()
    masked = masking.mask(encoded, self_seed, pairs, 3)
    assert got["masked"] == masked.astype("<u8").tobytes().hex()
    assert got["refused"] == ["FixedPointError"] * 3


def test_shamir_hkdf_gcm_and_keys_match_python(web_server: str, page: Page) -> None:
    engine_page(page, web_server)
    secret = int.from_bytes(secrets.token_bytes(32), "big")
    python_shares = shamir.split(secret, [1, 2, 4, 5, 7], 3)
    shared, session = secrets.token_bytes(32), secrets.token_bytes(16)
    plaintext = secrets.token_bytes(132)
    share_key = derive(shared, session, Purpose.SHARE, 2, 5)
    sealed_by_python = encrypt(share_key, plaintext, session, 2, 5)
    python_keys = {c: KeyPair.generate(c) for c in Curve}
    got = page.evaluate(
        """async ({secret, shares, shared, session, sealed, pythonKeys}) => {
            const s = disco.secagg;
            const share = (pairs) =>
                new Map(pairs.map(([x, h]) => [x, s.shareFromBytes(unhex(h))]));
            const theirs = [[1, 2, 4], [2, 5, 7], [1, 4, 7]].map(
                (xs) => s.combine(share(shares.filter(([x]) => xs.includes(x)))).toString(),
            );
            const mine = s.split(BigInt(secret), [1, 2, 3, 4], 3);
            const mask = await s.derive(unhex(shared), unhex(session), "mask", 3, 1);
            const swapped = await s.derive(unhex(shared), unhex(session), "mask", 1, 3);
            const key = await s.derive(unhex(shared), unhex(session), "share", 5, 2);
            const opened = await s.decrypt(key, unhex(sealed), unhex(session), 2, 5);
            let misdirected = null;
            try { await s.decrypt(key, unhex(sealed), unhex(session), 2, 4); }
            catch (e) { misdirected = e.name; }
            const plain = Uint8Array.from({ length: 132 }, (_, i) => i);
            const back = await s.encrypt(key, plain, unhex(session), 5, 2);
            const seed = Uint8Array.from({ length: 32 }, (_, i) => 255 - i);
            const keys = {};
            for (const curve of ["x25519", "p256"]) {
                let pair;
                try { pair = await s.KeyPair.generate(curve); } catch { continue; }
                keys[curve] = {
                    public: hex(pair.publicKey),
                    secret: (await pair.secret()).toString(),
                    agreed: hex(await pair.agree(unhex(pythonKeys[curve]))),
                };
            }
            return {
                theirs, mine: [...mine].map(([x, v]) => [x, hex(s.shareToBytes(v))]),
                mask: hex(mask), swapped: hex(swapped), opened: hex(opened), misdirected,
                back: hex(back), commitment: hex(await s.commitment(unhex(session), 7, seed)),
                keys, curves: await s.supportedCurves(),
            };
        }""",
        {"secret": str(secret),
         "shares": [[x, shamir.share_to_bytes(v).hex()] for x, v in python_shares.items()],
         "shared": shared.hex(), "session": session.hex(), "sealed": sealed_by_python.hex(),
         "pythonKeys": {str(c): k.public.hex() for c, k in python_keys.items()}},
    )
    assert got["theirs"] == [str(secret)] * 3
    mine = {x: shamir.share_from_bytes(bytes.fromhex(h)) for x, h in got["mine"]}
    assert shamir.combine({x: mine[x] for x in (1, 3, 4)}) == secret
    assert shamir.combine({x: mine[x] for x in (2, 3, 4)}) == secret
    assert got["mask"] == got["swapped"] == derive(shared, session, Purpose.MASK, 1, 3).hex()
    assert got["opened"] == plaintext.hex()
    assert got["misdirected"] == "SecAggError"
    key = derive(shared, session, Purpose.SHARE, 2, 5)
    assert decrypt(key, bytes.fromhex(got["back"]), session, 5, 2) == bytes(range(132))
    assert got["commitment"] == commitment(session, 7, bytes(range(255, 223, -1))).hex()
    # P-256 everywhere (the fallback); X25519 where this Chromium's WebCrypto has it
    assert got["curves"] in (["x25519", "p256"], ["p256"])
    assert sorted(got["keys"]) == sorted(got["curves"])
    for curve_name, browser_key in got["keys"].items():
        curve = Curve(curve_name)
        public = bytes.fromhex(browser_key["public"])
        # the server rebuilds a dropped member's mask key from the Shamir-shared secret
        assert KeyPair.from_secret(curve, int(browser_key["secret"])).public == public
        assert python_keys[curve].agree(public).hex() == browser_key["agreed"]


def test_privacy_account_matches_python(web_server: str, page: Page) -> None:
    """The engine's ε (RDP of the Gaussian mechanism) and noise calibration are dp-accounting's."""
    engine_page(page, web_server)
    grid = [(z, k, d) for z in (0.3, 0.8, 1.7, 6.0) for k in (1, 3, 40) for d in (1e-5, 1e-3)]
    targets = [(8.0, 2, 1e-5), (1.0, 10, 1e-5), (3.0, 1, 1e-6)]
    got = page.evaluate(
        """({grid, targets}) => ({
            eps: grid.map(([z, k, d]) => disco.epsilon(z, k, d)),
            noise: targets.map(([e, k, d]) => disco.noiseFor(e, k, d)),
        })""",
        {"grid": grid, "targets": targets},
    )
    assert got["eps"] == pytest.approx([epsilon(z, k, d) for z, k, d in grid], rel=1e-9)
    assert got["noise"] == pytest.approx([noise_for(e, k, d) for e, k, d in targets], abs=2e-4)


def test_privacy_budget_stops_or_warns(web_server: str, page: Page) -> None:
    """An ε target over 2 rounds is the budget: a third round would exceed it."""
    engine_page(page, web_server)
    csv = text_file_arg("t.csv", titanic_like_csv(n=60, seed=4))
    got = page.evaluate(
        """async ({file, mode}) => {
            const task = await disco.getTask(server, "titanic");
            task.trainingInformation.privacy = {
                differentialPrivacy: { epsilon: 1.0, delta: 1e-5, rounds: 2, clippingRadius: 1 },
                budget: { onExhausted: mode },
            };
            const data = await disco.readTabular(task, fileFrom(file.name, file.data, file.type));
            const result = await disco.train({ server, task, data, rounds: 4, scheme: "local",
                                               seed: 1 }).done;
            return { ...result, epsilons: result.rounds.map((r) => r.epsilon) };
        }""",
        {"file": csv, "mode": "stop"},
    )
    assert got["stopped"] and "privacy budget" in got["stoppedBecause"]
    z = noise_for(1.0, 2, 1e-5)
    assert got["epsilons"] == pytest.approx([epsilon(z, k, 1e-5) for k in (1, 2)], rel=1e-3)
    warned = page.evaluate(
        """async ({file}) => {
            const task = await disco.getTask(server, "titanic");
            task.trainingInformation.privacy = {
                differentialPrivacy: { epsilon: 1.0, delta: 1e-5, rounds: 2, clippingRadius: 1 },
                budget: { onExhausted: "warn" },
            };
            const data = await disco.readTabular(task, fileFrom(file.name, file.data, file.type));
            return await disco.train({ server, task, data, rounds: 4, scheme: "local" }).done;
        }""",
        {"file": csv},
    )
    assert not warned["stopped"] and len(warned["rounds"]) == 4
    assert warned["rounds"][-1]["epsilon"] > 1.0


PAGE_MEMBERS = """() => {
    window.members = {};
    const s = disco.secagg;
    window.member = {
        create: async (name, curves) => {
            const p = await s.Participant.create(curves);
            window.members[name] = p;
            return Object.fromEntries(
                [...p.advertisement()].map(([c, k]) => [c, [hex(k.cipher), hex(k.mask)]]));
        },
        share: async (name, roster, index) => {
            const keys = new Map(
                roster.keys.map(([i, c, m]) => [i, { cipher: unhex(c), mask: unhex(m) }]));
            const r = new s.Roster(unhex(roster.session), roster.curve, keys, roster.degree,
                                   roster.threshold, roster.vectorLength, roster.fractionalBits);
            const out = await window.members[name].share(r, index);
            return {
                sealed: [...out.sealed].map(([j, b]) => [j, hex(b)]),
                commitment: hex(out.commitment),
            };
        },
        receive: (name, sealed, sharers) =>
            window.members[name].receive(new Map(sealed.map(([j, h]) => [j, unhex(h)])), sharers),
        masked: async (name, values) => hex(await window.members[name].masked(values)),
        reveal: (name, survivors, dropped) =>
            [...window.members[name].reveal(survivors, dropped)].map(([j, b]) => [j, hex(b)]),
    };
}"""


@pytest.mark.parametrize("curve", ["x25519", "p256"])
def test_browser_and_python_participants_share_a_round_with_a_browser_dropout(
    web_server: str, page: Page, curve: str
) -> None:
    engine_page(page, web_server)
    page.evaluate(PAGE_MEMBERS)
    if curve not in page.evaluate("() => disco.secagg.supportedCurves()"):
        pytest.skip(f"this Chromium's WebCrypto has no {curve}")
    length = 40
    rng = np.random.default_rng(1)
    values = {m: rng.normal(0, 4, length) for m in ("b1", "b2", "p1", "p2")}
    browser_members, python_members = ("b1", "b2"), ("p1", "p2")
    python = {m: Participant((Curve(curve),)) for m in python_members}
    coordinator = Coordinator(length, min_members=2)
    for m in browser_members:
        offer = page.evaluate("([m, c]) => member.create(m, [c])", [m, curve])
        coordinator.advertise(m, {Curve(c): PublicKeys(bytes.fromhex(k[0]), bytes.fromhex(k[1]))
                                  for c, k in offer.items()})
    for m, p in python.items():
        coordinator.advertise(m, p.advertisement())
    roster = coordinator.start()
    assert str(roster.curve) == curve
    wire = {"session": roster.session.hex(), "curve": curve, "degree": roster.degree,
            "threshold": roster.threshold, "vectorLength": length,
            "fractionalBits": roster.fractional_bits,
            "keys": [[i, k.cipher.hex(), k.mask.hex()] for i, k in roster.keys.items()]}
    for m in browser_members:
        out = page.evaluate("([m, r, i]) => member.share(m, r, i)",
                            [m, wire, coordinator.index_of(m)])
        coordinator.submit_shares(m, {j: bytes.fromhex(h) for j, h in out["sealed"]},
                                  bytes.fromhex(out["commitment"]))
    for m, p in python.items():
        shares = p.share(roster, coordinator.index_of(m))  # type: ignore[arg-type]
        coordinator.submit_shares(m, shares.sealed, shares.commitment)
    relay = coordinator.close_sharing()
    sharers = coordinator.sharers()
    # b2 drops after sharing: never sends its masked vector
    b1 = coordinator.index_of("b1")
    assert page.evaluate("([m, s, u]) => member.receive(m, s, u)",
                         ["b1", [[j, b.hex()] for j, b in relay[b1].items()], sharers]) == []  # type: ignore[index]
    masked = page.evaluate("([m, v]) => member.masked(m, v)", ["b1", values["b1"].tolist()])
    coordinator.submit_masked("b1", bytes.fromhex(masked))
    for m, p in python.items():
        assert p.receive(relay[p.index], sharers) == []
        coordinator.submit_masked(m, p.masked(values[m]).tobytes())
    survivors, dropped = coordinator.close_masking()
    assert dropped == [coordinator.index_of("b2")]
    revealed = page.evaluate("([m, s, d]) => member.reveal(m, s, d)", ["b1", survivors, dropped])
    coordinator.submit_reveal("b1", {j: bytes.fromhex(h) for j, h in revealed})
    for m, p in python.items():
        coordinator.submit_reveal(m, p.reveal(survivors, dropped))
    total = coordinator.close_unmasking()
    assert coordinator.stage is Stage.DONE
    expected = values["b1"] + values["p1"] + values["p2"]
    np.testing.assert_allclose(total, expected, rtol=0, atol=3 * 2.0**-25)


# -- a served secure round: two browsers and a Python client on titanic --------------------

TASK = "titanic-secure"
ROWS = 120
ROUNDS = 2
EPSILON, DELTA = 8.0, 1e-5

START_TRAINING = """async ({file, rounds, seed, task}) => {
    const spec = await disco.getTask(server, task);
    const data = await disco.readTabular(spec, fileFrom(file.name, file.data, file.type));
    window.sent = [];
    window.adopted = {};
    const secure = disco.SecureFederatedCommunicator.prototype;
    const exchange = secure.exchange;
    secure.exchange = async function (weights, round, samples, epsilon) {  // records the update
        window.sent.push({ round, samples, weights: weights.map((w) => Array.from(w.values)) });
        const result = await exchange.call(this, weights, round, samples, epsilon);
        if (result.weights !== null) {
            window.adopted[round] = result.weights.map((w) => Array.from(w.values));
        }
        return result;
    };
    window.run = disco.train({ server, task: spec, data, rounds, seed, roundTimeoutMs: 60000 });
    return true;
}"""

FINISH = """async () => {
    const result = await window.run.done;
    return { result, sent: window.sent, adopted: window.adopted };
}"""


class RecordingSecureCommunicator(SecureFederatedCommunicator):
    """The Python client's secure rounds, keeping what it shared and what it adopted."""

    sent: dict[int, tuple[Weights, int]]
    adopted: dict[int, Weights]

    async def exchange(
        self, weights: Weights, round_: int, num_samples: int, epsilon: float | None = None
    ) -> Exchange:
        self.sent[round_] = ([np.array(w) for w in weights], num_samples)
        result = await super().exchange(weights, round_, num_samples, epsilon)
        if result.weights is not None:
            self.adopted[round_] = [np.array(w) for w in result.weights]
        return result


def python_rounds(server: str) -> RecordingSecureCommunicator:
    """ROUNDS secure rounds of a Python participant with fixed (perturbed) weights."""
    from web.engine import run_async

    async def main() -> RecordingSecureCommunicator:
        async with FederatedSession(server, TASK) as session:
            round_, weights = await session.latest()
            communicator = RecordingSecureCommunicator(session, round_timeout_s=60)
            communicator.sent, communicator.adopted = {}, {}
            rng = np.random.default_rng(3)
            for _ in range(ROUNDS):
                update = [(w + rng.normal(0, 0.1, w.shape)).astype(np.float32) for w in weights]
                result = await communicator.exchange(update, round_, 40)
                assert result.weights is not None, communicator.last_outcome
                round_, weights = result.round, result.weights
            return communicator

    return run_async(main)


def add_secure_task(server: str) -> None:
    task = httpx.get(f"{server}/tasks/titanic").json()
    task["taskID"] = TASK
    task["trainingInformation"].update(
        aggregationStrategy="secure", minNbOfParticipants=3, scheme="federated",
        privacy={"differentialPrivacy": {"epsilon": EPSILON, "delta": DELTA, "rounds": ROUNDS,
                                         "clippingRadius": 1.0}},
    )
    model = httpx.get(f"{server}/tasks/titanic/model.json?format=disco").json()
    response = httpx.post(f"{server}/tasks", json={"task": task, "model": model}, timeout=30)
    assert response.status_code == 201, response.text


def test_two_browsers_and_python_share_secure_rounds_on_titanic(
    web_server: str, browser: Browser
) -> None:
    add_secure_task(web_server)
    pages: list[tuple[Page, ConsoleLog]] = []
    try:
        for seed in (1, 2):
            page, console = new_page(browser)
            pages.append((page, console))
            open_engine(page, web_server)
            page.evaluate(START_TRAINING, {
                "file": text_file_arg(f"p{seed}.csv", titanic_like_csv(n=ROWS, seed=seed)),
                "rounds": ROUNDS, "seed": seed, "task": TASK,
            })
        python = python_rounds(web_server)
        outcomes = [page.evaluate(FINISH) for page, _ in pages]
    finally:
        for page, _ in pages:
            page.context.close()
    for _, console in pages:
        assert console.errors == []
    z = noise_for(EPSILON, ROUNDS, DELTA)  # the browsers' client-side DP, calibrated the same way
    for outcome in outcomes:
        assert [r["aggregated"] for r in outcome["result"]["rounds"]] == [True] * ROUNDS
        assert all(r["participants"] == 3 for r in outcome["result"]["rounds"])
        spent = [r["epsilon"] for r in outcome["result"]["rounds"]]
        assert spent == pytest.approx([epsilon(z, k, DELTA) for k in (1, 2)], rel=1e-3)
        assert spent[-1] <= EPSILON
        assert (outcome["result"]["delta"], outcome["result"]["budget"]) == (DELTA, EPSILON)
    for round_ in python.sent:
        contributions = [(python.sent[round_][0], python.sent[round_][1])]
        for outcome in outcomes:
            (sent,) = [s for s in outcome["sent"] if s["round"] == round_]
            contributions.append(([np.asarray(w) for w in sent["weights"]], sent["samples"]))
        total = sum(n for _, n in contributions)
        mean = [sum(np.asarray(ws[i], np.float64).ravel() * n for ws, n in contributions) / total
                for i in range(len(contributions[0][0]))]
        adopted = [python.adopted[round_], *(o["adopted"][str(round_)] for o in outcomes)]
        for weights in adopted:
            for got, want in zip(weights, mean, strict=True):
                np.testing.assert_allclose(np.asarray(got).ravel(), want, rtol=1e-6, atol=1e-6)
    status = httpx.get(f"{web_server}/tasks/{TASK}/status").json()
    assert status["secureAggregation"]["completedRounds"] == ROUNDS
    assert status["secureAggregation"]["abortedRounds"] == 0
    assert status["round"] == ROUNDS
    assert status["privacy"]["clientsReporting"] == 2  # the browsers (the Python side: no DP)
    last = outcomes[0]["result"]["rounds"][-1]["epsilon"]
    assert status["privacy"]["clientEpsilon"] == pytest.approx(last)
