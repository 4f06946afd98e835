/**
 * Serving a worker over HTTP: a `node:http` server owned by a scope, its routes, signals, and the order in which it all
 * starts and stops. The call itself is pipeline.ts.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import { Cause, Deferred, Effect, Either, Exit, FiberId, Layer } from "effect"
import type { ConfigError, Scope } from "effect"
import * as Http from "node:http"
import * as Https from "node:https"
import type { AddressInfo } from "node:net"
import type * as Deployment from "../Deployment.js"
import * as EngineReport from "../EngineReport.js"
import type * as Remote from "../Remote.js"
import * as WorkerConfig from "../WorkerConfig.js"
import * as Wire from "../Wire.js"
import { ListenFailed, WorkerUnavailable } from "../WorkerError.js"
import type { StartupFailed, TlsConfigInvalid } from "../WorkerError.js"
import * as Auth from "./auth.js"
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
}

/** After shutdown, how long connections still open may finish before they are cut. */
const CLOSE_GRACE_MILLIS = 1000

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
  try {
    const name = decodeURIComponent(raw)
    return name.includes("/") ? undefined : name
  } catch {
    return undefined
  }
}

/** The server's request handler: routes, with the pipeline for calls. `ctx` is undefined until the worker exists. */
const makeHandler =
  (state: { ctx: pipeline.Context | undefined }) =>
  (req: Http.IncomingMessage, res: Http.ServerResponse): void => {
    const url = req.url ?? "/"
    const q = url.indexOf("?")
    const path = q === -1 ? url : url.slice(0, q)
    const ctx = state.ctx
    if (path.startsWith("/remote/")) {
      if (req.method !== "POST") return pipeline.write(res, methodNotAllowed(req, "POST"))
      const name = remoteName(path)
      if (name === undefined) return pipeline.write(res, notFound(req))
      if (ctx === undefined) return pipeline.write(res, starting)
      return pipeline.handle(ctx, name, req, res)
    }
    const session = sessionRoutes.get(path)
    if (session !== undefined) {
      if (req.method !== "POST") return pipeline.write(res, methodNotAllowed(req, "POST"))
      if (ctx === undefined) return pipeline.write(res, starting)
      return sessionRoute(ctx, session, req, res)
    }
    if (path !== "/health" && path !== "/ready" && path !== "/metrics") return pipeline.write(res, notFound(req))
    if (req.method !== "GET") return pipeline.write(res, methodNotAllowed(req, "GET"))
    if (ctx === undefined) {
      return pipeline.write(
        res,
        path === "/health" ? json(200, { status: "alive", phase: "starting" }) : json(503, { phase: "starting" })
      )
    }
    switch (path) {
      case "/health": {
        const status = ctx.core.statusNow()
        return pipeline.write(
          res,
          json(200, { status: "alive", deployment: ctx.core.deployment.name, phase: status.phase, since: status.since })
        )
      }
      case "/ready": {
        const report = ctx.core.reportNow()
        const keyReady = ctx.auth.ready()
        const isReady = report.phase === "ready" && keyReady
        return pipeline.write(
          res,
          json(isReady ? 200 : 503, {
            ready: isReady,
            phase: report.phase,
            ...(report.phase === "ready" && !keyReady ? { waitingFor: "the engine's public key" } : {}),
            report
          })
        )
      }
      default:
        return pipeline.write(res, {
          status: 200,
          headers: { "content-type": "text/plain; version=0.0.4" },
          body: Metrics.renderPrometheus(ctx.core.metricsNow())
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
  const denied = ctx.auth.header(req.headers)
  if (denied !== undefined) return pipeline.write(res, sessionError(denied))
  pipeline.readBody(req, ctx.config.maxBodySize, (error, body) => {
    if (error !== undefined) return pipeline.write(res, sessionError(error))
    const json = pipeline.parseJson(body!)
    if (Either.isLeft(json)) return pipeline.write(res, sessionError(json.left))
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
        return pipeline.write(res, sessionError(refused))
      }
    }
    const fiber = ctx.core.fork(route.handle(ctx.sessions, json.right) as Effect.Effect<unknown, ServeError>)
    fiber.addObserver((exit) => {
      if (Exit.isSuccess(exit)) {
        return pipeline.write(res, {
          status: route.status,
          headers: { "content-type": "application/json" },
          body: JSON.stringify(exit.value)
        })
      }
      const failure = Cause.failureOption(exit.cause)
      if (failure._tag === "Some") return pipeline.write(res, sessionError(failure.value))
      ctx.core.fork(Effect.logError(`Session route ${route.path} failed`, exit.cause))
      pipeline.write(res, json500)
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
  (state: { ctx: pipeline.Context | undefined }) =>
  (req: Http.IncomingMessage, res: Http.ServerResponse): void => {
    const url = req.url ?? "/"
    const q = url.indexOf("?")
    const path = q === -1 ? url : url.slice(0, q)
    if (path !== "/session/end") return pipeline.write(res, notFound(req, HTTP_ONLY_ROUTES))
    if (req.method !== "POST") return pipeline.write(res, methodNotAllowed(req, "POST"))
    const ctx = state.ctx
    if (ctx === undefined) return pipeline.write(res, starting)
    sessionRoute(ctx, sessionRoutes.get(path)!, req, res)
  }

// ---------------------------------------------------------------------------
// listening
// ---------------------------------------------------------------------------

/**
 * A `node:http` (or, with credentials, `node:https`) server listening for the scope's life; closing it cuts what is
 * still open after a grace period.
 */
const listen = (
  where: { readonly host: string | undefined; readonly port: number; readonly maxBodySize: number },
  handler: (req: Http.IncomingMessage, res: Http.ServerResponse) => void,
  credentials?: Tls.Credentials
): Effect.Effect<Http.Server, ListenFailed, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<Http.Server, ListenFailed>((resume) => {
      const config = where
      const server: Http.Server =
        credentials === undefined
          ? Http.createServer(handler)
          : Https.createServer({ cert: credentials.cert, key: credentials.key }, handler)
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
      Effect.sync(() => {
        // Runs after the worker's shutdown (drain, exits). close() stops accepting and ends idle keep-alive
        // connections; one that sent headers but never its body would hold the process for Node's request timeout:
        // give answered connections a moment to flush, then cut what is left.
        server.close()
        server.closeIdleConnections()
        setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MILLIS).unref()
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

/** Listen to SIGTERM and SIGINT for the scope's life; the first one completes `signaled`. */
const handleSignals = (signaled: Deferred.Deferred<NodeJS.Signals>) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      let count = 0
      const onSignal = (signal: NodeJS.Signals) => {
        count++
        if (count === 1) Deferred.unsafeDone(signaled, Exit.succeed(signal))
        // Listening is what matters: without a listener, Node's default for a second signal kills the process
        // before the contexts exit.
        else process.stderr.write(`${signal} again: still shutting down (contexts must exit first)\n`)
      }
      process.on("SIGTERM", onSignal)
      process.on("SIGINT", onSignal)
      return onSignal
    }),
    (onSignal) =>
      Effect.sync(() => {
        process.off("SIGTERM", onSignal)
        process.off("SIGINT", onSignal)
      })
  )

/**
 * Readiness at once: `max_perf` is the benchmark score (0 when the benchmark is off), `loadtime` the seconds since the
 * process started (as the reference counts it: imports and runtime start-up are part of a cold start). A failed
 * start-up sends its message, kept in every later status; a shutdown during start-up is not reported as a failure.
 */
const reportStartup = (w: worker.Core<any, any>, reporter: EngineReport.Reporter) =>
  w.awaitReady.pipe(
    Effect.zipRight(w.report),
    Effect.flatMap((report) => reporter.loaded(report.benchmark?.score ?? 0, process.uptime())),
    Effect.catchAll((e) => (e.reason === "interrupted" ? Effect.void : reporter.failed(e.message))),
    Effect.forkScoped
  )

/** Serve a deployment with the configuration in context. @internal */
export const serveConfigured = <Provides, E, Remotes extends Remote.Definition>(
  deployment: Deployment.Deployment<Provides, E, Remotes>
): Effect.Effect<Served<Provides, Remotes>, ListenFailed | TlsConfigInvalid, WorkerConfig.WorkerConfig | Scope.Scope> =>
  Effect.gen(function* () {
    const config = yield* WorkerConfig.WorkerConfig
    // Signals first: their listener is released last, so a second signal cannot kill the process during the exits.
    const signaled = yield* Deferred.make<NodeJS.Signals>()
    if (config.handleSignals) yield* handleSignals(signaled)
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
    // The server listens before the worker starts (`/health` answers while contexts enter), and the worker's
    // finalizer (drain, exits) runs before the listener closes: until the exits are done, calls get a 503 instead of a
    // refused connection.
    const state: { ctx: pipeline.Context | undefined } = { ctx: undefined }
    const server = yield* Effect.tapError(listen(config, makeHandler(state), credentials), tellEngine)
    const httpOnly = yield* Effect.tapError(
      listen({ ...config, port: config.httpPort }, makeHttpOnlyHandler(state)),
      tellEngine
    )
    const core = yield* worker.start(deployment, config)
    // Made after the worker and before its shutdown finalizer, so that on shutdown the calls drain first, then the
    // open sessions close (their on-close POSTs sent, the engine told) before the reporter's last report.
    const sessions = yield* Sessions.make({
      maxSessions: config.maxSessions,
      observer: sessionObserver(reporter)
    }).pipe(Effect.provide(FetchHttpClient.layer))
    state.ctx = { core, config, auth, reporter, sessions }
    if (reporter !== undefined) yield* reportStartup(core, reporter)

    yield* Effect.addFinalizer((scopeExit) =>
      Effect.gen(function* () {
        // The contexts are told how the scope ended (an interruption when runMain stops on a signal). The process
        // exit code: non-zero when an exit failed or start-up failed on its own (not by a signal).
        const exit = yield* Effect.exit(core.shutdownWith(scopeExit))
        if (Exit.isFailure(exit)) return yield* Effect.die(Cause.squash(exit.cause))
        if (core.phase() === "failed") {
          const startup = yield* Effect.exit(core.awaitReady)
          if (Exit.isFailure(startup)) return yield* Effect.die(Cause.squash(startup.cause))
        }
      })
    )

    yield* Deferred.await(signaled).pipe(
      Effect.flatMap((signal) => Effect.logInfo(`${signal}: draining, then exiting every context`)),
      // A signal ends the worker by interruption: that is what each context's `exit` is told.
      Effect.zipRight(Effect.ignore(core.shutdownWith(Exit.interrupt(FiberId.none)))),
      Effect.forkScoped
    )

    const address = addressOf(server)
    const httpAddress = addressOf(httpOnly)
    return {
      worker: core,
      address,
      url: formatUrl(address, credentials === undefined ? "http" : "https"),
      httpAddress,
      httpUrl: formatUrl(httpAddress)
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
