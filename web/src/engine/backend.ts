/**
 * TF.js backend selection. WebAssembly is the default: in a headless browser WebGL falls back to
 * software rendering (SwiftShader), which is several times slower than wasm or cpu; wasm's SIMD
 * kernels are the fastest of the three there (see bench/web_training.py). The .wasm binaries are
 * served by disco-server beside disco.js (no CDN at run time).
 */

import * as tf from "@tensorflow/tfjs";
import { setWasmPaths } from "@tensorflow/tfjs-backend-wasm";

import { installTrainingKernels } from "./kernels.js";

export type BackendName = "wasm" | "cpu" | "webgl";

let ready: Promise<BackendName> | null = null;

function wasmFiles(): Record<string, string> {
  const files: Record<string, string> = {};
  for (const [name, served] of Object.entries(__DISCO_WASM_FILES__)) {
    files[name] = new URL(served, import.meta.url).href;
  }
  return files;
}

/**
 * Select the backend: `name`, or when omitted the one already selected, else "wasm" (falling back
 * to "cpu" when WebAssembly is unavailable); resolves to the backend in use.
 */
export function initBackend(name?: BackendName): Promise<BackendName> {
  const previous = ready;
  if (previous !== null && name === undefined) return previous;
  const wanted = name ?? "wasm";
  ready = previous === null
    ? select(wanted)
    : previous.then(async (current) => (current === wanted ? current : select(wanted)));
  return ready;
}

async function select(name: BackendName): Promise<BackendName> {
  installTrainingKernels();
  if (name === "wasm") {
    setWasmPaths(wasmFiles());
    try {
      if (await tf.setBackend("wasm")) {
        await tf.ready();
        return "wasm";
      }
    } catch {
      // no WebAssembly here: use the cpu backend below
    }
    name = "cpu";
  }
  if (!(await tf.setBackend(name))) {
    throw new Error(`the TF.js backend ${name} is not available in this browser`);
  }
  await tf.ready();
  return name;
}

/** The backend in use (after `initBackend`). */
export function currentBackend(): string {
  return tf.getBackend();
}
