/**
 * Form fields that show the server's reasons next to the field they name. The server answers a
 * refused task with 400 and `{"error": "task.json.trainingInformation.batchSize: must be > 0;
 * ..."}`: each `path: message` goes to the field registered under that path (or the closest
 * enclosing one), the rest to the form's summary.
 */

import { h, replace, uid } from "../dom.js";

export interface Field {
  path: string;
  element: HTMLElement;
  control: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement;
  setError(message: string | null): void;
}

export class FieldSet {
  readonly fields = new Map<string, Field>();

  /** A labelled control registered under `path` (the task JSON path it fills). */
  add(
    path: string,
    label: string,
    control: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement,
    hint?: string,
  ): Field {
    const id = control.id || uid("field");
    control.id = id;
    control.name = path;
    const hintId = `${id}-hint`;
    const errorId = `${id}-error`;
    const error = h("p", { class: "field-error", id: errorId, hidden: true });
    const described = [hint ? hintId : null, errorId].filter(Boolean).join(" ");
    control.setAttribute("aria-describedby", described);
    const element = h("div", { class: "field", "data-field": path },
      h("label", { for: id }, label),
      hint ? h("p", { class: "hint", id: hintId }, hint) : null,
      control,
      error);
    const field: Field = {
      path,
      element,
      control,
      setError(message) {
        error.hidden = message === null;
        error.textContent = message ?? "";
        element.classList.toggle("invalid", message !== null);
        if (message === null) control.removeAttribute("aria-invalid");
        else control.setAttribute("aria-invalid", "true");
      },
    };
    this.fields.set(path, field);
    return field;
  }

  clear(): void {
    for (const field of this.fields.values()) field.setError(null);
  }

  /**
   * Show each `path: message` of a server reason at its field; the problems no visible field
   * takes are returned. The first field in error gets the focus.
   */
  showReasons(reason: string): string[] {
    const unplaced: string[] = [];
    let first: Field | null = null;
    for (const part of reason.split(/;\s+(?=[\w.[\]-]+: )/)) {
      const colon = part.indexOf(": ");
      const path = colon > 0 ? part.slice(0, colon).replace(/^task(\.json)?\./, "") : "";
      const message = colon > 0 ? part.slice(colon + 2) : part;
      const field = this.closest(path);
      if (field === null) {
        unplaced.push(part);
        continue;
      }
      field.setError(humanize(message));
      if (first === null || position(field) < position(first)) first = field;
    }
    first?.control.focus();
    return unplaced;
  }

  private closest(path: string): Field | null {
    for (let p = path; p !== ""; p = p.includes(".") ? p.slice(0, p.lastIndexOf(".")) : "") {
      const field = this.fields.get(p.replace(/\[\d+\]$/, ""));
      if (field !== undefined && !field.element.closest("[hidden]")) return field;
    }
    return null;
  }
}

function position(field: Field): number {
  return Array.from(document.querySelectorAll("[data-field]")).indexOf(field.element);
}

/** The server's terse reasons, as a sentence. */
function humanize(message: string): string {
  const text = message
    .replace(/^required$/, "This is required.")
    .replace(/^must be > (\S+)$/, "Must be more than $1.")
    .replace(/^must be >= (\S+)$/, "Must be at least $1.")
    .replace(/^must be < (\S+)$/, "Must be less than $1.")
    .replace(/^must be <= (\S+)$/, "Must be at most $1.");
  return /[.!?]$/.test(text) ? text.replace(/^./, (c) => c.toUpperCase()) : `${text.replace(/^./, (c) => c.toUpperCase())}.`;
}

/** The form's summary of problems that no field shows. */
export function formSummary(box: HTMLElement, title: string, problems: string[]): void {
  if (problems.length === 0) {
    replace(box);
    return;
  }
  replace(box, h("div", { class: "notice error", role: "alert" },
    h("p", null, h("strong", null, title)),
    h("ul", null, problems.map((p) => h("li", null, p)))));
}

export function textInput(value = "", attrs: Record<string, string | boolean> = {}): HTMLInputElement {
  return h("input", { type: "text", value, ...attrs });
}

export function numberInput(value: number | string, attrs: Record<string, string | number | boolean> = {}): HTMLInputElement {
  return h("input", { type: "number", value: String(value), ...attrs });
}

export function select(options: [string, string][], selected: string): HTMLSelectElement {
  return h("select", null, options.map(([value, label]) => h("option", { value, selected: value === selected }, label)));
}
