/**
 * Why local data was refused, said for someone who is not a programmer: a headline, what to do,
 * buttons for the fixes the page can apply itself, and where each problem is (file, line,
 * column). The engine's `DataError` lists the problems; its wording is the Python client's.
 */

import type { DataError, DataIssue } from "../../engine/index.js";
import { h } from "../dom.js";

/** A fix the page can apply by reading the data again with another option. */
export type Fix = "drop" | "mean" | "resize";

interface Explanation {
  headline: string;
  advice: string;
  fixes: Fix[];
}

const FIX_LABELS: Record<Fix, string> = {
  drop: "Skip these rows",
  mean: "Fill empty cells with the column's average",
  resize: "Resize the images for me",
};

function explain(issues: readonly DataIssue[], message: string): Explanation {
  const text = [message, ...issues.map((issue) => issue.message)].join("\n");
  if (/missing column/.test(text)) {
    return {
      headline: "Your file does not have all the columns this task needs.",
      advice:
        "Check that the first line of the file names the columns exactly as listed above " +
        "(upper and lower case matter), and that you picked the right file.",
      fixes: [],
    };
  }
  if (/the file is empty|no data rows|every row has an empty cell/.test(text)) {
    return { headline: "There is no usable data in this file.", advice: "Pick another file.", fixes: [] };
  }
  if (/empty cell/.test(text)) {
    const rows = /(\d+) row\(s\) have empty cells/.exec(text)?.[1];
    return {
      headline: `${rows ?? "Some"} row${rows === "1" ? " has" : "s have"} empty cells.`,
      advice:
        "The model cannot learn from an empty cell. You can fill the cells in a spreadsheet " +
        "and pick the file again, or let the page skip those rows or fill the empty cells " +
        "with the average of their column.",
      fixes: ["drop", "mean"],
    };
  }
  if (/fields, the header has/.test(text)) {
    return {
      headline: "Some lines do not have as many values as the first line (the column names).",
      advice:
        "A value may be missing or a comma may be too many on these lines (a text with a comma " +
        "must be in double quotes). Correct them in a spreadsheet, or skip these lines.",
      fixes: ["drop"],
    };
  }
  if (/is not a number|infinite value/.test(text)) {
    return {
      headline: "Some cells hold something else than a number.",
      advice:
        "This task only reads numbers in the columns it uses. Correct these cells (for " +
        "example write 0 or 1 instead of a word) and pick the file again.",
      fixes: [],
    };
  }
  if (/image is \d+x\d+, the task expects/.test(text)) {
    return {
      headline: "Some images do not have the size this task expects.",
      advice: "The page can resize them for you (the pictures may look a little stretched).",
      fixes: ["resize"],
    };
  }
  if (/not in the task's LABEL_LIST/.test(text)) {
    return {
      headline: "Some folder names are not labels of this task.",
      advice: "Name each sub-folder after one of the labels listed above.",
      fixes: [],
    };
  }
  if (/need a label|no images found/.test(text)) {
    return {
      headline: "The page could not tell which label each image has.",
      advice:
        "Choose a folder that has one sub-folder per label, with the images inside, or add " +
        "a CSV file of file,label lines.",
      fixes: [],
    };
  }
  return { headline: "This data cannot be used as it is.", advice: "", fixes: [] };
}

/** "titanic.csv, line 7, column 'Age': '' is not a number" -> "'' is not a number". */
function what(issue: DataIssue): string {
  return issue.message
    .replace(/^[^:]*?, line \d+(, column '[^']*')?: /, "")
    .replace(/^[^:,]+: (?=image is)/, "")
    .replace(/\s*\(use missing=[^)]*\)\s*$/, "");
}

function where(issue: DataIssue): string {
  const parts = [issue.file];
  if (issue.line !== undefined) parts.push(`line ${issue.line}`);
  if (issue.column !== undefined) parts.push(`column “${issue.column}”`);
  return parts.filter(Boolean).join(", ");
}

/** The explanation box; `onFix` re-reads the data with the fix the person chose. */
export function dataProblems(error: DataError, onFix: (fix: Fix) => void): HTMLElement {
  const issues = error.issues;
  const { headline, advice, fixes } = explain(issues, error.message);
  // the engine's summary of empty cells ("12 row(s) have empty cells, first at...") is the
  // headline here: the list keeps one line per row
  const lines = issues.length > 1 ? issues.filter((issue) => !/row\(s\) have empty cells/.test(issue.message)) : issues;
  const listed = lines.filter((issue) => issue.line !== undefined || lines.length > 1);
  return h(
    "div",
    { class: "notice error", role: "alert", "data-data-error": "" },
    h("p", null, h("strong", null, headline)),
    advice ? h("p", null, advice) : null,
    listed.length === 0 ? h("p", { class: "detail" }, what(issues[0] ?? { file: "", message: error.message })) : null,
    fixes.length > 0
      ? h("p", { class: "actions" }, fixes.map((fix) =>
          h("button", { type: "button", class: "secondary", "data-fix": fix, onclick: () => onFix(fix) }, FIX_LABELS[fix])))
      : null,
    listed.length > 0
      ? h("details", { open: listed.length <= 5 },
          h("summary", null, `Where (${listed.length === 50 ? "the first 50" : listed.length} problem${listed.length === 1 ? "" : "s"})`),
          h("div", { class: "scroll", tabindex: 0, role: "region", "aria-label": "Problems in the data" },
            h("table", { class: "issues" },
              h("thead", null, h("tr", null, h("th", { scope: "col" }, "Where"), h("th", { scope: "col" }, "What"))),
              h("tbody", null, listed.map((issue) => h("tr", null, h("td", null, where(issue)), h("td", null, what(issue))))))))
      : null,
  );
}
