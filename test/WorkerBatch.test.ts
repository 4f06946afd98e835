import { describe, expect, it } from "@effect/vitest"
import { Context, Deferred, Duration, Effect, Either, Exit, Fiber, Option, Schema, TestClock } from "effect"
import * as Deployment from "../src/Deployment.js"
import * as Remote from "../src/Remote.js"
import * as Worker from "../src/Worker.js"
import * as WorkerContext from "../src/WorkerContext.js"
import { CallTimeout } from "../src/WorkerError.js"
import { ping } from "./fixtures/probe.js"
import { request } from "./fixtures/serving.js"

const noBench = { benchmark: false } as const

class Odd extends Schema.TaggedError<Odd>()("Odd", { x: Schema.Number }) {}

/** A context batches need: proves a batch runs with the entered contexts. */
class Scale extends Context.Tag("Scale")<Scale, number>() {}
const ScaleLive = WorkerContext.make(Scale, { enter: Effect.succeed(10) })

/**
 * A batched remote recording each batch it runs. A batch takes `cost(size)` ms on the clock; `odd` payloads fail
 * their own caller only (an `Either` per item).
 */
const batched = (
  options: {
    readonly maxSize?: number | "auto"
    readonly maxWait?: Duration.DurationInput
    readonly concurrency?: number
    readonly timeout?: Duration.DurationInput
    readonly latencyBudget?: Duration.DurationInput
    readonly cost?: (size: number) => number
    readonly benchmark?: Remote.BenchmarkOptions<{ x: number }, { x: number }>
  } = {}
) => {
  const batches: Array<ReadonlyArray<number>> = []
  const cost = options.cost ?? (() => 0)
  const batch: Remote.BatchOptions =
    options.maxSize === "auto"
      ? {
          maxSize: "auto",
          maxWait: options.maxWait ?? "10 millis",
          latencyBudget: options.latencyBudget ?? "300 millis"
        }
      : { maxSize: options.maxSize ?? 4, maxWait: options.maxWait ?? "1 second" }
  const remote = Remote.make(
    "times",
    {
      payload: Schema.Struct({ x: Schema.Number }),
      success: Schema.Number,
      error: Odd,
      batch,
      ...(options.concurrency === undefined ? {} : { concurrency: options.concurrency }),
      ...(options.timeout === undefined ? {} : { timeout: options.timeout }),
      ...(options.benchmark === undefined ? {} : { benchmark: options.benchmark })
    },
    (payloads) =>
      Effect.gen(function* () {
        const scale = yield* Scale
        batches.push(payloads.map((p) => p.x))
        const c = cost(payloads.length)
        if (c > 0) yield* Effect.sleep(`${c} millis`)
        return payloads.map(({ x }) => (x % 2 === 1 ? Either.left(new Odd({ x })) : Either.right(x * scale)))
      })
  )
  return { remote, batches }
}

const appOf = (remote: ReturnType<typeof batched>["remote"], withPing = true) =>
  Deployment.make("batching", { contexts: [ScaleLive], remotes: withPing ? [remote, ping] : [remote] })

/** Let forked fibers run until `predicate` holds (no clock time passes). */
const settle = <A>(effect: Effect.Effect<A>, predicate: (a: A) => boolean) =>
  Effect.gen(function* () {
    for (let i = 0; i < 200; i++) {
      if (predicate(yield* effect)) return
      yield* Effect.yieldNow()
    }
    return expect.fail("did not settle")
  })

const poll = <A, E>(fiber: Fiber.Fiber<A, E>) =>
  Effect.gen(function* () {
    for (let i = 0; i < 50; i++) yield* Effect.yieldNow()
    return yield* Fiber.poll(fiber)
  })

describe("dynamic batching in the worker", () => {
  it.scoped("a full batch runs at once; each caller gets its own result, in order, or its own error", () =>
    Effect.gen(function* () {
      const { remote, batches } = batched({ maxSize: 4, maxWait: "1 second" })
      const worker = yield* Worker.make(appOf(remote), noBench)
      const calls = yield* Effect.fork(
        Effect.all(
          [2, 4, 5, 6].map((x) => Effect.either(worker.call(remote, { x }))),
          { concurrency: "unbounded" }
        )
      )
      // No clock time passes: four calls fill the batch.
      const exit = yield* poll(calls)
      expect(batches).toEqual([[2, 4, 5, 6]])
      const results = Option.getOrThrow(exit).pipe(Exit.getOrElse(() => expect.fail("the calls failed")))
      expect(results.map((r) => (Either.isRight(r) ? r.right : r.left))).toEqual([20, 40, new Odd({ x: 5 }), 60])
    })
  )

  it.scoped("a batch that does not fill runs once the oldest call has waited maxWait", () =>
    Effect.gen(function* () {
      const { remote, batches } = batched({ maxSize: 4, maxWait: "50 millis" })
      const worker = yield* Worker.make(appOf(remote), noBench)
      const a = yield* Effect.fork(worker.call(remote, { x: 2 }))
      yield* TestClock.adjust("20 millis")
      const b = yield* Effect.fork(worker.call(remote, { x: 4 }))
      yield* TestClock.adjust("29 millis")
      expect(batches).toEqual([])
      yield* TestClock.adjust("1 millis")
      expect(yield* Fiber.join(a)).toBe(20)
      expect(yield* Fiber.join(b)).toBe(40)
      expect(batches).toEqual([[2, 4]])
    })
  )

  it.scoped("concurrency counts batches; a caller interrupted before its batch starts is left out of it", () =>
    Effect.gen(function* () {
      const { remote, batches } = batched({ maxSize: 2, maxWait: "1 second", cost: () => 100 })
      const worker = yield* Worker.make(appOf(remote), noBench)
      const first = yield* Effect.fork(
        Effect.all(
          [2, 4].map((x) => worker.call(remote, { x })),
          { concurrency: 2 }
        )
      )
      yield* settle(
        Effect.sync(() => batches.length),
        (n) => n === 1
      )
      // The one slot is busy: these wait, as calls queued for a batch.
      const leaving = yield* Effect.fork(worker.call(remote, { x: 6 }))
      const staying = yield* Effect.fork(
        Effect.all(
          [8, 10].map((x) => worker.call(remote, { x })),
          { concurrency: 2 }
        )
      )
      yield* settle(worker.stats, (s) => s[0]!.queued === 3 && s[0]!.running === 2)
      yield* Fiber.interrupt(leaving)
      yield* TestClock.adjust("100 millis")
      expect(yield* Fiber.join(first)).toEqual([20, 40])
      yield* TestClock.adjust("100 millis")
      expect(yield* Fiber.join(staying)).toEqual([80, 100])
      expect(batches).toEqual([
        [2, 4],
        [8, 10]
      ])
      expect((yield* worker.metrics).pendingWorkload).toBe(0)
    })
  )

  it.scoped("the timeout of a batched call counts from its batch's start", () =>
    Effect.gen(function* () {
      const { remote } = batched({ maxSize: 1, maxWait: "0 millis", cost: () => 300, timeout: "500 millis" })
      const worker = yield* Worker.make(appOf(remote), noBench)
      const first = yield* Effect.fork(worker.call(remote, { x: 2 }))
      const second = yield* Effect.fork(Effect.either(worker.call(remote, { x: 4 })))
      // The second waits 300 ms for the slot, then runs 300 ms: within its 500 ms from its start.
      yield* TestClock.adjust("600 millis")
      expect(yield* Fiber.join(first)).toBe(20)
      expect(yield* Fiber.join(second)).toEqual(Either.right(40))

      const { remote: slow } = batched({ maxSize: 1, maxWait: "0 millis", cost: () => 800, timeout: "500 millis" })
      const w2 = yield* Worker.make(Deployment.make("slow", { contexts: [ScaleLive], remotes: [slow, ping] }), noBench)
      const late = yield* Effect.fork(Effect.flip(w2.call(slow, { x: 2 })))
      yield* TestClock.adjust("500 millis")
      expect(yield* Fiber.join(late)).toBeInstanceOf(CallTimeout)
    })
  )

  it.scoped("auto: the benchmark measures the cost curve, chooses a size, and the batcher cuts batches at it", () =>
    Effect.gen(function* () {
      // 100 ms fixed + 10 ms per item; budget 300 ms with a 10 ms wait: sizes up to 16 fit, 32 does not.
      const { remote, batches } = batched({
        maxSize: "auto",
        maxWait: "10 millis",
        latencyBudget: "300 millis",
        cost: (n) => 100 + 10 * n,
        benchmark: { dataset: [{ x: 2 }], runs: 2, workload: () => 1 }
      })
      const started = yield* Worker.start(appOf(remote, false))
      yield* TestClock.adjust("1 minute")
      yield* started.awaitReady
      const report = yield* started.report
      expect(report.benchmark?.batch?.size).toBe(16)
      expect(report.benchmark?.batch?.points.map((p) => p.size)).toEqual([1, 2, 4, 8, 16, 32])
      // max_perf: the workload per second at the chosen size (16 items in 260 ms).
      expect(report.benchmark?.score).toBeCloseTo((16 / 260) * 1000, 6)
      const text = Worker.formatReport(report)
      expect(text).toContain("batch size 16 (auto): best throughput within the 300 ms budget")
      expect(text).toContain("16     61.5     260     260     270  ok  <- chosen")

      batches.length = 0
      const calls = yield* Effect.fork(
        Effect.all(
          Array.from({ length: 20 }, (_, i) => started.call(remote, { x: 2 * i })),
          { concurrency: "unbounded" }
        )
      )
      yield* TestClock.adjust("1 second")
      expect((yield* Fiber.join(calls)).slice(0, 3)).toEqual([0, 20, 40])
      expect(batches.map((b) => b.length)).toEqual([16, 4])
    })
  )

  it.scoped("a fixed size's benchmark sends maxSize x concurrency calls per round, through the batcher", () =>
    Effect.gen(function* () {
      const { remote, batches } = batched({
        maxSize: 4,
        maxWait: "5 millis",
        concurrency: 2,
        cost: () => 100,
        benchmark: { dataset: [{ x: 2 }], runs: 2, warmup: 0 }
      })
      const started = yield* Worker.start(appOf(remote, false))
      yield* TestClock.adjust("1 minute")
      yield* started.awaitReady
      const report = yield* started.report
      expect(report.benchmark?.concurrency).toBe(8)
      expect(batches.map((b) => b.length)).toEqual([4, 4, 4, 4])
      // 16 calls of workload 100 in 2 rounds of 100 ms.
      expect(report.benchmark?.score).toBeCloseTo(8000, 6)
    })
  )

  it.scopedLive("over HTTP: concurrent calls share a batch, each answered with its own result", () =>
    Effect.gen(function* () {
      const { remote, batches } = batched({ maxSize: 3, maxWait: "2 seconds" })
      const { url } = yield* Worker.serveEffect(appOf(remote), {
        port: 0,
        host: "127.0.0.1",
        handleSignals: false,
        benchmark: false
      })
      const replies = yield* Effect.all(
        [2, 3, 4].map((x) => request(`${url}/remote/times`, { body: { payload: { kwargs: { x } } } })),
        { concurrency: "unbounded" }
      )
      expect(batches.map((b) => [...b].sort())).toEqual([[2, 3, 4]])
      expect(replies.map((r) => r.status)).toEqual([200, 200, 200])
      expect(replies[0]!.json).toEqual({ result: { ok: 20 } })
      expect(replies[1]!.json.result.err.contents).toMatchObject({ _tag: "Odd", x: 3 })
      expect(replies[2]!.json).toEqual({ result: { ok: 40 } })
      const metrics = yield* Effect.map(request(`${url}/metrics`), (r) => r.text)
      expect(metrics).toContain(`worker_calls_total{deployment="batching",remote="times",outcome="ok"} 2`)
      expect(metrics).toContain(`worker_calls_total{deployment="batching",remote="times",outcome="error"} 1`)
    })
  )

  it.scoped("shutdown: queued calls of a batch that never started are interrupted, batches in flight finish", () =>
    Effect.gen(function* () {
      const { remote, batches } = batched({ maxSize: 2, maxWait: "1 second", cost: () => 100 })
      const worker = yield* Worker.make(appOf(remote), { ...noBench, drainTimeout: "10 seconds" })
      const running = yield* Effect.fork(
        Effect.all(
          [2, 4].map((x) => worker.call(remote, { x })),
          { concurrency: 2 }
        )
      )
      yield* settle(
        Effect.sync(() => batches.length),
        (n) => n === 1
      )
      const shutdown = yield* Effect.fork(worker.shutdown)
      yield* TestClock.adjust("100 millis")
      expect(yield* Fiber.join(running)).toEqual([20, 40])
      yield* Fiber.join(shutdown)
      expect((yield* worker.report).phase).toBe("stopped")
    })
  )

  it.scoped("a batch still running when the drain times out is interrupted with its callers", () =>
    Effect.gen(function* () {
      const gate = yield* Deferred.make<void>()
      const stuck = Remote.make(
        "stuck",
        {
          payload: Schema.Struct({ x: Schema.Number }),
          success: Schema.Number,
          batch: { maxSize: 2, maxWait: "10 millis" }
        },
        (payloads) =>
          Effect.as(
            Deferred.await(gate),
            payloads.map((p) => p.x)
          )
      )
      const worker = yield* Worker.make(Deployment.make("s", { contexts: [], remotes: [stuck, ping] }), {
        ...noBench,
        drainTimeout: "1 second"
      })
      const calls = yield* Effect.fork(
        Effect.all(
          [1, 2].map((x) => worker.call(stuck, { x })),
          { concurrency: 2 }
        )
      )
      yield* settle(worker.stats, (s) => s[0]!.running === 2)
      const shutdown = yield* Effect.fork(worker.shutdown)
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(shutdown)
      const exit = yield* Fiber.await(calls)
      expect(Exit.isInterrupted(exit)).toBe(true)
    })
  )
})
