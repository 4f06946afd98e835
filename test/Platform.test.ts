// The worker as the platform runs it: TLS with the instance certificate, the HTTP-only port, sessions over HTTP, and
// a report to the engine for every request that names a request_idx. Everything on loopback: a stand-in engine, a
// stand-in on_close route, a self-signed certificate made in the test.
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Deferred, Effect, Queue, Ref, Schema, Stream } from "effect"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import * as Deployment from "../src/Deployment.js"
import type * as EngineReport from "../src/EngineReport.js"
import * as Remote from "../src/Remote.js"
import * as Session from "../src/Session.js"
import * as Worker from "../src/Worker.js"
import * as WorkerClient from "../src/WorkerClient.js"
import * as WorkerConfig from "../src/WorkerConfig.js"
import { TlsConfigInvalid } from "../src/WorkerError.js"
import { ping } from "./fixtures/probe.js"
import { hasPython, referenceClient } from "./fixtures/python.js"
import { divide, keyPair, request, sign } from "./fixtures/serving.js"
import { hasOpenssl, selfSigned } from "./fixtures/tls.js"

interface Post {
  readonly path: string
  readonly body: any
}

/** A loopback stand-in that records every POST (the engine, or an on_close route). */
const recorder = Effect.acquireRelease(
  Effect.async<{ url: string; posts: Queue.Queue<Post>; server: Http.Server }>((resume) => {
    const posts = Effect.runSync(Queue.unbounded<Post>())
    const server = Http.createServer((req, res) => {
      let data = ""
      req.on("data", (c) => (data += c))
      req.on("end", () => {
        Queue.unsafeOffer(posts, { path: req.url ?? "", body: JSON.parse(data || "null") })
        res.writeHead(200, { "content-type": "application/json" }).end("{}")
      })
    })
    server.listen(0, "127.0.0.1", () =>
      resume(Effect.succeed({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, posts, server }))
    )
  }),
  ({ server }) =>
    Effect.async<void>((resume) => {
      server.close(() => resume(Effect.void))
      server.closeAllConnections()
    })
)

/** Take posts until `done` holds of what was seen; fails the test after 5 s without a post. */
const takeUntil = (posts: Queue.Queue<Post>, done: (seen: ReadonlyArray<Post>) => boolean) =>
  Effect.gen(function* () {
    const seen: Array<Post> = []
    while (!done(seen)) {
      const next = yield* Queue.take(posts).pipe(Effect.timeout("5 seconds"), Effect.option)
      if (next._tag === "None") {
        const paths = seen.map((p) => `${p.path} ${JSON.stringify(p.body?.requests ?? "")}`).join("\n")
        return expect.fail(`the condition was not reached within 5 s; seen:\n${paths}`)
      }
      seen.push(next.value)
    }
    return seen
  })

const deleted = (seen: ReadonlyArray<Post>): Array<any> =>
  seen.filter((p) => p.path === "/delete_requests/").flatMap((p) => p.body.requests)

const reportTo = (url: string): EngineReport.Options => ({
  reportAddrs: [url],
  containerId: 9,
  mtoken: "m",
  url: "http://worker",
  interval: "20 millis"
})

const local = { port: 0, host: "127.0.0.1", handleSignals: false, benchmark: false } as const

/** Serve and wait for readiness (the server listens before the worker is ready). */
const serve = <P, E, R extends Remote.Definition>(app: Deployment.Deployment<P, E, R>, options: Worker.ServeOptions) =>
  Effect.tap(Worker.serveEffect(app, options), (served) => served.worker.awaitReady)

/** A remote that waits for the test: `started` is told when it runs; it never ends on its own. */
const hold = (started: Deferred.Deferred<void>) =>
  Remote.make("hold", { payload: Schema.Struct({}), success: Schema.Number }, () =>
    Effect.zipRight(Deferred.succeed(started, undefined), Effect.never)
  )

/** Per-session state: how many calls this session made. */
const Calls = Session.local("Calls", Ref.make(0))
const count = Remote.make(
  "count",
  { payload: Schema.Struct({}), success: Schema.Struct({ calls: Schema.Number, session: Schema.String }) },
  () =>
    Effect.gen(function* () {
      const calls = yield* Effect.orDie(Effect.flatMap(Calls, (ref) => Ref.updateAndGet(ref, (n) => n + 1)))
      const session = yield* Session.current
      return { calls, session: session._tag === "Some" ? session.value.id : "" }
    })
)

const nan = Remote.make("nan", { payload: Schema.Struct({}), success: Schema.Number }, () => Effect.succeed(Number.NaN))

describe("the platform's environment", () => {
  const resolve = (env: Record<string, string>, options: WorkerConfig.ServeOptions = {}) =>
    WorkerConfig.resolve(options).pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))))

  it.effect("USE_SSL, WORKER_HTTP_PORT and WORKER_MAX_SESSIONS, with the reference's defaults", () =>
    Effect.gen(function* () {
      expect(yield* resolve({ WORKER_PORT: "3000" })).toMatchObject({ tls: undefined, httpPort: 3001, maxSessions: 10 })
      expect(yield* resolve({ WORKER_PORT: "3000", USE_SSL: "true" })).toMatchObject({
        tls: { certPath: "/etc/instance.crt", keyPath: "/etc/instance.key" }
      })
      const set = { USE_SSL: "true", WORKER_TLS_CERT: "/c", WORKER_HTTP_PORT: "9", WORKER_MAX_SESSIONS: "0" }
      expect(yield* resolve(set)).toMatchObject({ tls: { certPath: "/c" }, httpPort: 9, maxSessions: 0 })
      // Options win over the environment; `tls: false` turns TLS off whatever USE_SSL says.
      expect(yield* resolve(set, { tls: false, httpPort: 0, maxSessions: 3 })).toMatchObject({
        tls: undefined,
        httpPort: 0,
        maxSessions: 3
      })
      // The report URL follows the TLS decision.
      const report = yield* resolve({ REPORT_ADDR: "http://e", UNSECURED: "true" }, { tls: { certPath: "/c" } })
      expect(report.report?.url).toMatch(/^https:\/\//)
      expect(yield* Effect.flip(resolve({ WORKER_MAX_SESSIONS: "-1" }))).toBeDefined()
      expect(yield* Effect.flip(resolve({}, { httpPort: 70000 }))).toBeDefined()
    })
  )
})

describe.skipIf(!hasOpenssl)("TLS on the platform", () => {
  it.scopedLive("USE_SSL=true serves HTTPS with the instance certificate; reports carry https://", () =>
    Effect.gen(function* () {
      const pem = yield* selfSigned
      const engine = yield* recorder
      const app = Deployment.make("tls", { contexts: [], remotes: [divide, ping] })
      const env = new Map([
        ["USE_SSL", "true"],
        ["WORKER_TLS_CERT", pem.certPath],
        ["WORKER_TLS_KEY", pem.keyPath],
        ["REPORT_ADDR", engine.url],
        ["UNSECURED", "true"],
        ["PUBLIC_IPADDR", "10.1.2.3"],
        ["VAST_TCP_PORT_0", "40123"]
      ])
      const served = yield* serve(app, local).pipe(Effect.withConfigProvider(ConfigProvider.fromMap(env)))
      expect(served.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/)
      const client = yield* WorkerClient.make(app, { url: served.url }).pipe(
        Effect.provide(WorkerClient.layerTls({ ca: pem.cert }))
      )
      expect(yield* client.divide({ a: 6, b: 3 })).toBe(2)
      // Plain HTTP on the TLS port gets nowhere.
      const plain = yield* Effect.either(
        Effect.tryPromise(() => fetch(served.url.replace("https:", "http:") + "/health"))
      )
      expect(plain._tag).toBe("Left")
      const status = yield* takeUntil(engine.posts, (seen) => seen.some((p) => p.path === "/worker_status/"))
      expect(status.find((p) => p.path === "/worker_status/")!.body.url).toBe("https://10.1.2.3:40123")
      // The HTTP-only port stays plain HTTP: it answers /session/end (a 400 for an unknown session) and nothing else.
      expect(served.httpUrl).toMatch(/^http:\/\//)
      const end = yield* request(`${served.httpUrl}/session/end`, { body: { session_id: "x", session_auth: {} } })
      expect(end.status).toBe(400)
      expect(end.json).toMatchObject({ _tag: "SessionNotFound", error: 'No session "x" on this worker' })
      expect((yield* request(`${served.httpUrl}/remote/divide`, { body: {} })).status).toBe(404)
    })
  )

  it.scopedLive("a missing certificate fails start-up, naming the file, and the engine is told", () =>
    Effect.gen(function* () {
      const engine = yield* recorder
      const app = Deployment.make("tls", { contexts: [], remotes: [divide, ping] })
      const failure = yield* Effect.flip(
        Effect.scoped(
          Worker.serveEffect(app, {
            ...local,
            tls: { certPath: "/nonexistent/instance.crt", keyPath: "/x.key" },
            report: reportTo(engine.url)
          })
        )
      )
      expect(failure).toBeInstanceOf(TlsConfigInvalid)
      expect(failure.message).toContain("/nonexistent/instance.crt")
      const seen = yield* takeUntil(engine.posts, (s) => s.some((p) => p.body?.error_msg !== ""))
      expect(seen.find((p) => p.body?.error_msg !== "")!.body.error_msg).toMatch(
        /^Worker Server failed to launch: TLS: WORKER_TLS_CERT file \/nonexistent\/instance.crt does not exist/
      )
    })
  )
})

describe("sessions over HTTP", () => {
  const auth = { request_idx: 70, reqnum: 7, cost: 50, url: "http://worker", signature: "" }

  it.scopedLive("create, calls in the session, get, health, end (also on the HTTP-only port), as the reference", () =>
    Effect.gen(function* () {
      const engine = yield* recorder
      const onClose = yield* recorder
      const app = Deployment.make("sessions", { contexts: [], remotes: [count, divide, ping] })
      const served = yield* serve(app, { ...local, report: reportTo(engine.url) })
      const post = (path: string, body: unknown, base = served.url) => request(`${base}${path}`, { body })

      const created = yield* post("/session/create", {
        auth_data: auth,
        payload: { lifetime: 30, on_close_route: `${onClose.url}/closed`, on_close_payload: { job: 1 } }
      })
      expect(created.status).toBe(201)
      const id = created.json.session_id as string
      expect(created.json.expiration).toBeGreaterThan(Date.now() / 1000 + 29)

      // Calls in the session share its state and see it; the expiration moves by the lifetime each time.
      const inSession = () => post("/remote/count", { auth_data: auth, session_id: id, payload: {} })
      expect((yield* inSession()).json.result.ok).toEqual({
        type: "dict",
        contents: [
          ["calls", 1],
          ["session", id]
        ]
      })
      expect((yield* inSession()).json.result.ok.contents[0]).toEqual(["calls", 2])
      const got = yield* post("/session/get", { session_id: id, session_auth: auth })
      expect(got.status).toBe(200)
      expect(got.json).toMatchObject({ session_id: id, auth_data: auth, lifetime: 30, on_close_payload: { job: 1 } })
      expect(got.json.expiration).toBeGreaterThan(created.json.expiration + 59)
      expect((yield* post("/session/health", { session_id: id, session_auth: auth })).json).toEqual({ ok: true })
      expect((yield* post("/session/get", { session_id: id, session_auth: { ...auth, reqnum: 8 } })).status).toBe(401)

      // An open session is load at the engine, under the create's request_idx.
      yield* takeUntil(engine.posts, (seen) => seen.some((p) => p.body?.working_request_idxs?.includes(70)))

      // The platform ends it through the HTTP-only port.
      const ended = yield* post("/session/end", { session_id: id, session_auth: auth }, served.httpUrl)
      expect(ended.status).toBe(200)
      expect(ended.json).toEqual({ ended: true, removed_session: id })
      expect((yield* Queue.take(onClose.posts)).body).toEqual({ job: 1, session_id: id })
      const gone = yield* inSession()
      expect(gone.status).toBe(410)
      expect(gone.json).toMatchObject({ _tag: "SessionGone", reason: "ended" })
      expect((yield* post("/session/end", { session_id: id, session_auth: auth })).status).toBe(410)
      expect((yield* post("/session/health", { session_id: id, session_auth: auth })).json).toEqual({ ok: false })
      expect((yield* post("/remote/count", { session_id: "never", payload: {} })).status).toBe(410)

      // The session's request_idx is reported once, when it ends (the reference's Success); its calls are not.
      const seen = yield* takeUntil(engine.posts, (s) => deleted(s).some((r) => r.request_idx === 70))
      expect(deleted(seen).filter((r) => r.request_idx === 70)).toMatchObject([{ status: "Success", success: true }])
      // Bad bodies: 400 naming the field (the reference answers 422).
      const bad = yield* post("/session/create", { auth_data: auth, payload: { lifetime: -1 } })
      expect(bad.status).toBe(400)
      expect(bad.json).toMatchObject({ _tag: "WireDecodeError", path: "$.payload.lifetime" })
    })
  )

  it.scopedLive("a stream remote called in a session sees it", () =>
    Effect.gen(function* () {
      const sessionIds = Remote.stream("ids", { payload: Schema.Struct({}), element: Schema.String }, () =>
        Stream.repeatEffect(Effect.map(Session.current, (s) => (s._tag === "Some" ? s.value.id : "(none)"))).pipe(
          Stream.take(2)
        )
      )
      const app = Deployment.make("sessions", { contexts: [], remotes: [sessionIds, ping] })
      const served = yield* serve(app, local)
      const id = (yield* request(`${served.url}/session/create`, { body: { auth_data: auth } })).json.session_id
      const lines = (yield* request(`${served.url}/remote/ids`, { body: { session_id: id, payload: {} } })).text
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l))
      expect(lines).toEqual([{ item: id }, { item: id }, { end: expect.objectContaining({ count: 2 }) }])
    })
  )

  it.scopedLive("ending a session interrupts its in-flight call, which answers 410", () =>
    Effect.gen(function* () {
      const started = yield* Deferred.make<void>()
      const app = Deployment.make("sessions", { contexts: [], remotes: [hold(started), divide, ping] })
      const served = yield* serve(app, local)
      const id = (yield* request(`${served.url}/session/create`, { body: { auth_data: auth } })).json.session_id
      const call = yield* Effect.fork(request(`${served.url}/remote/hold`, { body: { session_id: id, payload: {} } }))
      yield* Deferred.await(started)
      yield* request(`${served.url}/session/end`, { body: { session_id: id, session_auth: auth } })
      const answer = yield* call.await.pipe(Effect.flatten)
      expect(answer.status).toBe(410)
      expect(answer.json).toMatchObject({ _tag: "SessionGone", sessionId: id, reason: "ended" })
    })
  )

  it.scopedLive("WORKER_MAX_SESSIONS: the next create is 429, Rejected at the engine", () =>
    Effect.gen(function* () {
      const engine = yield* recorder
      const app = Deployment.make("sessions", { contexts: [], remotes: [divide, ping] })
      const served = yield* serve(app, { ...local, maxSessions: 1, report: reportTo(engine.url) })
      expect((yield* request(`${served.url}/session/create`, { body: { auth_data: auth } })).status).toBe(201)
      const refused = yield* request(`${served.url}/session/create`, {
        body: { auth_data: { ...auth, request_idx: 71 } }
      })
      expect(refused.status).toBe(429)
      expect(refused.json).toMatchObject({ reason: "session-limit" })
      expect(refused.headers.get("retry-after")).not.toBeNull()
      const seen = yield* takeUntil(engine.posts, (s) => deleted(s).some((r) => r.request_idx === 71))
      expect(deleted(seen).find((r) => r.request_idx === 71)).toMatchObject({ status: "Rejected", success: false })
    })
  )
})

describe("a report for every request that names a request_idx", () => {
  it.scopedLive("success, declared error, bad arguments, 401, 404, 429, timeout, cancelled, unencodable", () =>
    Effect.gen(function* () {
      const engine = yield* recorder
      const keys = keyPair()
      const started = yield* Deferred.make<void>()
      const gate = Remote.make(
        "gate",
        { payload: Schema.Struct({}), success: Schema.Number, concurrency: 1, maxQueue: 0, timeout: "5 seconds" },
        () => Effect.zipRight(Deferred.succeed(started, undefined), Effect.never)
      )
      const slow = Remote.make(
        "slow",
        { payload: Schema.Struct({}), success: Schema.Number, timeout: "20 millis" },
        () => Effect.never
      )
      const app = Deployment.make("reports", { contexts: [], remotes: [divide, gate, slow, nan, ping] })
      const served = yield* serve(app, {
        ...local,
        auth: { mode: "signed", publicKey: keys.publicKey },
        report: reportTo(engine.url)
      })
      const signed = (idx: number) => ({
        request_idx: idx,
        reqnum: idx,
        cost: 10,
        url: "http://worker",
        signature: sign(keys.privateKey, "http://worker")
      })
      const post = (name: string, idx: number, payload: unknown, authData: unknown = signed(idx)) =>
        request(`${served.url}/remote/${name}`, { body: { auth_data: authData, payload } })

      expect((yield* post("divide", 1, { args: [6, 3] })).status).toBe(200)
      expect((yield* post("divide", 2, { args: [1, 0] })).json.result.err.contents._tag).toBe("DivideByZero")
      expect((yield* post("divide", 3, { args: [1, 2, 3] })).status).toBe(400)
      expect((yield* post("divide", 4, { args: [6, 3] }, { ...signed(4), signature: "AAAA" })).status).toBe(401)
      expect((yield* post("nope", 5, {})).status).toBe(404)
      // A result the wire cannot carry is the remote's failure: 200 err (a TypeError for Python), never a 5xx.
      const unencodable = yield* post("nan", 6, {})
      expect(unencodable.status).toBe(200)
      expect(unencodable.json.result.err).toMatchObject({
        class: "TypeError",
        contents: { _tag: "CallFailed", reason: "encode" }
      })
      expect((yield* post("slow", 7, {})).status).toBe(504)
      // One call holds the gate's only slot (no queue): the next is 429; the first is then cancelled by its client.
      const controller = new AbortController()
      const held = yield* Effect.fork(
        Effect.either(
          Effect.tryPromise(() =>
            fetch(`${served.url}/remote/gate`, {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: JSON.stringify({ auth_data: signed(8), payload: {} }),
              signal: controller.signal
            })
          )
        )
      )
      yield* Deferred.await(started)
      expect((yield* post("gate", 9, {})).status).toBe(429)
      controller.abort()
      yield* held.await

      const seen = yield* takeUntil(engine.posts, (s) => deleted(s).length >= 9)
      const byIdx = Object.fromEntries(deleted(seen).map((r) => [r.request_idx, r.status]))
      expect(byIdx).toEqual({
        1: "Success",
        2: "Error",
        3: "Error",
        4: "Rejected",
        5: "Error",
        6: "Error",
        7: "Error",
        8: "Cancelled",
        9: "Rejected"
      })
      for (const r of deleted(seen)) {
        expect(r.entered_queue_at).toBeGreaterThan(1.7e9)
        expect(r.work_completed_at).toBeGreaterThanOrEqual(r.entered_queue_at)
      }
      if (hasPython) {
        const [python] = yield* referenceClient([unencodable.json.result])
        expect(python).toMatchObject({ raised: "TypeError", attrs: { _tag: "CallFailed", reason: "encode" } })
        expect(python!.str).toContain('Remote "nan" failed (encode)')
      }
    })
  )

  it.scopedLive("503 while the engine's key is not loaded is reported Rejected", () =>
    Effect.gen(function* () {
      const engine = yield* recorder
      // An engine whose /pubkey/ never answers with a key: every signed call waits for it (503).
      const app = Deployment.make("reports", { contexts: [], remotes: [divide, ping] })
      const served = yield* serve(app, {
        ...local,
        auth: { mode: "signed", reportAddr: engine.url },
        report: reportTo(engine.url)
      })
      const reply = yield* request(`${served.url}/remote/divide`, {
        body: { auth_data: { request_idx: 31, reqnum: 1, url: "u", signature: "s" }, payload: { args: [1, 1] } }
      })
      expect(reply.status).toBe(503)
      const seen = yield* takeUntil(engine.posts, (s) => deleted(s).some((r) => r.request_idx === 31))
      expect(deleted(seen).find((r) => r.request_idx === 31)).toMatchObject({ status: "Rejected", success: false })
    })
  )
})
