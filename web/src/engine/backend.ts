/**
 * TF.js backend selection. WebAssembly is the default: in a headless browser WebGL falls back to
 * software rendering (SwiftShader), which is several times slower than wasm or cpu; wasm's SIMD
 * kernels are the fastest of the three there (see bench/web_training.py). The .wasm binaries are
 * served by disco-server beside disco.js (no CDN at run time).
 */

import * as tf from "@tensorflow/tfjs";
import { setWasmPaths } from "@tensorflow/tfjs-backend-wasm";

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
 * Select the backend (default "wasm", falling back to "cpu" when WebAssembly is unavailable);
 * resolves to the backend in use. Later calls return the first call's choice unless `name`
 * differs, in which case the backend is switched.
 */
export function initBackend(name: BackendName = "wasm"): Promise<BackendName> {
  if (ready !== null) {
    return ready.then(async (current) => (current === name ? current : select(name)));
  }
  ready = select(name);
  return ready;
}

async function select(name: BackendName): Promise<BackendName> {
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
