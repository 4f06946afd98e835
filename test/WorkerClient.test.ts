import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import { describe, expect, it } from "@effect/vitest"
import { Context, Deferred, Effect, Fiber, Schema } from "effect"
import * as Deployment from "../src/Deployment.js"
import * as Remote from "../src/Remote.js"
import * as Worker from "../src/Worker.js"
import * as WorkerClient from "../src/WorkerClient.js"
import * as WorkerContext from "../src/WorkerContext.js"
import { CallFailed, PayloadInvalid, WorkerUnavailable } from "../src/WorkerError.js"
import { ping } from "./fixtures/probe.js"
import { boom, divide, DivideByZero, echo } from "./fixtures/serving.js"

const local = { port: 0, host: "127.0.0.1", handleSignals: false, benchmark: false } as const
const app = Deployment.make("client", { contexts: [], remotes: [echo, divide, boom] })

describe("WorkerClient", () => {
  it.scopedLive("typed calls: success, declared error, defect, every value kind", () =>
    Effect.gen(function* () {
      const { url, worker } = yield* Worker.serveEffect(app, local)
      yield* worker.awaitReady
      const client = yield* WorkerClient.make(app, { url })
      expect(yield* client.divide({ a: 9, b: 3 })).toBe(3)
      const declared = yield* Effect.flip(client.divide({ a: 1, b: 0 }))
      expect(declared).toBeInstanceOf(DivideByZero)
      expect(declared).toMatchObject({ reason: "zero-divisor", dividend: 1 })
      expect(declared.message).toBe("cannot divide 1 by zero")
      const defect = yield* Effect.flip(client.boom({}))
      expect(defect).toBeInstanceOf(CallFailed)
      expect(defect).toMatchObject({ reason: "defect", remote: "boom" })
      const echoed = yield* client.echo({
        data: new Uint8Array([1, 2]),
        flag: false,
        nested: { a: { b: 2 } },
        tags: ["x"],
        none: null
      })
      expect(echoed).toEqual({
        data: new Uint8Array([2, 3]),
        flag: true,
        nested: { a: { b: 2 } },
        tags: ["x"],
        none: null
      })
      const invalid = yield* Effect.flip(client.divide({ a: Number.NaN, b: "x" as unknown as number }))
      expect(invalid).toBeInstanceOf(PayloadInvalid)
    }).pipe(Effect.provide(FetchHttpClient.layer))
  )

  it.scopedLive("retries 503 while the worker starts, then succeeds", () =>
    Effect.gen(function* () {
      const gate = yield* Deferred.make<void>()
      const Model = Context.GenericTag<"Model", number>("Model")
      const model = WorkerContext.make(Model, { enter: Effect.as(Deferred.await(gate), 10) })
      const plus = Remote.make(
        "plus",
        { payload: Schema.Struct({ x: Schema.Number }), success: Schema.Number },
        ({ x }) => Effect.map(Model, (m) => m + x)
      )
      const slow = Deployment.make("slow", { contexts: [model], remotes: [plus, ping] })
      const { url, worker } = yield* Worker.serveEffect(slow, local)
      const client = yield* WorkerClient.make(slow, { url, baseDelay: "5 millis" })
      const call = yield* Effect.fork(client.plus({ x: 1 }))
      yield* Effect.sleep("30 millis")
      yield* Deferred.succeed(gate, undefined)
      yield* worker.awaitReady
      expect(yield* Fiber.join(call)).toBe(11)
    }).pipe(Effect.provide(FetchHttpClient.layer))
  )

  it.live("gives up at the deadline with the last error; an unreachable worker is WorkerUnavailable", () =>
    Effect.gen(function* () {
      // Port 9 (discard) on loopback: nothing listens there in a test environment, the connection is refused.
      const client = yield* WorkerClient.make(app, {
        url: "http://127.0.0.1:9",
        deadline: "50 millis",
        baseDelay: "5 millis"
      })
      const error = yield* Effect.flip(client.divide({ a: 1, b: 1 }))
      expect(error).toBeInstanceOf(WorkerUnavailable)
      expect(error).toMatchObject({ reason: "unreachable" })
    }).pipe(Effect.provide(FetchHttpClient.layer))
  )

  it.scopedLive("Promise facade: resolves values, rejects with the error value itself", () =>
    Effect.gen(function* () {
      const { url, worker } = yield* Worker.serveEffect(app, local)
      yield* worker.awaitReady
      const client = WorkerClient.makePromise(app, { url })
      expect(yield* Effect.promise(() => client.divide({ a: 8, b: 2 }))).toBe(4)
      const error = yield* Effect.promise(() =>
        client.divide({ a: 8, b: 0 }).then(
          () => undefined,
          (e: unknown) => e
        )
      )
      expect(error).toBeInstanceOf(DivideByZero)
    })
  )
})
