/**
 * Reports to the routing engine, as the reference worker sends them (when `REPORT_ADDR` is set):
 * `POST {REPORT_ADDR}/worker_status/` with load, performance and readiness, and `POST {REPORT_ADDR}/delete_requests/`
 * with the calls that finished. Unlike the reference, readiness and start-up failure are sent at once (the reference
 * can be 10 s late), failed calls are reported as failures, and the reporter stops cleanly with the worker: when `run`
 * is interrupted it sends the finished calls and one last status (the reference sends nothing at exit).
 *
 * @since 0.1.0
 */
// Deep imports: the "@effect/platform" barrel loads every module of it (its HTTP server and router included), which
// a worker process pays for at start-up
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { Clock, ConfigError, Duration, Effect, Fiber, Option, Queue, Schedule } from "effect"
import * as Settings from "./internal/settings.js"
import { version as packageVersion } from "./internal/version.js"

/** Where and as whom to report. */
export interface Options {
  /** Engine base URLs, tried in order until one accepts (`REPORT_ADDR`, comma-separated). */
  readonly reportAddrs: ReadonlyArray<string>
  /** This worker's id (`CONTAINER_ID`). */
  readonly containerId: number
  /** The engine's token for this worker (`MASTER_TOKEN`). */
  readonly mtoken: string
  /** This worker's public URL: `http(s)://$PUBLIC_IPADDR:$VAST_TCP_PORT_<WORKER_PORT>`. */
  readonly url: string
  /** Reported version string. Default: the package version. */
  readonly version?: string | undefined
  /** How often pending changes are sent. Default 1 second. */
  readonly interval?: Duration.DurationInput | undefined
  /** Send a status at least this often even when nothing changed. Default 10 seconds. */
  readonly heartbeat?: Duration.DurationInput | undefined
  /** How long the last report (when `run` is interrupted) may take before it is given up. Default 5 seconds. */
  readonly finalTimeout?: Duration.DurationInput | undefined
}

/** How a call ended, in the engine's words. */
export type CallStatus = "Success" | "Error" | "Cancelled" | "Rejected"

/**
 * One call as the engine tracks it. Times are seconds since the epoch, as the reference sends them.
 *
 * `requestIdx` is the engine's id of the call (`auth_data.request_idx`). A call without one (sent to the worker
 * directly, not through the engine) still counts as load, but is left out of `working_request_idxs` and
 * `delete_requests`: the engine has nothing to delete.
 */
export interface Call {
  readonly requestIdx: number | undefined
  readonly reqnum: number
  readonly workload: number
  readonly enteredQueueAt: number
  workStartedAt: number
  workCompletedAt: number
  status: CallStatus | "Started"
}

// Calls without `auth_data.reqnum` get ids of their own, negative so they never meet the engine's.
let syntheticReqnums = 0

/**
 * Open one call's accounting when it arrives at the worker: `auth` is its envelope's `auth_data` (its `request_idx`
 * and `reqnum`), `now` the time in epoch seconds. Pass it to the reporter's `started` or `rejected`, then `finished`.
 */
export const openCall = (
  auth: { readonly request_idx?: number | undefined; readonly reqnum?: number | undefined } | undefined,
  workload: number,
  now: number
): Call => ({
  requestIdx: auth?.request_idx,
  reqnum: auth?.reqnum ?? --syntheticReqnums,
  workload,
  enteredQueueAt: now,
  workStartedAt: 0,
  workCompletedAt: 0,
  status: "Started"
})

/** The body of `worker_status`. Field names (and the misspelling) are the engine's. */
export interface WorkerStatus {
  readonly id: number
  readonly mtoken: string
  readonly version: string
  readonly loadtime: number
  readonly new_load: number
  readonly cur_load: number
  readonly rej_load: number
  readonly max_perf: number
  readonly cur_perf: number
  readonly error_msg: string
  readonly num_requests_working: number
  readonly num_requests_recieved: number
  readonly additional_disk_usage: number
  readonly working_request_idxs: ReadonlyArray<number>
  readonly cur_capacity: number
  readonly max_capacity: number
  readonly url: string
}

/**
 * The engine-facing accounting of a worker. Updated synchronously on the call path (no I/O there); `run` sends.
 */
export interface Reporter {
  /** A call was accepted (it counts as load from now on). */
  readonly started: (call: Call) => void
  /** A call ended; it goes to `delete_requests` with its status. */
  readonly finished: (call: Call, status: Exclude<CallStatus, "Rejected">, now: number) => void
  /** A call was refused (queue full); it counts as rejected load. */
  readonly rejected: (call: Call) => void
  /** Start-up finished: `maxPerf` is the benchmark score; `loadtime` seconds from start to ready. Sent at once. */
  readonly loaded: (maxPerf: number, loadtime: number) => Effect.Effect<void>
  /** Start-up failed. Sent at once, and kept in every later status. */
  readonly failed: (message: string) => Effect.Effect<void>
  /** The status body as it would be sent now. */
  readonly status: () => WorkerStatus
  /** Calls waiting to be sent to `delete_requests`. */
  readonly pendingDeletes: () => number
  /**
   * Send until interrupted: status on change (at most every `interval`) and every `heartbeat`; finished calls. When
   * interrupted, it sends the finished calls not sent yet and one last status (within `finalTimeout`), then stops.
   */
  readonly run: Effect.Effect<never, never, HttpClient.HttpClient>
}

/** Make a reporter. It sends nothing until `run` runs. */
export const make = (options: Options): Effect.Effect<Reporter> =>
  Effect.gen(function* () {
    const interval = Duration.decode(options.interval ?? Duration.seconds(1))
    const heartbeat = Duration.decode(options.heartbeat ?? Duration.seconds(10))
    const kick = yield* Queue.sliding<void>(1)
    let served = 0
    let received = 0
    let cancelled = 0
    let rejectedLoad = 0
    const working = new Map<number, Call>()
    // The reference keeps every reqnum for the worker's life (a set that only grows); here a report's reqnums are
    // folded into a count once it is sent, so memory stays bounded by one interval's calls.
    const receivedReqnums = new Set<number>()
    let receivedBefore = 0
    const deleting: Array<Call> = []
    let maxPerf = 0
    let loadtime: number | undefined
    let errorMsg = ""
    let updatePending = false
    let lastSent = 0

    const status = (): WorkerStatus => {
      let curLoad = 0
      for (const c of working.values()) curLoad += c.workload
      return {
        id: options.containerId,
        mtoken: options.mtoken,
        version: options.version ?? packageVersion,
        loadtime: loadtime ?? 0,
        new_load: Math.max(received - cancelled, 0),
        cur_load: curLoad,
        rej_load: rejectedLoad,
        max_perf: maxPerf,
        cur_perf: served,
        error_msg: errorMsg,
        num_requests_working: working.size,
        num_requests_recieved: receivedBefore + receivedReqnums.size,
        additional_disk_usage: 0,
        working_request_idxs: [...working.values()].flatMap((c) => (c.requestIdx === undefined ? [] : [c.requestIdx])),
        cur_capacity: 0,
        max_capacity: 0,
        url: options.url
      }
    }

    // Each POST tries the engines in order; each engine gets a few attempts with jittered backoff.
    const post = (path: string, body: unknown) =>
      Effect.gen(function* () {
        const client = (yield* HttpClient.HttpClient).pipe(HttpClient.filterStatusOk)
        for (const addr of options.reportAddrs) {
          const sent = yield* client
            .execute(
              HttpClientRequest.post(`${addr.replace(/\/+$/, "")}/${path}/`).pipe(
                HttpClientRequest.bodyUnsafeJson(body)
              )
            )
            .pipe(
              Effect.scoped,
              Effect.timeout("10 seconds"),
              Effect.retry(
                Schedule.intersect(Schedule.jittered(Schedule.exponential("500 millis")), Schedule.recurs(2))
              ),
              Effect.as(true),
              Effect.catchAll((e) => Effect.as(Effect.logDebug(`report to ${addr}/${path}/ failed`, e), false))
            )
          if (sent) return true
        }
        yield* Effect.logWarning(`could not report ${path} to any of ${options.reportAddrs.join(", ")}`)
        return false
      })

    const sendStatus = Effect.gen(function* () {
      const body = status()
      const sentReceived = received
      const sentCancelled = cancelled
      const sentLoadtime = loadtime
      const sentReqnums = [...receivedReqnums]
      updatePending = false
      if (yield* post("worker_status", body)) {
        // Counters restart after each report (what arrived while it was in flight stays); loadtime is sent once.
        served -= body.cur_perf
        received -= sentReceived
        cancelled -= sentCancelled
        rejectedLoad -= body.rej_load
        if (loadtime === sentLoadtime) loadtime = undefined
        receivedBefore += sentReqnums.length
        for (const r of sentReqnums) receivedReqnums.delete(r)
        lastSent = yield* Clock.currentTimeMillis
      } else {
        updatePending = true
      }
    })

    const sendDeletes = Effect.gen(function* () {
      if (deleting.length === 0) return
      const snapshot = deleting.slice()
      const sent = yield* post("delete_requests", {
        worker_id: options.containerId,
        mtoken: options.mtoken,
        requests: snapshot.map((c) => ({
          request_idx: c.requestIdx!,
          success: c.status === "Success" || c.status === "Cancelled",
          status: c.status,
          entered_queue_at: c.enteredQueueAt,
          work_started_at: c.workStartedAt,
          work_completed_at: c.workCompletedAt
        }))
      })
      if (sent) deleting.splice(0, snapshot.length)
    })

    // The last report runs in a fiber of its own: the interrupted `run` cannot run anything interruptible, and the
    // timeout must be able to stop a post to an engine that does not answer.
    const finalReport = Effect.zipRight(sendDeletes, sendStatus).pipe(
      Effect.timeoutOption(options.finalTimeout ?? Duration.seconds(5)),
      Effect.forkDaemon,
      Effect.flatMap(Fiber.join)
    )

    const statusLoop = Effect.gen(function* () {
      yield* sendStatus
      while (true) {
        yield* Effect.race(Effect.sleep(interval), Queue.take(kick))
        const now = yield* Clock.currentTimeMillis
        if (updatePending || now - lastSent >= Duration.toMillis(heartbeat)) yield* sendStatus
      }
    })
    const deleteLoop = Effect.gen(function* () {
      while (true) {
        yield* Effect.sleep(interval)
        yield* sendDeletes
      }
    })

    return {
      started: (call) => {
        received += call.workload
        receivedReqnums.add(call.reqnum)
        working.set(call.reqnum, call)
        updatePending = true
      },
      finished: (call, status, now) => {
        call.status = status
        call.workCompletedAt = now
        working.delete(call.reqnum)
        if (status === "Success") served += call.workload
        if (status === "Cancelled") cancelled += call.workload
        if (call.requestIdx !== undefined) deleting.push(call)
        updatePending = true
      },
      rejected: (call) => {
        call.status = "Rejected"
        rejectedLoad += call.workload
        receivedReqnums.add(call.reqnum)
        if (call.requestIdx !== undefined) deleting.push(call)
        updatePending = true
      },
      loaded: (score, seconds) =>
        Effect.suspend(() => {
          maxPerf = score
          loadtime = seconds
          updatePending = true
          return Queue.offer(kick, undefined)
        }),
      failed: (message) =>
        Effect.suspend(() => {
          errorMsg = message
          updatePending = true
          return Queue.offer(kick, undefined)
        }),
      status,
      pendingDeletes: () => deleting.length,
      run: Effect.zipRight(Effect.fork(deleteLoop), statusLoop).pipe(
        Effect.scoped,
        Effect.onInterrupt(() => finalReport)
      ) as Effect.Effect<never, never, HttpClient.HttpClient>
    } satisfies Reporter
  })

/**
 * The reporter's options from the reference's environment: `REPORT_ADDR`, `CONTAINER_ID`, `MASTER_TOKEN`,
 * `PUBLIC_IPADDR`, `VAST_TCP_PORT_<port>`, `USE_SSL`. `port` is the port the worker listens on (default
 * `WORKER_PORT`, else 8000): the public URL maps it; `ssl` whether it serves HTTPS (default `USE_SSL`). `None` when
 * `REPORT_ADDR` is not set.
 */
export const optionsFromEnv = (
  options: { readonly port?: number | undefined; readonly ssl?: boolean | undefined } = {}
): Effect.Effect<Option.Option<Options>, ConfigError.ConfigError> =>
  Effect.gen(function* () {
    const addrs = yield* Settings.env("REPORT_ADDR")
    if (addrs === undefined) return Option.none()
    const reportAddrs = addrs
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s.length > 0)
    const bad = reportAddrs.find((a) => Settings.httpUrl.parse(a) === undefined)
    if (reportAddrs.length === 0 || bad !== undefined) {
      return yield* Effect.fail(
        Settings.invalid("REPORT_ADDR", addrs, "one or more http:// or https:// URLs, separated by commas")
      )
    }
    const port = Settings.integer(0, 65535, "a port number")
    const setting = <A>(check: Settings.Check<A>, name: string) =>
      Effect.flatMap(Settings.env(name), (value) => Settings.pick(check, { option: name, env: name }, undefined, value))
    const workerPort = options.port ?? (yield* setting(port, "WORKER_PORT")) ?? 8000
    const publicPort = (yield* setting(port, `VAST_TCP_PORT_${workerPort}`)) ?? workerPort
    const publicIp = (yield* Settings.env("PUBLIC_IPADDR")) ?? "127.0.0.1"
    const ssl = options.ssl ?? (yield* setting(Settings.boolean, "USE_SSL")) ?? false
    const containerId =
      (yield* setting(Settings.integer(0, Number.MAX_SAFE_INTEGER, "a whole number"), "CONTAINER_ID")) ?? 0
    return Option.some({
      reportAddrs,
      containerId,
      mtoken: (yield* Settings.env("MASTER_TOKEN")) ?? "",
      url: `http${ssl ? "s" : ""}://${publicIp.includes(":") ? `[${publicIp}]` : publicIp}:${publicPort}`
    })
  })
