/** A model's layers and size, as a table. */

import type { tf } from "../../engine/index.js";
import { h } from "../dom.js";
import { bytes, count } from "../format.js";

type LayersModel = tf.LayersModel;

function shapeText(shape: unknown): string {
  if (!Array.isArray(shape)) return "";
  const dims = (Array.isArray(shape[0]) ? (shape[0] as unknown[]) : shape).slice(1);
  return dims.map((d) => (d === null ? "any" : String(d))).join(" × ");
}

/** Parameters and bytes (float32) of a model. */
export function modelSize(model: LayersModel): { parameters: number; bytes: number } {
  const parameters = model.countParams();
  return { parameters, bytes: parameters * 4 };
}

/** The model's layers (type, output shape, parameters) and its total size. */
export function modelSection(model: LayersModel): HTMLElement {
  const size = modelSize(model);
  return h(
    "div",
    null,
    h("p", { "data-model-size": "" },
      `${model.layers.length} layers, ${count(size.parameters)} parameters (${bytes(size.bytes)} of weights).`),
    h(
      "div",
      { class: "scroll", role: "region", "aria-label": "Layers of the model", tabindex: 0 },
      h(
        "table",
        { class: "layers" },
        h("thead", null, h("tr", null,
          h("th", { scope: "col" }, "Layer"), h("th", { scope: "col" }, "Kind"),
          h("th", { scope: "col" }, "Output"), h("th", { scope: "col", class: "number" }, "Parameters"))),
        h("tbody", null, model.layers.map((layer) =>
          h("tr", null,
            h("td", null, layer.name),
            h("td", null, layer.getClassName()),
            h("td", null, shapeText(layer.outputShape)),
            h("td", { class: "number" }, count(layer.countParams()))))),
      ),
    ),
  );
}
