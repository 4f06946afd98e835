import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { Cause, Clock, Config, Duration, Effect, Either, Exit, Fiber, FiberSet, Option, Schema, Scope } from "effect"
import * as crypto from "node:crypto"
import type * as Session from "../Session.js"
import { Current } from "../Session.js"
import * as Wire from "../Wire.js"
import { SessionGone, SessionNotFound, Unauthorized, WireDecodeError, WorkerUnavailable } from "../WorkerError.js"
import { formatIssues } from "./issues.js"
import { tokenEquals } from "./signature.js"
import { pathIndex, pathKey } from "./wire.js"

// The reference's sessions (server/lib/backend.py), as a unit the HTTP layer mounts: each route is a function from the
// parsed JSON body to a typed result or a typed error, and one table at the edge gives the statuses.

/** @internal */
export const DEFAULT_MAX_SESSIONS = 10
/** @internal */
export const DEFAULT_LIFETIME_SECONDS = 60
/** The reference's bound on the on-close POST (aiohttp ClientTimeout(total=10)). @internal */
export const DEFAULT_ON_CLOSE_TIMEOUT = Duration.seconds(10)
/** How long ending a session waits for its in-flight calls to finish being interrupted. @internal */
export const DEFAULT_INTERRUPT_TIMEOUT = Duration.seconds(10)
/** How many closed session ids are remembered, so that ending one twice is 410 rather than 400. @internal */
export const DEFAULT_REMEMBER_CLOSED = 1024

/** `WORKER_MAX_SESSIONS`: how many sessions may be open at once (default 10, as the reference's WorkerConfig). @internal */
export const config: Config.Config<number> = Config.integer("WORKER_MAX_SESSIONS").pipe(
  Config.validate({ message: "WORKER_MAX_SESSIONS must be 0 or more", validation: (n) => n >= 0 }),
  Config.withDefault(DEFAULT_MAX_SESSIONS),
  Config.withDescription("How many sessions may be open at once; 0 turns sessions off")
)

/** Why a session closed. @internal */
export type CloseReason = "ended" | "expired" | "shutdown"

/** What the engine accounting needs to know of a session. @internal */
export interface Info {
  readonly id: string
  /** The create's `auth_data.request_idx`: the engine's id for the whole session. */
  readonly requestIdx: number | undefined
  readonly reqnum: number | undefined
  /** The create's `auth_data.cost`: the load the session stands for while open. */
  readonly cost: number | undefined
  /** Epoch milliseconds. */
  readonly createdAt: number
}

/**
 * Hooks for the engine accounting (an open session is one running request, status `SessionActive`, until it closes).
 * Called synchronously: keep them cheap and never throw.
 *
 * @internal
 */
export interface Observer {
  readonly opened: (session: Info) => void
  readonly closed: (session: Info, reason: CloseReason, now: number) => void
  /** A create refused over the session limit (the reference reports it `Rejected`). */
  readonly rejected: (session: Info) => void
}

/** @internal */
export interface Options {
  /** Default `DEFAULT_MAX_SESSIONS`; 0 refuses every session. */
  readonly maxSessions?: number | undefined
  readonly onCloseTimeout?: Duration.DurationInput | undefined
  readonly interruptTimeout?: Duration.DurationInput | undefined
  readonly rememberClosed?: number | undefined
  readonly observer?: Observer | undefined
}

/** The body of a 201 from `/session/create`. Times are epoch seconds, as the reference sends them. @internal */
export interface Created {
  readonly session_id: string
  readonly expiration: number
}

/** The body of `/session/get`. @internal */
export interface Described {
  readonly session_id: string
  readonly auth_data: unknown
  readonly lifetime: number
  readonly expiration: number
  readonly created_at: number
  readonly on_close_route: string | null
  readonly on_close_payload: unknown
}

/** @internal */
export interface Ended {
  readonly ended: true
  readonly removed_session: string
}

/** @internal */
export interface Health {
  readonly ok: boolean
}

/** @internal */
export interface Manager {
  /** `POST /session/create` (201). The caller's auth_data should be authenticated like a call's first. */
  readonly create: (body: unknown) => Effect.Effect<Created, WireDecodeError | WorkerUnavailable>
  /** `POST /session/get`. */
  readonly get: (body: unknown) => Effect.Effect<Described, WireDecodeError | SessionNotFound | Unauthorized>
  /** `POST /session/health`: `{ok: false}` for a session that is not open. */
  readonly health: (body: unknown) => Effect.Effect<Health, WireDecodeError | Unauthorized>
  /** `POST /session/end` (also on the HTTP-only port). */
  readonly end: (body: unknown) => Effect.Effect<Ended, WireDecodeError | SessionNotFound | SessionGone | Unauthorized>
  /**
   * A call names `sessionId`: the session, its expiration extended by its lifetime. `SessionGone` (410) when it is
   * not open.
   */
  readonly join: (sessionId: string) => Effect.Effect<Session.Session, SessionGone>
  /** `join`, synchronously (the call pipeline's form). */
  readonly joinSync: (sessionId: string) => Either.Either<Session.Session, SessionGone>
  /**
   * Run a call of `session`: `Session.Current` is provided to it, and it is interrupted when the session closes, then
   * fails with `SessionGone`. Interrupting the caller interrupts it too.
   */
  readonly within: <A, E, R>(
    session: Session.Session,
    effect: Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E | SessionGone, Exclude<R, Current>>
  /** How many sessions are open. */
  readonly size: Effect.Effect<number>
  /** Close every open session (the worker is stopping), telling each `on_close_route`. */
  readonly closeAll: (reason: CloseReason) => Effect.Effect<void>
}

/**
 * One route per session path. `status` is the success status; `authenticate` says whether the body's `auth_data` is
 * checked like a call's before the handler runs (the reference checks none; the session create is as signed as a call,
 * so we do). `httpOnlyPort`: also served on WORKER_HTTP_PORT for the platform's webhooks.
 *
 * @internal
 */
export const routes: ReadonlyArray<{
  readonly path: string
  readonly status: number
  readonly authenticate: boolean
  readonly httpOnlyPort: boolean
  readonly handle: (manager: Manager, body: unknown) => Effect.Effect<unknown, unknown>
}> = [
  { path: "/session/create", status: 201, authenticate: true, httpOnlyPort: false, handle: (m, b) => m.create(b) },
  { path: "/session/get", status: 200, authenticate: false, httpOnlyPort: false, handle: (m, b) => m.get(b) },
  { path: "/session/health", status: 200, authenticate: false, httpOnlyPort: false, handle: (m, b) => m.health(b) },
  { path: "/session/end", status: 200, authenticate: false, httpOnlyPort: true, handle: (m, b) => m.end(b) }
]

// ---------------------------------------------------------------------------
// bodies
// ---------------------------------------------------------------------------

const optional = <S extends Schema.Schema.Any>(schema: S) => Schema.optionalWith(schema, { nullable: true })

const HttpUrl = Schema.String.pipe(
  Schema.filter((s) => URL.canParse(s) && /^https?:$/.test(new URL(s).protocol), {
    message: () => "on_close_route must be an http:// or https:// URL"
  })
)

const Lifetime = Schema.Number.pipe(
  Schema.filter((n) => Number.isFinite(n) && n > 0, { message: () => "lifetime must be a number of seconds above 0" })
)

// The reference reads `auth_data` as a dict; a plain JSON object here.
const JsonObject = Schema.Record({ key: Schema.String, value: Schema.Unknown })

const CreateBody = Schema.Struct({
  auth_data: optional(JsonObject),
  payload: optional(
    Schema.Struct({
      lifetime: optional(Lifetime),
      on_close_route: optional(HttpUrl),
      on_close_payload: optional(Schema.Unknown)
    })
  )
})

const SessionBody = Schema.Struct({
  session_id: Schema.String.pipe(Schema.minLength(1, { message: () => "session_id must not be empty" })),
  session_auth: optional(Schema.Unknown)
})

const formatPath = (path: ReadonlyArray<PropertyKey>): string =>
  path.reduce<string>((acc, key) => (typeof key === "number" ? pathIndex(acc, key) : pathKey(acc, String(key))), "$")

const decodeBody =
  <A, I>(schema: Schema.Schema<A, I, never>) =>
  (body: unknown): Effect.Effect<A, WireDecodeError> => {
    const decoded = Schema.decodeUnknownEither(schema)(body)
    if (Either.isRight(decoded)) return Effect.succeed(decoded.right)
    // Bounded (issues.ts): the offending value is previewed, never written out (it may be megabytes, or deep).
    const issue = formatIssues(decoded.left, { maxIssues: 1 })[0]
    const path = formatPath(issue?.path ?? [])
    return Effect.fail(
      new WireDecodeError({
        reason: "InvalidEnvelope",
        path,
        message: `invalid request body: ${issue?.message ?? decoded.left.message} (at ${path})`
      })
    )
  }

const decodeCreate = decodeBody(CreateBody)
const decodeSession = decodeBody(SessionBody)
const decodeAuthData = Schema.decodeUnknownOption(Wire.AuthData)

// Python compares the dicts (`session.auth_data != session_auth`); the same, key order aside, in constant time.
const canonical = (value: unknown): string =>
  JSON.stringify(value, (_key, v: unknown) =>
    typeof v === "object" && v !== null && !Array.isArray(v)
      ? Object.fromEntries(
          Object.keys(v)
            .sort()
            .map((k) => [k, (v as Record<string, unknown>)[k]])
        )
      : v
  ) ?? "null"

// ---------------------------------------------------------------------------
// the manager
// ---------------------------------------------------------------------------

class OpenSession implements Session.Session {
  closed: CloseReason | undefined = undefined
  readonly calls = new Set<Fiber.RuntimeFiber<unknown, unknown>>()
  watcher: Fiber.RuntimeFiber<unknown, unknown> | undefined = undefined
  constructor(
    readonly id: string,
    readonly info: Info,
    readonly authData: Readonly<Record<string, unknown>>,
    readonly authKey: string,
    readonly lifetimeSeconds: number,
    readonly createdAt: number,
    public expiresAt: number,
    readonly onCloseRoute: string | undefined,
    readonly onClosePayload: unknown,
    readonly scope: Scope.CloseableScope
  ) {}
  get lifetime(): Duration.Duration {
    return Duration.seconds(this.lifetimeSeconds)
  }
  get expiration(): Effect.Effect<number> {
    return Effect.sync(() => this.expiresAt)
  }
}

/** 128 random bits, URL-safe (the reference's ids are 13 letters from `random.choices`, which is not a secure RNG). */
const newId = (): string => crypto.randomBytes(16).toString("base64url")

// A watcher wakes at least this often, so that a far expiration never needs one timer longer than the platform's.
const MAX_SLEEP_MILLIS = 24 * 60 * 60 * 1000

/** @internal */
export const make = (options: Options = {}): Effect.Effect<Manager, never, Scope.Scope | HttpClient.HttpClient> =>
  Effect.gen(function* () {
    const http = yield* HttpClient.HttpClient
    const maxSessions = options.maxSessions ?? DEFAULT_MAX_SESSIONS
    const onCloseTimeout = Duration.decode(options.onCloseTimeout ?? DEFAULT_ON_CLOSE_TIMEOUT)
    const interruptTimeout = Duration.decode(options.interruptTimeout ?? DEFAULT_INTERRUPT_TIMEOUT)
    const rememberClosed = options.rememberClosed ?? DEFAULT_REMEMBER_CLOSED
    const observer = options.observer
    const open = new Map<string, OpenSession>()
    // Insertion-ordered: the oldest is forgotten first.
    const closed = new Map<string, { readonly reason: CloseReason; readonly authKey: string }>()
    // Expiry watchers and on-close POSTs: interrupted if still running when the manager's scope closes.
    const background = yield* FiberSet.make<unknown, unknown>()

    const authorize = (
      session: { readonly authKey: string },
      sessionAuth: unknown
    ): Effect.Effect<void, Unauthorized> =>
      sessionAuth === undefined
        ? Effect.fail(new Unauthorized({ reason: "missing", detail: "session_auth is required" }))
        : tokenEquals(canonical(sessionAuth), session.authKey)
          ? Effect.void
          : Effect.fail(new Unauthorized({ reason: "invalid", detail: "session_auth is not valid" }))

    const notifyOnClose = (session: OpenSession) =>
      Effect.gen(function* () {
        const route = session.onCloseRoute
        if (route === undefined) return
        const payload = session.onClosePayload
        // As the reference: a dict is sent as it is, anything else under "payload"; session_id is added unless given.
        const body: Record<string, unknown> =
          typeof payload === "object" && payload !== null && !Array.isArray(payload)
            ? { ...(payload as Record<string, unknown>) }
            : payload === undefined || payload === null
              ? {}
              : { payload }
        if (!Object.hasOwn(body, "session_id")) body["session_id"] = session.id
        const request = HttpClientRequest.post(route).pipe(HttpClientRequest.bodyUnsafeJson(body))
        const result = yield* http.execute(request).pipe(
          Effect.flatMap((response) =>
            response.status >= 400 ? Effect.fail(`status ${response.status}`) : Effect.succeed(response.status)
          ),
          Effect.scoped,
          Effect.timeoutFail({
            duration: onCloseTimeout,
            onTimeout: () => `no answer in ${Duration.format(onCloseTimeout)}`
          }),
          Effect.either
        )
        if (Either.isLeft(result)) {
          const error = result.left
          yield* Effect.logWarning(
            `Session ${session.id}: on_close POST to ${route} failed: ${typeof error === "string" ? error : error.message}`
          )
        }
      })

    /** Close a session once, whoever asks first: interrupt its calls, close its scope, tell its on_close_route. */
    const close = (session: OpenSession, reason: CloseReason): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (session.closed !== undefined) return Effect.void
        session.closed = reason
        open.delete(session.id)
        closed.set(session.id, { reason, authKey: session.authKey })
        if (closed.size > rememberClosed) closed.delete(closed.keys().next().value!)
        const watcher = session.watcher
        return Effect.gen(function* () {
          if (watcher !== undefined) yield* Fiber.interrupt(watcher)
          // Interruptible, so that the timeout can give up on a call stuck in an uninterruptible region.
          yield* Effect.interruptible(Fiber.interruptAll(session.calls)).pipe(Effect.timeoutOption(interruptTimeout))
          yield* Scope.close(session.scope, Exit.void)
          const now = yield* Clock.currentTimeMillis
          observer?.closed(session.info, reason, now)
          yield* Effect.logDebug(`Session ${session.id} closed (${reason})`)
          // Forked from this uninterruptible region, it would inherit it, and its timeout could not cut the request.
          yield* FiberSet.run(background, Effect.interruptible(notifyOnClose(session)))
        }).pipe(Effect.uninterruptible)
      })

    const watch = (session: OpenSession): Effect.Effect<void> =>
      Effect.gen(function* () {
        while (session.closed === undefined) {
          const now = yield* Clock.currentTimeMillis
          if (now >= session.expiresAt) {
            // In its own fiber: closing interrupts this watcher, which must not wait on itself.
            yield* FiberSet.run(background, close(session, "expired"))
            return
          }
          yield* Effect.sleep(Duration.millis(Math.min(session.expiresAt - now, MAX_SLEEP_MILLIS)))
        }
      })

    const create = (body: unknown): Effect.Effect<Created, WireDecodeError | WorkerUnavailable> =>
      Effect.gen(function* () {
        const { auth_data, payload } = yield* decodeCreate(body)
        const authData = auth_data ?? {}
        const now = yield* Clock.currentTimeMillis
        const auth = Option.getOrUndefined(decodeAuthData(authData))
        const id = newId()
        const info: Info = {
          id,
          requestIdx: auth?.request_idx,
          reqnum: auth?.reqnum,
          cost: auth?.cost,
          createdAt: now
        }
        if (open.size >= maxSessions) {
          observer?.rejected(info)
          return yield* new WorkerUnavailable({
            reason: "session-limit",
            detail: `${open.size} sessions open (WORKER_MAX_SESSIONS is ${maxSessions})`
          })
        }
        const lifetime = payload?.lifetime ?? DEFAULT_LIFETIME_SECONDS
        const route = payload?.on_close_route
        const session = new OpenSession(
          id,
          info,
          authData,
          canonical(authData),
          lifetime,
          now,
          now + lifetime * 1000,
          route,
          // The reference keeps the payload only with a route to send it to.
          route === undefined ? undefined : payload?.on_close_payload,
          yield* Scope.make()
        )
        open.set(id, session)
        observer?.opened(info)
        session.watcher = yield* FiberSet.run(background, Effect.interruptible(watch(session)))
        return { session_id: id, expiration: session.expiresAt / 1000 }
      })

    const get = (body: unknown) =>
      Effect.gen(function* () {
        const { session_id, session_auth } = yield* decodeSession(body)
        const session = open.get(session_id)
        if (session === undefined) return yield* new SessionNotFound({ sessionId: session_id })
        yield* authorize(session, session_auth)
        return {
          session_id,
          auth_data: session.authData,
          lifetime: session.lifetimeSeconds,
          expiration: session.expiresAt / 1000,
          created_at: session.createdAt / 1000,
          on_close_route: session.onCloseRoute ?? null,
          on_close_payload: session.onClosePayload ?? null
        } satisfies Described
      })

    const health = (body: unknown) =>
      Effect.gen(function* () {
        const { session_id, session_auth } = yield* decodeSession(body)
        const session = open.get(session_id)
        if (session === undefined) return { ok: false }
        yield* authorize(session, session_auth)
        return { ok: true }
      })

    const end = (body: unknown) =>
      Effect.gen(function* () {
        const { session_id, session_auth } = yield* decodeSession(body)
        const session = open.get(session_id)
        if (session === undefined) {
          const gone = closed.get(session_id)
          if (gone === undefined) return yield* new SessionNotFound({ sessionId: session_id })
          yield* authorize(gone, session_auth)
          return yield* new SessionGone({ sessionId: session_id, reason: gone.reason })
        }
        yield* authorize(session, session_auth)
        yield* close(session, "ended")
        return { ended: true, removed_session: session_id } as const
      })

    const joinSync = (sessionId: string): Either.Either<Session.Session, SessionGone> => {
      const session = open.get(sessionId)
      if (session === undefined) {
        return Either.left(new SessionGone({ sessionId, reason: closed.get(sessionId)?.reason ?? "unknown" }))
      }
      // As the reference: each call adds a lifetime to the expiration.
      session.expiresAt += session.lifetimeSeconds * 1000
      return Either.right(session)
    }

    const join = (sessionId: string): Effect.Effect<Session.Session, SessionGone> =>
      Effect.suspend(() => joinSync(sessionId))

    const within = <A, E, R>(
      session: Session.Session,
      effect: Effect.Effect<A, E, R>
    ): Effect.Effect<A, E | SessionGone, Exclude<R, Current>> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.gen(function* () {
          const state = open.get(session.id)
          if (state === undefined || state !== session || state.closed !== undefined) {
            return yield* new SessionGone({
              sessionId: session.id,
              reason: closed.get(session.id)?.reason ?? "unknown"
            })
          }
          const fiber = yield* Effect.forkDaemon(
            restore(Effect.provideService(effect, Current, session)) as Effect.Effect<A, E, Exclude<R, Current>>
          )
          state.calls.add(fiber as Fiber.RuntimeFiber<unknown, unknown>)
          const exit = yield* restore(Fiber.await(fiber)).pipe(
            Effect.onInterrupt(() => Fiber.interrupt(fiber)),
            Effect.ensuring(Effect.sync(() => state.calls.delete(fiber as Fiber.RuntimeFiber<unknown, unknown>)))
          )
          if (Exit.isFailure(exit) && state.closed !== undefined && Cause.isInterruptedOnly(exit.cause)) {
            return yield* new SessionGone({ sessionId: session.id, reason: state.closed })
          }
          return yield* exit
        })
      )

    const closeAll = (reason: CloseReason) =>
      Effect.forEach([...open.values()], (session) => close(session, reason), {
        concurrency: "unbounded",
        discard: true
      })

    // Runs before the FiberSet's own finalizer (added earlier): sessions close and their on-close POSTs (each bounded
    // by onCloseTimeout) finish before what is left in the background is interrupted.
    yield* Effect.addFinalizer(() =>
      closeAll("shutdown").pipe(
        Effect.zipRight(
          Effect.interruptible(FiberSet.awaitEmpty(background)).pipe(
            Effect.timeoutOption(Duration.sum(onCloseTimeout, interruptTimeout))
          )
        )
      )
    )

    return {
      create,
      get,
      health,
      end,
      join,
      joinSync,
      within,
      size: Effect.sync(() => open.size),
      closeAll
    } satisfies Manager
  })
