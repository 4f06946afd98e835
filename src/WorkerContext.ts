/**
 * Contexts: resources whose lifecycle is the worker's (models, engines, tokenizers, connections).
 *
 * A context is a `Context.Tag` plus a scoped `Layer` built by {@link make}. The worker enters every context once at
 * start-up (independent ones in parallel), shares the services across every call, and exits them at shutdown (reverse
 * dependency order, independent ones in parallel).
 *
 * @since 0.1.0
 */
import { Clock, Context, Duration, Effect, Exit, FiberRef, Layer } from "effect"
import { latest, Registry } from "./internal/registry.js"
import type { ContextRecord, ContextState } from "./internal/registry.js"
import { ContextNotFound, ContextTimeout } from "./WorkerError.js"

/**
 * A context's line in the start-up report (`ContextRecord`), its lifecycle state (`ContextState`), and the registry
 * of a worker's contexts (`Registry`, as `worker.registry`: what `get` and the Promise facade's `getContext` read).
 */
export type { ContextRecord, ContextState }
export { Registry }

const TypeId: unique symbol = Symbol.for("effect-deployments/WorkerContext")

/** Any context tag. */
export type AnyTag = Context.Tag<any, any>

/**
 * A context's layer, with what the deployment needs to know about it at run time: its key and the keys it depends on.
 * It is an ordinary `Layer` and can be provided, merged and tested like one.
 */
export interface WorkerContext<in out I, out E = never, out R = never> extends Layer.Layer<I, E, R> {
  readonly [TypeId]: typeof TypeId
  readonly key: string
  readonly tag: Context.Tag<I, any>
  readonly dependsOn: ReadonlyArray<AnyTag>
}

/** Options of {@link make}. */
export interface Options<S, E, R, Deps extends ReadonlyArray<AnyTag>> {
  /** Produces the service that `yield* Tag` and {@link get} return. Runs once, at worker start-up. */
  readonly enter: Effect.Effect<S, E, R>
  /**
   * Releases the service. `exit` says how the worker is ending: success (normal shutdown), failure (a failed start-up
   * rolling back: the cause of the failure), or interruption (a signal). The analogue of `__aexit__(*exc)`.
   */
  readonly exit?: ((service: S, exit: Exit.Exit<unknown, unknown>) => Effect.Effect<unknown, unknown, R>) | undefined
  /** Fail start-up (and roll back) when `enter` takes longer; `enter` is interrupted. No default: models load slowly. */
  readonly enterTimeout?: Duration.DurationInput | undefined
  /** Give up on `exit` after this long, record it as timed out and go on exiting the others. Default 30 seconds. */
  readonly exitTimeout?: Duration.DurationInput | undefined
  /** The contexts this one needs; `enter` and `exit` may `yield*` their tags. Entered first, exited after. */
  readonly dependsOn?: Deps | undefined
}

type Undeclared<R, Deps extends ReadonlyArray<AnyTag>> = [Exclude<R, Context.Tag.Identifier<Deps[number]>>] extends [
  never
]
  ? unknown
  : { readonly "dependsOn is missing the tags of": Exclude<R, Context.Tag.Identifier<Deps[number]>> }

const noWorker = new Registry([], "running")

/** The registry that {@link get} reads. Each worker sets its own for the fibers it runs. */
export const currentRegistry: FiberRef.FiberRef<Registry> = FiberRef.unsafeMake(noWorker)

/** The registry a lookup reads: the fiber's worker's, else (outside any worker's fibers) the latest worker's. */
const lookupRegistry = Effect.map(FiberRef.get(currentRegistry), (registry) =>
  registry === noWorker ? (latest.registry ?? registry) : registry
)

/** The key of the context whose `enter` or `exit` is running (read by {@link annotate}). */
const currentKey: FiberRef.FiberRef<string | undefined> = FiberRef.unsafeMake<string | undefined>(undefined)

const DEFAULT_EXIT_TIMEOUT = Duration.seconds(30)

/**
 * Make a context's layer.
 *
 * @example
 * ```ts
 * class Tokenizer extends Context.Tag("Tokenizer")<Tokenizer, { encode: (s: string) => number[] }>() {}
 * const TokenizerLive = WorkerContext.make(Tokenizer, {
 *   enter: Effect.promise(() => loadTokenizer()),
 *   exit: (tok) => Effect.sync(() => tok.close())
 * })
 * class Engine extends Context.Tag("Engine")<Engine, { generate: (ids: number[]) => string }>() {}
 * const EngineLive = WorkerContext.make(Engine, {
 *   dependsOn: [Tokenizer],
 *   enter: Effect.gen(function*() { const tok = yield* Tokenizer; return makeEngine(tok) })
 * })
 * ```
 */
export const make = <I, S, E = never, R = never, const Deps extends ReadonlyArray<AnyTag> = []>(
  tag: Context.Tag<I, S>,
  options: Options<S, E, R, Deps> & Undeclared<R, Deps>
): WorkerContext<I, E | ContextTimeout, Context.Tag.Identifier<Deps[number]>> => {
  const key = tag.key
  const dependsOn = options.dependsOn ?? ([] as unknown as Deps)
  const depKeys = dependsOn.map((t) => t.key)
  const enterTimeout = options.enterTimeout === undefined ? undefined : Duration.decode(options.enterTimeout)
  const exitTimeout = Duration.decode(options.exitTimeout ?? DEFAULT_EXIT_TIMEOUT)
  const userExit = options.exit

  const acquire = (registry: Registry) =>
    Effect.gen(function* () {
      registry.entering(key, depKeys, yield* Clock.currentTimeMillis)
      let enter: Effect.Effect<S, E | ContextTimeout, R> = options.enter
      if (enterTimeout !== undefined) {
        enter = Effect.timeoutFail(enter, {
          duration: enterTimeout,
          onTimeout: () => new ContextTimeout({ key, phase: "enter", timeoutMillis: Duration.toMillis(enterTimeout) })
        })
      }
      return yield* enter.pipe(
        Effect.locally(currentKey, key),
        Effect.onExit((exit) =>
          Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.sync(() => registry.entered(key, exit, now)))
        )
      )
    })

  const release = (registry: Registry, service: S, exit: Exit.Exit<unknown, unknown>) =>
    Effect.gen(function* () {
      const rollback = registry.exiting(key, yield* Clock.currentTimeMillis)
      const result =
        userExit === undefined
          ? Exit.void
          : yield* Effect.interruptible(userExit(service, exit)).pipe(
              Effect.locally(currentKey, key),
              Effect.timeoutFail({
                duration: exitTimeout,
                onTimeout: () =>
                  new ContextTimeout({ key, phase: "exit", timeoutMillis: Duration.toMillis(exitTimeout) })
              }),
              Effect.exit
            )
      registry.exited(key, result, rollback, yield* Clock.currentTimeMillis)
      if (Exit.isFailure(result)) {
        // Never fail the finalizer: the scope must go on exiting every other context. The worker reports it.
        yield* Effect.logError(`Context "${key}" failed to exit`, result.cause)
      }
    })

  const layer = Layer.scoped(
    tag,
    Effect.flatMap(FiberRef.get(currentRegistry), (registry) =>
      Effect.acquireRelease(
        // acquireRelease runs its acquire uninterruptibly: re-open it so a failing sibling or a timeout can stop it.
        Effect.interruptible(acquire(registry)),
        (service, exit) => release(registry, service, exit)
      )
    )
  ) as Layer.Layer<I, E | ContextTimeout, R>

  return Object.assign(layer, {
    [TypeId]: TypeId,
    key,
    tag: tag as Context.Tag<I, any>,
    dependsOn
  }) as unknown as WorkerContext<I, E | ContextTimeout, Context.Tag.Identifier<Deps[number]>>
}

/** Whether a layer was made by {@link make}. */
export const isWorkerContext = (u: unknown): u is WorkerContext<unknown, unknown, unknown> =>
  typeof u === "object" && u !== null && TypeId in u

/**
 * The typed, dynamic lookup of an entered context (the reference's `get_context`). Fails with `ContextNotFound`:
 * `not-registered` when the running deployment has no such context, `not-entered` when it has not finished entering,
 * failed, or has already exited. Inside a remote, prefer `yield* Tag`, which the compiler checks. Outside a worker's
 * own fibers (the code that started it, a detached fiber) it reads the worker most recently started in the process.
 */
export const get = <I, S>(tag: Context.Tag<I, S>): Effect.Effect<S, ContextNotFound> =>
  Effect.flatMap(lookupRegistry, (registry) => registry.lookup(tag.key) as Exit.Exit<S, ContextNotFound>)

/**
 * Record a fact about the entering (or exiting) context in its report line (e.g. "backend: wasm (tensorflow: not
 * installed)", or at exit "0 tensors left"). Does nothing outside a context's `enter` and `exit`.
 */
export const annotate = (note: string): Effect.Effect<void> =>
  Effect.flatMap(FiberRef.get(currentKey), (key) =>
    key === undefined
      ? Effect.void
      : Effect.flatMap(FiberRef.get(currentRegistry), (registry) => Effect.sync(() => registry.note(key, note)))
  )
