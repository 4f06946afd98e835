/**
 * The call path's fast path (a handler whose Effect is complete already: an `Exit`) against the same handler run in a
 * fiber: the answers over HTTP, in process, the metrics and admission must not tell them apart.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Fiber, FiberId, Option, Queue, Schema, Stream, TestClock } from "effect"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as Deployment from "../src/Deployment.js"
import type * as EngineReport from "../src/EngineReport.js"
import * as Remote from "../src/Remote.js"
import * as Session from "../src/Session.js"
import * as Worker from "../src/Worker.js"
import { CallTimeout, PayloadInvalid, WorkerUnavailable } from "../src/WorkerError.js"
import { DivideByZero, eventually, request } from "./fixtures/serving.js"

const local = { port: 0, host: "127.0.0.1", handleSignals: false, benchmark: false } as const

const divideByZero = new DivideByZero({ reason: "zero-divisor", dividend: 7 })

/** Each case's handler result, built when the handler is called (so that "throw" throws from the handler itself). */
type Declared = DivideByZero | WorkerUnavailable | PayloadInvalid | string
const cases: Record<string, () => Effect.Effect<unknown, Declared>> = {
  string: () => Exit.succeed('héllo \u2603 "quoted"'),
  number: () => Exit.succeed(42.5),
  negativeZero: () => Exit.succeed(-0),
  largeInt: () => Exit.succeed(2 ** 60),
  huge: () => Exit.succeed(1e21),
  true: () => Exit.succeed(true),
  null: () => Exit.succeed(null),
  undefined: () => Exit.void,
  bytes: () => Exit.succeed(new Uint8Array([0, 1, 254, 255])),
  dict: () => Exit.succeed({ a: 1, constructor: "c", toString: 2, nested: { b: [true, null] } }),
  list: () => Exit.succeed([1, "x", [2]]),
  nan: () => Exit.succeed(Number.NaN),
  bigint: () => Exit.succeed(10n),
  declared: () => Exit.fail(divideByZero),
  declaredByEffect: () => Effect.fail("a string error"),
  unavailable: () => Exit.fail(new WorkerUnavailable({ reason: "draining", detail: "declared" })),
  invalid: () => Exit.fail(new PayloadInvalid({ remote: "other", issues: [] })),
  die: () => Exit.die(new Error("bug")),
  dieString: () => Effect.die("bug"),
  throws: () => {
    throw new Error("thrown")
  },
  interrupt: () => Exit.failCause(Cause.interrupt(FiberId.make(7, 0))),
  sequentialFailThenDie: () => Exit.failCause(Cause.sequential(Cause.fail(divideByZero), Cause.die("later"))),
  parallelDieAndFail: () => Exit.failCause(Cause.parallel(Cause.die("first"), Cause.fail("second"))),
  sequentialInterruptThenDie: () =>
    Exit.failCause(Cause.sequential(Cause.interrupt(FiberId.make(7, 0)), Cause.die("after"))),
  empty: () => Exit.failCause(Cause.empty)
}

const payload = Schema.Struct({ case: Schema.String })
const error = Schema.Union(DivideByZero, WorkerUnavailable, PayloadInvalid, Schema.String)

/** The complete form: the handler returns the case's Effect as it is (an Exit for most). */
const complete = Remote.make(
  "complete",
  { payload, success: Schema.Unknown, error, benchmark: { dataset: [{ case: "number" }], runs: 1, warmup: 0 } },
  (p) => cases[p.case]!()
)
/** The same logic with work to run: always a fiber. */
const fiber = Remote.make("fiber", { payload, success: Schema.Unknown, error }, (p) =>
  Effect.suspend(() => cases[p.case]!())
)
const app = Deployment.make("fastpath", { contexts: [], remotes: [complete, fiber] })

const post = (url: string, name: string, body: unknown) => request(`${url}/remote/${name}`, { body })

/** A defect's id differs per call: blank it out to compare two answers. */
const withoutIds = (text: string) => text.replace(/\[id [^\]]+\]/g, "[id]").replace(/"id":"[^"]+"/g, '"id":"?"')

/** What every case must answer over HTTP, whichever form its handler takes. */
const expected: Record<
  string,
  { readonly status: number; readonly ok?: unknown; readonly err?: Record<string, unknown> }
> = {
  string: { status: 200, ok: 'héllo \u2603 "quoted"' },
  number: { status: 200, ok: 42.5 },
  negativeZero: { status: 200, ok: 0 },
  largeInt: { status: 200, ok: 2 ** 60 },
  huge: { status: 200, ok: 1e21 },
  true: { status: 200, ok: true },
  null: { status: 200, ok: null },
  undefined: { status: 200, ok: null },
  bytes: { status: 200, ok: { type: "bytes", contents: "AAH+/w==" } },
  dict: {
    status: 200,
    ok: {
      type: "dict",
      contents: [
        ["a", 1],
        ["constructor", "c"],
        ["toString", 2],
        ["nested", { type: "dict", contents: [["b", { type: "list", contents: [true, null] }]] }]
      ]
    }
  },
  list: { status: 200, ok: { type: "list", contents: [1, "x", { type: "list", contents: [2] }] } },
  nan: { status: 200, err: { _tag: "CallFailed", reason: "encode" } },
  bigint: { status: 200, err: { _tag: "CallFailed", reason: "encode" } },
  declared: { status: 200, err: { _tag: "DivideByZero", dividend: 7 } },
  declaredByEffect: { status: 200, err: { _tag: "Error", message: "a string error" } },
  unavailable: { status: 200, err: { _tag: "WorkerUnavailable", reason: "draining", detail: "declared" } },
  invalid: { status: 200, err: { _tag: "PayloadInvalid", remote: "other" } },
  die: { status: 200, err: { _tag: "CallFailed", reason: "defect" } },
  dieString: { status: 200, err: { _tag: "CallFailed", reason: "defect" } },
  throws: { status: 200, err: { _tag: "CallFailed", reason: "defect" } },
  // The handler interrupted itself while the worker is up: its own failure (200 err), not the worker shutting down
  // (503 "interrupted when the worker shut down", which the reference's client would retry without end).
  interrupt: { status: 200, err: { _tag: "CallFailed", reason: "defect" } },
  sequentialFailThenDie: { status: 200, err: { _tag: "DivideByZero" } },
  parallelDieAndFail: { status: 200, err: { _tag: "Error", message: "second" } },
  sequentialInterruptThenDie: { status: 200, err: { _tag: "CallFailed", reason: "defect" } },
  empty: { status: 200, err: { _tag: "CallFailed", reason: "defect" } }
}

/** The metric outcome each case counts as. */
const outcomeOfCase = (name: string): string => {
  const e = expected[name]!
  if (e.err === undefined) return "ok"
  if (e.err["_tag"] !== "CallFailed") return "error"
  return e.err["reason"] === "encode" ? "unencodable" : "defect"
}

/** The `worker_calls_total` counters of one remote, by outcome. */
const counters = (metrics: string, remote: string): Record<string, number> => {
  const out: Record<string, number> = {}
  const re = new RegExp(
    `^worker_calls_total\\{deployment="fastpath",remote="${remote}",outcome="(\\w+)"\\} (\\d+)$`,
    "gm"
  )
  for (const m of metrics.matchAll(re)) out[m[1]!] = Number(m[2])
  return out
}

/** The cases whose handler returns a complete Effect (the fast path's input). */
const completeCases = Object.keys(cases).filter((name) => name !== "throws")

describe("a complete Effect is answered as the same handler in a fiber", () => {
  it("the complete cases are Exits (the fast path is what they take)", () => {
    for (const name of completeCases) expect([name, Exit.isExit(cases[name]!())]).toEqual([name, true])
  })

  it.scopedLive("over HTTP: every wire kind, declared errors, defects, interruptions, composite causes", () =>
    Effect.gen(function* () {
      const { url } = yield* Worker.serveEffect(app, local)
      for (const name of Object.keys(cases)) {
        const a = yield* post(url, "complete", { payload: { kwargs: { case: name } } })
        const b = yield* post(url, "fiber", { payload: { kwargs: { case: name } } })
        expect({ name, status: a.status, body: withoutIds(a.text) }).toEqual({
          name,
          status: b.status,
          body: withoutIds(b.text).replaceAll("fiber", "complete")
        })
        const want = expected[name]!
        expect([name, a.status]).toEqual([name, want.status])
        if (want.err === undefined) expect([name, a.json]).toEqual([name, { result: { ok: want.ok } }])
        else expect([name, a.json.result.err.contents]).toMatchObject([name, want.err])
      }
      // The outcome counters agree too, and say what each case was.
      const metrics = (yield* request(`${url}/metrics`)).text
      const want: Record<string, number> = {}
      for (const name of Object.keys(cases)) want[outcomeOfCase(name)] = (want[outcomeOfCase(name)] ?? 0) + 1
      expect(counters(metrics, "complete")).toEqual(counters(metrics, "fiber"))
      expect(counters(metrics, "complete")).toMatchObject({ ...want, interrupted: 0, timeout: 0, rejected: 0 })
      expect(metrics).toContain(`worker_calls_in_flight{deployment="fastpath",remote="complete"} 0`)
      expect(metrics).toContain(`worker_pending_workload{deployment="fastpath"} 0`)
    })
  )

  it.scoped("in process: invoke and call end alike, and count alike", () =>
    Effect.gen(function* () {
      const worker = yield* Worker.start(app, { benchmark: false })
      yield* worker.awaitReady
      /** An exit as a comparable value: ids blanked, the remote's name left out. */
      const shape = (exit: Exit.Exit<unknown, unknown>): unknown => {
        if (Exit.isSuccess(exit)) return { ok: exit.value }
        const failure = Cause.failureOption(exit.cause)
        if (Option.isSome(failure)) {
          const e = failure.value as Record<string, unknown>
          if (e["_tag"] === "RemoteFailure") return { declared: e["error"], encoded: e["encoded"] }
          return { fail: e["_tag"], reason: e["reason"] }
        }
        if (Cause.isInterruptedOnly(exit.cause)) return { interrupted: [...Cause.interruptors(exit.cause)] }
        return { defects: [...Cause.defects(exit.cause)].map((d) => (d instanceof Error ? d.message : d)) }
      }
      for (const name of Object.keys(cases)) {
        const a = yield* Effect.exit(worker.invoke("complete", { case: name }))
        const b = yield* Effect.exit(worker.invoke("fiber", { case: name }))
        expect([name, shape(a)]).toEqual([name, shape(b)])
        const c = yield* Effect.exit(worker.call(complete, { case: name }))
        const d = yield* Effect.exit(worker.call(fiber, { case: name }))
        expect([name, shape(c)]).toEqual([name, shape(d)])
      }
      const snapshot = yield* worker.metrics
      const byName = Object.fromEntries(snapshot.remotes.map((r) => [r.name, r]))
      expect(byName["complete"]!.calls).toEqual(byName["fiber"]!.calls)
      expect(byName["complete"]).toMatchObject({ running: 0, queued: 0 })
      expect(snapshot.pendingWorkload).toBe(0)
      // A declared WorkerUnavailable / PayloadInvalid is the remote's error, not the worker's refusal.
      const unavailable = yield* Effect.flip(worker.invoke("complete", { case: "unavailable" }))
      expect(unavailable).toMatchObject({ _tag: "RemoteFailure", error: { _tag: "WorkerUnavailable" } })
      const invalid = yield* Effect.flip(worker.invoke("complete", { case: "invalid" }))
      expect(invalid).toMatchObject({ _tag: "RemoteFailure", error: { _tag: "PayloadInvalid", remote: "other" } })
    })
  )
})

describe("a handler that interrupts itself, in process", () => {
  it.scoped("fails invoke with a CallFailed defect (as over HTTP); the caller is not interrupted", () =>
    Effect.gen(function* () {
      const worker = yield* Worker.start(app, { benchmark: false })
      yield* worker.awaitReady
      for (const remote of ["complete", "fiber"]) {
        for (const name of ["interrupt", "empty"]) {
          const exit = yield* Effect.exit(worker.invoke(remote, { case: name }))
          expect([remote, name, exit]).toMatchObject([
            remote,
            name,
            { _tag: "Failure", cause: { _tag: "Fail", error: { _tag: "CallFailed", reason: "defect", remote } } }
          ])
        }
      }
      // One such call among others: the caller goes on to the next.
      const all = yield* Effect.forEach(["number", "interrupt", "string"], (name) =>
        Effect.either(worker.invoke("complete", { case: name }))
      )
      expect(all.map((r) => r._tag)).toEqual(["Right", "Left", "Right"])
      const calls = (yield* worker.metrics).remotes.find((r) => r.name === "complete")!.calls
      expect(calls).toMatchObject({ defect: 3, interrupted: 0, ok: 2 })
    })
  )
})

describe("a handler that returns no Effect", () => {
  const untyped = Remote.make(
    "untyped",
    {
      payload: Schema.Struct({ returns: Schema.String }),
      success: Schema.Unknown,
      benchmark: { dataset: [{ returns: "effect" }], runs: 1, warmup: 0 }
    },
    // What a JavaScript caller (no type checker) may write: a value, a Promise, nothing.
    ({ returns }): any =>
      returns === "undefined"
        ? undefined
        : returns === "number"
          ? 5
          : returns === "promise"
            ? Promise.resolve(1)
            : returns === "object"
              ? { a: 1 }
              : Exit.succeed(1)
  )
  const untypedApp = Deployment.make("fastpath", { contexts: [], remotes: [untyped] })

  it.scopedLive("is a defect of the call (200 err over HTTP, CallFailed in process), and frees its slot", () =>
    Effect.gen(function* () {
      const { url, worker } = yield* Worker.serveEffect(untypedApp, local)
      for (const returns of ["undefined", "number", "promise", "object"]) {
        const reply = yield* post(url, "untyped", { payload: { args: [returns] } })
        expect([returns, reply.status, reply.json.result?.err?.contents]).toMatchObject([
          returns,
          200,
          { _tag: "CallFailed", reason: "defect" }
        ])
        const invoked = yield* Effect.flip(worker.invoke("untyped", { returns }))
        expect([returns, invoked]).toMatchObject([returns, { _tag: "CallFailed", reason: "defect" }])
      }
      expect((yield* worker.stats)[0]).toMatchObject({ running: 0, queued: 0 })
      expect((yield* post(url, "untyped", { payload: { args: ["effect"] } })).json).toEqual({ result: { ok: 1 } })
    })
  )
})

// ---------------------------------------------------------------------------
// the engine report
// ---------------------------------------------------------------------------

interface Post {
  readonly path: string
  readonly body: any
}

/** A stand-in engine on loopback that records every POST. */
const engine = Effect.acquireRelease(
  Effect.async<{ readonly url: string; readonly posts: Queue.Queue<Post>; readonly server: http.Server }>((resume) => {
    const posts = Effect.runSync(Queue.unbounded<Post>())
    const server = http.createServer((req, res) => {
      let data = ""
      req.on("data", (c) => (data += c))
      req.on("end", () => {
        Queue.unsafeOffer(posts, { path: req.url ?? "", body: JSON.parse(data) })
        res.writeHead(200, { "content-type": "application/json" }).end("{}")
      })
    })
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      resume(Effect.succeed({ url: `http://127.0.0.1:${port}`, posts, server }))
    })
  }),
  ({ server }) =>
    Effect.async<void>((resume) => {
      server.close(() => resume(Effect.void))
      server.closeAllConnections()
    })
)

describe("the engine report", () => {
  it.scopedLive("a complete call is reported as the fiber form is: Success, or Error, each by its request_idx", () =>
    Effect.gen(function* () {
      const { posts, url: engineUrl } = yield* engine
      const report: EngineReport.Options = {
        reportAddrs: [engineUrl],
        containerId: 9,
        mtoken: "m",
        url: "http://worker",
        interval: "20 millis"
      }
      const { url } = yield* Worker.serveEffect(app, { ...local, report })
      const names = ["number", "declared", "die", "throws", "interrupt", "nan"]
      let idx = 100
      const sent: Array<[string, string, number]> = []
      for (const name of names) {
        for (const remote of ["complete", "fiber"]) {
          idx++
          sent.push([name, remote, idx])
          const auth_data = { request_idx: idx, reqnum: idx }
          yield* post(url, remote, { auth_data, payload: { kwargs: { case: name } } })
        }
      }
      const deleted: Array<any> = []
      while (deleted.length < sent.length) {
        const next = yield* Queue.take(posts).pipe(
          Effect.timeoutFail({ duration: "3 seconds", onTimeout: () => deleted })
        )
        if (next.path === "/delete_requests/") deleted.push(...next.body.requests)
      }
      const statusOf = (i: number) => deleted.find((r) => r.request_idx === i)
      for (let i = 0; i < sent.length; i += 2) {
        const [name, , a] = sent[i]!
        const b = sent[i + 1]![2]
        const want = name === "number" ? { status: "Success", success: true } : { status: "Error", success: false }
        expect([name, statusOf(a)]).toMatchObject([name, want])
        expect([name, statusOf(b)]).toMatchObject([name, want])
        // Queued, started, done: in order, for the call without a fiber as for the other.
        const r = statusOf(a)
        expect(r.work_started_at).toBeGreaterThanOrEqual(r.entered_queue_at)
        expect(r.work_completed_at).toBeGreaterThanOrEqual(r.work_started_at)
      }
    })
  )
})

// ---------------------------------------------------------------------------
// admission
// ---------------------------------------------------------------------------

/** One slot: `slow` calls hold it until released (in a fiber), the others are complete Effects. */
const gate = (maxQueue: number) => {
  const state = { started: 0, release: Deferred.unsafeMake<void>(FiberId.none) }
  const remote = Remote.make(
    "gate",
    {
      payload: Schema.Struct({ slow: Schema.Boolean }),
      success: Schema.String,
      concurrency: 1,
      maxQueue,
      benchmark: { dataset: [{ slow: false }], runs: 1, warmup: 0 }
    },
    ({ slow }) =>
      slow
        ? Effect.gen(function* () {
            state.started++
            yield* Deferred.await(state.release)
            return "slow"
          })
        : Exit.succeed("fast")
  )
  return { state, remote, app: Deployment.make("fastpath", { contexts: [], remotes: [remote] }) }
}

/** Let forked fibers run (no clock time passes) until `predicate` holds. */
const settle = <A>(effect: Effect.Effect<A>, predicate: (a: A) => boolean) =>
  Effect.gen(function* () {
    for (let i = 0; i < 100; i++) {
      if (predicate(yield* effect)) return
      yield* Effect.yieldNow()
    }
    return expect.fail("did not settle")
  })

describe("admission of complete Effects", () => {
  it.scopedLive("over HTTP: behind a slow call in the one slot, a complete call queues; /health is answered", () =>
    Effect.gen(function* () {
      const { state, app } = gate(10)
      const { url, worker } = yield* Worker.serveEffect(app, local)
      const slow = yield* Effect.fork(post(url, "gate", { payload: { kwargs: { slow: true } } }))
      yield* eventually(
        Effect.sync(() => state.started),
        (n) => n === 1
      )
      const fast = yield* Effect.fork(post(url, "gate", { payload: { kwargs: { slow: false } } }))
      const stats = yield* eventually(worker.stats, (s) => s[0]!.queued === 1)
      expect(stats[0]).toMatchObject({ running: 1, queued: 1 })
      expect((yield* request(`${url}/health`)).status).toBe(200)
      // Still waiting: it never ran beside the slow call.
      expect(Option.isNone(yield* Fiber.poll(fast))).toBe(true)
      const metrics = (yield* request(`${url}/metrics`)).text
      expect(metrics).toContain(`worker_calls_in_flight{deployment="fastpath",remote="gate"} 1`)
      expect(metrics).toContain(`worker_calls_queued{deployment="fastpath",remote="gate"} 1`)
      yield* Deferred.succeed(state.release, undefined)
      expect((yield* Fiber.join(slow)).json).toEqual({ result: { ok: "slow" } })
      expect((yield* Fiber.join(fast)).json).toEqual({ result: { ok: "fast" } })
      expect((yield* worker.stats)[0]).toMatchObject({ running: 0, queued: 0 })
    })
  )

  it.scopedLive("over HTTP with maxQueue 0: a complete call behind a slow one is refused (429), not run", () =>
    Effect.gen(function* () {
      const { state, app } = gate(0)
      const { url, worker } = yield* Worker.serveEffect(app, local)
      const slow = yield* Effect.fork(post(url, "gate", { payload: { kwargs: { slow: true } } }))
      yield* eventually(
        Effect.sync(() => state.started),
        (n) => n === 1
      )
      const refused = yield* post(url, "gate", { payload: { kwargs: { slow: false } } })
      expect(refused.status).toBe(429)
      expect(refused.json).toMatchObject({ _tag: "WorkerUnavailable", reason: "queue-full" })
      yield* Deferred.succeed(state.release, undefined)
      expect((yield* Fiber.join(slow)).json).toEqual({ result: { ok: "slow" } })
      // The slot is free again: the complete call runs now.
      expect((yield* post(url, "gate", { payload: { kwargs: { slow: false } } })).json).toEqual({
        result: { ok: "fast" }
      })
      expect((yield* worker.stats)[0]).toMatchObject({ running: 0, queued: 0 })
    })
  )

  it.scoped("in process: a complete call queues behind a slow one, and runs when the slot frees", () =>
    Effect.gen(function* () {
      const { state, remote, app } = gate(10)
      const worker = yield* Worker.start(app, { benchmark: false })
      yield* worker.awaitReady
      const slow = yield* Effect.fork(worker.call(remote, { slow: true }))
      yield* settle(
        Effect.sync(() => state.started),
        (n) => n === 1
      )
      const fast = yield* Effect.fork(worker.call(remote, { slow: false }))
      yield* settle(worker.stats, (s) => s[0]!.queued === 1)
      expect(Option.isNone(yield* Fiber.poll(fast))).toBe(true)
      yield* Deferred.succeed(state.release, undefined)
      expect(yield* Fiber.join(slow)).toBe("slow")
      expect(yield* Fiber.join(fast)).toBe("fast")
    })
  )

  it.scoped("slots never leak: many complete calls of every ending, then the stats are empty and the drain ends", () =>
    Effect.gen(function* () {
      const worker = yield* Worker.start(app, { benchmark: false })
      yield* worker.awaitReady
      const names = Object.keys(cases)
      for (let i = 0; i < 300; i++) {
        yield* Effect.exit(worker.invoke("complete", { case: names[i % names.length]! }))
      }
      for (const s of yield* worker.stats) expect(s).toMatchObject({ running: 0, queued: 0 })
      expect((yield* worker.metrics).pendingWorkload).toBe(0)
      // Nothing pending: the drain returns at once (a leaked workload would hold it for the drain timeout).
      const shutdown = yield* Effect.fork(worker.shutdown)
      yield* settle(Effect.map(Fiber.poll(shutdown), Option.isSome), (done) => done)
      expect((yield* worker.report).phase).toBe("stopped")
    })
  )
})

// ---------------------------------------------------------------------------
// timeouts, sessions, batched and stream remotes
// ---------------------------------------------------------------------------

describe("the fast path beside the call's other features", () => {
  const timed = Remote.make(
    "timed",
    {
      payload: Schema.Struct({ complete: Schema.Boolean }),
      success: Schema.Number,
      timeout: "10 millis",
      benchmark: { dataset: [{ complete: true }], runs: 1, warmup: 0 }
    },
    ({ complete }) => (complete ? Exit.succeed(1) : Effect.never)
  )

  it.scoped("a call timeout never fails a complete Effect; the fiber form still times out", () =>
    Effect.gen(function* () {
      const worker = yield* Worker.start(Deployment.make("fastpath", { contexts: [], remotes: [timed] }), {
        benchmark: false,
        callTimeout: "1 millis"
      })
      yield* worker.awaitReady
      expect(yield* worker.call(timed, { complete: true })).toBe(1)
      const stuck = yield* Effect.fork(Effect.exit(worker.call(timed, { complete: false })))
      yield* TestClock.adjust("10 millis")
      const exit = yield* Fiber.join(stuck)
      expect(exit).toEqual(Exit.fail(new CallTimeout({ remote: "timed", timeoutMillis: 10 })))
      expect(yield* worker.call(timed, { complete: true })).toBe(1)
    })
  )

  it.scopedLive("in a session: a complete call runs within it (answered while open, 410 once it ended)", () =>
    Effect.gen(function* () {
      const inSession = Remote.make("inSession", { payload: Schema.Struct({}), success: Schema.String }, () =>
        Effect.map(Session.current, (s) => (Option.isSome(s) ? s.value.id : "(none)"))
      )
      const { url } = yield* Worker.serveEffect(
        Deployment.make("fastpath", { contexts: [], remotes: [complete, inSession] }),
        local
      )
      const auth = { request_idx: 5, reqnum: 5 }
      const id = (yield* request(`${url}/session/create`, { body: { auth_data: auth } })).json.session_id as string
      const inside = yield* post(url, "complete", { session_id: id, payload: { kwargs: { case: "string" } } })
      expect(inside.json).toEqual({ result: { ok: 'héllo \u2603 "quoted"' } })
      const declared = yield* post(url, "complete", { session_id: id, payload: { kwargs: { case: "declared" } } })
      expect(declared.json.result.err.contents).toMatchObject({ _tag: "DivideByZero" })
      expect((yield* post(url, "inSession", { session_id: id, payload: {} })).json).toEqual({ result: { ok: id } })
      yield* request(`${url}/session/end`, { body: { session_id: id, session_auth: auth } })
      const gone = yield* post(url, "complete", { session_id: id, payload: { kwargs: { case: "string" } } })
      expect(gone.status).toBe(410)
      expect(gone.json).toMatchObject({ _tag: "SessionGone", reason: "ended" })
    })
  )

  it.scopedLive("batched and stream remotes with complete Effects answer as before", () =>
    Effect.gen(function* () {
      const doubled = Remote.make(
        "doubled",
        {
          payload: Schema.Struct({ x: Schema.Number }),
          success: Schema.Number,
          error: Schema.String,
          batch: { maxSize: 4, maxWait: "1 millis" }
        },
        (payloads) => Exit.succeed(payloads.map((p) => (p.x < 0 ? Exit.fail("negative") : p.x * 2)))
      )
      const counted = Remote.stream(
        "counted",
        { payload: Schema.Struct({ n: Schema.Number }), element: Schema.Number },
        (p) => Stream.range(1, p.n)
      )
      const { url, worker } = yield* Worker.serveEffect(
        Deployment.make("fastpath", { contexts: [], remotes: [complete, doubled, counted] }),
        local
      )
      expect((yield* post(url, "doubled", { payload: { args: [21] } })).json).toEqual({ result: { ok: 42 } })
      const negative = yield* post(url, "doubled", { payload: { args: [-1] } })
      expect(negative.json.result.err.contents).toMatchObject({ message: "negative" })
      expect(yield* worker.call(doubled, { x: 4 })).toBe(8)
      const lines = (yield* post(url, "counted", { payload: { args: [3] } })).text.trim().split("\n")
      expect(lines.slice(0, 3).map((l) => JSON.parse(l))).toEqual([{ item: 1 }, { item: 2 }, { item: 3 }])
      expect(JSON.parse(lines[3]!)).toMatchObject({ end: { count: 3 } })
      for (const s of yield* worker.stats) expect(s).toMatchObject({ running: 0, queued: 0 })
    })
  )
})

// ---------------------------------------------------------------------------
// the JSON check's fast form (no walk for small bodies that cannot hold __proto__ or be too deep)
// ---------------------------------------------------------------------------

describe("the JSON check, with and without its walk", () => {
  const raw = (url: string, body: string) =>
    request(`${url}/remote/complete`, { body, headers: { "content-type": "application/json" } })
  /** The envelope of a `complete` call, with `extra` (raw JSON text) as one more key at the place given. */
  const withKey = (key: string, at: "envelope" | "payload" | "deep", padding = 0) => {
    const pad = padding > 0 ? `,"pad":"${"x".repeat(padding)}"` : ""
    const value = `{${key}:1}`
    if (at === "envelope") return `{"payload":{"kwargs":{"case":"number"}}${pad},${key}:1}`
    if (at === "payload") return `{"payload":{"kwargs":{"case":"number"},${key}:1}${pad}}`
    return `{"payload":{"kwargs":{"case":"number"}},"x":[[[[[[${value}]]]]]]${pad}}`
  }

  it.scopedLive("__proto__ keys are refused at any depth, written as they are or with \\u escapes, short or long", () =>
    Effect.gen(function* () {
      const { url } = yield* Worker.serveEffect(app, local)
      const keys = [
        `"__proto__"`,
        `"\\u005f_proto__"`,
        `"__proto\\u005F_"`,
        `"\\u005f\\u005f\\u0070\\u0072\\u006f\\u0074\\u006f\\u005f\\u005f"`
      ]
      for (const key of keys) {
        for (const at of ["envelope", "payload", "deep"] as const) {
          for (const padding of [0, 3000]) {
            const body = withKey(key, at, padding)
            expect(JSON.parse(body)).toBeTypeOf("object")
            const reply = yield* raw(url, body)
            expect([key, at, padding, reply.status, reply.json?.reason]).toEqual([
              key,
              at,
              padding,
              400,
              "ForbiddenKey"
            ])
          }
        }
      }
      // In a dict's key (decoded by the wire) and in kwargs, escaped: refused too.
      const dict = `{"payload":{"kwargs":{"case":"number","d":{"type":"dict","contents":[["\\u005f_proto__",1]]}}}}`
      expect((yield* raw(url, dict)).json).toMatchObject({ reason: "ForbiddenKey" })
      const kwarg = `{"payload":{"kwargs":{"case":"number","\\u005f_proto__":1}}}`
      expect((yield* raw(url, kwarg)).json).toMatchObject({ reason: "ForbiddenKey" })
    })
  )

  it.scopedLive("\\u escapes and __proto__ in values only are accepted, short or long", () =>
    Effect.gen(function* () {
      const { url } = yield* Worker.serveEffect(app, local)
      const escaped = `{"payload":{"kwargs":{"case":"\\u006eumber"}}}`
      expect((yield* raw(url, escaped)).json).toEqual({ result: { ok: 42.5 } })
      const inValue = `{"payload":{"kwargs":{"case":"number"}},"note":"__proto__ \\u00e9"}`
      expect((yield* raw(url, inValue)).json).toEqual({ result: { ok: 42.5 } })
      const long = `{"payload":{"kwargs":{"case":"number"}},"note":"__proto__ ${"\\u00e9".repeat(500)}"}`
      expect(long.length).toBeGreaterThan(2050)
      expect((yield* raw(url, long)).json).toEqual({ result: { ok: 42.5 } })
    })
  )

  it.scopedLive("nesting: 1024 levels pass the JSON check, 1025 are TooDeep, at the fast check's length boundary", () =>
    Effect.gen(function* () {
      const { url } = yield* Worker.serveEffect(app, local)
      const nested = (levels: number) => "[".repeat(levels) + "]".repeat(levels)
      // 1025 levels take 2050 characters: the shortest body the walk must see.
      const tooDeep = nested(1025)
      expect(tooDeep.length).toBe(2050)
      const refused = yield* raw(url, tooDeep)
      expect(refused.status).toBe(400)
      expect(refused.json).toMatchObject({ _tag: "WireDecodeError", reason: "TooDeep" })
      // 1024 levels pass the JSON check (2048 characters, not walked); the envelope refuses the array.
      const deepest = yield* raw(url, nested(1024))
      expect(deepest.status).toBe(400)
      expect(deepest.json.reason).not.toBe("TooDeep")
      // Inside an envelope, long or short: the depth is the body's.
      const inEnvelope = (levels: number, pad = 0) =>
        `{"payload":{"kwargs":{"case":"number"}},"pad":"${"x".repeat(pad)}","x":${nested(levels - 1)}}`
      expect((yield* raw(url, inEnvelope(1024))).json).toEqual({ result: { ok: 42.5 } })
      expect((yield* raw(url, inEnvelope(1025))).json).toMatchObject({ reason: "TooDeep" })
      expect((yield* raw(url, inEnvelope(1024, 3000))).json).toEqual({ result: { ok: 42.5 } })
      expect((yield* raw(url, inEnvelope(1025, 3000))).json).toMatchObject({ reason: "TooDeep" })
      // Whitespace between brackets makes a body longer, never deeper.
      const spaced = "[ ".repeat(1025) + "] ".repeat(1025)
      expect((yield* raw(url, spaced)).json).toMatchObject({ reason: "TooDeep" })
    })
  )

  it.scopedLive("keys named like Object.prototype's members are plain data, decoded and sent back", () =>
    Effect.gen(function* () {
      const keys = Remote.make(
        "keys",
        {
          payload: Schema.Struct({ d: Schema.Record({ key: Schema.String, value: Schema.Unknown }) }),
          success: Schema.Unknown
        },
        ({ d }) =>
          Exit.succeed({
            own: Object.keys(d),
            plain: Object.getPrototypeOf(d) === Object.prototype,
            hasOwn: Object.hasOwn(d, "hasOwnProperty")
          })
      )
      const { url } = yield* Worker.serveEffect(
        Deployment.make("fastpath", { contexts: [], remotes: [complete, keys] }),
        local
      )
      const names = ["constructor", "toString", "hasOwnProperty", "valueOf", "__defineGetter__", "isPrototypeOf"]
      const asObject = Object.fromEntries(names.map((k, i) => [k, i]))
      const asDict = { type: "dict", contents: names.map((k, i) => [k, i]) }
      for (const d of [asObject, asDict]) {
        const reply = yield* request(`${url}/remote/keys`, { body: { payload: { kwargs: { d } } } })
        expect(reply.json).toEqual({
          result: {
            ok: {
              type: "dict",
              contents: [
                ["own", { type: "list", contents: names }],
                ["plain", true],
                ["hasOwn", true]
              ]
            }
          }
        })
      }
    })
  )
})
