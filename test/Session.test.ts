import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Option, Queue, Ref, Scope, TestClock } from "effect"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import * as sessions from "../src/internal/sessions.js"
import * as Session from "../src/Session.js"
import { SessionGone, SessionNotFound, SessionRequired, Unauthorized, WorkerUnavailable } from "../src/WorkerError.js"

const auth = { cost: 100, endpoint: "ep", reqnum: 7, request_idx: 42, signature: "c2ln", url: "https://w:1" }

/** A loopback stand-in for an `on_close_route`: records each body; answers with `status` (or never, for "hang"). */
const onCloseRoute = (answer: number | "hang" = 200) =>
  Effect.gen(function* () {
    const bodies = yield* Queue.unbounded<unknown>()
    const server = Http.createServer((req, res) => {
      const chunks: Array<Buffer> = []
      req.on("data", (c: Buffer) => chunks.push(c))
      req.on("end", () => {
        Queue.unsafeOffer(bodies, JSON.parse(Buffer.concat(chunks).toString("utf8")))
        if (answer !== "hang") res.writeHead(answer).end()
      })
    })
    yield* Effect.acquireRelease(
      Effect.async<void>((resume) => void server.listen(0, "127.0.0.1", () => resume(Effect.void))),
      () =>
        Effect.async<void>((resume) => {
          server.closeAllConnections()
          server.close(() => resume(Effect.void))
        })
    )
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/closed`
    return { url, bodies }
  })

interface Seen {
  readonly opened: Array<sessions.Info>
  readonly closed: Array<[string, sessions.CloseReason, number]>
  readonly rejected: Array<sessions.Info>
}

const manager = (options: sessions.Options = {}) =>
  Effect.gen(function* () {
    const seen: Seen = { opened: [], closed: [], rejected: [] }
    const scope = yield* Effect.scope
    const m = yield* sessions
      .make({
        ...options,
        observer: {
          opened: (info) => seen.opened.push(info),
          closed: (info, reason, now) => seen.closed.push([info.id, reason, now]),
          rejected: (info) => seen.rejected.push(info)
        }
      })
      .pipe(Scope.extend(scope), Effect.provide(FetchHttpClient.layer))
    return { m, seen }
  })

const create = (m: sessions.Manager, payload: Record<string, unknown> = {}) => m.create({ auth_data: auth, payload })

describe("sessions: the reference's routes", () => {
  it.scoped("create answers the id and the expiration (epoch seconds, lifetime 60 s by default)", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(1_000_000)
      const { m, seen } = yield* manager()
      const created = yield* create(m)
      expect(created.session_id).toMatch(/^[A-Za-z0-9_-]{22}$/)
      expect(created.expiration).toBe(1000 + 60)
      const other = yield* create(m, { lifetime: 5 })
      expect(other.session_id).not.toBe(created.session_id)
      expect(other.expiration).toBe(1005)
      // The engine sees each open session as its request: request_idx, reqnum and cost of the create.
      expect(seen.opened.map((s) => [s.requestIdx, s.reqnum, s.cost])).toEqual([
        [42, 7, 100],
        [42, 7, 100]
      ])
      expect(yield* m.size).toBe(2)
    })
  )

  it.scoped("get and health check session_auth against the create's auth_data, key order aside", () =>
    Effect.gen(function* () {
      const { m } = yield* manager()
      const route = "http://127.0.0.1:9/x"
      const { session_id } = yield* create(m, { lifetime: 30, on_close_route: route, on_close_payload: { job: 1 } })
      const reordered = Object.fromEntries(Object.entries(auth).reverse())
      expect(yield* m.get({ session_id, session_auth: reordered })).toEqual({
        session_id,
        auth_data: auth,
        lifetime: 30,
        expiration: 30,
        created_at: 0,
        on_close_route: route,
        on_close_payload: { job: 1 }
      })
      expect(yield* m.health({ session_id, session_auth: auth })).toEqual({ ok: true })
      const wrong = yield* Effect.flip(m.get({ session_id, session_auth: { ...auth, request_idx: 43 } }))
      expect(wrong).toEqual(new Unauthorized({ reason: "invalid", detail: "session_auth is not valid" }))
      expect(yield* Effect.flip(m.get({ session_id }))).toMatchObject({ _tag: "Unauthorized", reason: "missing" })
      expect(yield* Effect.flip(m.health({ session_id, session_auth: {} }))).toBeInstanceOf(Unauthorized)
      // Unknown ids: get is 400 (SessionNotFound), health is {ok: false}.
      expect(yield* Effect.flip(m.get({ session_id: "nope", session_auth: auth }))).toEqual(
        new SessionNotFound({ sessionId: "nope" })
      )
      expect(yield* m.health({ session_id: "nope", session_auth: auth })).toEqual({ ok: false })
    })
  )

  it.scoped("bad bodies name the field at fault", () =>
    Effect.gen(function* () {
      const { m } = yield* manager()
      const failure = (e: Effect.Effect<unknown, unknown>) => Effect.flip(e) as Effect.Effect<{ path?: string }>
      expect((yield* failure(create(m, { lifetime: -1 }))).path).toBe("$.payload.lifetime")
      expect((yield* failure(create(m, { lifetime: "60" }))).path).toBe("$.payload.lifetime")
      expect((yield* failure(create(m, { on_close_route: "file:///etc/passwd" }))).path).toBe(
        "$.payload.on_close_route"
      )
      expect((yield* failure(m.create({ auth_data: [1] }))).path).toBe("$.auth_data")
      expect((yield* failure(m.end({ session_auth: auth }))).path).toBe("$.session_id")
      expect((yield* failure(m.get({ session_id: "" }))).path).toBe("$.session_id")
      expect((yield* failure(m.health("x"))).path).toBe("$")
      // However deep or long the bad value, the error is short and nothing overflows.
      let deep: unknown = 1
      for (let i = 0; i < 100_000; i++) deep = [deep]
      for (const session_id of [deep, "x".repeat(1_000_000).split("")]) {
        const bad = (yield* failure(m.get({ session_id }))) as { path?: string; message?: string }
        expect(bad.path).toBe("$.session_id")
        expect(bad.message!.length).toBeLessThan(400)
      }
      // Null and missing parts are defaults, as the reference reads them.
      expect((yield* m.create({ auth_data: null, payload: { lifetime: null, on_close_route: null } })).expiration).toBe(
        60
      )
    })
  )

  it.scoped("WORKER_MAX_SESSIONS: one more is refused (429, Rejected for the engine) until one closes", () =>
    Effect.gen(function* () {
      const { m, seen } = yield* manager({ maxSessions: 2 })
      const first = yield* create(m)
      yield* create(m)
      const refused = yield* Effect.flip(create(m))
      expect(refused).toBeInstanceOf(WorkerUnavailable)
      expect(refused).toMatchObject({ reason: "session-limit" })
      expect(seen.rejected).toHaveLength(1)
      yield* m.end({ session_id: first.session_id, session_auth: auth })
      yield* create(m)
      const none = yield* manager({ maxSessions: 0 })
      expect(yield* Effect.flip(create(none.m))).toMatchObject({ reason: "session-limit" })
    })
  )
})

describe("sessions: lifetime", () => {
  it.scoped("a session expires after its lifetime; each call adds one lifetime", () =>
    Effect.gen(function* () {
      const { m, seen } = yield* manager()
      const { session_id } = yield* create(m, { lifetime: 10 })
      yield* TestClock.adjust("5 seconds")
      yield* m.join(session_id) // now expires at 20 s
      yield* TestClock.adjust("14 seconds")
      expect(yield* m.health({ session_id, session_auth: auth })).toEqual({ ok: true })
      yield* TestClock.adjust("1 second")
      expect(yield* m.health({ session_id, session_auth: auth })).toEqual({ ok: false })
      expect(seen.closed).toEqual([[session_id, "expired", 20_000]])
      // A call naming it now: 410. Ending it: 410 (remembered), after the auth check.
      expect(yield* Effect.flip(m.join(session_id))).toEqual(
        new SessionGone({ sessionId: session_id, reason: "expired" })
      )
      expect(yield* Effect.flip(m.end({ session_id, session_auth: auth }))).toEqual(
        new SessionGone({ sessionId: session_id, reason: "expired" })
      )
      expect(yield* Effect.flip(m.end({ session_id, session_auth: {} }))).toBeInstanceOf(Unauthorized)
      expect(yield* Effect.flip(m.join("never-seen"))).toMatchObject({ reason: "unknown" })
      expect(yield* Effect.flip(m.end({ session_id: "never-seen", session_auth: auth }))).toBeInstanceOf(
        SessionNotFound
      )
    })
  )

  it.scoped("end answers the reference's body; ending twice is 410", () =>
    Effect.gen(function* () {
      const { m, seen } = yield* manager()
      const { session_id } = yield* create(m)
      expect(yield* m.end({ session_id, session_auth: auth })).toEqual({ ended: true, removed_session: session_id })
      expect(seen.closed).toEqual([[session_id, "ended", 0]])
      expect(yield* Effect.flip(m.end({ session_id, session_auth: auth }))).toMatchObject({
        _tag: "SessionGone",
        reason: "ended"
      })
      // Nothing left to expire: the watcher stopped with the session.
      yield* TestClock.adjust("1 hour")
      expect(seen.closed).toHaveLength(1)
    })
  )
})

describe("sessions: a session is a scope", () => {
  it.scoped("ending a session interrupts its in-flight calls, then closes its scope, then POSTs on_close", () =>
    Effect.gen(function* () {
      const { url, bodies } = yield* onCloseRoute()
      const { m } = yield* manager()
      const order: Array<string> = []
      const { session_id } = yield* create(m, { on_close_route: url, on_close_payload: { job: "j1" } })
      const session = yield* m.join(session_id)
      const started = yield* Deferred.make<void>()
      const call = yield* Effect.fork(
        m.within(
          session,
          Effect.gen(function* () {
            yield* Session.addFinalizer(() => Effect.sync(() => order.push("session finalizer")))
            yield* Deferred.succeed(started, undefined)
            return yield* Effect.never
          }).pipe(Effect.onInterrupt(() => Effect.sync(() => order.push("call interrupted"))))
        )
      )
      yield* Deferred.await(started)
      yield* m.end({ session_id, session_auth: auth })
      expect(order).toEqual(["call interrupted", "session finalizer"])
      // The caller is told why: the session is gone (the HTTP layer answers 410).
      expect(yield* Fiber.join(call).pipe(Effect.flip)).toEqual(
        new SessionGone({ sessionId: session_id, reason: "ended" })
      )
      expect(yield* Queue.take(bodies)).toEqual({ job: "j1", session_id })
      // A call after the end is refused before it runs.
      expect(yield* Effect.flip(m.within(session, Effect.succeed(1)))).toMatchObject({ _tag: "SessionGone" })
    })
  )

  it.scoped("on_close bodies as the reference sends them; a failing route is only logged", () =>
    Effect.gen(function* () {
      const { url, bodies } = yield* onCloseRoute(500)
      const { m } = yield* manager()
      const end = (payload: Record<string, unknown>) =>
        Effect.flatMap(create(m, { on_close_route: url, ...payload }), ({ session_id }) =>
          Effect.as(m.end({ session_id, session_auth: auth }), session_id)
        )
      const a = yield* end({ on_close_payload: [1, 2] })
      expect(yield* Queue.take(bodies)).toEqual({ payload: [1, 2], session_id: a })
      const b = yield* end({})
      expect(yield* Queue.take(bodies)).toEqual({ session_id: b })
      yield* end({ on_close_payload: { session_id: "theirs" } })
      expect(yield* Queue.take(bodies)).toEqual({ session_id: "theirs" })
      // Without a route the payload is dropped, as the reference does.
      const { session_id } = yield* create(m, { on_close_payload: { x: 1 } })
      expect((yield* m.get({ session_id, session_auth: auth })).on_close_payload).toBeNull()
    })
  )

  it.scoped("the on_close POST is bounded in time, and the manager waits for it when it stops", () =>
    Effect.gen(function* () {
      const { url, bodies } = yield* onCloseRoute("hang")
      const scope = yield* Scope.make()
      const { m } = yield* manager({ onCloseTimeout: "10 seconds" }).pipe(Scope.extend(scope))
      yield* create(m, { on_close_route: url })
      // Stopping closes the open session ("shutdown") and waits for its POST...
      const stopping = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* Queue.take(bodies)
      yield* TestClock.adjust("9 seconds")
      expect(Option.isNone(yield* Fiber.poll(stopping))).toBe(true)
      // ...until the bound.
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(stopping)
    })
  )

  it.scoped("Session.local: one value per session, made in its scope, released when it closes", () =>
    Effect.gen(function* () {
      const { m } = yield* manager()
      const released: Array<number> = []
      let made = 0
      const Counter = Session.local(
        "Counter",
        Effect.acquireRelease(
          Effect.sync(() => ({ n: ++made, hits: 0 })),
          (c) => Effect.sync(() => released.push(c.n))
        )
      )
      const hit = Effect.map(Counter, (c) => ++c.hits)
      const s1 = yield* m.join((yield* create(m)).session_id)
      const s2 = yield* m.join((yield* create(m)).session_id)
      // Two calls racing on the first use share one value.
      expect(yield* Effect.all([m.within(s1, hit), m.within(s1, hit)], { concurrency: 2 })).toEqual([1, 2])
      expect(yield* m.within(s2, hit)).toBe(1)
      expect(made).toBe(2)
      yield* m.end({ session_id: s1.id, session_auth: auth })
      expect(released).toEqual([1])
      // Outside a session there is no session state.
      expect(yield* Effect.flip(hit)).toEqual(new SessionRequired({ what: 'Session.local("Counter")' }))
      expect(yield* Session.current).toEqual(Option.none())
      expect(
        yield* m.within(
          s2,
          Effect.map(
            Session.current,
            Option.map((s) => s.id)
          )
        )
      ).toEqual(Option.some(s2.id))
    })
  )

  it.scoped("Session.local: a failed make is tried again by the next call", () =>
    Effect.gen(function* () {
      const { m } = yield* manager()
      const attempts = yield* Ref.make(0)
      const Flaky = Session.local(
        "Flaky",
        Effect.flatMap(
          Ref.updateAndGet(attempts, (n) => n + 1),
          (n) => (n === 1 ? Effect.fail("first") : Effect.succeed(n))
        )
      )
      const s = yield* m.join((yield* create(m)).session_id)
      expect(yield* Effect.flip(m.within(s, Flaky))).toBe("first")
      expect(yield* m.within(s, Flaky)).toBe(2)
      expect(yield* m.within(s, Flaky)).toBe(2)
    })
  )

  it.scoped("interrupting a session's caller interrupts its call; the session stays open", () =>
    Effect.gen(function* () {
      const { m } = yield* manager()
      const s = yield* m.join((yield* create(m)).session_id)
      const interrupted = yield* Deferred.make<void>()
      const started = yield* Deferred.make<void>()
      const call = yield* Effect.fork(
        m.within(
          s,
          Deferred.succeed(started, undefined).pipe(
            Effect.zipRight(Effect.never),
            Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined))
          )
        )
      )
      yield* Deferred.await(started)
      yield* Fiber.interrupt(call)
      yield* Deferred.await(interrupted)
      expect(yield* m.within(s, Effect.succeed("still open"))).toBe("still open")
    })
  )

  it.scoped("closing the manager closes every session (shutdown), telling each route", () =>
    Effect.gen(function* () {
      const { url, bodies } = yield* onCloseRoute()
      const scope = yield* Scope.make()
      const { m, seen } = yield* manager().pipe(Scope.extend(scope))
      const a = yield* create(m, { on_close_route: url })
      const b = yield* create(m, { on_close_route: url })
      yield* Scope.close(scope, Exit.void)
      expect(seen.closed.map(([id, reason]) => [id, reason]).sort()).toEqual(
        [
          [a.session_id, "shutdown"],
          [b.session_id, "shutdown"]
        ].sort()
      )
      const sent = [yield* Queue.take(bodies), yield* Queue.take(bodies)] as Array<{ session_id: string }>
      expect(sent.map((x) => x.session_id).sort()).toEqual([a.session_id, b.session_id].sort())
    })
  )
})
