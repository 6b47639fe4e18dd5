/** Messages shown to the person: errors, successes, notes. */

import { h } from "../dom.js";

/** An error explained in one sentence, with the technical detail folded away. */
export function errorBox(sentence: string, error?: unknown): HTMLElement {
  const detail =
    error === undefined ? null : error instanceof Error ? error.message : typeof error === "string" ? error : JSON.stringify(error);
  return h(
    "div",
    { class: "notice error", role: "alert" },
    h("p", null, sentence),
    detail === null ? null : h("details", null, h("summary", null, "Details"), h("p", null, detail)),
  );
}

export function successBox(...children: (Node | string)[]): HTMLElement {
  return h("div", { class: "notice success", role: "status" }, ...children);
}
