/**
 * The Promise facade: `App` mirrors the reference's Python API for callers who don't write Effect.
 *
 * ```ts
 * const app = new App("llm")
 * @app.context("Qwen/Qwen3-0.6B", { maxLen: 512 })
 * class LLMEngine {
 *   constructor(readonly modelName: string, readonly opts: { maxLen?: number } = {}) {}
 *   async enter() { return this }
 *   async exit(error?: unknown) {}
 * }
 * export const generate = app.remote({ name: "generate", benchmarkDataset: [{ prompt: "Hello" }] },
 *   async ({ prompt }: { prompt: string }) => app.getContext(LLMEngine).complete(prompt))
 * ```
 *
 * It is backed by the same layers as the Effect API: each class becomes a `Context.Tag` and a `WorkerContext` layer,
 * each function a `Remote`, and `app.deployment` is an ordinary `Deployment`. Errors reach Promise callers as the
 * tagged error classes themselves (`instanceof ContextNotFound` works), never as a FiberFailure.
 *
 * @since 0.1.0
 */
import { Cause, Context, Effect, Exit, Layer, ManagedRuntime, Schema, Scope, Stream } from "effect"
import * as Deployment from "./Deployment.js"
import * as Remote from "./Remote.js"
import * as Worker from "./Worker.js"
import * as iterable from "./internal/asyncIterable.js"
import { activeRegistries } from "./internal/registry.js"
import * as WorkerContext from "./WorkerContext.js"
import { ContextNotFound, DeploymentInvalid, RemoteFailure, WorkerUnavailable } from "./WorkerError.js"

/** `ContextNotFound` under the name the reference's users look for. */
export const ContextNotFoundError = ContextNotFound
/** @see ContextNotFound */
export type ContextNotFoundError = ContextNotFound

/** What a context class may implement: `enter` (its result is what `getContext` returns), `exit` or async dispose. */
export interface ContextInstance {
  enter?(): unknown
  exit?(error?: unknown): unknown
  [Symbol.asyncDispose]?(): PromiseLike<void>
}

/** A class usable as a context: any class; its instances may implement {@link ContextInstance}. */
export type ContextClass = abstract new (...args: any) => object

/** What `getContext(Cls)` returns: the resolved value of `enter()`, or the instance when it has no `enter`. */
export type Entered<C extends ContextClass> =
  InstanceType<C> extends { enter(): infer R } ? Awaited<R> : InstanceType<C>

/** Options of {@link App.remote}, named after the reference's decorator arguments. */
export interface RemoteOptions<P> {
  /**
   * The remote's name (the URL path: `POST /remote/<name>`). Required, unlike the reference, which takes the Python
   * function's name: a JS arrow function passed inline has none, and a name that changes with a refactor would break
   * every caller.
   */
  readonly name: string
  /** A Schema for the payload: validation, clear 400s, and positional `args` binding by field order. */
  readonly payload?: Schema.Struct<any> | undefined
  /** Sample payloads for the benchmark (exactly one remote of an app declares a benchmark). */
  readonly benchmarkDataset?: ReadonlyArray<P> | undefined
  /** Makes one benchmark payload per call, instead of a dataset. */
  readonly benchmarkGenerator?: (() => P | Promise<P>) | undefined
  /** Timed benchmark rounds. Default 10. */
  readonly benchmarkRuns?: number | undefined
  /** Calls that run at once. Default 1. */
  readonly concurrency?: number | undefined
  /** Calls that may wait. Default 1000. */
  readonly maxQueue?: number | undefined
}

/** A registered remote: call it to run it on the app's in-process worker. */
export interface RemoteFunction<P, R> {
  (payload: P): Promise<R>
  readonly remote: Remote.Any
}

/** A registered stream remote (an `async function*`): call it for an `AsyncIterable` of its values, run in process. */
export interface StreamFunction<P, Y> {
  (payload: P): AsyncIterable<Y>
  readonly remote: Remote.AnyStream
}

const isAsyncGeneratorFunction = (f: unknown): boolean =>
  Object.prototype.toString.call(f) === "[object AsyncGeneratorFunction]"

const isStream = (u: unknown): u is Stream.Stream<unknown, unknown> =>
  typeof u === "object" && u !== null && Stream.StreamTypeId in u

const isAsyncIterable = (u: unknown): boolean =>
  typeof u === "object" && u !== null && typeof (u as Record<symbol, unknown>)[Symbol.asyncIterator] === "function"

interface Entry {
  readonly instance: ContextInstance
  readonly value: unknown
}

/** The direct form `app.context(Cls, ...args)`: a `class`, or a constructor function with a lifecycle method. */
const isContextClass = (u: unknown): u is ContextClass => {
  if (typeof u !== "function" || u.prototype === undefined) return false
  if (/^class[\s{]/.test(Function.prototype.toString.call(u))) return true
  const p = u.prototype as Record<string | symbol, unknown>
  return typeof p.enter === "function" || typeof p.exit === "function" || typeof p[Symbol.asyncDispose] === "function"
}

const squash = (cause: Cause.Cause<unknown>): unknown => {
  const error = Cause.squash(cause)
  // A Promise caller gets the error its remote threw, not our wrapper around it.
  return error instanceof RemoteFailure ? error.error : error
}

/** The Promise facade. See the module documentation. */
export class App {
  private readonly classes = new Map<
    ContextClass,
    { readonly tag: Context.Tag<any, Entry>; readonly layer: Layer.Layer<any, any, never> }
  >()
  private readonly remotes: Array<Remote.Definition> = []
  private built: Deployment.Deployment | undefined
  private readonly runtime = ManagedRuntime.make(Layer.empty)
  private running: { readonly worker: Worker.Worker; readonly scope: Scope.CloseableScope } | undefined

  constructor(
    readonly name: string,
    readonly options: Worker.Options = {}
  ) {}

  /**
   * Register a context class with its constructor arguments: as a TS 5 class decorator, `@app.context(...args)`, or
   * directly, `app.context(Cls, ...args)`. The arguments are checked against the constructor.
   */
  context<C extends ContextClass>(cls: C, ...args: ConstructorParameters<C>): C
  context<A extends Array<unknown>>(
    // A class as the first argument means the direct form: its arguments must match the constructor, not fall here.
    ...args: A extends [ContextClass, ...Array<unknown>] ? never : A
  ): <C extends abstract new (...args: A) => object>(cls: C, context: ClassDecoratorContext<C>) => void
  context(...all: Array<unknown>): unknown {
    if (isContextClass(all[0])) {
      const [cls, ...args] = all as [ContextClass, ...Array<unknown>]
      this.register(cls, args)
      return cls
    }
    return (cls: ContextClass) => {
      this.register(cls, all)
    }
  }

  private register(cls: ContextClass, args: ReadonlyArray<unknown>): void {
    this.assertOpen(`context ${cls.name}`)
    if (this.classes.has(cls))
      throw this.invalid("duplicate-context", [cls.name], `Context class ${cls.name} is registered twice`)
    for (const other of this.classes.keys()) {
      if (other.name === cls.name) {
        throw this.invalid(
          "duplicate-context",
          [cls.name],
          `Two context classes are named ${cls.name}; give one another name`
        )
      }
    }
    const tag = Context.GenericTag<Entry>(cls.name)
    const release = async (instance: ContextInstance, error: unknown) => {
      if (typeof instance.exit === "function") await instance.exit(error)
      else if (typeof instance[Symbol.asyncDispose] === "function") await instance[Symbol.asyncDispose]!()
    }
    const layer = WorkerContext.make(tag, {
      enter: Effect.suspend(() => {
        const entering = (async () => {
          const instance = Reflect.construct(cls, args) as ContextInstance
          const value = typeof instance.enter === "function" ? await instance.enter() : instance
          return { instance, value }
        })()
        return Effect.tryPromise({ try: () => entering, catch: (error) => error }).pipe(
          // A promise cannot be cancelled: when start-up is abandoned (a sibling failed, a timeout, a signal), wait
          // for this enter to finish and exit what it allocated, so that nothing is left behind.
          Effect.onInterrupt(() =>
            Effect.promise(() =>
              entering.then(
                ({ instance }) => release(instance, new Error(`${cls.name} entered after start-up was abandoned`)),
                () => undefined
              )
            )
          )
        )
      }),
      exit: ({ instance }, exit) =>
        Effect.tryPromise({
          try: () =>
            release(
              instance,
              Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause) ? Cause.squash(exit.cause) : undefined
            ),
          catch: (error) => error
        })
    })
    this.classes.set(cls, { tag, layer: layer as unknown as Layer.Layer<any, any, never> })
  }

  /**
   * Register a remote function. Its payload is one object (the reference's keyword arguments). What it throws reaches
   * the caller as its error (`{"err": ...}` on the wire). Call the result to run it on the started app.
   *
   * An `async function*` registers a stream remote: each value it yields is sent as it comes (over HTTP, one NDJSON
   * line), and calling the result gives an `AsyncIterable`. Leaving the caller's loop early (or a client that
   * disconnects) calls the generator's `return()`, so its `finally` blocks run.
   *
   * @example
   * ```ts
   * export const count = app.remote({ name: "count" }, async function* ({ to }: { to: number }) {
   *   for (let i = 1; i <= to; i++) yield i
   * })
   * for await (const n of count({ to: 3 })) console.log(n)
   * ```
   */
  remote<P extends object, Y>(
    options: RemoteOptions<NoInfer<P>>,
    fn: (payload: P) => AsyncGenerator<Y, unknown, undefined>
  ): StreamFunction<P, Y>
  remote<P extends object, R>(
    options: RemoteOptions<NoInfer<P>>,
    fn: (payload: P) => R | Promise<R>
  ): RemoteFunction<P, Awaited<R>>
  remote(
    options: RemoteOptions<any>,
    fn: (payload: any) => unknown
  ): RemoteFunction<any, unknown> | StreamFunction<any, unknown> {
    this.assertOpen("remote")
    const name = options.name
    const hasBenchmark = options.benchmarkDataset !== undefined || options.benchmarkGenerator !== undefined
    const generator = options.benchmarkGenerator
    const shared = {
      // Without a schema the payload is any object of keyword arguments (a struct with no fields and a string index).
      payload:
        options.payload ??
        (Schema.Struct(
          {},
          Schema.Record({ key: Schema.String, value: Schema.Unknown })
        ) as unknown as Schema.Struct<any>),
      error: Schema.Unknown,
      concurrency: options.concurrency,
      maxQueue: options.maxQueue,
      benchmark: hasBenchmark
        ? {
            dataset: options.benchmarkDataset as ReadonlyArray<any> | undefined,
            generator: generator === undefined ? undefined : () => Effect.promise(async () => generator() as any),
            runs: options.benchmarkRuns
          }
        : undefined
    }
    if (isAsyncGeneratorFunction(fn)) {
      const remote = Remote.stream(name, { ...shared, element: Schema.Unknown }, (payload) =>
        // The generator starts when the stream runs; closing the stream calls its `return()`.
        Stream.fromAsyncIterable(
          { [Symbol.asyncIterator]: () => (fn(payload) as AsyncGenerator<unknown>)[Symbol.asyncIterator]() },
          (error) => error
        )
      )
      this.remotes.push(remote)
      const call = (payload: unknown) =>
        iterable.make(Stream.unwrap(Effect.suspend(() => this.invokeEffect(name, payload))) as Stream.Stream<unknown>)
      return Object.assign(call, { remote })
    }
    const remote = Remote.make(name, { ...shared, success: Schema.Unknown }, (payload) =>
      Effect.tryPromise({ try: async () => fn(payload), catch: (error) => error }).pipe(
        Effect.filterOrDieMessage(
          (result) => !isAsyncIterable(result),
          `Remote "${name}" returned an async iterable: register an \`async function*\` to stream its values`
        )
      )
    )
    this.remotes.push(remote)
    const call = (payload: unknown) => this.invoke(name, payload)
    return Object.assign(call, { remote })
  }

  /**
   * The entered value of a context class (the reference's `get_context`). Synchronous. Throws `ContextNotFound`:
   * `not-registered` when the class was never registered with this app, `not-entered` before start-up finished it
   * or after shutdown.
   */
  getContext<C extends ContextClass>(cls: C): Entered<C> {
    const entry = this.classes.get(cls)
    if (entry === undefined) throw new ContextNotFound({ key: cls.name, reason: "not-registered" })
    // The worker running this app's deployment, whoever started it: app.start, app.serve, or the CLI.
    const registry = this.built === undefined ? undefined : activeRegistries.get(this.built)
    if (registry === undefined) throw new ContextNotFound({ key: cls.name, reason: "not-entered", state: "pending" })
    const found = registry.lookup(entry.tag.key)
    if (Exit.isFailure(found)) throw Cause.squash(found.cause)
    return (found.value as Entry).value as Entered<C>
  }

  /** The app as an Effect `Deployment` (for `Worker.make`, `Worker.serve`). Registration closes once it is built. */
  get deployment(): Deployment.Deployment {
    if (this.built === undefined) {
      const contexts = [...this.classes.values()].map((c) => c.layer)
      this.built = Deployment.make(this.name, { contexts, remotes: this.remotes } as never) as Deployment.Deployment
    }
    return this.built
  }

  /** Start the worker in this process: enter every context (in parallel), run the benchmark, become ready. */
  async start(options: Worker.Options = {}): Promise<Worker.Report> {
    if (this.running !== undefined) throw new Error(`App "${this.name}" is already started`)
    const deployment = this.deployment
    const scope = await this.runtime.runPromise(Scope.make())
    const exit = await this.runtime.runPromiseExit(
      Scope.extend(Worker.start(deployment, { ...this.options, ...options }), scope)
    )
    if (Exit.isFailure(exit)) throw squash(exit.cause)
    this.running = { worker: exit.value, scope }
    const ready = await this.runtime.runPromiseExit(exit.value.awaitReady)
    if (Exit.isFailure(ready)) {
      this.running = undefined
      await this.runtime.runPromise(Scope.close(scope, Exit.void))
      throw squash(ready.cause)
    }
    return this.runtime.runPromise(exit.value.report)
  }

  /**
   * Serve the app over HTTP in this process (the reference's protocol; see `Worker.serve` for the options and the
   * environment they are read from). Resolves once the server listens and the worker is ready, with its URL; contexts
   * are entered, and `getContext` works, as after {@link start}. `stop()` drains and exits every context.
   *
   * Unless `handleSignals: false`, SIGTERM or SIGINT stops it as a worker process should: drain, exit every context,
   * then end the process (exit code 0, or 1 when an exit failed). A second signal does not skip the exits. An uncaught
   * exception or unhandled rejection (a remote's lost promise) stops it the same way, each context's `exit` told the
   * error, and the exit code is 1.
   */
  async serve(options: Worker.ServeOptions = {}): Promise<{ readonly url: string; readonly report: Worker.Report }> {
    if (this.running !== undefined) throw new Error(`App "${this.name}" is already started`)
    const deployment = this.deployment
    const scope = await this.runtime.runPromise(Scope.make())
    const served = await this.runtime.runPromiseExit(
      Scope.extend(Worker.serveEffect(deployment, { ...this.options, ...options, handleSignals: false }), scope)
    )
    if (Exit.isFailure(served)) {
      await this.runtime.runPromise(Scope.close(scope, Exit.void))
      throw squash(served.cause)
    }
    this.running = { worker: served.value.worker, scope }
    if (options.handleSignals !== false) this.removeSignalListeners = this.exitOnSignal()
    const ready = await this.runtime.runPromiseExit(served.value.worker.awaitReady)
    if (Exit.isFailure(ready)) {
      this.running = undefined
      await this.runtime.runPromise(Scope.close(scope, Exit.void))
      throw squash(ready.cause)
    }
    return { url: served.value.url, report: await this.runtime.runPromise(served.value.worker.report) }
  }

  /** Removes the listeners `serve` added; `stop` calls it, so a stopped app no longer ends the process on a signal. */
  private removeSignalListeners: (() => void) | undefined

  /**
   * The process's signal and fault handling while served: stop once, then end the process with the outcome. A signal
   * stops as `stop()` does (exit code 0, or 1 when an exit failed); an uncaught exception or unhandled rejection stops
   * the same way, each context's `exit` told the error, and the exit code is 1.
   */
  private exitOnSignal(): () => void {
    let stopping = false
    const stopOnce = (why: string, exit: Exit.Exit<unknown, unknown>, code: number) => {
      if (stopping) {
        process.stderr.write(`${why} again: still shutting down (contexts must exit first)\n`)
        return
      }
      stopping = true
      process.stderr.write(`${why}: draining, then exiting every context\n`)
      void this.stopWith(exit).then(
        () => process.exit(code),
        (error: unknown) => {
          process.stderr.write(`shutdown failed: ${error instanceof Error ? error.message : String(error)}\n`)
          process.exit(1)
        }
      )
    }
    const onSignal = (signal: NodeJS.Signals) => stopOnce(signal, Exit.void, 0)
    const onFault = (kind: string) => (error: unknown) => {
      process.stderr.write(`${kind}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`)
      stopOnce(kind, Exit.die(error), 1)
    }
    const onException = onFault("uncaughtException")
    const onRejection = onFault("unhandledRejection")
    process.on("SIGTERM", onSignal)
    process.on("SIGINT", onSignal)
    process.on("uncaughtException", onException)
    process.on("unhandledRejection", onRejection)
    return () => {
      process.off("SIGTERM", onSignal)
      process.off("SIGINT", onSignal)
      process.off("uncaughtException", onException)
      process.off("unhandledRejection", onRejection)
    }
  }

  /**
   * Call a remote by name with a payload object, on the started app. A stream remote's call resolves to an
   * `AsyncIterable` of its values (the call runs as it is iterated).
   */
  async invoke(name: string, payload: unknown): Promise<unknown> {
    const exit = await this.runtime.runPromiseExit(this.invokeEffect(name, payload))
    if (Exit.isFailure(exit)) throw squash(exit.cause)
    return isStream(exit.value) ? iterable.make(exit.value) : exit.value
  }

  private invokeEffect(name: string, payload: unknown): Effect.Effect<any, unknown> {
    if (this.running === undefined) {
      return Effect.fail(new WorkerUnavailable({ reason: "stopped", detail: `app "${this.name}" is not started` }))
    }
    return this.running.worker.invoke(name, payload)
  }

  /** The start-up report (context timings and states, benchmark). */
  async report(): Promise<Worker.Report | undefined> {
    return this.running === undefined ? undefined : this.runtime.runPromise(this.running.worker.report)
  }

  /** Drain in-flight calls and exit every context once. Throws `ShutdownFailed` listing the exits that failed. */
  async stop(): Promise<void> {
    return this.stopWith(Exit.void)
  }

  /** Stop, telling each context's `exit` how the app ended. */
  private async stopWith(ending: Exit.Exit<unknown, unknown>): Promise<void> {
    const running = this.running
    if (running === undefined) return
    // A signal during this stop has its own listener still (the one that called it, if any): only later ones go.
    const remove = this.removeSignalListeners
    this.removeSignalListeners = undefined
    const exit = await this.runtime.runPromiseExit(running.worker.shutdownWith(ending))
    await this.runtime.runPromise(Scope.close(running.scope, Exit.void))
    // Stopped: the app may start again (the contexts enter anew); until then getContext says "not-entered".
    this.running = undefined
    remove?.()
    if (Exit.isFailure(exit)) throw squash(exit.cause)
  }

  /** `await using app = ...` stops it. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop()
  }

  private assertOpen(what: string): void {
    if (this.built !== undefined)
      throw new Error(`App "${this.name}": cannot register ${what} after the deployment was built`)
  }

  private invalid(reason: DeploymentInvalid["reason"], names: Array<string>, detail: string): DeploymentInvalid {
    return new DeploymentInvalid({ reason, names, detail: `App "${this.name}": ${detail}` })
  }
}

/**
 * An Effect `Stream` as an `AsyncIterable`, for Promise callers of a stream remote (`for await (const x of ...)`).
 * Elements come as the stream produces them; a failure rejects `next()` with the error value itself (the remote's
 * declared error, `CallFailed`, ...), not a FiberFailure, after every element before it. Leaving the loop early
 * (`break`, `return`, a throw) closes the stream: its finalizers run, and over HTTP the request is aborted, which
 * interrupts the stream on the worker. Each `for await` runs the stream anew.
 *
 * @example
 * ```ts
 * const client = yield* WorkerClient.make(app, { url }) // the Effect client: a stream remote gives a Stream
 * for await (const token of App.asyncIterable(client.generate({ prompt: "Hi" }))) process.stdout.write(token)
 * ```
 */
export const asyncIterable: <A, E>(stream: Stream.Stream<A, E>) => AsyncIterable<A> = iterable.make
