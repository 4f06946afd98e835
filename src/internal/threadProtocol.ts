/**
 * The messages between a threaded context's pool (main thread) and each of its threads. Requests and results travel
 * Schema-encoded (the request class's own schema, `Schema.exitSchema(request)` for the result), with the buffers the
 * schemas collect (`ThreadedContext.Bytes`) in the transfer list.
 *
 * @internal
 */
import type { ContextRecord } from "./registry.js"

/** What a thread is started with (`workerData`). */
export interface ThreadData {
  /** File URL of the module that exports the runner. */
  readonly module: string
  /** The export that holds the runner (`default` unless told otherwise). */
  readonly export: string
  /** The threaded context's key. */
  readonly context: string
  /** This thread's number: 1..threads at start-up, then the next free number for each replacement. */
  readonly thread: number
  /** How many threads the pool runs. */
  readonly threads: number
  /** The `data` option of the threaded context, structured-cloned. */
  readonly data: unknown
}

/** How the contexts of a thread are told to end (the `exit` a context's `exit` receives). */
export type ExitKind =
  { readonly _tag: "Success" } | { readonly _tag: "Interrupt" } | { readonly _tag: "Failure"; readonly message: string }

/** Main thread -> thread. */
export type ToThread =
  | { readonly _tag: "Call"; readonly id: number; readonly request: unknown }
  | { readonly _tag: "Interrupt"; readonly id: number }
  /** Exit every context (`rollback`: start-up failed, so they are reported as rolled back), then end. */
  | { readonly _tag: "Exit"; readonly rollback: boolean; readonly exit: ExitKind }

/** Thread -> main thread. */
export type FromThread =
  /** The thread's contexts, each time one changes state (mirrored into the worker's report). */
  | { readonly _tag: "Records"; readonly records: ReadonlyArray<ContextRecord> }
  /** Every context entered: the thread takes calls from now. */
  | { readonly _tag: "Entered" }
  /** Entering failed (what had entered was already rolled back), or the module has no runner. */
  | { readonly _tag: "EnterFailed"; readonly context: string | undefined; readonly detail: string }
  /** The outcome of a call: its `Exit`, encoded with the request's exit schema. */
  | { readonly _tag: "Result"; readonly id: number; readonly exit: unknown; readonly handlerMicros: number }
  /** Every context exited after an `Exit`: the thread is about to end. */
  | { readonly _tag: "Exited" }
