/**
 * The benchmark: how much work a worker can take, measured at start-up on the one remote that declares it.
 *
 * Unlike the reference, every dataset item is used (in turn), rounds really run `concurrency` calls at once, the score
 * is total workload over total time (not the best round), and a failing call fails the benchmark instead of counting.
 *
 * @since 0.1.0
 */
import type { Array as Arr } from "effect"
import { Cause, Clock, Duration, Effect, Either, Exit, ParseResult, Schema, Stream } from "effect"
import type * as Remote from "./Remote.js"
import { BenchmarkFailed } from "./WorkerError.js"

/**
 * What the benchmark measured. `score` is workload per second (the engine's `max_perf`); for a stream remote, elements
 * per second; for an auto batch size, the workload per second at the size chosen.
 */
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
  /** For a batched remote with `maxSize: "auto"`: the measured curve and the size chosen (the rest is at that size). */
  readonly batch?: BatchChoice | undefined
  /** For a stream remote: the elements counted (the score is elements per second). */
  readonly stream?: StreamStats | undefined
}

/** Default number of timed rounds. */
export const DEFAULT_RUNS = 10
/** Default workload of one call, as the reference. */
export const DEFAULT_WORKLOAD = 100

type BenchmarkRemote = Remote.Any | Remote.AnyStream

/**
 * The benchmark's inputs: every dataset item in turn (or the generator's), decoded by the payload schema. A failing
 * generator or an input that does not decode fails the benchmark.
 */
const makeInput = (remote: BenchmarkRemote, options: Remote.BenchmarkOptions<any, any>) => {
  const decode = Schema.decodeUnknownEither(remote.payload as unknown as Schema.Schema<any, any, never>, {
    errors: "all"
  })
  let next = 0
  return Effect.suspend(() => {
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
          : Effect.fail(`input does not match the payload schema: ${ParseResult.TreeFormatter.formatErrorSync(r.left)}`)
      }),
      Effect.catchAllCause((cause) =>
        Effect.fail(new BenchmarkFailed({ remote: remote.name, detail: `generator failed: ${String(cause)}` }))
      )
    )
  }) as Effect.Effect<unknown, BenchmarkFailed>
}

const declared = (remote: BenchmarkRemote): Effect.Effect<Remote.BenchmarkOptions<any, any>, BenchmarkFailed> =>
  remote.benchmark === undefined
    ? Effect.fail(new BenchmarkFailed({ remote: remote.name, detail: "the remote declares no benchmark" }))
    : Effect.succeed(remote.benchmark)

const failed = (remote: BenchmarkRemote) => (cause: Cause.Cause<unknown>) =>
  Effect.fail(new BenchmarkFailed({ remote: remote.name, detail: describe(Cause.squash(cause)) }))

/**
 * Calls in flight per round when the benchmark does not say: the remote's `concurrency`; for a batched remote with a
 * fixed size, enough calls to fill every batch (`maxSize` x `concurrency`), or it would measure half-empty batches.
 */
export const defaultConcurrency = (remote: BenchmarkRemote): number => {
  const batch = remote.kind === "unary" ? remote.batch : undefined
  const perSlot = batch === undefined || batch.maxSize === "auto" ? 1 : batch.maxSize
  return Math.max(remote.concurrency, 1) * perSlot
}

/**
 * Run a remote's benchmark through `call` (the worker's own call path, so concurrency limits apply as in serving).
 */
export const run = <E, R>(
  remote: Remote.Any,
  call: (payload: unknown) => Effect.Effect<unknown, E, R>
): Effect.Effect<Result, BenchmarkFailed, R> =>
  Effect.gen(function* () {
    const options = yield* declared(remote)
    const runs = options.runs ?? DEFAULT_RUNS
    const concurrency = options.concurrency ?? defaultConcurrency(remote)
    const warmup = options.warmup ?? 1
    const input = makeInput(remote, options)
    const workloadOf = (p: unknown) => options.workload?.(p) ?? DEFAULT_WORKLOAD
    const one = input.pipe(
      Effect.flatMap((p) => call(p).pipe(Effect.as(workloadOf(p)), Effect.catchAllCause(failed(remote))))
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
      score: perSecond(workload, totalMillis),
      runs,
      concurrency,
      calls: runs * concurrency,
      workload,
      warmupMillis: t1 - t0,
      roundMillis,
      totalMillis
    }
  })

// Guard a zero-duration run (a trivial remote under a test clock) against an infinite score.
const perSecond = (amount: number, millis: number): number => (amount / Math.max(millis, 1)) * 1000

/** The `q`-quantile (0..1) of some durations, by nearest rank. */
const quantile = (values: ReadonlyArray<number>, q: number): number => {
  if (values.length === 0) return 0
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!
}

// ---------------------------------------------------------------------------
// the batch size, chosen by measurement
// ---------------------------------------------------------------------------

/** One measured batch size. */
export interface BatchPoint {
  readonly size: number
  /** Batches timed at this size (after one untimed warm-up batch: a new input shape is often slow the first time). */
  readonly batches: number
  /** Payloads per second. */
  readonly itemsPerSecond: number
  /** Workload units per second (what `max_perf` would be at this size). */
  readonly score: number
  /** Median and p90 duration of one batch: how long every call of the batch waits once it starts. */
  readonly p50Millis: number
  readonly p90Millis: number
  /** `p90Millis + maxWait`: the latency compared with the budget (a call may wait `maxWait` for its batch to fill). */
  readonly latencyMillis: number
  readonly withinBudget: boolean
}

/** What the auto batch benchmark measured and chose. */
export interface BatchChoice {
  /** The sizes measured, in order (1, 2, 4, ...; the search stops at the first size over the budget). */
  readonly points: ReadonlyArray<BatchPoint>
  /** The size chosen: the best throughput within the budget (the smaller size on a tie); 1 when none is within. */
  readonly size: number
  readonly latencyBudgetMillis: number
  readonly maxWaitMillis: number
  /** Why this size, in words (for the start-up report). */
  readonly reason: string
  /** The whole search, warm-ups included. */
  readonly totalMillis: number
}

/** The sizes the auto benchmark tries: powers of two up to `cap`, and `cap` itself. */
export const batchSizes = (cap: number): ReadonlyArray<number> => {
  const sizes: Array<number> = []
  for (let n = 1; n < cap; n *= 2) sizes.push(n)
  sizes.push(cap)
  return sizes
}

/**
 * The auto batch size (`batch: { maxSize: "auto", latencyBudget }`): run the remote's batch handler, through
 * `runBatch` (the worker runs it with the contexts), on batches of 1, 2, 4, ... up to `maxAutoSize`. At each size:
 * one untimed warm-up batch, then `runs` rounds of `concurrency` batches at once, timing each batch. Throughput is
 * payloads per second over the rounds; latency is a batch's p90 duration plus `maxWait`. The search stops at the first
 * size whose latency exceeds the budget (bigger batches only take longer); the size with the best throughput within
 * the budget wins. The result's `score` (the engine's `max_perf`) is the workload per second at that size; `batch`
 * holds the curve. Any item failing fails the benchmark, as a failing call does.
 */
export const runBatchSizes = <E, R>(
  remote: Remote.Any,
  runBatch: (
    payloads: Arr.NonEmptyReadonlyArray<any>
  ) => Effect.Effect<ReadonlyArray<Exit.Exit<unknown, unknown>>, E, R>
): Effect.Effect<Result, BenchmarkFailed, R> =>
  Effect.gen(function* () {
    const options = yield* declared(remote)
    const batch = remote.batch
    if (batch === undefined || batch.maxSize !== "auto" || batch.latencyBudget === undefined) {
      return yield* new BenchmarkFailed({
        remote: remote.name,
        detail: 'the batch size is measured only for a remote with batch: { maxSize: "auto", latencyBudget }'
      })
    }
    const runs = options.runs ?? DEFAULT_RUNS
    const concurrency = options.concurrency ?? Math.max(remote.concurrency, 1)
    const budget = Duration.toMillis(batch.latencyBudget)
    const maxWait = Duration.toMillis(batch.maxWait)
    const input = makeInput(remote, options)
    const workloadOf = (p: unknown) => options.workload?.(p) ?? DEFAULT_WORKLOAD

    /** One batch of `size` fresh inputs: its workload and its duration. */
    const oneBatch = (size: number) =>
      Effect.gen(function* () {
        const payloads = (yield* Effect.replicateEffect(input, size)) as unknown as Arr.NonEmptyReadonlyArray<unknown>
        const start = yield* Clock.currentTimeMillis
        const exits = yield* runBatch(payloads).pipe(Effect.catchAllCause(failed(remote)))
        const millis = (yield* Clock.currentTimeMillis) - start
        for (const exit of exits) {
          if (Exit.isFailure(exit)) return yield* failed(remote)(exit.cause)
        }
        let workload = 0
        for (const p of payloads) workload += workloadOf(p)
        return { millis, workload }
      })

    const t0 = yield* Clock.currentTimeMillis
    const points: Array<BatchPoint & { readonly workload: number; readonly roundMillis: ReadonlyArray<number> }> = []
    for (const size of batchSizes(batch.maxAutoSize)) {
      yield* oneBatch(size)
      const batchMillis: Array<number> = []
      const roundMillis: Array<number> = []
      let workload = 0
      for (let round = 0; round < runs; round++) {
        const start = yield* Clock.currentTimeMillis
        const results = yield* Effect.all(
          Array.from({ length: concurrency }, () => oneBatch(size)),
          { concurrency: "unbounded" }
        )
        roundMillis.push((yield* Clock.currentTimeMillis) - start)
        for (const r of results) {
          batchMillis.push(r.millis)
          workload += r.workload
        }
      }
      const total = roundMillis.reduce((a, b) => a + b, 0)
      const p90Millis = quantile(batchMillis, 0.9)
      const point = {
        size,
        batches: batchMillis.length,
        itemsPerSecond: perSecond(size * batchMillis.length, total),
        score: perSecond(workload, total),
        p50Millis: quantile(batchMillis, 0.5),
        p90Millis,
        latencyMillis: p90Millis + maxWait,
        withinBudget: p90Millis + maxWait <= budget,
        workload,
        roundMillis
      }
      points.push(point)
      if (!point.withinBudget) break
    }
    const totalMillis = (yield* Clock.currentTimeMillis) - t0

    const within = points.filter((p) => p.withinBudget)
    const best = within.reduce<(typeof points)[number] | undefined>(
      (acc, p) => (acc === undefined || p.itemsPerSecond > acc.itemsPerSecond ? p : acc),
      undefined
    )
    const chosen = best ?? points[0]!
    const over = points.find((p) => !p.withinBudget)
    const reason =
      best === undefined
        ? `no size is within the ${budget} ms budget (size 1: p90 ${chosen.p90Millis} ms + wait ${maxWait} ms); using 1`
        : `best throughput within the ${budget} ms budget` +
          (over === undefined
            ? ` (every size up to ${batch.maxAutoSize} is within it)`
            : ` (size ${over.size}: p90 ${over.p90Millis} ms + wait ${maxWait} ms is over)`)
    const roundTotal = chosen.roundMillis.reduce((a, b) => a + b, 0)
    return {
      remote: remote.name,
      score: chosen.score,
      runs,
      concurrency,
      calls: runs * concurrency * chosen.size,
      workload: chosen.workload,
      warmupMillis: totalMillis - roundTotal,
      roundMillis: chosen.roundMillis,
      totalMillis: roundTotal,
      batch: {
        points: points.map(({ roundMillis: _r, workload: _w, ...point }) => point),
        size: chosen.size,
        latencyBudgetMillis: budget,
        maxWaitMillis: maxWait,
        reason,
        totalMillis
      }
    }
  })

// ---------------------------------------------------------------------------
// stream remotes
// ---------------------------------------------------------------------------

/** What the benchmark of a stream remote counted. */
export interface StreamStats {
  /** Elements produced over the timed rounds. */
  readonly items: number
  /** Elements per second over the timed rounds: the score (a stream remote's work unit is one element). */
  readonly itemsPerSecond: number
  /** Elements per call, on average: a call's expected workload when `benchmark.workload` does not say. */
  readonly meanItemsPerCall: number
  /** Time from a call's start to its first element, median and p90 (calls that produced none are left out). */
  readonly firstItemP50Millis: number
  readonly firstItemP90Millis: number
}

/**
 * Run a stream remote's benchmark through `call` (the worker's call path): `warmup` untimed calls, then `runs` rounds
 * of `concurrency` calls at once, each consuming its whole stream. The work unit of a stream remote is one element:
 * the score (`max_perf`) is elements per second over the rounds, counting the elements really produced (the
 * `workload` function only estimates a call's elements before it runs). A failing stream fails the benchmark.
 */
export const runStream = <E, R>(
  remote: Remote.AnyStream,
  call: (payload: any) => Stream.Stream<unknown, E, R>
): Effect.Effect<Result, BenchmarkFailed, R> =>
  Effect.gen(function* () {
    const options = yield* declared(remote)
    const runs = options.runs ?? DEFAULT_RUNS
    const concurrency = options.concurrency ?? Math.max(remote.concurrency, 1)
    const warmup = options.warmup ?? 1
    const input = makeInput(remote, options)
    const firstItem: Array<number> = []
    const one = (timed: boolean) =>
      Effect.flatMap(input, (p) =>
        Effect.gen(function* () {
          const start = yield* Clock.currentTimeMillis
          let items = 0
          yield* Stream.runForEach(call(p), () =>
            items++ === 0 && timed
              ? Effect.map(Clock.currentTimeMillis, (now) => {
                  firstItem.push(now - start)
                })
              : Effect.void
          )
          return items
        }).pipe(Effect.catchAllCause(failed(remote)))
      )

    const t0 = yield* Clock.currentTimeMillis
    for (let i = 0; i < warmup; i++) yield* one(false)
    const t1 = yield* Clock.currentTimeMillis
    const roundMillis: Array<number> = []
    let items = 0
    for (let round = 0; round < runs; round++) {
      const start = yield* Clock.currentTimeMillis
      const counts = yield* Effect.all(
        Array.from({ length: concurrency }, () => one(true)),
        { concurrency: "unbounded" }
      )
      roundMillis.push((yield* Clock.currentTimeMillis) - start)
      for (const n of counts) items += n
    }
    const totalMillis = roundMillis.reduce((a, b) => a + b, 0)
    const itemsPerSecond = perSecond(items, totalMillis)
    return {
      remote: remote.name,
      score: itemsPerSecond,
      runs,
      concurrency,
      calls: runs * concurrency,
      workload: items,
      warmupMillis: t1 - t0,
      roundMillis,
      totalMillis,
      stream: {
        items,
        itemsPerSecond,
        meanItemsPerCall: items / (runs * concurrency),
        firstItemP50Millis: quantile(firstItem, 0.5),
        firstItemP90Millis: quantile(firstItem, 0.9)
      }
    }
  })

// ---------------------------------------------------------------------------
// the report
// ---------------------------------------------------------------------------

/**
 * The benchmark's lines in the start-up report: the score, and for an auto batch size the measured curve and the
 * choice, for a stream remote the elements counted.
 *
 * @example
 * ```
 * benchmark embed: score 6153.8 workload/s (30 calls, 3 rounds x 1, 780 ms; warm-up 2410 ms)
 *   batch size 16 (auto): best throughput within the 300 ms budget (size 32: p90 420 ms + wait 20 ms is over)
 *     size  items/s  p50 ms  p90 ms  + wait  budget 300 ms
 *        1      9.1     110     110     130  ok
 *       ...
 * ```
 */
export const formatLines = (b: Result): ReadonlyArray<string> => {
  const lines = [
    `benchmark ${b.remote}: score ${b.score.toFixed(1)} ${b.stream === undefined ? "workload" : "items"}/s ` +
      `(${b.calls} calls, ${b.runs} rounds x ${b.concurrency}${b.batch === undefined ? "" : ` batches of ${b.batch.size}`}, ` +
      `${b.totalMillis} ms; warm-up ${b.warmupMillis} ms)`
  ]
  if (b.stream !== undefined) {
    const s = b.stream
    lines.push(
      `  stream: ${s.items} items, ${s.meanItemsPerCall.toFixed(1)} per call; first item p50 ${s.firstItemP50Millis} ms, ` +
        `p90 ${s.firstItemP90Millis} ms`
    )
  }
  if (b.batch !== undefined) {
    const c = b.batch
    lines.push(`  batch size ${c.size} (auto): ${c.reason}`)
    lines.push(`    size  items/s  p50 ms  p90 ms  + wait  budget ${c.latencyBudgetMillis} ms`)
    for (const p of c.points) {
      lines.push(
        `    ${String(p.size).padStart(4)}  ${p.itemsPerSecond.toFixed(1).padStart(7)}  ${String(p.p50Millis).padStart(6)}` +
          `  ${String(p.p90Millis).padStart(6)}  ${String(p.latencyMillis).padStart(6)}  ` +
          `${p.withinBudget ? "ok" : "over"}${p.size === c.size ? "  <- chosen" : ""}`
      )
    }
  }
  return lines
}

const describe = (e: unknown): string =>
  e instanceof Error ? `${(e as { _tag?: string })._tag ?? e.name}: ${e.message}` : String(e)
