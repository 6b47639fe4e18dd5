/** Evaluation (accuracy, confusion matrix) and prediction on local data. */

import * as tf from "@tensorflow/tfjs";

import { DataError } from "./errors.js";
import { batchTensors, lossValue, predictedClasses, trueClasses } from "./training.js";
import type { Dataset, Evaluation, Prediction, Task } from "./types.js";

const BATCH = 256;

function classNames(task: Task, outputs: number): string[] {
  const labels = task.trainingInformation.LABEL_LIST;
  if (labels !== undefined && labels.length === Math.max(outputs, 2)) return labels.map(String);
  return Array.from({ length: Math.max(outputs, 2) }, (_, i) => String(i));
}

function* chunks(size: number): Generator<number[]> {
  for (let start = 0; start < size; start += BATCH) {
    yield Array.from({ length: Math.min(BATCH, size - start) }, (_, i) => start + i);
  }
}

/** Loss, accuracy and confusion matrix of `model` on labelled `data`. */
export function evaluate(model: tf.LayersModel, task: Task, data: Dataset): Promise<Evaluation> {
  if (data.y === null) throw new DataError("evaluation needs labelled data (the outputs are missing)");
  const lossName = String(task.trainingInformation.modelCompileData.loss);
  let labels: string[] = [];
  let confusion: number[][] = [];
  let totalLoss = 0;
  let correct = 0;
  for (const indices of chunks(data.size)) {
    const { x, y } = batchTensors(data, indices);
    tf.tidy(() => {
      const output = model.predict(x) as tf.Tensor;
      const outputs = output.shape[output.shape.length - 1] ?? 1;
      if (labels.length === 0) {
        labels = classNames(task, outputs);
        confusion = labels.map(() => labels.map(() => 0));
      }
      totalLoss += (lossValue(lossName, output, y as tf.Tensor).dataSync()[0] ?? NaN) * indices.length;
      const predicted = predictedClasses(output).dataSync();
      const truth = trueClasses(output, y as tf.Tensor).dataSync();
      predicted.forEach((p, i) => {
        const t = truth[i] ?? 0;
        if (p === t) correct++;
        const row = confusion[t];
        if (row !== undefined && p < row.length) row[p] = (row[p] ?? 0) + 1;
      });
    });
    tf.dispose([x, y as tf.Tensor]);
  }
  const n = Math.max(1, data.size);
  return Promise.resolve({ samples: data.size, loss: totalLoss / n, accuracy: correct / n, confusion, labels });
}

/** The model's outputs and predicted class for every sample of `data` (labelled or not). */
export function predict(model: tf.LayersModel, task: Task, data: Dataset): Promise<Prediction[]> {
  const predictions: Prediction[] = [];
  for (const indices of chunks(data.size)) {
    const { x, y } = batchTensors(data, indices);
    tf.tidy(() => {
      const output = model.predict(x) as tf.Tensor;
      const width = output.shape[output.shape.length - 1] ?? 1;
      const names = classNames(task, width);
      const values = output.dataSync();
      const classes = predictedClasses(output).dataSync();
      indices.forEach((k, i) => {
        const predicted = classes[i] ?? 0;
        predictions.push({
          source: data.sources[k] ?? "",
          outputs: Array.from(values.subarray(i * width, (i + 1) * width)),
          predicted,
          label: names[predicted] ?? String(predicted),
        });
      });
    });
    tf.dispose([x, y as tf.Tensor]);
  }
  return Promise.resolve(predictions);
}

function csvCell(text: string): string {
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** Predictions as CSV: `source,label,output_0,...` with a header row. */
export function predictionsCSV(predictions: readonly Prediction[]): string {
  const width = predictions[0]?.outputs.length ?? 0;
  const header = ["source", "label", ...Array.from({ length: width }, (_, i) => `output_${i}`)];
  const rows = predictions.map((p) => [csvCell(p.source), csvCell(p.label), ...p.outputs.map(String)].join(","));
  return [header.join(","), ...rows].join("\n") + "\n";
}
