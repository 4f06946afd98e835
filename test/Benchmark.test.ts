import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Exit, Fiber, Schema, Stream, TestClock } from "effect"
import * as Benchmark from "../src/Benchmark.js"
import * as Remote from "../src/Remote.js"
import { BenchmarkFailed } from "../src/WorkerError.js"

const Payload = Schema.Struct({ n: Schema.Number })

/**
 * A batched remote whose batch of `size` payloads takes `cost(size)` ms on the test clock: a synthetic model with a
 * known cost curve.
 */
const synthetic = (
  cost: (size: number) => number,
  batch: { latencyBudget: Duration.DurationInput; maxWait?: Duration.DurationInput; maxAutoSize?: number },
  bench: Partial<Remote.BenchmarkOptions<{ n: number }, { n: number }>> = {}
) =>
  Remote.make(
    "synthetic",
    {
      payload: Payload,
      success: Schema.Number,
      batch: { maxSize: "auto", maxWait: batch.maxWait ?? "20 millis", ...batch },
      benchmark: { dataset: [{ n: 1 }, { n: 2 }], runs: 3, ...bench }
    },
    (payloads) =>
      Effect.as(
        Effect.sleep(`${cost(payloads.length)} millis`),
        payloads.map((p) => p.n * 10)
      )
  )

/** Run on the test clock: fork, let the clock run through every sleep, join. */
const onTestClock = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.gen(function* () {
    const fiber = yield* Effect.fork(effect)
    yield* TestClock.adjust("1 days")
    return yield* Fiber.join(fiber)
  })

const measure = <Rm extends Remote.Any & { readonly batch: Remote.Batching<any, any, any, never> | undefined }>(
  remote: Rm
) => onTestClock(Benchmark.runBatchSizes(remote, remote.batch!.handler))

describe("Benchmark.runBatchSizes (the auto batch size)", () => {
  it.effect("chooses the best throughput within the latency budget from a known cost curve", () =>
    Effect.gen(function* () {
      // 100 ms fixed cost + 10 ms per item: throughput grows with size, and so does latency.
      const remote = synthetic((n) => 100 + 10 * n, { latencyBudget: "300 millis" })
      const result = yield* measure(remote)
      const curve = result.batch!.points.map((p) => [p.size, p.p90Millis, p.latencyMillis, p.withinBudget])
      expect(curve).toEqual([
        [1, 110, 130, true],
        [2, 120, 140, true],
        [4, 140, 160, true],
        [8, 180, 200, true],
        [16, 260, 280, true],
        // Over the budget: the search stops here.
        [32, 420, 440, false]
      ])
      expect(result.batch!.size).toBe(16)
      expect(result.batch!.points[4]!.itemsPerSecond).toBeCloseTo((16 / 260) * 1000, 6)
      // max_perf is the workload per second at the chosen size (100 a call by default).
      expect(result.score).toBeCloseTo(((16 * 100) / 260) * 1000, 6)
      expect(result.calls).toBe(3 * 16)
      expect(result.roundMillis).toEqual([260, 260, 260])
      expect(result.batch!.reason).toBe(
        "best throughput within the 300 ms budget (size 32: p90 420 ms + wait 20 ms is over)"
      )
    })
  )

  it.effect("a curve that peaks: the peak wins, not the biggest size within the budget", () =>
    Effect.gen(function* () {
      // Superlinear cost (memory pressure): items/s peaks at 8 and falls after.
      const remote = synthetic((n) => 100 + 10 * n + n * n, { latencyBudget: "5 seconds" })
      const result = yield* measure(remote)
      expect(result.batch!.points.map((p) => p.size)).toEqual([1, 2, 4, 8, 16, 32])
      expect(result.batch!.points.every((p) => p.withinBudget)).toBe(true)
      expect(result.batch!.size).toBe(8)
      expect(result.batch!.reason).toBe("best throughput within the 5000 ms budget (every size up to 32 is within it)")
    })
  )

  it.effect("the cap bounds the search (and is tried even when not a power of two)", () =>
    Effect.gen(function* () {
      const remote = synthetic((n) => 100 + n, { latencyBudget: "1 second", maxAutoSize: 12 })
      const result = yield* measure(remote)
      expect(result.batch!.points.map((p) => p.size)).toEqual([1, 2, 4, 8, 12])
      expect(result.batch!.size).toBe(12)
      expect(Benchmark.batchSizes(1)).toEqual([1])
      expect(Benchmark.batchSizes(32)).toEqual([1, 2, 4, 8, 16, 32])
    })
  )

  it.effect("no size within the budget: size 1, and the report says why", () =>
    Effect.gen(function* () {
      const remote = synthetic(() => 500, { latencyBudget: "100 millis" })
      const result = yield* measure(remote)
      expect(result.batch!.points.map((p) => p.size)).toEqual([1])
      expect(result.batch!.size).toBe(1)
      expect(result.batch!.reason).toBe(
        "no size is within the 100 ms budget (size 1: p90 500 ms + wait 20 ms); using 1"
      )
    })
  )

  it.effect("p90 is of every batch at a size, so a slow outlier counts", () =>
    Effect.gen(function* () {
      let calls = 0
      // Every 3rd batch of 4 takes 400 ms instead of 140 ms (a GC pause, another tenant...).
      const remote = synthetic((n) => (n === 4 && ++calls % 3 === 0 ? 400 : 100 + 10 * n), {
        latencyBudget: "300 millis"
      })
      const result = yield* measure(remote)
      const four = result.batch!.points.find((p) => p.size === 4)!
      expect([four.p50Millis, four.p90Millis, four.withinBudget]).toEqual([140, 400, false])
      expect(result.batch!.size).toBe(2)
    })
  )

  it.effect("runs `concurrency` batches at once per round, and times each batch", () =>
    Effect.gen(function* () {
      const remote = synthetic((n) => 100 + 10 * n, { latencyBudget: "300 millis", maxAutoSize: 2 }, { concurrency: 2 })
      const result = yield* measure(remote)
      const one = result.batch!.points[0]!
      // Two batches of 1 at once each round (the synthetic model does not serialise them): 2 items per 110 ms.
      expect([one.batches, one.p90Millis]).toEqual([6, 110])
      expect(one.itemsPerSecond).toBeCloseTo((2 / 110) * 1000, 6)
    })
  )

  it.effect("an item that fails fails the benchmark, naming the error", () =>
    Effect.gen(function* () {
      class Bad extends Schema.TaggedError<Bad>()("Bad", { message: Schema.String }) {}
      const remote = Remote.make(
        "failing",
        {
          payload: Payload,
          success: Schema.Number,
          error: Bad,
          batch: { maxSize: "auto", maxWait: "1 millis", latencyBudget: "1 second" },
          benchmark: { dataset: [{ n: 1 }] }
        },
        (ps) => Effect.succeed(ps.map((_, i) => (i === 1 ? Exit.fail(new Bad({ message: "item 1 broke" })) : 1)))
      )
      const error = yield* Effect.flip(measure(remote))
      expect(error).toBeInstanceOf(BenchmarkFailed)
      expect(error.detail).toBe("Bad: item 1 broke")
    })
  )

  it.effect("refuses a remote without an auto batch size", () =>
    Effect.gen(function* () {
      const fixed = Remote.make(
        "fixed",
        {
          payload: Payload,
          success: Schema.Number,
          batch: { maxSize: 4, maxWait: 0 },
          benchmark: { dataset: [{ n: 1 }] }
        },
        (ps) => Effect.succeed(ps.map(() => 1))
      )
      const error = yield* Effect.flip(Benchmark.runBatchSizes(fixed, fixed.batch!.handler))
      expect(error.detail).toMatch(/maxSize: "auto"/)
    })
  )
})

describe("Benchmark.runStream", () => {
  // Emits `n` elements, the first after 50 ms, then one every 10 ms (a prefill, then tokens).
  const tokens = Remote.stream(
    "tokens",
    {
      payload: Payload,
      element: Schema.Number,
      benchmark: { dataset: [{ n: 4 }, { n: 8 }], runs: 2, warmup: 1 }
    },
    ({ n }) =>
      Stream.range(1, n).pipe(Stream.mapEffect((i) => Effect.as(Effect.sleep(i === 1 ? "50 millis" : "10 millis"), i)))
  )

  it.effect("scores elements per second, counting the elements really produced", () =>
    Effect.gen(function* () {
      const result = yield* onTestClock(Benchmark.runStream(tokens, tokens.handler))
      // Warm-up takes {n: 4}; the rounds take {n: 8} (50 + 7 * 10 = 120 ms) and {n: 4} (80 ms).
      expect(result.roundMillis).toEqual([120, 80])
      expect(result.stream!.items).toBe(12)
      expect(result.score).toBeCloseTo((12 / 200) * 1000, 6)
      expect(result.workload).toBe(12)
      expect(result.stream!.meanItemsPerCall).toBe(6)
      expect([result.stream!.firstItemP50Millis, result.stream!.firstItemP90Millis]).toEqual([50, 50])
      expect(result.warmupMillis).toBe(80)
    })
  )

  it.effect("a stream that fails midway fails the benchmark", () =>
    Effect.gen(function* () {
      const failing = Remote.stream(
        "failing",
        { payload: Payload, element: Schema.Number, benchmark: { dataset: [{ n: 1 }] } },
        () => Stream.concat(Stream.make(1), Stream.die(new Error("cuda error")))
      )
      const error = yield* Effect.flip(Benchmark.runStream(failing, failing.handler))
      expect(error.detail).toBe("Error: cuda error")
    })
  )
})

describe("Benchmark.formatLines", () => {
  it.effect("shows the curve and the choice", () =>
    Effect.gen(function* () {
      const remote = synthetic((n) => 100 + 10 * n, { latencyBudget: "300 millis", maxAutoSize: 4 })
      const lines = Benchmark.formatLines(yield* measure(remote))
      expect(lines).toEqual([
        "benchmark synthetic: score 2857.1 workload/s (12 calls, 3 rounds x 1 batches of 4, 420 ms; warm-up 1060 ms)",
        "  batch size 4 (auto): best throughput within the 300 ms budget (every size up to 4 is within it)",
        "    size  items/s  p50 ms  p90 ms  + wait  budget 300 ms",
        "       1      9.1     110     110     130  ok",
        "       2     16.7     120     120     140  ok",
        "       4     28.6     140     140     160  ok  <- chosen"
      ])
    })
  )

  it.effect("shows a stream's elements", () =>
    Effect.gen(function* () {
      const remote = Remote.stream(
        "s",
        { payload: Payload, element: Schema.Number, benchmark: { dataset: [{ n: 1 }], runs: 1, warmup: 0 } },
        () => Stream.make(1, 2, 3)
      )
      const lines = Benchmark.formatLines(yield* Benchmark.runStream(remote, remote.handler))
      expect(lines[0]).toMatch(/^benchmark s: score \d+\.\d items\/s \(1 calls, 1 rounds x 1, 0 ms; warm-up 0 ms\)$/)
      expect(lines[1]).toBe("  stream: 3 items, 3.0 per call; first item p50 0 ms, p90 0 ms")
    })
  )
})
