/** The "Tasks › task › page" line at the top of a task's pages. */

import type { Task } from "../../engine/index.js";
import { h } from "../dom.js";
import { href } from "../router.js";

export function crumbs(task: Task, page: string): HTMLElement {
  return h("p", { class: "crumbs" },
    h("a", { href: href("/"), "data-link": true }, "Tasks"), " › ",
    h("a", { href: href("/tasks", task.taskID), "data-link": true }, task.displayInformation.taskTitle),
    ` › ${page}`);
}
