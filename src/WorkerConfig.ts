/**
 * How a served worker is configured: the options given to `Worker.serve`, completed from the environment, checked
 * once, and held as a service. Everything that serves (the HTTP server, auth, the engine reports) reads this one
 * resolved value; nothing reads `process.env` a second time.
 *
 * @since 0.2.0
 */
import { Config, ConfigError, ConfigProvider, Context, Duration, Effect, Layer, Option, Redacted } from "effect"
import * as EngineReport from "./EngineReport.js"
import * as Sessions from "./internal/sessions.js"
import * as Settings from "./internal/settings.js"
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
 * Options of `Worker.serve`. Each one not given is read from the environment, then defaults. Every value is checked
 * at start: a bad one fails start-up with a `ConfigError` naming the option or the variable, the value and what is
 * allowed (exit code 2 under `NodeRuntime.runMain` with `Worker.teardown`, and under the CLI).
 *
 * | option              | env                                   | default                                   |
 * | ------------------- | ------------------------------------- | ----------------------------------------- |
 * | `port`              | `WORKER_PORT`                         | 8000                                      |
 * | `host`              | `WORKER_HOST`                         | every interface                           |
 * | `maxBodySize`       | `WORKER_MAX_BODY_SIZE` (bytes)        | 32 MiB (413 above it)                     |
 * | `callTimeout`       | `WORKER_CALL_TIMEOUT` (`30 seconds`)  | none (504 when exceeded)                  |
 * | `drainTimeout`      | `WORKER_DRAIN_TIMEOUT`                | 30 seconds                                |
 * | `maxQueueTime`      | `WORKER_MAX_QUEUE_TIME`               | none                                      |
 * | `headersTimeout`    | `WORKER_HEADERS_TIMEOUT`              | 30 seconds (408, connection closed)       |
 * | `bodyTimeout`       | `WORKER_BODY_TIMEOUT`                 | 30 seconds (408, connection closed)       |
 * | `keepAliveTimeout`  | `WORKER_KEEP_ALIVE_TIMEOUT`           | 65 seconds                                |
 * | `maxConnections`    | `WORKER_MAX_CONNECTIONS`              | 1024 (further connections closed at once) |
 * | `onStartupFailure`  | `WORKER_ON_STARTUP_FAILURE`           | `exit`                                    |
 * | `auth`              | `WORKER_AUTH` = `none`/`token`/`signed`, `WORKER_TOKEN`, `WORKER_PUBLIC_KEY`, `REPORT_ADDR`, `UNSECURED` | see below |
 * | `report`            | `REPORT_ADDR` (off without it), `CONTAINER_ID`, `MASTER_TOKEN`, `PUBLIC_IPADDR`, `VAST_TCP_PORT_<port>`, `USE_SSL` | |
 * | `tls`               | `USE_SSL=true`, `WORKER_TLS_CERT`, `WORKER_TLS_KEY` | off; `/etc/instance.crt`, `/etc/instance.key` |
 * | `httpPort`          | `WORKER_HTTP_PORT`                    | `port + 1` (0 when `port` is 0)           |
 * | `maxSessions`       | `WORKER_MAX_SESSIONS`                 | 10                                        |
 *
 * Auth defaults as the reference: with `REPORT_ADDR` set, `signed` (key from `REPORT_ADDR/pubkey/`) unless
 * `UNSECURED=true`; otherwise `token` when `WORKER_TOKEN` is set, else `none`.
 */
export interface ServeOptions extends WorkerOptions {
  /** TCP port; 0 picks a free one (see `Served.url`). */
  readonly port?: number | undefined
  readonly host?: string | undefined
  /**
   * Largest request body in bytes, 1 to 256 MiB. A body declared larger (`Content-Length`) is refused with 413 before
   * any of it is read (and without `100 Continue`); one that grows larger while arriving is refused as it passes the
   * limit. A body is parsed in memory: peak memory grows by about five times the body's size while it is decoded.
   */
  readonly maxBodySize?: number | undefined
  /**
   * How long a client may take to send a request's headers, from its connection (or its first byte on a kept-alive
   * connection). Past it: 408 and the connection is closed. Default 30 seconds.
   */
  readonly headersTimeout?: Duration.DurationInput | undefined
  /**
   * How long a request's body may take to arrive in full, from the end of its headers, however steadily it arrives.
   * Past it: 408 and the connection is closed. Default 30 seconds.
   */
  readonly bodyTimeout?: Duration.DurationInput | undefined
  /**
   * How long an idle kept-alive connection stays open. Default 65 seconds: longer than the usual idle timeout of
   * clients and load balancers (60 s), so that the client closes first (a server closing a connection as the client
   * reuses it loses that request).
   */
  readonly keepAliveTimeout?: Duration.DurationInput | undefined
  /** Most connections open at once; further ones are closed as soon as they are accepted. Default 1024. */
  readonly maxConnections?: number | undefined
  /**
   * What a worker whose start-up failed does when it owns the process (`handleSignals`, as under the CLI and
   * `Worker.serve` with `NodeRuntime.runMain`): `exit` (the default) sends the engine its last report, closes, and ends
   * the process with exit code 1 so that the platform restarts it; `stay` keeps it alive, answering `/health` (phase
   * `failed`) and 503 to calls, for platforms that inspect a failed worker instead.
   */
  readonly onStartupFailure?: "exit" | "stay" | undefined
  readonly auth?: Auth | undefined
  /**
   * The worker owns the process: on SIGTERM or SIGINT it flips to draining at once and shuts down, and it keeps
   * listening to later signals so that a second one cannot kill the process before the contexts exit. An uncaught
   * exception or unhandled rejection starts the same graceful shutdown (each context's `exit` is told the error) and
   * the process exits with code 1; so does a failed start-up (see `onStartupFailure`). Default true. Pair it with
   * `NodeRuntime.runMain`, which ends the main fiber (and so the process) on the same signal.
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
  readonly callTimeout: Duration.Duration | undefined
  readonly drainTimeout: Duration.Duration
  readonly maxQueueTime: Duration.Duration | undefined
  readonly headersTimeout: Duration.Duration
  readonly bodyTimeout: Duration.Duration
  readonly keepAliveTimeout: Duration.Duration
  readonly maxConnections: number
  readonly onStartupFailure: "exit" | "stay"
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
/**
 * Default `maxBodySize`: 32 MiB, a large photo or several smaller ones in base64 (which adds a third). Memory for a
 * body at the limit peaks at about five times its size while it is parsed (measured by `bench/body-memory.ts`).
 */
export const DEFAULT_MAX_BODY_SIZE = 32 * 1024 * 1024
/** The largest `maxBodySize` allowed: 256 MiB (a body is one string in memory, and V8 caps strings at 512 MiB). */
export const MAX_BODY_SIZE_LIMIT = 256 * 1024 * 1024
/** Default `drainTimeout`. */
export const DEFAULT_DRAIN_TIMEOUT = Duration.seconds(30)
/** Default `headersTimeout`. */
export const DEFAULT_HEADERS_TIMEOUT = Duration.seconds(30)
/** Default `bodyTimeout`. */
export const DEFAULT_BODY_TIMEOUT = Duration.seconds(30)
/** Default `keepAliveTimeout`. */
export const DEFAULT_KEEP_ALIVE_TIMEOUT = Duration.seconds(65)
/** Default `maxConnections`. */
export const DEFAULT_MAX_CONNECTIONS = 1024

const checks = {
  port: Settings.integer(0, 65535, "a port number"),
  host: Settings.nonEmpty("a host name or IP address to listen on"),
  maxBodySize: Settings.integer(1, MAX_BODY_SIZE_LIMIT, "a whole number of bytes", true),
  timeout: Settings.duration(),
  drainTimeout: Settings.duration({ zero: true }),
  maxConnections: Settings.integer(1, 1_000_000, "a whole number of connections"),
  onStartupFailure: Settings.literal("exit", "stay"),
  maxSessions: Settings.integer(0, 1_000_000, "a whole number of sessions"),
  path: Settings.nonEmpty("a file path"),
  authMode: Settings.literal("none", "token", "signed"),
  boolean: Settings.boolean,
  flag: Settings.strictBoolean
}

const env = Config.all({
  port: Settings.env("WORKER_PORT"),
  host: Settings.env("WORKER_HOST"),
  maxBodySize: Settings.env("WORKER_MAX_BODY_SIZE"),
  callTimeout: Settings.env("WORKER_CALL_TIMEOUT"),
  drainTimeout: Settings.env("WORKER_DRAIN_TIMEOUT"),
  maxQueueTime: Settings.env("WORKER_MAX_QUEUE_TIME"),
  headersTimeout: Settings.env("WORKER_HEADERS_TIMEOUT"),
  bodyTimeout: Settings.env("WORKER_BODY_TIMEOUT"),
  keepAliveTimeout: Settings.env("WORKER_KEEP_ALIVE_TIMEOUT"),
  maxConnections: Settings.env("WORKER_MAX_CONNECTIONS"),
  onStartupFailure: Settings.env("WORKER_ON_STARTUP_FAILURE"),
  authMode: Settings.env("WORKER_AUTH"),
  // Not trimmed or blanked: a token is compared as it is; an empty one is refused below.
  token: Config.option(Config.redacted("WORKER_TOKEN")).pipe(Config.map(Option.getOrUndefined)),
  publicKey: Settings.env("WORKER_PUBLIC_KEY"),
  reportAddr: Settings.env("REPORT_ADDR"),
  unsecured: Settings.env("UNSECURED"),
  useSsl: Settings.env("USE_SSL"),
  tlsCert: Settings.env("WORKER_TLS_CERT"),
  tlsKey: Settings.env("WORKER_TLS_KEY"),
  httpPort: Settings.env("WORKER_HTTP_PORT"),
  maxSessions: Settings.env("WORKER_MAX_SESSIONS")
})

type Env = Config.Config.Success<typeof env>

const reportAddrs = (name: string, value: string): Effect.Effect<string, ConfigError.ConfigError> => {
  const addrs = value
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
  const bad = addrs.find((a) => Settings.httpUrl.parse(a) === undefined)
  if (addrs.length === 0 || bad !== undefined) {
    return Effect.fail(
      Settings.invalid(
        name,
        value,
        "one or more http:// or https:// URLs, separated by commas",
        bad !== undefined && addrs.length > 1 ? `"${bad}" is not one` : undefined
      )
    )
  }
  return Effect.succeed(value)
}

const resolveAuth = (options: ServeOptions, e: Env): Effect.Effect<Auth, ConfigError.ConfigError> =>
  Effect.gen(function* () {
    const given = options.auth
    if (given !== undefined) {
      switch ((given as { mode?: unknown } | null)?.mode) {
        case "none":
          return given
        case "token": {
          const token = (given as { token?: unknown }).token
          const value = Redacted.isRedacted(token) ? Redacted.value(token as Redacted.Redacted<string>) : token
          if (typeof value !== "string" || value.trim() === "") {
            return yield* Effect.fail(
              ConfigError.InvalidData(["auth.token"], "got an empty token; expected the secret callers send")
            )
          }
          return given
        }
        case "signed": {
          const signed = given as Extract<Auth, { mode: "signed" }>
          if (signed.publicKey === undefined && signed.reportAddr === undefined) {
            return yield* Effect.fail(
              ConfigError.MissingData(["auth.publicKey"], "auth mode signed needs publicKey or reportAddr")
            )
          }
          const publicKey =
            signed.publicKey === undefined
              ? undefined
              : yield* Settings.publicKeyPem("auth.publicKey", signed.publicKey)
          if (signed.reportAddr !== undefined) yield* reportAddrs("auth.reportAddr", signed.reportAddr)
          return { mode: "signed", publicKey, reportAddr: signed.reportAddr }
        }
        default:
          return yield* Effect.fail(
            Settings.invalid("auth", given, `{ mode: "none" }, { mode: "token", token } or { mode: "signed", ... }`)
          )
      }
    }
    const unsecured =
      (yield* Settings.pick(checks.boolean, { option: "", env: "UNSECURED" }, undefined, e.unsecured)) ?? false
    const explicit = yield* Settings.pick(checks.authMode, { option: "", env: "WORKER_AUTH" }, undefined, e.authMode)
    if (e.reportAddr !== undefined) yield* reportAddrs("REPORT_ADDR", e.reportAddr)
    // The reference's environment: REPORT_ADDR means the router signs calls, unless UNSECURED turns the check off.
    const mode =
      explicit ??
      (e.reportAddr !== undefined ? (unsecured ? "none" : "signed") : e.token !== undefined ? "token" : "none")
    switch (mode) {
      case "token": {
        if (e.token === undefined || Redacted.value(e.token).trim() === "") {
          return yield* Effect.fail(
            ConfigError.MissingData(["WORKER_TOKEN"], "WORKER_AUTH=token needs a non-empty WORKER_TOKEN")
          )
        }
        return { mode, token: e.token }
      }
      case "signed": {
        if (e.publicKey === undefined && e.reportAddr === undefined) {
          return yield* Effect.fail(
            ConfigError.MissingData(["REPORT_ADDR"], "WORKER_AUTH=signed needs WORKER_PUBLIC_KEY or REPORT_ADDR")
          )
        }
        const publicKey =
          e.publicKey === undefined ? undefined : yield* Settings.publicKeyPem("WORKER_PUBLIC_KEY", e.publicKey)
        return { mode, publicKey, reportAddr: e.reportAddr }
      }
      case "none":
        return { mode }
    }
  })

/** HTTPS: `tls` when given (`false`: plain HTTP whatever the environment says), else `USE_SSL` with the paths. */
const resolveTls = (options: ServeOptions, e: Env): Effect.Effect<Resolved["tls"], ConfigError.ConfigError> =>
  Effect.gen(function* () {
    if (options.tls === false) return undefined
    const given = options.tls
    if (
      given === undefined &&
      !((yield* Settings.pick(checks.boolean, { option: "", env: "USE_SSL" }, undefined, e.useSsl)) ?? false)
    )
      return undefined
    const certPath =
      (yield* Settings.pick(
        checks.path,
        { option: "tls.certPath", env: "WORKER_TLS_CERT" },
        given?.certPath,
        e.tlsCert
      )) ?? Tls.DEFAULT_CERT
    const keyPath =
      (yield* Settings.pick(checks.path, { option: "tls.keyPath", env: "WORKER_TLS_KEY" }, given?.keyPath, e.tlsKey)) ??
      Tls.DEFAULT_KEY
    return { certPath, keyPath }
  })

/**
 * The options given, completed from the environment (`Config`), then the defaults. Fails with a `ConfigError` naming
 * the option or variable, its value and what is allowed.
 */
export const resolve = (options: ServeOptions = {}): Effect.Effect<Resolved, ConfigError.ConfigError> =>
  Effect.gen(function* () {
    const e = yield* env
    const pick = <A>(check: Settings.Check<A>, option: keyof ServeOptions & keyof Env, envName: string) =>
      Settings.pick(check, { option, env: envName }, options[option], e[option] as string | undefined)
    const port = (yield* pick(checks.port, "port", "WORKER_PORT")) ?? DEFAULT_PORT
    const host = yield* pick(checks.host, "host", "WORKER_HOST")
    const maxBodySize =
      (yield* pick(checks.maxBodySize, "maxBodySize", "WORKER_MAX_BODY_SIZE")) ?? DEFAULT_MAX_BODY_SIZE
    const callTimeout = yield* pick(checks.timeout, "callTimeout", "WORKER_CALL_TIMEOUT")
    const drainTimeout =
      (yield* pick(checks.drainTimeout, "drainTimeout", "WORKER_DRAIN_TIMEOUT")) ?? DEFAULT_DRAIN_TIMEOUT
    const maxQueueTime = yield* pick(checks.timeout, "maxQueueTime", "WORKER_MAX_QUEUE_TIME")
    const headersTimeout =
      (yield* pick(checks.timeout, "headersTimeout", "WORKER_HEADERS_TIMEOUT")) ?? DEFAULT_HEADERS_TIMEOUT
    const bodyTimeout = (yield* pick(checks.timeout, "bodyTimeout", "WORKER_BODY_TIMEOUT")) ?? DEFAULT_BODY_TIMEOUT
    const keepAliveTimeout =
      (yield* pick(checks.timeout, "keepAliveTimeout", "WORKER_KEEP_ALIVE_TIMEOUT")) ?? DEFAULT_KEEP_ALIVE_TIMEOUT
    const maxConnections =
      (yield* pick(checks.maxConnections, "maxConnections", "WORKER_MAX_CONNECTIONS")) ?? DEFAULT_MAX_CONNECTIONS
    const onStartupFailure =
      (yield* pick(checks.onStartupFailure, "onStartupFailure", "WORKER_ON_STARTUP_FAILURE")) ?? "exit"
    const benchmark = yield* Settings.pick(checks.flag, { option: "benchmark" }, options.benchmark, undefined)
    const handleSignals =
      (yield* Settings.pick(checks.flag, { option: "handleSignals" }, options.handleSignals, undefined)) ?? true
    const auth = yield* resolveAuth(options, e)
    const httpPort = (yield* pick(checks.port, "httpPort", "WORKER_HTTP_PORT")) ?? (port === 0 ? 0 : port + 1)
    const maxSessions =
      (yield* pick(checks.maxSessions, "maxSessions", "WORKER_MAX_SESSIONS")) ?? Sessions.DEFAULT_MAX_SESSIONS
    const tls = yield* resolveTls(options, e)
    const report =
      options.report === false
        ? undefined
        : (options.report ??
          Option.getOrUndefined(yield* EngineReport.optionsFromEnv({ port, ssl: tls !== undefined })))
    return {
      port,
      host,
      maxBodySize,
      callTimeout,
      drainTimeout,
      maxQueueTime,
      headersTimeout,
      bodyTimeout,
      keepAliveTimeout,
      maxConnections,
      onStartupFailure,
      benchmark,
      auth,
      handleSignals,
      report,
      tls,
      httpPort,
      maxSessions
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
