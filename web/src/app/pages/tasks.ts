/** The task list: what people can train on this server, with each task's live round. */

import { listTasks, notTrainableReason } from "../../engine/index.js";
import type { Task } from "../../engine/index.js";
import { h, replace } from "../dom.js";
import { count, plural } from "../format.js";
import { followTasks, participantsOf } from "../live.js";
import { dataTypeName, schemeName } from "../parts/names.js";
import { errorBox } from "../parts/notices.js";
import { richText } from "../parts/richtext.js";
import type { PageContext } from "../router.js";
import { href } from "../router.js";

export async function tasksPage({ root, signal }: PageContext): Promise<string> {
  replace(root, h("h1", null, "Tasks"), h("p", null, "Loading the tasks…"));
  let tasks: Task[];
  try {
    tasks = await listTasks(location.origin);
  } catch (error) {
    replace(root, h("h1", null, "Tasks"), errorBox("The tasks could not be loaded.", error));
    return "Tasks";
  }
  const live = new Map<string, HTMLElement>();
  const cards = tasks.map((task) => {
    const status = h("p", { class: "status", "data-status": "" }, "Round 0 · nobody training now");
    live.set(task.taskID, status);
    const info = task.trainingInformation;
    const pythonOnly = notTrainableReason(task) !== null;
    return h(
      "li",
      { class: "card", "data-task-id": task.taskID },
      h("h2", null, h("a", { href: href("/tasks", task.taskID), "data-link": true },
        task.displayInformation.taskTitle)),
      h("p", null, richText(task.displayInformation.summary?.preview)),
      h("p", { class: "tags" },
        h("span", { class: "tag" }, dataTypeName(info.dataType)),
        h("span", { class: "tag" }, schemeName(info.scheme)),
        pythonOnly ? h("span", { class: "tag python-only", "data-python-only": "" }, "Python client only") : null),
      status,
      h("p", { class: "actions" },
        pythonOnly
          ? h("span", { class: "hint" }, "Not trainable in a browser (PyTorch model).")
          : h("a", { class: "button", href: href("/tasks", task.taskID, "train"), "data-link": true },
              "Train with my data"),
        h("a", { href: href("/tasks", task.taskID), "data-link": true }, "About this task")),
    );
  });
  replace(
    root,
    h("h1", null, "Tasks"),
    h("p", { class: "lead" },
      "Pick a task to train a model together with other people. Each person trains on their " +
        "own data, in their own browser; the server only combines the models."),
    tasks.length === 0
      ? h("p", null, "This server has no task yet. ",
          h("a", { href: href("/new"), "data-link": true }, "Create one"), ".")
      : h("ul", { class: "cards", id: "tasks" }, cards),
  );
  followTasks(signal, (snapshot) => {
    const status = live.get(snapshot.taskID);
    if (status === undefined) return;
    const people = participantsOf(snapshot);
    status.textContent =
      `Round ${count(snapshot.round)} · ` +
      (people === 0 ? "nobody training now" : `${plural(people, "participant")} connected`);
  });
  return "Tasks";
}
