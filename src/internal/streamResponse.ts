/**
 * The body of a stream remote's answer on a `node:http` response: `200 application/x-ndjson`, one `{"item": ...}` line
 * per element as it is produced, closed by an `{"end": {...}}` or `{"err": ...}` line (ndjson.ts is the format).
 *
 * The status is chosen only once the first element (or the end, or a failure) is known, so that what fails before
 * the first element keeps the status it has for any call (400, 429, 504, 500...). From then on the status is sent, and
 * a failure can only close the body with an `err` line: the pipeline's `finish` writes that closing line, as it writes
 * every call's end. Each chunk of lines is written as soon as it is pulled; when the socket's buffer is full the next
 * pull waits for `drain`, so a client that reads slowly slows the remote's stream instead of filling memory.
 */
import { Chunk, Effect, Either, Option, Stream } from "effect"
import type * as Http from "node:http"
import type { RemoteFailure } from "../WorkerError.js"
import * as ndjson from "./ndjson.js"
import type { ServeError } from "./respond.js"

/** The response head of a stream answer. */
export const head: Readonly<Record<string, string>> = {
  "content-type": ndjson.contentType,
  // Proxies must pass lines on as they come, not buffer the answer.
  "cache-control": "no-store",
  "x-accel-buffering": "no"
}

/** How a stream answer ended without a worker error: its closing line, and whether it is the declared error's. */
export interface Closed {
  readonly outcome: "ok" | "error"
  /** The closing line (`end` or `err`), not written yet: `finish` writes it and ends the response. */
  readonly line: string
}

/** What the body writer needs from the call around it. */
export interface Hooks {
  /** An element's line (the element Schema, then the wire encoding); fails with `CallFailed` for an unencodable one. */
  readonly itemLine: (element: unknown) => Effect.Effect<string, ServeError>
  /** The `err` line of the remote's declared error. */
  readonly declaredLine: (error: unknown) => Effect.Effect<string, ServeError>
  /** The status and head were written: from now on the call's end is a closing line, not an error response. */
  readonly opened: () => void
  /** Lines of `n` elements were written. */
  readonly sent: (n: number) => void
}

/**
 * Write `elements` to `res` as NDJSON. Succeeds with the closing line when the stream ends or fails with the remote's
 * declared error (either may come before any element: a `200` with only that line). Fails with the worker's error
 * (`CallTimeout`, an unencodable element's `CallFailed`) for the pipeline to answer: as a status when nothing was
 * written yet, else as an `err` line.
 */
export const write = (
  res: Http.ServerResponse,
  elements: Stream.Stream<unknown, RemoteFailure | ServeError>,
  hooks: Hooks
): Effect.Effect<Closed, ServeError> =>
  Effect.scoped(
    Effect.gen(function* () {
      // Element by element, so that the lines before an element that fails to encode are still sent.
      const pull = yield* Stream.toPull(Stream.mapEffect(elements, hooks.itemLine))
      let count = 0
      let opened = false
      const open = () => {
        if (opened) return
        opened = true
        res.writeHead(200, head)
        hooks.opened()
      }
      for (;;) {
        const next = yield* Effect.either(pull)
        if (Either.isLeft(next)) {
          if (Option.isNone(next.left)) {
            open()
            return { outcome: "ok", line: ndjson.endLine({ count }) }
          }
          const error = next.left.value
          if (error._tag !== "RemoteFailure") return yield* Effect.fail(error)
          const line = yield* hooks.declaredLine(error.error)
          open()
          return { outcome: "error", line }
        }
        const lines = next.right
        if (Chunk.isEmpty(lines)) continue
        open()
        count += lines.length
        yield* send(res, Chunk.join(lines, ""))
        hooks.sent(lines.length)
      }
    })
  )

/**
 * Write one piece of the body; when the socket's buffer is over its mark, wait for `drain` (or `close`: the pipeline
 * interrupts the call when the client goes away).
 */
const send = (res: Http.ServerResponse, text: string): Effect.Effect<void> => {
  if (res.destroyed || res.write(text)) return Effect.void
  return Effect.async<void>((resume) => {
    const done = () => {
      res.off("drain", done)
      res.off("close", done)
      resume(Effect.void)
    }
    res.on("drain", done)
    res.on("close", done)
    return Effect.sync(() => {
      res.off("drain", done)
      res.off("close", done)
    })
  })
}
