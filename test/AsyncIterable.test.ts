import { describe, expect, it } from "@effect/vitest"
import { Effect, Schema, Stream } from "effect"
import { asyncIterable } from "../src/App.js"
import { RemoteFailure } from "../src/WorkerError.js"

class OutOfTokens extends Schema.TaggedError<OutOfTokens>()("OutOfTokens", { after: Schema.Number }) {}

const collect = async <A>(iterable: AsyncIterable<A>): Promise<Array<A>> => {
  const out: Array<A> = []
  for await (const a of iterable) out.push(a)
  return out
}

describe("App.asyncIterable", () => {
  it("yields every element in order, across chunks", async () => {
    const stream = Stream.range(1, 10).pipe(Stream.rechunk(3))
    expect(await collect(asyncIterable(stream))).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    expect(await collect(asyncIterable(Stream.empty))).toEqual([])
  })

  it("rejects with the error value itself, after the elements before it", async () => {
    const seen: Array<number> = []
    const failing = Stream.concat(Stream.make(1, 2), Stream.fail(new OutOfTokens({ after: 2 })))
    const error = await (async () => {
      for await (const n of asyncIterable(failing)) seen.push(n)
    })().catch((e: unknown) => e)
    expect(seen).toEqual([1, 2])
    expect(error).toBeInstanceOf(OutOfTokens)
    expect((error as OutOfTokens).after).toBe(2)
    // A remote's declared error reaches a Promise caller unwrapped, as for a plain call.
    const wrapped = Stream.fail(new RemoteFailure({ remote: "r", error: new OutOfTokens({ after: 0 }), encoded: {} }))
    await expect(collect(asyncIterable(wrapped))).rejects.toBeInstanceOf(OutOfTokens)
    // A defect rejects with what was thrown.
    const dies = Stream.fromEffect(Effect.die(new TypeError("bad")))
    await expect(collect(asyncIterable(dies))).rejects.toThrow(TypeError)
  })

  it("leaving the loop early closes the stream: its finalizer runs", async () => {
    let finalized = 0
    let produced = 0
    const stream = Stream.repeatEffect(Effect.sync(() => ++produced)).pipe(
      Stream.ensuring(Effect.sync(() => finalized++))
    )
    for await (const n of asyncIterable(stream)) {
      if (n === 3) break
    }
    expect(finalized).toBe(1)
    const after = produced
    await new Promise((resolve) => setTimeout(resolve, 0))
    expect(produced).toBe(after)
  })

  it("return() while a next() waits interrupts the pull; the pending next() reports the end", async () => {
    let finalized = 0
    const stream = Stream.concat(Stream.make(1), Stream.never).pipe(Stream.ensuring(Effect.sync(() => finalized++)))
    const iterator = asyncIterable(stream)[Symbol.asyncIterator]()
    expect(await iterator.next()).toEqual({ done: false, value: 1 })
    const pending = iterator.next()
    await iterator.return!()
    expect(await pending).toEqual({ done: true, value: undefined })
    expect(finalized).toBe(1)
    expect(await iterator.next()).toEqual({ done: true, value: undefined })
  })

  it("each loop runs the stream anew", async () => {
    let runs = 0
    const stream = Stream.fromEffect(Effect.sync(() => ++runs))
    const iterable = asyncIterable(stream)
    expect(await collect(iterable)).toEqual([1])
    expect(await collect(iterable)).toEqual([2])
  })
})
