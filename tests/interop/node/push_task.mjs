// Push a new task with a freshly built model through the real client's pushTask().
// usage: node push_task.mjs <baseURL> <newTaskID>
// stdout: {task, weights: common.weightsDigest of the pushed model}
import { discojs, tf, main, baseURL, modelDigest } from './common.mjs';

function smallModel() {
  const model = tf.sequential();
  model.add(tf.layers.dense({ inputShape: [6], units: 5, activation: 'relu' }));
  model.add(tf.layers.dense({ units: 1, activation: 'sigmoid' }));
  return model;
}

await main('push_task', 60000, async ([base, taskID]) => {
  const task = discojs.defaultTasks.titanic.getTask();
  task.taskID = taskID;
  task.displayInformation.taskTitle = `Interop ${taskID}`;
  task.trainingInformation.modelID = `${taskID}-model`;
  task.trainingInformation.scheme = 'federated';
  delete task.trainingInformation.noiseScale; // undefined values do not survive JSON anyway
  delete task.trainingInformation.clippingRadius;
  const model = smallModel();
  try {
    await discojs.pushTask(baseURL(base), task, model);
  } catch (err) {
    const response = err.response;
    if (response !== undefined) {
      throw new Error(`POST /tasks answered ${response.status}: ${JSON.stringify(response.data)}`);
    }
    throw err;
  }
  return { task, weights: modelDigest(model) };
});
