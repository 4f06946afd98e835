/**
 * The vision worker's thread module with the wasm backend's own multithreading on (see wasm-threads.ts): a pool
 * thread whose backend runs each op on `data.wasmThreads` pthreads. For `npm run bench:vision` only.
 */
import { Context, Effect } from "effect"
import { workerData } from "node:worker_threads"
import { ThreadedContext, WorkerContext } from "../src/thread.js"
import { Tfjs } from "../src/tfjs/index.js"
import { contexts, handlers } from "../examples/vision-worker/thread.js"
import { VisionRequest } from "../examples/vision-worker/protocol.js"
import { enableWasmThreads, wasmThreadsCount } from "./wasm-threads.js"

// Before the Backend context initialises wasm (when the runner enters); the patches stay for this thread's lifetime
enableWasmThreads((workerData as { data: { wasmThreads: number } }).data.wasmThreads)

class WasmThreads extends Context.Tag("WasmThreads")<WasmThreads, number>() {}

/** Notes in the report how many threads the wasm backend really runs. */
const WasmThreadsLive = WorkerContext.make(WasmThreads, {
  dependsOn: [Tfjs.Backend],
  enter: Effect.gen(function* () {
    const threads = wasmThreadsCount()
    yield* WorkerContext.annotate(`wasm backend threads: ${threads}`)
    return threads
  })
})

export default ThreadedContext.runner(VisionRequest, { contexts: [...contexts, WasmThreadsLive], handlers })
