// fetchTasks() of @epfml/discojs-node@2.1.1 against a server.
// usage: node fetch_tasks.mjs <baseURL>
// stdout: {taskIDs: [...], tasks: {id: task}} or, when the client rejects the list,
//         exit 1 with the IDs that fail the client's isTask check on stderr.
import { discojs, main, baseURL } from './common.mjs';

await main('fetch_tasks', 30000, async ([base]) => {
  const url = baseURL(base);
  try {
    const tasks = await discojs.fetchTasks(url);
    return { taskIDs: [...tasks.keys()], tasks: Object.fromEntries(tasks.entries()) };
  } catch (err) {
    // Say which elements the client refuses, so a failure names the culprit.
    const raw = await (await fetch(`${url.href}tasks`)).json();
    const rejected = Array.isArray(raw)
      ? raw.filter((t) => !discojs.isTask(t)).map((t) => t?.taskID ?? JSON.stringify(t).slice(0, 200))
      : 'GET /tasks is not a JSON array';
    throw new Error(`fetchTasks failed (${err.message}); rejected by isTask: ${JSON.stringify(rejected)}`);
  }
});
