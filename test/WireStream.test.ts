import { describe, expect, it } from "@effect/vitest"
import { Cause, Chunk, Effect, Exit, Option, Queue, Schema, Stream } from "effect"
import * as ndjson from "../src/internal/ndjson.js"
import * as Remote from "../src/Remote.js"
import * as Wire from "../src/Wire.js"
import { CallFailed, CallTimeout, WireDecodeError } from "../src/WorkerError.js"

class OutOfTokens extends Schema.TaggedError<OutOfTokens>()("OutOfTokens", { after: Schema.Number }) {}

const utf8 = (s: string) => new TextEncoder().encode(s)
/** Body bytes split exactly at the given byte offsets. */
const splitAt = (bytes: Uint8Array, ...offsets: ReadonlyArray<number>): Array<Uint8Array> => {
  const out: Array<Uint8Array> = []
  let from = 0
  for (const at of [...offsets, bytes.length]) {
    out.push(bytes.slice(from, at))
    from = at
  }
  return out
}
const body = (...chunks: ReadonlyArray<string | Uint8Array>) =>
  Stream.fromIterable(chunks.map((c) => (typeof c === "string" ? utf8(c) : c)))

const frames = <E>(bytes: Stream.Stream<Uint8Array, E>) =>
  Effect.map(Stream.runCollect(Wire.decodeStreamFrames(bytes)), Chunk.toReadonlyArray)

const collectText = (s: Stream.Stream<string>) => Effect.map(Stream.runCollect(s), (c) => Chunk.join(c, ""))

const encodeNumbers = <E>(elements: Stream.Stream<number, E>) =>
  ndjson.encode(elements, {
    encodeElement: (n) => Effect.succeed(n),
    onFailure: (cause) => Effect.succeed(Cause.squash(cause))
  })

describe("Wire stream lines", () => {
  it.effect("an item line carries the value in the wire encoding; end and err close the stream", () =>
    Effect.gen(function* () {
      expect(yield* Wire.streamItem("the")).toBe('{"item":"the"}\n')
      expect(yield* Wire.streamItem(new Uint8Array([0, 1]))).toBe('{"item":{"type":"bytes","contents":"AAE="}}\n')
      expect(yield* Wire.streamItem({ score: 0.5 })).toBe('{"item":{"type":"dict","contents":[["score",0.5]]}}\n')
      expect(Wire.streamEnd({ count: 2 })).toBe('{"end":{"count":2}}\n')
      const err = JSON.parse(yield* Wire.streamErr(new OutOfTokens({ after: 3 })))
      expect(err.err).toMatchObject({
        type: "obj",
        module: { type: "absolute", path: ["builtins"] },
        class: "Exception",
        contents: { _tag: "OutOfTokens", after: 3 }
      })
      expect(Wire.streamContentType).toBe("application/x-ndjson")
    })
  )
})

describe("ndjson.encode", () => {
  it.effect("writes each element's line, then the end line with the count", () =>
    Effect.gen(function* () {
      const text = yield* collectText(encodeNumbers(Stream.make(1, 2, 3)))
      expect(text).toBe('{"item":1}\n{"item":2}\n{"item":3}\n{"end":{"count":3}}\n')
      const empty = yield* collectText(encodeNumbers(Stream.empty))
      expect(empty).toBe('{"end":{"count":0}}\n')
    })
  )

  it.effect("adds the summary fields to the end line", () =>
    Effect.gen(function* () {
      const text = yield* collectText(
        ndjson.encode(Stream.make(1), {
          encodeElement: Effect.succeed,
          onFailure: () => Effect.succeed("x"),
          summary: () => ({ millis: 12 })
        })
      )
      expect(text).toBe('{"item":1}\n{"end":{"millis":12,"count":1}}\n')
    })
  )

  it.scoped("emits an element's line as soon as it is produced, before the next one exists", () =>
    Effect.gen(function* () {
      const queue = yield* Queue.unbounded<number>()
      const pull = yield* Stream.toPull(encodeNumbers(Stream.fromQueue(queue).pipe(Stream.take(2))))
      yield* Queue.offer(queue, 1)
      expect(Chunk.toReadonlyArray(yield* pull)).toEqual(['{"item":1}\n'])
      yield* Queue.offer(queue, 2)
      expect(Chunk.join(yield* pull, "")).toBe('{"item":2}\n')
      expect(Chunk.join(yield* pull, "")).toBe('{"end":{"count":2}}\n')
    })
  )

  it.effect("a failure midway becomes the closing err line, after the items already sent", () =>
    Effect.gen(function* () {
      const text = yield* collectText(
        encodeNumbers(Stream.concat(Stream.make(1, 2), Stream.fail(new OutOfTokens({ after: 2 }))))
      )
      const lines = text
        .trimEnd()
        .split("\n")
        .map((l) => JSON.parse(l))
      expect(lines.slice(0, 2)).toEqual([{ item: 1 }, { item: 2 }])
      expect(lines).toHaveLength(3)
      expect(lines[2].err).toMatchObject({ class: "Exception", contents: { _tag: "OutOfTokens", after: 2 } })
    })
  )

  it.effect("an element that does not encode ends the stream with the error onFailure chooses", () =>
    Effect.gen(function* () {
      const text = yield* collectText(
        ndjson.encode(Stream.make(1, Number.NaN, 3), {
          encodeElement: Effect.succeed,
          onFailure: (cause) =>
            Effect.succeed(
              new CallFailed({
                remote: "nums",
                reason: "encode",
                detail: String((Cause.squash(cause) as { reason?: string }).reason)
              })
            )
        })
      )
      const lines = text
        .trimEnd()
        .split("\n")
        .map((l) => JSON.parse(l))
      expect(lines[0]).toEqual({ item: 1 })
      expect(lines[1].err).toMatchObject({
        class: "TypeError",
        contents: { _tag: "CallFailed", reason: "encode", detail: "NonFiniteNumber" }
      })
      expect(lines).toHaveLength(2)
    })
  )
})

describe("Wire.decodeStreamFrames", () => {
  it.effect("reads lines split anywhere: mid-line, mid-character, CRLF, blank lines", () =>
    Effect.gen(function* () {
      const text = '{"item":"café 🐈"}\r\n\n{"item":{"type":"bytes","contents":"AAE="}}\n{"end":{"count":2}}\n'
      const bytes = utf8(text)
      const eAcute = text.indexOf("é") // one byte into the two-byte é, and into the four-byte cat
      const cat = bytes.indexOf(0xf0)
      const chunks = splitAt(bytes, 3, eAcute + 1, cat + 2, cat + 3, bytes.length - 5)
      const out = yield* frames(Stream.fromIterable(chunks))
      expect(out).toEqual([
        { _tag: "Item", value: "café 🐈" },
        { _tag: "Item", value: new Uint8Array([0, 1]) },
        { _tag: "End", summary: { count: 2 } }
      ])
      // One byte at a time reads the same.
      const oneByOne = yield* frames(Stream.fromIterable(Array.from(bytes, (b) => new Uint8Array([b]))))
      expect(oneByOne).toEqual(out)
    })
  )

  it.effect("an err line midway closes the stream after the items before it", () =>
    Effect.gen(function* () {
      const err =
        '{"err":{"type":"obj","module":{"type":"relative","path":[]},"class":"OutOfTokens","contents":{"_tag":"OutOfTokens","after":1}}}'
      const out = yield* frames(body('{"item":"a"}\n{"it', 'em":"b"}\n', err + "\n"))
      expect(out.map((f) => f._tag)).toEqual(["Item", "Item", "Err"])
      expect(out[2]).toEqual({ _tag: "Err", error: { _tag: "OutOfTokens", after: 1 } })
    })
  )

  it.effect("a last line without its newline still counts", () =>
    Effect.gen(function* () {
      const out = yield* frames(body('{"item":1}\n{"end":{"count":1}}'))
      expect(out.map((f) => f._tag)).toEqual(["Item", "End"])
    })
  )

  it.effect("stops at the closing line without waiting for the body to end", () =>
    Effect.gen(function* () {
      const out = yield* frames(Stream.concat(body('{"item":1}\n{"end":{"count":1}}\n'), Stream.never))
      expect(out.map((f) => f._tag)).toEqual(["Item", "End"])
    })
  )

  it.effect("a body cut before its closing line is Truncated, after the items that arrived", () =>
    Effect.gen(function* () {
      const seen: Array<unknown> = []
      const error = yield* Wire.decodeStreamFrames(body('{"item":1}\n{"item":2}\n{"ite')).pipe(
        Stream.runForEach((f) => Effect.sync(() => seen.push(f))),
        Effect.flip
      )
      expect(seen).toEqual([
        { _tag: "Item", value: 1 },
        { _tag: "Item", value: 2 }
      ])
      // The partial third line is not JSON: the cut shows as that line first.
      expect(error).toBeInstanceOf(WireDecodeError)
      expect(error.reason).toBe("InvalidJson")
      const cleanCut = yield* Effect.flip(Stream.runDrain(Wire.decodeStreamFrames(body('{"item":1}\n'))))
      expect(cleanCut.reason).toBe("Truncated")
      expect(cleanCut.message).toMatch(/stopped after 1 item\(s\) without an end or err line/)
    })
  )

  it.effect("names the line of a malformed frame", () =>
    Effect.gen(function* () {
      const fail = (...chunks: ReadonlyArray<string>) =>
        Effect.flip(Stream.runDrain(Wire.decodeStreamFrames(body(...chunks))))
      const notJson = yield* fail('{"item":1}\nnope\n')
      expect([notJson.reason, notJson.path]).toEqual(["InvalidJson", "line 2"])
      const twoKeys = yield* fail('{"item":1,"end":{"count":1}}\n')
      expect([twoKeys.reason, twoKeys.path]).toEqual(["InvalidShape", "line 1"])
      const array = yield* fail("[1]\n")
      expect(array.message).toMatch(/exactly one of "item", "end", "err"/)
      const count = yield* fail('{"item":1}\n{"end":{"count":2}}\n')
      expect(count.message).toMatch(/counts 2 item\(s\), 1 arrived/)
      const noCount = yield* fail('{"end":{}}\n')
      expect(noCount.message).toMatch(/non-negative integer "count"/)
      const badValue = yield* fail('{"item":{"type":"bytes","contents":"@@"}}\n')
      expect([badValue.reason, badValue.path]).toEqual(["InvalidBytes", "line 1 $.item.contents"])
    })
  )

  it.effect("a transport error passes through as it is", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(
        Stream.runDrain(Wire.decodeStreamFrames(Stream.concat(body('{"item":1}\n'), Stream.fail("reset" as const))))
      )
      expect(error).toBe("reset")
    })
  )
})

describe("ndjson.decodeRemote", () => {
  const tokens = Remote.stream(
    "tokens",
    {
      payload: Schema.Struct({ n: Schema.Number }),
      element: Schema.Struct({ token: Schema.String, at: Schema.DateFromString }),
      error: OutOfTokens
    },
    () => Stream.empty
  )
  const at = new Date("2024-01-02T03:04:05.000Z")
  const item = (token: string) =>
    `{"item":{"type":"dict","contents":[["token","${token}"],["at","${at.toISOString()}"]]}}\n`
  const errLine = (error: unknown) => Effect.runSync(Wire.streamErr(error))

  it.effect("decodes each element with the element schema", () =>
    Effect.gen(function* () {
      const out = yield* Stream.runCollect(
        ndjson.decodeRemote(tokens, body(item("a"), item("b"), '{"end":{"count":2}}\n'))
      )
      expect(Chunk.toReadonlyArray(out)).toEqual([
        { token: "a", at },
        { token: "b", at }
      ])
    })
  )

  it.effect("fails with the declared error of an err line, after the elements before it", () =>
    Effect.gen(function* () {
      const seen: Array<string> = []
      const error = yield* ndjson.decodeRemote(tokens, body(item("a"), errLine(new OutOfTokens({ after: 1 })))).pipe(
        Stream.runForEach((e) => Effect.sync(() => seen.push(e.token))),
        Effect.flip
      )
      expect(seen).toEqual(["a"])
      expect(error).toBeInstanceOf(OutOfTokens)
      expect(error).toEqual(new OutOfTokens({ after: 1 }))
    })
  )

  it.effect("fails with the worker's own errors (timeout, defect), and a protocol error otherwise", () =>
    Effect.gen(function* () {
      const timeout = yield* Effect.flip(
        Stream.runDrain(
          ndjson.decodeRemote(tokens, body(errLine(new CallTimeout({ remote: "tokens", timeoutMillis: 5 }))))
        )
      )
      expect(timeout).toBeInstanceOf(CallTimeout)
      const undeclared = yield* Effect.flip(
        Stream.runDrain(ndjson.decodeRemote(tokens, body(errLine(new Error("gpu on fire")))))
      )
      expect(undeclared).toBeInstanceOf(CallFailed)
      expect(undeclared).toMatchObject({
        reason: "protocol",
        detail: "the worker sent an undeclared error: gpu on fire"
      })
      const wrongElement = yield* Effect.flip(Stream.runDrain(ndjson.decodeRemote(tokens, body('{"item":3}\n'))))
      expect(wrongElement).toMatchObject({ _tag: "CallFailed", reason: "protocol" })
      expect((wrongElement as CallFailed).detail).toMatch(/does not match the element schema/)
      const cut = yield* Effect.flip(Stream.runDrain(ndjson.decodeRemote(tokens, body(item("a")))))
      expect(cut).toMatchObject({ _tag: "CallFailed", reason: "protocol" })
      expect((cut as CallFailed).detail).toMatch(/without an end or err line/)
    })
  )

  it.effect("round trip: what encode writes, decodeRemote reads back", () =>
    Effect.gen(function* () {
      const encodeElement = Schema.encode(tokens.element)
      const source = Stream.concat(
        Stream.make({ token: "x", at }, { token: "y", at }),
        Stream.fail(new OutOfTokens({ after: 2 }))
      )
      const text = yield* collectText(
        ndjson.encode(source, { encodeElement, onFailure: (cause) => Effect.succeed(Cause.squash(cause)) })
      )
      // Re-chunked at every 7 bytes, as a socket might deliver it.
      const bytes = utf8(text)
      const chunks = splitAt(bytes, ...Array.from({ length: Math.floor(bytes.length / 7) }, (_, i) => (i + 1) * 7))
      const exit = yield* Effect.exit(Stream.runCollect(ndjson.decodeRemote(tokens, Stream.fromIterable(chunks))))
      expect(Exit.isFailure(exit) && Cause.failureOption(exit.cause)).toEqual(
        Option.some(new OutOfTokens({ after: 2 }))
      )
      const items = yield* Stream.runCollect(
        ndjson.decodeRemote(tokens, Stream.fromIterable(chunks)).pipe(Stream.catchAll(() => Stream.empty))
      )
      expect(Chunk.toReadonlyArray(items).map((e) => e.token)).toEqual(["x", "y"])
    })
  )
})
