/**
 * Threaded contexts: a context whose service lives in a pool of worker threads, so that heavy synchronous work (model
 * inference, image decoding) runs off the worker's event loop and on every core.
 *
 * Two modules make one:
 *
 * - the **thread module** runs in each thread. Its default export is a {@link runner}: the requests it serves (tagged
 *   `Schema.TaggedRequest` classes, which carry their success and failure schemas), the contexts each thread enters
 *   (ordinary `WorkerContext`s: each thread loads its own replica), and a handler per request;
 * - the **main thread** registers {@link make}'s context with its deployment. Its service is a {@link Pool}: `execute`
 *   sends a request to a free thread (Schema-encoded, {@link Bytes} moved rather than copied) and returns its typed
 *   result.
 *
 * The pool is part of the worker's lifecycle like any context: at start-up every thread enters its contexts in
 * parallel and the start-up report lists each thread's contexts (as `<key>/<thread>/<context>`) with their timings;
 * a thread that fails to enter rolls back the whole start-up; a thread that dies while serving fails its in-flight
 * call with `ThreadFailed` (`died`) and is replaced; interrupting a call (client gone, timeout) interrupts it in its
 * thread; shutdown exits every thread's contexts, then ends the threads.
 *
 * @example
 * ```ts
 * // protocol.ts: the requests, imported by both sides
 * export class Embed extends Schema.TaggedRequest<Embed>()("Embed", {
 *   payload: { text: Schema.String },
 *   success: Schema.Array(Schema.Number),
 *   failure: Schema.Never
 * }) {}
 *
 * // thread.ts: what each thread runs
 * export default ThreadedContext.runner(Embed, {
 *   contexts: [ModelLive],
 *   handlers: { Embed: ({ text }) => Effect.map(Model, (model) => model.embed(text)) }
 * })
 *
 * // app.ts: the main thread
 * class Embedder extends Context.Tag("Embedder")<Embedder, ThreadedContext.Pool<Embed>>() {}
 * const EmbedderLive = ThreadedContext.make(Embedder, { module: new URL("./thread.js", import.meta.url) })
 * const embed = Remote.make("embed", { payload, success, concurrency: EmbedderLive }, ({ text }) =>
 *   Effect.flatMap(Embedder, (pool) => pool.execute(new Embed({ text }))))
 * ```
 *
 * @since 0.1.0
 */
import * as Transferable from "@effect/platform/Transferable"
import type { Context } from "effect"
import { Duration, Effect, Either, FiberRef, Layer, Option, ParseResult, Schema } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { wire } from "./Deployment.js"
import type * as Remote from "./Remote.js"
import * as WorkerContext from "./WorkerContext.js"
import { type ContextTimeout, ThreadFailed } from "./WorkerError.js"
import { exitKindOf, type PoolStats, ThreadPool } from "./internal/threadPool.js"
import { currentThread, isDetached, makeRunner, type RunnerDef, type ThreadInfo } from "./internal/threadRunner.js"

/** What a thread knows about itself: see {@link thread}. */
export type { ThreadInfo }

/**
 * In a thread of a threaded context: which thread this is (`thread`, from 1; a replacement gets the next number),
 * how many threads the pool runs, the threaded context's key, and the `data` given to {@link make}. Dies when read
 * outside such a thread.
 *
 * @example
 * ```ts
 * const ModelLive = WorkerContext.make(Model, {
 *   enter: Effect.flatMap(ThreadedContext.thread, ({ thread }) => loadModel({ replica: thread }))
 * })
 * ```
 */
export const thread: Effect.Effect<ThreadInfo> = Effect.suspend(() => {
  const info = currentThread()
  return info === undefined
    ? Effect.dieMessage("ThreadedContext.thread was read outside a thread of a threaded context")
    : Effect.succeed(info)
})

/** A pool's counters: threads alive and busy, calls waiting and answered, time in handlers and round trips. */
export type { PoolStats }

/** The service of a threaded context, on the main thread: sends requests to its threads. */
export interface Pool<Req extends Schema.TaggedRequest.All> {
  /** The threaded context's key. */
  readonly key: string
  /** The number of threads (and of calls that run at once). */
  readonly threads: number
  /**
   * Run `request` in a free thread (waiting for one when all are busy) and return its result, decoded with the
   * request's success and failure schemas. Fails with `ThreadFailed` when the thread dies first (`died`), when no
   * thread is alive (`unavailable`), or when the pool is stopping (`stopped`). Interrupting the caller interrupts the
   * request in its thread. {@link Bytes} fields of the request are moved to the thread: afterwards the caller's
   * `Uint8Array` is empty.
   */
  readonly execute: <R extends Req>(
    request: R
  ) => Effect.Effect<Schema.WithResult.Success<R>, Schema.WithResult.Failure<R> | ThreadFailed>
  /** The pool's counters now. */
  readonly stats: Effect.Effect<PoolStats>
}

/**
 * A threaded context's layer. It is a `WorkerContext` (register it with a deployment) and a
 * `Remote.ConcurrencySource`: `Remote.make(..., { concurrency: TheContextLive })` admits one call per thread.
 */
export interface ThreadedContext<in out I>
  extends WorkerContext.WorkerContext<I, ThreadFailed | ContextTimeout>, Remote.ConcurrencySource {
  /** The number of threads, resolved (and fixed) the first time it is asked for: 1 when the setting is invalid. */
  readonly threads: () => number
}

/** Options of {@link make}. */
export interface Options {
  /**
   * The thread module: a file URL (`new URL("./thread.js", import.meta.url)`) or a path. A `.js` that does not exist
   * beside an existing `.ts` loads the `.ts` (the sources run through tsx, the build through node).
   */
  readonly module: URL | string
  /** The export of the module that holds the {@link runner}. Default `default`. */
  readonly export?: string | undefined
  /** How many threads: a number, or a function read once, at worker start. Default {@link defaultThreads}. */
  readonly threads?: number | (() => number) | undefined
  /** Given to every thread (structured-cloned), as the `data` of `ThreadedContext.thread`. */
  readonly data?: unknown
  /**
   * Node options for the threads, besides the parent process's (e.g. `["--enable-source-maps"]`). V8 options (such as
   * `--max-old-space-size`) apply to the whole process, threads included: `Worker` refuses them here, and the parent's
   * own are left out of the threads' options for that reason.
   */
  readonly execArgv?: ReadonlyArray<string> | undefined
  /** Fail start-up (and roll back every thread) when entering takes longer. No default. */
  readonly enterTimeout?: Duration.DurationInput | undefined
  /**
   * Give up waiting for the threads' contexts to exit after this long, and end the threads (also when start-up is
   * rolled back while a thread is still entering). Default 30 seconds.
   */
  readonly exitTimeout?: Duration.DurationInput | undefined
  /** First wait before retrying a replacement thread that failed to enter (doubles up to 30 s). Default 1 second. */
  readonly replaceBackoff?: Duration.DurationInput | undefined
}

const parseThreads = (value: unknown, what: string): number => {
  const n = typeof value === "string" && /^\s*\d+\s*$/.test(value) ? Number(value) : value
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1) {
    throw new RangeError(`${what} must be a positive integer, got ${JSON.stringify(value)}`)
  }
  return n
}

/**
 * The default thread count: the `WORKER_THREADS` environment variable when set (a positive integer; anything else
 * fails start-up naming it), else the number of cores (`os.availableParallelism()`). Read synchronously, once per
 * threaded context, because the worker sizes each remote's admission from it before any Effect runs.
 */
export const defaultThreads = (): number => threadsFromEnv(() => os.availableParallelism())

/**
 * `WORKER_THREADS` when set, else `fallback()`: for defaults that depend on more than the cores (see
 * `Tfjs.defaultThreads`).
 */
export const threadsFromEnv = (fallback: () => number): number => {
  const env = process.env["WORKER_THREADS"]
  return env === undefined || env.trim() === "" ? fallback() : parseThreads(env, "WORKER_THREADS")
}

const resolveModule = (module: URL | string): string => {
  const url =
    module instanceof URL ? module : module.startsWith("file:") ? new URL(module) : pathToFileURL(path.resolve(module))
  const file = fileURLToPath(url)
  if (fs.existsSync(file)) return url.href
  const ts = file.replace(/\.js$/, ".ts").replace(/\.mjs$/, ".mts")
  if (ts !== file && fs.existsSync(ts)) return pathToFileURL(ts).href
  throw new Error(`the thread module ${file} does not exist`)
}

const pools = new WeakMap<object, ThreadPool>()

/** The registry `WorkerContext.get` reads outside any worker: a FiberRef's initial value (not in its public type). */
const noWorker = (WorkerContext.currentRegistry as unknown as { readonly initial: WorkerContext.Registry }).initial

/**
 * Make a threaded context: at start-up it starts its threads, each of which enters the contexts of the module's
 * {@link runner}, all in parallel; its service is a {@link Pool}. Fails start-up with `ThreadFailed` (`start`) when
 * a thread cannot start or enter (after rolling every thread back).
 *
 * @example
 * ```ts
 * class VisionThreads extends Context.Tag("VisionThreads")<VisionThreads, ThreadedContext.Pool<VisionRequest>>() {}
 * const VisionThreadsLive = ThreadedContext.make(VisionThreads, {
 *   module: new URL("./thread.js", import.meta.url),
 *   threads: Tfjs.defaultThreads
 * })
 * ```
 */
export const make = <I, Req extends Schema.TaggedRequest.All>(
  tag: Context.Tag<I, Pool<Req>>,
  options: Options
): ThreadedContext<I> => {
  const key = tag.key
  let resolved: Either.Either<number, string> | undefined
  const resolveThreads = (): Either.Either<number, string> =>
    (resolved ??= Either.try({
      try: () =>
        parseThreads(
          typeof options.threads === "function" ? options.threads() : (options.threads ?? defaultThreads()),
          `the thread count of "${key}"`
        ),
      catch: (u) => (u instanceof Error ? u.message : String(u))
    }))
  const threads = () => Either.getOrElse(resolveThreads(), () => 1)
  const startFailed = (detail: string) => new ThreadFailed({ reason: "start", context: key, detail })

  const context = WorkerContext.make(tag, {
    enter: Effect.gen(function* () {
      const count = resolveThreads()
      if (Either.isLeft(count)) return yield* startFailed(count.left)
      const module = yield* Effect.try({
        try: () => resolveModule(options.module),
        catch: (u) => startFailed(u instanceof Error ? u.message : String(u))
      })
      const registry = yield* FiberRef.get(WorkerContext.currentRegistry)
      const pool = yield* ThreadPool.make({
        key,
        module,
        export: options.export ?? "default",
        threads: count.right,
        data: options.data,
        execArgv: options.execArgv ?? [],
        // Outside a worker (a layer built by hand) there is no report to mirror the threads' contexts into
        registry: registry === noWorker ? undefined : registry,
        replaceBackoff: Duration.decode(options.replaceBackoff ?? "1 second"),
        exitTimeoutMillis: Duration.toMillis(Duration.decode(options.exitTimeout ?? "30 seconds"))
      })
      const where = path.relative(process.cwd(), fileURLToPath(module))
      yield* WorkerContext.annotate(`${count.right} thread${count.right === 1 ? "" : "s"} running ${where}`)
      yield* pool.start
      const service: Pool<Req> = {
        key,
        threads: count.right,
        execute: (request) => pool.execute(request as any) as any,
        stats: Effect.sync(() => pool.stats)
      }
      pools.set(service, pool)
      return service
    }),
    exit: (service, exit) => {
      const pool = pools.get(service)
      if (pool === undefined) return Effect.void
      // Rolling back when the worker's start-up failed (its registry is still starting), else a shutdown
      const rollback =
        pool.config.registry === undefined ? exit._tag === "Failure" : pool.config.registry.phase === "starting"
      return pool.stop(exitKindOf(exit), rollback)
    },
    enterTimeout: options.enterTimeout,
    exitTimeout: options.exitTimeout
  })
  return Object.assign(context, { threads, concurrency: threads }) as ThreadedContext<I>
}

/** Whether a layer was made by {@link make}. */
export const isThreadedContext = (u: unknown): u is ThreadedContext<unknown> =>
  WorkerContext.isWorkerContext(u) && typeof (u as { threads?: unknown }).threads === "function"

// ---------------------------------------------------------------------------------------------------------------
// The thread side
// ---------------------------------------------------------------------------------------------------------------

/**
 * The handler of each request of `Req`, by tag: an Effect of the request's success and failure that may use the
 * contexts `R` (for a runner: the ones it registers).
 */
export type Handlers<Req extends Schema.TaggedRequest.All, R = any> = {
  readonly [K in Req["_tag"]]: (
    request: Extract<Req, { readonly _tag: K }>
  ) => Effect.Effect<
    Schema.WithResult.Success<Extract<Req, { readonly _tag: K }>>,
    Schema.WithResult.Failure<Extract<Req, { readonly _tag: K }>>,
    R
  >
}
type LayerOut<L> = L extends Layer.Layer<infer A, any, any> ? A : never
type LayerIn<L> = L extends Layer.Layer<any, any, infer R> ? R : never

/** Fails type-checking, naming the missing tags, when a handler or a context needs a context no one registered. */
type Check<Provided, Required> = [Exclude<Required, Provided>] extends [never]
  ? unknown
  : { readonly "no context of this runner provides": Exclude<Required, Provided> }

const RunnerTypeId: unique symbol = Symbol.for("effect-deployments/ThreadedContext/RunnerTypes")

/** What a thread module exports (by default as `default`): made by {@link runner}. */
export interface Runner<in out Req extends Schema.TaggedRequest.All> extends RunnerDef {
  readonly [RunnerTypeId]: (_: Req) => Req
}

/** Options of {@link runner}. */
export interface RunnerOptions<
  Req extends Schema.TaggedRequest.All,
  Contexts extends ReadonlyArray<Layer.Layer<any, any, any>>
> {
  /** The contexts each thread enters at start-up (independent ones in parallel, by `dependsOn`). */
  readonly contexts: Contexts
  /** One handler per request tag; each may use the contexts above. */
  readonly handlers: Handlers<Req, LayerOut<Contexts[number]>>
}

/**
 * What a thread module exports: the requests its threads serve, the contexts each thread enters, and a handler per
 * request. It is a type error when a handler (or a context) needs a context that is not in `contexts` (the handler's
 * Effect is then not assignable: its requirement is not among the registered ones).
 *
 * @example
 * ```ts
 * export default ThreadedContext.runner(Schema.Union(Detect, Pose), {
 *   contexts: [Tfjs.backend, CenternetLive, MovenetLive],
 *   handlers: {
 *     Detect: ({ image }) => Effect.flatMap(Vision.decodeImage(image), (rgb) =>
 *       Effect.flatMap(Centernet, (model) => Vision.detect(model, rgb))),
 *     Pose: ({ image }) => ...
 *   }
 * })
 * ```
 */
export const runner = <
  Req extends Schema.TaggedRequest.All,
  I,
  const Contexts extends ReadonlyArray<Layer.Layer<any, any, any>>
>(
  requests: Schema.Schema<Req, I, never>,
  options: RunnerOptions<Req, Contexts & Check<LayerOut<Contexts[number]>, LayerIn<Contexts[number]>>>
): Runner<Req> => {
  const wired = wire("thread", options.contexts)
  return Object.assign(
    makeRunner({
      requests,
      layer: wired.layer as Layer.Layer<any, any, never>,
      contexts: wired.contexts,
      handlers: options.handlers as unknown as RunnerDef["handlers"]
    }),
    { [RunnerTypeId]: (_: Req) => _ }
  )
}

/**
 * A `Uint8Array` field that moves to the other thread instead of being copied: its buffer goes in the message's
 * transfer list, and the sender's array is empty afterwards. An array that is a view on part of a larger buffer (a
 * `subarray`, a pooled `Buffer`) is copied first and the copy is moved, so that the rest of that buffer stays usable.
 * Sending the same array twice fails the second call (a defect naming the problem): give each call its own copy.
 * Outside a thread message it is `Schema.Uint8ArrayFromSelf`.
 *
 * @example
 * ```ts
 * class Detect extends Schema.TaggedRequest<Detect>()("Detect", {
 *   payload: { image: ThreadedContext.Bytes },
 *   success: Schema.Array(Vision.Detection),
 *   failure: ImageInvalid
 * }) {}
 * ```
 */
export const Bytes: Schema.Schema<Uint8Array> = Schema.transformOrFail(
  Schema.Uint8ArrayFromSelf,
  Schema.Uint8ArrayFromSelf,
  {
    strict: true,
    decode: (bytes) => ParseResult.succeed(bytes),
    encode: (bytes, _, ast) =>
      Effect.flatMap(Effect.serviceOption(Transferable.Collector), (collector) => {
        if (Option.isNone(collector) || !(bytes.buffer instanceof ArrayBuffer)) return ParseResult.succeed(bytes)
        if (bytes.byteLength === 0) {
          // Empty: nothing worth moving. Detached (moved by an earlier call): say so, rather than send nothing
          return isDetached(bytes.buffer)
            ? ParseResult.fail(
                new ParseResult.Type(
                  ast,
                  bytes,
                  "these bytes were already moved to another thread by an earlier call: pass each call its own " +
                    "copy (bytes.slice())"
                )
              )
            : ParseResult.succeed(new Uint8Array(0))
        }
        const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
        const owned = whole ? bytes : bytes.slice()
        collector.value.unsafeAddAll([owned.buffer as ArrayBuffer])
        return ParseResult.succeed(owned)
      })
  }
).annotations({ identifier: "ThreadedContext.Bytes" })
