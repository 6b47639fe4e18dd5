/**
 * Local training with the loss, optimizer and batch size a task's `trainingInformation` names,
 * computed as the Python client computes them (`disco.client.training`): Keras losses on the
 * model's outputs with probabilities clipped to [1e-7, 1 - 1e-7], TF.js optimizers with the
 * Python client's hyper-parameters. The optimizer state survives weight replacements.
 */

import * as tf from "@tensorflow/tfjs";

import { Random } from "./random.js";
import type { Dataset, TrainingInformation } from "./types.js";

/** Keras clips probabilities by this epsilon before taking logs (so does the Python client). */
export const EPSILON = 1e-7;

/** TF.js defaults when `learningRate` is absent. */
const DEFAULT_LEARNING_RATES: Record<string, number> = {
  sgd: 0.01,
  adam: 0.001,
  rmsprop: 0.001,
  adagrad: 0.01,
  adadelta: 0.001,
  adamax: 0.002,
};

/** The optimizer a task names, with the Python client's hyper-parameters. */
export function makeOptimizer(name: string, learningRate: number | undefined): tf.Optimizer {
  const key = name.toLowerCase();
  const lr = learningRate ?? DEFAULT_LEARNING_RATES[key] ?? 0.001;
  switch (key) {
    case "sgd":
      return tf.train.sgd(lr);
    case "adam":
      return tf.train.adam(lr, 0.9, 0.999, EPSILON);
    case "rmsprop":
      return tf.train.rmsprop(lr, 0.9, 0, EPSILON);
    case "adagrad":
      return tf.train.adagrad(lr, 0.1);
    case "adadelta":
      return tf.train.adadelta(lr, 0.95, EPSILON);
    case "adamax":
      return tf.train.adamax(lr, 0.9, 0.999, EPSILON);
    default:
      throw new Error(
        `unsupported optimizer '${name}' (sgd, adam, rmsprop, adagrad, adadelta, adamax)`,
      );
  }
}

/**
 * The loss `name` of `output` (the model's outputs) against `target`: float targets of the
 * output's shape, or class indices (a 1-D tensor) for categorical losses.
 */
export function lossValue(name: string, output: tf.Tensor, target: tf.Tensor): tf.Scalar {
  const key = name.replace(/_/g, "").toLowerCase();
  return tf.tidy(() => {
    if (key === "binarycrossentropy") {
      const p = output.clipByValue(EPSILON, 1 - EPSILON);
      const t = target.reshape(p.shape).toFloat();
      return t
        .mul(p.log())
        .add(tf.scalar(1).sub(t).mul(tf.scalar(1).sub(p).log()))
        .mean()
        .neg() as tf.Scalar;
    }
    if (key === "categoricalcrossentropy" || key === "sparsecategoricalcrossentropy") {
      const p = output.div(output.sum(-1, true));
      const logP = p.clipByValue(EPSILON, 1 - EPSILON).log();
      const depth = output.shape[output.shape.length - 1] ?? 1;
      const oneHot =
        target.rank === 1 ? tf.oneHot(target.toInt(), depth).toFloat() : target.toFloat();
      return oneHot.mul(logP).sum(-1).mean().neg() as tf.Scalar;
    }
    if (key === "meansquarederror" || key === "mse") {
      return output.sub(target.reshape(output.shape)).square().mean<tf.Scalar>();
    }
    if (key === "meanabsoluteerror" || key === "mae") {
      return output.sub(target.reshape(output.shape)).abs().mean<tf.Scalar>();
    }
    throw new Error(`unsupported loss '${name}'`);
  });
}

/** Predicted classes: one sigmoid unit thresholded at 0.5, else the argmax. */
export function predictedClasses(output: tf.Tensor): tf.Tensor {
  return tf.tidy(() =>
    output.rank === 2 && output.shape[1] === 1
      ? output.reshape([-1]).greaterEqual(0.5).toInt()
      : output.argMax(-1).toInt(),
  );
}

/** True classes of targets for `output` (same rule as `predictedClasses`; indices as they are). */
export function trueClasses(output: tf.Tensor, target: tf.Tensor): tf.Tensor {
  return tf.tidy(() =>
    output.rank === 2 && output.shape[1] === 1
      ? target.reshape([-1]).greaterEqual(0.5).toInt()
      : target.rank === 1
        ? target.toInt()
        : target.argMax(-1).toInt(),
  );
}

/** Correct predictions of `output` against `target` (see `classes`). */
export function correctPredictions(output: tf.Tensor, target: tf.Tensor): number {
  return tf.tidy(
    () => predictedClasses(output).equal(trueClasses(output, target)).sum().dataSync()[0] ?? 0,
  );
}

/** Samples `indices` of `data` as tensors: x of the sample shape, y (float or class index). */
export function batchTensors(
  data: Dataset,
  indices: ArrayLike<number>,
): { x: tf.Tensor; y: tf.Tensor | null } {
  const sample = data.sampleShape.reduce((a, b) => a * b, 1);
  const n = indices.length;
  const x = new Float32Array(n * sample);
  const yWidth = data.y === null ? 0 : data.y.length / data.size;
  const y = data.y === null ? null : new Float32Array(n * yWidth);
  for (let i = 0; i < n; i++) {
    const k = indices[i] ?? 0;
    x.set(data.x.subarray(k * sample, (k + 1) * sample), i * sample);
    if (y !== null && data.y !== null) y.set(data.y.subarray(k * yWidth, (k + 1) * yWidth), i * yWidth);
  }
  const xs = tf.tensor(x, [n, ...data.sampleShape], "float32");
  if (y === null) return { x: xs, y: null };
  const ys = data.numClasses !== undefined ? tf.tensor1d(y, "float32") : tf.tensor2d(y, [n, yWidth]);
  return { x: xs, y: ys };
}

export interface Metrics {
  loss: number;
  accuracy: number;
  samples: number;
}

/** One batch of one epoch. */
export interface Batch {
  epoch: number;
  index: number;
  indices: Uint32Array;
}

/** Trains a LayersModel on local data with the task's settings. */
export class LocalTrainer {
  readonly lossName: string;
  readonly batchSize: number;
  readonly epochs: number;
  readonly roundDuration: number;
  readonly optimizer: tf.Optimizer;
  private readonly random: Random;

  constructor(
    readonly model: tf.LayersModel,
    info: TrainingInformation,
    seed?: number,
  ) {
    const compile = info.modelCompileData;
    this.lossName = String(compile.loss ?? "categoricalCrossentropy");
    this.batchSize = Math.max(1, Math.floor(info.batchSize ?? 32));
    this.epochs = Math.max(1, Math.floor(info.epochs ?? 1));
    this.roundDuration = Math.max(1, Math.floor(info.roundDuration ?? 1));
    this.optimizer = makeOptimizer(String(compile.optimizer ?? "adam"), info.learningRate);
    this.random = new Random(seed);
  }

  /** Batches over shuffled data, `epochs` times (the task's by default). */
  *batches(data: Dataset, epochs: number = this.epochs): Generator<Batch> {
    for (let epoch = 0; epoch < epochs; epoch++) {
      const order = this.random.permutation(data.size);
      for (let start = 0, index = 0; start < data.size; start += this.batchSize, index++) {
        yield { epoch, index, indices: order.subarray(start, start + this.batchSize) };
      }
    }
  }

  /** Batches per epoch. */
  batchesPerEpoch(data: Dataset): number {
    return Math.ceil(data.size / this.batchSize);
  }

  /** One optimizer step on a batch. */
  step(data: Dataset, indices: ArrayLike<number>): Metrics {
    const { x, y } = batchTensors(data, indices);
    if (y === null) {
      x.dispose();
      throw new Error("training needs labelled data");
    }
    const variables = this.model.trainableWeights.map((w) => w.read() as tf.Variable);
    let output: tf.Tensor | null = null;
    try {
      const loss = this.optimizer.minimize(
        () => {
          const out = this.model.apply(x, { training: true }) as tf.Tensor;
          output = tf.keep(out);
          return lossValue(this.lossName, out, y);
        },
        true,
        variables,
      );
      const lossValueNumber = loss?.dataSync()[0] ?? NaN;
      loss?.dispose();
      const correct = output === null ? 0 : correctPredictions(output, y);
      return { loss: lossValueNumber, accuracy: correct / indices.length, samples: indices.length };
    } finally {
      tf.dispose([x, y]);
      if (output !== null) tf.dispose(output);
    }
  }

  /** Compute (and drop) the gradients of one sample: throws when the backend lacks a kernel. */
  probe(data: Dataset): void {
    const { x, y } = batchTensors(data, [0]);
    try {
      const variables = this.model.trainableWeights.map((w) => w.read() as tf.Variable);
      tf.tidy(() => {
        const { grads } = tf.variableGrads(
          () => lossValue(this.lossName, this.model.apply(x, { training: true }) as tf.Tensor, y as tf.Tensor),
          variables,
        );
        tf.dispose(grads);
      });
    } finally {
      tf.dispose([x, y as tf.Tensor]);
    }
  }

  /** Loss and accuracy over a whole dataset, in inference mode. */
  evaluate(data: Dataset, batchSize = 512): Metrics {
    let totalLoss = 0;
    let correct = 0;
    for (let start = 0; start < data.size; start += batchSize) {
      const indices = Array.from({ length: Math.min(batchSize, data.size - start) }, (_, i) => start + i);
      const { x, y } = batchTensors(data, indices);
      try {
        if (y === null) throw new Error("evaluation needs labelled data");
        const output = this.model.predict(x) as tf.Tensor;
        const loss = lossValue(this.lossName, output, y);
        totalLoss += (loss.dataSync()[0] ?? NaN) * indices.length;
        correct += correctPredictions(output, y);
        tf.dispose([output, loss]);
      } finally {
        tf.dispose([x, y as tf.Tensor]);
      }
    }
    const n = Math.max(1, data.size);
    return { loss: totalLoss / n, accuracy: correct / n, samples: data.size };
  }
}
