/**
 * The worker lifecycle: registration -> start-up (contexts entered in parallel) -> benchmark -> ready (serving) ->
 * draining -> shutdown (contexts exited in reverse dependency order, in parallel where independent).
 *
 * @since 0.1.0
 */
import type * as HttpServer from "@effect/platform/HttpServer"
import type { ServeError } from "@effect/platform/HttpServerError"
import { Effect } from "effect"
import type { ConfigError, Layer, Scope } from "effect"
import type * as Deployment from "./Deployment.js"
import type * as EngineReport from "./EngineReport.js"
import type * as Metrics from "./internal/metrics.js"
import * as server from "./internal/server.js"
import * as internal from "./internal/worker.js"
import type * as Remote from "./Remote.js"
import type { StartupFailed } from "./WorkerError.js"

/**
 * The lifecycle state: `starting` (contexts entering), `benchmarking`, `ready` (serving), `draining` (no new calls,
 * in-flight ones finish), `stopping` (contexts exiting), `stopped`, or `failed` (start-up failed and was rolled back).
 */
export type Phase = internal.Phase

/** The current phase, when it began, and the start-up error if any. */
export type Status = internal.Status

/** The start-up report: every context's enter (and exit) timing and outcome, the benchmark, the error. */
export type Report = internal.Report

/** Calls running and queued for one remote. */
export type RemoteStats = internal.RemoteStats

/** What `invoke` can fail with. A remote's declared error arrives as `RemoteFailure`. */
export type InvokeError = internal.InvokeError

/** Options of {@link make} and {@link start}. */
export interface Options extends internal.Options {
  /** Interrupt a call that runs longer (`CallTimeout`); a remote's own `timeout` wins. Default: none. */
  readonly callTimeout?: internal.Options["callTimeout"]
  /** How long shutdown waits for in-flight calls before interrupting them. Default 30 seconds. */
  readonly drainTimeout?: internal.Options["drainTimeout"]
  /** Run the deployment's benchmark before becoming ready. Default true. */
  readonly benchmark?: boolean | undefined
  /**
   * Refuse a call (`WorkerUnavailable` `queue-full`, HTTP 429) when the work admitted ahead of it would take longer than
   * this at the benchmark score; a remote's own `maxQueueTime` wins. Default: no limit (only `maxQueue`).
   */
  readonly maxQueueTime?: internal.Options["maxQueueTime"]
}

/**
 * Hooks into one call of `invoke` (its third argument): admitted with its workload, got its concurrency slot, or
 * refused as `queue-full`. A transport uses them to account calls elsewhere, as `serve` does for the engine reports.
 * They run synchronously on the call path; without an observer the path does nothing extra.
 */
export type CallObserver = internal.CallObserver

/** Call counters by remote and outcome, latency histograms, queue depth, context timings, the score: `/metrics`. */
export type MetricsSnapshot = Metrics.Snapshot

/**
 * A running worker.
 *
 * - `invoke(name, payload)`: decode `payload` with the remote's schema (`PayloadInvalid` lists the failing fields), run
 *   it with the entered contexts, and encode the result: the untyped path that transports use. An optional
 *   {@link CallObserver} sees the call admitted, started and refused.
 * - `call(remote, payload)`: the typed in-process path.
 * - `status`: the lifecycle phase as a `SubscriptionRef`; `report`: the start-up report.
 * - `shutdown`: drain and exit every context once; fails with `ShutdownFailed` listing every failed exit. Contexts
 *   are told the worker ended successfully; `shutdownWith(exit)` tells them another ending (an interruption for a
 *   signal). Whichever runs first wins; later calls wait for it.
 */
export interface Worker<Provides = any, Remotes extends Remote.Any = Remote.Any> extends internal.Worker<
  Provides,
  Remotes
> {}

/**
 * Start a worker without waiting for it: contexts enter in the background while `status` tells where it is. The
 * worker shuts down (drains, exits every context) when the scope closes, or earlier through `shutdown`.
 */
export const start: <Provides, E, Remotes extends Remote.Any>(
  deployment: Deployment.Deployment<Provides, E, Remotes>,
  options?: Options
) => Effect.Effect<Worker<Provides, Remotes>, never, Scope.Scope> = internal.start

/**
 * Start a worker and wait until it is ready. Fails with `StartupFailed` (naming the failed context and what was
 * rolled back) when a context fails to enter, times out, or the benchmark fails; nothing is left allocated.
 *
 * @example
 * ```ts
 * Effect.scoped(Effect.gen(function*() {
 *   const worker = yield* Worker.make(app)
 *   console.log(yield* worker.invoke("square", { x: 5 })) // 25
 * }))
 * ```
 */
export const make = <Provides, E, Remotes extends Remote.Any>(
  deployment: Deployment.Deployment<Provides, E, Remotes>,
  options?: Options
): Effect.Effect<Worker<Provides, Remotes>, StartupFailed, Scope.Scope> =>
  Effect.tap(internal.start(deployment, options), (worker) => worker.awaitReady)

/** Render a report as a plain-text table (for logs and example output). */
export const formatReport = (report: Report): string => {
  const lines = [`deployment ${report.deployment}: ${report.phase}${report.error ? ` (${report.error})` : ""}`]
  const rel = (t: number | undefined) => (t === undefined ? "-" : `+${t - report.startedAt}ms`)
  const width = Math.max(0, ...report.contexts.map((c) => c.key.length))
  for (const c of report.contexts) {
    lines.push(
      `  context ${c.key.padEnd(width)} ${c.state.padEnd(14)} enter ${rel(c.enterStartedAt)} -> ${rel(c.enterEndedAt)}` +
        ` (${c.enterMillis ?? "-"} ms)` +
        (c.exitStartedAt !== undefined ? `  exit ${rel(c.exitStartedAt)} (${c.exitMillis ?? "-"} ms)` : "") +
        (c.error ? `  error: ${c.error}` : "") +
        (c.notes.length > 0 ? `  [${c.notes.join("; ")}]` : "")
    )
  }
  if (report.benchmark !== undefined) {
    const b = report.benchmark
    lines.push(
      `  benchmark ${b.remote}: score ${b.score.toFixed(1)} workload/s (${b.calls} calls, ${b.runs} rounds x ` +
        `${b.concurrency}, ${b.totalMillis} ms; warm-up ${b.warmupMillis} ms)`
    )
  }
  if (report.readyAt !== undefined) lines.push(`  ready after ${report.readyAt - report.startedAt} ms`)
  return lines.join("\n")
}

/**
 * How `POST /remote/<name>` checks callers.
 *
 * - `none`: no check (local use, or behind something that checks).
 * - `token`: `Authorization: Bearer <token>`, compared in constant time.
 * - `signed`: the reference's scheme: `auth_data.signature` is an RSA PKCS#1 v1.5 SHA-256 signature of
 *   `auth_data.url`, checked with `publicKey` (PEM) or the key fetched from `{reportAddr}/pubkey/`.
 *
 * A failed check is 401 and runs nothing.
 */
export type Auth = server.Auth

/**
 * Options of {@link serve}. Each one not given is read from the environment (`Config`), then defaults:
 *
 * | option         | env                                    | default                      |
 * | -------------- | -------------------------------------- | ---------------------------- |
 * | `port`         | `WORKER_PORT`                          | 8000                         |
 * | `host`         | `WORKER_HOST`                          | every interface              |
 * | `maxBodySize`  | `WORKER_MAX_BODY_SIZE` (bytes)         | 64 MiB (413 above it)        |
 * | `callTimeout`  | `WORKER_CALL_TIMEOUT` (e.g. `30 seconds`) | none                      |
 * | `drainTimeout` | `WORKER_DRAIN_TIMEOUT`                 | 30 seconds                   |
 * | `maxQueueTime` | `WORKER_MAX_QUEUE_TIME`                | none                         |
 * | `auth`         | `WORKER_AUTH` = `none`/`token`/`signed`, `WORKER_TOKEN`, `WORKER_PUBLIC_KEY`, `REPORT_ADDR`, `UNSECURED` | see below |
 * | `report`       | `REPORT_ADDR` (off without it), `CONTAINER_ID`, `MASTER_TOKEN`, `PUBLIC_IPADDR`, `VAST_TCP_PORT_<port>`, `USE_SSL` | |
 *
 * Auth defaults as the reference: with `REPORT_ADDR` set, `signed` (key from `REPORT_ADDR/pubkey/`) unless
 * `UNSECURED=true`; otherwise `token` when `WORKER_TOKEN` is set, else `none`.
 */
export interface ServeOptions extends Options {
  /** TCP port; 0 picks a free one (see `Served.url`). */
  readonly port?: number | undefined
  readonly host?: string | undefined
  /** Largest request body in bytes. */
  readonly maxBodySize?: number | undefined
  readonly auth?: Auth | undefined
  /**
   * On SIGTERM or SIGINT, flip to draining at once and shut down; keep listening to later signals so that a second
   * one cannot kill the process before the contexts exit. Default true. Pair it with `NodeRuntime.runMain`, which
   * ends the main fiber (and so the process) on the same signal.
   */
  readonly handleSignals?: boolean | undefined
  /**
   * Report to the routing engine (`worker_status`, `delete_requests`), as the reference does; `false` turns it off.
   * Default: {@link EngineReport.optionsFromEnv}, so a worker started with `REPORT_ADDR` reports.
   *
   * - Start-up: a status at once (not loaded), then at once when ready (`max_perf` = the benchmark score, 0 with the
   *   benchmark off; `loadtime` = seconds since the process started), or with `error_msg` when start-up failed (kept
   *   in every later status).
   * - Each `POST /remote/<name>` admitted counts as load (`workload` from the remote's benchmark `workload`, else 100)
   *   and goes to `delete_requests` when it ends: `Success`, `Error` (declared error, defect, timeout, interrupted by
   *   shutdown), `Cancelled` (the client went away), or `Rejected` (429). The ids are `auth_data.request_idx` and
   *   `reqnum`; a call without a `request_idx` counts as load but is not sent to `delete_requests`. Calls refused
   *   before admission (400, 401, 404, 503) are not reported.
   * - Shutdown: after the drain and the context exits, the finished calls and one last status (no load working).
   */
  readonly report?: EngineReport.Options | false | undefined
}

/** A served worker: the in-process handle and where it listens. */
export interface Served<Provides = any, Remotes extends Remote.Any = Remote.Any> extends server.Served<
  Provides,
  Remotes
> {}

/**
 * Serve a deployment over HTTP as a layer: the server listens at once (`/health` answers while contexts enter), the
 * worker starts behind it, and closing the layer drains calls (new ones get 503), exits every context, and only then
 * stops listening. Logs the address, the start-up report and a ready line.
 *
 * Routes: `POST /remote/<name>` (the reference's envelope and value encoding), `GET /health`, `GET /ready`,
 * `GET /metrics` (Prometheus text).
 *
 * The process exit code (through `NodeRuntime.runMain`) is 0 after a clean signal shutdown and non-zero when a context
 * failed to exit or start-up failed.
 *
 * @example
 * ```ts
 * import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
 * import { Layer } from "effect"
 *
 * NodeRuntime.runMain(Layer.launch(Worker.serve(app, { port: 8000 })))
 * ```
 */
export const serve = <Provides, E, Remotes extends Remote.Any>(
  deployment: Deployment.Deployment<Provides, E, Remotes>,
  options?: ServeOptions
): Layer.Layer<never, ServeError | ConfigError.ConfigError> => server.serve(deployment, options, formatReport)

/**
 * {@link serve} as a scoped Effect on a Node HTTP server of its own, returning the worker and its URL (no logging).
 * Use it to print your own lines or to call the worker in-process while it serves.
 */
export const serveEffect: <Provides, E, Remotes extends Remote.Any>(
  deployment: Deployment.Deployment<Provides, E, Remotes>,
  options?: ServeOptions
) => Effect.Effect<Served<Provides, Remotes>, ServeError | ConfigError.ConfigError, Scope.Scope> = server.serveEffect

/**
 * Serve a deployment on the `HttpServer` in context (for example `NodeHttpServer.layerTest`). `port` and `host` are
 * the server's business and ignored here; the other options are read as in {@link serve}.
 */
export const serveWith = <Provides, E, Remotes extends Remote.Any>(
  deployment: Deployment.Deployment<Provides, E, Remotes>,
  options?: ServeOptions
): Effect.Effect<Served<Provides, Remotes>, ConfigError.ConfigError, HttpServer.HttpServer | Scope.Scope> =>
  Effect.flatMap(server.resolve(options ?? {}), (resolved) => server.serveWith(deployment, resolved))
