/**
 * The call pipeline of `POST /remote/<name>`, top to bottom:
 *
 *   media type -> read the body (bounded in size and time) -> JSON -> depth check -> envelope -> auth -> remote -> arguments -> bind -> decode the
 *   payload -> admit (concurrency, queue) -> run the handler (a fiber with the entered contexts) -> encode -> write
 *
 * Every step before the handler is synchronous and fails with a typed error; the handler runs in a fiber forked at
 * once, and the answer is written as soon as its exit is known (synchronously, for a synchronous handler). How the call
 * ended (its `Outcome`) is decided in one place, `finish`, which writes the response from the one error table
 * (respond.ts) and records the metrics and the engine report from the same value.
 *
 * A stream remote's call differs only in its fiber: it writes the status and the element lines as they come
 * (streamResponse.ts), and `finish` writes the closing line (`end`, or `err` for a failure after the status was sent).
 */
import { Cause, Duration, Effect, Either, Exit, FiberId, HashSet, Option, ParseResult } from "effect"
import type { Fiber } from "effect"
import type * as Http from "node:http"
import * as EngineReport from "../EngineReport.js"
import type * as Session from "../Session.js"
import * as Wire from "../Wire.js"
import type { Resolved } from "../WorkerConfig.js"
import {
  CallFailed,
  PayloadTooLarge,
  RemoteNotFound,
  WireDecodeError,
  WireEncodeError,
  WorkerUnavailable
} from "../WorkerError.js"
import type { CallTimeout, RemoteFailure, SessionGone } from "../WorkerError.js"
import type * as Authenticator from "./auth.js"
import type { BodyDeadlines } from "./deadlines.js"
import type * as Metrics from "./metrics.js"
import type * as Sessions from "./sessions.js"
import { pythonClass } from "./python.js"
import { errorResponse, okResponse } from "./respond.js"
import type { RequestTimeout, Response, ServeError, UnsupportedMediaType } from "./respond.js"
import * as streamResponse from "./streamResponse.js"
import * as wire from "./wire.js"
import { failureId } from "./worker.js"
import type { Admitted, Core, Entry, Started } from "./worker.js"

/** What the pipeline needs from the server around it. */
export interface Context {
  readonly core: Core<any, any>
  readonly config: Resolved
  readonly auth: Authenticator.Authenticator
  readonly reporter: EngineReport.Reporter | undefined
  readonly sessions: Sessions.Manager
  /** Requests whose body is still arriving, expired by the body timeout. */
  readonly deadlines: BodyDeadlines
  /** Whether the server is going away: every answer then closes its connection (`Connection: close`). */
  readonly closing: () => boolean
}

/**
 * A call's answer (200): the encoded body, and what it is: the remote's success, its declared error, or its own failure
 * sent as an error the caller can read (a result the wire cannot carry, a defect in the handler). The last two are
 * 200 too: the reference's Python client retries a 5xx without end, and retrying a remote's own failure cannot help.
 * For a stream remote, the closing line (its item lines are written already).
 */
interface Answer {
  readonly outcome: "ok" | "error" | "unencodable" | "defect"
  readonly body: string
}

/** How one call ended: exactly one of these reaches `finish`. */
type Outcome =
  | { readonly _tag: "Answered"; readonly answer: Answer }
  | { readonly _tag: "Refused"; readonly error: ServeError; readonly admitted: boolean }
  | { readonly _tag: "Defect"; readonly cause: Cause.Cause<unknown> }
  | { readonly _tag: "Cancelled" }
  | { readonly _tag: "Interrupted" }

/** The fiber id that interrupts a call whose client went away (the engine report calls it `Cancelled`). */
const clientGone = FiberId.make(-1, 0)

/** One call's state as it moves down the pipeline. */
class Call {
  name: string | undefined
  auth: Wire.AuthData | undefined
  engine: EngineReport.Call | undefined
  /** The session the call belongs to: its `request_idx` is the session's, reported when the session closes. */
  session: Session.Session | undefined
  /** The envelope named a session (open or not): the call is never reported on its own. */
  inSession = false
  /** A stream remote's call: before its first element its errors keep their statuses (its clients read NDJSON). */
  stream = false
  /** Already sent to the engine's accounting (a 429 from admission). */
  reported = false
  admitted = false
  finished = false
  /** A stream answer's status was sent: the call ends with a closing line, whatever happens. */
  streamed = false
  /** Elements sent (a stream remote's). */
  items = 0
  constructor(
    readonly ctx: Context,
    readonly req: Http.IncomingMessage,
    readonly res: Http.ServerResponse,
    readonly startedAt: number
  ) {}
}

const now = (): number => performance.timeOrigin + performance.now()

/** Handle `POST /remote/<name>`. */
export const handle = (ctx: Context, name: string, req: Http.IncomingMessage, res: Http.ServerResponse): void => {
  const call = new Call(ctx, req, res, now())
  // 1. Auth by header (a token) before anything is read: a caller without it sends nothing the worker reads.
  const denied = ctx.auth.header(req.headers)
  if (denied !== undefined) return refuse(call, denied)
  // 2. JSON only (or no type at all): a form or text body is refused before it is read.
  const unsupported = mediaType(req.headers["content-type"])
  if (unsupported !== undefined) return refuse(call, unsupported)
  // 3. The body, up to the limit (413 without buffering the rest), within the body timeout (408).
  readBody(req, ctx.config.maxBodySize, ctx.deadlines, (error, body) => {
    if (error !== undefined) return refuse(call, error)
    afterBody(call, name, body!)
  })
}

const afterBody = (call: Call, name: string, body: Buffer): void => {
  const { ctx } = call
  // 4. JSON, no deeper than the wire allows and without __proto__ keys (before anything recursive runs on it:
  // schemas, error formatters).
  const json = parseJson(body)
  if (Either.isLeft(json)) return refuse(call, json.left)
  // 5. The envelope.
  const envelope = Wire.decodeEnvelopeEither(json.right)
  if (Either.isLeft(envelope)) return refuse(call, envelope.left)
  call.auth = envelope.right.auth_data
  // 6. Auth by signature (the envelope's auth_data).
  const refused = ctx.auth.envelope(envelope.right)
  if (refused !== undefined) return refuse(call, refused)
  // 6b. The session, when the envelope names one: 410 when it is not open; each call extends it by its lifetime.
  const sessionId = envelope.right.session_id
  if (sessionId !== undefined) {
    call.inSession = true
    const joined = ctx.sessions.joinSync(sessionId)
    if (Either.isLeft(joined)) return refuse(call, joined.left)
    call.session = joined.right
  }
  // 7. The remote.
  const entry = ctx.core.entry(name)
  if (entry === undefined) {
    // No remote name is longer than 256 characters: echo no more than that.
    const remote = name.length > 256 ? `${name.slice(0, 256)}...` : name
    return refuse(call, new RemoteNotFound({ remote, known: ctx.core.knownRemotes }))
  }
  call.name = name
  // 8. Arguments: wire values decoded, then bound to the payload's fields as Python binds a call.
  const args = Wire.decodeArgumentsEither(envelope.right)
  if (Either.isLeft(args)) return refuse(call, args.left)
  const bound = wire.bindArgsEither(entry.remote.fields, args.right.args, args.right.kwargs, {
    anyKeyword: entry.remote.anyKeyword
  })
  if (Either.isLeft(bound)) return refuse(call, bound.left)
  // 9. The payload, by the remote's schema (synchronously unless the schema needs an async step).
  if (ctx.core.phase() !== "ready") return refuse(call, ctx.core.unavailable())
  const decoded = entry.decodeSync(bound.right)
  if (decoded !== undefined) {
    if (Either.isLeft(decoded)) return refuse(call, decoded.left)
    return admitAndRun(call, entry, decoded.right)
  }
  const decoding = ctx.core.fork(entry.decode(bound.right))
  decoding.addObserver((exit) => {
    if (Exit.isSuccess(exit)) return admitAndRun(call, entry, exit.value)
    const failure = Cause.failureOption(exit.cause)
    if (Option.isSome(failure)) return refuse(call, failure.value)
    finish(call, { _tag: "Defect", cause: exit.cause })
  })
}

const admitAndRun = (call: Call, entry: Entry, payload: unknown): void => {
  const { ctx } = call
  // 10. Admission: a slot now, a place in the queue, or a refusal (429 / 503).
  const admitted = ctx.core.admit(entry, payload)
  if (Either.isLeft(admitted)) {
    if (admitted.left.reason === "queue-full") rejected(call, entry, payload)
    return refuse(call, admitted.left)
  }
  call.admitted = true
  opened(call, admitted.right.workload)
  if (entry.remote.kind === "stream") return runStream(call, entry, payload, admitted.right)
  // 11. The handler, in a fiber with the entered contexts; a synchronous one has ended when `start` returns, and one
  // whose Effect is complete already (`Effect.succeed`) comes back as its exit, with no fiber. A call in a session runs
  // as part of it: `Session.Current` for the handler, interrupted when the session closes.
  const run: Started | Fiber.RuntimeFiber<unknown, RemoteFailure | CallTimeout | SessionGone> =
    call.session === undefined
      ? ctx.core.start(entry, payload, admitted.right, () => started(call))
      : ctx.core.fork(
          ctx.sessions.within(
            call.session,
            ctx.core.execute(entry, payload, admitted.right, () => started(call))
          )
        )
  if (Exit.isExit(run)) return settle(call, entry, run)
  const fiber = run
  const exit = fiber.unsafePoll()
  if (exit !== null) return settle(call, entry, exit)
  fiber.addObserver((exit) => settle(call, entry, exit))
  // The client going away interrupts the call (its finalizers run; the engine hears `Cancelled`).
  call.res.once("close", () => {
    if (!call.finished) fiber.unsafeInterruptAsFork(clientGone)
  })
}

/** 11. Encode how the handler ended, then finish. */
const settle = (
  call: Call,
  entry: Entry,
  exit: Exit.Exit<unknown, RemoteFailure | CallTimeout | SessionGone>
): void => {
  if (Exit.isSuccess(exit)) return answer(call, encodeOk(entry, exit.value))
  const failure = Cause.failureOption(exit.cause)
  if (Option.isSome(failure)) {
    const e = failure.value
    if (e._tag === "RemoteFailure") return answer(call, encodeDeclared(entry, e.error))
  }
  // Not the declared error (handled above): the worker's own, or no failure at all.
  settleFailure(call, exit.cause as Cause.Cause<CallTimeout>)
}

/** A call that ended without an answer: the worker's error, the client gone, the worker's shutdown, or a defect. */
const settleFailure = (call: Call, cause: Cause.Cause<ServeError>): void => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) return finish(call, { _tag: "Refused", error: failure.value, admitted: true })
  if (Cause.isInterruptedOnly(cause)) {
    if (HashSet.has(Cause.interruptors(cause), clientGone)) return finish(call, { _tag: "Cancelled" })
    // The shutdown interrupts calls only after the worker left "ready" (it drains first). Interrupted while ready, the
    // call interrupted itself (`Effect.interrupt`, an `Exit` of an interruption, an empty cause): the remote's own
    // failure, a defect answered 200, not a 503 "the worker shut down" that the reference's client would retry forever.
    return finish(call, call.ctx.core.phase() === "ready" ? { _tag: "Defect", cause } : { _tag: "Interrupted" })
  }
  finish(call, { _tag: "Defect", cause })
}

/** Finish with an encoded answer, or with why it could not be encoded. */
const answer = (call: Call, encoded: Encoded): void => {
  if (encoded._tag === "Done") return finish(call, { _tag: "Answered", answer: encoded.answer })
  if (encoded._tag === "Failed") {
    // The remote's own failure: answered (200 err), never a 5xx.
    logError(call.ctx, encoded.log, encoded.cause)
    return finish(call, { _tag: "Answered", answer: failureAnswer(encoded.error) })
  }
  // A Schema with an async step: encode in a fiber of its own.
  const fiber = call.ctx.core.fork(encoded.effect)
  fiber.addObserver((exit) => {
    if (Exit.isSuccess(exit)) return answer(call, exit.value)
    finish(call, { _tag: "Defect", cause: exit.cause })
  })
}

const refuse = (call: Call, error: ServeError): void => finish(call, { _tag: "Refused", error, admitted: false })

/** The end of every call: the response, the metrics and the engine report, all from the one outcome. */
const finish = (call: Call, outcome: Outcome): void => {
  if (call.finished) return
  call.finished = true
  const { ctx } = call
  let response: Response | undefined
  // The worker's error, for a stream whose status was sent already: its closing `err` line.
  let error: ServeError | undefined
  let metric: Metrics.Outcome
  let engine: EngineReport.CallStatus
  switch (outcome._tag) {
    case "Answered":
      response = okResponse(outcome.answer.body)
      metric = outcome.answer.outcome
      engine = outcome.answer.outcome === "ok" ? "Success" : "Error"
      break
    case "Refused": {
      error = outcome.error
      response = errorResponse(error)
      metric = metricOf(error)
      engine = "Error"
      break
    }
    case "Defect": {
      // A defect in the remote (its handler, its schemas) is its own failure: answered as 200 err with an id to find
      // it in the log, never a 5xx that the reference's client would retry without end.
      const id = failureId()
      logError(ctx, `Remote "${call.name}" failed with a defect [id ${id}]`, outcome.cause)
      const failed = new CallFailed({
        remote: call.name ?? "",
        reason: "defect",
        detail: "internal error in the remote function",
        id
      })
      error = failed
      response = call.stream ? errorResponse(failed) : okResponse(failureAnswer(failed).body)
      metric = "defect"
      engine = "Error"
      break
    }
    case "Cancelled":
      // Nobody to answer: the client closed the connection.
      metric = "cancelled"
      engine = "Cancelled"
      break
    case "Interrupted":
      error = new CallFailed({
        remote: call.name ?? "",
        reason: "interrupted",
        detail: "interrupted when the worker shut down"
      })
      response = errorResponse(error)
      metric = "interrupted"
      engine = "Error"
      break
  }
  if (call.streamed) {
    closeStream(call, outcome._tag === "Answered" ? outcome.answer.body : error)
    if (call.name !== undefined) ctx.core.recordItems(call.name, call.items)
  } else if (response !== undefined) write(call.res, response, ctx.closing())
  const ran = call.admitted && metric !== "rejected"
  if (call.name !== undefined || outcome._tag !== "Refused" || outcome.error._tag === "RemoteNotFound") {
    ctx.core.record(call.name, metric, ran ? (now() - call.startedAt) / 1000 : undefined)
  }
  if (ctx.reporter !== undefined) {
    if (call.engine !== undefined) ctx.reporter.finished(call.engine, engine, now() / 1000)
    else if (outcome._tag === "Refused") refusedReport(call, ctx.reporter, outcome.error)
  }
}

/**
 * A call refused before it was admitted still closes its `request_idx` at the engine (otherwise the engine counts it
 * working until it gives up on it): `Rejected` when the worker would not take it (401, 429, 503, as the reference
 * reports a bad signature), `Error` when the request itself was wrong (400, 404). Calls in a session are not reported:
 * their `request_idx` is the session's, reported when the session closes (as the reference does).
 */
const refusedReport = (call: Call, reporter: EngineReport.Reporter, error: ServeError): void => {
  if (call.reported || call.inSession || call.auth?.request_idx === undefined) return
  const at = now() / 1000
  switch (error._tag) {
    case "Unauthorized":
    case "WorkerUnavailable":
    case "SessionGone": {
      // The router's cost stands for the workload the worker turned away (rej_load).
      const engine = EngineReport.openCall(call.auth, call.auth.cost ?? 0, at)
      engine.workCompletedAt = at
      return reporter.rejected(engine)
    }
    default:
      return reporter.finished(EngineReport.openCall(call.auth, 0, at), "Error", at)
  }
}

/** End a stream answer whose status was sent: its closing line (or an `err` line for the worker's error), if any. */
const closeStream = (call: Call, closing: string | ServeError | undefined): void => {
  const res = call.res
  if (res.destroyed || res.writableEnded) return
  if (closing === undefined) return void res.end()
  if (typeof closing === "string") return void res.end(closing)
  let line: string
  try {
    line = JSON.stringify({ err: wire.encodeErrorUnsafe(closing) }) + "\n"
  } catch {
    line = JSON.stringify({ err: { _tag: "CallFailed", reason: "encode", message: "the error could not be encoded" } })
  }
  res.end(line)
}

const metricOf = (e: ServeError): Metrics.Outcome => {
  switch (e._tag) {
    case "CallTimeout":
      return "timeout"
    case "CallFailed":
      return e.reason === "encode" ? "unencodable" : "defect"
    case "WorkerUnavailable":
    case "RemoteNotFound":
    case "Unauthorized":
    case "PayloadTooLarge":
    case "RouteNotFound":
    case "MethodNotAllowed":
    case "RequestTimeout":
    case "UnsupportedMediaType":
      return "rejected"
    default:
      return "invalid"
  }
}

// ---------------------------------------------------------------------------
// engine accounting (the reporter's counters are updated synchronously; it sends on its own fiber)
// ---------------------------------------------------------------------------

const opened = (call: Call, workload: number): void => {
  const reporter = call.ctx.reporter
  if (reporter === undefined) return
  // A call in a session counts as load under an id of its own: its request_idx is the session's.
  call.engine = EngineReport.openCall(call.inSession ? undefined : call.auth, workload, now() / 1000)
  reporter.started(call.engine)
}

const started = (call: Call): void => {
  if (call.engine !== undefined) call.engine.workStartedAt = now() / 1000
}

const rejected = (call: Call, entry: Entry, payload: unknown): void => {
  const reporter = call.ctx.reporter
  if (reporter === undefined) return
  call.reported = true
  const refused = EngineReport.openCall(
    call.inSession ? undefined : call.auth,
    call.ctx.core.workload(entry, payload),
    now() / 1000
  )
  refused.workCompletedAt = refused.enteredQueueAt
  reporter.rejected(refused)
}

// ---------------------------------------------------------------------------
// encoding
// ---------------------------------------------------------------------------

/** An answer encoded: done, failed (`CallFailed` `encode`, logged with an id), or needing an async Schema step. */
type Encoded =
  | { readonly _tag: "Done"; readonly answer: Answer }
  | { readonly _tag: "Failed"; readonly error: CallFailed; readonly log: string; readonly cause: unknown }
  | { readonly _tag: "Async"; readonly effect: Effect.Effect<Encoded> }

/** The remote's own failure as an answer: 200 `{"result":{"err":...}}`, a `CallFailed` the caller can decode. */
const failureAnswer = (error: CallFailed): Answer => ({
  outcome: error.reason === "encode" ? "unencodable" : "defect",
  body: JSON.stringify({ result: { err: wire.encodeErrorUnsafe(error) } })
})

const unencodable = (entry: Entry, detail: string, cause: unknown): Encoded => {
  const id = failureId()
  return {
    _tag: "Failed",
    error: new CallFailed({ remote: entry.remote.name, reason: "encode", detail, id }),
    log: `Remote "${entry.remote.name}" returned a value that cannot be sent [id ${id}]`,
    cause
  }
}

/** Run a synchronous Schema step, or hand `then` the async form's result. */
const bySchema = (
  sync: Either.Either<unknown, ParseResult.ParseError> | undefined,
  async: () => Effect.Effect<unknown, ParseResult.ParseError>,
  then: (result: Either.Either<unknown, ParseResult.ParseError>) => Encoded
): Encoded => (sync !== undefined ? then(sync) : { _tag: "Async", effect: Effect.map(Effect.either(async()), then) })

/** A plain call's answer body: `{"result": {"ok": ...}}` or `{"result": {"err": ...}}`. */
const resultOk = (ok: wire.Json): string => `{"result":{"ok":${JSON.stringify(ok)}}}`
const resultErr = (err: wire.Json): string => JSON.stringify({ result: { err } })

/** A stream answer's lines (ndjson.ts): `{"item": ...}` per element, `{"err": ...}` for its declared error. */
const itemLine = (item: wire.Json): string => JSON.stringify({ item }) + "\n"
const errLine = (err: wire.Json): string => JSON.stringify({ err }) + "\n"

/**
 * The success body: the value by the remote's success schema, then in the wire's value encoding, framed by `frame`
 * (for a stream remote, one element's line).
 */
const encodeOk = (entry: Entry, value: unknown, frame: (ok: wire.Json) => string = resultOk): Encoded => {
  const sync = entry.encodeSuccessSync(value)
  // A Schema with an async step: the same, in a fiber.
  if (sync === undefined)
    return {
      _tag: "Async",
      effect: Effect.map(Effect.either(entry.encodeSuccess(value)), (r) => okBody(entry, r, frame))
    }
  return okBody(entry, sync, frame)
}

/** The success body from the success schema's encoding, in the wire's value encoding, framed. */
const okBody = (
  entry: Entry,
  encoded: Either.Either<unknown, ParseResult.ParseError>,
  frame: (ok: wire.Json) => string
): Encoded => {
  if (Either.isLeft(encoded)) {
    const what =
      entry.remote.kind === "stream"
        ? "an element does not match the remote's element schema"
        : "the result does not match the remote's success schema"
    return unencodable(entry, what, encoded.left)
  }
  try {
    const body = frame(wire.encodeValueUnsafe(encoded.right))
    return { _tag: "Done", answer: { outcome: "ok", body } }
  } catch (e) {
    if (e instanceof WireEncodeError) return unencodable(entry, e.message, e)
    throw e
  }
}

/**
 * The remote's declared error as the reference sends it: 200 with `{"result": {"err": <obj>}}`, as a Python built-in
 * exception (see Wire.encodeError) with the fields the `error` schema encodes and its message (a schema encode drops
 * it: it is a getter).
 */
const encodeDeclared = (entry: Entry, error: unknown, frame: (err: wire.Json) => string = resultErr): Encoded =>
  bySchema(
    entry.encodeErrorSync(error),
    () => entry.encodeError(error),
    (result) => {
      if (Either.isLeft(result)) {
        return unencodable(entry, "the error does not match the remote's error schema", result.left)
      }
      const encoded = result.right
      const message = (error as { message?: unknown } | null)?.message
      const value =
        encoded instanceof Error
          ? encoded
          : typeof encoded === "object" && encoded !== null && !Array.isArray(encoded)
            ? { ...encoded, ...(typeof message === "string" && !Object.hasOwn(encoded, "message") ? { message } : {}) }
            : { _tag: "Error", message: typeof message === "string" ? message : String(encoded) }
      try {
        // The Python class from the error itself: its Schema class's annotation is lost in the encoded form.
        const body = frame(wire.encodeErrorUnsafe(value, { pythonClass: pythonClass(error) }))
        return { _tag: "Done", answer: { outcome: "error", body } }
      } catch (e) {
        if (e instanceof WireEncodeError) return unencodable(entry, e.message, e)
        throw e
      }
    }
  )

/** An encoding as an Effect, for a stream's fiber: its body, or the `CallFailed` (logged with its id). */
const encodedBody = (encoded: Encoded): Effect.Effect<string, CallFailed> => {
  switch (encoded._tag) {
    case "Done":
      return Effect.succeed(encoded.answer.body)
    case "Failed":
      return Effect.zipRight(Effect.logError(encoded.log, encoded.cause), Effect.fail(encoded.error))
    case "Async":
      return Effect.flatMap(encoded.effect, encodedBody)
  }
}

// ---------------------------------------------------------------------------
// stream remotes
// ---------------------------------------------------------------------------

/**
 * 10-11 for a stream remote: one fiber runs the stream and writes its status and element lines as they come
 * (streamResponse.ts); `finish` writes the closing line, or the error status when nothing was sent yet.
 */
const runStream = (call: Call, entry: Entry, payload: unknown, admitted: Admitted): void => {
  const { ctx } = call
  call.stream = true
  const elements = ctx.core.executeStream(entry, payload, admitted, () => started(call))
  const written = streamResponse.write(call.res, elements, {
    itemLine: (element) => encodedBody(encodeOk(entry, element, itemLine)),
    declaredLine: (error) => encodedBody(encodeDeclared(entry, error, errLine)),
    opened: () => {
      call.streamed = true
    },
    sent: (n) => {
      call.items += n
    }
  })
  // In a session, as a call: `Session.Current` for the stream, interrupted when the session closes.
  const fiber = ctx.core.fork(call.session === undefined ? written : ctx.sessions.within(call.session, written))
  fiber.addObserver((exit) => {
    if (Exit.isSuccess(exit)) {
      return finish(call, { _tag: "Answered", answer: { outcome: exit.value.outcome, body: exit.value.line } })
    }
    settleFailure(call, exit.cause)
  })
  call.res.once("close", () => {
    if (!call.finished) fiber.unsafeInterruptAsFork(clientGone)
  })
}

// ---------------------------------------------------------------------------
// reading and writing
// ---------------------------------------------------------------------------

/**
 * Read a request body up to `limit` bytes; past it, stop reading (413 without buffering the rest). A body that has not
 * arrived in full when `deadlines` expires it gets 408 (past the body timeout) or 503 (the server is closing).
 */
export const readBody = (
  req: Http.IncomingMessage,
  limit: number,
  deadlines: BodyDeadlines,
  done: (error: BodyError | undefined, body: Buffer | undefined) => void
): void => {
  const declared = Number(req.headers["content-length"])
  if (Number.isFinite(declared) && declared > limit) return done(new PayloadTooLarge({ limitBytes: limit }), undefined)
  const chunks: Array<Buffer> = []
  let size = 0
  // Once settled, later events are ignored (the listeners stay: the request is done with, and removing them on every
  // call was a measurable share of a trivial one).
  let settled = false
  const settle = (error: BodyError | undefined, body: Buffer | undefined) => {
    if (settled) return
    settled = true
    deadlines.remove(pending)
    // What was read of a refused body is not kept while the rest arrives.
    if (error !== undefined) chunks.length = 0
    done(error, body)
  }
  const pending = deadlines.add((why) =>
    // Nothing more is read: the answer closes the connection, whatever is still on its way.
    settle(
      why === "timeout"
        ? requestTimeout(Duration.toMillis(deadlines.timeout))
        : new WorkerUnavailable({ reason: "stopped", detail: "the worker is shutting down" }),
      undefined
    )
  )
  req.on("data", (chunk: Buffer) => {
    if (settled) return
    size += chunk.length
    if (size <= limit) return void chunks.push(chunk)
    // The rest is read on (the stream flows) and dropped.
    settle(new PayloadTooLarge({ limitBytes: limit }), undefined)
  })
  req.on("end", () => settle(undefined, chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size)))
  req.on("error", (error: Error) =>
    settle(
      new WireDecodeError({ reason: "InvalidJson", path: "$", message: `could not read the body: ${error.message}` }),
      undefined
    )
  )
}

/** Why a body was not read. */
type BodyError = PayloadTooLarge | WireDecodeError | RequestTimeout | WorkerUnavailable

const requestTimeout = (timeoutMillis: number): RequestTimeout => ({
  _tag: "RequestTimeout",
  timeoutMillis,
  message: `The request body did not arrive within ${timeoutMillis} ms of its headers`
})

/**
 * Undefined when a body of this `Content-Type` is parsed as JSON: none given (the reference's clients always send
 * one; some HTTP clients send none), `application/json` or any `application/*+json`, in UTF-8. Anything else
 * (a form, text) is refused: a body a browser may send across origins without asking first never reaches a remote.
 */
export const mediaType = (header: string | undefined): UnsupportedMediaType | undefined => {
  if (header === undefined || header === "application/json") return undefined
  const [type = "", ...params] = header.split(";").map((p) => p.trim().toLowerCase())
  const json = type === "application/json" || /^application\/[a-z0-9!#$&^_.-]+\+json$/.test(type)
  const charset = params
    .find((p) => p.startsWith("charset="))
    ?.slice("charset=".length)
    .replace(/"/g, "")
  if (json && (charset === undefined || charset === "utf-8" || charset === "utf8")) return undefined
  const shown = header.length > 100 ? `${header.slice(0, 100)}...` : header
  return {
    _tag: "UnsupportedMediaType",
    contentType: shown,
    message: json
      ? `Content-Type "${shown}": JSON bodies are read as UTF-8 only`
      : `Content-Type "${shown}" is not JSON: send the body as application/json (curl: -H 'content-type: application/json')`
  }
}

/**
 * Whether a body's text rules out what `checkJsonSync` looks for, so the walk can be skipped (most calls are small):
 * nesting deeper than the limit takes two brackets a level, and a `__proto__` key is in the text either as it is or
 * with a `\u` escape.
 */
const cannotBeUnfit = (text: string): boolean =>
  text.length < 2 * (wire.defaultMaxJsonDepth + 1) && text.indexOf("__proto__") === -1 && text.indexOf("\\u") === -1

/** Parse a body as JSON, no deeper than the wire allows and without `__proto__` keys. */
export const parseJson = (body: Buffer): Either.Either<unknown, WireDecodeError> => {
  let json: unknown
  const text = body.toString("utf8")
  try {
    json = JSON.parse(text)
  } catch (e) {
    const detail = e instanceof Error ? e.message : String(e)
    return Either.left(
      new WireDecodeError({
        reason: "InvalidJson",
        path: "$",
        message: `the body is not JSON: ${detail.length > 200 ? `${detail.slice(0, 200)}...` : detail}`
      })
    )
  }
  // Before anything recursive reads it: too deep a nesting (TooDeep), or a __proto__ key (ForbiddenKey), is a 400.
  if (cannotBeUnfit(text)) return Either.right(json)
  const unfit = wire.checkJsonSync(json, wire.defaultMaxJsonDepth)
  return unfit === undefined ? Either.right(json) : Either.left(unfit)
}

/** Write a decided response, unless the socket is gone; `close` ends the connection after it (`Connection: close`). */
export const write = (res: Http.ServerResponse, response: Response, close = false): void => {
  if (res.headersSent || res.destroyed) return
  // With its length, the response goes out in one write (without it, Node frames it as chunks: several writes).
  const headers: Record<string, string | number> = Object.assign({}, response.headers)
  headers["content-length"] = Buffer.byteLength(response.body)
  if (close) headers["connection"] = "close"
  res.writeHead(response.status, headers)
  res.end(response.body)
}

const logError = (ctx: Context, message: string, cause: unknown): void => {
  ctx.core.fork(Effect.logError(message, cause))
}
