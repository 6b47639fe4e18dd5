/**
 * The web app's entry point: the routes of its pages. Every page uses the browser engine
 * through its public API (`../engine/index.js`, served as /app/disco.js), as other pages would.
 */

import { route, start } from "./router.js";

route("/", async () => (await import("./pages/tasks.js")).tasksPage);
route("/tasks/:task", async () => (await import("./pages/task.js")).taskPage);
route("/tasks/:task/train", async () => (await import("./pages/train.js")).trainPage);
route("/tasks/:task/test", async () => (await import("./pages/test.js")).testPage);
route("/new", async () => (await import("./pages/create.js")).createPage);
route("/dashboard", async () => (await import("./pages/dashboard.js")).dashboardPage);

const main = document.getElementById("app");
if (main !== null) start(main);
