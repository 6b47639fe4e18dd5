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

/**
 * A task this browser cannot train or test (its model is PyTorch-only): say why and what to do
 * instead, in words, with the server's reason folded away.
 */
export function pythonOnlyBox(reason: string): HTMLElement {
  return h(
    "div",
    { class: "notice info", role: "note", "data-not-trainable": "" },
    h("p", null, h("strong", null, "This task cannot be trained in a browser."),
      " Its model is written for PyTorch, which only DISCO's Python program can run: " +
        "train it with ", h("code", null, "disco train"), " on a computer with Python."),
    h("details", null, h("summary", null, "Why"), h("p", null, reason)),
  );
}
