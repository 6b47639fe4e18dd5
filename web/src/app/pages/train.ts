/**
 * Train a task with local data: choose the data (checked in the page), start, follow the
 * epochs and rounds, what the training waits for and who takes part, stop at any time, then
 * download the trained model. The data never leaves the page: only model weights are sent.
 */

import { inputChannels, loadModel } from "../../engine/index.js";
import type { Dataset, Task } from "../../engine/index.js";
import { h, replace } from "../dom.js";
import { count, decimal, percent, plural, seconds } from "../format.js";
import { roundChart } from "../parts/chart.js";
import { crumbs } from "../parts/crumbs.js";
import { dataPicker } from "../parts/datapicker.js";
import { schemeName, waitingText } from "../parts/names.js";
import { errorBox, successBox } from "../parts/notices.js";
import { openBrowserTask } from "../parts/opening.js";
import { epsilonText, privacyPlan, privacySection } from "../parts/privacy.js";
import { richText } from "../parts/richtext.js";
import { sessionOf, startSession } from "../parts/session.js";
import type { Session } from "../parts/session.js";
import { dataSection } from "../parts/taskinfo.js";
import type { PageContext } from "../router.js";
import { href } from "../router.js";

/** "1 person trains at the same time" / "3 people train at the same time". */
function together(n: number, one: string, many: string): string {
  return `${plural(n, one, many)} ${n === 1 ? "trains" : "train"} at the same time`;
}

function howItWorks(task: Task): HTMLElement {
  const info = task.trainingInformation;
  const link = `${location.origin}${href("/tasks", task.taskID, "train")}`;
  const needed =
    info.scheme === "federated"
      ? `This task trains when at least ${together(Number(info.minNbOfParticipants ?? 2), "person", "people")}.`
      : info.scheme === "decentralized"
        ? `This task trains when at least ${together(Number(info.minimumReadyPeers ?? 3), "browser", "browsers")}; the browsers exchange their models directly.`
        : "";
  return h(
    "div",
    { class: "how" },
    h("p", null,
      "Your browser trains the model on your data. After every few steps it shares the model's " +
        "new weights (never your data) and gets back the combination of everyone's models."),
    needed
      ? h("p", null, needed, " Others join by opening this address in their browser: ",
          h("code", { class: "share" }, link), " ",
          h("button", { type: "button", class: "small secondary", onclick: (event: Event) => {
            void navigator.clipboard?.writeText(link).then(() => {
              (event.target as HTMLButtonElement).textContent = "Copied";
            }, () => undefined);
          } }, "Copy the address"))
      : null,
    h("p", { class: "hint" }, "Keep this tab open while it trains (you may look at other pages of DISCO meanwhile)."),
  );
}

/** One sentence: which file and columns (or images and labels) the task needs. */
function dataSummary(task: Task): HTMLElement {
  const info = task.trainingInformation;
  if (info.dataType === "tabular") {
    return h("p", null, "A CSV file with the columns ",
      h("strong", null, (info.inputColumns ?? []).join(", ")), " and ",
      h("strong", null, (info.outputColumns ?? []).join(", ")), " (other columns are ignored).");
  }
  return h("p", null, `Images of ${info.IMAGE_W ?? "?"}×${info.IMAGE_H ?? "?"} pixels, in one sub-folder per label (`,
    h("strong", null, (info.LABEL_LIST ?? []).map(String).join(", ")), ").");
}

function statusText(session: Session): string {
  const s = session.state;
  switch (s.status) {
    case "starting":
    case "waiting":
      return s.waiting === null ? "Starting…" : waitingText(s.waiting.reason, s.waiting);
    case "training":
      return `Training on your data: round ${count(s.rounds.length + 1)} of about ${count(s.totalRounds)}.`;
    case "done":
      return `Training finished: ${plural(s.rounds.length, "round")}.`;
    case "stopped":
      return `Training stopped after ${plural(s.rounds.length, "round")}.`;
    case "failed":
      return "Training stopped because of a problem.";
  }
}

function progressBar(id: string, label: string): { element: HTMLElement; set(value: number, max: number, text: string): void } {
  const bar = h("progress", { id, max: 1, value: 0 });
  const caption = h("span", null, label);
  return {
    element: h("div", { class: "bar" }, h("label", { for: id }, caption), bar),
    set(value, max, text) {
      bar.max = Math.max(1, max);
      bar.value = Math.min(value, bar.max);
      caption.textContent = text;
    },
  };
}

/** The progress panel of a run, kept up to date until `signal` aborts. */
function progressPanel(session: Session, signal: AbortSignal, onFinished: () => void): HTMLElement {
  const status = h("p", { class: "status-line", role: "status", "data-training-status": "" });
  const epochs = progressBar("epoch-progress", "Epoch");
  const rounds = progressBar("round-progress", "Rounds");
  const people = h("p", { "data-participants": "" });
  const latest = h("p", { "data-latest": "" });
  const spent = h("p", { "data-epsilon": "" });
  const plan = privacyPlan(session.task);
  const noised = plan.noiseMultiplier !== undefined;
  const chart = roundChart();
  const tableBody = h("tbody");
  const stop = h("button", { type: "button", class: "danger", "data-stop": "", onclick: () => {
    session.run.stop();
    stop.disabled = true;
    stop.textContent = "Stopping…";
  } }, "Stop training");
  const error = h("div");
  let finished = false;

  const render = (): void => {
    const s = session.state;
    status.textContent = statusText(session);
    status.classList.toggle("waiting", s.status === "waiting" || s.status === "starting");
    epochs.set(s.batch, s.batchesPerEpoch,
      `Epoch ${Math.min(s.epoch + 1, s.epochs)} of ${s.epochs}: ${count(s.batch)} of ${count(s.batchesPerEpoch)} steps`);
    const done = s.rounds.length;
    rounds.set(done, Math.max(done, s.totalRounds), `Rounds: ${count(done)} of about ${count(Math.max(done, s.totalRounds))}`);
    people.textContent =
      s.participants > 0
        ? `${plural(s.participants, "participant")} in the ${session.running ? "current" : "last"} round.`
        : "";
    const last = s.rounds[s.rounds.length - 1];
    latest.textContent = last === undefined
      ? (Number.isFinite(s.batchLoss) ? `Current step: loss ${decimal(s.batchLoss)}, accuracy ${percent(s.batchAccuracy)}.` : "")
      : `Last round: loss ${decimal(last.loss)}, accuracy ${percent(last.accuracy)}` +
        (last.aggregated ? "." : " (the others did not answer in time: kept this browser's model).");
    const epsilon = last?.epsilon;
    spent.textContent = epsilon === undefined
      ? (noised ? "Privacy loss so far: none (nothing shared yet)." : "")
      : `Privacy loss so far: ε = ${epsilonText(epsilon)}` +
        (plan.budget !== undefined ? ` of your budget of ${epsilonText(plan.budget)}` : "") + ` (δ = ${plan.delta}).`;
    if (tableBody.children.length !== done) {
      chart.update(s.rounds);
      replace(tableBody, s.rounds.map((r, i) => h("tr", null,
        h("td", { class: "number" }, count(i + 1)), h("td", { class: "number" }, decimal(r.loss)),
        h("td", { class: "number" }, percent(r.accuracy)), h("td", { class: "number" }, count(r.participants)),
        h("td", { class: "number" }, seconds(r.seconds)),
        noised ? h("td", { class: "number" }, r.epsilon === undefined ? "–" : epsilonText(r.epsilon)) : null)));
    }
    stop.hidden = !session.running;
    if (s.status === "failed" && s.error !== null && error.childElementCount === 0) {
      replace(error, errorBox("The training stopped because of a problem. You can start it again.", s.error));
    }
    if (!session.running && !finished) {
      finished = true;
      onFinished();
    }
  };
  const unsubscribe = session.subscribe(render);
  signal.addEventListener("abort", () => {
    unsubscribe();
    chart.destroy();
  }, { once: true });
  const panel = h(
    "div",
    { class: "progress", "data-progress": "" },
    status,
    h("div", { class: "bars" }, epochs.element, rounds.element),
    people,
    latest,
    spent,
    h("p", { class: "actions" }, stop),
    error,
    chart.element,
    h("details", null, h("summary", null, "Rounds as a table"),
      h("div", { class: "scroll", tabindex: 0, role: "region", "aria-label": "Rounds" },
        h("table", { class: "rounds" },
          h("thead", null, h("tr", null,
            ["Round", "Loss", "Accuracy", "Participants", "Duration", ...(noised ? ["Privacy loss ε"] : [])].map((t) => h("th", { scope: "col", class: "number" }, t)))),
          tableBody))),
  );
  queueMicrotask(render);
  return panel;
}

function resultPanel(session: Session): HTMLElement {
  const s = session.state;
  const task = session.task;
  const last = s.rounds[s.rounds.length - 1];
  const save = h("button", { type: "button", "data-download-model": "", onclick: () => {
    void session.model.then((model) => model.save(`downloads://${task.taskID}-model`));
  } }, "Download the trained model");
  return h(
    "div",
    { "data-result": "" },
    s.rounds.length === 0
      ? h("p", null, "No round was completed, so there is no trained model to keep.")
      : successBox(
          h("p", null, h("strong", null,
            `${s.status === "done" ? "Training finished" : "Training stopped"} after ${plural(s.rounds.length, "round")}.`)),
          last === undefined ? "" : h("p", null, `Last round: accuracy ${percent(last.accuracy)} on your data, loss ${decimal(last.loss)}.`),
        ),
    s.rounds.length === 0 ? null : h("p", { class: "actions" }, save,
      h("a", { class: "button secondary", href: href("/tasks", task.taskID, "test"), "data-link": true },
        "Test the model on other data")),
    h("p", { class: "hint" }, "The download is two files, model.json and a .bin file of weights: keep them together (TensorFlow.js can load them)."),
  );
}

export async function trainPage({ root, params, signal }: PageContext): Promise<string> {
  const taskID = params["task"] ?? "";
  const opening = await openBrowserTask(root, taskID, {
    crumb: "Train",
    heading: (title) => `Train “${title}”`,
    pageTitle: (title) => `Train ${title}`,
  });
  if ("pageTitle" in opening) return opening.pageTitle;
  const { task, title } = opening;
  let data: Dataset | null = null;
  let channels: Promise<number> | null = null;
  const start = h("button", { type: "button", class: "primary", disabled: true, "data-start": "" }, "Start training");
  const startHint = h("p", { class: "hint", id: "start-hint" }, "Choose your data first: the button is enabled once it is checked.");
  start.setAttribute("aria-describedby", "start-hint");
  const progress = h("div");
  const result = h("div", null, h("p", { class: "hint" }, "When the training ends (or when you stop it), you can download the model here or test it."));

  const showSession = (session: Session): void => {
    replace(result);
    replace(progress, progressPanel(session, signal, () => {
      replace(result, resultPanel(session));
      start.disabled = data === null;
      start.textContent = "Train again";
      startHint.textContent = "";
    }));
  };

  const picker = dataPicker({
    task,
    labelled: true,
    channels: () => (channels ??= loadModel(location.origin, taskID).then((model) => {
      const n = inputChannels(model);
      model.dispose();
      return n;
    })),
    onData: (dataset) => {
      data = dataset;
      const running = sessionOf(taskID)?.running === true;
      start.disabled = dataset === null || running;
      startHint.textContent = dataset === null
        ? "Choose your data first: the button is enabled once it is checked."
        : running ? "A training is running: stop it to start another." : "Ready: nothing is sent before you start.";
    },
  });
  start.addEventListener("click", () => {
    if (data === null) return;
    start.disabled = true;
    startHint.textContent = "Training is running: you can stop it below.";
    showSession(startSession(task, data));
  });

  replace(
    root,
    crumbs(task, "Train"),
    h("h1", null, `Train “${title}” with your data`),
    h("p", { class: "tags" }, h("span", { class: "tag" }, schemeName(task.trainingInformation.scheme))),
    h("p", { class: "lead" }, richText(task.displayInformation.summary?.preview)),
    howItWorks(task),
    privacySection(task),
    h("section", { "aria-labelledby": "step-data" },
      h("h2", { id: "step-data" }, h("span", { class: "step" }, "1"), " Choose your data"),
      dataSummary(task),
      h("details", null, h("summary", null, "More about the data this task needs"), dataSection(task, "h3")),
      picker),
    h("section", { "aria-labelledby": "step-train" },
      h("h2", { id: "step-train" }, h("span", { class: "step" }, "2"), " Train"),
      h("p", { class: "actions" }, start), startHint,
      progress),
    h("section", { "aria-labelledby": "step-result" },
      h("h2", { id: "step-result" }, h("span", { class: "step" }, "3"), " Keep the model"),
      result),
  );
  const existing = sessionOf(taskID);
  if (existing !== undefined) showSession(existing);
  return `Train ${title}`;
}
