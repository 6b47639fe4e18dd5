/**
 * The server dashboard: per task, the round, connected clients by scheme, what the round waits
 * for and the last rounds (duration, models combined). Updated by the server's pushed events
 * (`GET /events`), not by polling.
 */

import { h, replace } from "../dom.js";
import { clock, count, seconds } from "../format.js";
import type { LiveState, TaskSnapshot } from "../live.js";
import { followTasks } from "../live.js";
import { roundText, schemeName } from "../parts/names.js";
import type { PageContext } from "../router.js";
import { href } from "../router.js";

const LIVE_TEXT: Record<LiveState, string> = {
  connecting: "Connecting to the server…",
  live: "Live: updated as the server changes",
  reconnecting: "Connection lost: reconnecting…",
};

function figure(label: string, value: string, key: string): HTMLElement {
  return h("div", null, h("dt", null, label), h("dd", { [`data-${key}`]: "" }, value));
}

function roundState(s: TaskSnapshot): string {
  if (s.federated !== null && s.federated.connected > 0) {
    return roundText(s.federated);
  }
  if (s.decentralized !== null && s.decentralized.connected > 0) {
    const d = s.decentralized;
    return `${count(d.ready)} of ${count(d.connected)} peers ready for the next round (at least ${count(d.minimumReady ?? 0)} needed).`;
  }
  return "Nobody is training this task right now.";
}

function card(s: TaskSnapshot, previous: TaskSnapshot | undefined): HTMLElement {
  const rounds = [...s.lastRounds].reverse().slice(0, 5);
  const element = h(
    "li",
    { class: "card", "data-task-id": s.taskID },
    h("h2", null, h("a", { href: href("/tasks", s.taskID), "data-link": true }, s.title)),
    h("p", { class: "tags" }, h("span", { class: "tag" }, schemeName(s.scheme))),
    h("dl", { class: "figures" },
      figure(s.scheme === "decentralized" ? "Peer rounds" : "Round",
        count(s.scheme === "decentralized" ? (s.decentralized?.roundsStarted ?? 0) : s.round), "round"),
      figure("Federated clients", count(s.connected.federated), "federated"),
      figure("Decentralized peers", count(s.connected.decentralized), "decentralized")),
    h("p", { class: "hint", "data-state": "" }, roundState(s)),
    rounds.length === 0
      ? h("p", { class: "hint" }, "No completed round yet.")
      : h("div", { class: "scroll" }, h("table", { class: "history" },
          h("caption", null, "Last rounds"),
          h("thead", null, h("tr", null,
            h("th", { scope: "col", class: "number" }, "Round"), h("th", { scope: "col" }, "Finished"),
            h("th", { scope: "col", class: "number" }, "Models"), h("th", { scope: "col", class: "number" }, "Duration"))),
          h("tbody", null, rounds.map((r) => h("tr", null,
            h("td", { class: "number" }, count(r.round)), h("td", { class: "nowrap" }, clock(r.time)),
            h("td", { class: "number" }, count(r.contributions)), h("td", { class: "number" }, seconds(r.seconds))))))),
  );
  if (previous !== undefined && previous.round !== s.round) {
    element.querySelector("[data-round]")?.classList.add("flash");
  }
  return element;
}

export function dashboardPage({ root, signal }: PageContext): string {
  const state = h("p", { class: "live", "data-state": "connecting", role: "status" }, LIVE_TEXT.connecting);
  const list = h("ul", { class: "dash cards", id: "dashboard" });
  const snapshots = new Map<string, TaskSnapshot>();
  const cards = new Map<string, HTMLElement>();
  replace(
    root,
    h("h1", null, "Server dashboard"),
    h("p", { class: "lead" }, "What this server is doing now: each task's round, who is connected, and how the last rounds went."),
    state,
    list,
  );
  followTasks(
    signal,
    (snapshot) => {
      const element = card(snapshot, snapshots.get(snapshot.taskID));
      snapshots.set(snapshot.taskID, snapshot);
      const old = cards.get(snapshot.taskID);
      cards.set(snapshot.taskID, element);
      if (old !== undefined) {
        old.replaceWith(element);
        return;
      }
      const after = [...cards.keys()].sort().find((id) => id > snapshot.taskID);
      const next = after === undefined ? null : (cards.get(after) ?? null);
      list.insertBefore(element, next?.parentNode === list ? next : null);
    },
    (live) => {
      state.dataset["state"] = live;
      state.textContent = LIVE_TEXT[live];
    },
  );
  return "Server dashboard";
}
