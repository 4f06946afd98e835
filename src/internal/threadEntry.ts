/**
 * The entry module of every thread of a threaded context: load the module that holds the runner, then serve it on
 * `parentPort` until told to exit. This is the thread's main, so it runs its Effect itself.
 *
 * @internal
 */
import { Effect } from "effect"
import { parentPort, workerData } from "node:worker_threads"
import type { ThreadData } from "./threadProtocol.js"
import { isRunner, type Port, serve } from "./threadRunner.js"

const data = workerData as ThreadData
const port = parentPort as unknown as Port & { close: () => void }

const main = Effect.gen(function* () {
  const loaded = yield* Effect.either(Effect.tryPromise(() => import(data.module) as Promise<Record<string, unknown>>))
  if (loaded._tag === "Left") {
    const cause = loaded.left.cause
    port.postMessage({
      _tag: "EnterFailed",
      context: undefined,
      detail: `cannot load ${data.module}: ${cause instanceof Error ? cause.message : String(cause)}`
    })
    return
  }
  const runner = loaded.right[data.export]
  if (!isRunner(runner)) {
    port.postMessage({
      _tag: "EnterFailed",
      context: undefined,
      detail:
        `${data.module} does not export a ThreadedContext.runner as "${data.export}" ` +
        `(its exports: ${Object.keys(loaded.right).join(", ") || "none"})`
    })
    return
  }
  yield* serve(runner, port, data)
})

Effect.runFork(
  main.pipe(
    // Let the thread end by itself once it has said its last word: the main thread terminates it otherwise
    Effect.ensuring(Effect.sync(() => port.close()))
  )
)
