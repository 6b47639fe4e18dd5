/** One task: what it is for, the data it needs, its model and the history of its rounds. */

import { getTask, loadModel, notTrainableReason } from "../../engine/index.js";
import type { Task } from "../../engine/index.js";
import { h, replace } from "../dom.js";
import { count, decimal, plural, seconds, time } from "../format.js";
import type { CompletedRound } from "../live.js";
import { followTasks, participantsOf } from "../live.js";
import { modelSection } from "../parts/model.js";
import { dataTypeName, schemeName } from "../parts/names.js";
import { errorBox, pythonOnlyBox } from "../parts/notices.js";
import { privacySection } from "../parts/privacy.js";
import { richText } from "../parts/richtext.js";
import { dataSection } from "../parts/taskinfo.js";
import type { PageContext } from "../router.js";
import { href } from "../router.js";

interface History {
  taskID: string;
  round: number;
  rounds: CompletedRound[];
}

async function fetchHistory(taskID: string): Promise<History> {
  const response = await fetch(`/tasks/${encodeURIComponent(taskID)}/history`);
  if (!response.ok) throw new Error(`the server answered ${response.status}`);
  return (await response.json()) as History;
}

const SHOWN_ROUNDS = 20;

function historyTable(history: History): HTMLElement {
  if (history.rounds.length === 0) {
    return h("p", null, "No round has been completed yet: the model is still the initial one.");
  }
  const latest = [...history.rounds].reverse().slice(0, SHOWN_ROUNDS);
  return h(
    "div",
    { class: "scroll", role: "region", "aria-label": "Completed rounds", tabindex: 0 },
    h(
      "table",
      { class: "history" },
      h("caption", null,
        history.rounds.length > SHOWN_ROUNDS
          ? `The last ${SHOWN_ROUNDS} of ${count(history.rounds.length)} rounds kept, newest first`
          : "Newest first"),
      h("thead", null, h("tr", null,
        h("th", { scope: "col", class: "number" }, "Round"), h("th", { scope: "col" }, "Finished at"),
        h("th", { scope: "col", class: "number" }, "Models combined"),
        h("th", { scope: "col", class: "number" }, "Duration"))),
      h("tbody", null, latest.map((entry) =>
        h("tr", null,
          h("td", { class: "number" }, count(entry.round)),
          h("td", null, time(entry.time)),
          h("td", { class: "number" }, count(entry.contributions)),
          h("td", { class: "number" }, seconds(entry.seconds))))),
    ),
  );
}

function settingsList(task: Task): HTMLElement {
  const info = task.trainingInformation;
  const rows: [string, string][] = [
    ["How it trains", schemeName(info.scheme)],
    ["Data", dataTypeName(info.dataType)],
    ["Passes over your data (epochs)", String(info.epochs)],
    ["Rows or images per step (batch size)", String(info.batchSize)],
    ["Steps between two exchanges (round duration)", String(info.roundDuration)],
    ["Optimizer", `${info.modelCompileData.optimizer}${info.learningRate !== undefined ? `, learning rate ${decimal(info.learningRate, 4)}` : ""}`],
    ["Loss", info.modelCompileData.loss],
  ];
  if (info.scheme === "federated") {
    rows.push(["People needed per round", String(info.minNbOfParticipants ?? 2)]);
  } else if (info.scheme === "decentralized") {
    rows.push(["Browsers needed per round", String(info.minimumReadyPeers ?? 3)]);
    rows.push(["Secure aggregation", info.decentralizedSecure === true ? "yes" : "no"]);
  }
  if (info.clippingRadius !== undefined || info.noiseScale !== undefined) {
    rows.push(["Privacy noise", `clipping ${info.clippingRadius ?? "–"}, noise ${info.noiseScale ?? 0}`]);
  }
  return h("dl", { class: "settings" }, rows.map(([term, value]) => [h("dt", null, term), h("dd", null, value)]));
}

export async function taskPage({ root, params, signal }: PageContext): Promise<string> {
  const taskID = params["task"] ?? "";
  let task: Task;
  try {
    task = await getTask(location.origin, taskID);
  } catch (error) {
    replace(root, h("h1", null, "Task not found"),
      errorBox(`There is no task "${taskID}" on this server.`, error),
      h("p", null, h("a", { href: href("/"), "data-link": true }, "See all tasks")));
    return "Task not found";
  }
  const display = task.displayInformation;
  const pythonOnly = notTrainableReason(task);
  const live = h("p", { class: "status" }, "");
  const historyBox = h("div", { id: "history" }, h("p", null, "Loading the history…"));
  const modelBox = h("div", { id: "model" }, h("p", null, "Loading the model…"));
  replace(
    root,
    h("p", { class: "crumbs" }, h("a", { href: href("/"), "data-link": true }, "Tasks"), " › ", display.taskTitle),
    h("h1", null, display.taskTitle),
    live,
    h("p", { class: "lead" }, richText(display.summary?.preview)),
    pythonOnly !== null
      ? pythonOnlyBox(pythonOnly)
      : h("p", { class: "actions" },
          h("a", { class: "button", href: href("/tasks", taskID, "train"), "data-link": true }, "Train with my data"),
          h("a", { class: "button secondary", href: href("/tasks", taskID, "test"), "data-link": true },
            "Test the model or predict")),
    display.summary?.overview ? h("section", null, h("h2", null, "About"), h("p", null, richText(display.summary.overview))) : null,
    dataSection(task),
    privacySection(task),
    h("section", null, h("h2", null, "The model"),
      display.model ? h("p", null, richText(display.model)) : null,
      typeof display.tradeoffs === "string" ? h("p", null, richText(display.tradeoffs)) : null,
      modelBox),
    h("section", null, h("h2", null, "Training settings"), settingsList(task)),
    h("section", null, h("h2", null, "Rounds of the shared model"), historyBox),
  );

  const showHistory = async (): Promise<void> => {
    try {
      replace(historyBox, historyTable(await fetchHistory(taskID)));
    } catch (error) {
      replace(historyBox, errorBox("The history could not be loaded.", error));
    }
  };
  void showHistory();
  followTasks(signal, (snapshot) => {
    if (snapshot.taskID !== taskID) return;
    const people = participantsOf(snapshot);
    live.textContent = `Round ${count(snapshot.round)} · ${people === 0 ? "nobody training now" : `${plural(people, "participant")} connected`}`;
    if (snapshot.changes.includes("round")) void showHistory();
  });
  if (pythonOnly !== null) {
    replace(modelBox, h("p", null, "A PyTorch module: this browser cannot show its layers."));
    return display.taskTitle;
  }
  try {
    const model = await loadModel(location.origin, taskID);
    if (!signal.aborted) replace(modelBox, modelSection(model));
    model.dispose();
  } catch (error) {
    replace(modelBox, errorBox("The model could not be loaded in this browser.", error));
  }
  return display.taskTitle;
}
