import { describe, expect, it } from "@effect/vitest"
import { Cause, Chunk, Context, Duration, Effect, Either, Exit, Schema, Stream } from "effect"
import * as Deployment from "../src/Deployment.js"
import * as Remote from "../src/Remote.js"

class Model extends Context.Tag("Model")<Model, { readonly double: (n: number) => number }>() {}
class Tokenizer extends Context.Tag("Tokenizer")<Tokenizer, { readonly split: (s: string) => Array<string> }>() {}

class Negative extends Schema.TaggedError<Negative>()("Negative", { n: Schema.Number }) {}

const Payload = Schema.Struct({ n: Schema.Number })

/** Type-level equality, for asserting what the definitions infer. */
type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false
const assertType = <T extends true>(_: T): void => {}

describe("Remote.make with batch", () => {
  const doubleAll = Remote.make(
    "double",
    { payload: Payload, success: Schema.Number, error: Negative, batch: { maxSize: 4, maxWait: "5 millis" } },
    (payloads) =>
      Effect.map(Model, (model) =>
        payloads.map(({ n }) => (n < 0 ? Either.left(new Negative({ n })) : Either.right(model.double(n))))
      )
  )
  const model = Model.of({ double: (n) => n * 2 })

  it("resolves the batch options", () => {
    expect(doubleAll.kind).toBe("unary")
    expect(doubleAll.batch?.maxSize).toBe(4)
    expect(Duration.toMillis(doubleAll.batch!.maxWait)).toBe(5)
    expect(doubleAll.batch?.latencyBudget).toBeUndefined()
    assertType<Equals<Remote.ContextOf<typeof doubleAll>, Model>>(true)
  })

  it.effect("the batch handler gives one Exit per payload, in order", () =>
    Effect.gen(function* () {
      const exits = yield* doubleAll.batch!.handler([{ n: 1 }, { n: -2 }, { n: 3 }])
      expect(exits).toEqual([Exit.succeed(2), Exit.fail(new Negative({ n: -2 })), Exit.succeed(6)])
    }).pipe(Effect.provideService(Model, model))
  )

  it.effect("the unary handler runs a batch of one (what runs where no batcher gathers calls)", () =>
    Effect.gen(function* () {
      expect(yield* doubleAll.handler({ n: 21 })).toBe(42)
      expect(yield* Effect.flip(doubleAll.handler({ n: -1 }))).toEqual(new Negative({ n: -1 }))
    }).pipe(Effect.provideService(Model, model))
  )

  it.effect("a handler returning the wrong number of results is a defect naming the remote", () =>
    Effect.gen(function* () {
      const short = Remote.make(
        "short",
        { payload: Payload, success: Schema.Number, batch: { maxSize: 2, maxWait: 0 } },
        () => Effect.succeed([1])
      )
      const exit = yield* Effect.exit(short.batch!.handler([{ n: 1 }, { n: 2 }]))
      expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
      expect(String(Exit.isFailure(exit) && Cause.squash(exit.cause))).toMatch(
        /Remote "short": the batch handler returned 1 result\(s\) for 2 payload\(s\)/
      )
    })
  )

  it.effect("a handler that throws is a defect, as for a plain remote", () =>
    Effect.gen(function* () {
      const throws = Remote.make(
        "throws",
        { payload: Payload, success: Schema.Number, batch: { maxSize: 2, maxWait: 0 } },
        () => {
          throw new Error("boom")
        }
      )
      const exit = yield* Effect.exit(throws.batch!.handler([{ n: 1 }]))
      expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
    })
  )

  it("auto needs a latency budget above maxWait", () => {
    const auto = Remote.make(
      "auto",
      {
        payload: Payload,
        success: Schema.Number,
        batch: { maxSize: "auto", maxWait: "10 millis", latencyBudget: "200 millis" }
      },
      (ps) => Effect.succeed(ps.map((p) => p.n))
    )
    expect(auto.batch?.maxSize).toBe("auto")
    expect(auto.batch?.maxAutoSize).toBe(Remote.DEFAULT_MAX_AUTO_SIZE)
    expect(Duration.toMillis(auto.batch!.latencyBudget!)).toBe(200)
    const make = (batch: Remote.BatchOptions) =>
      Remote.make("bad", { payload: Payload, success: Schema.Number, batch }, (ps) => Effect.succeed(ps.map(() => 1)))
    expect(() => make({ maxSize: "auto", maxWait: "10 millis", latencyBudget: "10 millis" })).toThrow(
      /latencyBudget \(10ms\) must exceed batch.maxWait \(10ms\)/
    )
    // @ts-expect-error auto needs a latencyBudget
    expect(() => make({ maxSize: "auto", maxWait: "10 millis" })).toThrow(/"auto" needs a latencyBudget/)
    expect(() => make({ maxSize: 0, maxWait: 0 })).toThrow(/batch.maxSize must be a positive integer, got 0/)
    expect(() => make({ maxSize: 2, maxWait: Duration.infinity })).toThrow(/batch.maxWait must be a finite duration/)
    expect(() => make({ maxSize: "auto", maxWait: 0, latencyBudget: "1 second", maxAutoSize: 1.5 })).toThrow(
      /batch.maxAutoSize must be a positive integer, got 1.5/
    )
  })

  it("Deployment.make refuses an auto batch size the benchmark does not measure", () => {
    const auto = Remote.make(
      "auto",
      {
        payload: Payload,
        success: Schema.Number,
        batch: { maxSize: "auto", maxWait: "10 millis", latencyBudget: "200 millis" }
      },
      (ps) => Effect.succeed(ps.map((p) => p.n))
    )
    const benched = Remote.make(
      "benched",
      { payload: Payload, success: Schema.Number, benchmark: { dataset: [{ n: 1 }] } },
      ({ n }) => Effect.succeed(n)
    )
    expect(() => Deployment.make("d", { contexts: [], remotes: [benched, auto] })).toThrow(
      /batch maxSize "auto" is chosen by the benchmark, which runs on "benched"; auto must declare the benchmark/
    )
    const measured = Remote.make(
      "measured",
      {
        payload: Payload,
        success: Schema.Number,
        batch: { maxSize: "auto", maxWait: "10 millis", latencyBudget: "200 millis" },
        benchmark: { dataset: [{ n: 1 }] }
      },
      (ps) => Effect.succeed(ps.map((p) => p.n))
    )
    expect(Deployment.make("d", { contexts: [], remotes: [measured] }).benchmarkRemote).toBe(measured)
  })

  it("a batched handler must take an array (type error otherwise)", () => {
    Remote.make(
      "typed",
      { payload: Payload, success: Schema.Number, batch: { maxSize: 2, maxWait: 0 } },
      // @ts-expect-error the batch handler receives an array of payloads
      ({ n }) => Effect.succeed([n])
    )
    // @ts-expect-error without batch, the handler receives one payload (no overload matches)
    Remote.make("typed", { payload: Payload, success: Schema.Number }, (payloads: ReadonlyArray<{ n: number }>) =>
      Effect.succeed(payloads.length)
    )
  })
})

describe("Remote.stream", () => {
  const tokens = Remote.stream(
    "tokens",
    {
      payload: Schema.Struct({ text: Schema.String }),
      element: Schema.String,
      error: Negative,
      benchmark: { dataset: [{ text: "a b" }], workload: ({ text }) => text.split(" ").length }
    },
    ({ text }) => Stream.unwrap(Effect.map(Tokenizer, (t) => Stream.fromIterable(t.split(text))))
  )

  it("is a stream remote, told apart by kind", () => {
    expect(tokens.kind).toBe("stream")
    expect(Remote.isStream(tokens)).toBe(true)
    expect(Remote.isRemote(tokens)).toBe(false)
    expect(Remote.isDefinition(tokens)).toBe(true)
    expect(tokens.fields).toEqual(["text"])
    expect(tokens.concurrency).toBe(1)
    expect(tokens.maxQueue).toBe(1000)
    const plain = Remote.make("plain", { payload: Payload, success: Schema.Number }, ({ n }) => Effect.succeed(n))
    expect(Remote.isStream(plain)).toBe(false)
    expect(Remote.isDefinition(plain)).toBe(true)
    const anyRemote: Remote.Definition = tokens as Remote.Definition
    if (anyRemote.kind === "stream") expect(anyRemote.element).toBe(Schema.String)
  })

  it("its context requirements are its Stream's (what Deployment's check reads)", () => {
    assertType<Equals<Remote.ContextOf<typeof tokens>, Tokenizer>>(true)
    const both = Remote.stream("both", { payload: Payload, element: Schema.Number }, ({ n }) =>
      Stream.unwrap(Effect.zipWith(Model, Tokenizer, (m) => Stream.make(m.double(n))))
    )
    assertType<Equals<Remote.ContextOf<typeof both>, Model | Tokenizer>>(true)
    const none = Remote.stream("none", { payload: Payload, element: Schema.Number }, ({ n }) => Stream.make(n))
    assertType<Equals<Remote.ContextOf<typeof none>, never>>(true)
  })

  it.effect("the handler's Stream runs with the contexts provided", () =>
    Effect.gen(function* () {
      const out = yield* Stream.runCollect(tokens.handler({ text: "the cat sat" }))
      expect(Chunk.toReadonlyArray(out)).toEqual(["the", "cat", "sat"])
    }).pipe(Effect.provideService(Tokenizer, { split: (s) => s.split(" ") }))
  )

  it("checks its name and sizes as make does", () => {
    const opts = { payload: Payload, element: Schema.Number }
    expect(() => Remote.stream("bad name", opts, () => Stream.empty)).toThrow(/URL-safe/)
    expect(() => Remote.stream("s", { ...opts, concurrency: 0 }, () => Stream.empty)).toThrow(
      /concurrency must be a positive integer, got 0/
    )
  })

  it("an element of the wrong type is a type error", () => {
    // @ts-expect-error elements must be strings
    Remote.stream("wrong", { payload: Payload, element: Schema.String }, ({ n }) => Stream.make(n))
  })
})
