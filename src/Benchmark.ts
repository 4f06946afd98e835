/**
 * The benchmark: how much work a worker can take, measured at start-up on the one remote that declares it.
 *
 * Unlike the reference, every dataset item is used (in turn), rounds really run `concurrency` calls at once, the score
 * is total workload over total time (not the best round), and a failing call fails the benchmark instead of counting.
 *
 * @since 0.1.0
 */
import { Cause, Clock, Effect, Either, ParseResult, Schema } from "effect"
import type * as Remote from "./Remote.js"
import { BenchmarkFailed } from "./WorkerError.js"

/** What the benchmark measured. `score` is workload per second (the engine's `max_perf`). */
export interface Result {
  readonly remote: string
  readonly score: number
  readonly runs: number
  readonly concurrency: number
  readonly calls: number
  readonly workload: number
  readonly warmupMillis: number
  /** Duration of each timed round, in milliseconds. */
  readonly roundMillis: ReadonlyArray<number>
  readonly totalMillis: number
}

/** Default number of timed rounds. */
export const DEFAULT_RUNS = 10
/** Default workload of one call, as the reference. */
export const DEFAULT_WORKLOAD = 100

/**
 * Run a remote's benchmark through `call` (the worker's own call path, so concurrency limits apply as in serving).
 */
export const run = <E, R>(
  remote: Remote.Any,
  call: (payload: unknown) => Effect.Effect<unknown, E, R>
): Effect.Effect<Result, BenchmarkFailed, R> =>
  Effect.gen(function* () {
    const options = remote.benchmark
    if (options === undefined) {
      return yield* new BenchmarkFailed({ remote: remote.name, detail: "the remote declares no benchmark" })
    }
    const runs = options.runs ?? DEFAULT_RUNS
    const concurrency = options.concurrency ?? Math.max(remote.concurrency, 1)
    const warmup = options.warmup ?? 1
    const decode = Schema.decodeUnknownEither(remote.payload as unknown as Schema.Schema<any, any, never>, {
      errors: "all"
    })
    let next = 0
    const input: Effect.Effect<unknown, BenchmarkFailed> = Effect.suspend(() => {
      let raw: Effect.Effect<unknown, unknown>
      if (options.dataset !== undefined) {
        raw = Effect.succeed(options.dataset[next++ % options.dataset.length])
      } else {
        const g = options.generator!
        raw = Effect.isEffect(g)
          ? g
          : Effect.suspend(() => {
              const v = (g as () => unknown)()
              return Effect.isEffect(v) ? (v as Effect.Effect<unknown>) : Effect.succeed(v)
            })
      }
      return raw.pipe(
        Effect.flatMap((v) => {
          const r = decode(v)
          return Either.isRight(r)
            ? Effect.succeed(r.right)
            : Effect.fail(
                `input does not match the payload schema: ${ParseResult.TreeFormatter.formatErrorSync(r.left)}`
              )
        }),
        Effect.catchAllCause((cause) =>
          Effect.fail(new BenchmarkFailed({ remote: remote.name, detail: `generator failed: ${String(cause)}` }))
        )
      )
    })
    const workloadOf = (p: unknown) => options.workload?.(p) ?? DEFAULT_WORKLOAD
    const one = input.pipe(
      Effect.flatMap((p) =>
        call(p).pipe(
          Effect.as(workloadOf(p)),
          Effect.catchAllCause((cause) =>
            Effect.fail(new BenchmarkFailed({ remote: remote.name, detail: describe(Cause.squash(cause)) }))
          )
        )
      )
    )

    const t0 = yield* Clock.currentTimeMillis
    for (let i = 0; i < warmup; i++) yield* one
    const t1 = yield* Clock.currentTimeMillis
    const roundMillis: Array<number> = []
    let workload = 0
    for (let round = 0; round < runs; round++) {
      const start = yield* Clock.currentTimeMillis
      const loads = yield* Effect.all(
        Array.from({ length: concurrency }, () => one),
        { concurrency: "unbounded" }
      )
      roundMillis.push((yield* Clock.currentTimeMillis) - start)
      for (const w of loads) workload += w
    }
    const totalMillis = roundMillis.reduce((a, b) => a + b, 0)
    return {
      remote: remote.name,
      // Guard a zero-duration run (a trivial remote under a test clock) against an infinite score.
      score: (workload / Math.max(totalMillis, 1)) * 1000,
      runs,
      concurrency,
      calls: runs * concurrency,
      workload,
      warmupMillis: t1 - t0,
      roundMillis,
      totalMillis
    }
  })

const describe = (e: unknown): string =>
  e instanceof Error ? `${(e as { _tag?: string })._tag ?? e.name}: ${e.message}` : String(e)
