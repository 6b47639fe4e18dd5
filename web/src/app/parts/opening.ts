/**
 * The opening shared by the pages that run a task's model in this browser (train, test): load
 * the task, or say it does not exist; say so when only the Python program can run its model.
 */

import { getTask, notTrainableReason } from "../../engine/index.js";
import type { Task } from "../../engine/index.js";
import { h, replace } from "../dom.js";
import { crumbs } from "./crumbs.js";
import { errorBox, pythonOnlyBox } from "./notices.js";

/** A task this browser can run, or the page's title once the page shows why it cannot. */
export type Opening = { task: Task; title: string } | { pageTitle: string };

/** How a page names itself: in the crumbs ("Train"), its heading and its title for a task. */
export interface PageNames {
  crumb: string;
  heading: (taskTitle: string) => string;
  pageTitle: (taskTitle: string) => string;
}

export async function openBrowserTask(root: HTMLElement, taskID: string, names: PageNames): Promise<Opening> {
  let task: Task;
  try {
    task = await getTask(location.origin, taskID);
  } catch (error) {
    replace(root, h("h1", null, "Task not found"), errorBox(`There is no task "${taskID}" on this server.`, error));
    return { pageTitle: "Task not found" };
  }
  const title = task.displayInformation.taskTitle;
  const pythonOnly = notTrainableReason(task);
  if (pythonOnly !== null) {
    replace(root, crumbs(task, names.crumb), h("h1", null, names.heading(title)), pythonOnlyBox(pythonOnly));
    return { pageTitle: names.pageTitle(title) };
  }
  return { task, title };
}
