/**
 * Choosing local data: a drop zone and buttons (a CSV file, images, or a folder of images in
 * one sub-folder per label), then the check in the page, with the engine's reading rules. The
 * files are read here and never sent anywhere.
 */

import { DataError, readImages, readTabular } from "../../engine/index.js";
import type { Dataset, ImageInput, MissingPolicy, Task } from "../../engine/index.js";
import { h, replace, uid } from "../dom.js";
import { plural } from "../format.js";
import { dataProblems } from "./dataproblems.js";
import type { Fix } from "./dataproblems.js";
import { errorBox, successBox } from "./notices.js";

export interface PickerOptions {
  task: Task;
  /** false for prediction: no output column / label needed. */
  labelled: boolean;
  /** The model's input channels (images only). */
  channels: () => Promise<number>;
  /** Called with the checked data, or null while there is none (or it was refused). */
  onData: (dataset: Dataset | null) => void;
}

/** A chosen file and its path (`label/name.png` in a folder). */
interface Input extends ImageInput {
  file: File;
}

interface Picked {
  inputs: Input[];
  labelsCsv?: File;
}

/** The files of a dropped folder, with their paths relative to it (`label/name.png`). */
async function entryFiles(entry: FileSystemEntry, prefix = ""): Promise<Input[]> {
  if (entry.isFile) {
    const file = await new Promise<File>((resolve, reject) => (entry as FileSystemFileEntry).file(resolve, reject));
    return [{ file, path: prefix + file.name }];
  }
  const reader = (entry as FileSystemDirectoryEntry).createReader();
  const children: FileSystemEntry[] = [];
  for (;;) {
    const batch = await new Promise<FileSystemEntry[]>((resolve, reject) => reader.readEntries(resolve, reject));
    if (batch.length === 0) break;
    children.push(...batch);
  }
  const nested = await Promise.all(children.map((child) => entryFiles(child, `${prefix}${entry.name}/`)));
  return nested.flat();
}

function isCSV(file: File): boolean {
  return /\.(csv|txt)$/i.test(file.name) || file.type === "text/csv";
}

export function dataPicker(options: PickerOptions): HTMLElement {
  const { task, labelled } = options;
  const tabular = task.trainingInformation.dataType === "tabular";
  const picked: Picked = { inputs: [] };
  let missing: MissingPolicy = "error";
  let resize = false;
  let checking = 0;

  const result = h("div", { class: "check", "aria-live": "polite" });
  const chosen = h("p", { class: "chosen" }, "No data chosen yet.");
  const fileId = uid("file");
  const folderId = uid("folder");
  const labelsId = uid("labels");

  async function check(): Promise<void> {
    const ticket = ++checking;
    options.onData(null);
    if (picked.inputs.length === 0) {
      replace(result);
      return;
    }
    replace(result, h("p", null, "Checking your data…"));
    try {
      let dataset: Dataset;
      if (tabular) {
        const file = picked.inputs[0]?.file;
        if (file === undefined) return;
        dataset = await readTabular(task, file, { missing, labelled });
      } else {
        dataset = await readImages(task, picked.inputs, {
          labelled, resize, channels: await options.channels(),
          ...(picked.labelsCsv !== undefined ? { labelsCsv: picked.labelsCsv } : {}),
        });
      }
      if (ticket !== checking) return;
      replace(result, successBox(
        h("p", null, h("strong", null,
          `Your data is ready: ${plural(dataset.size, tabular ? "row" : "image")}` +
            (labelled ? "" : " to predict") + ".")),
        ...dataset.notes.map((note) => h("p", null, note.replace(/^./, (c) => c.toUpperCase()) + ".")),
      ));
      options.onData(dataset);
    } catch (error) {
      if (ticket !== checking) return;
      if (error instanceof DataError) {
        replace(result, dataProblems(error, applyFix));
      } else {
        replace(result, errorBox("The data could not be read.", error));
      }
    }
  }

  function applyFix(fix: Fix): void {
    if (fix === "resize") resize = true;
    else missing = fix;
    void check();
  }

  function choose(inputs: Input[], labelsCsv?: File): void {
    if (tabular) {
      const csv = inputs.find((input) => isCSV(input.file)) ?? inputs[0];
      picked.inputs = csv === undefined ? [] : [csv];
      chosen.textContent = csv === undefined ? "No data chosen yet." : `Chosen: ${csv.file.name}`;
    } else {
      const images = inputs.filter((input) => !isCSV(input.file));
      picked.inputs = images;
      picked.labelsCsv = labelsCsv ?? inputs.find((input) => isCSV(input.file))?.file ?? picked.labelsCsv;
      chosen.textContent =
        images.length === 0
          ? "No images found in what you chose."
          : `Chosen: ${plural(images.length, "image")}` +
            (picked.labelsCsv !== undefined ? ` and the labels file ${picked.labelsCsv.name}` : "");
    }
    missing = "error";
    resize = false;
    void check();
  }

  const fromInput = (input: HTMLInputElement): Input[] =>
    Array.from(input.files ?? [], (file) => ({ file, path: file.webkitRelativePath || file.name }));

  const fileInput = h("input", {
    id: fileId, type: "file", hidden: true, "data-input": "files",
    accept: tabular ? ".csv,text/csv" : "image/*,.csv", multiple: !tabular,
    onchange: (event: Event) => choose(fromInput(event.target as HTMLInputElement)),
  });
  const folderInput = tabular ? null : h("input", {
    id: folderId, type: "file", hidden: true, "data-input": "folder", webkitdirectory: true, multiple: true,
    onchange: (event: Event) => choose(fromInput(event.target as HTMLInputElement)),
  });
  const labelsInput = tabular || !labelled ? null : h("input", {
    id: labelsId, type: "file", hidden: true, "data-input": "labels", accept: ".csv,text/csv",
    onchange: (event: Event) => {
      const file = (event.target as HTMLInputElement).files?.[0];
      if (file !== undefined) {
        picked.labelsCsv = file;
        choose(picked.inputs, file);
      }
    },
  });

  const zone = h(
    "div",
    { class: "dropzone", "data-dropzone": "" },
    h("p", null, tabular ? "Drop your CSV file here, or" : "Drop a folder or images here, or"),
    h("p", { class: "actions" },
      h("button", { type: "button", "aria-controls": fileId, onclick: () => fileInput.click() },
        tabular ? "Choose a CSV file" : "Choose images"),
      folderInput === null ? null : h("button", { type: "button", "aria-controls": folderId, onclick: () => folderInput.click() },
        "Choose a folder"),
      labelsInput === null ? null : h("button", { type: "button", class: "secondary", "aria-controls": labelsId, onclick: () => labelsInput.click() },
        "Add a labels file (optional)")),
    fileInput, folderInput, labelsInput,
    chosen,
  );
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    const items = Array.from(event.dataTransfer?.items ?? []);
    const entries = items.map((item) => item.webkitGetAsEntry?.()).filter((e): e is FileSystemEntry => e !== null && e !== undefined);
    if (entries.length > 0) {
      void Promise.all(entries.map((entry) => entryFiles(entry))).then((lists) => choose(lists.flat()));
    } else {
      choose(Array.from(event.dataTransfer?.files ?? [], (file) => ({ file, path: file.name })));
    }
  });

  return h("div", { class: "picker" }, zone, result);
}
