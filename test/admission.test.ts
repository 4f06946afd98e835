import { describe, expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber, Runtime } from "effect"
import { Admission, Load, SLICE_MILLIS } from "../src/internal/admission.js"

/** Let pending macrotasks run (a slot is handed to the next waiter on a later event-loop turn). */
const macrotask = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))

/** Let event-loop turns pass until `predicate` holds (at most 20: a hand-off takes one or two). */
const turnsUntil = (predicate: () => boolean) =>
  Effect.gen(function* () {
    for (let i = 0; i < 20 && !predicate(); i++) yield* macrotask
  })

describe("Admission", () => {
  it.effect("runs a call at once when a slot is free, without suspending", () =>
    Effect.gen(function* () {
      const admission = new Admission(2, 10)
      let started = 0
      const result = yield* admission.run(
        Effect.sync(() => admission.running),
        () => started++
      )
      expect(result).toBe(1)
      expect(started).toBe(1)
      expect(admission.running).toBe(0)
    })
  )

  it.effect("at most `concurrency` run; the rest wait in arrival order", () =>
    Effect.gen(function* () {
      const admission = new Admission(1, 10)
      const order: Array<number> = []
      const release = yield* Effect.all([0, 1, 2].map(() => Deferred.make<void>()))
      const fibers = yield* Effect.all(
        [0, 1, 2].map((i) =>
          Effect.fork(
            admission.run(
              Effect.zipRight(
                Effect.sync(() => order.push(i)),
                Deferred.await(release[i]!)
              )
            )
          )
        )
      )
      yield* turnsUntil(() => order.length === 1 && admission.queued === 2)
      expect(order).toEqual([0])
      expect([admission.running, admission.queued]).toEqual([1, 2])
      yield* Deferred.succeed(release[0]!, undefined)
      yield* Fiber.join(fibers[0]!)
      yield* turnsUntil(() => order.length === 2)
      expect(order).toEqual([0, 1])
      yield* Deferred.succeed(release[1]!, undefined)
      yield* Deferred.succeed(release[2]!, undefined)
      yield* Fiber.joinAll(fibers)
      expect(order).toEqual([0, 1, 2])
      expect([admission.running, admission.queued]).toEqual([0, 0])
    })
  )

  it.effect("a waiting call that is interrupted leaves the queue; a granted one gives its slot back", () =>
    Effect.gen(function* () {
      const admission = new Admission(1, 10)
      const hold = yield* Deferred.make<void>()
      const ran: Array<string> = []
      const first = yield* Effect.fork(
        admission.run(
          Effect.zipRight(
            Effect.sync(() => ran.push("a")),
            Deferred.await(hold)
          )
        )
      )
      const second = yield* Effect.fork(admission.run(Effect.sync(() => ran.push("b"))))
      const third = yield* Effect.fork(admission.run(Effect.sync(() => ran.push("c"))))
      yield* turnsUntil(() => admission.queued === 2)
      expect(admission.queued).toBe(2)
      yield* Fiber.interrupt(second)
      expect(admission.queued).toBe(1)
      // Release the first: the slot goes to the third (the second left), which then runs.
      yield* Deferred.succeed(hold, undefined)
      yield* Fiber.join(first)
      yield* Fiber.join(third)
      expect(ran).toEqual(["a", "c"])
      expect([admission.running, admission.queued]).toEqual([0, 0])

      // Granted but interrupted before it resumed: the slot is not lost.
      const hold2 = yield* Deferred.make<void>()
      const a = yield* Effect.fork(admission.run(Deferred.await(hold2)))
      const b = yield* Effect.fork(admission.run(Effect.void))
      yield* turnsUntil(() => admission.queued === 1)
      expect(admission.queued).toBe(1)
      yield* Deferred.succeed(hold2, undefined)
      yield* Fiber.join(a)
      // The slot was handed to `b` on a macrotask that has not run yet: interrupt it now.
      expect([admission.running, admission.queued]).toEqual([1, 0])
      yield* Fiber.interrupt(b)
      expect([admission.running, admission.queued]).toEqual([0, 0])
      expect(yield* admission.run(Effect.succeed("free"))).toBe("free")
    })
  )

  // Requests read in one poll each fork their call synchronously, as the HTTP pipeline does (`Runtime.runFork`).
  const forkAll = (effects: ReadonlyArray<Effect.Effect<unknown>>) =>
    Effect.flatMap(Effect.runtime<never>(), (runtime) =>
      Effect.sync(() => effects.map((e) => Runtime.runFork(runtime)(e)))
    )

  it.effect(
    "between synchronous calls longer than a slice the event loop runs (a request can be read in between)",
    () =>
      Effect.gen(function* () {
        yield* turnsUntil(() => false) // start on a fresh slice
        const admission = new Admission(1, 10)
        const log: Array<string> = []
        const busy = (name: string) =>
          Effect.sync(() => {
            log.push(name)
            // What a socket read would be: a macrotask queued while this call runs.
            if (name === "call 1") setImmediate(() => log.push("io"))
            // Longer than a slice, measured in real time (what the event loop sees): a blocking handler.
            const until = performance.now() + SLICE_MILLIS + 5
            while (performance.now() < until) {
              // busy
            }
          })
        const fibers = yield* forkAll(["call 1", "call 2", "call 3"].map((name) => admission.run(busy(name))))
        expect(log).toEqual(["call 1"])
        yield* Fiber.joinAll(fibers)
        expect(log).toEqual(["call 1", "io", "call 2", "call 3"])
      })
  )

  it.effect("trivial calls share a slice: no turn is spent between them", () =>
    Effect.gen(function* () {
      yield* turnsUntil(() => false) // start on a fresh slice
      const admission = new Admission(1, 10)
      const log: Array<string> = []
      setImmediate(() => log.push("io"))
      const fibers = yield* forkAll([1, 2, 3].map((i) => admission.run(Effect.sync(() => log.push(`call ${i}`)))))
      expect(log).toEqual(["call 1", "call 2", "call 3"])
      yield* Fiber.joinAll(fibers)
    })
  )

  it("hasRoom and wouldWait count running and queued calls", () => {
    const admission = new Admission(2, 1)
    expect([admission.hasRoom(), admission.wouldWait()]).toEqual([true, false])
    admission.running = 2
    expect([admission.hasRoom(), admission.wouldWait()]).toEqual([true, true])
    admission.queued = 1
    expect(admission.hasRoom()).toBe(false)
  })
})

describe("Load", () => {
  it.effect("estimates the wait from pending workload and the score; whenIdle waits for the last call", () =>
    Effect.gen(function* () {
      const load = new Load()
      expect(load.waitSeconds(undefined)).toBeUndefined()
      load.add(100)
      load.add(300)
      expect(load.waitSeconds(200)).toBe(2)
      expect(load.exceeds(200, Duration.seconds(1))).toBe(true)
      expect(load.exceeds(200, Duration.seconds(3))).toBe(false)
      expect(load.exceeds(undefined, Duration.seconds(1))).toBe(false)
      expect(load.exceeds(200, undefined)).toBe(false)
      const idle = yield* Effect.fork(load.whenIdle)
      load.remove(100)
      expect(idle.unsafePoll()).toBeNull()
      load.remove(300)
      yield* Fiber.join(idle)
      expect([load.pending, load.active]).toEqual([0, 0])
    })
  )
})
