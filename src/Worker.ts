/**
 * The worker lifecycle: registration -> start-up (contexts entered in parallel) -> benchmark -> ready (serving) ->
 * draining -> shutdown (contexts exited in reverse dependency order, in parallel where independent).
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import type * as Deployment from "./Deployment.js"
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
}

/**
 * A running worker.
 *
 * - `invoke(name, payload)`: decode `payload` with the remote's schema (`PayloadInvalid` lists the failing fields), run
 *   it with the entered contexts, and encode the result: the untyped path that transports use.
 * - `call(remote, payload)`: the typed in-process path.
 * - `status`: the lifecycle phase as a `SubscriptionRef`; `report`: the start-up report.
 * - `shutdown`: drain and exit every context once; fails with `ShutdownFailed` listing every failed exit.
 */
export interface Worker<Provides = any, Remotes extends Remote.Any = Remote.Any>
  extends internal.Worker<Provides, Remotes>
{}

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
  for (const c of report.contexts) {
    lines.push(
      `  context ${c.key.padEnd(24)} ${c.state.padEnd(14)} enter ${rel(c.enterStartedAt)} -> ${rel(c.enterEndedAt)}` +
        ` (${c.enterMillis ?? "-"} ms)` +
        (c.exitStartedAt !== undefined ? `  exit ${rel(c.exitStartedAt)} (${c.exitMillis ?? "-"} ms)` : "") +
        (c.error ? `  error: ${c.error}` : "") +
        (c.notes.length > 0 ? `  [${c.notes.join("; ")}]` : "")
    )
  }
  if (report.benchmark !== undefined) {
    const b = report.benchmark
    lines.push(
      `  benchmark ${b.remote}: score ${b.score.toFixed(1)} workload/s (${b.calls} calls, ${b.runs} rounds x ${b.concurrency}, ${b.totalMillis} ms)`
    )
  }
  if (report.readyAt !== undefined) lines.push(`  ready after ${report.readyAt - report.startedAt} ms`)
  return lines.join("\n")
}
