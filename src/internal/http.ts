/**
 * Serving a worker over HTTP: a `node:http` server owned by a scope, its routes, signals, and the order in which it all
 * starts and stops. The call itself is pipeline.ts.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import { Cause, Deferred, Effect, Exit, FiberId, Layer } from "effect"
import type { ConfigError, Scope } from "effect"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import type * as Deployment from "../Deployment.js"
import * as EngineReport from "../EngineReport.js"
import type * as Remote from "../Remote.js"
import * as WorkerConfig from "../WorkerConfig.js"
import { ListenFailed, WorkerUnavailable } from "../WorkerError.js"
import type { StartupFailed } from "../WorkerError.js"
import * as Auth from "./auth.js"
import * as Metrics from "./metrics.js"
import * as pipeline from "./pipeline.js"
import { errorResponse } from "./respond.js"
import type { Response } from "./respond.js"
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
}

/** After shutdown, how long connections still open may finish before they are cut. */
const CLOSE_GRACE_MILLIS = 1000

const json = (status: number, body: unknown, headers?: Record<string, string>): Response => ({
  status,
  headers: { "content-type": "application/json", ...headers },
  body: JSON.stringify(body)
})

const ROUTES = "routes: POST /remote/<name>, GET /health, GET /ready, GET /metrics"

const notFound = (req: Http.IncomingMessage): Response =>
  errorResponse({
    _tag: "RouteNotFound",
    message: `No route ${req.method} ${(req.url ?? "/").slice(0, 200)}; ${ROUTES}`
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

/** A `node:http` server listening for the scope's life; closing it cuts what is still open after a grace period. */
const listen = (
  config: WorkerConfig.Resolved,
  handler: (req: Http.IncomingMessage, res: Http.ServerResponse) => void
): Effect.Effect<Http.Server, ListenFailed, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<Http.Server, ListenFailed>((resume) => {
      const server = Http.createServer(handler)
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
const formatUrl = (address: Address): string => {
  const host = address.hostname === "::" || address.hostname === "0.0.0.0" ? "localhost" : address.hostname
  return `http://${host.includes(":") ? `[${host}]` : host}:${address.port}`
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
): Effect.Effect<Served<Provides, Remotes>, ListenFailed, WorkerConfig.WorkerConfig | Scope.Scope> =>
  Effect.gen(function* () {
    const config = yield* WorkerConfig.WorkerConfig
    // Signals first: their listener is released last, so a second signal cannot kill the process during the exits.
    const signaled = yield* Deferred.make<NodeJS.Signals>()
    if (config.handleSignals) yield* handleSignals(signaled)
    const auth = yield* Auth.make(config.auth)
    // The server listens before the worker starts (`/health` answers while contexts enter), and the worker's
    // finalizer (drain, exits) runs before the listener closes: until the exits are done, calls get a 503 instead of a
    // refused connection.
    const state: { ctx: pipeline.Context | undefined } = { ctx: undefined }
    const server = yield* listen(config, makeHandler(state))
    // The reporter starts before the worker (its first status says "not loaded") and stops after it: its fiber is
    // interrupted, sending the last status and the calls drained, only once the worker's finalizers have run.
    const reporter = config.report === undefined ? undefined : yield* EngineReport.make(config.report)
    if (reporter !== undefined) yield* Effect.forkScoped(Effect.provide(reporter.run, FetchHttpClient.layer))
    const core = yield* worker.start(deployment, config)
    state.ctx = { core, config, auth, reporter }
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

    const info = server.address() as AddressInfo
    const address = { hostname: info.address, port: info.port }
    return { worker: core, address, url: formatUrl(address) }
  })

/** Serve a deployment on a Node HTTP server of its own, configured by `options` and the environment. @internal */
export const serveEffect = <Provides, E, Remotes extends Remote.Definition>(
  deployment: Deployment.Deployment<Provides, E, Remotes>,
  options: WorkerConfig.ServeOptions = {}
): Effect.Effect<Served<Provides, Remotes>, ListenFailed | ConfigError.ConfigError, Scope.Scope> =>
  Effect.flatMap(WorkerConfig.resolve(options), (config) =>
    Effect.provideService(serveConfigured(deployment), WorkerConfig.WorkerConfig, config)
  )

/** `serveConfigured` as a layer, logging the address, the start-up report and readiness. @internal */
export const layer = <Provides, E, Remotes extends Remote.Definition>(
  deployment: Deployment.Deployment<Provides, E, Remotes>,
  formatReport: (report: worker.Report) => string
): Layer.Layer<never, ListenFailed, WorkerConfig.WorkerConfig> =>
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
