/**
 * For the benchmark only: turn on the wasm backend's own multithreading (the threaded SIMD build, XNNPACK running each
 * op on `threads` pthreads) in Node, where TensorFlow.js 4.22 refuses it. Call before the backend initialises.
 *
 * What stands in the way, and how this gets round it:
 * - `WASM_HAS_MULTITHREAD_SUPPORT` is false whenever `IS_NODE` (tfjs issue #3830): set the flag to true;
 * - the pthread worker script and the module's main script are handed over as `blob:` URLs, which Node's `Worker`
 *   refuses (ERR_WORKER_PATH) and its `importScripts` shim cannot read: record the Blobs' text as they are made and
 *   write them to files (the main script needs the bundler's `require$$N` and `commonjsGlobal` names defined);
 * - the C side caps the pool at `emscripten_num_logical_cores() / 2`, which is `os.cpus().length / 2`: 1 on a 2-core
 *   machine, whatever `setThreadsCount` asks: report twice the cores while it initialises.
 *
 * It patches globals of the thread it runs in (Blob, URL.createObjectURL, os.cpus) until the backend is ready.
 */
import * as tf from "@tensorflow/tfjs-core"
import * as wasm from "@tensorflow/tfjs-backend-wasm"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as os from "node:os"
import * as path from "node:path"

const prelude =
  "var require$$0=require('fs'),require$$1=require('path'),require$$3=require('perf_hooks'),require$$4=require('os')," +
  "commonjsGlobal=globalThis;"

/** Make the wasm backend initialise its threaded build with `threads` pthreads; returns a function that undoes it. */
export const enableWasmThreads = (threads: number): (() => void) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tfjs-wasm-threads-"))
  const OriginalBlob = globalThis.Blob
  const originalCreateObjectURL = URL.createObjectURL
  const nodeOs = createRequire(import.meta.url)("node:os") as { cpus: () => Array<unknown> }
  const originalCpus = nodeOs.cpus
  const texts = new WeakMap<Blob, string>()
  let mainScript: string | undefined

  class RecordingBlob extends OriginalBlob {
    constructor(parts: Array<unknown>, options?: { readonly type?: string }) {
      super(parts as Array<string>, options)
      const text = parts.map(String).join("")
      texts.set(this, text)
      if (text.startsWith("var WasmBackendModuleThreadedSimd")) {
        mainScript = path.join(dir, "main.cjs")
        fs.writeFileSync(mainScript, prelude + text)
      }
    }
  }
  globalThis.Blob = RecordingBlob as typeof Blob
  URL.createObjectURL = (blob: Blob) => {
    const text = texts.get(blob)
    if (text === undefined || mainScript === undefined) return originalCreateObjectURL(blob)
    const patched = text.replace(
      /if\(typeof e\.data\.urlOrBlob=="string"\)\{importScripts\(e\.data\.urlOrBlob\)\}/,
      `if(true){importScripts(${JSON.stringify(mainScript)})}`
    )
    if (patched === text) throw new Error("the tfjs pthread worker script changed shape: cannot enable wasm threads")
    const file = path.join(dir, "worker.cjs")
    fs.writeFileSync(file, patched)
    return file
  }
  nodeOs.cpus = () => Array.from({ length: 2 * threads }, (_, i) => originalCpus()[i % originalCpus().length])
  tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", true)
  wasm.setThreadsCount(threads)
  return () => {
    globalThis.Blob = OriginalBlob
    URL.createObjectURL = originalCreateObjectURL
    nodeOs.cpus = originalCpus
  }
}

/** The number of threads the wasm backend really runs (1 when the threaded build is not in use). */
export const wasmThreadsCount = (): number => wasm.getThreadsCount()
