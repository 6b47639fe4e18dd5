/**
 * The web app's entry point. For now a single page listing the server's tasks through the
 * engine (the same `disco.js` every page imports); the task, train, test and dashboard pages
 * build on it.
 */

import { listTasks } from "../engine/index.js";
import type { Task } from "../engine/index.js";

function cell(text: string): HTMLTableCellElement {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

function renderTasks(root: HTMLElement, tasks: Task[]): void {
  const table = document.createElement("table");
  table.id = "tasks";
  const head = table.createTHead().insertRow();
  for (const title of ["Task", "Summary", "Data", "Scheme"]) {
    const th = document.createElement("th");
    th.textContent = title;
    head.appendChild(th);
  }
  const body = table.createTBody();
  for (const task of tasks) {
    const row = body.insertRow();
    row.dataset["taskId"] = task.taskID;
    row.append(
      cell(task.displayInformation.taskTitle),
      cell(task.displayInformation.summary?.preview ?? ""),
      cell(task.trainingInformation.dataType),
      cell(task.trainingInformation.scheme),
    );
  }
  root.replaceChildren(table);
}

async function main(): Promise<void> {
  const root = document.getElementById("app");
  if (root === null) return;
  try {
    renderTasks(root, await listTasks(location.origin));
  } catch (error) {
    const p = document.createElement("p");
    p.className = "error";
    p.textContent = `Cannot list the tasks: ${String(error)}`;
    root.replaceChildren(p);
  }
}

void main();
