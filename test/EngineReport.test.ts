import { FetchHttpClient } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import {
  ConfigProvider,
  Context,
  Deferred,
  Effect,
  Exit,
  Fiber,
  Option,
  Queue,
  Schema,
  Scope,
  Stream,
  TestClock
} from "effect"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as Deployment from "../src/Deployment.js"
import * as EngineReport from "../src/EngineReport.js"
import * as WorkerConfig from "../src/WorkerConfig.js"
import * as Remote from "../src/Remote.js"
import * as Worker from "../src/Worker.js"
import * as WorkerContext from "../src/WorkerContext.js"
import { ping } from "./fixtures/probe.js"
import { divide, request } from "./fixtures/serving.js"

interface Post {
  readonly path: string
  readonly body: any
}

/**
 * A stand-in engine on loopback: records every POST it accepts; `failFirst` answers the first N with 500, and
 * `failNext({ path: n })` the next n POSTs to each path from then on. `failed()` counts the POSTs answered with 500.
 */
const engine = (failFirst = 0) =>
  Effect.acquireRelease(
    Effect.async<{
      url: string
      posts: Queue.Queue<Post>
      failNext: (byPath: Record<string, number>) => void
      failed: () => number
    }>((resume) => {
      const posts = Effect.runSync(Queue.unbounded<Post>())
      let toFail = failFirst
      let toFailByPath: Record<string, number> = {}
      let failed = 0
      const server = http.createServer((req, res) => {
        let data = ""
        req.on("data", (c) => (data += c))
        req.on("end", () => {
          const path = req.url ?? ""
          if (toFail > 0 || (toFailByPath[path] ?? 0) > 0) {
            if (toFail > 0) toFail--
            else toFailByPath[path]!--
            failed++
            res.writeHead(500).end()
            return
          }
          Queue.unsafeOffer(posts, { path: req.url ?? "", body: JSON.parse(data) })
          res.writeHead(200, { "content-type": "application/json" }).end("{}")
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo
        resume(
          Effect.succeed(
            Object.assign(
              {
                url: `http://127.0.0.1:${port}`,
                posts,
                failNext: (byPath: Record<string, number>) => void (toFailByPath = { ...byPath }),
                failed: () => failed
              },
              { server }
            )
          )
        )
      })
    }),
    (e) =>
      Effect.async<void>((resume) => {
        const server = (e as unknown as { server: http.Server }).server
        server.close(() => resume(Effect.void))
        // A keep-alive connection of the last report would hold close() for the client's idle timeout.
        server.closeAllConnections()
      })
  )

/**
 * The next POST the engine accepts, driving the TestClock: the reporter's backoff sleeps on the test clock while its
 * requests run on real sockets, so each step lets I/O run (a real macrotask), then moves the clock 100 ms. Fails the
 * test, rather than hanging it, when nothing arrives within `maxMillis` of test-clock time.
 */
const takeDriving = (posts: Queue.Queue<Post>, maxMillis = 5000) =>
  Effect.gen(function* () {
    for (let elapsed = 0; elapsed <= maxMillis; elapsed += 100) {
      for (let i = 0; i < 5; i++) {
        const next = yield* Queue.poll(posts)
        if (Option.isSome(next)) return next.value
        yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 2)))
      }
      yield* TestClock.adjust("100 millis")
    }
    return expect.fail(`nothing was posted within ${maxMillis} ms (test clock)`)
  })

const call = (reqnum: number, workload = 100): EngineReport.Call => ({
  requestIdx: 1000 + reqnum,
  reqnum,
  workload,
  enteredQueueAt: 1,
  workStartedAt: 2,
  workCompletedAt: 0,
  status: "Started"
})

describe("EngineReport", () => {
  it.live("sends readiness at once, then load and finished calls", () =>
    Effect.gen(function* () {
      const { posts, url } = yield* engine()
      const reporter = yield* EngineReport.make({
        reportAddrs: [url],
        containerId: 7,
        mtoken: "tok",
        url: "http://1.2.3.4:5000",
        interval: "20 millis"
      })
      yield* Effect.forkScoped(reporter.run)
      const first = yield* Queue.take(posts)
      expect(first.path).toBe("/worker_status/")
      expect(first.body).toMatchObject({ id: 7, mtoken: "tok", max_perf: 0, loadtime: 0, url: "http://1.2.3.4:5000" })

      yield* reporter.loaded(250, 3.5)
      const ready = yield* Queue.take(posts)
      expect(ready.body).toMatchObject({ max_perf: 250, loadtime: 3.5, error_msg: "" })

      const a = call(1)
      const b = call(2, 50)
      reporter.started(a)
      reporter.started(b)
      expect(reporter.status()).toMatchObject({
        cur_load: 150,
        num_requests_working: 2,
        working_request_idxs: [1001, 1002]
      })
      reporter.finished(a, "Success", 3)
      reporter.finished(b, "Error", 4)
      const seen: Array<Post> = []
      const done = () =>
        seen.some((p) => p.path === "/delete_requests/") &&
        seen.some((p) => p.path === "/worker_status/" && p.body.cur_perf > 0)
      while (!done()) seen.push(yield* Queue.take(posts))
      const deletes = seen.find((p) => p.path === "/delete_requests/")!
      expect(deletes.body).toEqual({
        worker_id: 7,
        mtoken: "tok",
        requests: [
          {
            request_idx: 1001,
            success: true,
            status: "Success",
            entered_queue_at: 1,
            work_started_at: 2,
            work_completed_at: 3
          },
          {
            request_idx: 1002,
            success: false,
            status: "Error",
            entered_queue_at: 1,
            work_started_at: 2,
            work_completed_at: 4
          }
        ]
      })
      const status = seen.find((p) => p.path === "/worker_status/" && p.body.cur_perf > 0)!
      // Load received and served since the last report; loadtime is sent only once.
      expect(status.body).toMatchObject({
        new_load: 150,
        cur_perf: 100,
        cur_load: 0,
        loadtime: 0,
        num_requests_recieved: 2
      })
    }).pipe(Effect.scoped, Effect.provide(FetchHttpClient.layer))
  )

  // No periodic resend hides a lost POST here: interval and heartbeat are an hour, so only the retries can deliver.
  const once = { interval: "1 hour", heartbeat: "1 hour" } as const

  it.effect("retries a failing POST with backoff: a start-up failure reaches an engine that failed twice", () =>
    Effect.gen(function* () {
      const { failed, posts, url } = yield* engine(2)
      const reporter = yield* EngineReport.make({ reportAddrs: [url], containerId: 1, mtoken: "", url: "", ...once })
      yield* reporter.failed('context "model" failed: weights missing')
      yield* Effect.forkScoped(reporter.run)
      const first = yield* takeDriving(posts)
      expect(failed()).toBe(2)
      expect(first.path).toBe("/worker_status/")
      expect(first.body.error_msg).toBe('context "model" failed: weights missing')
    }).pipe(Effect.scoped, Effect.provide(FetchHttpClient.layer))
  )

  it.effect("retries the final report at shutdown: the finished calls and the last status still arrive", () =>
    Effect.gen(function* () {
      const { failNext, failed, posts, url } = yield* engine()
      const reporter = yield* EngineReport.make({ reportAddrs: [url], containerId: 2, mtoken: "", url: "", ...once })
      const fiber = yield* Effect.fork(reporter.run)
      expect((yield* takeDriving(posts)).path).toBe("/worker_status/")
      const done = call(1)
      reporter.started(done)
      reporter.finished(done, "Success", 3)
      // The engine fails the first attempt of each POST of the final report: its delete_requests and its status.
      failNext({ "/delete_requests/": 1, "/worker_status/": 1 })
      const stopping = yield* Effect.fork(Fiber.interrupt(fiber))
      const deletes = yield* takeDriving(posts)
      expect(deletes.path).toBe("/delete_requests/")
      expect(deletes.body.requests.map((r: any) => r.request_idx)).toEqual([1001])
      const last = yield* takeDriving(posts)
      expect(last.path).toBe("/worker_status/")
      expect(last.body).toMatchObject({ cur_perf: 100, num_requests_working: 0 })
      expect(failed()).toBe(2)
      yield* Fiber.join(stopping)
    }).pipe(Effect.scoped, Effect.provide(FetchHttpClient.layer))
  )

  it.live("stopped: sends the finished calls and a last status; a call without request_idx counts as load only", () =>
    Effect.gen(function* () {
      const { posts, url } = yield* engine()
      const reporter = yield* EngineReport.make({
        reportAddrs: [url],
        containerId: 3,
        mtoken: "",
        url: "",
        // Nothing is sent on its own after the first status: what follows comes from the stop.
        interval: "1 hour",
        heartbeat: "1 hour"
      })
      const fiber = yield* Effect.fork(reporter.run)
      expect((yield* Queue.take(posts)).path).toBe("/worker_status/")
      const tracked = call(1)
      const direct = { ...call(-1, 40), requestIdx: undefined }
      reporter.started(tracked)
      reporter.started(direct)
      expect(reporter.status()).toMatchObject({ cur_load: 140, num_requests_working: 2, working_request_idxs: [1001] })
      reporter.finished(tracked, "Success", 3)
      reporter.finished(direct, "Success", 3)
      reporter.rejected({ ...call(-2, 10), requestIdx: undefined })
      expect(reporter.pendingDeletes()).toBe(1)
      yield* Fiber.interrupt(fiber)
      const deletes = yield* Queue.take(posts)
      expect(deletes.path).toBe("/delete_requests/")
      expect(deletes.body.requests.map((r: any) => r.request_idx)).toEqual([1001])
      const last = yield* Queue.take(posts)
      expect(last.path).toBe("/worker_status/")
      expect(last.body).toMatchObject({
        cur_load: 0,
        num_requests_working: 0,
        cur_perf: 140,
        rej_load: 10,
        num_requests_recieved: 3
      })
      expect(yield* Queue.size(posts)).toBe(0)
    }).pipe(Effect.scoped, Effect.provide(FetchHttpClient.layer))
  )

  it.effect("reads the reference's environment", () =>
    Effect.gen(function* () {
      const env = ConfigProvider.fromMap(
        new Map([
          ["REPORT_ADDR", "http://a/, http://b"],
          ["CONTAINER_ID", "42"],
          ["MASTER_TOKEN", "m"],
          ["PUBLIC_IPADDR", "9.9.9.9"],
          ["WORKER_PORT", "3000"],
          ["VAST_TCP_PORT_3000", "41000"],
          ["USE_SSL", "true"]
        ])
      )
      const options = yield* Effect.withConfigProvider(EngineReport.optionsFromEnv(), env)
      expect(options).toEqual(
        Option.some({
          reportAddrs: ["http://a/", "http://b"],
          containerId: 42,
          mtoken: "m",
          url: "https://9.9.9.9:41000"
        })
      )
      const none = yield* Effect.withConfigProvider(EngineReport.optionsFromEnv(), ConfigProvider.fromMap(new Map()))
      expect(Option.isNone(none)).toBe(true)
      // The port the worker really listens on (an option or --port) picks the public port, not WORKER_PORT.
      const resolved = yield* Effect.withConfigProvider(WorkerConfig.resolve({ port: 3001 }), env)
      expect(resolved.report?.url).toBe("https://9.9.9.9:3001")
      const mapped = ConfigProvider.fromMap(
        new Map([
          ["REPORT_ADDR", "http://a"],
          ["VAST_TCP_PORT_3001", "42001"]
        ])
      )
      const viaOption = yield* Effect.withConfigProvider(WorkerConfig.resolve({ port: 3001 }), mapped)
      expect(viaOption.report?.url).toBe("http://127.0.0.1:42001")
    })
  )
})

/** Take posts until `done` holds for what was taken; each take is bounded so a missing report fails, not hangs. */
const takeUntil = (posts: Queue.Queue<Post>, done: (seen: ReadonlyArray<Post>) => boolean) =>
  Effect.gen(function* () {
    const seen: Array<Post> = []
    while (!done(seen)) {
      seen.push(yield* Queue.take(posts).pipe(Effect.timeoutFail({ duration: "3 seconds", onTimeout: () => seen })))
    }
    return seen
  })

const deletedIn = (seen: ReadonlyArray<Post>): Array<any> =>
  seen.filter((p) => p.path === "/delete_requests/").flatMap((p) => p.body.requests)

describe("serving with engine reports", () => {
  const reportTo = (url: string): EngineReport.Options => ({
    reportAddrs: [url],
    containerId: 5,
    mtoken: "m",
    url: "http://worker",
    interval: "20 millis"
  })
  const local = { port: 0, host: "127.0.0.1", handleSignals: false } as const

  it.live("reports start-up, readiness, every call by request_idx, and a last status at shutdown", () =>
    Effect.gen(function* () {
      const { posts, url: engineUrl } = yield* engine()
      const Model = Context.GenericTag<"Model", string>("Model")
      const loading = yield* Deferred.make<void>()
      const model = WorkerContext.make(Model, { enter: Effect.as(Deferred.await(loading), "weights") })
      const entered = yield* Queue.unbounded<number>()
      const release = yield* Deferred.make<void>()
      // Holds each call until released (units 1 is the benchmark's, at once); at most one runs, none queue.
      const gate = Remote.make(
        "gate",
        {
          payload: Schema.Struct({ units: Schema.Number }),
          success: Schema.Literal("done"),
          concurrency: 1,
          maxQueue: 0,
          benchmark: { dataset: [{ units: 1 }], runs: 1, warmup: 0, concurrency: 1, workload: (p) => p.units }
        },
        ({ units }) =>
          units === 1
            ? Effect.succeed("done" as const)
            : Effect.zipRight(Queue.offer(entered, units), Effect.as(Deferred.await(release), "done" as const))
      )
      const hold = Remote.make("hold", { payload: Schema.Struct({}), success: Schema.Null }, () =>
        Effect.zipRight(Queue.offer(entered, -1), Effect.never)
      )
      const app = Deployment.make("reported", { contexts: [model], remotes: [gate, divide, hold] })

      const serving = yield* Scope.make()
      const { url, worker } = yield* Worker.serveEffect(app, { ...local, report: reportTo(engineUrl) }).pipe(
        Scope.extend(serving)
      )
      const first = yield* Queue.take(posts)
      expect(first.path).toBe("/worker_status/")
      expect(first.body).toMatchObject({ id: 5, mtoken: "m", url: "http://worker", max_perf: 0, loadtime: 0 })

      yield* Deferred.succeed(loading, undefined)
      yield* worker.awaitReady
      const readiness = (yield* takeUntil(posts, (seen) => seen.some((p) => p.body.max_perf > 0))).at(-1)!
      expect(readiness.path).toBe("/worker_status/")
      expect(readiness.body.loadtime).toBeGreaterThan(0)
      expect(readiness.body.max_perf).toBe((yield* worker.report).benchmark!.score)

      const auth = (requestIdx: number) => ({ request_idx: requestIdx, reqnum: requestIdx + 100 })
      const post = (name: string, payload: unknown, authData?: unknown) =>
        request(`${url}/remote/${name}`, {
          body: { payload, ...(authData === undefined ? {} : { auth_data: authData }) }
        })

      // Not through the engine: counted as load, not deleted.
      expect((yield* post("divide", { args: [6, 3] })).json).toEqual({ result: { ok: 2 } })
      const held = yield* Effect.fork(post("gate", { kwargs: { units: 5 } }, auth(11)))
      expect(yield* Queue.take(entered)).toBe(5)
      const working = yield* takeUntil(posts, (seen) => seen.some((p) => p.body.working_request_idxs?.includes(11)))
      expect(working.at(-1)!.body).toMatchObject({ cur_load: 5, num_requests_working: 1 })
      expect((yield* post("gate", { kwargs: { units: 7 } }, auth(12))).status).toBe(429)
      expect((yield* post("divide", { args: [1, 0] }, auth(13))).json.result.err.contents._tag).toBe("DivideByZero")
      expect((yield* post("divide", { args: [6, 2] }, auth(14))).json).toEqual({ result: { ok: 3 } })
      // The client goes away while its call runs.
      // With node:http, not fetch: an aborted fetch leaves its socket open, which holds the listener's close ~3 s.
      const client = http.request(`${url}/remote/hold`, {
        method: "POST",
        headers: { "content-type": "application/json" }
      })
      client.on("error", () => {})
      client.end(JSON.stringify({ payload: {}, auth_data: auth(15) }))
      expect(yield* Queue.take(entered)).toBe(-1)
      client.destroy()
      yield* Deferred.succeed(release, undefined)
      expect((yield* Fiber.join(held)).json).toEqual({ result: { ok: "done" } })

      const seen = yield* takeUntil(posts, (seen) => deletedIn(seen).length >= 5)
      const deleted = deletedIn(seen)
      const byIdx = Object.fromEntries(deleted.map((r) => [r.request_idx, r]))
      expect(deleted.map((r) => r.request_idx).sort()).toEqual([11, 12, 13, 14, 15])
      expect(byIdx[11]).toMatchObject({ status: "Success", success: true })
      expect(byIdx[12]).toMatchObject({ status: "Rejected", success: false, work_started_at: 0 })
      expect(byIdx[13]).toMatchObject({ status: "Error", success: false })
      expect(byIdx[14]).toMatchObject({ status: "Success", success: true })
      expect(byIdx[15]).toMatchObject({ status: "Cancelled", success: true })
      for (const idx of [11, 13, 14, 15]) {
        const r = byIdx[idx]
        // Epoch seconds, in order: queued, got its slot, done.
        expect(r.entered_queue_at).toBeGreaterThan(1.5e9)
        expect(r.work_started_at).toBeGreaterThanOrEqual(r.entered_queue_at)
        expect(r.work_completed_at).toBeGreaterThanOrEqual(r.work_started_at)
      }

      // Closing returns once the last status is sent: nothing left working.
      yield* Scope.close(serving, Exit.void)
      const rest = [...(yield* Queue.takeAll(posts))]
      expect(rest.at(-1)).toMatchObject({ path: "/worker_status/", body: { cur_load: 0, num_requests_working: 0 } })
    }).pipe(Effect.scoped)
  )

  it.live("a stream is one request, reported when it ends; batched calls are reported each by its own id", () =>
    Effect.gen(function* () {
      const { posts, url: engineUrl } = yield* engine()
      const next = yield* Queue.unbounded<string>()
      // The benchmark's calls produce 3 elements each: a call's workload without a workload function.
      const tokens = Remote.stream(
        "tokens",
        {
          payload: Schema.Struct({ live: Schema.Boolean }),
          element: Schema.String,
          benchmark: { dataset: [{ live: false }], runs: 1, warmup: 0 }
        },
        ({ live }) =>
          live
            ? Stream.repeatEffect(Queue.take(next)).pipe(Stream.takeWhile((t) => t !== "!end"))
            : Stream.make("a", "b", "c")
      )
      const pair = Remote.make(
        "pair",
        {
          payload: Schema.Struct({ x: Schema.Number }),
          success: Schema.Number,
          batch: { maxSize: 2, maxWait: "1 second" }
        },
        (payloads) => Effect.succeed(payloads.map((p) => p.x * 2))
      )
      const app = Deployment.make("streamed", { contexts: [], remotes: [tokens, pair] })
      const serving = yield* Scope.make()
      const { url, worker } = yield* Worker.serveEffect(app, { ...local, report: reportTo(engineUrl) }).pipe(
        Scope.extend(serving)
      )
      yield* worker.awaitReady
      const body = (payload: unknown, requestIdx: number) => ({
        payload,
        auth_data: { request_idx: requestIdx, reqnum: requestIdx }
      })
      // A stream open: working, with the measured 3 elements as its load, and not reported as done.
      const streaming = yield* Effect.fork(
        request(`${url}/remote/tokens`, { body: body({ kwargs: { live: true } }, 21) })
      )
      yield* Queue.offer(next, "x")
      const working = yield* takeUntil(posts, (seen) => seen.some((p) => p.body.working_request_idxs?.includes(21)))
      expect(working.at(-1)!.body).toMatchObject({ cur_load: 3, num_requests_working: 1 })
      expect(deletedIn(working)).toEqual([])
      yield* Queue.offerAll(next, ["y", "!end"])
      expect((yield* Fiber.join(streaming)).text).toBe(`{"item":"x"}\n{"item":"y"}\n{"end":{"count":2}}\n`)
      // Two calls in one batch: two requests, each reported.
      const [a, b] = yield* Effect.all(
        [
          request(`${url}/remote/pair`, { body: body({ kwargs: { x: 1 } }, 22) }),
          request(`${url}/remote/pair`, { body: body({ kwargs: { x: 2 } }, 23) })
        ],
        { concurrency: 2 }
      )
      expect([a!.json, b!.json]).toEqual([{ result: { ok: 2 } }, { result: { ok: 4 } }])
      const deleted = deletedIn(yield* takeUntil(posts, (seen) => deletedIn(seen).length >= 3))
      expect(deleted.map((r) => [r.request_idx, r.status]).sort()).toEqual([
        [21, "Success"],
        [22, "Success"],
        [23, "Success"]
      ])
      const stream = deleted.find((r) => r.request_idx === 21)
      expect(stream.work_completed_at).toBeGreaterThanOrEqual(stream.work_started_at)
      yield* Scope.close(serving, Exit.void)
    }).pipe(Effect.scoped)
  )

  it.live("a failed start-up sends its error_msg, and keeps sending it", () =>
    Effect.gen(function* () {
      const { posts, url: engineUrl } = yield* engine()
      const Model = Context.GenericTag<"Model", string>("Model")
      const model = WorkerContext.make(Model, { enter: Effect.fail(new Error("weights missing")) })
      const app = Deployment.make("broken", { contexts: [model], remotes: [ping] })
      const serving = yield* Scope.make()
      const { worker } = yield* Worker.serveEffect(app, {
        ...local,
        report: { ...reportTo(engineUrl), heartbeat: "20 millis" }
      }).pipe(Scope.extend(serving))
      expect(Exit.isFailure(yield* Effect.exit(worker.awaitReady))).toBe(true)
      const failing = (p: Post) => p.body.error_msg?.includes("weights missing") === true
      const seen = yield* takeUntil(posts, (seen) => seen.filter(failing).length >= 2)
      expect(seen.filter(failing).every((p) => p.path === "/worker_status/" && p.body.max_perf === 0)).toBe(true)
      // Closing fails with the start-up error (the process exit code); the reports stop with it.
      expect(Exit.isFailure(yield* Effect.exit(Scope.close(serving, Exit.void)))).toBe(true)
    }).pipe(Effect.scoped)
  )
})
