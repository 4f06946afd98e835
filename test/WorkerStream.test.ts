import { describe, expect, it } from "@effect/vitest"
import { Chunk, Context, Deferred, Effect, Exit, Fiber, Option, Queue, Schema, Stream, TestClock } from "effect"
import * as Deployment from "../src/Deployment.js"
import * as Remote from "../src/Remote.js"
import * as Worker from "../src/Worker.js"
import * as WorkerContext from "../src/WorkerContext.js"
import { CallTimeout, PayloadInvalid, RemoteFailure, WorkerUnavailable } from "../src/WorkerError.js"
import { ping } from "./fixtures/probe.js"

const noBench = { benchmark: false } as const

class OutOfTokens extends Schema.TaggedError<OutOfTokens>()("OutOfTokens", { after: Schema.Number }) {}

/** A context the stream remotes need: proves a stream runs with the entered contexts. */
class Vocab extends Context.Tag("Vocab")<Vocab, ReadonlyArray<string>>() {}
const VocabLive = WorkerContext.make(Vocab, { enter: Effect.succeed(["the", "cat", "sat", "on", "a", "mat"]) })

/** `n` words of the vocabulary, one a second; fails with `OutOfTokens` past the vocabulary. */
const words = Remote.stream(
  "words",
  {
    payload: Schema.Struct({ n: Schema.Int }),
    element: Schema.String,
    error: OutOfTokens
  },
  ({ n }) =>
    Stream.unwrap(
      Effect.map(Vocab, (vocab) =>
        Stream.range(0, n - 1).pipe(
          Stream.mapEffect((i) =>
            i < vocab.length
              ? Effect.as(Effect.sleep("1 second"), vocab[i]!)
              : Effect.fail(new OutOfTokens({ after: vocab.length }))
          )
        )
      )
    )
)

/** Let forked fibers run until `predicate` holds (no clock time passes). */
const settle = <A>(effect: Effect.Effect<A>, predicate: (a: A) => boolean) =>
  Effect.gen(function* () {
    for (let i = 0; i < 200; i++) {
      if (predicate(yield* effect)) return
      yield* Effect.yieldNow()
    }
    return expect.fail("did not settle")
  })

/** The exit of a fiber that must have finished by now (after a `TestClock.adjust`). */
const finished = <A, E>(fiber: Fiber.Fiber<A, E>) =>
  Effect.gen(function* () {
    for (let i = 0; i < 200; i++) {
      const exit = yield* Fiber.poll(fiber)
      if (Option.isSome(exit)) return exit.value
      yield* Effect.yieldNow()
    }
    return expect.fail("the fiber is still running: it should have finished by now")
  })

const app = Deployment.make("streams", { contexts: [VocabLive], remotes: [words, ping] })

describe("stream remotes in process", () => {
  it.scoped("call: typed elements as they are produced, with the entered contexts", () =>
    Effect.gen(function* () {
      const worker = yield* Worker.make(app, noBench)
      const seen: Array<string> = []
      const fiber = yield* Effect.fork(
        Stream.runForEach(worker.call(words, { n: 3 }), (w) => Effect.sync(() => seen.push(w)))
      )
      yield* TestClock.adjust("1 second")
      yield* settle(
        Effect.sync(() => seen.length),
        (n) => n === 1
      )
      // The second element is not produced yet: the first arrived without waiting for it.
      expect(seen).toEqual(["the"])
      yield* TestClock.adjust("2 seconds")
      expect(Exit.isSuccess(yield* finished(fiber))).toBe(true)
      expect(seen).toEqual(["the", "cat", "sat"])
    })
  )

  it.scoped("call: the declared error midway, after the elements before it", () =>
    Effect.gen(function* () {
      const worker = yield* Worker.make(app, noBench)
      const seen: Array<string> = []
      const fiber = yield* Effect.fork(
        Effect.flip(Stream.runForEach(worker.call(words, { n: 8 }), (w) => Effect.sync(() => seen.push(w))))
      )
      yield* TestClock.adjust("6 seconds")
      const exit = yield* finished(fiber)
      expect(Exit.isSuccess(exit) && exit.value).toBeInstanceOf(OutOfTokens)
      expect(seen).toHaveLength(6)
    })
  )

  it.scoped("a consumer that stops early interrupts the stream: its finalizer runs, its slot is free", () =>
    Effect.gen(function* () {
      const closed = yield* Deferred.make<void>()
      const endless = Remote.stream("endless", { payload: Schema.Struct({}), element: Schema.Number }, () =>
        Stream.iterate(0, (n) => n + 1).pipe(Stream.ensuring(Deferred.succeed(closed, undefined)))
      )
      const worker = yield* Worker.make(Deployment.make("e", { contexts: [], remotes: [endless, ping] }), noBench)
      const first = yield* Stream.runCollect(Stream.take(worker.call(endless, {}), 5))
      expect(Chunk.toReadonlyArray(first)).toEqual([0, 1, 2, 3, 4])
      expect(yield* Deferred.isDone(closed)).toBe(true)
      expect((yield* worker.stats).find((s) => s.name === "endless")).toMatchObject({ running: 0, queued: 0 })
      expect((yield* worker.metrics).pendingWorkload).toBe(0)
    })
  )

  it.scoped("a stream holds its slot until it ends: the next one waits", () =>
    Effect.gen(function* () {
      const worker = yield* Worker.make(app, noBench)
      const a = yield* Effect.fork(Stream.runCollect(worker.call(words, { n: 2 })))
      const b = yield* Effect.fork(Stream.runCollect(worker.call(words, { n: 1 })))
      yield* settle(worker.stats, (s) => s[0]!.running === 1 && s[0]!.queued === 1)
      yield* TestClock.adjust("2 seconds")
      expect(Chunk.toReadonlyArray(yield* Fiber.join(a))).toEqual(["the", "cat"])
      // b started only when a ended: one second more.
      expect(Option.isNone(yield* Fiber.poll(b))).toBe(true)
      yield* TestClock.adjust("1 second")
      expect(Chunk.toReadonlyArray(yield* Fiber.join(b))).toEqual(["the"])
    })
  )

  it.scoped("the timeout covers the whole stream, not each element", () =>
    Effect.gen(function* () {
      const timed = Remote.stream(
        "timed",
        { payload: Schema.Struct({}), element: Schema.Number, timeout: "2500 millis" },
        () => Stream.iterate(0, (n) => n + 1).pipe(Stream.tap(() => Effect.sleep("1 second")))
      )
      const worker = yield* Worker.make(Deployment.make("t", { contexts: [], remotes: [timed, ping] }), noBench)
      const seen: Array<number> = []
      const fiber = yield* Effect.fork(
        Effect.flip(Stream.runForEach(worker.call(timed, {}), (n) => Effect.sync(() => seen.push(n))))
      )
      yield* TestClock.adjust("2500 millis")
      const exit = yield* finished(fiber)
      expect(Exit.isSuccess(exit) && exit.value).toBeInstanceOf(CallTimeout)
      expect(seen).toEqual([0, 1])
    })
  )

  it.scoped("invoke: payload decoded first; the Stream of encoded elements is the call, counted when it ends", () =>
    Effect.gen(function* () {
      const worker = yield* Worker.make(app, noBench)
      const invalid = yield* Effect.flip(worker.invoke("words", { n: "x" }))
      expect(invalid).toBeInstanceOf(PayloadInvalid)
      const stream = (yield* worker.invoke("words", { n: 2 })) as Stream.Stream<unknown, Worker.InvokeError>
      const fiber = yield* Effect.fork(Stream.runCollect(stream))
      yield* TestClock.adjust("2 seconds")
      expect(Chunk.toReadonlyArray(yield* Fiber.join(fiber))).toEqual(["the", "cat"])
      // Each run of the stream is a call of its own.
      const again = yield* Effect.fork(Effect.flip(Stream.runCollect(stream.pipe(Stream.take(7)))))
      const bad = (yield* worker.invoke("words", { n: 9 })) as Stream.Stream<unknown, Worker.InvokeError>
      const failed = yield* Effect.fork(Effect.flip(Stream.runDrain(bad)))
      yield* TestClock.adjust("10 seconds")
      yield* Fiber.interrupt(again)
      const declared = yield* Fiber.join(failed)
      expect(declared).toBeInstanceOf(RemoteFailure)
      expect((declared as RemoteFailure).encoded).toMatchObject({ _tag: "OutOfTokens", after: 6 })
      const metrics = yield* worker.metrics
      const counters = metrics.remotes.find((r) => r.name === "words")!
      expect(counters.calls).toMatchObject({ ok: 2, error: 1, invalid: 1 })
      expect(counters.items).toBe(2 + 2 + 6)
    })
  )

  it.scoped("drain waits for open streams; past the drain timeout they are interrupted", () =>
    Effect.gen(function* () {
      const worker = yield* Worker.make(app, { ...noBench, drainTimeout: "10 seconds" })
      const short = yield* Effect.fork(Stream.runCollect(worker.call(words, { n: 3 })))
      yield* settle(worker.stats, (s) => s[0]!.running === 1)
      const shutdown = yield* Effect.fork(worker.shutdown)
      yield* settle(
        Effect.map(worker.report, (r) => r.phase),
        (p) => p === "draining"
      )
      // New calls are refused while the open stream finishes.
      const refused = yield* Effect.flip(Stream.runDrain(worker.call(words, { n: 1 })))
      expect(refused).toBeInstanceOf(WorkerUnavailable)
      yield* TestClock.adjust("3 seconds")
      expect(Chunk.toReadonlyArray(yield* Fiber.join(short))).toEqual(["the", "cat", "sat"])
      yield* Fiber.join(shutdown)
      expect((yield* worker.report).phase).toBe("stopped")
    })
  )

  it.scoped("a stream still open when the drain times out is interrupted before the contexts exit", () =>
    Effect.gen(function* () {
      const exited = yield* Deferred.make<void>()
      const order: Array<string> = []
      const Held = Context.GenericTag<"Held", number>("Held")
      const held = WorkerContext.make(Held, {
        enter: Effect.succeed(1),
        exit: () => Effect.sync(() => order.push("context exited"))
      })
      const forever = Remote.stream("forever", { payload: Schema.Struct({}), element: Schema.Number }, () =>
        Stream.unwrap(Effect.map(Held, (h) => Stream.repeatEffect(Effect.as(Effect.sleep("1 second"), h)))).pipe(
          Stream.ensuring(Effect.sync(() => order.push("stream finalized")))
        )
      )
      const worker = yield* Worker.make(Deployment.make("f", { contexts: [held], remotes: [forever, ping] }), {
        ...noBench,
        drainTimeout: "5 seconds"
      })
      const consumer = yield* Effect.fork(Stream.runDrain(worker.call(forever, {})))
      yield* settle(worker.stats, (s) => s[0]!.running === 1)
      const shutdown = yield* Effect.fork(Effect.ensuring(worker.shutdown, Deferred.succeed(exited, undefined)))
      yield* TestClock.adjust("5 seconds")
      yield* Fiber.join(shutdown)
      expect(order).toEqual(["stream finalized", "context exited"])
      const exit = yield* finished(consumer)
      expect(Exit.isInterrupted(exit)).toBe(true)
    })
  )

  it.scoped("the benchmark of a stream remote counts elements per second; a call's workload is its measured mean", () =>
    Effect.gen(function* () {
      const gate = yield* Queue.unbounded<void>()
      const counted = Remote.stream(
        "counted",
        {
          payload: Schema.Struct({ n: Schema.Int, wait: Schema.optional(Schema.Boolean) }),
          element: Schema.Number,
          benchmark: { dataset: [{ n: 2 }, { n: 4 }], runs: 2, warmup: 0, concurrency: 1 }
        },
        ({ n, wait }) =>
          Stream.range(1, n).pipe(Stream.tap(() => (wait === true ? Queue.take(gate) : Effect.sleep("100 millis"))))
      )
      const deployment = Deployment.make("b", { contexts: [], remotes: [counted] })
      const started = yield* Worker.start(deployment)
      // Rounds: n=2 (200 ms), then n=4 (400 ms): 6 elements in 600 ms.
      yield* TestClock.adjust("1 second")
      yield* started.awaitReady
      const report = yield* started.report
      expect(report.benchmark?.score).toBeCloseTo(10, 5)
      expect(report.benchmark?.stream).toMatchObject({ items: 6, meanItemsPerCall: 3 })
      expect(Worker.formatReport(report)).toContain("benchmark counted: score 10.0 items/s")
      // A stream open now counts the measured mean (3 elements) as its pending workload until it ends.
      const open = yield* Effect.fork(Stream.runDrain(started.call(counted, { n: 1, wait: true })))
      yield* settle(started.metrics, (m) => m.pendingWorkload === 3)
      yield* Queue.offer(gate, undefined)
      yield* Fiber.join(open)
      expect((yield* started.metrics).pendingWorkload).toBe(0)
    })
  )
})
