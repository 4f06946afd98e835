/**
 * Every public error of effect-deployments.
 *
 * Errors that can cross the wire are `Schema.TaggedError`s with a `reason` literal where one error has several causes;
 * tell them apart by `_tag` and `reason`, never by parsing `message`.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"

/**
 * A context lookup failed (the `KeyError` of the reference's `get_context`).
 *
 * - `not-registered`: no context with this key is part of the deployment that runs the lookup.
 * - `not-entered`: the context is registered but has not finished entering, failed to enter, or has already exited.
 */
export class ContextNotFound extends Schema.TaggedError<ContextNotFound>()("ContextNotFound", {
  key: Schema.String,
  reason: Schema.Literal("not-registered", "not-entered"),
  state: Schema.optional(Schema.String)
}) {
  override get message(): string {
    return this.reason === "not-registered"
      ? `Context "${this.key}" is not registered with this deployment`
      : `Context "${this.key}" is registered but not entered (state: ${this.state ?? "unknown"})`
  }
}

/** A context's `enter` or `exit` did not finish within its timeout. */
export class ContextTimeout extends Schema.TaggedError<ContextTimeout>()("ContextTimeout", {
  key: Schema.String,
  phase: Schema.Literal("enter", "exit"),
  timeoutMillis: Schema.Number
}) {
  override get message(): string {
    return `Context "${this.key}" did not ${this.phase} within ${this.timeoutMillis} ms`
  }
}

/** One failing field of a payload. `path` is the field path, e.g. `["image"]` or `["boxes", 2, "x"]`. */
export class FieldIssue extends Schema.Class<FieldIssue>("FieldIssue")({
  path: Schema.Array(Schema.Union(Schema.String, Schema.Number)),
  message: Schema.String
}) {}

/** A call's payload did not decode against the remote's payload schema. Lists every failing field. */
export class PayloadInvalid extends Schema.TaggedError<PayloadInvalid>()("PayloadInvalid", {
  remote: Schema.String,
  issues: Schema.Array(FieldIssue)
}) {
  override get message(): string {
    const fields = this.issues.map((i) => `${i.path.length === 0 ? "(payload)" : i.path.join(".")}: ${i.message}`)
    return `Invalid payload for remote "${this.remote}": ${fields.join("; ")}`
  }
}

/** A call named a remote function that the deployment does not have. */
export class RemoteNotFound extends Schema.TaggedError<RemoteNotFound>()("RemoteNotFound", {
  remote: Schema.String,
  known: Schema.Array(Schema.String)
}) {
  override get message(): string {
    return `No remote function "${this.remote}"; known: ${this.known.join(", ") || "(none)"}`
  }
}

/**
 * The worker cannot take the call.
 *
 * - `starting`: contexts are still entering.
 * - `draining` / `stopped`: the worker is shutting down.
 * - `failed`: start-up failed.
 * - `queue-full`: the remote's queue is at `maxQueue` (or its estimated wait exceeds `maxQueueTime`).
 * - `session-limit`: the worker holds its maximum of open sessions (`WORKER_MAX_SESSIONS`); a new one is refused.
 * - `unreachable`: a client could not reach the worker (connection refused or reset).
 */
export class WorkerUnavailable extends Schema.TaggedError<WorkerUnavailable>()("WorkerUnavailable", {
  reason: Schema.Literal("starting", "draining", "stopped", "failed", "queue-full", "session-limit", "unreachable"),
  detail: Schema.optional(Schema.String),
  /** When it is worth trying again (the HTTP `Retry-After`), if the worker can tell. */
  retryAfterMillis: Schema.optional(Schema.Number)
}) {
  override get message(): string {
    return `Worker unavailable (${this.reason})${this.detail ? `: ${this.detail}` : ""}`
  }
}

/** A call ran past the worker's per-call timeout and was interrupted. */
export class CallTimeout extends Schema.TaggedError<CallTimeout>()("CallTimeout", {
  remote: Schema.String,
  timeoutMillis: Schema.Number
}) {
  override get message(): string {
    return `Remote "${this.remote}" did not finish within ${this.timeoutMillis} ms`
  }
}

/**
 * A call failed for a reason other than the remote's declared error: a defect in the handler (`defect`, with an `id`
 * to find it in the worker's log), an undecodable result (`encode`), or a transport fault seen by a client (`transport`,
 * `protocol`).
 */
export class CallFailed extends Schema.TaggedError<CallFailed>()("CallFailed", {
  remote: Schema.String,
  reason: Schema.Literal("defect", "encode", "transport", "protocol", "interrupted"),
  detail: Schema.String,
  id: Schema.optional(Schema.String)
}) {
  override get message(): string {
    return `Remote "${this.remote}" failed (${this.reason}): ${this.detail}${this.id ? ` [id ${this.id}]` : ""}`
  }
}

/**
 * A remote's image argument is not an image it can read; remotes that take image bytes declare it as their `error`,
 * so a caller sending the wrong bytes gets a typed failure and the worker keeps serving.
 *
 * - `UnknownFormat`: neither JPEG nor PNG (told by the magic bytes).
 * - `TooLarge`: over the resolution limit, refused from the header before decoding.
 * - `Corrupt`: the header or the data cannot be decoded.
 *
 * `message` says what was expected and what arrived, e.g. "expected a JPEG or PNG image, got 4 bytes starting with
 * 47 49 46 38".
 *
 * @example
 * ```ts
 * const detect = Remote.make("detect", {
 *   payload: Schema.Struct({ image: Schema.Uint8ArrayFromSelf }),
 *   success: Schema.Array(Vision.Detection),
 *   error: ImageInvalid
 * }, ({ image }) => ...)
 * ```
 */
export class ImageInvalid extends Schema.TaggedError<ImageInvalid>()("ImageInvalid", {
  reason: Schema.Literal("UnknownFormat", "TooLarge", "Corrupt"),
  message: Schema.String
}) {}

/** One context's outcome in a failed start-up or shutdown. */
export class ContextFailure extends Schema.Class<ContextFailure>("ContextFailure")({
  key: Schema.String,
  reason: Schema.Literal("failed", "timed-out", "interrupted"),
  detail: Schema.String
}) {}

/**
 * Start-up failed: `context` is the context that failed first (or the benchmarked remote when `reason` is
 * `benchmark-failed`); every context in `rolledBack` was entered and then exited again, with the failure.
 */
export class StartupFailed extends Schema.TaggedError<StartupFailed>()("StartupFailed", {
  context: Schema.String,
  reason: Schema.Literal("failed", "timed-out", "interrupted", "benchmark-failed"),
  detail: Schema.String,
  rolledBack: Schema.Array(Schema.String),
  rollbackFailures: Schema.Array(ContextFailure)
}) {
  override get message(): string {
    return (
      `Start-up failed: context "${this.context}" ${this.reason === "timed-out" ? "timed out" : this.reason}: ${this.detail}` +
      `; rolled back: ${this.rolledBack.length === 0 ? "(none)" : this.rolledBack.join(", ")}` +
      (this.rollbackFailures.length > 0
        ? `; rollback failures: ${this.rollbackFailures.map((f) => `${f.key} (${f.detail})`).join(", ")}`
        : "")
    )
  }
}

/** Shutdown finished, but one or more contexts failed or timed out in `exit`. Every context was still exited once. */
export class ShutdownFailed extends Schema.TaggedError<ShutdownFailed>()("ShutdownFailed", {
  failures: Schema.Array(ContextFailure)
}) {
  override get message(): string {
    return `Shutdown: ${this.failures.length} context exit(s) failed: ${this.failures
      .map((f) => `${f.key} ${f.reason}: ${f.detail}`)
      .join("; ")}`
  }
}

/**
 * The deployment definition is inconsistent. Raised by `Deployment.make`, like a decorator error in the reference.
 * (`batch-size-unmeasured`: a remote with `batch: { maxSize: "auto" }` is not the one that declares the benchmark,
 * so nothing would choose its size.)
 */
export class DeploymentInvalid extends Schema.TaggedError<DeploymentInvalid>()("DeploymentInvalid", {
  reason: Schema.Literal(
    "duplicate-remote",
    "duplicate-context",
    "benchmark-missing",
    "benchmark-multiple",
    "benchmark-input-invalid",
    "batch-size-unmeasured",
    "dependency-missing",
    "dependency-cycle"
  ),
  names: Schema.Array(Schema.String),
  detail: Schema.String
}) {
  override get message(): string {
    return this.detail
  }
}

/**
 * A remote failed with its declared error. `error` is the error value; `encoded` is its encoded form (by the remote's
 * `error` schema), which is what crosses the wire.
 */
export class RemoteFailure extends Schema.TaggedError<RemoteFailure>()("RemoteFailure", {
  remote: Schema.String,
  error: Schema.Unknown,
  encoded: Schema.Unknown
}) {
  override get message(): string {
    const e = this.error as { message?: unknown; _tag?: unknown }
    return `Remote "${this.remote}" failed: ${typeof e?.message === "string" ? e.message : String(e?._tag ?? e)}`
  }
}

/** The benchmark could not produce a score: a call failed, or the generator did. Start-up fails with it. */
export class BenchmarkFailed extends Schema.TaggedError<BenchmarkFailed>()("BenchmarkFailed", {
  remote: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    return `Benchmark of "${this.remote}" failed: ${this.detail}`
  }
}

// ---------------------------------------------------------------------------
// wire format
// ---------------------------------------------------------------------------

/**
 * Why a reference-encoded JSON value could not be decoded.
 *
 * - `InvalidBytes`: a `bytes` form whose `contents` is not padded standard base64.
 * - `UnknownType`: a `{"type": ..., "contents": ...}` form whose `type` is not one of the reference's.
 * - `InvalidShape`: a known form with missing or mistyped parts, or something that is not JSON at all.
 * - `TooDeep`: nesting beyond the depth limit (a hostile body must not exhaust the stack).
 * - `ForbiddenKey`: an object key (or dict key) `__proto__`, which JavaScript would turn into a prototype.
 * - `InvalidEnvelope`: the request body does not match the envelope.
 * - `InvalidJson`: the request body (or a line of a stream answer) is not JSON at all.
 * - `Truncated`: a stream answer stopped before its closing `end` or `err` line (the connection was cut).
 */
export const WireDecodeReason = Schema.Literal(
  "InvalidBytes",
  "UnknownType",
  "InvalidShape",
  "TooDeep",
  "ForbiddenKey",
  "InvalidEnvelope",
  "InvalidJson",
  "Truncated"
)

/** The `reason` literals of the matching error, as a type. */
export type WireDecodeReason = typeof WireDecodeReason.Type

/**
 * A request value (or the request envelope) could not be decoded. `path` is the JSON path of the offending value in
 * the wire JSON, e.g. `$.payload.kwargs.image.contents`.
 */
export class WireDecodeError extends Schema.TaggedError<WireDecodeError>()("WireDecodeError", {
  reason: WireDecodeReason,
  path: Schema.String,
  message: Schema.String
}) {}

/**
 * Why a JS value could not be encoded for the wire.
 *
 * - `UnsupportedValue`: no reference form carries it (bigint, function, symbol, Set, Date, class instances...).
 * - `NonFiniteNumber`: `NaN` or `±Infinity` (JSON has no spelling for them).
 * - `Cycle`: the value contains itself.
 * - `TooDeep`: nesting beyond the depth limit.
 */
export const WireEncodeReason = Schema.Literal("UnsupportedValue", "NonFiniteNumber", "Cycle", "TooDeep")

/** The `reason` literals of the matching error, as a type. */
export type WireEncodeReason = typeof WireEncodeReason.Type

/**
 * A result (or error) could not be encoded. `path` is the JS path of the offending value inside what was encoded,
 * e.g. `$.items[3].score`.
 */
export class WireEncodeError extends Schema.TaggedError<WireEncodeError>()("WireEncodeError", {
  reason: WireEncodeReason,
  path: Schema.String,
  message: Schema.String
}) {}

/**
 * Why call arguments could not be bound to a remote function's fields (the reference answers these with Python's
 * `TypeError`).
 *
 * - `TooManyPositional`: more positional arguments than declared fields.
 * - `DuplicateArgument`: a field given both positionally and by keyword.
 * - `UnknownKeyword`: a keyword that names no field.
 */
export const WireArgumentReason = Schema.Literal("TooManyPositional", "DuplicateArgument", "UnknownKeyword")

/** The `reason` literals of the matching error, as a type. */
export type WireArgumentReason = typeof WireArgumentReason.Type

/**
 * Call arguments do not fit the remote function's fields. `field` names the field (or keyword) at fault; it is absent
 * for `TooManyPositional`, where no field is at fault.
 */
export class WireArgumentError extends Schema.TaggedError<WireArgumentError>()("WireArgumentError", {
  reason: WireArgumentReason,
  field: Schema.optional(Schema.String),
  message: Schema.String
}) {}

// ---------------------------------------------------------------------------
// serving
// ---------------------------------------------------------------------------

/**
 * A call was refused before anything ran (HTTP 401).
 *
 * - `missing`: no bearer token, or no `auth_data.signature` / `auth_data.url`.
 * - `invalid`: the token or the signature does not match.
 */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()("Unauthorized", {
  reason: Schema.Literal("missing", "invalid"),
  detail: Schema.String
}) {
  override get message(): string {
    return `Unauthorized (${this.reason}): ${this.detail}`
  }
}

/** A request body was larger than the worker's limit (HTTP 413). */
export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>()("PayloadTooLarge", {
  limitBytes: Schema.Number
}) {
  override get message(): string {
    return `Request body larger than ${this.limitBytes} bytes`
  }
}

/** The HTTP server could not listen (the port is taken, the address is not this machine's, no permission). */
export class ListenFailed extends Schema.TaggedError<ListenFailed>()("ListenFailed", {
  host: Schema.optional(Schema.String),
  port: Schema.Number,
  detail: Schema.String
}) {
  override get message(): string {
    return `Could not listen on ${this.host ?? "every interface"} port ${this.port}: ${this.detail}`
  }
}

// ---------------------------------------------------------------------------
// sessions
// ---------------------------------------------------------------------------

/**
 * `/session/get` or `/session/end` named a session this worker never had (or has forgotten: it remembers the last
 * ids it closed, not all of them). The reference answers 400.
 */
export class SessionNotFound extends Schema.TaggedError<SessionNotFound>()("SessionNotFound", {
  sessionId: Schema.String
}) {
  override get message(): string {
    return `No session "${this.sessionId}" on this worker`
  }
}

/**
 * A session is no longer open (the reference answers 410, and its Python client then marks the session closed).
 *
 * - `ended`: `/session/end` closed it.
 * - `expired`: its expiration passed with no call extending it.
 * - `shutdown`: the worker stopped.
 * - `unknown`: a call named a session id this worker does not know (the reference answers 410 for it too).
 *
 * A call still running in a session when the session closes fails with it.
 */
export class SessionGone extends Schema.TaggedError<SessionGone>()("SessionGone", {
  sessionId: Schema.String,
  reason: Schema.Literal("ended", "expired", "shutdown", "unknown")
}) {
  override get message(): string {
    return this.reason === "unknown"
      ? `Session "${this.sessionId}" is not open on this worker`
      : `Session "${this.sessionId}" is closed (${this.reason})`
  }
}

/** Session state (`Session.local`, `Session.addFinalizer`) was asked for by a call that belongs to no session. */
export class SessionRequired extends Schema.TaggedError<SessionRequired>()("SessionRequired", {
  what: Schema.String
}) {
  override get message(): string {
    return `${this.what} needs a call made in a session (an envelope with "session_id")`
  }
}

// ---------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------

/**
 * The worker was told to serve TLS (`USE_SSL=true`) but cannot: a start-up error naming the file at fault.
 *
 * - `missing`: no file at `path`.
 * - `unreadable`: the file exists but cannot be read (permissions, a directory, ...).
 * - `invalid`: the file is not a PEM certificate / private key, or the key does not belong to the certificate.
 */
export class TlsConfigInvalid extends Schema.TaggedError<TlsConfigInvalid>()("TlsConfigInvalid", {
  reason: Schema.Literal("missing", "unreadable", "invalid"),
  /** `WORKER_TLS_CERT` or `WORKER_TLS_KEY`: which setting named the file. */
  setting: Schema.String,
  path: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    const what =
      this.reason === "missing" ? "does not exist" : this.reason === "unreadable" ? "cannot be read" : "is invalid"
    return `TLS: ${this.setting} file ${this.path} ${what}: ${this.detail}`
  }
}

// ---------------------------------------------------------------------------
// threads
// ---------------------------------------------------------------------------

/**
 * A threaded context (`ThreadedContext.make`) could not run a call or could not start.
 *
 * - `start`: a thread failed to start or to enter its contexts (start-up fails and every thread is rolled back), or
 *   its module does not export a `ThreadedContext.runner`.
 * - `died`: the thread running the call exited or crashed before answering; the pool replaces it.
 * - `unavailable`: no thread is alive (every one died and none could be replaced yet).
 * - `stopped`: the pool is shutting down and takes no more calls.
 *
 * `context` is the threaded context's key, `thread` the thread's number (1, 2, ...; a replacement gets the next
 * number), `request` the request's `_tag`. Remotes that forward calls to a pool may declare it as (part of) their
 * `error`, so that a caller learns the call can be retried.
 */
export class ThreadFailed extends Schema.TaggedError<ThreadFailed>()("ThreadFailed", {
  reason: Schema.Literal("start", "died", "unavailable", "stopped"),
  context: Schema.String,
  thread: Schema.optional(Schema.Number),
  request: Schema.optional(Schema.String),
  detail: Schema.String
}) {
  override get message(): string {
    const thread = this.thread === undefined ? "" : ` thread ${this.thread}`
    const request = this.request === undefined ? "" : ` (${this.request})`
    switch (this.reason) {
      case "start":
        return `Threaded context "${this.context}":${thread} failed to start: ${this.detail}`
      case "died":
        return `Threaded context "${this.context}":${thread} died while running a call${request}: ${this.detail}`
      case "unavailable":
        return `Threaded context "${this.context}": no thread available${request}: ${this.detail}`
      case "stopped":
        return `Threaded context "${this.context}" is stopping${request}: ${this.detail}`
    }
  }
}
