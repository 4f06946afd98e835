/**
 * Remote functions: what a worker serves. A remote is a name, Schemas for its payload, success and declared error, an
 * optional benchmark, and a handler: an Effect whose requirements are context tags.
 *
 * @since 0.1.0
 */
import type { Duration } from "effect"
import { Effect, Schema } from "effect"

const TypeId: unique symbol = Symbol.for("effect-deployments/Remote")

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
  /** Calls in flight per round. Default: the remote's `concurrency`. */
  readonly concurrency?: number | undefined
  /** Work units of one call (the engine's load unit). Default 100, as the reference. */
  readonly workload?: ((payload: P) => number) | undefined
}

/** A remote function. */
export interface Remote<
  out Name extends string,
  in out Payload extends Schema.Struct<any>,
  in out Success extends Schema.Schema.Any,
  in out Error extends Schema.Schema.All,
  out R
> {
  readonly [TypeId]: typeof TypeId
  readonly name: Name
  readonly payload: Payload
  readonly success: Success
  readonly error: Error
  readonly benchmark: BenchmarkOptions<Schema.Schema.Type<Payload>, Schema.Schema.Encoded<Payload>> | undefined
  /** Calls that run at once. Default 1: GPU work runs one at a time unless the author says otherwise. */
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
  readonly handler: (
    payload: Schema.Schema.Type<Payload>
  ) => Effect.Effect<Schema.Schema.Type<Success>, Schema.Schema.Type<Error>, R>
}

/** Any remote. */
export interface Any {
  readonly [TypeId]: typeof TypeId
  readonly name: string
  readonly payload: Schema.Struct<any>
  readonly success: Schema.Schema.Any
  readonly error: Schema.Schema.All
  readonly benchmark: BenchmarkOptions<any, any> | undefined
  readonly concurrency: number
  readonly maxQueue: number
  readonly timeout: Duration.DurationInput | undefined
  readonly maxQueueTime: Duration.DurationInput | undefined
  readonly fields: ReadonlyArray<string>
  readonly anyKeyword: boolean
  readonly handler: (payload: any) => Effect.Effect<any, any, any>
}

/** Options of {@link make}. */
export interface Options<
  Payload extends Schema.Struct<any>,
  Success extends Schema.Schema.Any,
  Error extends Schema.Schema.All
> {
  readonly payload: Payload
  readonly success: Success
  readonly error?: Error | undefined
  readonly benchmark?: BenchmarkOptions<Schema.Schema.Type<Payload>, Schema.Schema.Encoded<Payload>> | undefined
  readonly concurrency?: number | undefined
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
 * Define a remote function.
 *
 * @example
 * ```ts
 * const square = Remote.make("square", {
 *   payload: Schema.Struct({ x: Schema.Number }),
 *   success: Schema.Number,
 *   benchmark: { dataset: [{ x: 2 }, { x: 3 }] }
 * }, ({ x }) => Effect.succeed(x * x))
 * ```
 */
export const make = <
  const Name extends string,
  Payload extends Schema.Struct<any>,
  Success extends Schema.Schema.Any,
  R = never,
  Error extends Schema.Schema.All = typeof Schema.Never
>(
  name: Name,
  options: Options<Payload, Success, Error>,
  handler: (
    payload: Schema.Schema.Type<Payload>
  ) => Effect.Effect<Schema.Schema.Type<Success>, Schema.Schema.Type<Error>, R>
): Remote<Name, Payload, Success, Error, R> => {
  if (name.length === 0 || name.length > 256 || !/^[A-Za-z0-9_.-]+$/.test(name)) {
    throw new TypeError(`Remote name must be 1 to 256 URL-safe characters ([A-Za-z0-9_.-]), got "${name}"`)
  }
  return {
    [TypeId]: TypeId,
    name,
    payload: options.payload,
    success: options.success,
    error: (options.error ?? Schema.Never) as Error,
    benchmark: options.benchmark,
    concurrency: positiveInt(name, "concurrency", options.concurrency, 1),
    maxQueue: options.maxQueue === 0 ? 0 : positiveInt(name, "maxQueue", options.maxQueue, 1000),
    timeout: options.timeout,
    maxQueueTime: options.maxQueueTime,
    fields: Object.keys(options.payload.fields),
    anyKeyword: options.payload.records.length > 0,
    handler
  }
}

/** Whether a value is a remote made by {@link make}. */
export const isRemote = (u: unknown): u is Any => typeof u === "object" && u !== null && TypeId in u

/** The context tags a remote needs, as a type (for `Deployment` checks). */
export type ContextOf<Rm> = Rm extends { readonly handler: (p: any) => Effect.Effect<any, any, infer R> } ? R : never
