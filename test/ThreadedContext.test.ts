import { describe, expect, it } from "@effect/vitest"
import * as Transferable from "@effect/platform/Transferable"
import { Cause, Context, Duration, Effect, Exit, Fiber, Schema, TestClock } from "effect"
import { Deployment, Remote, ThreadedContext, Worker, WorkerContext } from "../src/index.js"
import { CallTimeout, StartupFailed, ThreadFailed } from "../src/WorkerError.js"
import { esmUrl } from "../src/internal/threadPool.js"
import { spawnWorker } from "./fixtures/child.js"
import { Preloaded } from "./fixtures/thread-preload.js"
import {
  Block,
  Crash,
  type Data,
  Die,
  Echo,
  Fail,
  Journal,
  makeJournal,
  Refused,
  type Requests,
  waitFor
} from "./fixtures/thread-module.js"

const threadModule = new URL("./fixtures/thread-module.js", import.meta.url)

/** A pool of `threads` threads running the fixture module, a deployment with it, and the journal its threads write. */
const setup = (
  options: {
    readonly threads?: number
    readonly data?: Omit<Data, "journal">
    readonly module?: URL
    readonly export?: string
    readonly exitTimeout?: Duration.DurationInput
  } = {}
) => {
  const journal = makeJournal()
  class Pool extends Context.Tag("Pool")<Pool, ThreadedContext.Pool<Requests>>() {}
  const PoolLive = ThreadedContext.make(Pool, {
    module: options.module ?? threadModule,
    export: options.export,
    threads: options.threads,
    data: { journal, ...options.data },
    exitTimeout: options.exitTimeout
  })
  const exits: Array<string> = []
  class Other extends Context.Tag("Other")<Other, string>() {}
  const OtherLive = WorkerContext.make(Other, {
    enter: Effect.succeed("other"),
    exit: (_, exit) => Effect.sync(() => exits.push(exit._tag))
  })
  const echo = Remote.make(
    "echo",
    {
      payload: Schema.Struct({ text: Schema.String }),
      success: Schema.String,
      concurrency: PoolLive,
      benchmark: { dataset: [{ text: "a" }, { text: "b" }], runs: 2 }
    },
    ({ text }) =>
      Effect.flatMap(Pool, (pool) =>
        Effect.map(pool.execute(new Echo({ text, bytes: new Uint8Array([1, 2, 3]) })), (r) => `${r.text}@${r.thread}`)
      ).pipe(Effect.orDie)
  )
  const block = Remote.make("block", { payload: Schema.Struct({}), success: Schema.Void, timeout: "5 seconds" }, () =>
    Effect.flatMap(Pool, (pool) => pool.execute(new Block())).pipe(Effect.orDie)
  )
  const app = Deployment.make("threads", { contexts: [PoolLive, OtherLive], remotes: [echo, block] })
  const count = (thread: number, slot: number) => Atomics.load(new Int32Array(journal), Journal.row(thread) + slot)
  const until = (thread: number, slot: number, value: number) =>
    Effect.promise(() => waitFor(journal, Journal.row(thread) + slot, value))
  const untilAny = (slot: number, value: number) => Effect.promise(() => waitFor(journal, slot, value))
  return { Pool, PoolLive, app, echo, block, journal, count, until, untilAny, exits }
}

describe("ThreadedContext", () => {
  it.scoped(
    "enters every thread's contexts in parallel, lists them in the report, and admits one call per thread",
    () =>
      Effect.gen(function* () {
        // Each thread's first context waits until both threads are entering it: one after the other never gets there
        const { Pool, app, count, until } = setup({ threads: 2, data: { barrier: 2 } })
        const worker = yield* Worker.make(app)
        const report = yield* worker.report
        const states = Object.fromEntries(report.contexts.map((c) => [c.key, c.state]))
        expect(states).toEqual({
          Pool: "entered",
          "Pool/1/Store": "entered",
          "Pool/1/Model": "entered",
          "Pool/2/Store": "entered",
          "Pool/2/Model": "entered",
          Other: "entered"
        })
        const line = (key: string) => report.contexts.find((c) => c.key === key)!
        expect(line("Pool").notes).toEqual(["2 threads running test/fixtures/thread-module.ts"])
        expect(line("Pool/2/Store").notes).toEqual(["store of thread 2"])
        expect(line("Pool/1/Model").dependsOn).toEqual(["Pool/1/Store"])
        expect(line("Pool/1/Store").enterMillis).toBeGreaterThanOrEqual(0)
        expect([count(1, Journal.storeEntered), count(2, Journal.storeEntered)]).toEqual([1, 1])

        // Concurrency follows the pool: the remote admits 2 calls at once, and so does its benchmark
        expect((yield* worker.stats).find((s) => s.name === "echo")?.concurrency).toBe(2)
        expect(report.benchmark?.concurrency).toBe(2)
        // Two calls at once run in the two threads
        const pool = yield* WorkerContext.get(Pool)
        const before = [count(1, Journal.started), count(2, Journal.started)] as const
        const blocked = yield* Effect.fork(
          Effect.all([pool.execute(new Block()), pool.execute(new Block())], { concurrency: 2 })
        )
        yield* until(1, Journal.started, before[0] + 1)
        yield* until(2, Journal.started, before[1] + 1)
        expect((yield* pool.stats).busy).toBe(2)
        yield* Fiber.interrupt(blocked)
      })
  )

  it.scoped("answers with the request's schemas, and moves bytes to the thread and back", () =>
    Effect.gen(function* () {
      const { Pool, app } = setup({ threads: 1 })
      yield* Worker.make(app, { benchmark: false })
      const pool = yield* WorkerContext.get(Pool)

      const bytes = new Uint8Array([1, 2, 3, 4])
      const echoed = yield* pool.execute(new Echo({ text: "hi", bytes }))
      expect(echoed).toMatchObject({ text: "HI", thread: 1, received: 4 })
      expect([...echoed.bytes]).toEqual([4, 3, 2, 1])
      // Moved, not copied: the caller's array is empty now, and sending it again says so (instead of sending nothing)
      expect(bytes.byteLength).toBe(0)
      const again = yield* Effect.exit(pool.execute(new Echo({ text: "again", bytes })))
      expect(Exit.isFailure(again) && String(Cause.squash(again.cause))).toContain(
        "these bytes were already moved to another thread by an earlier call"
      )
      // An empty array is not a moved one
      expect((yield* pool.execute(new Echo({ text: "empty", bytes: new Uint8Array(0) }))).received).toBe(0)
      // A view on part of a larger buffer is copied first: the rest of that buffer stays usable
      const whole = new Uint8Array([9, 8, 7, 6, 5])
      const part = yield* pool.execute(new Echo({ text: "part", bytes: whole.subarray(1, 3) }))
      expect([...part.bytes]).toEqual([7, 8])
      expect([...whole]).toEqual([9, 8, 7, 6, 5])

      const refused = yield* Effect.flip(pool.execute(new Fail({ reason: "no" })))
      expect(refused).toBeInstanceOf(Refused)
      expect(refused).toMatchObject({ reason: "no" })
      const died = yield* Effect.exit(pool.execute(new Die()))
      expect(Exit.isFailure(died) && Cause.isDie(died.cause)).toBe(true)
      expect(Exit.isFailure(died) && String(Cause.squash(died.cause))).toContain("boom in the thread")
      // The thread goes on serving
      expect((yield* pool.execute(new Echo({ text: "again", bytes: new Uint8Array(1) }))).text).toBe("AGAIN")
      expect((yield* pool.stats).calls).toBe(6)
    })
  )

  it.effect("Bytes moves whole buffers and copies views when encoded for a thread message", () =>
    Effect.gen(function* () {
      const collector = Transferable.unsafeMakeCollector()
      const encode = (u8: Uint8Array) =>
        Schema.encode(ThreadedContext.Bytes)(u8).pipe(Effect.provideService(Transferable.Collector, collector))
      const whole = new Uint8Array([1, 2, 3])
      expect(yield* encode(whole)).toBe(whole)
      const big = new Uint8Array(16)
      const view = yield* encode(big.subarray(4, 8))
      expect(view.byteLength).toBe(4)
      expect(view.buffer).not.toBe(big.buffer)
      expect(collector.unsafeRead()).toEqual([whole.buffer, view.buffer])
      // Outside a thread message (no collector) it is the array itself
      expect(yield* Schema.encode(ThreadedContext.Bytes)(big.subarray(1))).toEqual(big.subarray(1))
    })
  )

  it.scoped("rolls back every thread and the whole start-up when one thread fails to enter", () =>
    Effect.gen(function* () {
      const { app, count, exits } = setup({ threads: 2, data: { barrier: 2, failThread: 2 } })
      const failure = yield* Effect.flip(Worker.make(app, { benchmark: false }))
      expect(failure).toBeInstanceOf(StartupFailed)
      expect(failure.detail).toMatch(/thread 2.*model file corrupt \(thread 2\)/)
      // Thread 1 entered both contexts and exited them, told that start-up failed
      expect([count(1, Journal.modelEntered), count(1, Journal.modelExited), count(1, Journal.storeExited)]).toEqual([
        1, 1, 1
      ])
      expect(count(1, Journal.exitKind)).toBe(2)
      // Thread 2 rolled back its Store itself when its Model failed
      expect([count(2, Journal.storeEntered), count(2, Journal.modelEntered), count(2, Journal.storeExited)]).toEqual([
        1, 0, 1
      ])
      // The main thread's other context was rolled back too, and the report says which thread contexts were
      expect(exits).toEqual(["Failure"])
      expect(failure.rolledBack).toEqual(
        expect.arrayContaining(["Pool/1/Store", "Pool/1/Model", "Pool/2/Store", "Other"])
      )
    })
  )

  it.scoped("ends a thread stuck in entering when start-up rolls back, after its exit timeout", () =>
    Effect.gen(function* () {
      // Thread 2 blocks its own event loop in enter: it can never answer the rollback. Thread 1 fails.
      const { app, count } = setup({ threads: 2, data: { failThread: 1, hangThread: 2 }, exitTimeout: "500 millis" })
      const failure = yield* Effect.flip(Worker.make(app, { benchmark: false }))
      expect(failure.detail).toContain("model file corrupt (thread 1)")
      expect(count(1, Journal.storeExited)).toBe(1)
      // Thread 2 was terminated (it never got to exit anything), and the rollback finished
      expect(count(2, Journal.storeExited)).toBe(0)
    })
  )

  it.scoped("fails the call of a thread that dies with ThreadFailed, and replaces the thread", () =>
    Effect.gen(function* () {
      const { Pool, app, count } = setup({ threads: 1 })
      const worker = yield* Worker.make(app, { benchmark: false })
      const pool = yield* WorkerContext.get(Pool)

      const exited = yield* Effect.flip(pool.execute(new Crash({ how: "exit" })))
      expect(exited).toBeInstanceOf(ThreadFailed)
      expect(exited).toMatchObject({ reason: "died", context: "Pool", thread: 1, request: "Crash" })
      expect(exited.detail).toContain("exited with code 3")
      // The next call waits for the replacement, thread 2, which entered its own contexts
      expect(yield* worker.invoke("echo", { text: "x" })).toBe("X@2")
      expect(count(2, Journal.modelEntered)).toBe(1)

      const thrown = yield* Effect.flip(pool.execute(new Crash({ how: "throw" })))
      expect(thrown).toMatchObject({ reason: "died", thread: 2 })
      expect(thrown.detail).toContain("uncaught Error: uncaught in the thread")
      expect(yield* worker.invoke("echo", { text: "y" })).toBe("Y@3")

      const report = yield* worker.report
      expect(report.contexts.map((c) => c.key)).toEqual(["Pool", "Pool/3/Store", "Pool/3/Model", "Other"])
      const notes = report.contexts[0]!.notes.join("\n")
      expect(notes).toMatch(/thread 1 died \(the thread exited with code 3\); thread 2 replaced it, entered in \d+ ms/)
      expect(notes).toMatch(/thread 2 died \(uncaught Error: uncaught in the thread\); thread 3 replaced it/)
      expect((yield* pool.stats).replaced).toBe(2)
    })
  )

  it.scoped("passes the interruption of a call (caller gone, timeout) to its thread", () =>
    Effect.gen(function* () {
      const { Pool, app, count, until } = setup({ threads: 1 })
      const worker = yield* Worker.make(app, { benchmark: false })
      const pool = yield* WorkerContext.get(Pool)

      const call = yield* Effect.fork(pool.execute(new Block()))
      yield* until(1, Journal.started, 1)
      yield* Fiber.interrupt(call)
      yield* until(1, Journal.interrupted, 1)
      // The thread is free again once it answered
      expect(yield* worker.invoke("echo", { text: "after" })).toBe("AFTER@1")

      // The remote's 5 s timeout, on the test clock
      const startedBefore = count(1, Journal.started)
      const timed = yield* Effect.fork(worker.invoke("block", {}))
      yield* until(1, Journal.started, startedBefore + 1)
      yield* TestClock.adjust("5 seconds")
      expect(yield* Effect.flip(Fiber.join(timed))).toBeInstanceOf(CallTimeout)
      yield* until(1, Journal.interrupted, 2)
    })
  )

  it.scoped("exits every thread's contexts at shutdown, then ends the threads", () =>
    Effect.gen(function* () {
      const { Pool, app, count, untilAny } = setup({ threads: 2 })
      const worker = yield* Worker.make(app, { benchmark: false })
      const pool = yield* WorkerContext.get(Pool)
      // A call the worker does not drain (made on the pool directly): the thread interrupts it before exiting
      const inflight = yield* Effect.fork(pool.execute(new Block()))
      yield* untilAny(Journal.startedAny, 1)

      yield* worker.shutdown
      expect(Exit.isInterrupted(yield* Fiber.await(inflight))).toBe(true)
      expect(count(1, Journal.interrupted) + count(2, Journal.interrupted)).toBe(1)
      for (const thread of [1, 2]) {
        expect([count(thread, Journal.modelExited), count(thread, Journal.storeExited)]).toEqual([1, 1])
        expect(count(thread, Journal.exitKind)).toBe(1) // told: success
      }
      const report = yield* worker.report
      expect(report.contexts.map((c) => [c.key, c.state])).toEqual([
        ["Pool", "exited"],
        ["Pool/1/Store", "exited"],
        ["Pool/1/Model", "exited"],
        ["Pool/2/Store", "exited"],
        ["Pool/2/Model", "exited"],
        ["Other", "exited"]
      ])
      // Every thread has ended, and the pool takes no more calls
      expect((yield* pool.stats).alive).toBe(0)
      expect(yield* Effect.flip(pool.execute(new Block()))).toMatchObject({ reason: "stopped" })
    })
  )

  it.scoped("fails start-up clearly when the module is missing or has no runner", () =>
    Effect.gen(function* () {
      const missing = setup({ module: new URL("./fixtures/no-such-thread.js", import.meta.url) })
      const notFound = yield* Effect.flip(Worker.make(missing.app, { benchmark: false }))
      expect(notFound.detail).toMatch(/the thread module .*no-such-thread\.js does not exist/)

      const noRunner = setup({ threads: 1, export: "Journal" })
      const wrong = yield* Effect.flip(Worker.make(noRunner.app, { benchmark: false }))
      expect(wrong.detail).toContain('does not export a ThreadedContext.runner as "Journal"')
    })
  )

  it.scoped("reads WORKER_THREADS, and fails start-up naming it when it is not a positive integer", () =>
    Effect.gen(function* () {
      const saved = process.env["WORKER_THREADS"]
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          if (saved === undefined) delete process.env["WORKER_THREADS"]
          else process.env["WORKER_THREADS"] = saved
        })
      )
      process.env["WORKER_THREADS"] = "lots"
      const bad = setup()
      expect(bad.PoolLive.threads()).toBe(1)
      const failure = yield* Effect.flip(Worker.make(bad.app, { benchmark: false }))
      expect(failure.detail).toContain('WORKER_THREADS must be a positive integer, got "lots"')

      process.env["WORKER_THREADS"] = "3"
      expect(setup().PoolLive.threads()).toBe(3)
      expect(setup().echo.concurrency).toBe(3)
      expect(setup({ threads: 2 }).PoolLive.threads()).toBe(2)
    })
  )

  it.scoped("imports effect in a TypeScript thread before its loader, and its modules share that one instance", () =>
    Effect.gen(function* () {
      class Preload extends Context.Tag("Preload")<Preload, ThreadedContext.Pool<Preloaded>>() {}
      const PreloadLive = ThreadedContext.make(Preload, {
        module: new URL("./fixtures/thread-preload.js", import.meta.url),
        threads: 1
      })
      const report = yield* Effect.flatMap(Preload, (pool) => pool.execute(new Preloaded())).pipe(
        Effect.provide(PreloadLive)
      )
      // The ESM build, as Node resolves `effect` for an import (not the CommonJS one `require` would find)
      expect(report.effectUrl).toMatch(/\/node_modules\/effect\/dist\/esm\/index\.js$/)
      expect(report.preloaded).toEqual([report.effectUrl])
      expect(report.same).toBe(true)
    })
  )

  it("resolves a package as Node's ESM loader does (exports conditions, else main)", () => {
    const from = import.meta.url
    expect(esmUrl("effect", from)).toMatch(/\/effect\/dist\/esm\/index\.js$/)
    expect(esmUrl("@effect/platform/Transferable", from)).toMatch(/\/@effect\/platform\/dist\/esm\/Transferable\.js$/)
    // No exports map: main, never the bundlers' "module"
    expect(esmUrl("@tensorflow/tfjs-core", from)).toMatch(/\/tfjs-core\/dist\/tf-core\.node\.js$/)
    expect(esmUrl("effect/NoSuchModule", from)).toBeUndefined()
    expect(esmUrl("no-such-package-anywhere", from)).toBeUndefined()
  })

  it.effect(
    "starts threads in a process run with V8 options, which Worker refuses and the threads inherit anyway",
    () =>
      Effect.promise(async () => {
        const child = spawnWorker([
          "--max-old-space-size=2048",
          "--expose-gc",
          "--import",
          "tsx",
          "test/fixtures/thread-flags.ts"
        ])
        expect(await child.exited).toBe(0)
        expect(child.output()).toContain("the thread answered (one effect: true)")
      })
  )
})
