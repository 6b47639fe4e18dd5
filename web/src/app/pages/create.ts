/**
 * Create a task without code: describe it, say what data it takes, pick a model template (a
 * small network for tables, a small CNN for images) or upload a TF.js model, set the training
 * settings. The server checks everything; its reasons appear next to the fields they name. The
 * admin token is asked for when the server requires one.
 */

import { tf } from "../../engine/index.js";
import { h, replace, uid } from "../dom.js";
import { FieldSet, formSummary, numberInput, select, textInput } from "../parts/form.js";
import { successBox } from "../parts/notices.js";
import type { PageContext } from "../router.js";
import { href } from "../router.js";

type Json = Record<string, unknown>;

/** A number field's value: omitted when empty (the server says "required"), null when not a number. */
function numberOf(input: HTMLInputElement): number | null | undefined {
  const text = input.value.trim();
  if (text === "") return undefined;
  const value = Number(text);
  return Number.isFinite(value) ? value : null;
}

function listOf(input: HTMLInputElement | HTMLTextAreaElement): string[] {
  return input.value.split(",").map((s) => s.trim()).filter((s) => s !== "");
}

function withoutUndefined(object: Json): Json {
  return Object.fromEntries(Object.entries(object).filter(([, v]) => v !== undefined));
}

class ModelError extends Error {
  constructor(readonly path: string, message: string) {
    super(message);
  }
}

function concat(data: ArrayBuffer | ArrayBuffer[]): ArrayBuffer {
  if (!Array.isArray(data)) return data;
  const total = data.reduce((n, b) => n + b.byteLength, 0);
  const out = new Uint8Array(total);
  let offset = 0;
  for (const buffer of data) {
    out.set(new Uint8Array(buffer), offset);
    offset += buffer.byteLength;
  }
  return out.buffer;
}

/** The TF.js layers files of `model`: model.json (naming weights.bin) and weights.bin. */
async function layersFiles(model: tf.LayersModel): Promise<File[]> {
  let files: File[] = [];
  await model.save(tf.io.withSaveHandler(async (artifacts) => {
    const weights = concat(artifacts.weightData ?? new ArrayBuffer(0));
    const modelJSON = {
      format: "layers-model",
      generatedBy: `TensorFlow.js tfjs-layers v${tf.version.tfjs}`,
      convertedBy: null,
      modelTopology: artifacts.modelTopology,
      weightsManifest: [{ paths: ["weights.bin"], weights: artifacts.weightSpecs ?? [] }],
    };
    files = [
      new File([JSON.stringify(modelJSON)], "model.json", { type: "application/json" }),
      new File([weights], "weights.bin", { type: "application/octet-stream" }),
    ];
    return Promise.resolve({ modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: "JSON" } });
  }));
  return files;
}

export function createPage({ root }: PageContext): string {
  const fields = new FieldSet();
  const summary = h("div");
  const result = h("div", { "aria-live": "polite" });

  // -- the task
  const taskID = fields.add("taskID", "Task identifier", textInput("", { autocomplete: "off", spellcheck: false }),
    "Used in the task's address: letters, digits, '-', '_' and '.', e.g. heart-disease.");
  const title = fields.add("displayInformation.taskTitle", "Title", textInput());
  const preview = fields.add("displayInformation.summary.preview", "One-line summary", textInput(),
    "Shown in the list of tasks.");
  const overview = fields.add("displayInformation.summary.overview", "Description",
    h("textarea", { rows: 3 }), "What the model is for, who should take part.");

  // -- the data
  const dataType = fields.add("trainingInformation.dataType", "Kind of data",
    select([["tabular", "A table (CSV file)"], ["image", "Images"]], "tabular"));
  const inputs = fields.add("trainingInformation.inputColumns", "Columns the model reads",
    textInput("", { placeholder: "age, weight, blood_pressure" }), "Column names of the CSV, separated by commas.");
  const output = fields.add("trainingInformation.outputColumns", "Column it learns to predict",
    textInput("", { placeholder: "disease" }));
  const target = fields.add("template.target", "What is that column?",
    select([["binary", "A yes/no answer (0 or 1)"], ["number", "A number (a measure, a price…)"]], "binary"));
  const width = fields.add("trainingInformation.IMAGE_W", "Image width (pixels)", numberInput(28, { min: 1, step: 1 }));
  const height = fields.add("trainingInformation.IMAGE_H", "Image height (pixels)", numberInput(28, { min: 1, step: 1 }));
  const colors = fields.add("template.channels", "Colours", select([["1", "Grey levels"], ["3", "Colour (RGB)"]], "1"));
  const labels = fields.add("trainingInformation.LABEL_LIST", "Labels", textInput("", { placeholder: "cat, dog" }),
    "The classes an image can be, separated by commas (one sub-folder per label in the data).");
  const format = fields.add("displayInformation.dataFormatInformation", "How the data should look (optional)",
    h("textarea", { rows: 2 }), "Shown to participants before they choose their data.");
  const tabularBox = h("div", { class: "row" }, inputs.element, output.element, target.element);
  const imageBox = h("div", { class: "row", hidden: true }, width.element, height.element, colors.element, labels.element);

  // -- the model
  const modelName = uid("model-choice");
  const templateRadio = h("input", { type: "radio", name: modelName, id: `${modelName}-t`, value: "template", checked: true });
  const uploadRadio = h("input", { type: "radio", name: modelName, id: `${modelName}-u`, value: "upload" });
  const templateLabel = h("span", null, "A small network for tables");
  const hidden = fields.add("template.hidden", "Neurons of the hidden layers", textInput("32, 16"),
    "Numbers separated by commas: one per hidden layer.");
  const files = h("input", { type: "file", multiple: true, accept: ".json,.bin" });
  const upload = fields.add("model.json", "TF.js model files", files,
    "model.json and the weight files it names (as saved by TensorFlow.js model.save).");
  const templateBox = h("div", null, hidden.element);
  const uploadBox = h("div", { hidden: true }, upload.element);

  // -- training settings
  const scheme = fields.add("trainingInformation.scheme", "How people train together",
    select([["federated", "Federated: through this server"], ["decentralized", "Decentralized: browser to browser"]], "federated"));
  const epochs = fields.add("trainingInformation.epochs", "Passes over each person's data (epochs)", numberInput(10, { step: 1 }));
  const batch = fields.add("trainingInformation.batchSize", "Rows or images per step (batch size)", numberInput(32, { step: 1 }));
  const roundDuration = fields.add("trainingInformation.roundDuration", "Steps between two exchanges (round duration)",
    numberInput(10, { step: 1 }));
  const rate = fields.add("trainingInformation.learningRate", "Learning rate", numberInput(0.001, { step: "any" }));
  const optimizer = fields.add("trainingInformation.modelCompileData.optimizer", "Optimizer",
    select([["adam", "Adam"], ["sgd", "SGD"], ["rmsprop", "RMSprop"]], "adam"));
  const minimum = fields.add("trainingInformation.minNbOfParticipants", "People needed per round", numberInput(2, { step: 1 }));
  const peers = fields.add("trainingInformation.minimumReadyPeers", "Browsers needed per round", numberInput(3, { step: 1 }));
  const secure = h("input", { type: "checkbox", id: uid("secure") });
  const secureBox = h("div", { class: "choice", hidden: true }, secure,
    h("label", { for: secure.id }, "Secure aggregation (peers only ever see sums of models)"));
  minimum.element.dataset["scheme"] = "federated";
  peers.element.hidden = true;

  // -- admin token (asked for when the server wants one)
  const token = fields.add("admin", "Admin token", h("input", { type: "password", autocomplete: "off" }),
    "This server only lets its administrators create tasks: ask the person who runs it for the token.");
  const tokenBox = h("div", { hidden: true }, token.element);

  const syncVisibility = (): void => {
    const image = dataType.control.value === "image";
    tabularBox.hidden = image;
    imageBox.hidden = !image;
    templateLabel.textContent = image ? "A small convolutional network for images" : "A small network for tables";
    hidden.element.hidden = image;
    templateBox.hidden = uploadRadio.checked;
    uploadBox.hidden = !uploadRadio.checked;
    const federated = scheme.control.value === "federated";
    minimum.element.hidden = !federated;
    peers.element.hidden = federated;
    secureBox.hidden = federated;
  };
  for (const control of [dataType.control, scheme.control, templateRadio, uploadRadio]) {
    control.addEventListener("change", syncVisibility);
  }

  const number = (field: { control: HTMLElement }): number | null | undefined => numberOf(field.control as HTMLInputElement);

  function taskJSON(): Json {
    const image = dataType.control.value === "image";
    const binary = target.control.value === "binary";
    const loss = image ? "categoricalCrossentropy" : binary ? "binaryCrossentropy" : "meanSquaredError";
    const federated = scheme.control.value === "federated";
    const id = taskID.control.value.trim();
    const columns = listOf(inputs.control as HTMLInputElement);
    const outputs = listOf(output.control as HTMLInputElement);
    return {
      taskID: id,
      displayInformation: withoutUndefined({
        taskTitle: title.control.value.trim(),
        summary: { preview: preview.control.value.trim(), overview: overview.control.value.trim() },
        dataFormatInformation: format.control.value.trim() || undefined,
        headers: image ? undefined : [...columns, ...outputs],
      }),
      trainingInformation: withoutUndefined({
        modelID: `${id}-model`,
        epochs: number(epochs),
        roundDuration: number(roundDuration),
        validationSplit: 0,
        batchSize: number(batch),
        modelCompileData: {
          optimizer: optimizer.control.value,
          loss,
          metrics: loss === "meanSquaredError" ? [] : ["accuracy"],
        },
        dataType: image ? "image" : "tabular",
        scheme: scheme.control.value,
        inputColumns: image ? undefined : columns,
        outputColumns: image ? undefined : outputs,
        IMAGE_W: image ? number(width) : undefined,
        IMAGE_H: image ? number(height) : undefined,
        LABEL_LIST: image ? listOf(labels.control as HTMLInputElement) : undefined,
        preprocessingFunctions: image ? ["normalize"] : undefined,
        learningRate: number(rate),
        minNbOfParticipants: federated ? number(minimum) : undefined,
        minimumReadyPeers: federated ? undefined : number(peers),
        decentralizedSecure: federated ? undefined : secure.checked,
      }),
    };
  }

  async function modelFiles(task: Json): Promise<File[]> {
    if (uploadRadio.checked) {
      const chosen = Array.from(files.files ?? []);
      if (!chosen.some((f) => f.name === "model.json")) {
        throw new ModelError("model.json", "Choose the model.json file and its weight files.");
      }
      return chosen;
    }
    const info = task["trainingInformation"] as Json;
    const model = tf.sequential();
    if (dataType.control.value === "image") {
      const w = info["IMAGE_W"], hgt = info["IMAGE_H"];
      const classes = (info["LABEL_LIST"] as string[]).length;
      if (typeof w !== "number" || typeof hgt !== "number" || w < 4 || hgt < 4 || w > 512 || hgt > 512) {
        throw new ModelError("trainingInformation.IMAGE_W", "Give the images' width and height in pixels (4 to 512).");
      }
      if (classes < 2) throw new ModelError("trainingInformation.LABEL_LIST", "Give at least two labels.");
      const channels = Number(colors.control.value);
      model.add(tf.layers.conv2d({ inputShape: [hgt, w, channels], filters: 8, kernelSize: 3, activation: "relu" }));
      model.add(tf.layers.maxPooling2d({ poolSize: 2 }));
      model.add(tf.layers.conv2d({ filters: 16, kernelSize: 3, activation: "relu" }));
      model.add(tf.layers.maxPooling2d({ poolSize: 2 }));
      model.add(tf.layers.flatten());
      model.add(tf.layers.dense({ units: 32, activation: "relu" }));
      model.add(tf.layers.dense({ units: classes, activation: "softmax" }));
    } else {
      const columns = (info["inputColumns"] as string[]).length;
      if (columns === 0) throw new ModelError("trainingInformation.inputColumns", "Name at least one column the model reads.");
      if ((info["outputColumns"] as string[]).length !== 1) {
        throw new ModelError("trainingInformation.outputColumns", "Name the one column the model learns to predict.");
      }
      const sizes = listOf(hidden.control as HTMLInputElement).map(Number);
      if (sizes.some((n) => !Number.isInteger(n) || n < 1 || n > 4096)) {
        throw new ModelError("template.hidden", "Give whole numbers between 1 and 4096, separated by commas.");
      }
      sizes.forEach((units, i) => model.add(tf.layers.dense({
        units, activation: "relu", ...(i === 0 ? { inputShape: [columns] } : {}),
      })));
      model.add(tf.layers.dense({
        units: 1, activation: target.control.value === "binary" ? "sigmoid" : "linear",
        ...(sizes.length === 0 ? { inputShape: [columns] } : {}),
      }));
    }
    try {
      return await layersFiles(model);
    } finally {
      model.dispose();
    }
  }

  const submit = h("button", { type: "submit", class: "primary", "data-create": "" }, "Create the task");
  const form = h(
    "form",
    { class: "form", novalidate: true },
    h("fieldset", { class: "group" }, h("legend", null, "The task"),
      taskID.element, title.element, preview.element, overview.element),
    h("fieldset", { class: "group" }, h("legend", null, "The data"),
      dataType.element, tabularBox, imageBox, format.element),
    h("fieldset", { class: "group" }, h("legend", null, "The model"),
      h("div", { class: "choice" }, templateRadio, h("label", { for: templateRadio.id }, templateLabel)),
      h("div", { class: "choice" }, uploadRadio, h("label", { for: uploadRadio.id }, "My own TensorFlow.js model")),
      templateBox, uploadBox),
    h("fieldset", { class: "group" }, h("legend", null, "Training"),
      scheme.element,
      h("div", { class: "row" }, epochs.element, batch.element, roundDuration.element),
      h("div", { class: "row" }, rate.element, optimizer.element, minimum.element, peers.element),
      secureBox),
    tokenBox,
    summary,
    h("p", { class: "actions" }, submit),
  );

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void send();
  });

  async function send(): Promise<void> {
    fields.clear();
    formSummary(summary, "", []);
    replace(result);
    submit.disabled = true;
    submit.textContent = "Creating…";
    try {
      const task = taskJSON();
      let parts: File[];
      try {
        parts = await modelFiles(task);
      } catch (error) {
        if (error instanceof ModelError) {
          formSummary(summary, "Please check the form:", fields.showReasons(`${error.path}: ${error.message}`));
          return;
        }
        throw error;
      }
      const body = new FormData();
      body.append("task.json", new Blob([JSON.stringify(task)], { type: "application/json" }), "task.json");
      for (const file of parts) body.append(file.name, file, file.name);
      const headers: Record<string, string> = {};
      const secret = (token.control as HTMLInputElement).value.trim();
      if (secret !== "") headers["Authorization"] = `Bearer ${secret}`;
      const response = await fetch("/tasks", { method: "POST", body, headers });
      if (response.status === 201) {
        const created = (await response.json()) as { taskID: string; displayInformation: { taskTitle: string } };
        form.hidden = true;
        replace(result, successBox(
          h("p", null, h("strong", null, `The task “${created.displayInformation.taskTitle}” is created.`)),
          h("p", null, "People can now train it from the list of tasks. Share this address: ",
            h("code", null, `${location.origin}${href("/tasks", created.taskID)}`)),
          h("p", { class: "actions" },
            h("a", { class: "button", href: href("/tasks", created.taskID, "train"), "data-link": true, "data-created": created.taskID }, "Train it now"),
            h("a", { class: "button secondary", href: href("/tasks", created.taskID), "data-link": true }, "See the task")),
          h("p", { class: "hint" }, "From Python: ",
            h("code", null, `Client("${location.origin}").train("${created.taskID}", "my_data.csv")`)),
        ));
        return;
      }
      const reason = await response.json().then(
        (b: { error?: unknown; detail?: unknown }) =>
          typeof b.error === "string" ? b.error : typeof b.detail === "string" ? b.detail : response.statusText,
        () => response.statusText,
      );
      if (response.status === 401 || response.status === 403) {
        tokenBox.hidden = false;
        token.setError(response.status === 401
          ? "This server needs its admin token to create tasks."
          : "The server refused this admin token.");
        token.control.focus();
        return;
      }
      if (response.status === 409) {
        fields.showReasons(reason.startsWith("task.taskID") ? reason : `taskID: ${reason}`);
        return;
      }
      formSummary(summary, "The server refused the task:", fields.showReasons(reason));
    } catch (error) {
      formSummary(summary, "The task could not be created:", [error instanceof Error ? error.message : String(error)]);
    } finally {
      submit.disabled = false;
      submit.textContent = "Create the task";
    }
  }

  syncVisibility();
  replace(
    root,
    h("h1", null, "Create a task"),
    h("p", { class: "lead" },
      "Describe what to learn and from which data; pick a ready-made model or bring your own. " +
        "The server checks the settings and tells you what to change."),
    form,
    result,
  );
  return "Create a task";
}
