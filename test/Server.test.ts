import { describe, expect, it } from "@effect/vitest"
import { Cause, ConfigProvider, Context, Deferred, Effect, Exit, Fiber, FiberId, Schema, Scope } from "effect"
import type { Duration } from "effect"
import { App } from "../src/App.js"
import * as Deployment from "../src/Deployment.js"
import { resolve } from "../src/WorkerConfig.js"
import * as Remote from "../src/Remote.js"
import * as Worker from "../src/Worker.js"
import * as WorkerContext from "../src/WorkerContext.js"
import { ping } from "./fixtures/probe.js"
import { boom, divide, echo, eventually, keyPair, pubkeyServer, request, sign } from "./fixtures/serving.js"

const local = { port: 0, host: "127.0.0.1", handleSignals: false, benchmark: false } as const

const serve = <P, E, R extends Remote.Any>(app: Deployment.Deployment<P, E, R>, options: Worker.ServeOptions = {}) =>
  Effect.tap(Worker.serveEffect(app, { ...local, ...options }), (served) => served.worker.awaitReady)

const app = Deployment.make("wire", { contexts: [], remotes: [echo, divide, boom] })

/** A remote whose calls wait for the test: `started` counts entries, `release` lets them all finish. */
const gated = (options: { concurrency?: number; maxQueue?: number; maxQueueTime?: Duration.DurationInput } = {}) => {
  const state = { started: 0, finished: 0, interrupted: 0, release: Deferred.unsafeMake<void>(undefined as never) }
  const remote = Remote.make(
    "gate",
    {
      payload: Schema.Struct({ units: Schema.Number }),
      success: Schema.Literal("done"),
      concurrency: options.concurrency ?? 1,
      maxQueue: options.maxQueue ?? 1000,
      ...(options.maxQueueTime === undefined ? {} : { maxQueueTime: options.maxQueueTime }),
      benchmark: { dataset: [{ units: 1 }], runs: 1, warmup: 0, concurrency: 1, workload: (p) => p.units }
    },
    ({ units }) =>
      units === 1
        ? Effect.succeed("done" as const)
        : Effect.gen(function* () {
            state.started++
            yield* Deferred.await(state.release)
            state.finished++
            return "done" as const
          }).pipe(Effect.onInterrupt(() => Effect.sync(() => state.interrupted++)))
  )
  return { remote, state, app: Deployment.make("gated", { contexts: [], remotes: [remote] }) }
}

const call = (url: string, name: string, payload: unknown, headers?: Record<string, string>) =>
  request(`${url}/remote/${name}`, { body: { payload }, ...(headers === undefined ? {} : { headers }) })

describe("routes", () => {
  it.scopedLive("health, ready, metrics and unknown routes", () =>
    Effect.gen(function* () {
      const { url } = yield* serve(app)
      const health = yield* request(`${url}/health`)
      expect(health.status).toBe(200)
      expect(health.json).toMatchObject({ status: "alive", deployment: "wire", phase: "ready" })
      const ready = yield* request(`${url}/ready`)
      expect(ready.status).toBe(200)
      expect(ready.json.phase).toBe("ready")
      expect(ready.json.report.deployment).toBe("wire")

      yield* call(url, "divide", { kwargs: { a: 6, b: 3 } })
      yield* call(url, "divide", { kwargs: { a: 1, b: 0 } })
      yield* call(url, "divide", { kwargs: { a: "x" } })
      yield* call(url, "boom", {})
      yield* call(url, "nope", {})
      const metrics = yield* request(`${url}/metrics`)
      expect(metrics.status).toBe(200)
      expect(metrics.headers.get("content-type")).toContain("text/plain")
      const line = (outcome: string) => `worker_calls_total{deployment="wire",remote="divide",outcome="${outcome}"}`
      expect(metrics.text).toContain(`${line("ok")} 1`)
      expect(metrics.text).toContain(`${line("error")} 1`)
      expect(metrics.text).toContain(`${line("invalid")} 1`)
      expect(metrics.text).toContain(`worker_calls_total{deployment="wire",remote="boom",outcome="defect"} 1`)
      expect(metrics.text).toContain(`worker_unknown_remote_calls_total{deployment="wire"} 1`)
      expect(metrics.text).toContain(`worker_call_duration_seconds_count{deployment="wire",remote="divide"} 2`)
      expect(metrics.text).toContain(`worker_phase{deployment="wire",phase="ready"} 1`)

      const nowhere = yield* request(`${url}/nowhere`)
      expect(nowhere.status).toBe(404)
      expect(nowhere.json._tag).toBe("RouteNotFound")
    })
  )

  it.scopedLive("405 with Allow for a wrong method; JSON 404s for remote names of any length", () =>
    Effect.gen(function* () {
      const { url } = yield* serve(app)
      const get = yield* request(`${url}/remote/divide`, { method: "GET" })
      expect(get.status).toBe(405)
      expect(get.headers.get("allow")).toBe("POST")
      expect(get.json).toMatchObject({ _tag: "MethodNotAllowed" })
      const del = yield* request(`${url}/health`, { method: "DELETE" })
      expect(del.status).toBe(405)
      expect(del.headers.get("allow")).toBe("GET")
      // Names of any length: a JSON 404 naming the known remotes, the name echoed at most 2000 characters long.
      const long = yield* call(url, "r".repeat(120), {})
      expect(long.status).toBe(404)
      expect(long.json).toMatchObject({ _tag: "RemoteNotFound", remote: "r".repeat(120) })
      const longer = yield* call(url, "r".repeat(5000), {})
      expect(longer.status).toBe(404)
      expect(longer.json).toMatchObject({ _tag: "RemoteNotFound", known: ["echo", "divide", "boom"] })
      expect(longer.text.length).toBeLessThan(3000)
      const nested = yield* request(`${url}/remote/a/b`, { body: {} })
      expect(nested.status).toBe(404)
      expect(nested.json._tag).toBe("RouteNotFound")
    })
  )

  it.scopedLive("answers /health while contexts enter; /ready and calls are 503 until ready", () =>
    Effect.gen(function* () {
      const gate = yield* Deferred.make<void>()
      const Model = Context.GenericTag<"Model", string>("Model")
      const model = WorkerContext.make(Model, { enter: Effect.as(Deferred.await(gate), "weights") })
      const uses = Remote.make("uses", { payload: Schema.Struct({}), success: Schema.String }, () => Model)
      const slow = Deployment.make("slow", { contexts: [model], remotes: [uses, ping] })
      const { url, worker } = yield* Worker.serveEffect(slow, local)

      const health = yield* request(`${url}/health`)
      expect(health.status).toBe(200)
      expect(health.json.phase).toBe("starting")
      const ready = yield* request(`${url}/ready`)
      expect(ready.status).toBe(503)
      expect(ready.json.phase).toBe("starting")
      expect(ready.json.report.contexts[0]).toMatchObject({ key: "Model", state: "entering" })
      const early = yield* call(url, "uses", {})
      expect(early.status).toBe(503)
      expect(early.json).toMatchObject({ _tag: "WorkerUnavailable", reason: "starting" })

      yield* Deferred.succeed(gate, undefined)
      yield* worker.awaitReady
      expect((yield* request(`${url}/ready`)).status).toBe(200)
      expect((yield* call(url, "uses", {})).json).toEqual({ result: { ok: "weights" } })
    })
  )

  it.scopedLive("a failed start-up: /health 200 with the state, /ready 503 with the report and the error", () =>
    Effect.gen(function* () {
      const Model = Context.GenericTag<"Model", string>("Model")
      const model = WorkerContext.make(Model, { enter: Effect.fail(new Error("weights missing")) })
      const uses = Remote.make("uses", { payload: Schema.Struct({}), success: Schema.String }, () => Model)
      const bad = Deployment.make("bad", { contexts: [model], remotes: [uses, ping] })
      const scope = yield* Scope.make()
      const { url, worker } = yield* Scope.extend(Worker.serveEffect(bad, local), scope)
      yield* Effect.flip(worker.awaitReady)
      expect((yield* request(`${url}/health`)).json.phase).toBe("failed")
      const ready = yield* request(`${url}/ready`)
      expect(ready.status).toBe(503)
      expect(ready.json.report.error).toContain("weights missing")
      const refused = yield* call(url, "uses", {})
      expect(refused.status).toBe(503)
      expect(refused.json.reason).toBe("failed")
      // Closing fails with the start-up error: under NodeRuntime.runMain the process exits non-zero.
      const closed = yield* Effect.exit(Scope.close(scope, Exit.void))
      expect(Exit.isFailure(closed) && Cause.squash(closed.cause)).toMatchObject({ _tag: "StartupFailed" })
    })
  )
})

describe("wire format over HTTP", () => {
  it.scopedLive("round-trips bytes, booleans, nested dicts, lists and null", () =>
    Effect.gen(function* () {
      const { url } = yield* serve(app)
      const reply = yield* call(url, "echo", {
        kwargs: {
          data: { type: "bytes", contents: Buffer.from([0, 1, 254]).toString("base64") },
          flag: true,
          nested: { type: "dict", contents: [["outer", { type: "dict", contents: [["n", 1.5]] }]] },
          tags: { type: "list", contents: ["a", "b"] },
          none: null
        }
      })
      expect(reply.status).toBe(200)
      expect(reply.json).toEqual({
        result: {
          ok: {
            type: "dict",
            contents: [
              ["data", { type: "bytes", contents: Buffer.from([1, 2, 255]).toString("base64") }],
              ["flag", false],
              ["nested", { type: "dict", contents: [["outer", { type: "dict", contents: [["n", 1.5]] }]] }],
              ["tags", { type: "list", contents: ["a", "b"] }],
              ["none", null]
            ]
          }
        }
      })
    })
  )

  it.scopedLive("binds positional args in field order; mixes with kwargs", () =>
    Effect.gen(function* () {
      const { url } = yield* serve(app)
      expect((yield* call(url, "divide", { args: [9, 3] })).json).toEqual({ result: { ok: 3 } })
      expect((yield* call(url, "divide", { args: [8], kwargs: { b: 2 } })).json).toEqual({ result: { ok: 4 } })
      const twice = yield* call(url, "divide", { args: [8], kwargs: { a: 2 } })
      expect(twice.status).toBe(400)
      expect(twice.json).toMatchObject({ _tag: "WireArgumentError", reason: "DuplicateArgument", field: "a" })
    })
  )

  it.scopedLive(
    "a declared error is 200 with the reference's err form: a Python built-in, keeping tag, message and fields",
    () =>
      Effect.gen(function* () {
        const { url } = yield* serve(app)
        const reply = yield* call(url, "divide", { kwargs: { a: 7, b: 0 } })
        expect(reply.status).toBe(200)
        expect(reply.json).toEqual({
          result: {
            err: {
              type: "obj",
              module: { type: "absolute", path: ["builtins"] },
              class: "Exception",
              contents: {
                args: { type: "tuple", contents: ["cannot divide 7 by zero"] },
                _tag: "DivideByZero",
                reason: "zero-divisor",
                dividend: 7,
                message: "cannot divide 7 by zero"
              }
            }
          }
        })
      })
  )

  it.scopedLive("400 for a body that is not JSON, not the envelope, or a payload naming every failing field", () =>
    Effect.gen(function* () {
      const { url } = yield* serve(app)
      const notJson = yield* request(`${url}/remote/divide`, { body: "{nope" })
      expect(notJson.status).toBe(400)
      expect(notJson.json).toMatchObject({ _tag: "WireDecodeError", reason: "InvalidJson" })
      const envelope = yield* request(`${url}/remote/divide`, { body: { payload: { args: "x" } } })
      expect(envelope.status).toBe(400)
      expect(envelope.json).toMatchObject({
        _tag: "WireDecodeError",
        reason: "InvalidEnvelope",
        path: "$.payload.args"
      })
      const badBytes = yield* call(url, "echo", { kwargs: { data: { type: "bytes", contents: "!!" } } })
      expect(badBytes.status).toBe(400)
      expect(badBytes.json).toMatchObject({ reason: "InvalidBytes", path: "$.payload.kwargs.data.contents" })

      const payload = yield* call(url, "divide", { kwargs: { a: "one", b: true } })
      expect(payload.status).toBe(400)
      expect(payload.json._tag).toBe("PayloadInvalid")
      expect(payload.json.issues.map((i: { path: Array<string> }) => i.path)).toEqual([["a"], ["b"]])
      expect(payload.json.message).toContain("a: ")
      expect(payload.json.message).toContain("b: ")
    })
  )

  it.scopedLive("404 names the known remotes; 413 above the body limit", () =>
    Effect.gen(function* () {
      const { url } = yield* serve(app, { maxBodySize: 64 })
      const missing = yield* call(url, "nope", {})
      expect(missing.status).toBe(404)
      expect(missing.json).toMatchObject({ _tag: "RemoteNotFound", remote: "nope", known: ["echo", "divide", "boom"] })
      const big = yield* call(url, "divide", { kwargs: { a: 1, b: 1, pad: "x".repeat(100) } })
      expect(big.status).toBe(413)
      expect(big.json).toMatchObject({ _tag: "PayloadTooLarge", limitBytes: 64 })
      // The limit is on bytes, not on the remote: a small call still passes.
      expect((yield* call(url, "divide", { args: [1, 1] })).status).toBe(200)
    })
  )

  it.scopedLive("a defect in a remote is its own failure: 200 err with an id and no stack trace (never a 5xx)", () =>
    Effect.gen(function* () {
      const { url } = yield* serve(app)
      const reply = yield* call(url, "boom", {})
      expect(reply.status).toBe(200)
      const err = reply.json.result.err
      expect(err).toMatchObject({
        class: "RuntimeError",
        contents: { _tag: "CallFailed", reason: "defect", remote: "boom" }
      })
      expect(err.contents.id).toMatch(/.+/)
      expect(reply.text).not.toContain("TypeError")
      expect(reply.text).not.toMatch(/\bat .*:\d+:\d+/)
    })
  )

  it.scopedLive("a handler that throws instead of returning an Effect, or returns Effect.die, is a defect too", () =>
    Effect.gen(function* () {
      const throws = Remote.make("throws", { payload: Schema.Struct({}), success: Schema.Number }, (): never => {
        throw new TypeError("not an Effect")
      })
      const dies = Remote.make("dies", { payload: Schema.Struct({}), success: Schema.Number }, () =>
        Effect.die(new TypeError("died at once"))
      )
      const served = yield* serve(Deployment.make("defects", { contexts: [], remotes: [throws, dies, divide, echo] }))
      for (const name of ["throws", "dies", "throws"]) {
        const reply = yield* call(served.url, name, {})
        expect([name, reply.status, reply.json.result?.err?.contents]).toMatchObject([
          name,
          200,
          { _tag: "CallFailed", reason: "defect", remote: name }
        ])
      }
      // The worker keeps serving, and counts each as a defect.
      expect((yield* call(served.url, "divide", { kwargs: { a: 6, b: 3 } })).json).toEqual({ result: { ok: 2 } })
      const metrics = (yield* request(`${served.url}/metrics`)).text
      expect(metrics).toContain(`worker_calls_total{deployment="defects",remote="throws",outcome="defect"} 2`)
      expect(metrics).toContain(`worker_calls_total{deployment="defects",remote="dies",outcome="defect"} 1`)
      // In process too.
      const invoked = yield* Effect.exit(served.worker.invoke("throws", {}))
      expect(invoked).toMatchObject({
        _tag: "Failure",
        cause: { _tag: "Fail", error: { _tag: "CallFailed", reason: "defect", remote: "throws" } }
      })
    })
  )

  it.scopedLive("a handler that interrupts itself is a defect (200 err), not the worker shutting down (503)", () =>
    Effect.gen(function* () {
      const selfInterrupt = Remote.make(
        "selfInterrupt",
        { payload: Schema.Struct({ complete: Schema.Boolean }), success: Schema.Number },
        ({ complete }) => (complete ? Exit.failCause(Cause.interrupt(FiberId.make(7, 0))) : Effect.interrupt)
      )
      const served = yield* serve(Deployment.make("defects", { contexts: [], remotes: [selfInterrupt, divide, echo] }))
      // The complete form (no fiber) and the fiber form answer alike.
      for (const complete of [true, false]) {
        const reply = yield* call(served.url, "selfInterrupt", { kwargs: { complete } })
        expect([complete, reply.status, reply.json.result?.err?.contents]).toMatchObject([
          complete,
          200,
          { _tag: "CallFailed", reason: "defect", remote: "selfInterrupt" }
        ])
      }
      const metrics = (yield* request(`${served.url}/metrics`)).text
      expect(metrics).toContain(`worker_calls_total{deployment="defects",remote="selfInterrupt",outcome="defect"} 2`)
      expect(metrics).toContain(
        `worker_calls_total{deployment="defects",remote="selfInterrupt",outcome="interrupted"} 0`
      )
    })
  )

  it.live("a call still running when the drain times out is interrupted by the shutdown: 503 interrupted", () =>
    Effect.gen(function* () {
      const { app, state } = gated()
      const scope = yield* Scope.make()
      const { url } = yield* Scope.extend(serve(app, { drainTimeout: "10 millis" }), scope)
      const inflight = yield* Effect.fork(call(url, "gate", { kwargs: { units: 2 } }))
      yield* eventually(
        Effect.sync(() => state.started),
        (n) => n === 1
      )
      yield* Scope.close(scope, Exit.void)
      const reply = yield* Fiber.join(inflight)
      expect(reply.status).toBe(503)
      expect(reply.json).toMatchObject({ _tag: "CallFailed", reason: "interrupted", remote: "gate" })
      expect(state.interrupted).toBe(1)
    })
  )

  it.scopedLive("504 when a call runs past the call timeout", () =>
    Effect.gen(function* () {
      const { app, state } = gated()
      const { url } = yield* serve(app, { callTimeout: "50 millis" })
      const reply = yield* call(url, "gate", { kwargs: { units: 2 } })
      expect(reply.status).toBe(504)
      expect(reply.json).toMatchObject({ _tag: "CallTimeout", remote: "gate", timeoutMillis: 50 })
      expect(state.interrupted).toBe(1)
    })
  )
})

describe("hostile input", () => {
  /** A body nested `levels` deep at the place `at` puts it, as JSON text (built as text: no recursion here either). */
  const deepText = (levels: number) => "[".repeat(levels) + "1" + "]".repeat(levels)

  it.scopedLive("deep nesting in any envelope field is a 400, never a 500, and the worker goes on serving", () =>
    Effect.gen(function* () {
      const { url } = yield* serve(app)
      for (const levels of [2_250, 100_000]) {
        const deep = deepText(levels)
        for (const body of [
          `{"session_id": ${deep}}`,
          `{"auth_data": ${deep}}`,
          `{"auth_data": {"url": ${deep}}}`,
          `{"payload": ${deep}}`,
          `{"payload": {"args": [${deep}]}}`,
          `{"payload": {"kwargs": {"a": ${deep}}}}`
        ]) {
          const reply = yield* request(`${url}/remote/divide`, { body })
          expect([body.slice(0, 30), reply.status, reply.json?.reason]).toEqual([body.slice(0, 30), 400, "TooDeep"])
        }
      }
      // Within the JSON limit, a bad envelope field is an ordinary 400 naming it.
      const within = yield* request(`${url}/remote/divide`, { body: `{"session_id": ${deepText(1_000)}}` })
      expect(within.status).toBe(400)
      expect(within.json).toMatchObject({ reason: "InvalidEnvelope", path: "$.session_id" })
      expect((yield* call(url, "divide", { args: [6, 3] })).json).toEqual({ result: { ok: 2 } })
    })
  )

  it.scopedLive("a megabyte bad string comes back as a short 400, not as a 2 MB body", () =>
    Effect.gen(function* () {
      const { url } = yield* serve(app)
      const big = "x".repeat(1024 * 1024)
      const reply = yield* call(url, "divide", { kwargs: { a: big, b: big } })
      expect(reply.status).toBe(400)
      expect(reply.json._tag).toBe("PayloadInvalid")
      expect(reply.json.issues.map((i: { path: Array<string> }) => i.path)).toEqual([["a"], ["b"]])
      expect(reply.json.issues[0].message).toContain("(1048576 characters)")
      expect(reply.text.length).toBeLessThan(2_000)
      // A thousand bad items: the first twenty, and a note that there were more.
      const many = yield* call(url, "echo", {
        kwargs: {
          data: { type: "bytes", contents: "" },
          flag: true,
          nested: {},
          none: null,
          tags: { type: "list", contents: Array.from({ length: 1_000 }, (_, i) => i) }
        }
      })
      expect(many.status).toBe(400)
      expect(many.json.issues).toHaveLength(21)
      expect(many.text.length).toBeLessThan(4_000)
    })
  )

  it.scopedLive("__proto__ keys are refused with a 400 naming them; constructor and prototype are echoed as data", () =>
    Effect.gen(function* () {
      const facade = new App("hostile")
      facade.remote({ name: "echo", benchmarkDataset: [{}] }, async (payload: Record<string, unknown>) => payload)
      facade.remote({ name: "prompt" }, async (payload: { prompt?: string }) => payload.prompt ?? "none")
      const records = Remote.make(
        "records",
        {
          payload: Schema.Struct({ tags: Schema.Record({ key: Schema.String, value: Schema.Unknown }) }),
          success: Schema.Record({ key: Schema.String, value: Schema.Unknown })
        },
        ({ tags }) => Effect.succeed(tags)
      )
      const both = Deployment.make("hostile", {
        contexts: [],
        remotes: [...facade.deployment.remotes.values(), records] as never
      })
      const { url } = yield* serve(both)
      const post = (name: string, body: string) => request(`${url}/remote/${name}`, { body })
      for (const [name, body, path] of [
        ["prompt", '{"payload": {"kwargs": {"__proto__": {"prompt": "INJECTED"}}}}', "$.payload.kwargs.__proto__"],
        ["echo", '{"payload": {"kwargs": {"__proto__": {"prompt": "INJECTED"}}}}', "$.payload.kwargs.__proto__"],
        ["echo", '{"payload": {"kwargs": {"a": {"__proto__": 1}}}}', "$.payload.kwargs.a.__proto__"],
        ["records", '{"payload": {"kwargs": {"tags": {"__proto__": {"x": 1}}}}}', "$.payload.kwargs.tags.__proto__"],
        [
          "records",
          '{"payload": {"args": [{"type": "dict", "contents": [["__proto__", {"type": "dict", "contents": []}]]}]}}',
          "$.payload.args[0].contents[0][0]"
        ],
        // Written with escapes, the key is the same once parsed.
        [
          "prompt",
          '{"payload": {"kwargs": {"\\u005f_proto__": {"prompt": "INJECTED"}}}}',
          "$.payload.kwargs.__proto__"
        ],
        ["echo", '{"payload": {"kwargs": {"a": {"__pr\\u006fto__": 1}}}}', "$.payload.kwargs.a.__proto__"]
      ] as const) {
        const reply = yield* post(name, body)
        expect([name, reply.status, reply.json]).toMatchObject([
          name,
          400,
          { _tag: "WireDecodeError", reason: "ForbiddenKey", path }
        ])
      }
      expect((yield* post("prompt", '{"payload": {"kwargs": {}}}')).json).toEqual({ result: { ok: "none" } })
      // As data (a string value), it is an ordinary string.
      expect((yield* post("prompt", '{"payload": {"kwargs": {"prompt": "__proto__"}}}')).json).toEqual({
        result: { ok: "__proto__" }
      })
      const data = '{"constructor": {"name": "Evil"}, "prototype": {"polluted": true}, "toString": "x"}'
      const dict = {
        type: "dict",
        contents: [
          ["constructor", { type: "dict", contents: [["name", "Evil"]] }],
          ["prototype", { type: "dict", contents: [["polluted", true]] }],
          ["toString", "x"]
        ]
      }
      const echoed = yield* post("echo", `{"payload": {"kwargs": ${data}}}`)
      expect(echoed.status).toBe(200)
      expect(echoed.json).toEqual({ result: { ok: dict } })
      const recorded = yield* post("records", `{"payload": {"kwargs": {"tags": ${data}}}}`)
      expect(recorded.status).toBe(200)
      expect(recorded.json).toEqual({ result: { ok: dict } })
      expect(({} as Record<string, unknown>)["polluted"]).toBeUndefined()
    })
  )
})

describe("concurrency and queueing", () => {
  it.scopedLive("429 with Retry-After when the queue is full; the admitted calls complete", () =>
    Effect.gen(function* () {
      const { app, state } = gated({ concurrency: 1, maxQueue: 1 })
      const { url } = yield* serve(app)
      // Runs first when the scope closes: a failed assertion ends the test at once instead of draining held calls.
      yield* Effect.addFinalizer(() => Deferred.succeed(state.release, undefined))
      const first = yield* Effect.fork(call(url, "gate", { kwargs: { units: 2 } }))
      yield* eventually(
        Effect.sync(() => state.started),
        (n) => n === 1
      )
      const second = yield* Effect.fork(call(url, "gate", { kwargs: { units: 2 } }))
      yield* eventually(request(`${url}/metrics`), (m) =>
        m.text.includes(`worker_calls_queued{deployment="gated",remote="gate"} 1`)
      )
      const third = yield* call(url, "gate", { kwargs: { units: 2 } })
      expect(third.status).toBe(429)
      expect(third.json).toMatchObject({ _tag: "WorkerUnavailable", reason: "queue-full" })
      // In whole seconds (RFC 9110): with no benchmark score to estimate the wait from, the 1-second floor.
      expect(third.headers.get("retry-after")).toBe("1")
      yield* Deferred.succeed(state.release, undefined)
      expect((yield* Fiber.join(first)).json).toEqual({ result: { ok: "done" } })
      expect((yield* Fiber.join(second)).json).toEqual({ result: { ok: "done" } })
      expect(state.finished).toBe(2)
    })
  )

  it.scopedLive("429 when the estimated wait (queued workload / benchmark score) exceeds maxQueueTime", () =>
    Effect.gen(function* () {
      // The benchmark runs one call of workload 1, so the score is at most 1000 workload/s (1 ms clock resolution).
      const { app, state } = gated({ concurrency: 1, maxQueueTime: "1 second" })
      const { url, worker } = yield* serve(app, { benchmark: true })
      yield* Effect.addFinalizer(() => Deferred.succeed(state.release, undefined))
      const score = (yield* worker.report).benchmark!.score
      expect(score).toBeLessThanOrEqual(1000)
      // 1e6 units ahead at <= 1000/s: >= 1000 s of estimated wait.
      const running = yield* Effect.fork(call(url, "gate", { kwargs: { units: 1_000_000 } }))
      yield* eventually(
        Effect.sync(() => state.started),
        (n) => n === 1
      )
      const refused = yield* call(url, "gate", { kwargs: { units: 2 } })
      expect(refused.status).toBe(429)
      expect(refused.json.detail).toContain("maxQueueTime")
      // The estimated wait in whole seconds: the million units ahead at the score, rounded up. Not milliseconds.
      const seconds = Number(refused.headers.get("retry-after"))
      expect(seconds).toBeGreaterThanOrEqual(1000)
      expect(seconds).toBe(Math.ceil(1_000_000 / score))
      yield* Deferred.succeed(state.release, undefined)
      expect((yield* Fiber.join(running)).status).toBe(200)
    })
  )

  it.scopedLive("a client that disconnects interrupts its call in the handler", () =>
    Effect.gen(function* () {
      const { app, state } = gated()
      const { url } = yield* serve(app)
      const controller = new AbortController()
      const fiber = yield* Effect.fork(
        Effect.exit(
          request(`${url}/remote/gate`, { body: { payload: { kwargs: { units: 2 } } }, signal: controller.signal })
        )
      )
      yield* eventually(
        Effect.sync(() => state.started),
        (n) => n === 1
      )
      controller.abort()
      yield* eventually(
        Effect.sync(() => state.interrupted),
        (n) => n === 1
      )
      expect(state.finished).toBe(0)
      expect(Exit.isFailure(yield* Fiber.join(fiber))).toBe(true)
      // The slot is free again.
      yield* eventually(request(`${url}/metrics`), (m) =>
        m.text.includes(`worker_calls_in_flight{deployment="gated",remote="gate"} 0`)
      )
      expect((yield* call(url, "gate", { kwargs: { units: 1 } })).status).toBe(200)
    })
  )
})

describe("auth", () => {
  it.scopedLive("token: bearer token required and compared; other routes open", () =>
    Effect.gen(function* () {
      const { url } = yield* serve(app, { auth: { mode: "token", token: "s3cret" } })
      const none = yield* call(url, "divide", { args: [4, 2] })
      expect(none.status).toBe(401)
      expect(none.json).toMatchObject({ _tag: "Unauthorized", reason: "missing" })
      const wrong = yield* call(url, "divide", { args: [4, 2] }, { authorization: "Bearer s3cres" })
      expect(wrong.status).toBe(401)
      expect(wrong.json.reason).toBe("invalid")
      // Truncations and extensions of the secret, other schemes, and the bare secret are refused alike.
      for (const authorization of [
        "Bearer s3cre",
        "Bearer s",
        "Bearer s3cret2",
        "Bearer s3cret s3cret",
        "Bearer xs3cret",
        "Bearer S3CRET",
        "Basic s3cret",
        "s3cret",
        "Bearer"
      ]) {
        const refused = yield* call(url, "divide", { args: [4, 2] }, { authorization })
        expect([authorization, refused.status, refused.json.reason]).toEqual([authorization, 401, "invalid"])
      }
      const right = yield* call(url, "divide", { args: [4, 2] }, { authorization: "Bearer s3cret" })
      expect(right.json).toEqual({ result: { ok: 2 } })
      const lowercase = yield* call(url, "divide", { args: [4, 2] }, { authorization: "bearer s3cret" })
      expect(lowercase.json).toEqual({ result: { ok: 2 } })
      expect((yield* request(`${url}/health`)).status).toBe(200)
    })
  )

  it.scopedLive("signed: the router's signature passes; a forged or missing one is 401 and runs nothing", () =>
    Effect.gen(function* () {
      const router = keyPair()
      const forger = keyPair()
      const { app, state } = gated()
      const { url } = yield* serve(app, { auth: { mode: "signed", publicKey: router.publicKey } })
      const target = `${url}/remote/gate`
      const envelope = (signature: string | undefined) => ({
        payload: { kwargs: { units: 1 } },
        auth_data: {
          url: target,
          cost: "1",
          reqnum: 3,
          request_idx: 7,
          ...(signature === undefined ? {} : { signature })
        }
      })
      const good = yield* request(target, { body: envelope(sign(router.privateKey, target)) })
      expect(good.json).toEqual({ result: { ok: "done" } })
      const forged = yield* request(target, { body: envelope(sign(forger.privateKey, target)) })
      expect(forged.status).toBe(401)
      expect(forged.json).toMatchObject({ _tag: "Unauthorized", reason: "invalid" })
      const otherUrl = yield* request(target, {
        body: { ...envelope(sign(router.privateKey, `${url}/remote/other`)) }
      })
      expect(otherUrl.status).toBe(401)
      const missing = yield* request(target, { body: envelope(undefined) })
      expect(missing.status).toBe(401)
      expect(missing.json.reason).toBe("missing")
      const forgedSlow = yield* request(target, {
        body: { ...envelope(sign(forger.privateKey, target)), payload: { kwargs: { units: 2 } } }
      })
      expect(forgedSlow.status).toBe(401)
      expect(state.started).toBe(0)
    })
  )

  it.scopedLive("signed with REPORT_ADDR: the key is fetched from REPORT_ADDR/pubkey/; not ready until then", () =>
    Effect.gen(function* () {
      const router = keyPair()
      const engine = yield* pubkeyServer(router.publicKey, { held: true })
      const options = yield* resolve({}).pipe(
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["REPORT_ADDR", `${engine.url}/`]])))
      )
      expect(options.auth).toMatchObject({ mode: "signed", reportAddr: `${engine.url}/` })
      // serve() waits for the worker only; the key is still on its way.
      const { url } = yield* serve(app, { auth: options.auth })
      yield* eventually(Effect.sync(engine.hits), (n) => n === 1)
      const waiting = yield* request(`${url}/ready`)
      expect(waiting.status).toBe(503)
      expect(waiting.json).toMatchObject({ ready: false, phase: "ready", waitingFor: "the engine's public key" })
      const early = yield* request(`${url}/remote/divide`, { body: { payload: { args: [6, 2] } } })
      expect(early.status).toBe(503)
      expect(early.json).toMatchObject({ _tag: "WorkerUnavailable", reason: "starting" })
      engine.release()
      yield* eventually(request(`${url}/ready`), (r) => r.status === 200)
      expect(engine.hits()).toBe(1)
      const target = `${url}/remote/divide`
      const good = yield* request(target, {
        body: { payload: { args: [6, 2] }, auth_data: { url: target, signature: sign(router.privateKey, target) } }
      })
      expect(good.json).toEqual({ result: { ok: 3 } })
      const forged = yield* request(target, {
        body: { payload: { args: [6, 2] }, auth_data: { url: target, signature: sign(keyPair().privateKey, target) } }
      })
      expect(forged.status).toBe(401)
    })
  )

  it.effect("auth defaults follow the reference's environment", () =>
    Effect.gen(function* () {
      const modeWith = (env: Record<string, string>) =>
        Effect.map(
          resolve({}).pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))),
          (o) => o.auth.mode
        )
      expect(yield* modeWith({})).toBe("none")
      expect(yield* modeWith({ REPORT_ADDR: "http://engine" })).toBe("signed")
      expect(yield* modeWith({ REPORT_ADDR: "http://engine", UNSECURED: "true" })).toBe("none")
      expect(yield* modeWith({ WORKER_TOKEN: "t" })).toBe("token")
      expect(yield* modeWith({ WORKER_AUTH: "signed", WORKER_PUBLIC_KEY: keyPair().publicKey })).toBe("signed")
      expect(Exit.isFailure(yield* Effect.exit(modeWith({ WORKER_AUTH: "token" })))).toBe(true)
      // An empty token would refuse every call: a configuration error at start-up, naming the variable.
      const empty = yield* Effect.flip(modeWith({ WORKER_AUTH: "token", WORKER_TOKEN: " " }))
      expect(String(empty)).toContain("WORKER_TOKEN")
      const defaults = yield* resolve({}).pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map())))
      expect(defaults).toMatchObject({ port: 8000, maxBodySize: 32 * 1024 * 1024 })
      const port = yield* resolve({}).pipe(
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["WORKER_PORT", "9001"]])))
      )
      expect(port.port).toBe(9001)
    })
  )
})

describe("draining", () => {
  it.live(
    "closing the scope: new calls get 503 while in-flight ones finish, then contexts exit, then it stops listening",
    () =>
      Effect.gen(function* () {
        const events: Array<string> = []
        const Model = Context.GenericTag<"Model", string>("Model")
        const model = WorkerContext.make(Model, {
          enter: Effect.succeed("m"),
          exit: () => Effect.sync(() => events.push("exit:Model"))
        })
        const { remote, state } = gated()
        const uses = Remote.make("uses", { payload: Schema.Struct({}), success: Schema.String }, () => Model)
        const drainApp = Deployment.make("drain", { contexts: [model], remotes: [remote, uses] })
        const scope = yield* Scope.make()
        const { url } = yield* Scope.extend(serve(drainApp), scope)

        const inflight = yield* Effect.fork(call(url, "gate", { kwargs: { units: 2 } }))
        yield* eventually(
          Effect.sync(() => state.started),
          (n) => n === 1
        )
        const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
        yield* eventually(request(`${url}/health`), (r) => r.json.phase === "draining")
        const refused = yield* call(url, "uses", {})
        expect(refused.status).toBe(503)
        expect(refused.json).toMatchObject({ _tag: "WorkerUnavailable", reason: "draining" })
        expect((yield* request(`${url}/ready`)).status).toBe(503)
        expect(events).toEqual([])

        yield* Deferred.succeed(state.release, undefined)
        expect((yield* Fiber.join(inflight)).json).toEqual({ result: { ok: "done" } })
        yield* Fiber.join(closing)
        expect(events).toEqual(["exit:Model"])
        const after = yield* Effect.exit(Effect.tryPromise(() => fetch(`${url}/health`)))
        expect(Exit.isFailure(after)).toBe(true)
      })
  )
})
