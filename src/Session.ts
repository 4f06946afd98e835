/**
 * Sessions: a caller holds one worker for a series of calls (`POST /session/create`, then calls whose envelope carries
 * `"session_id"`, then `/session/end` or expiry), as the reference's sessions do. Here a session is also an Effect
 * `Scope`: a remote called in a session can ask for it (`Session.current`), keep per-session state that lives as long
 * as the session (`Session.local`) and attach finalizers to it (`Session.addFinalizer`). When the session ends or
 * expires, its in-flight calls are interrupted first, then its scope closes (finalizers run, per-session resources are
 * released), then the caller's `on_close_route` is told.
 *
 * @example
 * ```ts
 * import { Effect, Ref, Schema } from "effect"
 * import { Remote, Session } from "effect-deployments"
 *
 * // One chat history per session, created by the session's first call, dropped when it closes.
 * const History = Session.local("History", Ref.make<ReadonlyArray<string>>([]))
 *
 * const chat = Remote.make("chat", { payload: Schema.Struct({ text: Schema.String }), success: Schema.Number },
 *   ({ text }) => Effect.gen(function*() {
 *     const history = yield* History                     // fails with SessionRequired outside a session
 *     yield* Ref.update(history, (h) => [...h, text])
 *     return (yield* Ref.get(history)).length
 *   }))
 * ```
 *
 * @since 0.1.0
 */
import { Context, Deferred, Effect, Exit, FiberId, Option, Scope } from "effect"
import type { Duration } from "effect"
import { SessionRequired } from "./WorkerError.js"

/**
 * An open session, as a remote sees it.
 *
 * @since 0.1.0
 */
export interface Session {
  /** The id the caller sends as `"session_id"`. */
  readonly id: string
  /** Closes when the session ends, expires or the worker stops: add finalizers or scoped resources to it. */
  readonly scope: Scope.Scope
  /** When it was created (epoch milliseconds). */
  readonly createdAt: number
  /** How much each call extends the expiration (the create's `payload.lifetime`, default 60 s). */
  readonly lifetime: Duration.Duration
  /** When it expires unless a call extends it (epoch milliseconds). */
  readonly expiration: Effect.Effect<number>
  /** The `auth_data` the session was created with (the router's, with its `request_idx`). */
  readonly authData: unknown
}

/**
 * The session of the current call. Provided by the worker to a call whose envelope names a session; absent otherwise,
 * which is why remotes read it through `current` (an `Option`) rather than requiring it.
 *
 * @since 0.1.0
 */
export class Current extends Context.Tag("effect-deployments/Session/Current")<Current, Session>() {}

/**
 * The current call's session, if it was made in one.
 *
 * @since 0.1.0
 */
export const current: Effect.Effect<Option.Option<Session>> = Effect.serviceOption(Current)

const require = (what: string): Effect.Effect<Session, SessionRequired> =>
  Effect.flatMap(current, (session) =>
    Option.isSome(session) ? Effect.succeed(session.value) : Effect.fail(new SessionRequired({ what }))
  )

/**
 * Run `finalizer` when the current call's session closes (ended, expired, or the worker stopping), after its in-flight
 * calls were interrupted. Fails with `SessionRequired` outside a session.
 *
 * @since 0.1.0
 */
export const addFinalizer = <R>(
  finalizer: (exit: Exit.Exit<unknown, unknown>) => Effect.Effect<void, never, R>
): Effect.Effect<void, SessionRequired, R> =>
  Effect.flatMap(require("Session.addFinalizer"), (session) =>
    Effect.flatMap(Effect.context<R>(), (context) =>
      Scope.addFinalizerExit(session.scope, (exit) => Effect.provide(finalizer(exit), context))
    )
  )

// Per session, the values of each `local`, by its key. Weak: a closed session takes its values with it.
const locals = new WeakMap<Session, Map<symbol, Deferred.Deferred<unknown, unknown>>>()

/**
 * Per-session state: an Effect that gives the current session's value, made by `make` at the session's first use and
 * shared by every later call of the same session. `make` runs in the session's scope, so a resource it acquires
 * (`Effect.acquireRelease`) is released when the session closes. Calls racing on the first use share one `make`; if
 * it fails, the next call tries again. Fails with `SessionRequired` outside a session.
 *
 * @since 0.1.0
 */
export const local = <A, E, R>(
  name: string,
  make: Effect.Effect<A, E, R>
): Effect.Effect<A, E | SessionRequired, Exclude<R, Scope.Scope>> => {
  const key = Symbol(name)
  return Effect.flatMap(require(`Session.local("${name}")`), (session) =>
    Effect.uninterruptibleMask((restore) => {
      let values = locals.get(session)
      if (values === undefined) {
        values = new Map()
        locals.set(session, values)
      }
      const existing = values.get(key) as Deferred.Deferred<A, E> | undefined
      if (existing !== undefined) return restore(Deferred.await(existing))
      const deferred = Deferred.unsafeMake<A, E>(FiberId.none)
      values.set(key, deferred as Deferred.Deferred<unknown, unknown>)
      const made = restore(Scope.extend(make, session.scope)) as Effect.Effect<A, E, Exclude<R, Scope.Scope>>
      return Effect.flatMap(Effect.exit(made), (exit) => {
        // A failed (or interrupted) make is not kept: the next call makes it again.
        if (Exit.isFailure(exit)) values.delete(key)
        return Effect.zipRight(Deferred.done(deferred, exit), exit)
      })
    })
  )
}
