/** Injected by build.mjs: tfjs-backend-wasm file name -> the hashed file served beside disco.js. */
declare const __DISCO_WASM_FILES__: Record<string, string>;
/** Injected by build.mjs: the engine's version (the Python package's). */
declare const __DISCO_VERSION__: string;
