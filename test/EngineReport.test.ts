import { FetchHttpClient } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Fiber, Option, Queue } from "effect"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as EngineReport from "../src/EngineReport.js"

interface Post {
  readonly path: string
  readonly body: any
}

/** A stand-in engine on loopback: records every POST; `failFirst` answers the first N with 500. */
const engine = (failFirst = 0) =>
  Effect.acquireRelease(
    Effect.async<{ url: string; posts: Queue.Queue<Post> }>((resume) => {
      const posts = Effect.runSync(Queue.unbounded<Post>())
      let seen = 0
      const server = http.createServer((req, res) => {
        let data = ""
        req.on("data", (c) => (data += c))
        req.on("end", () => {
          if (seen++ < failFirst) {
            res.writeHead(500).end()
            return
          }
          Queue.unsafeOffer(posts, { path: req.url ?? "", body: JSON.parse(data) })
          res.writeHead(200, { "content-type": "application/json" }).end("{}")
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo
        resume(Effect.succeed(Object.assign({ url: `http://127.0.0.1:${port}`, posts }, { server })))
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
    Effect.gen(function*() {
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
      expect(reporter.status()).toMatchObject({ cur_load: 150, num_requests_working: 2, working_request_idxs: [1001, 1002] })
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
          { request_idx: 1001, success: true, status: "Success", entered_queue_at: 1, work_started_at: 2, work_completed_at: 3 },
          { request_idx: 1002, success: false, status: "Error", entered_queue_at: 1, work_started_at: 2, work_completed_at: 4 }
        ]
      })
      const status = seen.find((p) => p.path === "/worker_status/" && p.body.cur_perf > 0)!
      // Load received and served since the last report; loadtime is sent only once.
      expect(status.body).toMatchObject({ new_load: 150, cur_perf: 100, cur_load: 0, loadtime: 0, num_requests_recieved: 2 })
    }).pipe(Effect.scoped, Effect.provide(FetchHttpClient.layer)))

  it.live("retries a failing engine and reports a start-up failure", () =>
    Effect.gen(function*() {
      const { posts, url } = yield* engine(2)
      const reporter = yield* EngineReport.make({ reportAddrs: [url], containerId: 1, mtoken: "", url: "", interval: "20 millis" })
      yield* reporter.failed("context \"model\" failed: weights missing")
      yield* Effect.forkScoped(reporter.run)
      const first = yield* Queue.take(posts)
      expect(first.body.error_msg).toBe("context \"model\" failed: weights missing")
    }).pipe(Effect.scoped, Effect.provide(FetchHttpClient.layer)))

  it.live("sends the finished calls and a last status when stopped; calls without a request_idx count as load only", () =>
    Effect.gen(function*() {
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
      expect(last.body).toMatchObject({ cur_load: 0, num_requests_working: 0, cur_perf: 140, rej_load: 10 })
      expect(yield* Queue.size(posts)).toBe(0)
    }).pipe(Effect.scoped, Effect.provide(FetchHttpClient.layer)))

  it.effect("reads the reference's environment", () =>
    Effect.gen(function*() {
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
      const options = yield* Effect.withConfigProvider(EngineReport.optionsFromEnv, env)
      expect(options).toEqual(Option.some({
        reportAddrs: ["http://a/", "http://b"],
        containerId: 42,
        mtoken: "m",
        url: "https://9.9.9.9:41000"
      }))
      const none = yield* Effect.withConfigProvider(EngineReport.optionsFromEnv, ConfigProvider.fromMap(new Map()))
      expect(Option.isNone(none)).toBe(true)
    }))
})
