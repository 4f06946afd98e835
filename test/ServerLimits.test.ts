/**
 * The served worker under load, slow clients and bad requests: responsiveness between synchronous calls, timeouts,
 * limits and media types. Real sockets on loopback port 0.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Schema, TestClock } from "effect"
import * as Http from "node:http"
import * as Net from "node:net"
import * as Deployment from "../src/Deployment.js"
import * as Remote from "../src/Remote.js"
import * as Worker from "../src/Worker.js"
import { divide, echo, eventually, request } from "./fixtures/serving.js"

const local = { port: 0, host: "127.0.0.1", handleSignals: false, benchmark: false } as const

const serve = <P, E, R extends Remote.Any>(app: Deployment.Deployment<P, E, R>, options: Worker.ServeOptions = {}) =>
  Effect.tap(Worker.serveEffect(app, { ...local, ...options }), (served) => served.worker.awaitReady)

/** A raw connection: write bytes, read everything that comes back, see it close. Destroyed with the scope. */
const connect = (url: string) =>
  Effect.acquireRelease(
    Effect.promise(
      () =>
        new Promise<{
          readonly write: (text: string) => void
          readonly text: () => string
          readonly isClosed: () => boolean
          readonly errors: Array<string>
          readonly socket: Net.Socket
        }>((resolve) => {
          const socket = Net.connect(Number(new URL(url).port), "127.0.0.1")
          let text = ""
          let closed = false
          const errors: Array<string> = []
          socket.on("data", (chunk: Buffer) => (text += chunk.toString("utf8")))
          socket.on("error", (e: NodeJS.ErrnoException) => errors.push(e.code ?? e.message))
          socket.on("close", () => (closed = true))
          socket.on("connect", () =>
            resolve({
              write: (t) => void socket.write(t),
              text: () => text,
              isClosed: () => closed,
              errors,
              socket
            })
          )
        })
    ),
    (raw) => Effect.sync(() => raw.socket.destroy())
  )

/** Wait (a few seconds at most, real time) for the server to close a raw connection; fails the test otherwise. */
const closedSoon = (raw: { readonly isClosed: () => boolean }) =>
  eventually(Effect.sync(raw.isClosed), (closed) => closed)

/** A metric's value in `/metrics`. */
const metric = (url: string, name: string) =>
  Effect.map(request(`${url}/metrics`), (r) => {
    const line = r.text.split("\n").find((l) => l.startsWith(`${name}{`))
    return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1))
  })

const app = Deployment.make("limits", { contexts: [], remotes: [echo, divide] })

const head = "POST /remote/divide HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"

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
  it.scopedLive(
    "a probe that arrived during a long call is answered before the next call starts, even one read first",
    () =>
      Effect.gen(function* () {
        const state = { started: 0, startedWhenAnswered: -1 }
        const sockets: { call?: Net.Socket; probe?: Net.Socket } = {}
        const call =
          "POST /remote/block HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 14\r\n\r\n"
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
              if (++state.started === 1) {
                // While the loop is blocked, a second call and then a probe arrive: the next poll reads both at once.
                sockets.call!.write(`${call}{"payload":{}}`)
                sockets.probe!.write("GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
              }
              const until = performance.now() + 30
              while (performance.now() < until) {
                // busy
              }
              return state.started
            })
        )
        const { url } = yield* serve(Deployment.make("blocking", { contexts: [], remotes: [block] }))
        const first = yield* connect(url)
        const second = yield* connect(url)
        const probe = yield* connect(url)
        sockets.call = second.socket
        sockets.probe = probe.socket
        probe.socket.on("data", () => {
          if (state.startedWhenAnswered === -1) state.startedWhenAnswered = state.started
        })
        first.write(`${call}{"payload":{}}`)
        yield* eventually(
          Effect.sync(() => [first.text(), second.text(), probe.text()]),
          (texts) => texts.every((t) => t.includes(" 200 OK"))
        )
        expect(state.started).toBe(2)
        // Answered before the second call began: the probe waited for one call, not two.
        expect(state.startedWhenAnswered).toBe(1)
      })
  )
})

describe("timeouts", () => {
  it.scoped(
    "a body not in 30 s after its headers gets 408 and the connection closes, however steadily it dribbles",
    () =>
      Effect.gen(function* () {
        // The default body timeout, on the TestClock: the server's sweep runs on the worker's clock.
        const { url } = yield* serve(app)
        const raw = yield* connect(url)
        raw.write(`${head}Content-Length: 100\r\n\r\n{`)
        yield* eventually(metric(url, "worker_http_requests_receiving"), (n) => n === 1)
        // A byte a second: each one arrives, none resets the deadline.
        for (let second = 1; second < 30; second++) {
          raw.write(" ")
          yield* TestClock.adjust("1 second")
        }
        expect(yield* metric(url, "worker_http_body_timeouts_total")).toBe(0)
        expect(yield* metric(url, "worker_http_requests_receiving")).toBe(1)
        expect(raw.text()).toBe("")
        yield* TestClock.adjust("1 second")
        yield* closedSoon(raw)
        expect(raw.text()).toMatch(/^HTTP\/1\.1 408 /)
        expect(raw.text().toLowerCase()).toContain("connection: close")
        expect(raw.text()).toContain('"_tag":"RequestTimeout","timeoutMillis":30000')
        expect(yield* metric(url, "worker_http_body_timeouts_total")).toBe(1)
        expect(yield* metric(url, "worker_http_requests_receiving")).toBe(0)
        // A body that arrives in time is answered.
        expect((yield* request(`${url}/remote/divide`, { body: { payload: { args: [6, 3] } } })).json).toEqual({
          result: { ok: 2 }
        })
      })
  )

  it.scopedLive(
    "headers not complete within the headers timeout: 408, connection closed (also a silent connection)",
    () =>
      Effect.gen(function* () {
        const { url } = yield* serve(app, { headersTimeout: "200 millis" })
        const partial = yield* connect(url)
        const silent = yield* connect(url)
        partial.write("POST /remote/divide HTTP/1.1\r\nHost")
        yield* closedSoon(partial)
        yield* closedSoon(silent)
        expect(partial.text()).toMatch(/^HTTP\/1\.1 408 /)
        expect(silent.text()).toMatch(/^HTTP\/1\.1 408 /)
      })
  )

  it.scopedLive("an idle kept-alive connection is closed after the keep-alive timeout", () =>
    Effect.gen(function* () {
      const { url } = yield* serve(app, { keepAliveTimeout: "200 millis" })
      const raw = yield* connect(url)
      raw.write("GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
      yield* closedSoon(raw)
      expect(raw.text()).toMatch(/^HTTP\/1\.1 200 /)
      expect(raw.text().toLowerCase()).toContain("connection: keep-alive")
      expect(raw.errors).toEqual([])
    })
  )
})

describe("limits", () => {
  it.scopedLive("connections past maxConnections are closed at once, and counted", () =>
    Effect.gen(function* () {
      const { url } = yield* serve(app, { maxConnections: 2 })
      const first = yield* connect(url)
      const second = yield* connect(url)
      for (const raw of [first, second]) raw.write("GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
      yield* eventually(
        Effect.sync(() => [first.text(), second.text()]),
        (texts) => texts.every((t) => t.includes("200 OK"))
      )
      const third = yield* connect(url)
      third.write("GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
      yield* closedSoon(third)
      expect(third.text()).toBe("")
      // Room again once one closes (the server may see the close after the next connection arrives: retry).
      first.socket.destroy()
      const metrics = yield* eventually(
        Effect.promise(
          () =>
            new Promise<string>((resolve) => {
              const req = Http.get(`${url}/metrics`, { agent: false }, (res) => {
                let text = ""
                res.on("data", (c: Buffer) => (text += c.toString("utf8")))
                res.on("end", () => resolve(text))
              })
              req.on("error", () => resolve(""))
            })
        ),
        (text) => text.length > 0
      )
      const value = (name: string) => Number(new RegExp(`^${name}\\{[^}]*\\} (\\d+)$`, "m").exec(metrics)?.[1])
      // The third, and any retry of this request that came before the server saw the first one close.
      expect(value("worker_http_connections_refused_total")).toBeGreaterThanOrEqual(1)
      expect(value("worker_http_connections")).toBe(2)
    })
  )

  it.scopedLive("a body declared larger than maxBodySize: 413 before any of it is sent, and no 100 Continue", () =>
    Effect.gen(function* () {
      const { url } = yield* serve(app, { maxBodySize: 64 })
      // Headers only: the worker answers without waiting for the ten megabytes announced.
      const plain = yield* connect(url)
      plain.write(`${head}Content-Length: 10000000\r\n\r\n`)
      const expecting = yield* connect(url)
      expecting.write(`${head}Content-Length: 10000000\r\nExpect: 100-continue\r\n\r\n`)
      for (const raw of [plain, expecting]) {
        yield* closedSoon(raw)
        expect(raw.text()).toMatch(/^HTTP\/1\.1 413 /)
        expect(raw.text().toLowerCase()).toContain("connection: close")
        expect(raw.text()).toContain('"_tag":"PayloadTooLarge","limitBytes":64')
      }
      // A body within the limit that announces itself gets `100 Continue` first.
      const small = yield* connect(url)
      small.write(`${head}Content-Length: 30\r\nExpect: 100-continue\r\n\r\n`)
      yield* eventually(Effect.sync(small.text), (t) => t.length > 0)
      expect(small.text()).toMatch(/^HTTP\/1\.1 100 Continue/)
      small.write(JSON.stringify({ payload: { args: [8, 4] } }).padEnd(30, " "))
      yield* eventually(Effect.sync(small.text), (t) => t.includes('{"result":{"ok":2}}'))
    })
  )

  it.scopedLive("a body that is not JSON by its Content-Type gets 415; JSON types and no type at all are read", () =>
    Effect.gen(function* () {
      const { url } = yield* serve(app)
      const body = JSON.stringify({ payload: { args: [9, 3] } })
      const send = (contentType: string | undefined) =>
        Effect.promise(async () => {
          // A Uint8Array body: fetch adds no Content-Type of its own.
          const r = await fetch(`${url}/remote/divide`, {
            method: "POST",
            body: new TextEncoder().encode(body),
            ...(contentType === undefined ? {} : { headers: { "content-type": contentType } })
          })
          return { status: r.status, json: (await r.json()) as any }
        })
      for (const type of [undefined, "application/json", "Application/JSON; charset=UTF-8", "application/vnd.api+json"])
        expect(yield* send(type)).toEqual({ status: 200, json: { result: { ok: 3 } } })
      const form = yield* send("application/x-www-form-urlencoded")
      expect(form.status).toBe(415)
      expect(form.json).toMatchObject({
        _tag: "UnsupportedMediaType",
        contentType: "application/x-www-form-urlencoded"
      })
      expect(form.json.message).toContain("send the body as application/json")
      for (const type of [
        "text/plain;charset=UTF-8",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin1"
      ])
        expect((yield* send(type)).status).toBe(415)
    })
  )
})

describe("draining", () => {
  /** A request with node:http, to see the Connection header (fetch hides it). */
  const raw = (url: string, path: string, body?: unknown) =>
    Effect.promise(
      () =>
        new Promise<{ status: number; connection: string | undefined; text: string }>((resolve, reject) => {
          const req = Http.request(
            `${url}${path}`,
            { method: body === undefined ? "GET" : "POST", headers: { "content-type": "application/json" } },
            (res) => {
              let text = ""
              res.on("data", (c: Buffer) => (text += c.toString("utf8")))
              res.on("end", () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, text }))
            }
          )
          req.on("error", reject)
          req.end(body === undefined ? undefined : JSON.stringify(body))
        })
    )

  it.scopedLive("while draining every answer closes its connection: calls in flight (200) and new ones (503)", () =>
    Effect.gen(function* () {
      const release = yield* Deferred.make<void>()
      let started = 0
      const hold = Remote.make(
        "hold",
        {
          payload: Schema.Struct({}),
          success: Schema.Literal("done"),
          benchmark: { dataset: [{}], runs: 1, warmup: 0 }
        },
        () => Effect.sync(() => started++).pipe(Effect.zipRight(Deferred.await(release)), Effect.as("done" as const))
      )
      const { url, worker } = yield* serve(Deployment.make("holding", { contexts: [], remotes: [hold] }))
      yield* Effect.addFinalizer(() => Deferred.succeed(release, undefined))
      const before = yield* raw(url, "/health")
      expect(before.connection).toBe("keep-alive")
      const inFlight = yield* Effect.fork(raw(url, "/remote/hold", { payload: {} }))
      yield* eventually(
        Effect.sync(() => started),
        (n) => n === 1
      )
      const shutdown = yield* Effect.fork(worker.shutdown)
      yield* eventually(raw(url, "/health"), (r) => r.text.includes('"phase":"draining"'))
      const late = yield* raw(url, "/remote/hold", { payload: {} })
      expect(late.status).toBe(503)
      expect(late.connection).toBe("close")
      expect((yield* raw(url, "/health")).connection).toBe("close")
      yield* Deferred.succeed(release, undefined)
      const answered = yield* Fiber.join(inFlight)
      expect(answered).toMatchObject({ status: 200, connection: "close" })
      yield* Fiber.join(shutdown)
    })
  )
})
