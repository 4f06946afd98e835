import { describe, expect, it } from "@effect/vitest"
import { Cause, Context, Deferred, Effect, Exit, Fiber, Option, Schema, Scope, TestClock } from "effect"
import * as Benchmark from "../src/Benchmark.js"
import * as Deployment from "../src/Deployment.js"
import * as Remote from "../src/Remote.js"
import * as Worker from "../src/Worker.js"
import * as WorkerContext from "../src/WorkerContext.js"
import {
  CallFailed,
  ContextNotFound,
  PayloadInvalid,
  RemoteFailure,
  RemoteNotFound,
  ShutdownFailed,
  StartupFailed,
  WorkerUnavailable
} from "../src/WorkerError.js"
import { ping, probe, Timeline } from "./fixtures/probe.js"

const noBench = { benchmark: false } as const

/** Let forked fibers run until `predicate` holds (no clock time passes). */
const settle = <A>(effect: Effect.Effect<A>, predicate: (a: A) => boolean) =>
  Effect.gen(function* () {
    for (let i = 0; i < 100; i++) {
      if (predicate(yield* effect)) return
      yield* Effect.yieldNow()
    }
    throw new Error("did not settle")
  })

/**
 * The exit of a fiber that must have finished by now (after a `TestClock.adjust`): lets forked fibers run, then fails
 * the test with an assertion if it is still running, instead of waiting on it until the test times out.
 */
const finished = <A, E>(fiber: Fiber.Fiber<A, E>) =>
  Effect.gen(function* () {
    for (let i = 0; i < 100; i++) {
      const exit = yield* Fiber.poll(fiber)
      if (Option.isSome(exit)) return exit.value
      yield* Effect.yieldNow()
    }
    return expect.fail("the fiber is still running: it should have finished by now")
  })

describe("start-up", () => {
  it.scoped("enters independent contexts in parallel", () =>
    Effect.gen(function* () {
      const t = new Timeline()
      const a = probe(t, "a", { enterMillis: 200 })
      const b = probe(t, "b", { enterMillis: 200 })
      const c = probe(t, "c", { enterMillis: 200 })
      const app = Deployment.make("par", { contexts: [a.layer, b.layer, c.layer], remotes: [ping] })
      const worker = yield* Worker.start(app, noBench)
      yield* TestClock.adjust("199 millis")
      expect((yield* worker.report).contexts.map((r) => r.state)).toEqual(["entering", "entering", "entering"])
      yield* TestClock.adjust("1 millis")
      yield* worker.awaitReady
      const report = yield* worker.report
      expect(report.phase).toBe("ready")
      expect(report.contexts.map((r) => [r.key, r.state, r.enterMillis])).toEqual([
        ["a", "entered", 200],
        ["b", "entered", 200],
        ["c", "entered", 200]
      ])
      expect(report.readyAt! - report.startedAt).toBe(200)
    })
  )

  it.scoped("rolls back every entered context when one fails, and interrupts those still entering", () =>
    Effect.gen(function* () {
      const t = new Timeline()
      const fast = probe(t, "fast", { enterMillis: 10 })
      const bad = probe(t, "bad", { enterMillis: 100, enterFails: true })
      const slow = probe(t, "slow", { enterMillis: 10_000 })
      const app = Deployment.make("rb", { contexts: [fast.layer, bad.layer, slow.layer], remotes: [ping] })
      const worker = yield* Worker.start(app, noBench)
      const waiting = yield* Effect.fork(Effect.flip(worker.awaitReady))
      yield* TestClock.adjust("100 millis")
      const error = yield* Fiber.join(waiting)
      expect(error).toBeInstanceOf(StartupFailed)
      expect(error.context).toBe("bad")
      expect(error.reason).toBe("failed")
      expect(error.detail).toContain("bad could not load")
      expect(error.rolledBack).toEqual(["fast"])
      expect(t.count("exited:fast")).toBe(1)
      expect(t.events).toContain("interrupted:slow")
      expect(t.events).not.toContain("exit:slow")
      expect(t.events).not.toContain("exit:bad")
      // The rolled-back context was told why the worker is ending.
      const exit = t.exits.get("fast")!
      expect(Exit.isFailure(exit)).toBe(true)
      const states = Object.fromEntries((yield* worker.report).contexts.map((r) => [r.key, r.state]))
      expect(states).toEqual({ fast: "rolled-back", bad: "failed", slow: "interrupted" })
      expect((yield* worker.report).phase).toBe("failed")
      // A failed worker refuses calls with a reason.
      const refused = yield* Effect.flip(worker.invoke("ping", {}))
      expect(refused).toEqual(new WorkerUnavailable({ reason: "failed", detail: error.message }))
    })
  )

  it.scoped("interrupts a hanging enter at its timeout and rolls back the rest", () =>
    Effect.gen(function* () {
      const t = new Timeline()
      const ok = probe(t, "ok")
      const hang = probe(t, "hang", { enterHangs: true, enterTimeout: "5 seconds" })
      const app = Deployment.make("to", { contexts: [ok.layer, hang.layer], remotes: [ping] })
      const worker = yield* Worker.start(app, noBench)
      const waiting = yield* Effect.fork(Effect.flip(worker.awaitReady))
      yield* TestClock.adjust("4999 millis")
      expect(waiting.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 millis")
      const error = yield* Fiber.join(waiting)
      expect(error.context).toBe("hang")
      expect(error.reason).toBe("timed-out")
      expect(error.rolledBack).toEqual(["ok"])
      expect(t.events).toContain("interrupted:hang")
      expect(t.count("exited:ok")).toBe(1)
    })
  )

  it.scoped("Worker.make fails with StartupFailed", () =>
    Effect.gen(function* () {
      const t = new Timeline()
      const bad = probe(t, "bad", { enterFails: true })
      const app = Deployment.make("mk", { contexts: [bad.layer], remotes: [ping] })
      const error = yield* Effect.flip(Worker.make(app, noBench))
      expect(error._tag).toBe("StartupFailed")
      expect(error.message).toContain(`context "bad" failed`)
    })
  )

  it.scoped("shutdown during start-up rolls back what entered and interrupts the rest", () =>
    Effect.gen(function* () {
      const t = new Timeline()
      const a = probe(t, "a", { enterMillis: 10 })
      const b = probe(t, "b", { enterMillis: 1000 })
      const app = Deployment.make("sig", { contexts: [a.layer, b.layer], remotes: [ping] })
      const worker = yield* Worker.start(app, noBench)
      yield* TestClock.adjust("10 millis")
      yield* worker.shutdown
      expect(t.count("exited:a")).toBe(1)
      expect(t.events).toContain("interrupted:b")
      const error = yield* Effect.flip(worker.awaitReady)
      expect(error.rolledBack).toEqual(["a"])
      expect(error.reason).toBe("interrupted")
    })
  )
})

describe("shutdown", () => {
  it.effect("exits every context once even when one exit fails, and reports the failure", () =>
    Effect.gen(function* () {
      const t = new Timeline()
      const a = probe(t, "a")
      const b = probe(t, "b", { exitFails: true })
      const c = probe(t, "c")
      const app = Deployment.make("sd", { contexts: [a.layer, b.layer, c.layer], remotes: [ping] })
      const error = yield* Effect.scoped(
        Effect.gen(function* () {
          const worker = yield* Worker.make(app, noBench)
          return yield* Effect.flip(worker.shutdown)
        })
      )
      expect(error).toBeInstanceOf(ShutdownFailed)
      expect(error.failures.map((f) => [f.key, f.reason])).toEqual([["b", "failed"]])
      expect(error.failures[0]!.detail).toContain("b could not free")
      for (const k of ["a", "b", "c"]) expect(t.count(`exit:${k}`)).toBe(1)
      expect(t.count("exited:a") + t.count("exited:c")).toBe(2)
    })
  )

  it.effect("gives up on a hanging exit at its timeout and still exits the others", () =>
    Effect.gen(function* () {
      const t = new Timeline()
      const a = probe(t, "a", { exitHangs: true, exitTimeout: "2 seconds" })
      const b = probe(t, "b")
      const app = Deployment.make("sd2", { contexts: [a.layer, b.layer], remotes: [ping] })
      // Had the exit hung, anything waiting on shutdown would hang with it, and the test fail by its timeout rather
      // than by an assertion: the scope is closed by hand once shutdown is done, and shutdown runs in a daemon fiber
      // (a failing test waits for its child fibers, and this one cannot be interrupted).
      const scope = yield* Scope.make()
      const worker = yield* Scope.extend(Worker.make(app, noBench), scope)
      const fiber = yield* Effect.forkDaemon(Effect.flip(worker.shutdown))
      yield* TestClock.adjust("1999 millis")
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 millis")
      const error = yield* Effect.flatten(finished(fiber))
      yield* Scope.close(scope, Exit.void)
      expect(error.failures.map((f) => [f.key, f.reason])).toEqual([["a", "timed-out"]])
      expect(t.count("exited:b")).toBe(1)
    })
  )

  it.effect("exits contexts when the scope closes, with the scope's exit", () =>
    Effect.gen(function* () {
      const t = new Timeline()
      const a = probe(t, "a")
      const app = Deployment.make("sc", { contexts: [a.layer], remotes: [ping] })
      yield* Effect.scoped(Worker.make(app, noBench))
      expect(t.count("exited:a")).toBe(1)
      expect(Exit.isSuccess(t.exits.get("a")!)).toBe(true)
    })
  )
})

describe("dependencies", () => {
  class Tokenizer extends Context.Tag("Tokenizer")<Tokenizer, { readonly vocab: number }>() {}
  class Engine extends Context.Tag("Engine")<Engine, { readonly vocab: number }>() {}

  it.effect("enters a dependency first, once, and exits it after its dependents", () =>
    Effect.gen(function* () {
      const t = new Timeline()
      const TokenizerLive = WorkerContext.make(Tokenizer, {
        enter: Effect.sleep("50 millis").pipe(
          Effect.as({ vocab: 32 }),
          Effect.tap(() => t.push("enter:tokenizer"))
        ),
        exit: () => Effect.sleep("10 millis").pipe(Effect.tap(() => t.push("exit:tokenizer")))
      })
      const EngineLive = WorkerContext.make(Engine, {
        dependsOn: [Tokenizer],
        enter: Effect.gen(function* () {
          const tok = yield* Tokenizer
          t.push("enter:engine")
          return { vocab: tok.vocab }
        }),
        exit: () => Effect.sleep("10 millis").pipe(Effect.tap(() => t.push("exit:engine")))
      })
      const other = probe(t, "other")
      const vocab = Remote.make(
        "vocab",
        {
          payload: Schema.Struct({}),
          success: Schema.Number,
          benchmark: { dataset: [{}] }
        },
        () => Effect.map(Engine, (e) => e.vocab)
      )
      // Registered in either order: the deployment wires by dependsOn.
      const app = Deployment.make("dep", { contexts: [EngineLive, other.layer, TokenizerLive], remotes: [vocab] })
      yield* Effect.scoped(
        Effect.gen(function* () {
          const worker = yield* Effect.fork(Worker.make(app, noBench))
          yield* TestClock.adjust("50 millis")
          const w = yield* Fiber.join(worker)
          expect(yield* w.invoke("vocab", {})).toBe(32)
          const fiber = yield* Effect.fork(w.shutdown)
          yield* TestClock.adjust("20 millis")
          yield* Fiber.join(fiber)
        })
      )
      expect(t.events.filter((e) => e.endsWith("tokenizer") || e.endsWith("engine"))).toEqual([
        "enter:tokenizer",
        "enter:engine",
        "exit:engine",
        "exit:tokenizer"
      ])
    })
  )

  it("rejects a dependency cycle and a missing dependency", () => {
    class A extends Context.Tag("A")<A, number>() {}
    class B extends Context.Tag("B")<B, number>() {}
    const ALive = WorkerContext.make(A, { dependsOn: [B], enter: B })
    const BLive = WorkerContext.make(B, { dependsOn: [A], enter: A })
    expect(() => Deployment.make("cyc", { contexts: [ALive, BLive], remotes: [ping] })).toThrow(/cycle: A -> B -> A/)
    // @ts-expect-error B is needed by A but not registered
    expect(() => Deployment.make("miss", { contexts: [ALive], remotes: [ping] })).toThrow(/depends on "B"/)
  })
})

describe("WorkerContext.get", () => {
  class Registered extends Context.Tag("Registered")<Registered, string>() {}
  class Unregistered extends Context.Tag("Unregistered")<Unregistered, string>() {}

  it.effect("fails not-registered for a context the deployment lacks, not-entered before entry and after exit", () =>
    Effect.gen(function* () {
      const gate = yield* Deferred.make<void>()
      const Live = WorkerContext.make(Registered, { enter: Effect.as(Deferred.await(gate), "service") })
      const lookup = Remote.make(
        "lookup",
        {
          payload: Schema.Struct({ key: Schema.Literal("Registered", "Unregistered") }),
          success: Schema.String,
          benchmark: { dataset: [{ key: "Registered" }] }
        },
        ({ key }) =>
          (key === "Registered" ? WorkerContext.get(Registered) : WorkerContext.get(Unregistered)).pipe(Effect.orDie)
      )
      const app = Deployment.make("get", { contexts: [Live], remotes: [lookup] })

      yield* Effect.scoped(
        Effect.gen(function* () {
          const worker = yield* Worker.start(app, noBench)
          yield* settle(worker.report, (r) => r.contexts[0]!.state === "entering")
          const during = yield* Effect.flip(
            WorkerContext.get(Registered).pipe(Effect.locally(WorkerContext.currentRegistry, worker.registry))
          )
          expect(during).toEqual(new ContextNotFound({ key: "Registered", reason: "not-entered", state: "entering" }))
          yield* Deferred.succeed(gate, undefined)
          yield* worker.awaitReady
          expect(yield* worker.invoke("lookup", { key: "Registered" })).toBe("service")
          const missing = yield* Effect.flip(
            WorkerContext.get(Unregistered).pipe(Effect.locally(WorkerContext.currentRegistry, worker.registry))
          )
          expect(missing).toBeInstanceOf(ContextNotFound)
          expect(missing.reason).toBe("not-registered")
          expect(missing.message).toContain(`"Unregistered" is not registered`)
          yield* worker.shutdown
          const after = yield* Effect.flip(
            WorkerContext.get(Registered).pipe(Effect.locally(WorkerContext.currentRegistry, worker.registry))
          )
          expect(after.reason).toBe("not-entered")
          expect(after.state).toBe("exited")
        })
      )
    })
  )

  it.scoped("outside the worker's fibers (the code that started it) get reads the latest worker", () =>
    Effect.gen(function* () {
      const Live = WorkerContext.make(Registered, { enter: Effect.succeed("from the worker") })
      yield* Worker.make(Deployment.make("outside", { contexts: [Live], remotes: [ping] }), noBench)
      expect(yield* WorkerContext.get(Registered)).toBe("from the worker")
      const e = yield* Effect.flip(WorkerContext.get(Unregistered))
      expect(e.reason).toBe("not-registered")
    })
  )
})

describe("calls", () => {
  class Boom extends Schema.TaggedError<Boom>()("Boom", { why: Schema.String }) {}
  const divide = Remote.make(
    "divide",
    {
      payload: Schema.Struct({ a: Schema.Number, b: Schema.Number }),
      success: Schema.Number,
      error: Boom,
      benchmark: { dataset: [{ a: 1, b: 2 }] }
    },
    ({ a, b }) => (b === 0 ? Effect.fail(new Boom({ why: "division by zero" })) : Effect.succeed(a / b))
  )
  const crash = Remote.make("crash", { payload: Schema.Struct({}), success: Schema.Number }, () => Effect.die("bug"))
  const slow = Remote.make(
    "slow",
    {
      payload: Schema.Struct({ ms: Schema.Number }),
      success: Schema.String,
      maxQueue: 1
    },
    ({ ms }) => Effect.as(Effect.sleep(ms), "done")
  )
  const app = Deployment.make("calls", { contexts: [], remotes: [divide, crash, slow] })

  it.scoped("decodes, runs and encodes; lists every failing field; names unknown remotes", () =>
    Effect.gen(function* () {
      const worker = yield* Worker.make(app, noBench)
      expect(yield* worker.invoke("divide", { a: 6, b: 3 })).toBe(2)
      const invalid = yield* Effect.flip(worker.invoke("divide", { a: "6", c: 1 }))
      expect(invalid).toBeInstanceOf(PayloadInvalid)
      const issues = (invalid as PayloadInvalid).issues.map((i) => i.path.join("."))
      expect(issues.sort()).toEqual(["a", "b", "c"])
      const unknown = yield* Effect.flip(worker.invoke("nope", {}))
      expect(unknown).toEqual(new RemoteNotFound({ remote: "nope", known: ["divide", "crash", "slow"] }))
    })
  )

  it.scoped("returns a declared error as RemoteFailure with its encoded form, a defect as CallFailed with an id", () =>
    Effect.gen(function* () {
      const worker = yield* Worker.make(app, noBench)
      const failure = yield* Effect.flip(worker.invoke("divide", { a: 1, b: 0 }))
      expect(failure).toBeInstanceOf(RemoteFailure)
      expect((failure as RemoteFailure).encoded).toEqual({ _tag: "Boom", why: "division by zero" })
      const defect = yield* Effect.flip(worker.invoke("crash", {}))
      expect(defect).toBeInstanceOf(CallFailed)
      expect((defect as CallFailed).reason).toBe("defect")
      expect((defect as CallFailed).id).toMatch(/.+/)
      // The worker keeps serving.
      expect(yield* worker.invoke("divide", { a: 1, b: 4 })).toBe(0.25)
      // The typed path gives the declared error itself.
      expect(yield* Effect.flip(worker.call(divide, { a: 1, b: 0 }))).toEqual(new Boom({ why: "division by zero" }))
    })
  )

  // No drain on shutdown: a test that fails with calls in flight closes its scope at once instead of waiting for them.
  const noDrain = { benchmark: false, drainTimeout: 0 } as const

  it.scoped("queues up to maxQueue behind the concurrency limit, then refuses", () =>
    Effect.gen(function* () {
      const worker = yield* Worker.make(app, noDrain)
      const first = yield* Effect.fork(worker.invoke("slow", { ms: 100 }))
      const second = yield* Effect.fork(worker.invoke("slow", { ms: 100 }))
      const slowStats = Effect.map(worker.stats, (all) => all.find((s) => s.name === "slow")!)
      yield* settle(slowStats, (s) => s.running === 1 && s.queued === 1)
      // Refused at once, without any clock time passing: a queued call would still be waiting here.
      const third = yield* finished(yield* Effect.fork(worker.invoke("slow", { ms: 100 })))
      expect(Exit.isFailure(third) && Cause.squash(third.cause)).toMatchObject({
        _tag: "WorkerUnavailable",
        reason: "queue-full"
      })
      yield* TestClock.adjust("200 millis")
      expect(yield* finished(first)).toEqual(Exit.succeed("done"))
      expect(yield* finished(second)).toEqual(Exit.succeed("done"))
    })
  )

  it.scoped("admits concurrency + maxQueue calls of a burst and refuses the rest", () =>
    Effect.gen(function* () {
      const worker = yield* Worker.make(app, noDrain)
      // Six calls at once, with no yield between them: one runs, one waits, four are refused.
      const exits = yield* Effect.fork(
        Effect.all(
          Array.from({ length: 6 }, () => Effect.exit(worker.invoke("slow", { ms: 100 }))),
          { concurrency: "unbounded" }
        )
      )
      // Two calls of 100 ms, one at a time: done after 200 ms. Had the four others been queued, they would still run.
      yield* TestClock.adjust("200 millis")
      const results = yield* Effect.flatten(finished(exits))
      expect(results.filter(Exit.isSuccess)).toHaveLength(2)
      const refused = results.filter(Exit.isFailure).map((e) => Cause.squash(e.cause))
      expect(refused).toHaveLength(4)
      for (const r of refused) expect(r).toMatchObject({ _tag: "WorkerUnavailable", reason: "queue-full" })
    })
  )

  it.scoped("interrupting the caller interrupts the handler", () =>
    Effect.gen(function* () {
      const started = yield* Deferred.make<void>()
      const interrupted = yield* Deferred.make<void>()
      const hang = Remote.make(
        "hang",
        { payload: Schema.Struct({}), success: Schema.Void, benchmark: { dataset: [{}] } },
        () =>
          Deferred.succeed(started, undefined).pipe(
            Effect.zipRight(Effect.never),
            Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined))
          )
      )
      const worker = yield* Worker.make(Deployment.make("h", { contexts: [], remotes: [hang] }), noBench)
      const fiber = yield* Effect.fork(worker.invoke("hang", {}))
      yield* Deferred.await(started)
      yield* Fiber.interrupt(fiber)
      yield* Deferred.await(interrupted)
      expect((yield* worker.stats)[0]).toMatchObject({ running: 0, queued: 0 })
    })
  )

  it.effect("drains in-flight calls on shutdown and refuses new ones", () =>
    Effect.gen(function* () {
      const t = new Timeline()
      const ctx = probe(t, "model")
      const work = Remote.make(
        "work",
        {
          payload: Schema.Struct({}),
          success: Schema.String,
          concurrency: 2,
          benchmark: { dataset: [{}] }
        },
        () =>
          Effect.sleep("1 second").pipe(
            Effect.zipRight(ctx.Tag),
            Effect.map((m) => `done with ${m.name}`)
          )
      )
      const app = Deployment.make("drain", { contexts: [ctx.layer], remotes: [work] })
      yield* Effect.scoped(
        Effect.gen(function* () {
          const worker = yield* Worker.make(app, noBench)
          const calls = yield* Effect.fork(
            Effect.all([worker.invoke("work", {}), worker.invoke("work", {})], { concurrency: 2 })
          )
          yield* settle(worker.stats, ([s]) => s!.running === 2)
          const stopping = yield* Effect.fork(worker.shutdown)
          yield* settle(worker.report, (r) => r.phase === "draining")
          expect(yield* Effect.flip(worker.invoke("work", {}))).toMatchObject({ reason: "draining" })
          expect(t.events).not.toContain("exit:model")
          yield* TestClock.adjust("1 second")
          expect(yield* Fiber.join(calls)).toEqual(["done with model", "done with model"])
          yield* Fiber.join(stopping)
          expect(t.count("exited:model")).toBe(1)
        })
      )
    })
  )

  it.effect("interrupts calls still running after the drain timeout, then exits contexts", () =>
    Effect.gen(function* () {
      const t = new Timeline()
      const ctx = probe(t, "model")
      const forever = Remote.make(
        "forever",
        { payload: Schema.Struct({}), success: Schema.Void, benchmark: { dataset: [{}] } },
        () => Effect.zipRight(ctx.Tag, Effect.never)
      )
      const app = Deployment.make("drain2", { contexts: [ctx.layer], remotes: [forever] })
      yield* Effect.scoped(
        Effect.gen(function* () {
          const worker = yield* Worker.make(app, { benchmark: false, drainTimeout: "5 seconds" })
          const call = yield* Effect.fork(Effect.exit(worker.invoke("forever", {})))
          yield* settle(worker.stats, ([s]) => s!.running === 1)
          const stopping = yield* Effect.fork(worker.shutdown)
          yield* settle(worker.report, (r) => r.phase === "draining")
          yield* TestClock.adjust("4999 millis")
          expect(t.events).not.toContain("exit:model")
          yield* TestClock.adjust("1 millis")
          yield* Fiber.join(stopping)
          const exit = yield* Fiber.join(call)
          expect(Exit.isInterrupted(exit)).toBe(true)
          expect(t.count("exited:model")).toBe(1)
        })
      )
    })
  )
})

describe("benchmark", () => {
  it.scoped("runs the declared benchmark before ready and scores workload per second", () =>
    Effect.gen(function* () {
      const seen: Array<number> = []
      const square = Remote.make(
        "square",
        {
          payload: Schema.Struct({ x: Schema.Number }),
          success: Schema.Number,
          concurrency: 2,
          benchmark: { dataset: [{ x: 1 }, { x: 2 }, { x: 3 }], runs: 3, warmup: 1, concurrency: 2 }
        },
        ({ x }) =>
          Effect.sleep("100 millis").pipe(
            Effect.tap(() => seen.push(x)),
            Effect.as(x * x)
          )
      )
      const worker = yield* Worker.start(Deployment.make("bench", { contexts: [], remotes: [square] }))
      yield* TestClock.adjust("100 millis")
      expect((yield* worker.report).phase).toBe("benchmarking")
      // Three rounds of two 100 ms calls at once: ready 300 ms later. Rounds run one call at a time would take 600.
      yield* TestClock.adjust("300 millis")
      yield* settle(worker.report, (r) => r.phase !== "benchmarking")
      expect((yield* worker.report).phase).toBe("ready")
      const { benchmark } = yield* worker.report
      // Rounds run 2 calls at once: 3 rounds of 100 ms, 600 workload.
      // Every dataset item is used in turn: 1 warm-up call, then 6 calls cycling through the dataset.
      expect([...seen].sort()).toEqual([1, 1, 1, 2, 2, 3, 3])
      expect(benchmark).toMatchObject({
        remote: "square",
        calls: 6,
        workload: 600,
        totalMillis: 300,
        roundMillis: [100, 100, 100]
      })
      expect(benchmark!.score).toBe(2000)
    })
  )

  it.effect("scores total workload over total time when rounds differ (not the best round, not a mean)", () =>
    Effect.gen(function* () {
      // One call a round, cycling through the dataset: 100 ms for 100 units, 400 ms for 100, 100 ms for 400.
      const work = Remote.make(
        "work",
        {
          payload: Schema.Struct({ ms: Schema.Number, units: Schema.Number }),
          success: Schema.Void,
          benchmark: {
            dataset: [
              { ms: 100, units: 100 },
              { ms: 400, units: 100 },
              { ms: 100, units: 400 }
            ],
            runs: 3,
            warmup: 0,
            concurrency: 1,
            workload: (p) => p.units
          }
        },
        ({ ms }) => Effect.sleep(ms)
      )
      const run = yield* Effect.fork(Benchmark.run(work, (p) => work.handler(p as never)))
      yield* TestClock.adjust("600 millis")
      const result = yield* Effect.flatten(finished(run))
      expect(result).toMatchObject({ calls: 3, workload: 600, roundMillis: [100, 400, 100], totalMillis: 600 })
      // 600 units in 0.6 s. The best round would say 4000/s (400 units in 0.1 s), the mean of rounds 1750/s.
      expect(result.score).toBe(1000)
    })
  )

  it.scoped("a failing benchmark call fails start-up and rolls back the contexts", () =>
    Effect.gen(function* () {
      const t = new Timeline()
      const ctx = probe(t, "model")
      const bad = Remote.make(
        "bad",
        { payload: Schema.Struct({}), success: Schema.Number, benchmark: { dataset: [{}] } },
        () => Effect.zipRight(ctx.Tag, Effect.die("kaput"))
      )
      const error = yield* Effect.flip(Worker.make(Deployment.make("bb", { contexts: [ctx.layer], remotes: [bad] })))
      expect(error.reason).toBe("benchmark-failed")
      expect(error.context).toBe("bad")
      expect(error.rolledBack).toEqual(["model"])
    })
  )
})

describe("Deployment.make", () => {
  const a = Remote.make("a", { payload: Schema.Struct({ n: Schema.Number }), success: Schema.Number }, ({ n }) =>
    Effect.succeed(n)
  )

  it("checks names and benchmarks", () => {
    expect(() => Deployment.make("x", { contexts: [], remotes: [a] })).toThrow(
      /exactly one remote must declare a benchmark; none of a does/
    )
    expect(() => Deployment.make("x", { contexts: [], remotes: [ping, ping] })).toThrow(/duplicate remote names: ping/)
    const b1 = Remote.make(
      "b1",
      { payload: Schema.Struct({}), success: Schema.Number, benchmark: { dataset: [{}] } },
      () => Effect.succeed(1)
    )
    expect(() => Deployment.make("x", { contexts: [], remotes: [ping, b1] })).toThrow(/ping, b1 do/)
    const badInput = Remote.make(
      "bad",
      {
        payload: Schema.Struct({ n: Schema.Number }),
        success: Schema.Number,
        // @ts-expect-error n must be a number
        benchmark: { dataset: [{ n: 1 }, { n: "two" }] }
      },
      ({ n }) => Effect.succeed(n)
    )
    expect(() => Deployment.make("x", { contexts: [], remotes: [badInput] })).toThrow(/#1: .*n[\s\S]*Expected number/)
  })

  // That a remote needing an unregistered context does not compile is checked by tsc: see test/compile-time.ts.
})
