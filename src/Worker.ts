/**
 * The worker lifecycle: registration -> start-up (contexts entered in parallel) -> benchmark -> ready (serving) ->
 * draining -> shutdown (contexts exited in reverse dependency order, in parallel where independent).
 *
 * @since 0.1.0
 */
import type { Teardown } from "@effect/platform/Runtime"
import { defaultTeardown } from "@effect/platform/Runtime"
import { Cause, ConfigError, Effect, Exit, Layer, Option } from "effect"
import type { Scope } from "effect"
import * as Benchmark from "./Benchmark.js"
import type * as Deployment from "./Deployment.js"
import * as http from "./internal/http.js"
import type * as Metrics from "./internal/metrics.js"
import * as internal from "./internal/worker.js"
import type * as Remote from "./Remote.js"
import * as WorkerConfig from "./WorkerConfig.js"
import type { ListenFailed, StartupFailed, TlsConfigInvalid } from "./WorkerError.js"

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

/** What `call(remote, payload)` returns: an Effect for a plain or batched remote, a Stream for a stream remote. */
export type CallResult<Rm> = internal.CallResult<Rm>

/** What `invoke` can fail with. A remote's declared error arrives as `RemoteFailure`. */
export type InvokeError = internal.InvokeError

/** Options of {@link make} and {@link start}. */
export interface Options extends WorkerConfig.WorkerOptions {}

/** Call counters by remote and outcome, latency histograms, queue depth, context timings, the score: `/metrics`. */
export type MetricsSnapshot = Metrics.Snapshot

/**
 * A running worker.
 *
 * - `invoke(name, payload)`: decode `payload` with the remote's schema (`PayloadInvalid` lists the failing fields), run
 *   it with the entered contexts, and encode the result (the remote's declared error arrives as `RemoteFailure`): the
 *   untyped path. For a stream remote it succeeds with a `Stream` of encoded elements: running that stream is the
 *   call (admitted when it starts, one call however many elements).
 * - `call(remote, payload)`: the typed in-process path; `RemoteNotFound` when the remote is not this worker's. For a
 *   stream remote it returns a typed `Stream` of elements (see {@link CallResult}); stopping early interrupts the
 *   remote's stream and runs its finalizers.
 * - `status`: the lifecycle phase as a `SubscriptionRef`; `report`: the start-up report.
 * - `shutdown`: drain and exit every context once; fails with `ShutdownFailed` listing every failed exit. Contexts
 *   are told the worker ended successfully; `shutdownWith(exit)` tells them another ending (an interruption for a
 *   signal). Whichever runs first wins; later calls wait for it.
 */
export interface Worker<Provides = any, Remotes extends Remote.Definition = Remote.Definition> extends internal.Worker<
  Provides,
  Remotes
> {}

/**
 * Start a worker without waiting for it: contexts enter in the background while `status` tells where it is. The
 * worker shuts down (drains, exits every context) when the scope closes, or earlier through `shutdown`.
 */
export const start = <Provides, E, Remotes extends Remote.Definition>(
  deployment: Deployment.Deployment<Provides, E, Remotes>,
  options?: Options
): Effect.Effect<Worker<Provides, Remotes>, never, Scope.Scope> => internal.start(deployment, options)

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
export const make = <Provides, E, Remotes extends Remote.Definition>(
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
    for (const line of Benchmark.formatLines(report.benchmark)) lines.push(`  ${line}`)
  }
  if (report.readyAt !== undefined) lines.push(`  ready after ${report.readyAt - report.startedAt} ms`)
  return lines.join("\n")
}

/** How `POST /remote/<name>` checks callers (see {@link WorkerConfig.Auth}). */
export type Auth = WorkerConfig.Auth

/** Options of {@link serve}: see {@link WorkerConfig.ServeOptions} for each option, its variable and its default. */
export type ServeOptions = WorkerConfig.ServeOptions

/** Where a served worker listens. */
export type Address = http.Address

/** A served worker: the in-process handle and where it listens. */
export interface Served<Provides = any, Remotes extends Remote.Definition = Remote.Definition> {
  readonly worker: Worker<Provides, Remotes>
  readonly address: Address
  /** `http://host:port` (`https://` with TLS on), with the port chosen when `port` was 0. */
  readonly url: string
  /** The HTTP-only listener that serves `POST /session/end` for the platform's webhooks (`httpPort`). */
  readonly httpAddress: Address
  readonly httpUrl: string
  /** The configuration it runs with: the options, completed from the environment and the defaults. */
  readonly config: WorkerConfig.Resolved
}

/**
 * Serve a deployment over HTTP with the configuration in context (`WorkerConfig.layer`, `WorkerConfig.layerFromEnv`):
 * the server listens at once (`/health` answers while contexts enter), the worker starts behind it, and closing the
 * layer drains calls (new ones get 503), exits every context, and only then stops listening. Logs the address, the
 * start-up report and a ready line.
 *
 * Routes: `POST /remote/<name>` (the reference's envelope and value encoding), the reference's session routes
 * (`POST /session/create`, `/session/get`, `/session/health`, `/session/end`), `GET /health`, `GET /ready`,
 * `GET /metrics` (Prometheus text); HTTPS with `tls` (`USE_SSL=true`). A second, HTTP-only listener on `httpPort`
 * serves `POST /session/end` for the platform's webhooks.
 */
export const layer = <Provides, E, Remotes extends Remote.Definition>(
  deployment: Deployment.Deployment<Provides, E, Remotes>
): Layer.Layer<never, ListenFailed | TlsConfigInvalid, WorkerConfig.WorkerConfig> =>
  http.layer(deployment, formatReport)

/**
 * {@link layer} configured by `options`, then the environment (see {@link WorkerConfig.ServeOptions}), every value
 * checked first. It owns the process (unless `handleSignals: false`): SIGTERM and SIGINT drain and exit every context;
 * an uncaught exception or unhandled rejection does the same, each context told the error; so does a failed start-up
 * (unless `onStartupFailure: "stay"`). The exit code through `NodeRuntime.runMain` with {@link teardown}: 0 after a
 * signal, 1 after a fault, a failed start-up or a failed exit, 2 for an invalid configuration.
 *
 * @example
 * ```ts
 * import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
 * import { Layer } from "effect"
 *
 * NodeRuntime.runMain(Layer.launch(Worker.serve(app, { port: 8000 })), { teardown: Worker.teardown })
 * ```
 */
export const serve = <Provides, E, Remotes extends Remote.Definition>(
  deployment: Deployment.Deployment<Provides, E, Remotes>,
  options?: ServeOptions
): Layer.Layer<never, ListenFailed | TlsConfigInvalid | ConfigError.ConfigError> =>
  layer(deployment).pipe(Layer.provide(WorkerConfig.layerFromEnv(options)))

/**
 * {@link serve} as a scoped Effect on a server of its own, returning the worker and its URL (no logging). Use it to
 * print your own lines or to call the worker in-process while it serves.
 */
export const serveEffect = <Provides, E, Remotes extends Remote.Definition>(
  deployment: Deployment.Deployment<Provides, E, Remotes>,
  options?: ServeOptions
): Effect.Effect<Served<Provides, Remotes>, ListenFailed | TlsConfigInvalid | ConfigError.ConfigError, Scope.Scope> =>
  http.serveEffect(deployment, options)

/**
 * A `NodeRuntime.runMain` teardown for a worker's main: exit code 2 when start-up stopped at the configuration (a
 * `ConfigError`: an option or environment variable whose value is not allowed, named in the error; or
 * `TlsConfigInvalid`: a certificate or key file that cannot be used), otherwise
 * runMain's own (0 after a signal, 1 on a failure). Orchestrators tell a crash-looping bad deployment apart by it.
 */
export const teardown: Teardown = (exit, onExit) => {
  const badConfiguration = (e: unknown) =>
    ConfigError.isConfigError(e) || (e as { readonly _tag?: unknown } | null)?._tag === "TlsConfigInvalid"
  if (Exit.isFailure(exit) && Option.exists(Cause.failureOption(exit.cause), badConfiguration)) return onExit(2)
  defaultTeardown(exit, onExit)
}
