/**
 * The wire form of a stream remote's answer: `200`, `content-type: application/x-ndjson`, one JSON object per line:
 *
 * - `{"item": <value>}` for each element as it is produced (the value in the reference's wire encoding);
 * - then `{"end": {"count": <items sent>, ...}}` when the stream completes,
 * - or `{"err": <encoded error>}` when it fails midway (the status is already 200: the error travels in the body).
 *
 * Exactly one `end` or `err` line closes a well-formed stream; a body that stops before it was cut short.
 *
 * @internal
 */
import { Cause, Effect, Either, Option, ParseResult, Schema, Stream } from "effect"
import type * as Remote from "../Remote.js"
import {
  CallFailed,
  CallTimeout,
  PayloadInvalid,
  PayloadTooLarge,
  RemoteNotFound,
  Unauthorized,
  WireDecodeError,
  WireEncodeError,
  WorkerUnavailable
} from "../WorkerError.js"
import * as wire from "./wire.js"

/** @internal */
export const contentType = "application/x-ndjson"

/** What the `end` line carries: at least the number of items sent. @internal */
export interface EndSummary {
  readonly count: number
  readonly [key: string]: wire.Json
}

/** One line of a stream answer, decoded. @internal */
export type Frame =
  | { readonly _tag: "Item"; readonly value: unknown }
  | { readonly _tag: "End"; readonly summary: EndSummary }
  | { readonly _tag: "Err"; readonly error: unknown }

// ---------------------------------------------------------------------------
// encoding (the worker's side)
// ---------------------------------------------------------------------------

/** The line of one element, already encoded by the element's Schema. @internal */
export const itemLine = (value: unknown, options?: wire.EncodeOptions): Effect.Effect<string, WireEncodeError> =>
  Effect.map(wire.encodeValue(value, options), (item) => JSON.stringify({ item }) + "\n")

/** The closing line of a stream that completed. @internal */
export const endLine = (summary: EndSummary): string => JSON.stringify({ end: summary }) + "\n"

/** The closing line of a stream that failed midway. @internal */
export const errLine = (error: unknown, options?: wire.EncodeOptions): Effect.Effect<string, WireEncodeError> =>
  Effect.map(wire.encodeError(error, options), (err) => JSON.stringify({ err }) + "\n")

/** Options of {@link encode}. @internal */
export interface EncodeOptions<A, R2> {
  /** An element in its encoded form (the element Schema's `encode`); a failure ends the stream with an `err` line. */
  readonly encodeElement: (element: A) => Effect.Effect<unknown, unknown, R2>
  /**
   * The error value sent in the `err` line for a stream (or an element encoding) that failed: the remote's declared
   * error, or one of ours (`CallFailed`, `CallTimeout`). An interruption from outside (the client left, the drain
   * timed out) ends the stream without reaching here.
   */
  readonly onFailure: (cause: Cause.Cause<unknown>) => Effect.Effect<unknown>
  /** Fields added to the `end` line beside `count`. */
  readonly summary?: (() => Record<string, wire.Json>) | undefined
  readonly wire?: wire.EncodeOptions | undefined
}

/**
 * Encode a stream of elements as NDJSON text, one line per string, each emitted as soon as its element is produced
 * (nothing waits for the rest of the stream), so a consumer that writes each string to a socket delivers elements as
 * they come and its backpressure slows the upstream. The result never fails: a failure becomes the closing `err`
 * line, after the lines of every element before it.
 *
 * @internal
 */
export const encode = <A, E, R, R2>(
  elements: Stream.Stream<A, E, R>,
  options: EncodeOptions<A, R2>
): Stream.Stream<string, never, R | R2> =>
  Stream.suspend(() => {
    let count = 0
    // Element by element, so that the lines of elements before one that fails to encode are still sent.
    const lines = Stream.mapEffect(elements, (element) =>
      options.encodeElement(element).pipe(
        Effect.flatMap((encoded) => itemLine(encoded, options.wire)),
        Effect.tap(() => {
          count++
        })
      )
    )
    return Stream.concat(
      lines,
      Stream.sync(() => endLine({ ...options.summary?.(), count }))
    ).pipe(
      Stream.catchAllCause((cause) =>
        Stream.fromEffect(
          Effect.flatMap(options.onFailure(cause), (error) =>
            errLine(error, options.wire).pipe(
              // An error value that cannot be encoded must still close the stream with an err line.
              Effect.orElse(() =>
                errLine(
                  new CallFailed({ remote: "", reason: "encode", detail: "the stream's error could not be encoded" }),
                  options.wire
                )
              ),
              Effect.orDie
            )
          )
        )
      )
    )
  })

// ---------------------------------------------------------------------------
// decoding (the client's side)
// ---------------------------------------------------------------------------

const isPlainObject = (u: unknown): u is Record<string, unknown> =>
  typeof u === "object" && u !== null && !Array.isArray(u)

const frameKeys = ["item", "end", "err"] as const

class FrameReader {
  line = 0
  items = 0
  terminal: Frame | undefined = undefined

  constructor(readonly options: wire.DecodeOptions | undefined) {}

  private fail(
    reason: WireDecodeError["reason"],
    path: string,
    message: string
  ): Effect.Effect<never, WireDecodeError> {
    return Effect.fail(new WireDecodeError({ reason, path, message: `${message} (at ${path})` }))
  }

  read(text: string): Effect.Effect<Option.Option<Frame>, WireDecodeError> {
    this.line++
    const at = `line ${this.line}`
    // Blank lines carry nothing (a keep-alive, a trailing CRLF).
    if (text.trim() === "") return Effect.succeedNone
    if (this.terminal !== undefined) {
      return this.fail("InvalidShape", at, "a line after the stream's end or err line")
    }
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch {
      return this.fail("InvalidJson", at, `not JSON: ${text.length > 80 ? `${text.slice(0, 80)}...` : text}`)
    }
    const keys = isPlainObject(json) ? Object.keys(json) : []
    if (!isPlainObject(json) || keys.length !== 1 || !frameKeys.includes(keys[0] as (typeof frameKeys)[number])) {
      return this.fail(
        "InvalidShape",
        at,
        `a stream line must be an object with exactly one of "item", "end", "err", got ${text.slice(0, 80)}`
      )
    }
    const path = `${at} $.${keys[0]}`
    const maxDepth = this.options?.maxDepth
    const decodeOptions = maxDepth === undefined ? { path } : { path, maxDepth }
    switch (keys[0]) {
      case "item":
        return Effect.map(wire.decodeValue(json["item"], decodeOptions), (value) => {
          this.items++
          return Option.some({ _tag: "Item", value })
        })
      case "err":
        return Effect.map(wire.decodeValue(json["err"], decodeOptions), (error) => {
          const frame: Frame = { _tag: "Err", error }
          this.terminal = frame
          return Option.some(frame)
        })
      default: {
        const end = json["end"]
        const count = isPlainObject(end) ? end["count"] : undefined
        if (typeof count !== "number" || !Number.isInteger(count) || count < 0) {
          return this.fail("InvalidShape", path, `the end line needs a non-negative integer "count"`)
        }
        if (count !== this.items) {
          return this.fail("InvalidShape", path, `the end line counts ${count} item(s), ${this.items} arrived`)
        }
        const frame: Frame = { _tag: "End", summary: end as EndSummary }
        this.terminal = frame
        return Effect.succeed(Option.some(frame))
      }
    }
  }
}

/**
 * Decode an NDJSON stream answer from its body bytes, split anywhere (a chunk may end mid-line or mid-character).
 * Emits each `item` with its value decoded from the wire encoding, then the closing `End` or `Err` frame, and stops
 * there. Fails with a `WireDecodeError` naming the line for a line that is not JSON or not a frame, an `end` whose
 * count differs from the items that arrived, a line after the closing one (`InvalidShape`), or a body that stops
 * before any closing line (`Truncated`: the connection was cut).
 *
 * @internal
 */
export const decodeFrames = <E, R>(
  bytes: Stream.Stream<Uint8Array, E, R>,
  options?: wire.DecodeOptions
): Stream.Stream<Frame, E | WireDecodeError, R> =>
  Stream.suspend(() => {
    const reader = new FrameReader(options)
    return bytes.pipe(
      Stream.decodeText(),
      Stream.splitLines,
      Stream.mapEffect((line) => reader.read(line)),
      Stream.filterMap((frame) => frame),
      Stream.takeUntil((frame) => frame._tag !== "Item"),
      Stream.concat(
        Stream.suspend(() =>
          reader.terminal !== undefined
            ? Stream.empty
            : Stream.fail(
                new WireDecodeError({
                  reason: "Truncated",
                  path: `line ${reader.line}`,
                  message: `the stream stopped after ${reader.items} item(s) without an end or err line (connection cut?)`
                })
              )
        )
      )
    )
  })

// What a worker may send in an `err` line besides the remote's declared error.
const WorkerSide = Schema.Union(
  CallFailed,
  CallTimeout,
  WorkerUnavailable,
  PayloadInvalid,
  PayloadTooLarge,
  RemoteNotFound,
  Unauthorized
)
const decodeWorkerSide = Schema.decodeUnknownEither(WorkerSide)

/** What a typed stream can fail with besides the remote's declared error (and the transport's own errors). @internal */
export type StreamError =
  CallFailed | CallTimeout | WorkerUnavailable | PayloadInvalid | PayloadTooLarge | RemoteNotFound | Unauthorized

const protocol = (remote: string, detail: string) => new CallFailed({ remote, reason: "protocol", detail })

/**
 * The typed elements of a stream remote's answer: each `item` decoded by the element Schema, the stream completing at
 * `end`, failing at `err` with the remote's declared error (or ours: `CallFailed`, `CallTimeout`, ...). A malformed
 * body is `CallFailed` with reason `protocol`.
 *
 * @internal
 */
export const decodeRemote = <Rm extends Remote.AnyStreamSpec, E, R>(
  remote: Rm,
  bytes: Stream.Stream<Uint8Array, E, R>,
  options?: wire.DecodeOptions
): Stream.Stream<Schema.Schema.Type<Rm["element"]>, Schema.Schema.Type<Rm["error"]> | StreamError | E, R> => {
  const name = remote.name
  const decodeElement = Schema.decodeUnknown(remote.element as unknown as Schema.Schema<unknown, unknown, never>)
  const decodeError = Schema.decodeUnknownEither(remote.error as unknown as Schema.Schema<unknown, unknown, never>)
  return decodeFrames(bytes, options).pipe(
    Stream.mapError((e): E | CallFailed => (e instanceof WireDecodeError ? protocol(name, e.message) : e)),
    Stream.mapEffect((frame): Effect.Effect<Option.Option<unknown>, unknown> => {
      switch (frame._tag) {
        case "Item":
          return decodeElement(frame.value).pipe(
            Effect.map(Option.some),
            Effect.mapError((e) =>
              protocol(
                name,
                `an element does not match the element schema: ${ParseResult.TreeFormatter.formatErrorSync(e)}`
              )
            )
          )
        case "End":
          return Effect.succeedNone
        case "Err": {
          const declared = decodeError(frame.error)
          if (Either.isRight(declared)) return Effect.fail(declared.right)
          const ours = decodeWorkerSide(frame.error)
          if (Either.isRight(ours)) return Effect.fail(ours.right)
          const message = (frame.error as { message?: unknown } | null)?.message
          return Effect.fail(
            protocol(
              name,
              `the worker sent an undeclared error: ${
                typeof message === "string" ? message : JSON.stringify(frame.error)
              }`
            )
          )
        }
      }
    }),
    Stream.filterMap((o) => o)
  ) as Stream.Stream<Schema.Schema.Type<Rm["element"]>, Schema.Schema.Type<Rm["error"]> | StreamError | E, R>
}
