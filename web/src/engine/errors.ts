/** Errors the engine throws; pages show `message` to the person as it is. */

import type { DataIssue } from "./types.js";

/** Root of the engine's errors. */
export class DiscoError extends Error {
  override name = "DiscoError";
}

/** The server answered with an error, or could not be reached. */
export class ServerError extends DiscoError {
  override name = "ServerError";
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

/**
 * Local data that cannot be used as it is: `issues` lists what is wrong, line by line where it
 * applies (at most `MAX_ISSUES`); `message` is the first issue (plus how many others there are).
 * Nothing has been sent anywhere when this is thrown.
 */
export class DataError extends DiscoError {
  override name = "DataError";
  readonly issues: DataIssue[];
  constructor(issues: DataIssue[] | string, file = "") {
    const list = typeof issues === "string" ? [{ file, message: issues }] : issues;
    const first = list[0]?.message ?? "invalid data";
    super(list.length > 1 ? `${first} (and ${list.length - 1} more problem(s))` : first);
    this.issues = list;
  }
}

/** Most issues one DataError lists (a broken file must not make a page of thousands of lines). */
export const MAX_ISSUES = 50;
