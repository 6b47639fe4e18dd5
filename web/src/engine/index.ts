/**
 * The DISCO browser engine: `import { ... } from "<server>/app/disco.js"`.
 *
 * Lists tasks, loads their models, prepares local data (which never leaves the page), trains
 * (federated through the server, or decentralized among peers over WebRTC) and evaluates.
 * See docs/web-engine.md.
 */

import * as tf from "@tensorflow/tfjs";

export { tf };
export { initBackend, currentBackend } from "./backend.js";
export type { BackendName } from "./backend.js";
export { DiscoError, ServerError, DataError } from "./errors.js";
export { listTasks, getTask, taskStatus, loadModel, modelURL, notTrainableReason } from "./server.js";
export { readTabular, readImages, inputChannels } from "./data.js";
export { train } from "./run.js";
export { epsilon, noiseFor, clientPlan, plannedRounds } from "./accountant.js";
export type { ClientPlan } from "./accountant.js";
export { evaluate, predict, predictionsCSV } from "./evaluate.js";
export { modelWeights, setModelWeights } from "./weights.js";
export type { Weights, Tensor } from "./weights.js";
export { FederatedCommunicator } from "./federated.js";
export { SecureFederatedCommunicator } from "./secagg/communicator.js";
/** The building blocks of secure aggregation (fixed point, masks, Shamir, keys), for tests and tools. */
export * as secagg from "./secagg/index.js";
export { DecentralizedCommunicator } from "./decentralized/communicator.js";
export type { DecentralizedOptions, PeerConnectionInfo } from "./decentralized/communicator.js";
export type { Communicator, Exchange } from "./communicator.js";
export type * from "./types.js";

/** The engine's version (the disco package's). */
export const version: string = __DISCO_VERSION__;
