/**
 * Client-side routes under /app/ (the server answers index.html for every page path):
 * links with `data-link` and `navigate()` change the page without reloading it, so a training
 * started on one page keeps running while the person looks at another.
 */

export const BASE = "/app";

export interface PageContext {
  root: HTMLElement;
  params: Record<string, string>;
  /** Aborted when the person leaves the page: close streams, drop listeners. */
  signal: AbortSignal;
}

export type Page = (context: PageContext) => Promise<string> | string;

interface Route {
  pattern: RegExp;
  keys: string[];
  load: () => Promise<Page>;
}

const routes: Route[] = [];

/** Register a page: `path` like "/tasks/:task/train" (relative to /app). */
export function route(path: string, load: () => Promise<Page>): void {
  const keys: string[] = [];
  const source = path.replace(/:(\w+)/g, (_, key: string) => {
    keys.push(key);
    return "([^/]+)";
  });
  routes.push({ pattern: new RegExp(`^${source}/?$`), keys, load });
}

/** The URL of a page, e.g. `href("/tasks", id, "train")`. */
export function href(...parts: string[]): string {
  return BASE + parts.map((p) => (p.startsWith("/") ? p : `/${encodeURIComponent(p)}`)).join("");
}

let current: AbortController | null = null;
let root: HTMLElement | null = null;

async function show(): Promise<void> {
  if (root === null) return;
  current?.abort();
  const controller = new AbortController();
  current = controller;
  const path = location.pathname.startsWith(BASE) ? location.pathname.slice(BASE.length) : "/";
  for (const candidate of routes) {
    const match = candidate.pattern.exec(path === "" ? "/" : path);
    if (match === null) continue;
    const params: Record<string, string> = {};
    candidate.keys.forEach((key, i) => (params[key] = decodeURIComponent(match[i + 1] ?? "")));
    const page = await candidate.load();
    if (controller.signal.aborted) return;
    root.replaceChildren();
    const title = await page({ root, params, signal: controller.signal });
    if (controller.signal.aborted) return;
    document.title = title ? `${title} · DISCO` : "DISCO";
    highlightNavigation();
    focusMain(root);
    return;
  }
  const notFound = document.createElement("p");
  notFound.textContent = "There is no such page here.";
  root.replaceChildren(notFound);
  document.title = "Not found · DISCO";
}

function highlightNavigation(): void {
  for (const link of document.querySelectorAll<HTMLAnchorElement>("nav a")) {
    const here = link.pathname === location.pathname;
    if (here) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

let firstShow = true;

/** After a navigation, move keyboard and screen-reader focus to the new page's heading. */
function focusMain(main: HTMLElement): void {
  if (firstShow) {
    firstShow = false;
    return;
  }
  const heading = main.querySelector<HTMLElement>("h1, h2");
  if (heading === null) return;
  heading.tabIndex = -1;
  heading.focus();
}

/** Go to `url` (an /app/ path) without reloading. */
export function navigate(url: string): void {
  history.pushState(null, "", url);
  void show();
}

/** Start routing: render the current page into `main`, follow links and history. */
export function start(main: HTMLElement): void {
  root = main;
  document.addEventListener("click", (event) => {
    const link = (event.target as Element | null)?.closest?.("a[data-link]");
    if (!(link instanceof HTMLAnchorElement) || event.defaultPrevented) return;
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
    event.preventDefault();
    navigate(link.href);
  });
  window.addEventListener("popstate", () => void show());
  void show();
}
