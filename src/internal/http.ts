/**
 * Serving a worker over HTTP: a `node:http` server owned by a scope, its routes, signals, and the order in which it all
 * starts and stops. The call itself is pipeline.ts.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import { Cause, Deferred, Duration, Effect, Either, Exit, FiberId, Layer } from "effect"
import type { ConfigError, Scope } from "effect"
import * as Http from "node:http"
import * as Https from "node:https"
import type * as Net from "node:net"
import type { AddressInfo } from "node:net"
import type * as Deployment from "../Deployment.js"
import * as EngineReport from "../EngineReport.js"
import type * as Remote from "../Remote.js"
import * as WorkerConfig from "../WorkerConfig.js"
import * as Wire from "../Wire.js"
import { ListenFailed, WorkerUnavailable } from "../WorkerError.js"
import type { StartupFailed, TlsConfigInvalid } from "../WorkerError.js"
import * as Auth from "./auth.js"
import { BodyDeadlines } from "./deadlines.js"
import * as Metrics from "./metrics.js"
import * as pipeline from "./pipeline.js"
import { errorResponse } from "./respond.js"
import type { Response, ServeError } from "./respond.js"
import * as Sessions from "./sessions.js"
import * as Tls from "./tls.js"
import * as worker from "./worker.js"

/** Where a served worker listens. */
export interface Address {
  readonly hostname: string
  readonly port: number
}

/** @internal */
export interface Served<Provides, Remotes extends Remote.Definition> {
  readonly worker: worker.Worker<Provides, Remotes>
  readonly address: Address
  readonly url: string
  /** The HTTP-only listener (`POST /session/end` for the platform's webhooks). */
  readonly httpAddress: Address
  readonly httpUrl: string
  readonly config: WorkerConfig.Resolved
}

/** After shutdown, how long connections still open may finish their answer before they are cut. */
const CLOSE_GRACE_MILLIS = 1000

/** Why a served worker that owns its process stops. */
type Stop =
  | { readonly _tag: "Signal"; readonly signal: NodeJS.Signals }
  | { readonly _tag: "Fault"; readonly kind: "uncaughtException" | "unhandledRejection"; readonly error: unknown }
  | { readonly _tag: "StartupFailed"; readonly error: StartupFailed }

/** The server's own state: connections open and refused, whether it is closing, and the pipeline's context. */
interface ServerState {
  ctx: pipeline.Context | undefined
  closing: boolean
  connections: number
  refused: number
}

const json = (status: number, body: unknown, headers?: Record<string, string>): Response => ({
  status,
  headers: { "content-type": "application/json", ...headers },
  body: JSON.stringify(body)
})

const ROUTES =
  "routes: POST /remote/<name>, POST /session/create, /session/get, /session/health, /session/end, " +
  "GET /health, GET /ready, GET /metrics"
const HTTP_ONLY_ROUTES = "routes on this port: POST /session/end"

const notFound = (req: Http.IncomingMessage, routes = ROUTES): Response =>
  errorResponse({
    _tag: "RouteNotFound",
    message: `No route ${req.method} ${(req.url ?? "/").slice(0, 200)}; ${routes}`
  })

const methodNotAllowed = (req: Http.IncomingMessage, allow: string): Response =>
  errorResponse({
    _tag: "MethodNotAllowed",
    allow,
    message: `${req.method} is not allowed on ${(req.url ?? "/").slice(0, 200)}; use ${allow}`
  })

const starting = errorResponse(new WorkerUnavailable({ reason: "starting", detail: "the worker is starting" }))

/** The remote name of a `/remote/<name>` path, or undefined when it names none (404). */
const remoteName = (path: string): string | undefined => {
  const raw = path.slice("/remote/".length)
  if (raw.length === 0) return undefined
  if (raw.indexOf("%") === -1) return raw.includes("/") ? undefined : raw
  try {
    const name = decodeURIComponent(raw)
    return name.includes("/") ? undefined : name
  } catch {
    return undefined
  }
}

/** Whether every answer should close its connection: the worker is draining or stopped, or the server closing. */
const isClosing = (state: ServerState): boolean => {
  if (state.closing) return true
  const phase = state.ctx?.core.phase()
  return phase === "draining" || phase === "stopping" || phase === "stopped"
}

/** The server's request handler: routes, with the pipeline for calls. `ctx` is undefined until the worker exists. */
const makeHandler =
  (state: ServerState) =>
  (req: Http.IncomingMessage, res: Http.ServerResponse): void => {
    const url = req.url ?? "/"
    const q = url.indexOf("?")
    const path = q === -1 ? url : url.slice(0, q)
    const ctx = state.ctx
    // Calls first, with nothing allocated on their way to the pipeline.
    if (path.startsWith("/remote/")) {
      const name = req.method === "POST" ? remoteName(path) : undefined
      if (name !== undefined && ctx !== undefined) return pipeline.handle(ctx, name, req, res)
      const refused =
        req.method !== "POST" ? methodNotAllowed(req, "POST") : name === undefined ? notFound(req) : starting
      return pipeline.write(res, refused, isClosing(state))
    }
    const write = (response: Response) => pipeline.write(res, response, isClosing(state))
    const session = sessionRoutes.get(path)
    if (session !== undefined) {
      if (req.method !== "POST") return write(methodNotAllowed(req, "POST"))
      if (ctx === undefined) return write(starting)
      return sessionRoute(ctx, session, req, res)
    }
    if (path !== "/health" && path !== "/ready" && path !== "/metrics") return write(notFound(req))
    if (req.method !== "GET") return write(methodNotAllowed(req, "GET"))
    if (ctx === undefined) {
      return write(
        path === "/health" ? json(200, { status: "alive", phase: "starting" }) : json(503, { phase: "starting" })
      )
    }
    switch (path) {
      case "/health": {
        const status = ctx.core.statusNow()
        return write(
          json(200, { status: "alive", deployment: ctx.core.deployment.name, phase: status.phase, since: status.since })
        )
      }
      case "/ready": {
        const report = ctx.core.reportNow()
        const keyReady = ctx.auth.ready()
        const isReady = report.phase === "ready" && keyReady
        return write(
          json(isReady ? 200 : 503, {
            ready: isReady,
            phase: report.phase,
            ...(report.phase === "ready" && !keyReady ? { waitingFor: "the engine's public key" } : {}),
            report
          })
        )
      }
      default:
        return write({
          status: 200,
          headers: { "content-type": "text/plain; version=0.0.4" },
          body:
            Metrics.renderPrometheus(ctx.core.metricsNow()) +
            Metrics.renderHttp(ctx.core.deployment.name, {
              connections: state.connections,
              refused: state.refused,
              receiving: ctx.deadlines.size,
              bodyTimeouts: ctx.deadlines.timedOut
            })
        })
    }
  }

// ---------------------------------------------------------------------------
// sessions
// ---------------------------------------------------------------------------

type SessionRoute = (typeof Sessions.routes)[number]

const sessionRoutes: ReadonlyMap<string, SessionRoute> = new Map(Sessions.routes.map((r) => [r.path, r]))

/** The session routes' error bodies also carry `error`, the field the reference's bodies (and its SDK) use. */
const sessionError = (error: ServeError): Response => {
  const response = errorResponse(error)
  return { ...response, body: JSON.stringify({ error: error.message, ...JSON.parse(response.body) }) }
}

/**
 * `POST /session/<route>`: token (header), body, JSON, then for a create the phase (a draining worker opens no session)
 * and the signature of its `auth_data`, as for a call; then the manager's handler. A create refused before the manager
 * saw it still closes its `request_idx` at the engine.
 */
const sessionRoute = (
  ctx: pipeline.Context,
  route: SessionRoute,
  req: Http.IncomingMessage,
  res: Http.ServerResponse
): void => {
  const write = (response: Response) => pipeline.write(res, response, ctx.closing())
  const denied = ctx.auth.header(req.headers)
  if (denied !== undefined) return write(sessionError(denied))
  pipeline.readBody(req, ctx.config.maxBodySize, ctx.deadlines, (error, body) => {
    if (error !== undefined) return write(sessionError(error))
    const json = pipeline.parseJson(body!)
    if (Either.isLeft(json)) return write(sessionError(json.left))
    if (route.authenticate) {
      const raw = json.right as { auth_data?: unknown } | null
      const envelope = Wire.decodeEnvelopeEither({ auth_data: typeof raw === "object" ? raw?.auth_data : undefined })
      const refused = Either.isLeft(envelope)
        ? envelope.left
        : ctx.core.phase() !== "ready"
          ? ctx.core.unavailable()
          : ctx.auth.envelope(envelope.right)
      if (refused !== undefined) {
        if (Either.isRight(envelope)) refusedCreate(ctx, envelope.right.auth_data, refused)
        return write(sessionError(refused))
      }
    }
    const fiber = ctx.core.fork(route.handle(ctx.sessions, json.right) as Effect.Effect<unknown, ServeError>)
    fiber.addObserver((exit) => {
      if (Exit.isSuccess(exit)) {
        return write({
          status: route.status,
          headers: { "content-type": "application/json" },
          body: JSON.stringify(exit.value)
        })
      }
      const failure = Cause.failureOption(exit.cause)
      if (failure._tag === "Some") return write(sessionError(failure.value))
      ctx.core.fork(Effect.logError(`Session route ${route.path} failed`, exit.cause))
      write(json500)
    })
  })
}

const json500: Response = {
  status: 500,
  headers: { "content-type": "application/json" },
  body: JSON.stringify({ _tag: "InternalError", error: "internal error", message: "internal error" })
}

const refusedCreate = (ctx: pipeline.Context, auth: Wire.AuthData | undefined, error: ServeError): void => {
  if (ctx.reporter === undefined || auth?.request_idx === undefined) return
  const at = Date.now() / 1000
  const call = EngineReport.openCall(auth, auth.cost ?? 0, at)
  call.workCompletedAt = at
  if (error._tag === "Unauthorized" || error._tag === "WorkerUnavailable") ctx.reporter.rejected(call)
  else ctx.reporter.finished(call, "Error", at)
}

/** An open session is one running request at the engine (the reference's `SessionActive`) until it closes. */
const sessionObserver = (reporter: EngineReport.Reporter | undefined): Sessions.Observer | undefined => {
  if (reporter === undefined) return undefined
  const open = new Map<string, EngineReport.Call>()
  const callOf = (info: Sessions.Info) =>
    EngineReport.openCall({ request_idx: info.requestIdx, reqnum: info.reqnum }, info.cost ?? 0, info.createdAt / 1000)
  return {
    opened: (info) => {
      const call = callOf(info)
      call.workStartedAt = call.enteredQueueAt
      open.set(info.id, call)
      reporter.started(call)
    },
    // The reference reports a session that ended (or expired) as a success.
    closed: (info, _reason, now) => {
      const call = open.get(info.id)
      open.delete(info.id)
      if (call !== undefined) reporter.finished(call, "Success", now / 1000)
    },
    rejected: (info) => {
      const call = callOf(info)
      call.workCompletedAt = call.enteredQueueAt
      reporter.rejected(call)
    }
  }
}

/** The HTTP-only port's handler: `POST /session/end`, for the platform's webhooks. */
const makeHttpOnlyHandler =
  (state: ServerState) =>
  (req: Http.IncomingMessage, res: Http.ServerResponse): void => {
    const url = req.url ?? "/"
    const q = url.indexOf("?")
    const path = q === -1 ? url : url.slice(0, q)
    const write = (response: Response) => pipeline.write(res, response, isClosing(state))
    if (path !== "/session/end") return write(notFound(req, HTTP_ONLY_ROUTES))
    if (req.method !== "POST") return write(methodNotAllowed(req, "POST"))
    const ctx = state.ctx
    if (ctx === undefined) return write(starting)
    sessionRoute(ctx, sessionRoutes.get(path)!, req, res)
  }

// ---------------------------------------------------------------------------
// listening
// ---------------------------------------------------------------------------

/**
 * A `node:http` (or, with credentials, `node:https`) server listening for the scope's life, with the configured
 * timeouts and connection limit.
 *
 * Closing (after the worker's shutdown: drain, exits) stops accepting, answers the bodies still arriving (503), closes
 * idle kept-alive connections, and waits for the answers in progress to be written, within a grace period, before it
 * cuts what is left: the process exits only after every request it read was answered.
 */
const listen = (
  config: WorkerConfig.Resolved,
  state: ServerState,
  deadlines: BodyDeadlines,
  handler: (req: Http.IncomingMessage, res: Http.ServerResponse) => void,
  credentials?: Tls.Credentials
): Effect.Effect<Http.Server, ListenFailed, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<Http.Server, ListenFailed>((resume) => {
      const headersMillis = Duration.toMillis(config.headersTimeout)
      const options: Http.ServerOptions = {
        // Node checks its header deadline on this interval (default 30 s, which would double a 30 s timeout).
        connectionsCheckingInterval: Math.min(1000, Math.max(10, Math.floor(headersMillis / 10))),
        // The body has its own deadline from the end of the headers (BodyDeadlines); the call's time is the remote's.
        requestTimeout: 0,
        headersTimeout: headersMillis,
        keepAliveTimeout: Duration.toMillis(config.keepAliveTimeout)
      }
      const server: Http.Server =
        credentials === undefined
          ? Http.createServer(options, handler)
          : Https.createServer({ ...options, cert: credentials.cert, key: credentials.key }, handler)
      server.maxConnections = config.maxConnections
      server.on("connection", (socket: Net.Socket) => {
        state.connections++
        socket.once("close", () => state.connections--)
      })
      server.on("drop", () => state.refused++)
      // A client that announces a body the worker will refuse gets the refusal, not `100 Continue`.
      server.on("checkContinue", (req, res) => {
        const declared = Number(req.headers["content-length"])
        if (Number.isFinite(declared) && declared > config.maxBodySize) {
          return handler(req, res)
        }
        res.writeContinue()
        handler(req, res)
      })
      const onError = (error: Error) =>
        resume(Effect.fail(new ListenFailed({ host: config.host, port: config.port, detail: error.message })))
      server.once("error", onError)
      server.listen(config.port, config.host, () => {
        server.off("error", onError)
        resume(Effect.succeed(server))
      })
    }),
    (server) =>
      Effect.async<void>((resume) => {
        state.closing = true
        // Bodies still arriving will not be read to the end: answer them now (503, Connection: close).
        deadlines.expireAll()
        server.close(() => resume(Effect.void))
        server.closeIdleConnections()
        // An answer being written gets a moment to flush; a client that sent headers and never its body is cut.
        const cut = setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MILLIS)
        return Effect.sync(() => clearTimeout(cut))
      })
  )

/** The URL to reach the worker at: `localhost` when it listens on every interface (a URL a person can paste). */
const formatUrl = (address: Address, protocol: "http" | "https" = "http"): string => {
  const host = address.hostname === "::" || address.hostname === "0.0.0.0" ? "localhost" : address.hostname
  return `${protocol}://${host.includes(":") ? `[${host}]` : host}:${address.port}`
}

const addressOf = (server: Http.Server): Address => {
  const info = server.address() as AddressInfo
  return { hostname: info.address, port: info.port }
}

/**
 * The process's signals and faults for the scope's life. The first SIGTERM or SIGINT, uncaught exception or unhandled
 * rejection completes `stop`; later ones are logged (listening is what matters: without a listener, Node's default
 * for a second signal or an exception kills the process before the contexts exit).
 */
const handleProcess = (stop: Deferred.Deferred<Stop>, raised: { signal: boolean }) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      let stopping = false
      const first = (why: Stop): boolean => {
        if (stopping) return false
        stopping = true
        Deferred.unsafeDone(stop, Exit.succeed(why))
        return true
      }
      const onSignal = (signal: NodeJS.Signals) => {
        // The worker's own request to end the process (see endProcess), not a second signal.
        if (raised.signal && signal === "SIGTERM") return
        if (!first({ _tag: "Signal", signal })) {
          process.stderr.write(`${signal} again: still shutting down (contexts must exit first)\n`)
        }
      }
      const onFault = (kind: "uncaughtException" | "unhandledRejection") => (error: unknown) => {
        if (!first({ _tag: "Fault", kind, error })) {
          process.stderr.write(`${kind} while shutting down: ${describe(error)}\n`)
        }
      }
      const onException = onFault("uncaughtException")
      const onRejection = onFault("unhandledRejection")
      process.on("SIGTERM", onSignal)
      process.on("SIGINT", onSignal)
      process.on("uncaughtException", onException)
      process.on("unhandledRejection", onRejection)
      return { onSignal, onException, onRejection }
    }),
    ({ onException, onRejection, onSignal }) =>
      Effect.sync(() => {
        process.off("SIGTERM", onSignal)
        process.off("SIGINT", onSignal)
        process.off("uncaughtException", onException)
        process.off("unhandledRejection", onRejection)
      })
  )

const describe = (error: unknown): string =>
  error instanceof Error ? (error.stack ?? `${error.name}: ${error.message}`) : String(error)

/**
 * Ask whoever runs the process to end it, as a signal would: `NodeRuntime.runMain` interrupts its main fiber, the
 * scopes close (the last engine report, connections answered), and the worker's finalizer fails with why it stopped,
 * so the exit code is 1. Without such an owner (only the worker listens to SIGTERM), exit with 1 here.
 */
const endProcess = (why: string, ownListeners: number, raised: { signal: boolean }) =>
  Effect.sync(() => {
    if (process.listenerCount("SIGTERM") > ownListeners) {
      raised.signal = true
      process.kill(process.pid, "SIGTERM")
    } else {
      process.stderr.write(`${why}: nothing else listens to SIGTERM (no NodeRuntime.runMain): exiting with 1\n`)
      process.exit(1)
    }
  })

/**
 * Start-up's end, told to the engine and acted on. Readiness at once: `max_perf` is the benchmark score (0 when the
 * benchmark is off), `loadtime` the seconds since the process started (as the reference counts it: imports and runtime
 * start-up are part of a cold start). A failed start-up sends its message, kept in every later status (the last one
 * included), then `onFailure` runs. A shutdown during start-up is not a failure.
 */
const watchStartup = (
  w: worker.Core<any, any>,
  reporter: EngineReport.Reporter | undefined,
  onFailure: ((e: StartupFailed) => Effect.Effect<void>) | undefined
) =>
  w.awaitReady.pipe(
    Effect.zipRight(w.report),
    Effect.flatMap((report) =>
      reporter === undefined ? Effect.void : reporter.loaded(report.benchmark?.score ?? 0, process.uptime())
    ),
    Effect.catchAll((e) => {
      if (e.reason === "interrupted") return Effect.void
      return Effect.zipRight(
        reporter === undefined ? Effect.void : reporter.failed(e.message),
        onFailure === undefined ? Effect.void : onFailure(e)
      )
    }),
    Effect.forkScoped
  )

/** Serve a deployment with the configuration in context. @internal */
export const serveConfigured = <Provides, E, Remotes extends Remote.Definition>(
  deployment: Deployment.Deployment<Provides, E, Remotes>
): Effect.Effect<Served<Provides, Remotes>, ListenFailed | TlsConfigInvalid, WorkerConfig.WorkerConfig | Scope.Scope> =>
  Effect.gen(function* () {
    const config = yield* WorkerConfig.WorkerConfig
    // Signals and faults first: their listeners are released last, so a second signal cannot kill the process during
    // the exits.
    const stop = yield* Deferred.make<Stop>()
    const owner = config.handleSignals
    const before = process.listenerCount("SIGTERM")
    const raised = { signal: false }
    if (owner) yield* handleProcess(stop, raised)
    const ownSigterm = process.listenerCount("SIGTERM") - before
    // The reporter starts before anything can fail (its first status says "not loaded") and stops after the worker:
    // its fiber is interrupted, sending the last status and the calls drained, only once the worker's finalizers have
    // run. A start-up that fails here (the certificate, a port taken) is told to the engine in that last status.
    const reporter = config.report === undefined ? undefined : yield* EngineReport.make(config.report)
    if (reporter !== undefined) yield* Effect.forkScoped(Effect.provide(reporter.run, FetchHttpClient.layer))
    const tellEngine = (e: ListenFailed | TlsConfigInvalid) =>
      reporter === undefined ? Effect.void : reporter.failed(`Worker Server failed to launch: ${e.message}`)
    // The certificate is read and checked before anything listens: a bad file is a start-up error naming it.
    const credentials = config.tls === undefined ? undefined : yield* Effect.tapError(Tls.load(config.tls), tellEngine)
    const auth = yield* Auth.make(config.auth)
    const deadlines = new BodyDeadlines(yield* Effect.clock, config.bodyTimeout)
    // The server listens before the worker starts (`/health` answers while contexts enter), and the worker's
    // finalizer (drain, exits) runs before the listener closes: until the exits are done, calls get a 503 instead of a
    // refused connection.
    const state: ServerState = { ctx: undefined, closing: false, connections: 0, refused: 0 }
    const server = yield* Effect.tapError(listen(config, state, deadlines, makeHandler(state), credentials), tellEngine)
    const httpOnly = yield* Effect.tapError(
      listen({ ...config, port: config.httpPort }, state, deadlines, makeHttpOnlyHandler(state)),
      tellEngine
    )
    yield* Effect.forkScoped(deadlines.run)
    const core = yield* worker.start(deployment, config)
    // Made after the worker and before its shutdown finalizer, so that on shutdown the calls drain first, then the
    // open sessions close (their on-close POSTs sent, the engine told) before the reporter's last report.
    const sessions = yield* Sessions.make({
      maxSessions: config.maxSessions,
      observer: sessionObserver(reporter)
    }).pipe(Effect.provide(FetchHttpClient.layer))
    state.ctx = { core, config, auth, reporter, sessions, deadlines, closing: () => isClosing(state) }
    yield* watchStartup(
      core,
      reporter,
      owner && config.onStartupFailure === "exit"
        ? (error) => Effect.asVoid(Deferred.succeed(stop, { _tag: "StartupFailed", error }))
        : undefined
    )

    // Why the worker stopped on its own (a fault, a failed start-up), for the exit code.
    let stoppedBy: Stop | undefined
    yield* Effect.addFinalizer((scopeExit) =>
      Effect.gen(function* () {
        // The contexts are told how the scope ended (an interruption when runMain stops on a signal), unless the
        // worker already stopped with a reason of its own. The process exit code: non-zero when an exit failed, when
        // start-up failed on its own (not by a signal), or after a fault.
        const exit = yield* Effect.exit(core.shutdownWith(scopeExit))
        if (Exit.isFailure(exit)) return yield* Effect.die(Cause.squash(exit.cause))
        if (stoppedBy?._tag === "Fault") return yield* Effect.die(stoppedBy.error)
        if (core.phase() === "failed") {
          const startup = yield* Effect.exit(core.awaitReady)
          if (Exit.isFailure(startup)) return yield* Effect.die(Cause.squash(startup.cause))
        }
      })
    )

    yield* Deferred.await(stop).pipe(
      Effect.flatMap((why) => {
        switch (why._tag) {
          case "Signal":
            // A signal ends the worker by interruption: that is what each context's `exit` is told.
            return Effect.logInfo(`${why.signal}: draining, then exiting every context`).pipe(
              Effect.zipRight(Effect.ignore(core.shutdownWith(Exit.interrupt(FiberId.none))))
            )
          case "Fault":
            stoppedBy = why
            // The same graceful shutdown; each context's `exit` is told the error.
            return Effect.logError(`${why.kind}: draining, then exiting every context (exit code 1)`, why.error).pipe(
              Effect.zipRight(Effect.ignore(core.shutdownWith(Exit.die(why.error)))),
              Effect.zipRight(endProcess(why.kind, ownSigterm, raised))
            )
          case "StartupFailed":
            stoppedBy = why
            return Effect.logError(`${why.error.message}; exiting with code 1 (onStartupFailure "stay" keeps it)`).pipe(
              Effect.zipRight(endProcess("start-up failed", ownSigterm, raised))
            )
        }
      }),
      Effect.forkScoped
    )

    const address = addressOf(server)
    const httpAddress = addressOf(httpOnly)
    return {
      worker: core,
      address,
      url: formatUrl(address, credentials === undefined ? "http" : "https"),
      httpAddress,
      httpUrl: formatUrl(httpAddress),
      config
    }
  })

/** Serve a deployment on a Node HTTP server of its own, configured by `options` and the environment. @internal */
export const serveEffect = <Provides, E, Remotes extends Remote.Definition>(
  deployment: Deployment.Deployment<Provides, E, Remotes>,
  options: WorkerConfig.ServeOptions = {}
): Effect.Effect<Served<Provides, Remotes>, ListenFailed | TlsConfigInvalid | ConfigError.ConfigError, Scope.Scope> =>
  Effect.flatMap(WorkerConfig.resolve(options), (config) =>
    Effect.provideService(serveConfigured(deployment), WorkerConfig.WorkerConfig, config)
  )

/** `serveConfigured` as a layer, logging the address, the start-up report and readiness. @internal */
export const layer = <Provides, E, Remotes extends Remote.Definition>(
  deployment: Deployment.Deployment<Provides, E, Remotes>,
  formatReport: (report: worker.Report) => string
): Layer.Layer<never, ListenFailed | TlsConfigInvalid, WorkerConfig.WorkerConfig> =>
  Layer.scopedDiscard(
    Effect.gen(function* () {
      const served = yield* serveConfigured(deployment)
      yield* Effect.logInfo(`Worker "${deployment.name}" listening on ${served.url}`)
      yield* served.worker.awaitReady.pipe(
        Effect.zipRight(served.worker.report),
        Effect.flatMap((report) => Effect.logInfo(`${formatReport(report)}\nready: ${served.url}`)),
        Effect.catchAll((e: StartupFailed) =>
          Effect.flatMap(served.worker.report, (report) => Effect.logError(`${formatReport(report)}\n${e.message}`))
        ),
        Effect.forkScoped
      )
    })
  )
