/**
 * Test a model on local labelled data (accuracy, confusion matrix) and predict on unlabelled
 * data (download the predictions as CSV). The model is the task's shared model, or the one
 * trained on this page. The data stays in the page.
 */

import { evaluate, inputChannels, loadModel, predict, predictionsCSV, taskStatus } from "../../engine/index.js";
import type { Dataset, Evaluation, Prediction, Task, tf } from "../../engine/index.js";
import { download, h, replace, uid } from "../dom.js";
import { count, decimal, percent } from "../format.js";
import { crumbs } from "../parts/crumbs.js";
import { dataPicker } from "../parts/datapicker.js";
import { errorBox } from "../parts/notices.js";
import { openBrowserTask } from "../parts/opening.js";
import { trainedModel } from "../parts/session.js";
import type { PageContext } from "../router.js";
import { href } from "../router.js";

type Choice = "shared" | "trained";

function confusionTable(evaluation: Evaluation): HTMLElement {
  const { labels, confusion } = evaluation;
  return h(
    "div",
    { class: "scroll", role: "region", "aria-label": "Confusion matrix", tabindex: 0 },
    h(
      "table",
      { class: "confusion", "data-confusion": "" },
      h("caption", null, "Confusion matrix: each row is the true answer, each column what the model said"),
      h("thead", null, h("tr", null, h("td"),
        labels.map((label) => h("th", { scope: "col" }, `said ${label}`)))),
      h("tbody", null, labels.map((label, t) => h("tr", null,
        h("th", { scope: "row" }, `truly ${label}`),
        labels.map((_, p) => h("td", { class: t === p ? "number right" : "number" }, count(confusion[t]?.[p] ?? 0)))))),
    ),
  );
}

function evaluationPanel(evaluation: Evaluation): HTMLElement {
  return h(
    "div",
    { "data-evaluation": "" },
    h("p", { class: "figure" }, h("span", { class: "big", "data-accuracy": "" }, percent(evaluation.accuracy)),
      ` of ${count(evaluation.samples)} answers right (loss ${decimal(evaluation.loss)}).`),
    confusionTable(evaluation),
  );
}

const SHOWN_PREDICTIONS = 20;

function predictionsPanel(predictions: Prediction[], task: Task): HTMLElement {
  const width = predictions[0]?.outputs.length ?? 0;
  const tabular = task.trainingInformation.dataType === "tabular";
  return h(
    "div",
    { "data-predictions": "" },
    h("p", null, `${count(predictions.length)} predictions.`,
      predictions.length > SHOWN_PREDICTIONS ? ` The first ${SHOWN_PREDICTIONS}:` : ""),
    h("div", { class: "scroll", role: "region", "aria-label": "Predictions", tabindex: 0 },
      h("table", null,
        h("thead", null, h("tr", null, h("th", { scope: "col", class: tabular ? "number" : "" }, tabular ? "Line of the file" : "Image"), h("th", { scope: "col" }, "Prediction"),
          width === 1 ? h("th", { scope: "col", class: "number" }, "Model's output") : null)),
        h("tbody", null, predictions.slice(0, SHOWN_PREDICTIONS).map((p) => h("tr", null,
          h("td", tabular ? { class: "number" } : null, p.source),
          h("td", null, p.label),
          width === 1 ? h("td", { class: "number" }, decimal(p.outputs[0] ?? NaN)) : null))))),
    h("p", { class: "actions" }, h("button", { type: "button", "data-download-predictions": "", onclick: () => {
      download(`${task.taskID}-predictions.csv`, new Blob([predictionsCSV(predictions)], { type: "text/csv" }));
    } }, "Download the predictions (CSV)")),
  );
}

export async function testPage({ root, params, signal }: PageContext): Promise<string> {
  const taskID = params["task"] ?? "";
  const opening = await openBrowserTask(root, taskID, {
    crumb: "Test and predict",
    heading: (title) => `Test and predict with “${title}”`,
    pageTitle: (title) => `Test ${title}`,
  });
  if ("pageTitle" in opening) return opening.pageTitle;
  const { task, title } = opening;
  const trained = trainedModel(taskID);
  let choice: Choice = trained !== undefined ? "trained" : "shared";
  let shared: Promise<tf.LayersModel> | null = null;
  const sharedModel = (): Promise<tf.LayersModel> => (shared ??= loadModel(location.origin, taskID));
  const model = (): Promise<tf.LayersModel> => (choice === "trained" && trained !== undefined ? trained.model : sharedModel());
  signal.addEventListener("abort", () => void shared?.then((m) => m.dispose(), () => undefined), { once: true });

  const round = h("span", null, "");
  void taskStatus(location.origin, taskID).then((status) => (round.textContent = ` (round ${count(status.round)})`), () => undefined);
  const name = uid("model");
  const radio = (value: Choice, label: (Node | string)[], enabled: boolean): HTMLElement => {
    const id = uid("choice");
    return h("div", { class: "choice" },
      h("input", { type: "radio", name, id, value, checked: choice === value, disabled: !enabled,
        onchange: () => (choice = value) }),
      h("label", { for: id }, ...label));
  };

  const channels = (): Promise<number> => model().then(inputChannels);
  let testData: Dataset | null = null;
  let predictData: Dataset | null = null;
  const testButton = h("button", { type: "button", class: "primary", disabled: true, "data-evaluate": "" }, "Test the model");
  const predictButton = h("button", { type: "button", class: "primary", disabled: true, "data-predict": "" }, "Predict");
  const testResult = h("div", { "aria-live": "polite" });
  const predictResult = h("div", { "aria-live": "polite" });

  testButton.addEventListener("click", () => {
    if (testData === null) return;
    const data = testData;
    replace(testResult, h("p", null, "Testing…"));
    void model().then((m) => evaluate(m, task, data)).then(
      (evaluation) => replace(testResult, evaluationPanel(evaluation)),
      (error: unknown) => replace(testResult, errorBox("The model could not be tested on this data.", error)),
    );
  });
  predictButton.addEventListener("click", () => {
    if (predictData === null) return;
    const data = predictData;
    replace(predictResult, h("p", null, "Predicting…"));
    void model().then((m) => predict(m, task, data)).then(
      (predictions) => replace(predictResult, predictionsPanel(predictions, task)),
      (error: unknown) => replace(predictResult, errorBox("The model could not predict on this data.", error)),
    );
  });

  replace(
    root,
    crumbs(task, "Test and predict"),
    h("h1", null, `Test and predict with “${title}”`),
    h("section", { "aria-labelledby": "which-model" },
      h("h2", { id: "which-model" }, "Which model?"),
      h("fieldset", null, h("legend", { class: "visually-hidden" }, "Model to use"),
        radio("shared", ["The shared model of this task", round], true),
        radio("trained", ["The model you trained on this page",
          trained === undefined ? " (train one first)" : ""], trained !== undefined))),
    h("section", { "aria-labelledby": "test-title" },
      h("h2", { id: "test-title" }, "Test: how often is it right?"),
      h("p", null, "Give data whose answers you know (the same kind of file as for training): the page compares the model's answers with them."),
      dataPicker({ task, labelled: true, channels, onData: (d) => {
        testData = d;
        testButton.disabled = d === null;
      } }),
      h("p", { class: "actions" }, testButton),
      testResult),
    h("section", { "aria-labelledby": "predict-title" },
      h("h2", { id: "predict-title" }, "Predict: answers for new data"),
      h("p", null, task.trainingInformation.dataType === "tabular"
        ? `Give a file without the answer column (${(task.trainingInformation.outputColumns ?? []).join(", ")} may be absent).`
        : "Give images without labels (any folder layout)."),
      dataPicker({ task, labelled: false, channels, onData: (d) => {
        predictData = d;
        predictButton.disabled = d === null;
      } }),
      h("p", { class: "actions" }, predictButton),
      predictResult),
    h("p", null, h("a", { href: href("/tasks", taskID, "train"), "data-link": true }, "Train this task")),
  );
  return `Test ${title}`;
}
