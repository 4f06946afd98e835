/**
 * The served worker under load, slow clients and bad requests: responsiveness between synchronous calls, timeouts,
 * limits and media types. Real sockets on loopback port 0.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Schema } from "effect"
import * as Deployment from "../src/Deployment.js"
import * as Remote from "../src/Remote.js"
import * as Worker from "../src/Worker.js"
import { request } from "./fixtures/serving.js"

const local = { port: 0, host: "127.0.0.1", handleSignals: false, benchmark: false } as const

const serve = <P, E, R extends Remote.Any>(app: Deployment.Deployment<P, E, R>, options: Worker.ServeOptions = {}) =>
  Effect.tap(Worker.serveEffect(app, { ...local, ...options }), (served) => served.worker.awaitReady)

/** Poll (real time, a few ms apart) until `predicate` holds; fails the test after ~4 s instead of hanging. */
const eventually = <A, E>(effect: Effect.Effect<A, E>, predicate: (a: A) => boolean) =>
  Effect.gen(function* () {
    for (let i = 0; i < 800; i++) {
      const a = yield* effect
      if (predicate(a)) return a
      yield* Effect.sleep("5 millis")
    }
    return yield* Effect.die(new Error("condition not reached"))
  })

describe("responsiveness", () => {
  it.scopedLive("/health is answered while synchronous calls are still queued", () =>
    Effect.gen(function* () {
      const calls = 40
      const state = { started: 0 }
      // A remote that holds the event loop (a model's inference on the main thread), one call at a time.
      const block = Remote.make(
        "block",
        {
          payload: Schema.Struct({}),
          success: Schema.Number,
          concurrency: 1,
          benchmark: { dataset: [{}], runs: 1, warmup: 0 }
        },
        () =>
          Effect.sync(() => {
            state.started++
            const until = performance.now() + 25
            while (performance.now() < until) {
              // busy
            }
            return state.started
          })
      )
      const { url } = yield* serve(Deployment.make("blocking", { contexts: [], remotes: [block] }))
      const fibers = yield* Effect.all(
        Array.from({ length: calls }, () =>
          Effect.fork(request(`${url}/remote/block`, { body: { payload: { kwargs: {} } } }))
        )
      )
      yield* eventually(
        Effect.sync(() => state.started),
        (n) => n >= 1
      )
      const health = yield* request(`${url}/health`)
      // Counted when the answer reaches the client: a worker that ran its queue back to back would have started every
      // one before it read the probe (about ten start while the probe connects, is read and is answered).
      const startedWhenAnswered = state.started
      expect(health.status).toBe(200)
      expect(health.json).toMatchObject({ status: "alive", phase: "ready" })
      expect(startedWhenAnswered).toBeLessThan(calls)
      const replies = yield* Fiber.joinAll(fibers)
      expect(replies.map((r) => r.status)).toEqual(Array.from({ length: calls }, () => 200))
      expect(state.started).toBe(calls)
    })
  )
})
