/** The server's HTTP API: tasks, their status and their current global model. */

import * as tf from "@tensorflow/tfjs";

import { initBackend } from "./backend.js";
import { ServerError } from "./errors.js";
import type { Task, TaskStatus } from "./types.js";

/** `base` without its trailing slashes ("" for the page's own server). */
export function serverBase(base: string): string {
  return base.replace(/\/+$/, "");
}

async function getJSON<T>(url: string): Promise<T> {
  let response: Response;
  try {
    response = await fetch(url, { headers: { Accept: "application/json" } });
  } catch (error) {
    throw new ServerError(`cannot reach the server at ${url}: ${String(error)}`);
  }
  if (!response.ok) {
    let reason = response.statusText;
    try {
      const body = (await response.json()) as { detail?: unknown };
      if (typeof body.detail === "string") reason = body.detail;
    } catch {
      // not JSON: keep the status text
    }
    throw new ServerError(`${url}: ${response.status} ${reason}`, response.status);
  }
  return (await response.json()) as T;
}

/** Every task the server offers. */
export function listTasks(server: string): Promise<Task[]> {
  return getJSON<Task[]>(`${serverBase(server)}/tasks`);
}

/** One task, by id. */
export function getTask(server: string, taskID: string): Promise<Task> {
  return getJSON<Task>(`${serverBase(server)}/tasks/${encodeURIComponent(taskID)}`);
}

/** The round of the task's global model and its live participant counts. */
export function taskStatus(server: string, taskID: string): Promise<TaskStatus> {
  return getJSON<TaskStatus>(`${serverBase(server)}/tasks/${encodeURIComponent(taskID)}/status`);
}

/**
 * Why this engine cannot train or load the task's model, or null when it can. A PyTorch-only
 * task's model is a torch.nn.Module that only the Python client builds (the server says so in
 * the task's `torchModel`).
 */
export function notTrainableReason(task: Task): string | null {
  const torch = task.torchModel;
  if (torch === undefined || torch === null) return null;
  return typeof torch.reason === "string" && torch.reason !== ""
    ? torch.reason
    : `task '${task.taskID}' is PyTorch-only: train it with the Python client (disco train)`;
}

/** URL of the task's current global model in the TF.js layers format. */
export function modelURL(server: string, taskID: string): string {
  return `${serverBase(server)}/tasks/${encodeURIComponent(taskID)}/model.json?format=tfjs`;
}

/** The task's current global model, loaded with `tf.loadLayersModel` (backend set first). */
export async function loadModel(server: string, taskID: string): Promise<tf.LayersModel> {
  await initBackend();
  try {
    return await tf.loadLayersModel(modelURL(server, taskID));
  } catch (error) {
    throw new ServerError(`cannot load the model of ${taskID}: ${String(error)}`);
  }
}
