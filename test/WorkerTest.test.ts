import { describe, expect, it } from "@effect/vitest"
import { Chunk, Context, Effect, Fiber, Layer, Schema, Stream, TestClock } from "effect"
import * as Deployment from "../src/Deployment.js"
import * as Remote from "../src/Remote.js"
import * as WorkerContext from "../src/WorkerContext.js"
import * as WorkerTest from "../src/WorkerTest.js"

class Model extends Context.Tag("Model")<Model, { readonly scale: (x: number) => number }>() {}

class TooBig extends Schema.TaggedError<TooBig>()("TooBig", { limit: Schema.Number }) {}

const log: Array<string> = []

/** A model that takes 30 seconds to load, and counts its calls. */
let calls = 0
const ModelLive = WorkerContext.make(Model, {
  enter: Effect.as(Effect.sleep("30 seconds"), {
    scale: (x: number) => {
      calls++
      return x * 10
    }
  }),
  exit: () => Effect.sync(() => log.push("exit:model"))
})

const scale = Remote.make(
  "scale",
  {
    payload: Schema.Struct({ x: Schema.Number, times: Schema.optionalWith(Schema.Int, { default: () => 1 }) }),
    success: Schema.Number,
    error: TooBig,
    benchmark: { dataset: [{ x: 1 }], runs: 3 }
  },
  ({ times, x }) =>
    Effect.flatMap(Model, (m) => {
      const y = m.scale(x) * times
      return y > 1000 ? Effect.fail(new TooBig({ limit: 1000 })) : Effect.succeed(y)
    })
)

/** Bytes in, a date out: both cross the wire in an encoded form and come back as themselves. */
const stamp = Remote.make(
  "stamp",
  { payload: Schema.Struct({ data: Schema.Uint8ArrayFromSelf }), success: Schema.DateFromString },
  ({ data }) => Effect.succeed(new Date(Date.UTC(2024, 0, data.length)))
)

const nan = Remote.make("nan", { payload: Schema.Struct({}), success: Schema.Number }, () => Effect.succeed(NaN))

/** The multiples of `x` up to `count` of them; past 3 of them, the declared error, midway. */
const multiples = Remote.stream(
  "multiples",
  { payload: Schema.Struct({ x: Schema.Number, count: Schema.Int }), element: Schema.Number, error: TooBig },
  ({ count, x }) =>
    Stream.unwrap(
      Effect.map(Model, (m) =>
        Stream.range(1, count).pipe(
          Stream.mapEffect((i) => (i > 3 ? Effect.fail(new TooBig({ limit: 3 })) : Effect.succeed(m.scale(x) * i)))
        )
      )
    )
)

const app = Deployment.make("scaler", { contexts: [ModelLive], remotes: [scale, stamp, nan, multiples] })

const fake = Layer.succeed(Model, { scale: (x: number) => x + 0.5 })

describe("WorkerTest.client", () => {
  it.scoped("calls the remotes in process with the client's types, through their schemas", () =>
    Effect.gen(function* () {
      const client = yield* WorkerTest.client(Deployment.override(app, Model, fake))
      const n: number = yield* client.scale({ x: 2, times: 3 })
      expect(n).toBe(7.5)
      const date: Date = yield* client.stamp({ data: new Uint8Array(3) })
      expect(date).toEqual(new Date(Date.UTC(2024, 0, 3)))
    })
  )

  it.scoped("fails with the remote's declared error, as its own class", () =>
    Effect.gen(function* () {
      const client = yield* WorkerTest.client(Deployment.override(app, Model, fake))
      const error = yield* Effect.flip(client.scale({ x: 1000, times: 1 }))
      expect(error).toBeInstanceOf(TooBig)
      expect(error).toMatchObject({ _tag: "TooBig", limit: 1000 })
    })
  )

  it.scoped("refuses an invalid payload and a result the wire cannot carry, as over HTTP", () =>
    Effect.gen(function* () {
      const client = yield* WorkerTest.client(Deployment.override(app, Model, fake))
      const invalid = yield* Effect.flip(client.scale({ x: 1, times: 1.5 }))
      expect(invalid).toMatchObject({ _tag: "PayloadInvalid", remote: "scale" })
      const unsendable = yield* Effect.flip(client.nan({}))
      expect(unsendable).toMatchObject({ _tag: "CallFailed", remote: "nan", reason: "encode" })
      expect(unsendable.message).toContain("NaN cannot be sent as JSON")
    })
  )

  it.scoped("a stream remote gives a typed Stream of its elements, and its declared error midway", () =>
    Effect.gen(function* () {
      const client = yield* WorkerTest.client(Deployment.override(app, Model, fake))
      const elements: Chunk.Chunk<number> = yield* Stream.runCollect(client.multiples({ x: 1, count: 3 }))
      expect(Chunk.toArray(elements)).toEqual([1.5, 3, 4.5])
      const seen: Array<number> = []
      const error = yield* Effect.flip(
        Stream.runForEach(client.multiples({ x: 1, count: 5 }), (n) => Effect.sync(() => seen.push(n)))
      )
      expect(seen).toEqual([1.5, 3, 4.5])
      expect(error).toBeInstanceOf(TooBig)
    })
  )

  it.scoped("a context that loads for 30 seconds enters when the TestClock says so", () =>
    Effect.gen(function* () {
      calls = 0
      const started = yield* Effect.fork(WorkerTest.make(app))
      yield* TestClock.adjust("29 seconds")
      expect(started.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 second")
      const { client, worker } = yield* Fiber.join(started)
      expect(yield* client.scale({ x: 3, times: 1 })).toBe(30)
      const report = yield* worker.report
      expect(report.contexts.map((c) => [c.key, c.state, c.enterMillis])).toEqual([["Model", "entered", 30_000]])
      // No benchmark by default: the one call is the test's
      expect(calls).toBe(1)
    })
  )

  it.scoped("runs the benchmark when asked", () =>
    Effect.gen(function* () {
      const { worker } = yield* WorkerTest.make(Deployment.override(app, Model, fake), { benchmark: true })
      expect((yield* worker.report).benchmark).toMatchObject({ remote: "scale", calls: 3 })
    })
  )

  it.effect("shuts the worker down when the scope closes, exiting every context", () =>
    Effect.gen(function* () {
      log.length = 0
      yield* Effect.scoped(
        Effect.gen(function* () {
          const started = yield* Effect.fork(WorkerTest.client(app))
          yield* TestClock.adjust("30 seconds")
          yield* Fiber.join(started)
          expect(log).toEqual([])
        })
      )
      expect(log).toEqual(["exit:model"])
    })
  )
})

describe("Deployment.override", () => {
  class Tokenizer extends Context.Tag("Tokenizer")<Tokenizer, { readonly split: (s: string) => Array<string> }>() {}
  class Engine extends Context.Tag("Engine")<Engine, { readonly count: (s: string) => number }>() {}
  const TokenizerLive = WorkerContext.make(Tokenizer, { enter: Effect.succeed({ split: (s: string) => s.split(" ") }) })
  const EngineLive = WorkerContext.make(Engine, {
    dependsOn: [Tokenizer],
    enter: Effect.map(Tokenizer, (t) => ({ count: (s: string) => t.split(s).length }))
  })
  const count = Remote.make(
    "count",
    {
      payload: Schema.Struct({ text: Schema.String }),
      success: Schema.Number,
      benchmark: { dataset: [{ text: "a" }] }
    },
    ({ text }) => Effect.map(Engine, (e) => e.count(text))
  )
  const words = Deployment.make("words", { contexts: [TokenizerLive, EngineLive], remotes: [count] })
  const byChar = Layer.succeed(Tokenizer, { split: (s: string) => [...s] })

  it.scoped("gives the contexts that depend on the replaced one the double; the original is unchanged", () =>
    Effect.gen(function* () {
      const doubled = yield* WorkerTest.client(Deployment.override(words, Tokenizer, byChar))
      expect(yield* doubled.count({ text: "a b" })).toBe(3)
      const original = yield* WorkerTest.client(words)
      expect(yield* original.count({ text: "a b" })).toBe(2)
    })
  )

  it.scoped("keeps the context's key: the report and WorkerContext.get see the double", () =>
    Effect.gen(function* () {
      const { worker } = yield* WorkerTest.make(Deployment.override(words, Tokenizer, byChar))
      const report = yield* worker.report
      expect(report.contexts.map((c) => [c.key, c.state])).toEqual([
        ["Tokenizer", "entered"],
        ["Engine", "entered"]
      ])
      expect((yield* WorkerContext.get(Tokenizer)).split("ab")).toEqual(["a", "b"])
    })
  )

  it.effect("a scoped double is released when the context exits, after its dependents", () =>
    Effect.gen(function* () {
      const events: Array<string> = []
      const EngineTracked = WorkerContext.make(Engine, {
        dependsOn: [Tokenizer],
        enter: Effect.map(Tokenizer, (t) => ({ count: (s: string) => t.split(s).length })),
        exit: () => Effect.sync(() => events.push("exit:engine"))
      })
      const tracked = Deployment.make("words", { contexts: [TokenizerLive, EngineTracked], remotes: [count] })
      const scoped = Layer.scoped(
        Tokenizer,
        Effect.acquireRelease(
          Effect.sync(() => (events.push("acquire:double"), { split: (s: string) => [s] })),
          () => Effect.sync(() => events.push("release:double"))
        )
      )
      yield* Effect.scoped(WorkerTest.client(Deployment.override(tracked, Tokenizer, scoped)))
      expect(events).toEqual(["acquire:double", "exit:engine", "release:double"])
    })
  )

  it.scoped("takes a context made with WorkerContext.make, with its own dependencies", () =>
    Effect.gen(function* () {
      const EngineDouble = WorkerContext.make(Engine, {
        dependsOn: [Tokenizer],
        enter: Effect.map(Tokenizer, (t) => ({ count: (s: string) => t.split(s).length * 100 }))
      })
      const client = yield* WorkerTest.client(Deployment.override(words, Engine, EngineDouble))
      expect(yield* client.count({ text: "a b" })).toBe(200)
    })
  )

  it("throws DeploymentInvalid for a context the deployment does not have", () => {
    class Other extends Context.Tag("Other")<Other, number>() {}
    const override = Deployment.override as (...args: ReadonlyArray<unknown>) => unknown
    expect(() => override(words, Other, Layer.succeed(Other, 1))).toThrow(
      'Deployment "words": cannot override "Other", which is not one of its contexts (Tokenizer, Engine)'
    )
    expect(() => override(words, Tokenizer, EngineLive)).toThrow(
      'Deployment "words": the double for "Tokenizer" is the context "Engine"'
    )
  })

  it("is typed: the double must provide the context's service, for a context the deployment has", () => {
    class Other extends Context.Tag("Other")<Other, number>() {}
    const needsTokenizer = Layer.effect(
      Engine,
      Effect.map(Tokenizer, () => ({ count: () => 1 }))
    )
    // Never called: the compiler is the test (tsc fails when an expected error does not occur)
    const typeChecks = () => [
      // @ts-expect-error the double provides another service
      Deployment.override(words, Tokenizer, Layer.succeed(Engine, { count: () => 1 })),
      // @ts-expect-error the double's service has the wrong shape
      Deployment.override(words, Tokenizer, Layer.succeed(Tokenizer, { split: (s: string) => s.length })),
      // @ts-expect-error the deployment has no such context
      Deployment.override(words, Other, Layer.succeed(Other, 1)),
      // @ts-expect-error a plain layer must need nothing (use WorkerContext.make with dependsOn)
      Deployment.override(words, Engine, needsTokenizer)
    ]
    expect(typeof typeChecks).toBe("function")
  })
})
