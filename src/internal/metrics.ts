import type { ContextRecord } from "./registry.js"

/** How one call ended, as counted in `/metrics`. */
export type Outcome =
  "ok" | "error" | "invalid" | "timeout" | "defect" | "unencodable" | "rejected" | "cancelled" | "interrupted"

/** Every outcome, in the order `/metrics` prints them. */
export const outcomes: ReadonlyArray<Outcome> = [
  "ok",
  "error",
  "invalid",
  "timeout",
  "defect",
  "unencodable",
  "rejected",
  "cancelled",
  "interrupted"
]

/** Latency histogram bounds in seconds: from a trivial remote over loopback to a long generation. */
export const latencyBuckets: ReadonlyArray<number> = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120
]

/** Counters of one remote. `buckets[i]` counts calls at most `latencyBuckets[i]` (not cumulative). */
export interface RemoteCounters {
  readonly name: string
  readonly calls: Record<Outcome, number>
  readonly buckets: Array<number>
  latencyCount: number
  latencySum: number
  /** Elements sent by a stream remote (its calls, the streams, are counted in `calls`). */
  items: number
}

/** The counters of one worker. Plain numbers, not Effect `Metric`s: those are global, and tests run many workers. */
export class Recorder {
  readonly remotes = new Map<string, RemoteCounters>()
  /** Calls that named no remote: one counter, so arbitrary URLs cannot grow the label set. */
  unknownRemote = 0

  constructor(names: Iterable<string>) {
    for (const name of names) {
      this.remotes.set(name, {
        name,
        calls: {
          ok: 0,
          error: 0,
          invalid: 0,
          timeout: 0,
          defect: 0,
          unencodable: 0,
          rejected: 0,
          cancelled: 0,
          interrupted: 0
        },
        buckets: latencyBuckets.map(() => 0),
        latencyCount: 0,
        latencySum: 0,
        items: 0
      })
    }
  }

  /** Count elements a stream remote sent. */
  items(name: string, n: number): void {
    const counters = this.remotes.get(name)
    if (counters !== undefined) counters.items += n
  }

  /** Count one call; `seconds` is its latency when it ran (queued time included), undefined when it never did. */
  record(name: string, outcome: Outcome, seconds: number | undefined): void {
    const counters = this.remotes.get(name)
    if (counters === undefined) return
    counters.calls[outcome]++
    if (seconds === undefined) return
    counters.latencyCount++
    counters.latencySum += seconds
    for (let i = 0; i < latencyBuckets.length; i++) {
      if (seconds <= latencyBuckets[i]!) {
        counters.buckets[i] = (counters.buckets[i] ?? 0) + 1
        break
      }
    }
  }
}

/** What `/metrics` renders. */
export interface Snapshot {
  readonly deployment: string
  readonly phase: string
  readonly remotes: ReadonlyArray<
    RemoteCounters & { readonly running: number; readonly queued: number; readonly stream: boolean }
  >
  readonly unknownRemote: number
  readonly contexts: ReadonlyArray<ContextRecord>
  readonly score: number | undefined
  /** Work queued or running, in workload units, and its estimated wait in seconds (when the score is known). */
  readonly pendingWorkload: number
}

const phases = ["starting", "benchmarking", "ready", "draining", "stopping", "stopped", "failed"]

const label = (value: string): string => value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"')

/** Render a snapshot in the Prometheus text exposition format (version 0.0.4). */
export const renderPrometheus = (s: Snapshot): string => {
  const out: Array<string> = []
  const family = (name: string, type: string, help: string) =>
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`)
  const dep = `deployment="${label(s.deployment)}"`

  family("worker_phase", "gauge", "1 for the worker's current lifecycle phase.")
  for (const p of phases) out.push(`worker_phase{${dep},phase="${p}"} ${p === s.phase ? 1 : 0}`)

  family("worker_calls_total", "counter", "Calls by remote and outcome.")
  for (const r of s.remotes) {
    for (const o of outcomes)
      out.push(`worker_calls_total{${dep},remote="${label(r.name)}",outcome="${o}"} ${r.calls[o]}`)
  }
  family("worker_stream_items_total", "counter", "Elements sent by stream remotes (each stream is one call).")
  for (const r of s.remotes) {
    if (r.stream) out.push(`worker_stream_items_total{${dep},remote="${label(r.name)}"} ${r.items}`)
  }
  family("worker_unknown_remote_calls_total", "counter", "Calls that named no remote of this deployment.")
  out.push(`worker_unknown_remote_calls_total{${dep}} ${s.unknownRemote}`)

  family("worker_calls_in_flight", "gauge", "Calls running now.")
  for (const r of s.remotes) out.push(`worker_calls_in_flight{${dep},remote="${label(r.name)}"} ${r.running}`)
  family("worker_calls_queued", "gauge", "Calls waiting for a slot.")
  for (const r of s.remotes) out.push(`worker_calls_queued{${dep},remote="${label(r.name)}"} ${r.queued}`)
  family("worker_pending_workload", "gauge", "Workload units queued or running.")
  out.push(`worker_pending_workload{${dep}} ${s.pendingWorkload}`)

  family("worker_call_duration_seconds", "histogram", "Call latency, queueing included (a stream: until its end).")
  for (const r of s.remotes) {
    const remote = `${dep},remote="${label(r.name)}"`
    let cumulative = 0
    latencyBuckets.forEach((bound, i) => {
      cumulative += r.buckets[i] ?? 0
      out.push(`worker_call_duration_seconds_bucket{${remote},le="${bound}"} ${cumulative}`)
    })
    out.push(`worker_call_duration_seconds_bucket{${remote},le="+Inf"} ${r.latencyCount}`)
    out.push(`worker_call_duration_seconds_sum{${remote}} ${r.latencySum}`)
    out.push(`worker_call_duration_seconds_count{${remote}} ${r.latencyCount}`)
  }

  family("worker_context_enter_seconds", "gauge", "How long each context took to enter.")
  for (const c of s.contexts) {
    if (c.enterMillis !== undefined)
      out.push(`worker_context_enter_seconds{${dep},context="${label(c.key)}"} ${c.enterMillis / 1000}`)
  }
  family("worker_context_exit_seconds", "gauge", "How long each context took to exit.")
  for (const c of s.contexts) {
    if (c.exitMillis !== undefined)
      out.push(`worker_context_exit_seconds{${dep},context="${label(c.key)}"} ${c.exitMillis / 1000}`)
  }

  family("worker_benchmark_score", "gauge", "The benchmark score in workload units per second (the engine's max_perf).")
  if (s.score !== undefined) out.push(`worker_benchmark_score{${dep}} ${s.score}`)
  return out.join("\n") + "\n"
}

/** The HTTP server's own counters (beside the worker's, which survive a server restart in tests). */
export interface HttpSnapshot {
  /** Connections open now. */
  readonly connections: number
  /** Connections closed at once because `maxConnections` were open. */
  readonly refused: number
  /** Requests whose body is still arriving. */
  readonly receiving: number
  /** Requests answered 408 because their body did not arrive within the body timeout. */
  readonly bodyTimeouts: number
}

/** Render the HTTP server's counters in the Prometheus text format. */
export const renderHttp = (deployment: string, s: HttpSnapshot): string => {
  const dep = `deployment="${label(deployment)}"`
  return (
    [
      "# HELP worker_http_connections Connections open now.",
      "# TYPE worker_http_connections gauge",
      `worker_http_connections{${dep}} ${s.connections}`,
      "# HELP worker_http_connections_refused_total Connections closed at once because maxConnections were open.",
      "# TYPE worker_http_connections_refused_total counter",
      `worker_http_connections_refused_total{${dep}} ${s.refused}`,
      "# HELP worker_http_requests_receiving Requests whose body is still arriving.",
      "# TYPE worker_http_requests_receiving gauge",
      `worker_http_requests_receiving{${dep}} ${s.receiving}`,
      "# HELP worker_http_body_timeouts_total Requests answered 408: the body did not arrive within the body timeout.",
      "# TYPE worker_http_body_timeouts_total counter",
      `worker_http_body_timeouts_total{${dep}} ${s.bodyTimeouts}`
    ].join("\n") + "\n"
  )
}
