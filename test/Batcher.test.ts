import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Either, Exit, Fiber, Option, Scope, TestClock } from "effect"
import * as Batcher from "../src/internal/batcher.js"

/** Let forked fibers run (no clock time passes). */
const flush = Effect.gen(function* () {
  for (let i = 0; i < 20; i++) yield* Effect.yieldNow()
})

/** A batch runner that records every batch it was given and takes `millis` per batch (on the test clock). */
const recorder = (millis = 0, result: (n: number) => Exit.Exit<string, string> = (n) => Exit.succeed(`r${n}`)) => {
  const batches: Array<ReadonlyArray<number>> = []
  const run = (items: ReadonlyArray<number>) =>
    Effect.gen(function* () {
      batches.push([...items])
      if (millis > 0) yield* Effect.sleep(`${millis} millis`)
      return items.map(result)
    })
  return { batches, run }
}

const submitAll = <B, E>(batcher: Batcher.Batcher<number, B, E>, items: ReadonlyArray<number>) =>
  Effect.forEach(items, (n) => Effect.fork(batcher.submit(n)))

describe("Batcher", () => {
  it.scoped("runs a full batch at once, with each caller's result in order", () =>
    Effect.gen(function* () {
      const r = recorder()
      const batcher = yield* Batcher.make({ maxSize: 3, maxWait: "1 second", concurrency: 1, run: r.run })
      const fibers = yield* submitAll(batcher, [1, 2, 3])
      yield* flush
      expect(r.batches).toEqual([[1, 2, 3]])
      expect(yield* Effect.forEach(fibers, Fiber.join)).toEqual(["r1", "r2", "r3"])
    })
  )

  it.scoped("runs a partial batch when the oldest call has waited maxWait", () =>
    Effect.gen(function* () {
      const r = recorder()
      const batcher = yield* Batcher.make({ maxSize: 4, maxWait: "100 millis", concurrency: 1, run: r.run })
      const first = yield* submitAll(batcher, [1])
      yield* TestClock.adjust("60 millis")
      const second = yield* submitAll(batcher, [2])
      yield* TestClock.adjust("39 millis")
      yield* flush
      expect(r.batches).toEqual([])
      // 100 ms after the first call, not after the second: the wait counts from the oldest.
      yield* TestClock.adjust("1 millis")
      yield* flush
      expect(r.batches).toEqual([[1, 2]])
      expect(yield* Effect.forEach([...first, ...second], Fiber.join)).toEqual(["r1", "r2"])
    })
  )

  it.scoped("with maxWait 0, runs what is queued as soon as a slot is free", () =>
    Effect.gen(function* () {
      const r = recorder()
      const batcher = yield* Batcher.make({ maxSize: 8, maxWait: 0, concurrency: 1, run: r.run })
      const fibers = yield* submitAll(batcher, [1])
      expect(yield* Fiber.join(fibers[0]!)).toBe("r1")
      expect(r.batches).toEqual([[1]])
    })
  )

  it.scoped("counts batches against concurrency; calls keep gathering while every slot is busy", () =>
    Effect.gen(function* () {
      const r = recorder(50)
      const batcher = yield* Batcher.make({ maxSize: 2, maxWait: "10 millis", concurrency: 1, run: r.run })
      yield* submitAll(batcher, [1, 2, 3, 4, 5])
      yield* flush
      // One batch at a time: [1, 2] runs, [3, 4] is full but waits for the slot.
      expect(r.batches).toEqual([[1, 2]])
      expect(yield* batcher.stats).toEqual({ queued: 3, running: 1, runningItems: 2, maxSize: 2 })
      yield* TestClock.adjust("50 millis")
      yield* flush
      expect(r.batches).toEqual([
        [1, 2],
        [3, 4]
      ])
      yield* TestClock.adjust("50 millis")
      yield* flush
      // 5 waited past maxWait while the slot was busy: it runs as soon as the slot frees.
      expect(r.batches).toEqual([[1, 2], [3, 4], [5]])
    })
  )

  it.scoped("runs up to `concurrency` batches at once", () =>
    Effect.gen(function* () {
      const r = recorder(50)
      const batcher = yield* Batcher.make({ maxSize: 2, maxWait: "10 millis", concurrency: 2, run: r.run })
      yield* submitAll(batcher, [1, 2, 3, 4, 5, 6])
      yield* flush
      expect(r.batches).toEqual([
        [1, 2],
        [3, 4]
      ])
      expect((yield* batcher.stats).running).toBe(2)
    })
  )

  it.scoped("a failing item fails only its own caller", () =>
    Effect.gen(function* () {
      const r = recorder(0, (n) => (n === 2 ? Exit.fail("bad 2") : Exit.succeed(`r${n}`)))
      const batcher = yield* Batcher.make({ maxSize: 3, maxWait: "1 second", concurrency: 1, run: r.run })
      const fibers = yield* submitAll(batcher, [1, 2, 3])
      const exits = yield* Effect.forEach(fibers, Fiber.await)
      expect(exits.map((e) => (Exit.isSuccess(e) ? e.value : Cause.failureOption(e.cause)))).toEqual([
        "r1",
        Option.some("bad 2"),
        "r3"
      ])
    })
  )

  it.scoped("a batch that fails as a whole fails every caller of it, and only them", () =>
    Effect.gen(function* () {
      let calls = 0
      const batcher = yield* Batcher.make<number, string, string, never>({
        maxSize: 2,
        maxWait: "1 second",
        concurrency: 1,
        run: (items) =>
          calls++ === 0 ? Effect.fail("model crashed") : Effect.succeed(items.map((n) => Exit.succeed(`r${n}`)))
      })
      const fibers = yield* submitAll(batcher, [1, 2, 3, 4])
      const exits = yield* Effect.forEach(fibers, Fiber.await)
      expect(exits.map((e) => (Exit.isSuccess(e) ? e.value : Cause.squash(e.cause)))).toEqual([
        "model crashed",
        "model crashed",
        "r3",
        "r4"
      ])
    })
  )

  it.scoped("a runner that returns the wrong number of results is a defect for each caller", () =>
    Effect.gen(function* () {
      const batcher = yield* Batcher.make<number, number, never, never>({
        maxSize: 2,
        maxWait: "1 second",
        concurrency: 1,
        run: () => Effect.succeed([Exit.succeed(1)])
      })
      const fibers = yield* submitAll(batcher, [1, 2])
      for (const exit of yield* Effect.forEach(fibers, Fiber.await)) {
        expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
        expect(String(Exit.isFailure(exit) && Cause.squash(exit.cause))).toMatch(/batch of 2 item\(s\) gave 1 result/)
      }
    })
  )

  it.scoped("drops a caller interrupted before its batch starts: its payload never reaches the runner", () =>
    Effect.gen(function* () {
      const r = recorder()
      const batcher = yield* Batcher.make({ maxSize: 3, maxWait: "100 millis", concurrency: 1, run: r.run })
      const [a, b] = yield* submitAll(batcher, [1, 2])
      yield* flush
      yield* Fiber.interrupt(b!)
      expect((yield* batcher.stats).queued).toBe(1)
      const [c] = yield* submitAll(batcher, [3])
      yield* flush
      // The dropped call does not count: 2 of 3, so the batch waits for maxWait.
      expect(r.batches).toEqual([])
      yield* TestClock.adjust("100 millis")
      yield* flush
      expect(r.batches).toEqual([[1, 3]])
      expect(yield* Fiber.join(a!)).toBe("r1")
      expect(yield* Fiber.join(c!)).toBe("r3")
    })
  )

  it.scoped(
    "a caller leaving a running batch does not stop it for the others; the last one leaving interrupts it",
    () =>
      Effect.gen(function* () {
        let finalized = 0
        const batcher = yield* Batcher.make<number, string, never, never>({
          maxSize: 2,
          maxWait: "1 second",
          concurrency: 1,
          run: (items) =>
            Effect.sleep("100 millis").pipe(
              Effect.as(items.map((n) => Exit.succeed(`r${n}`))),
              Effect.ensuring(Effect.sync(() => finalized++))
            )
        })
        const [a, b] = yield* submitAll(batcher, [1, 2])
        yield* flush
        yield* Fiber.interrupt(a!)
        yield* TestClock.adjust("100 millis")
        expect(yield* Fiber.join(b!)).toBe("r2")
        expect(finalized).toBe(1)

        const [c, d] = yield* submitAll(batcher, [3, 4])
        yield* flush
        expect((yield* batcher.stats).running).toBe(1)
        yield* Fiber.interrupt(c!)
        yield* Fiber.interrupt(d!)
        // Every caller left: the batch was interrupted (its finalizer ran) without the clock moving.
        expect(finalized).toBe(2)
        expect(yield* batcher.stats).toEqual({ queued: 0, running: 0, runningItems: 0, maxSize: 2 })
      })
  )

  it.scoped("calls the started hook when the call's batch starts, with the batch size", () =>
    Effect.gen(function* () {
      const r = recorder(50)
      const batcher = yield* Batcher.make({ maxSize: 2, maxWait: "10 millis", concurrency: 1, run: r.run })
      const started: Array<[number, number]> = []
      for (const n of [1, 2, 3]) {
        yield* Effect.fork(batcher.submit(n, { started: (size) => started.push([n, size]) }))
      }
      yield* flush
      expect(started).toEqual([
        [1, 2],
        [2, 2]
      ])
      yield* TestClock.adjust("50 millis")
      yield* flush
      expect(started).toEqual([
        [1, 2],
        [2, 2],
        [3, 1]
      ])
    })
  )

  it.scoped("setMaxSize cuts later batches at the new size", () =>
    Effect.gen(function* () {
      const r = recorder()
      const batcher = yield* Batcher.make({ maxSize: 1, maxWait: "1 second", concurrency: 1, run: r.run })
      yield* batcher.setMaxSize(3)
      yield* submitAll(batcher, [1, 2, 3])
      yield* flush
      expect(r.batches).toEqual([[1, 2, 3]])
      expect(() => Effect.runSync(batcher.setMaxSize(0))).toThrow(/maxSize must be a positive integer, got 0/)
    })
  )

  it.effect("closing its scope interrupts running batches and every waiting caller", () =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      let finalized = 0
      const batcher = yield* Batcher.make<number, string, never, never>({
        maxSize: 1,
        maxWait: "1 second",
        concurrency: 1,
        run: () => Effect.never.pipe(Effect.ensuring(Effect.sync(() => finalized++)))
      }).pipe(Scope.extend(scope))
      const fibers = yield* submitAll(batcher, [1, 2])
      yield* flush
      yield* Scope.close(scope, Exit.void)
      const exits = yield* Effect.forEach(fibers, Fiber.await)
      expect(exits.every((e) => Exit.isInterrupted(e))).toBe(true)
      expect(finalized).toBe(1)
      // A call after the close is interrupted at once rather than waiting forever.
      expect(Exit.isInterrupted(yield* Effect.exit(batcher.submit(3)))).toBe(true)
    })
  )

  it("rejects sizes that are not positive integers", () => {
    expect(() =>
      Effect.runSync(
        Effect.scoped(Batcher.make({ maxSize: 0, maxWait: 0, concurrency: 1, run: () => Effect.succeed([]) }))
      )
    ).toThrow(/maxSize must be a positive integer, got 0/)
  })
})

describe("toExits", () => {
  it.effect("takes values, Exits and Eithers, in order", () =>
    Effect.gen(function* () {
      const exits = yield* Batcher.toExits<number, string>("r", 3, [1, Exit.fail("e"), Either.right(3)])
      expect(exits).toEqual([Exit.succeed(1), Exit.fail("e"), Exit.succeed(3)])
      const left = yield* Batcher.toExits<number, string>("r", 1, [Either.left("nope")])
      expect(left).toEqual([Exit.fail("nope")])
    })
  )

  it.effect("a wrong count or a non-array is a defect naming the remote", () =>
    Effect.gen(function* () {
      const count = yield* Effect.exit(Batcher.toExits("embed", 2, [1]))
      expect(Exit.isFailure(count) && Cause.isDie(count.cause)).toBe(true)
      expect(String(Exit.isFailure(count) && Cause.squash(count.cause))).toMatch(
        /Remote "embed": the batch handler returned 1 result\(s\) for 2 payload\(s\)/
      )
      const notArray = yield* Effect.exit(Batcher.toExits("embed", 1, "x"))
      expect(String(Exit.isFailure(notArray) && Cause.squash(notArray.cause))).toMatch(/must return an array/)
    })
  )
})
