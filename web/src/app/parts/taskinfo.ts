/** What a task expects as data: shown on the task page and on the train page. */

import type { Task } from "../../engine/index.js";
import { h } from "../dom.js";
import { richText } from "./richtext.js";

/** The columns of a tabular task, as the person's CSV must have them. */
export function expectedColumns(task: Task): { inputs: string[]; outputs: string[] } {
  const info = task.trainingInformation;
  return { inputs: info.inputColumns ?? [], outputs: info.outputColumns ?? [] };
}

function exampleTable(task: Task): HTMLElement | null {
  const display = task.displayInformation;
  const { inputs, outputs } = expectedColumns(task);
  const example = display.dataExample ?? [];
  const headers = display.headers ?? example.map((column) => column.columnName);
  if (headers.length === 0) return null;
  const values = new Map(example.map((column) => [column.columnName, String(column.columnData)]));
  const role = (name: string): string =>
    outputs.includes(name) ? "to learn" : inputs.includes(name) ? "used" : "ignored";
  return h(
    "div",
    { class: "scroll", role: "region", "aria-label": "Example row", tabindex: 0 },
    h(
      "table",
      { class: "example" },
      h("caption", null, "An example row of the file"),
      h("thead", null,
        h("tr", null, h("th", { scope: "row" }, "Column"),
          headers.map((name) => h("th", { scope: "col", class: `role-${role(name).replace(" ", "-")}` }, name))),
        h("tr", null, h("th", { scope: "row" }, "Use"), headers.map((name) => h("td", null, role(name))))),
      h("tbody", null,
        h("tr", null, h("th", { scope: "row" }, "Example"),
          headers.map((name) => h("td", null, values.get(name) ?? "")))),
    ),
  );
}

/** A section describing the data the task needs, with its example. */
export function dataSection(task: Task, headingLevel: "h2" | "h3" = "h2"): HTMLElement {
  const info = task.trainingInformation;
  const display = task.displayInformation;
  const parts: (Node | null)[] = [h(headingLevel, null, "The data it needs")];
  if (info.dataType === "tabular") {
    const { inputs, outputs } = expectedColumns(task);
    parts.push(
      h("p", null,
        "A table saved as a CSV file (the first line names the columns). The model reads the columns ",
        h("strong", null, inputs.join(", ")),
        outputs.length > 0 ? [" and learns to predict ", h("strong", null, outputs.join(", ")), "."] : ".",
        " Other columns are ignored."),
    );
  } else if (info.dataType === "image") {
    const labels = (info.LABEL_LIST ?? []).map(String);
    parts.push(
      h("p", null,
        `Images (PNG, JPEG, …) of ${info.IMAGE_W ?? "?"}×${info.IMAGE_H ?? "?"} pixels. `,
        labels.length > 0
          ? ["Each image is one of: ", h("strong", null, labels.join(", ")), ". "]
          : null,
        "Choose a folder that has one sub-folder per label (for example ",
        h("code", null, `${labels[0] ?? "label"}/image1.png`),
        "), or the images with a CSV file of ", h("code", null, "file,label"), " lines."),
    );
  }
  if (display.dataFormatInformation) parts.push(h("p", null, richText(display.dataFormatInformation)));
  if (display.dataExampleText) parts.push(h("p", null, richText(display.dataExampleText)));
  if (info.dataType === "tabular") parts.push(exampleTable(task));
  const image = display.dataExampleImage;
  if (typeof image === "string" && (image.startsWith("data:image/") || image.startsWith("/"))) {
    parts.push(h("img", { src: image, alt: "An example image of the data", class: "example-image" }));
  }
  return h("section", { "aria-label": "The data it needs" }, parts);
}
