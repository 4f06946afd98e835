/**
 * How a served worker is configured: the options given to `Worker.serve`, completed from the environment, checked
 * once, and held as a service. Everything that serves (the HTTP server, auth, the engine reports) reads this one
 * resolved value; nothing reads `process.env` a second time.
 *
 * @since 0.2.0
 */
import type { Duration } from "effect"
import { Config, ConfigError, ConfigProvider, Context, Effect, Layer, Option, Redacted } from "effect"
import * as EngineReport from "./EngineReport.js"
import * as Sessions from "./internal/sessions.js"
import * as Tls from "./internal/tls.js"

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
export type Auth =
  | { readonly mode: "none" }
  | { readonly mode: "token"; readonly token: string | Redacted.Redacted<string> }
  | {
      readonly mode: "signed"
      readonly publicKey?: string | undefined
      readonly reportAddr?: string | undefined
    }

/** The worker's own options (in process as well as served). */
export interface WorkerOptions {
  /** Interrupt a call that runs longer (`CallTimeout`); a remote's own `timeout` wins. Default: none. */
  readonly callTimeout?: Duration.DurationInput | undefined
  /** How long shutdown waits for in-flight calls before interrupting them. Default 30 seconds. */
  readonly drainTimeout?: Duration.DurationInput | undefined
  /** Run the deployment's benchmark before becoming ready. Default true. */
  readonly benchmark?: boolean | undefined
  /**
   * Refuse a call (`WorkerUnavailable` `queue-full`, HTTP 429) when the work admitted ahead of it would take longer than
   * this at the benchmark score; a remote's own `maxQueueTime` wins. Default: no limit (only `maxQueue`).
   */
  readonly maxQueueTime?: Duration.DurationInput | undefined
}

/**
 * Options of `Worker.serve`. Each one not given is read from the environment, then defaults:
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
 * | `tls`          | `USE_SSL=true`, `WORKER_TLS_CERT`, `WORKER_TLS_KEY` | off; `/etc/instance.crt`, `/etc/instance.key` |
 * | `httpPort`     | `WORKER_HTTP_PORT`                     | `port + 1` (0 when `port` is 0) |
 * | `maxSessions`  | `WORKER_MAX_SESSIONS`                  | 10                           |
 *
 * Auth defaults as the reference: with `REPORT_ADDR` set, `signed` (key from `REPORT_ADDR/pubkey/`) unless
 * `UNSECURED=true`; otherwise `token` when `WORKER_TOKEN` is set, else `none`.
 */
export interface ServeOptions extends WorkerOptions {
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
   * Default: {@link EngineReport.optionsFromEnv} for the resolved port, so a worker started with `REPORT_ADDR` reports.
   *
   * - Start-up: a status at once (not loaded), then at once when ready (`max_perf` = the benchmark score, 0 with the
   *   benchmark off; `loadtime` = seconds since the process started), or with `error_msg` when start-up failed (kept
   *   in every later status).
   * - Each `POST /remote/<name>` admitted counts as load (`workload` from the remote's benchmark `workload`, else 100)
   *   and goes to `delete_requests` when it ends: `Success`, `Error` (declared error, defect, timeout, interrupted by
   *   shutdown), `Cancelled` (the client went away), or `Rejected` (429). The ids are `auth_data.request_idx` and
   *   `reqnum`; a call without a `request_idx` counts as load but is not sent to `delete_requests`.
   * - Shutdown: after the drain and the context exits, the finished calls and one last status (no load working).
   */
  readonly report?: EngineReport.Options | false | undefined
  /**
   * Serve HTTPS on `port` with this certificate (PEM files), as the reference does with `USE_SSL=true` and the
   * instance certificate; `false` serves plain HTTP whatever the environment says. The files are read and checked at
   * start-up: a missing, unreadable or mismatched file fails it with `TlsConfigInvalid` naming the file.
   */
  readonly tls?: { readonly certPath?: string | undefined; readonly keyPath?: string | undefined } | false | undefined
  /**
   * The HTTP-only port that serves `POST /session/end` for the platform's webhooks (plain HTTP even with TLS on).
   */
  readonly httpPort?: number | undefined
  /** How many sessions may be open at once; a create past it is 429. 0 turns sessions off. */
  readonly maxSessions?: number | undefined
}

/** The resolved configuration of a served worker: every option decided and checked. */
export interface Resolved {
  readonly port: number
  readonly host: string | undefined
  readonly maxBodySize: number
  readonly callTimeout: Duration.DurationInput | undefined
  readonly drainTimeout: Duration.DurationInput | undefined
  readonly maxQueueTime: Duration.DurationInput | undefined
  readonly benchmark: boolean | undefined
  readonly auth: Auth
  readonly handleSignals: boolean
  readonly report: EngineReport.Options | undefined
  /** The certificate and key to serve HTTPS with, or undefined for plain HTTP. */
  readonly tls: { readonly certPath: string; readonly keyPath: string } | undefined
  readonly httpPort: number
  readonly maxSessions: number
}

/** The resolved configuration as a service. */
export class WorkerConfig extends Context.Tag("effect-deployments/WorkerConfig")<WorkerConfig, Resolved>() {}

/** Default `port`. */
export const DEFAULT_PORT = 8000
/** Default `maxBodySize`: 64 MiB. */
export const DEFAULT_MAX_BODY_SIZE = 64 * 1024 * 1024

const optional = <A>(config: Config.Config<A>) => Config.option(config).pipe(Config.map(Option.getOrUndefined))

const env = Config.all({
  port: Config.integer("WORKER_PORT").pipe(
    Config.validate({ message: "must be a port number, 0 to 65535", validation: (n) => n >= 0 && n <= 65535 }),
    Config.withDefault(DEFAULT_PORT)
  ),
  host: optional(Config.string("WORKER_HOST")),
  maxBodySize: Config.integer("WORKER_MAX_BODY_SIZE").pipe(
    Config.validate({ message: "must be a positive number of bytes", validation: (n) => n > 0 }),
    Config.withDefault(DEFAULT_MAX_BODY_SIZE)
  ),
  callTimeout: optional(Config.duration("WORKER_CALL_TIMEOUT")),
  drainTimeout: optional(Config.duration("WORKER_DRAIN_TIMEOUT")),
  maxQueueTime: optional(Config.duration("WORKER_MAX_QUEUE_TIME")),
  authMode: optional(Config.literal("none", "token", "signed")("WORKER_AUTH")),
  token: optional(Config.redacted("WORKER_TOKEN")),
  publicKey: optional(Config.string("WORKER_PUBLIC_KEY")),
  reportAddr: optional(Config.string("REPORT_ADDR")),
  unsecured: Config.boolean("UNSECURED").pipe(Config.withDefault(false)),
  tls: Tls.config,
  httpPort: optional(
    Config.integer("WORKER_HTTP_PORT").pipe(
      Config.validate({ message: "must be a port number, 0 to 65535", validation: (n) => n >= 0 && n <= 65535 })
    )
  ),
  maxSessions: Sessions.config
})

const invalid = (name: string, message: string) => ConfigError.InvalidData([name], message)

const resolveAuth = (
  options: ServeOptions,
  e: Config.Config.Success<typeof env>
): Effect.Effect<Auth, ConfigError.ConfigError> => {
  if (options.auth !== undefined) return Effect.succeed(options.auth)
  // The reference's environment: REPORT_ADDR means the router signs calls, unless UNSECURED turns the check off.
  const mode =
    e.authMode ??
    (e.reportAddr !== undefined ? (e.unsecured ? "none" : "signed") : e.token !== undefined ? "token" : "none")
  switch (mode) {
    case "token": {
      if (e.token === undefined || Redacted.value(e.token).trim() === "") {
        return Effect.fail(
          ConfigError.MissingData(["WORKER_TOKEN"], "WORKER_AUTH=token needs a non-empty WORKER_TOKEN")
        )
      }
      return Effect.succeed({ mode, token: e.token })
    }
    case "signed": {
      if (e.publicKey === undefined && e.reportAddr === undefined) {
        return Effect.fail(
          ConfigError.MissingData(["REPORT_ADDR"], "WORKER_AUTH=signed needs WORKER_PUBLIC_KEY or REPORT_ADDR")
        )
      }
      return Effect.succeed({ mode, publicKey: e.publicKey, reportAddr: e.reportAddr })
    }
    case "none":
      return Effect.succeed({ mode })
  }
}

const checkOptions = (o: ServeOptions): Effect.Effect<void, ConfigError.ConfigError> => {
  if (o.port !== undefined && !(Number.isInteger(o.port) && o.port >= 0 && o.port <= 65535)) {
    return Effect.fail(invalid("port", `must be a port number, 0 to 65535, got ${o.port}`))
  }
  if (o.maxBodySize !== undefined && !(Number.isInteger(o.maxBodySize) && o.maxBodySize > 0)) {
    return Effect.fail(invalid("maxBodySize", `must be a positive number of bytes, got ${o.maxBodySize}`))
  }
  if (o.httpPort !== undefined && !(Number.isInteger(o.httpPort) && o.httpPort >= 0 && o.httpPort <= 65535)) {
    return Effect.fail(invalid("httpPort", `must be a port number, 0 to 65535, got ${o.httpPort}`))
  }
  if (o.maxSessions !== undefined && !(Number.isInteger(o.maxSessions) && o.maxSessions >= 0)) {
    return Effect.fail(invalid("maxSessions", `must be a whole number, 0 or more, got ${o.maxSessions}`))
  }
  return Effect.void
}

/**
 * The options given, completed from the environment (`Config`), then the defaults. Fails with a `ConfigError` naming
 * the option or variable, its value and what is allowed.
 */
export const resolve = (options: ServeOptions = {}): Effect.Effect<Resolved, ConfigError.ConfigError> =>
  Effect.gen(function* () {
    yield* checkOptions(options)
    const e = yield* env
    const auth = yield* resolveAuth(options, e)
    const port = options.port ?? e.port
    const tls =
      options.tls === false
        ? undefined
        : options.tls !== undefined
          ? { certPath: options.tls.certPath ?? e.tls.certPath, keyPath: options.tls.keyPath ?? e.tls.keyPath }
          : e.tls.enabled
            ? { certPath: e.tls.certPath, keyPath: e.tls.keyPath }
            : undefined
    const report =
      options.report === false
        ? undefined
        : (options.report ??
          Option.getOrUndefined(yield* EngineReport.optionsFromEnv({ port, ssl: tls !== undefined })))
    return {
      port,
      host: options.host ?? e.host,
      maxBodySize: options.maxBodySize ?? e.maxBodySize,
      callTimeout: options.callTimeout ?? e.callTimeout,
      drainTimeout: options.drainTimeout ?? e.drainTimeout,
      maxQueueTime: options.maxQueueTime ?? e.maxQueueTime,
      benchmark: options.benchmark,
      auth,
      handleSignals: options.handleSignals ?? true,
      report,
      tls,
      // The reference's default: the next port (a free one when the main port is chosen freely).
      httpPort: options.httpPort ?? e.httpPort ?? (port === 0 ? 0 : port + 1),
      maxSessions: options.maxSessions ?? e.maxSessions
    }
  })

/**
 * The configuration from `options` and the defaults, ignoring the environment (for tests and programs that configure
 * everything in code).
 */
export const layer = (options: ServeOptions = {}): Layer.Layer<WorkerConfig, ConfigError.ConfigError> =>
  Layer.effect(WorkerConfig, Effect.withConfigProvider(resolve(options), ConfigProvider.fromMap(new Map())))

/** The configuration from `options`, then the environment, then the defaults: {@link resolve} as a layer. */
export const layerFromEnv = (options: ServeOptions = {}): Layer.Layer<WorkerConfig, ConfigError.ConfigError> =>
  Layer.effect(WorkerConfig, resolve(options))
