import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import { clientAbortFiberId } from "@effect/platform/HttpServerError"
import type { ServeError } from "@effect/platform/HttpServerError"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import {
  Cause,
  Clock,
  Config,
  ConfigError,
  Deferred,
  Effect,
  Either,
  Exit,
  FiberId,
  HashSet,
  Layer,
  Option,
  Redacted,
  Schedule,
  Scope,
  SubscriptionRef
} from "effect"
import type * as Crypto from "node:crypto"
import * as Http from "node:http"
import type * as Deployment from "../Deployment.js"
import * as EngineReport from "../EngineReport.js"
import type * as Remote from "../Remote.js"
import * as Wire from "../Wire.js"
import {
  CallFailed,
  PayloadTooLarge,
  StartupFailed,
  Unauthorized,
  WireDecodeError,
  WireEncodeError,
  WorkerUnavailable
} from "../WorkerError.js"
import * as Metrics from "./metrics.js"
import { parsePublicKey, tokenEquals, verifySignature } from "./signature.js"
import * as worker from "./worker.js"

/** @internal */
export type Auth =
  | { readonly mode: "none" }
  | { readonly mode: "token"; readonly token: string | Redacted.Redacted<string> }
  | {
      readonly mode: "signed"
      readonly publicKey?: string | undefined
      readonly reportAddr?: string | undefined
    }

/** The public options, documented in Worker.ts (a type-only import: no module cycle at run time). @internal */
export type ServeOptions = import("../Worker.js").ServeOptions

/** @internal */
export interface Resolved extends worker.Options {
  readonly port: number
  readonly host: string | undefined
  readonly maxBodySize: number
  readonly auth: Auth
  readonly handleSignals: boolean
  readonly report: EngineReport.Options | undefined
}

/** @internal */
export interface Served<Provides, Remotes extends Remote.Any> {
  readonly worker: worker.Worker<Provides, Remotes>
  readonly address: HttpServer.Address
  readonly url: string
}

/** @internal */
export const DEFAULT_PORT = 8000
/** @internal */
export const DEFAULT_MAX_BODY_SIZE = 64 * 1024 * 1024

/** After shutdown, how long connections still open may finish before they are cut. */
const CLOSE_GRACE_MILLIS = 1000

const optional = <A>(config: Config.Config<A>) => Config.option(config).pipe(Config.map(Option.getOrUndefined))

/** @internal */
export const config = Config.all({
  port: Config.integer("WORKER_PORT").pipe(Config.withDefault(DEFAULT_PORT)),
  host: optional(Config.string("WORKER_HOST")),
  maxBodySize: Config.integer("WORKER_MAX_BODY_SIZE").pipe(Config.withDefault(DEFAULT_MAX_BODY_SIZE)),
  callTimeout: optional(Config.duration("WORKER_CALL_TIMEOUT")),
  drainTimeout: optional(Config.duration("WORKER_DRAIN_TIMEOUT")),
  maxQueueTime: optional(Config.duration("WORKER_MAX_QUEUE_TIME")),
  authMode: optional(Config.literal("none", "token", "signed")("WORKER_AUTH")),
  token: optional(Config.redacted("WORKER_TOKEN")),
  publicKey: optional(Config.string("WORKER_PUBLIC_KEY")),
  reportAddr: optional(Config.string("REPORT_ADDR")),
  unsecured: Config.boolean("UNSECURED").pipe(Config.withDefault(false))
})

/** The options given, completed from the environment (`Config`), then the defaults. @internal */
export const resolve = (options: ServeOptions): Effect.Effect<Resolved, ConfigError.ConfigError> =>
  Effect.gen(function* () {
    const env = yield* config
    let auth = options.auth
    if (auth === undefined) {
      // The reference's environment: REPORT_ADDR means the router signs calls, unless UNSECURED turns the check off.
      const mode =
        env.authMode ??
        (env.reportAddr !== undefined
          ? env.unsecured
            ? "none"
            : "signed"
          : env.token !== undefined
            ? "token"
            : "none")
      if (mode === "token") {
        if (env.token === undefined || Redacted.value(env.token).trim() === "") {
          return yield* Effect.fail(
            ConfigError.MissingData(["WORKER_TOKEN"], "WORKER_AUTH=token needs a non-empty WORKER_TOKEN")
          )
        }
        auth = { mode, token: env.token }
      } else if (mode === "signed") {
        if (env.publicKey === undefined && env.reportAddr === undefined) {
          return yield* Effect.fail(
            ConfigError.MissingData(["REPORT_ADDR"], "WORKER_AUTH=signed needs WORKER_PUBLIC_KEY or REPORT_ADDR")
          )
        }
        auth = { mode, publicKey: env.publicKey, reportAddr: env.reportAddr }
      } else {
        auth = { mode: "none" }
      }
    }
    const report =
      options.report === false
        ? undefined
        : (options.report ?? Option.getOrUndefined(yield* EngineReport.optionsFromEnv))
    return {
      port: options.port ?? env.port,
      host: options.host ?? env.host,
      maxBodySize: options.maxBodySize ?? env.maxBodySize,
      callTimeout: options.callTimeout ?? env.callTimeout,
      drainTimeout: options.drainTimeout ?? env.drainTimeout,
      maxQueueTime: options.maxQueueTime ?? env.maxQueueTime,
      benchmark: options.benchmark,
      auth,
      handleSignals: options.handleSignals ?? true,
      report
    }
  })

// ---------------------------------------------------------------------------
// responses
// ---------------------------------------------------------------------------

const JSON_TYPE = "application/json"

const json = (body: unknown, status: number, headers?: Record<string, string>) =>
  HttpServerResponse.text(JSON.stringify(body), {
    status,
    contentType: JSON_TYPE,
    ...(headers === undefined ? {} : { headers })
  })

/** An error as a JSON body: its fields (with `_tag` and `reason`) and its message, never its stack. */
const errorJson = (error: Error): Record<string, unknown> => {
  const out: Record<string, unknown> = { _tag: (error as { _tag?: unknown })._tag ?? error.name }
  for (const [key, value] of Object.entries(error)) out[key] = value
  out["message"] = error.message
  return out
}

const retryAfter = (millis: number | undefined): Record<string, string> => ({
  "retry-after": String(Math.max(1, Math.ceil((millis ?? 1000) / 1000)))
})

const unavailableResponse = (e: WorkerUnavailable) =>
  e.reason === "queue-full"
    ? json(errorJson(e), 429, retryAfter(e.retryAfterMillis))
    : json(errorJson(e), 503, e.reason === "starting" ? retryAfter(e.retryAfterMillis) : undefined)

const invokeErrorResponse = (e: worker.InvokeError): Effect.Effect<HttpServerResponse.HttpServerResponse, never> => {
  switch (e._tag) {
    case "PayloadInvalid":
      return Effect.succeed(json(errorJson(e), 400))
    case "RemoteNotFound":
      return Effect.succeed(json(errorJson(e), 404))
    case "WorkerUnavailable":
      return Effect.succeed(unavailableResponse(e))
    case "CallTimeout":
      return Effect.succeed(json(errorJson(e), 504))
    case "CallFailed":
      return Effect.succeed(json(errorJson(e), 500))
    case "RemoteFailure": {
      // The reference's format: status 200, the error as an `obj` whose class is its tag, with its message kept.
      const encoded = e.encoded
      const message = (e.error as { message?: unknown } | null)?.message
      // An Error instance as its own encoded form (a schema of Unknown or instanceOf, the Promise facade's thrown
      // errors) goes as it is: Wire.err reads its name and its non-enumerable message.
      const value =
        encoded instanceof Error
          ? encoded
          : typeof encoded === "object" && encoded !== null && !Array.isArray(encoded)
            ? {
                ...encoded,
                ...(typeof message === "string" && !Object.hasOwn(encoded, "message") ? { message } : {})
              }
            : encoded
      return Wire.err(
        typeof value === "object" && value !== null ? value : { _tag: "Error", message: String(value) }
      ).pipe(
        Effect.map((body) => json(body, 200)),
        Effect.catchAll((encodeError) => encodeFailure(e.remote, encodeError))
      )
    }
  }
}

const encodeFailure = (remote: string, e: WireEncodeError) =>
  Effect.gen(function* () {
    const id = failureId()
    yield* Effect.logError(`Remote "${remote}" returned a value the wire format cannot carry [id ${id}]`, e)
    const error = new CallFailed({ remote, reason: "encode", detail: e.message, id })
    return json(errorJson(error), 500)
  })

let failureIds = 0
const failureId = (): string => `s${Date.now().toString(36)}-${(++failureIds).toString(36)}`

/** A defect of the server itself: logged with an id; the body carries the id and nothing else of the cause. */
const defectResponse = (remote: string, cause: Cause.Cause<unknown>) =>
  Effect.gen(function* () {
    const id = failureId()
    yield* Effect.logError(`Serving "${remote}" failed [id ${id}]`, cause)
    const error = new CallFailed({ remote, reason: "defect", detail: "internal error", id })
    return json(errorJson(error), 500)
  })

// ---------------------------------------------------------------------------
// body
// ---------------------------------------------------------------------------

/** Read a request body up to `limit` bytes; past it, stop reading (413 without buffering the rest). */
const readBody = (
  source: Http.IncomingMessage,
  limit: number
): Effect.Effect<Buffer, PayloadTooLarge | WireDecodeError> =>
  Effect.async((resume) => {
    const declared = Number(source.headers["content-length"])
    if (Number.isFinite(declared) && declared > limit) {
      resume(Effect.fail(new PayloadTooLarge({ limitBytes: limit })))
      return
    }
    const chunks: Array<Buffer> = []
    let size = 0
    const cleanup = () => {
      source.off("data", onData)
      source.off("end", onEnd)
      source.off("error", onError)
    }
    const onData = (chunk: Buffer) => {
      size += chunk.length
      if (size > limit) {
        cleanup()
        resume(Effect.fail(new PayloadTooLarge({ limitBytes: limit })))
      } else {
        chunks.push(chunk)
      }
    }
    const onEnd = () => {
      cleanup()
      resume(Effect.succeed(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)))
    }
    const onError = (error: Error) => {
      cleanup()
      resume(
        Effect.fail(
          new WireDecodeError({
            reason: "InvalidJson",
            path: "$",
            message: `could not read the body: ${error.message}`
          })
        )
      )
    }
    source.on("data", onData)
    source.on("end", onEnd)
    source.on("error", onError)
    return Effect.sync(cleanup)
  })

const parseJson = (body: Buffer): Either.Either<unknown, WireDecodeError> => {
  try {
    return Either.right(JSON.parse(body.toString("utf8")) as unknown)
  } catch (e) {
    return Either.left(
      new WireDecodeError({
        reason: "InvalidJson",
        path: "$",
        message: `the body is not JSON: ${e instanceof Error ? e.message : String(e)}`
      })
    )
  }
}

// ---------------------------------------------------------------------------
// auth
// ---------------------------------------------------------------------------

interface Authenticator {
  /** Checked before the body is read: a caller without the token sends nothing the worker reads. */
  readonly header: (request: HttpServerRequest.HttpServerRequest) => Unauthorized | undefined
  /** Checked once the envelope is decoded; `WorkerUnavailable` while the engine's key is not loaded yet. */
  readonly envelope: (envelope: Wire.Envelope) => Unauthorized | WorkerUnavailable | undefined
  /** Completes when the authenticator can decide (the public key is loaded). */
  readonly ready: Effect.Effect<boolean>
}

const fetchPublicKey = (reportAddr: string) =>
  Effect.gen(function* () {
    const client = yield* HttpClient.HttpClient
    const addresses = reportAddr
      .split(",")
      .map((a) => a.trim().replace(/\/+$/, ""))
      .filter((a) => a.length > 0)
    let lastError: unknown = undefined
    for (const address of addresses) {
      const result = yield* client.get(`${address}/pubkey/`).pipe(
        Effect.flatMap(HttpClientResponse.filterStatusOk),
        Effect.flatMap((response) => response.text),
        Effect.flatMap((pem) => Effect.try(() => parsePublicKey(pem))),
        Effect.either
      )
      if (Either.isRight(result)) return result.right
      lastError = result.left
    }
    return yield* Effect.fail(lastError)
  }).pipe(Effect.provide(FetchHttpClient.layer))

const makeAuthenticator = (auth: Auth): Effect.Effect<Authenticator, never, Scope.Scope> =>
  Effect.gen(function* () {
    switch (auth.mode) {
      case "none":
        return { header: () => undefined, envelope: () => undefined, ready: Effect.succeed(true) }
      case "token": {
        const token = Redacted.isRedacted(auth.token) ? Redacted.value(auth.token) : auth.token
        // An empty token would refuse every call while looking configured: fail loudly at start instead.
        if (token.trim() === "") return yield* Effect.dieMessage("auth token mode needs a non-empty token")
        return {
          header: (request) => {
            const header = request.headers["authorization"]
            if (header === undefined) return new Unauthorized({ reason: "missing", detail: "no Authorization header" })
            const match = /^Bearer\s+(.+)$/i.exec(header)
            if (match === null || !tokenEquals(match[1]!.trim(), token)) {
              return new Unauthorized({ reason: "invalid", detail: "the bearer token does not match" })
            }
            return undefined
          },
          envelope: () => undefined,
          ready: Effect.succeed(true)
        }
      }
      case "signed": {
        let key: Crypto.KeyObject | undefined =
          auth.publicKey === undefined ? undefined : parsePublicKey(auth.publicKey)
        const loaded = yield* Deferred.make<void>()
        if (key !== undefined) {
          yield* Deferred.succeed(loaded, undefined)
        } else if (auth.reportAddr !== undefined) {
          const reportAddr = auth.reportAddr
          yield* fetchPublicKey(reportAddr).pipe(
            Effect.tapError((e) =>
              Effect.logWarning(`Could not fetch the public key from ${reportAddr}/pubkey/; retrying`, e)
            ),
            Effect.retry(Schedule.exponential("200 millis").pipe(Schedule.union(Schedule.spaced("10 seconds")))),
            Effect.flatMap((k) =>
              Effect.sync(() => {
                key = k
              })
            ),
            Effect.zipRight(Deferred.succeed(loaded, undefined)),
            Effect.forkScoped
          )
        }
        return {
          header: () => undefined,
          envelope: (envelope) => {
            if (key === undefined) {
              return new WorkerUnavailable({ reason: "starting", detail: "the engine's public key is not loaded yet" })
            }
            const data = envelope.auth_data
            if (data?.signature === undefined || data.url === undefined) {
              return new Unauthorized({
                reason: "missing",
                detail: "auth_data.signature and auth_data.url are required"
              })
            }
            return verifySignature({ publicKeyPem: key, url: data.url, signatureBase64: data.signature })
              ? undefined
              : new Unauthorized({ reason: "invalid", detail: "the signature does not match auth_data.url" })
          },
          ready: Deferred.isDone(loaded)
        }
      }
    }
  })

// ---------------------------------------------------------------------------
// engine reports
// ---------------------------------------------------------------------------

// Calls without `auth_data.reqnum` get ids of their own, negative so they never meet the engine's.
let syntheticReqnums = 0

/**
 * One HTTP call as the engine sees it. The worker's observer opens it (admitted, or refused with a 429); `end` closes
 * it once the response is decided. A call that was never admitted (bad payload, 401, 503) is not reported.
 */
interface Tracked {
  auth: Wire.AuthData | undefined
  succeeded: boolean
  readonly observer: worker.CallObserver
  readonly end: (exit: Exit.Exit<unknown, unknown>) => void
}

const track = (reporter: EngineReport.Reporter, clock: Clock.Clock): Tracked => {
  const now = () => clock.unsafeCurrentTimeMillis() / 1000
  let call: EngineReport.Call | undefined
  const open = (workload: number): EngineReport.Call => ({
    requestIdx: tracked.auth?.request_idx,
    reqnum: tracked.auth?.reqnum ?? --syntheticReqnums,
    workload,
    enteredQueueAt: now(),
    workStartedAt: 0,
    workCompletedAt: 0,
    status: "Started"
  })
  const tracked: Tracked = {
    auth: undefined,
    succeeded: false,
    observer: {
      admitted: (workload) => {
        call = open(workload)
        reporter.started(call)
      },
      started: () => {
        if (call !== undefined) call.workStartedAt = now()
      },
      rejected: (workload) => {
        const refused = open(workload)
        refused.workCompletedAt = refused.enteredQueueAt
        reporter.rejected(refused)
      }
    },
    end: (exit) => {
      if (call === undefined) return
      // Cancelled only when the client went away; the worker interrupting a call (shutdown) is an Error.
      const status =
        Exit.isFailure(exit) && HashSet.has(Cause.interruptors(exit.cause), clientAbortFiberId)
          ? "Cancelled"
          : tracked.succeeded
            ? "Success"
            : "Error"
      reporter.finished(call, status, now())
      call = undefined
    }
  }
  return tracked
}

// ---------------------------------------------------------------------------
// the app
// ---------------------------------------------------------------------------

const makeApp = <Provides, Remotes extends Remote.Any>(
  w: worker.Worker<Provides, Remotes>,
  options: Resolved,
  authenticator: Authenticator,
  reporter: EngineReport.Reporter | undefined,
  clock: Clock.Clock
) => {
  const call = (name: string, tracked: Tracked | undefined) =>
    Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      const denied = authenticator.header(request)
      if (denied !== undefined) return json(errorJson(denied), 401, { "www-authenticate": "Bearer" })
      const body = yield* Effect.either(readBody(NodeHttpServerRequest.toIncomingMessage(request), options.maxBodySize))
      if (Either.isLeft(body)) {
        const e = body.left
        return e._tag === "PayloadTooLarge" ? json(errorJson(e), 413, { connection: "close" }) : json(errorJson(e), 400)
      }
      const parsed = parseJson(body.right)
      if (Either.isLeft(parsed)) return json(errorJson(parsed.left), 400)
      const envelope = yield* Effect.either(Wire.decodeEnvelope(parsed.right))
      if (Either.isLeft(envelope)) return json(errorJson(envelope.left), 400)
      if (tracked !== undefined) tracked.auth = envelope.right.auth_data
      const refused = authenticator.envelope(envelope.right)
      if (refused !== undefined) {
        return refused._tag === "Unauthorized" ? json(errorJson(refused), 401) : unavailableResponse(refused)
      }
      const remote = w.deployment.remotes.get(name)
      // Through invoke, so the call is counted and the error lists the known remotes.
      if (remote === undefined) return yield* Effect.flatMap(Effect.flip(w.invoke(name, {})), invokeErrorResponse)
      const args = yield* Effect.either(Wire.decodeArguments(envelope.right))
      if (Either.isLeft(args)) return json(errorJson(args.left), 400)
      const fields = yield* Effect.either(
        Wire.bindArgs(remote.fields, args.right.args, args.right.kwargs, {
          anyKeyword: remote.anyKeyword
        })
      )
      if (Either.isLeft(fields)) return json(errorJson(fields.left), 400)
      const result = yield* Effect.either(w.invoke(name, fields.right, tracked?.observer))
      if (Either.isLeft(result)) return yield* invokeErrorResponse(result.left)
      return yield* Effect.matchEffect(Wire.ok(result.right), {
        onSuccess: (ok) => {
          if (tracked !== undefined) tracked.succeeded = true
          return Effect.succeed(json(ok, 200))
        },
        onFailure: (e) => encodeFailure(name, e)
      })
    }).pipe(
      Effect.catchAllCause((cause) =>
        Cause.isInterruptedOnly(cause)
          ? // The call was interrupted by the worker (shutdown after the grace period), not by this client.
            Effect.succeed(
              json(
                errorJson(
                  new CallFailed({
                    remote: name,
                    reason: "interrupted",
                    detail: "interrupted when the worker shut down"
                  })
                ),
                503
              )
            )
          : defectResponse(name, cause)
      )
    )

  const health = Effect.map(SubscriptionRef.get(w.status), (status) =>
    json({ status: "alive", deployment: w.deployment.name, phase: status.phase, since: status.since }, 200)
  )

  const ready = Effect.gen(function* () {
    const report = yield* w.report
    const keyReady = yield* authenticator.ready
    const isReady = report.phase === "ready" && keyReady
    return json(
      {
        ready: isReady,
        phase: report.phase,
        ...(report.phase === "ready" && !keyReady ? { waitingFor: "the engine's public key" } : {}),
        report
      },
      isReady ? 200 : 503
    )
  })

  const metrics = Effect.map(w.metrics, (snapshot) =>
    HttpServerResponse.text(Metrics.renderPrometheus(snapshot), { contentType: "text/plain; version=0.0.4" })
  )

  const methodNotAllowed = (allow: string) =>
    Effect.map(HttpServerRequest.HttpServerRequest, (request) =>
      json(
        { _tag: "MethodNotAllowed", message: `${request.method} is not allowed on ${request.url}; use ${allow}` },
        405,
        { allow }
      )
    )

  return HttpRouter.empty.pipe(
    HttpRouter.post(
      "/remote/:name",
      Effect.flatMap(HttpRouter.params, (params) => {
        const name = params["name"] ?? ""
        if (reporter === undefined) return call(name, undefined)
        const tracked = track(reporter, clock)
        return Effect.onExit(call(name, tracked), (exit) => Effect.sync(() => tracked.end(exit)))
      })
    ),
    HttpRouter.get("/health", health),
    HttpRouter.get("/ready", ready),
    HttpRouter.get("/metrics", metrics),
    otherMethods("/remote/:name", "POST", methodNotAllowed("POST")),
    otherMethods("/health", "GET", methodNotAllowed("GET")),
    otherMethods("/ready", "GET", methodNotAllowed("GET")),
    otherMethods("/metrics", "GET", methodNotAllowed("GET")),
    HttpRouter.all("*", notFound)
  )
}

/** A JSON 404 for a path the worker does not serve. */
const notFound = Effect.map(HttpServerRequest.HttpServerRequest, (request) =>
  json(
    {
      _tag: "RouteNotFound",
      message: `No route ${request.method} ${request.url}; routes: POST /remote/<name>, GET /health, GET /ready, GET /metrics`
    },
    404
  )
)

const METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"] as const

/** Route every method but `allowed` on `path` to `handler` (a 405: the path exists, the method does not). */
const otherMethods =
  (
    path: HttpRouter.PathInput,
    allowed: (typeof METHODS)[number],
    handler: Effect.Effect<HttpServerResponse.HttpServerResponse, never, HttpServerRequest.HttpServerRequest>
  ) =>
  <E, R>(router: HttpRouter.HttpRouter<E, R>): HttpRouter.HttpRouter<E, R> => {
    let routed = router
    for (const method of METHODS) if (method !== allowed) routed = HttpRouter.route(method)(path, handler)(routed)
    return routed
  }

// ---------------------------------------------------------------------------
// serving
// ---------------------------------------------------------------------------

const formatUrl = (address: HttpServer.Address): string =>
  address._tag === "UnixAddress"
    ? `unix://${address.path}`
    : `http://${address.hostname.includes(":") ? `[${address.hostname}]` : address.hostname}:${address.port}`

/** Serve a deployment on the `HttpServer` in context. @internal */
export const serveWith = <Provides, E, Remotes extends Remote.Any>(
  deployment: Deployment.Deployment<Provides, E, Remotes>,
  options: Resolved
): Effect.Effect<Served<Provides, Remotes>, never, HttpServer.HttpServer | Scope.Scope> =>
  Effect.gen(function* () {
    const server = yield* HttpServer.HttpServer
    // Signals first: its listener is released last, so a second signal cannot kill the process during the exits.
    const signaled = yield* Deferred.make<NodeJS.Signals>()
    if (options.handleSignals) yield* handleSignals(signaled)

    const authenticator = yield* makeAuthenticator(options.auth)
    // The routes need the worker, and the worker must start after the listener so that its finalizer (drain, exits)
    // runs before the listener goes: until the exits are done, calls get a 503 instead of a refused connection.
    let routes:
      Effect.Effect<HttpServerResponse.HttpServerResponse, unknown, HttpServerRequest.HttpServerRequest> | undefined
    const notYet = json(errorJson(new WorkerUnavailable({ reason: "starting", detail: "the worker is starting" })), 503)
    yield* HttpServer.serveEffect(Effect.suspend(() => routes ?? Effect.succeed(notYet)))
    // The reporter starts before the worker (its first status says "not loaded") and stops after it: its fiber is
    // interrupted, sending the last status and the calls drained, only once the worker's finalizers have run.
    const reporter = options.report === undefined ? undefined : yield* EngineReport.make(options.report)
    if (reporter !== undefined) yield* Effect.forkScoped(Effect.provide(reporter.run, FetchHttpClient.layer))
    const w = yield* worker.start(deployment, options)
    const app = yield* HttpRouter.toHttpApp(makeApp(w, options, authenticator, reporter, yield* Effect.clock)).pipe(
      // The router's default (100 characters) refuses a longer remote name before any route runs.
      HttpRouter.withRouterConfig({ maxParamLength: 1024 })
    )
    // What the router still matches to nothing (a path segment over that limit) gets the same JSON 404.
    routes = Effect.catchIf(
      app,
      (e: unknown) => (e as { _tag?: unknown })._tag === "RouteNotFound",
      () => notFound
    )
    if (reporter !== undefined) yield* reportStartup(w, reporter)

    yield* Effect.addFinalizer((scopeExit) =>
      Effect.gen(function* () {
        // The contexts are told how the scope ended (an interruption when runMain stops on a signal). The process
        // exit code: non-zero when an exit failed or start-up failed on its own (not by a signal).
        const exit = yield* Effect.exit(w.shutdownWith(scopeExit))
        if (Exit.isFailure(exit)) return yield* Effect.die(Cause.squash(exit.cause))
        const report = yield* w.report
        if (report.phase === "failed") {
          const startup = yield* Effect.exit(w.awaitReady)
          if (Exit.isFailure(startup)) return yield* Effect.die(Cause.squash(startup.cause))
        }
      })
    )

    yield* Deferred.await(signaled).pipe(
      Effect.flatMap((signal) => Effect.logInfo(`${signal}: draining, then exiting every context`)),
      // A signal ends the worker by interruption: that is what each context's `exit` is told.
      Effect.zipRight(Effect.ignore(w.shutdownWith(Exit.interrupt(FiberId.none)))),
      Effect.forkScoped
    )

    return { worker: w, address: server.address, url: formatUrl(server.address) }
  })

/**
 * Readiness at once: `max_perf` is the benchmark score (0 when the benchmark is off), `loadtime` the seconds since the
 * process started (as the reference counts it: imports and runtime start-up are part of a cold start). A failed
 * start-up sends its message, kept in every later status; a shutdown during start-up is not reported as a failure.
 */
const reportStartup = <Provides, Remotes extends Remote.Any>(
  w: worker.Worker<Provides, Remotes>,
  reporter: EngineReport.Reporter
) =>
  w.awaitReady.pipe(
    Effect.zipRight(w.report),
    Effect.flatMap((report) => reporter.loaded(report.benchmark?.score ?? 0, process.uptime())),
    Effect.catchAll((e) => (e.reason === "interrupted" ? Effect.void : reporter.failed(e.message))),
    Effect.forkScoped
  )

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

/** Serve a deployment on a Node HTTP server of its own. @internal */
export const serveEffect = <Provides, E, Remotes extends Remote.Any>(
  deployment: Deployment.Deployment<Provides, E, Remotes>,
  options: ServeOptions = {}
): Effect.Effect<Served<Provides, Remotes>, ServeError | ConfigError.ConfigError, Scope.Scope> =>
  Effect.gen(function* () {
    const resolved = yield* resolve(options)
    let nodeServer: Http.Server | undefined
    const server = yield* NodeHttpServer.make(() => (nodeServer = Http.createServer()), {
      port: resolved.port,
      ...(resolved.host === undefined ? {} : { host: resolved.host })
    })
    // Runs after the worker's shutdown (drain, exits) and before the listener closes. Closing waits for open
    // connections, and a client that sent headers but never its body would hold the process for Node's 5-minute
    // request timeout: give answered connections a moment to flush, then cut what is left.
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        setTimeout(() => nodeServer?.closeAllConnections(), CLOSE_GRACE_MILLIS).unref()
      })
    )
    return yield* Effect.provideService(serveWith(deployment, resolved), HttpServer.HttpServer, server)
  })

/** `serveEffect` as a layer, logging the address, the start-up report and readiness. @internal */
export const serve = <Provides, E, Remotes extends Remote.Any>(
  deployment: Deployment.Deployment<Provides, E, Remotes>,
  options: ServeOptions = {},
  formatReport: (report: worker.Report) => string
): Layer.Layer<never, ServeError | ConfigError.ConfigError> =>
  Layer.scopedDiscard(
    Effect.gen(function* () {
      const served = yield* serveEffect(deployment, options)
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
