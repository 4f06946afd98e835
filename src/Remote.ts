/**
 * Remote functions: what a worker serves. A remote is a name, Schemas for its payload, success and declared error, an
 * optional benchmark, and a handler: an Effect whose requirements are context tags.
 *
 * Two variants beside the plain one: a **batched** remote (`make` with a `batch` option) whose handler takes a
 * non-empty array of payloads gathered from concurrent calls, and a **stream** remote (`stream`) whose handler returns
 * an Effect `Stream` of elements, sent to the caller as they are produced.
 *
 * @since 0.1.0
 */
import type { Array as Arr, Either, Exit, Stream } from "effect"
import { Duration, Effect, Schema } from "effect"
import * as Batcher from "./internal/batcher.js"

const TypeId: unique symbol = Symbol.for("effect-deployments/Remote")
const StreamTypeId: unique symbol = Symbol.for("effect-deployments/Remote/Stream")
const SpecTypeId: unique symbol = Symbol.for("effect-deployments/Remote/Spec")
const StreamSpecTypeId: unique symbol = Symbol.for("effect-deployments/Remote/StreamSpec")

/**
 * What a caller needs to know of a remote: its name and Schemas, without its handler, its contexts or their
 * dependencies. {@link define} it in a small module that both the worker and its clients import (`WorkerClient.make`
 * takes specs), then {@link implement} it. A remote made by {@link make} is a spec too.
 */
export interface Spec<
  out Name extends string,
  in out Payload extends Schema.Struct<any>,
  in out Success extends Schema.Schema.Any,
  in out Error extends Schema.Schema.All
> {
  readonly [SpecTypeId]: typeof SpecTypeId
  readonly name: Name
  readonly payload: Payload
  readonly success: Success
  readonly error: Error
  /** The payload's field names in declaration order: `args` bind to them positionally. */
  readonly fields: ReadonlyArray<string>
  /** The payload has an index signature (like Python's `**kwargs`): keywords beyond `fields` are accepted. */
  readonly anyKeyword: boolean
}

/** Any remote spec (a plain remote is one too). */
export interface AnySpec {
  readonly [SpecTypeId]: typeof SpecTypeId
  readonly name: string
  readonly payload: Schema.Struct<any>
  readonly success: Schema.Schema.Any
  readonly error: Schema.Schema.All
  readonly fields: ReadonlyArray<string>
  readonly anyKeyword: boolean
}

/**
 * A Schema the worker can run without services of its own: payload, success and error Schemas must not require
 * context (one that did would type-check and then die at every call with "Service not found").
 */
type NoContext<S> =
  S extends Schema.Schema<any, any, infer R> ? ([R] extends [never] ? S : unknown extends R ? S : never) : S

/** The benchmark a remote declares: sample inputs, warm-up and timed runs. Inputs are in the payload's encoded form. */
export interface BenchmarkOptions<P, I> {
  /** Sample payloads, drawn in turn. Each must decode against the payload schema (checked by `Deployment.make`). */
  readonly dataset?: ReadonlyArray<I> | undefined
  /** Makes one sample payload per call, when a fixed dataset does not fit. */
  readonly generator?: Effect.Effect<I> | (() => I | Effect.Effect<I>) | undefined
  /** Timed rounds. Default 10. */
  readonly runs?: number | undefined
  /** Untimed calls before the rounds (the first inference is often several times slower). Default 1. */
  readonly warmup?: number | undefined
  /**
   * Calls in flight per round. Default: the remote's `concurrency`; for a batched remote of a fixed size, `maxSize` x
   * `concurrency` (enough to fill every batch).
   */
  readonly concurrency?: number | undefined
  /**
   * Work units of one call (the engine's load unit). Default 100, as the reference. For a stream remote the unit is
   * one element: this is the number of elements a call is expected to produce (e.g. its `maxTokens`), used to
   * estimate waits before the call runs; the benchmark itself counts the elements really produced.
   */
  readonly workload?: ((payload: P) => number) | undefined
}

/**
 * Dynamic batching: calls arriving within `maxWait` of the first waiting one are gathered, up to `maxSize`, and the
 * handler runs once for the whole batch. A full batch runs at once; `concurrency` then counts batches, not calls.
 *
 * `maxSize: "auto"` lets the benchmark choose: it runs the handler on batches of 1, 2, 4, ... up to `maxAutoSize`,
 * measures throughput and p90 latency at each, and keeps the size with the best throughput whose p90 latency plus
 * `maxWait` stays within `latencyBudget`. Until it has chosen (and in a worker started with `benchmark: false`),
 * batches hold one call. `maxWait` is measured on the Effect `Clock`: under a `TestClock` a batch that does not fill
 * waits for the test to move the clock.
 */
export type BatchOptions =
  | {
      /** Most calls in one batch. */
      readonly maxSize: number
      /** How long the oldest waiting call may wait for its batch to fill (e.g. `"10 millis"`). */
      readonly maxWait: Duration.DurationInput
    }
  | {
      readonly maxSize: "auto"
      readonly maxWait: Duration.DurationInput
      /** The longest a call may take (its batch's p90 run time plus `maxWait`) at the chosen size. */
      readonly latencyBudget: Duration.DurationInput
      /** The largest batch size the benchmark tries. Default 32. */
      readonly maxAutoSize?: number | undefined
    }

/**
 * What a batch handler returns per payload, in order: the success value, or an `Exit` / `Either` so that one bad
 * item fails only its own caller. (A remote whose success type is itself an `Exit` or `Either` wraps each result in
 * `Exit.succeed`.) A handler that fails as a whole fails every call of the batch.
 */
export type BatchResult<A, E> = A | Exit.Exit<A, E> | Either.Either<A, E>

/** A batched remote's resolved batching: sizes, wait, and the handler with its results normalised to one Exit each. */
export interface Batching<P, A, E, R> {
  /** A fixed size, or `"auto"` until the benchmark chooses (the worker keeps the choice). */
  readonly maxSize: number | "auto"
  readonly maxWait: Duration.Duration
  /** Set with `maxSize: "auto"`. */
  readonly latencyBudget: Duration.Duration | undefined
  /** The largest size the auto benchmark tries. */
  readonly maxAutoSize: number
  /**
   * The author's handler with its results checked (one per payload, a defect naming both counts otherwise) and
   * normalised to one `Exit` per payload.
   */
  readonly handler: (payloads: Arr.NonEmptyReadonlyArray<P>) => Effect.Effect<ReadonlyArray<Exit.Exit<A, E>>, E, R>
}

/**
 * What a remote's `concurrency` can follow instead of a fixed number: a threaded context (`ThreadedContext.make`),
 * whose pool admits one call per thread. Read when the worker starts (the worker reads `remote.concurrency` then).
 */
export interface ConcurrencySource {
  /** How many calls can run at once. */
  readonly concurrency: () => number
}

/** A remote function: a {@link Spec} with its handler, benchmark and serving limits. */
export interface Remote<
  out Name extends string,
  in out Payload extends Schema.Struct<any>,
  in out Success extends Schema.Schema.Any,
  in out Error extends Schema.Schema.All,
  out R
> extends Spec<Name, Payload, Success, Error> {
  readonly [TypeId]: typeof TypeId
  /** Tells a plain (or batched) remote from a stream remote. */
  readonly kind: "unary"
  readonly name: Name
  readonly payload: Payload
  readonly success: Success
  readonly error: Error
  readonly benchmark: BenchmarkOptions<Schema.Schema.Type<Payload>, Schema.Schema.Encoded<Payload>> | undefined
  /**
   * Calls that run at once. Default 1: GPU work runs one at a time unless the author says otherwise. For a batched
   * remote: batches that run at once.
   */
  readonly concurrency: number
  /** Calls that may wait for a slot; past it the worker answers 429. Default 1000. */
  readonly maxQueue: number
  /** Per-call timeout; overrides the worker's. */
  readonly timeout: Duration.DurationInput | undefined
  /**
   * The longest a call may be expected to wait in the queue, estimated from the work queued ahead of it and the
   * benchmark score; past it the worker answers 429. Overrides the worker's `maxQueueTime`.
   */
  readonly maxQueueTime: Duration.DurationInput | undefined
  /** The payload's field names in declaration order: `args` bind to them positionally. */
  readonly fields: ReadonlyArray<string>
  /** The payload has an index signature (like Python's `**kwargs`): keywords beyond `fields` are accepted. */
  readonly anyKeyword: boolean
  /** Set for a batched remote (`make` with a `batch` option). */
  readonly batch:
    Batching<Schema.Schema.Type<Payload>, Schema.Schema.Type<Success>, Schema.Schema.Type<Error>, R> | undefined
  /** Runs one call. For a batched remote: a batch of one (what runs when no batcher gathers calls). */
  readonly handler: (
    payload: Schema.Schema.Type<Payload>
  ) => Effect.Effect<Schema.Schema.Type<Success>, Schema.Schema.Type<Error>, R>
}

/** Any plain or batched remote. */
export interface Any extends AnySpec {
  readonly [TypeId]: typeof TypeId
  readonly kind: "unary"
  readonly benchmark: BenchmarkOptions<any, any> | undefined
  readonly concurrency: number
  readonly maxQueue: number
  readonly timeout: Duration.DurationInput | undefined
  readonly maxQueueTime: Duration.DurationInput | undefined
  readonly batch: Batching<any, any, any, any> | undefined
  readonly handler: (payload: any) => Effect.Effect<any, any, any>
}

/** Options of {@link make}. */
export interface Options<
  Payload extends Schema.Struct<any>,
  Success extends Schema.Schema.Any,
  Error extends Schema.Schema.All
>
  extends Schemas<Payload, Success, Error>, RunOptions<Payload> {
  /** Gather concurrent calls into batches: the handler then takes a non-empty array of payloads. */
  readonly batch?: BatchOptions | undefined
}

/** The Schemas of a remote: {@link define}'s options. Schemas that need services of their own are a type error. */
export interface Schemas<
  Payload extends Schema.Struct<any>,
  Success extends Schema.Schema.Any,
  Error extends Schema.Schema.All
> {
  readonly payload: Payload & NoContext<Payload>
  readonly success: Success & NoContext<Success>
  readonly error?: (Error & NoContext<Error>) | undefined
}

/** How a remote runs: its benchmark and serving limits ({@link implement}'s options). */
export interface RunOptions<Payload extends Schema.Struct<any>> {
  readonly benchmark?: BenchmarkOptions<Schema.Schema.Type<Payload>, Schema.Schema.Encoded<Payload>> | undefined
  /**
   * Calls that run at once (default 1), or a {@link ConcurrencySource} to follow: `concurrency: VisionThreadsLive`
   * admits as many calls as the threaded context has threads, counted when the worker starts.
   */
  readonly concurrency?: number | ConcurrencySource | undefined
  readonly maxQueue?: number | undefined
  readonly timeout?: Duration.DurationInput | undefined
  readonly maxQueueTime?: Duration.DurationInput | undefined
}

const positiveInt = (name: string, what: string, n: number | undefined, fallback: number): number => {
  if (n === undefined) return fallback
  if (!Number.isInteger(n) || n < 1)
    throw new RangeError(`Remote "${name}": ${what} must be a positive integer, got ${n}`)
  return n
}

/**
 * Set `concurrency` on a remote: a number now, or, for a {@link ConcurrencySource}, a getter read when the worker
 * reads it (at its start), not at definition: the source's size may come from the environment.
 */
const withConcurrency = <A extends { concurrency: number }>(
  name: string,
  remote: A,
  concurrency: number | ConcurrencySource | undefined
): A => {
  if (typeof concurrency !== "object") {
    remote.concurrency = positiveInt(name, "concurrency", concurrency, 1)
    return remote
  }
  return Object.defineProperty(remote, "concurrency", {
    enumerable: true,
    get: () => positiveInt(name, "concurrency", concurrency.concurrency(), 1)
  })
}

const checkName = (name: string): void => {
  if (name.length === 0 || name.length > 256 || !/^[A-Za-z0-9_.-]+$/.test(name)) {
    throw new TypeError(`Remote name must be 1 to 256 URL-safe characters ([A-Za-z0-9_.-]), got "${name}"`)
  }
}

const duration = (name: string, what: string, input: Duration.DurationInput): Duration.Duration => {
  const d = Duration.decodeUnknown(input)
  if (d._tag === "None" || !Duration.isFinite(d.value)) {
    throw new RangeError(`Remote "${name}": ${what} must be a finite duration, got ${String(input)}`)
  }
  return d.value
}

/** The default largest size the auto batch benchmark tries. */
export const DEFAULT_MAX_AUTO_SIZE = 32

const batching = (
  name: string,
  options: BatchOptions,
  handler: (payloads: Arr.NonEmptyReadonlyArray<any>) => Effect.Effect<ReadonlyArray<unknown>, any, any>
): Batching<any, any, any, any> => {
  const maxWait = duration(name, "batch.maxWait", options.maxWait)
  const run = (payloads: Arr.NonEmptyReadonlyArray<any>) =>
    Effect.flatMap(
      Effect.suspend(() => handler(payloads)),
      (results) => Batcher.toExits(name, payloads.length, results)
    )
  if (options.maxSize === "auto") {
    if (options.latencyBudget === undefined) {
      throw new TypeError(`Remote "${name}": batch.maxSize "auto" needs a latencyBudget`)
    }
    const latencyBudget = duration(name, "batch.latencyBudget", options.latencyBudget)
    if (Duration.lessThanOrEqualTo(latencyBudget, maxWait)) {
      throw new RangeError(
        `Remote "${name}": batch.latencyBudget (${Duration.format(latencyBudget)}) must exceed batch.maxWait ` +
          `(${Duration.format(maxWait)}): a call may wait maxWait before its batch even starts`
      )
    }
    return {
      maxSize: "auto",
      maxWait,
      latencyBudget,
      maxAutoSize: positiveInt(name, "batch.maxAutoSize", options.maxAutoSize, DEFAULT_MAX_AUTO_SIZE),
      handler: run
    }
  }
  const maxSize = positiveInt(name, "batch.maxSize", options.maxSize, 1)
  return { maxSize, maxWait, latencyBudget: undefined, maxAutoSize: maxSize, handler: run }
}

/**
 * Define a remote function. With a `batch` option the handler takes a non-empty array of payloads (concurrent calls
 * gathered by the worker) and returns one result per payload, in order (see {@link BatchResult}).
 *
 * @example
 * ```ts
 * const square = Remote.make("square", {
 *   payload: Schema.Struct({ x: Schema.Number }),
 *   success: Schema.Number,
 *   benchmark: { dataset: [{ x: 2 }, { x: 3 }] }
 * }, ({ x }) => Effect.succeed(x * x))
 *
 * // Batched: up to 8 calls arriving within 5 ms run as one model invocation.
 * const embed = Remote.make("embed", {
 *   payload: Schema.Struct({ text: Schema.String }),
 *   success: Schema.Array(Schema.Number),
 *   batch: { maxSize: 8, maxWait: "5 millis" }
 * }, (payloads) => Effect.map(Encoder, (encoder) => encoder.embedAll(payloads.map((p) => p.text))))
 * ```
 */
export const make: {
  <
    const Name extends string,
    Payload extends Schema.Struct<any>,
    Success extends Schema.Schema.Any,
    R = never,
    Error extends Schema.Schema.All = typeof Schema.Never
  >(
    name: Name,
    options: Options<Payload, Success, Error> & { readonly batch?: undefined },
    handler: (
      payload: Schema.Schema.Type<Payload>
    ) => Effect.Effect<Schema.Schema.Type<Success>, Schema.Schema.Type<Error>, R>
  ): Remote<Name, Payload, Success, Error, R>
  <
    const Name extends string,
    Payload extends Schema.Struct<any>,
    Success extends Schema.Schema.Any,
    R = never,
    Error extends Schema.Schema.All = typeof Schema.Never
  >(
    name: Name,
    options: Options<Payload, Success, Error> & { readonly batch: BatchOptions },
    handler: (
      payloads: Arr.NonEmptyReadonlyArray<Schema.Schema.Type<Payload>>
    ) => Effect.Effect<
      ReadonlyArray<BatchResult<Schema.Schema.Type<Success>, Schema.Schema.Type<Error>>>,
      Schema.Schema.Type<Error>,
      R
    >
  ): Remote<Name, Payload, Success, Error, R>
} = (
  name: string,
  options: Options<any, any, any>,
  handler: (input: any) => Effect.Effect<any, any, any>
): Remote<any, any, any, any, any> => {
  checkName(name)
  const batch = options.batch === undefined ? undefined : batching(name, options.batch, handler)
  return withConcurrency(
    name,
    {
      [SpecTypeId]: SpecTypeId,
      [TypeId]: TypeId,
      kind: "unary",
      name,
      payload: options.payload,
      success: options.success,
      error: options.error ?? Schema.Never,
      benchmark: options.benchmark,
      concurrency: 1,
      maxQueue: options.maxQueue === 0 ? 0 : positiveInt(name, "maxQueue", options.maxQueue, 1000),
      timeout: options.timeout,
      maxQueueTime: options.maxQueueTime,
      fields: Object.keys(options.payload.fields),
      anyKeyword: options.payload.records.length > 0,
      batch,
      handler:
        batch === undefined
          ? handler
          : (payload: unknown) => Effect.flatMap(batch.handler([payload]), (exits) => exits[0]!)
    },
    options.concurrency
  )
}

/** What a plain and a stream spec share: the name, the payload with its field order, the declared error. */
const specOf = <Name extends string, Payload extends Schema.Struct<any>, Error extends Schema.Schema.All>(
  name: Name,
  schemas: { readonly payload: Payload; readonly error?: Error | undefined }
) => ({
  name,
  payload: schemas.payload,
  error: (schemas.error ?? Schema.Never) as Error,
  fields: Object.keys(schemas.payload.fields),
  anyKeyword: schemas.payload.records.length > 0
})

/**
 * Define a remote's name and Schemas without its handler: what a client needs (`WorkerClient.make` takes specs),
 * importable without the models. {@link implement} it in the worker.
 *
 * @example
 * ```ts
 * // spec.ts
 * export const square = Remote.define("square", { payload: Schema.Struct({ x: Schema.Number }), success: Schema.Number })
 * // worker.ts
 * const squareLive = Remote.implement(square, { benchmark: { dataset: [{ x: 2 }] } }, ({ x }) => Effect.succeed(x * x))
 * ```
 */
export const define = <
  const Name extends string,
  Payload extends Schema.Struct<any>,
  Success extends Schema.Schema.Any,
  Error extends Schema.Schema.All = typeof Schema.Never
>(
  name: Name,
  schemas: Schemas<Payload, Success, Error>
): Spec<Name, Payload, Success, Error> => {
  checkName(name)
  return {
    [SpecTypeId]: SpecTypeId,
    ...specOf(name, schemas),
    success: schemas.success
  }
}

/** Implement a {@link define}d remote: its benchmark and limits, and its handler (as {@link make} takes them). */
export const implement = <
  Name extends string,
  Payload extends Schema.Struct<any>,
  Success extends Schema.Schema.Any,
  Error extends Schema.Schema.All,
  R = never
>(
  spec: Spec<Name, Payload, Success, Error>,
  options: RunOptions<Payload>,
  handler: (
    payload: Schema.Schema.Type<Payload>
  ) => Effect.Effect<Schema.Schema.Type<Success>, Schema.Schema.Type<Error>, R>
): Remote<Name, Payload, Success, Error, R> =>
  make(
    spec.name,
    { ...options, payload: spec.payload, success: spec.success, error: spec.error } as Options<
      Payload,
      Success,
      Error
    > & { readonly batch?: undefined },
    handler
  )

/** Whether a value is a remote spec: {@link define}d, or a plain or batched remote (made by {@link make}). */
export const isSpec = (u: unknown): u is AnySpec => typeof u === "object" && u !== null && SpecTypeId in u

/** Whether a value is a plain or batched remote made by {@link make}. */
export const isRemote = (u: unknown): u is Any => typeof u === "object" && u !== null && TypeId in u

// ---------------------------------------------------------------------------
// stream remotes
// ---------------------------------------------------------------------------

/**
 * What a caller needs to know of a stream remote: its name and Schemas, without its handler. {@link defineStream} it in
 * a module both the worker and its clients import, then {@link implementStream} it. A stream remote is one too.
 */
export interface StreamSpec<
  out Name extends string,
  in out Payload extends Schema.Struct<any>,
  in out Element extends Schema.Schema.Any,
  in out Error extends Schema.Schema.All
> {
  readonly [StreamSpecTypeId]: typeof StreamSpecTypeId
  /** Tells a stream remote from a plain one. */
  readonly kind: "stream"
  readonly name: Name
  readonly payload: Payload
  /** The Schema of each element. */
  readonly element: Element
  readonly error: Error
  /** The payload's field names in declaration order: `args` bind to them positionally. */
  readonly fields: ReadonlyArray<string>
  /** The payload has an index signature: keywords beyond `fields` are accepted. */
  readonly anyKeyword: boolean
}

/** Any stream remote spec (a stream remote is one too). */
export interface AnyStreamSpec {
  readonly [StreamSpecTypeId]: typeof StreamSpecTypeId
  readonly kind: "stream"
  readonly name: string
  readonly payload: Schema.Struct<any>
  readonly element: Schema.Schema.Any
  readonly error: Schema.Schema.All
  readonly fields: ReadonlyArray<string>
  readonly anyKeyword: boolean
}

/** Any spec a client can call: a plain remote's ({@link AnySpec}) or a stream remote's ({@link AnyStreamSpec}). */
export type AnyDefinitionSpec = AnySpec | AnyStreamSpec

/**
 * A stream remote: its handler returns an Effect `Stream` of elements, which the worker sends as they are produced
 * (over HTTP: one NDJSON line per element, then an `end` line, or an `err` line if the stream fails midway).
 */
export interface StreamRemote<
  out Name extends string,
  in out Payload extends Schema.Struct<any>,
  in out Element extends Schema.Schema.Any,
  in out Error extends Schema.Schema.All,
  out R
> extends StreamSpec<Name, Payload, Element, Error> {
  readonly [StreamTypeId]: typeof StreamTypeId
  /** Measured in elements per second; `workload` is the number of elements a call is expected to produce. */
  readonly benchmark: BenchmarkOptions<Schema.Schema.Type<Payload>, Schema.Schema.Encoded<Payload>> | undefined
  /** Streams that run at once. Default 1. */
  readonly concurrency: number
  /** Calls that may wait for a slot; past it the worker answers 429. Default 1000. */
  readonly maxQueue: number
  /** The longest a whole stream may run (from its start to its last element); overrides the worker's call timeout. */
  readonly timeout: Duration.DurationInput | undefined
  /** As for a plain remote: the longest estimated wait in the queue before the worker answers 429. */
  readonly maxQueueTime: Duration.DurationInput | undefined
  readonly handler: (
    payload: Schema.Schema.Type<Payload>
  ) => Stream.Stream<Schema.Schema.Type<Element>, Schema.Schema.Type<Error>, R>
}

/** Any stream remote. */
export interface AnyStream extends AnyStreamSpec {
  readonly [StreamTypeId]: typeof StreamTypeId
  readonly benchmark: BenchmarkOptions<any, any> | undefined
  readonly concurrency: number
  readonly maxQueue: number
  readonly timeout: Duration.DurationInput | undefined
  readonly maxQueueTime: Duration.DurationInput | undefined
  readonly handler: (payload: any) => Stream.Stream<any, any, any>
}

/** Any remote a deployment can hold: plain, batched or stream. Tell them apart by `kind`. */
export type Definition = Any | AnyStream

/** The Schemas of a stream remote: {@link defineStream}'s options. Schemas that need services are a type error. */
export interface StreamSchemas<
  Payload extends Schema.Struct<any>,
  Element extends Schema.Schema.Any,
  Error extends Schema.Schema.All
> {
  readonly payload: Payload & NoContext<Payload>
  readonly element: Element & NoContext<Element>
  readonly error?: (Error & NoContext<Error>) | undefined
}

/** Options of {@link stream}: the Schemas, the benchmark (in elements per second) and the serving limits. */
export interface StreamOptions<
  Payload extends Schema.Struct<any>,
  Element extends Schema.Schema.Any,
  Error extends Schema.Schema.All
>
  extends StreamSchemas<Payload, Element, Error>, RunOptions<Payload> {}

/**
 * Define a stream remote: the handler returns an Effect `Stream` whose requirements are context tags, as any remote's.
 *
 * @example
 * ```ts
 * const generate = Remote.stream("generate", {
 *   payload: Schema.Struct({ prompt: Schema.String, maxTokens: Schema.Int }),
 *   element: Schema.String,
 *   benchmark: { dataset: [{ prompt: "the cat", maxTokens: 16 }], workload: (p) => p.maxTokens }
 * }, ({ prompt, maxTokens }) => Stream.unwrap(Effect.map(Engine, (engine) => engine.tokens(prompt, maxTokens))))
 * ```
 */
export const stream = <
  const Name extends string,
  Payload extends Schema.Struct<any>,
  Element extends Schema.Schema.Any,
  R = never,
  Error extends Schema.Schema.All = typeof Schema.Never
>(
  name: Name,
  options: StreamOptions<Payload, Element, Error>,
  handler: (
    payload: Schema.Schema.Type<Payload>
  ) => Stream.Stream<Schema.Schema.Type<Element>, Schema.Schema.Type<Error>, R>
): StreamRemote<Name, Payload, Element, Error, R> => {
  checkName(name)
  return withConcurrency(
    name,
    {
      [StreamSpecTypeId]: StreamSpecTypeId,
      [StreamTypeId]: StreamTypeId,
      kind: "stream" as const,
      name,
      payload: options.payload,
      element: options.element,
      error: (options.error ?? Schema.Never) as Error,
      benchmark: options.benchmark,
      concurrency: 1,
      maxQueue: options.maxQueue === 0 ? 0 : positiveInt(name, "maxQueue", options.maxQueue, 1000),
      timeout: options.timeout,
      maxQueueTime: options.maxQueueTime,
      fields: Object.keys(options.payload.fields),
      anyKeyword: options.payload.records.length > 0,
      handler
    },
    options.concurrency
  )
}

/** Whether a value is a stream remote made by {@link stream}. */
export const isStream = (u: unknown): u is AnyStream => typeof u === "object" && u !== null && StreamTypeId in u

/**
 * Define a stream remote's name and Schemas without its handler (what a client needs); {@link implementStream} it in
 * the worker.
 *
 * @example
 * ```ts
 * export const tokens = Remote.defineStream("tokens", {
 *   payload: Schema.Struct({ prompt: Schema.String }),
 *   element: Schema.String
 * })
 * ```
 */
export const defineStream = <
  const Name extends string,
  Payload extends Schema.Struct<any>,
  Element extends Schema.Schema.Any,
  Error extends Schema.Schema.All = typeof Schema.Never
>(
  name: Name,
  schemas: StreamSchemas<Payload, Element, Error>
): StreamSpec<Name, Payload, Element, Error> => {
  checkName(name)
  return {
    [StreamSpecTypeId]: StreamSpecTypeId,
    kind: "stream",
    ...specOf(name, schemas),
    element: schemas.element
  }
}

/** Implement a {@link defineStream}d remote: its benchmark and limits, and its handler (as {@link stream} takes them). */
export const implementStream = <
  Name extends string,
  Payload extends Schema.Struct<any>,
  Element extends Schema.Schema.Any,
  Error extends Schema.Schema.All,
  R = never
>(
  spec: StreamSpec<Name, Payload, Element, Error>,
  options: RunOptions<Payload>,
  handler: (
    payload: Schema.Schema.Type<Payload>
  ) => Stream.Stream<Schema.Schema.Type<Element>, Schema.Schema.Type<Error>, R>
): StreamRemote<Name, Payload, Element, Error, R> =>
  stream(
    spec.name,
    { ...options, payload: spec.payload, element: spec.element, error: spec.error } as StreamOptions<
      Payload,
      Element,
      Error
    >,
    handler
  )

/** Whether a value is a stream remote spec: {@link defineStream}d, or a stream remote. */
export const isStreamSpec = (u: unknown): u is AnyStreamSpec =>
  typeof u === "object" && u !== null && StreamSpecTypeId in u

/** Whether a value is any remote: plain, batched ({@link make}) or stream ({@link stream}). */
export const isDefinition = (u: unknown): u is Definition => isRemote(u) || isStream(u)

/** The context tags a remote needs, as a type (for `Deployment` checks): a stream remote's are its Stream's. */
export type ContextOf<Rm> = Rm extends { readonly handler: (p: any) => Stream.Stream<any, any, infer R> }
  ? R
  : Rm extends { readonly handler: (p: any) => Effect.Effect<any, any, infer R> }
    ? R
    : never
