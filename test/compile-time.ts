/**
 * Compile-time checks. Nothing here runs, and vitest does not load this file: `tsc` checks it (`npm run typecheck`,
 * the first step of CI after the install). Each `@ts-expect-error` must meet a type error on the line below it, or
 * `tsc` fails with "Unused '@ts-expect-error' directive": a check that stops rejecting fails CI. The lines without the
 * directive must compile, so a check that starts rejecting good code fails CI too.
 */
import { Context, Effect, Schema, Stream } from "effect"
import { App } from "../src/App.js"
import * as Deployment from "../src/Deployment.js"
import * as Remote from "../src/Remote.js"
import * as Worker from "../src/Worker.js"
import * as WorkerClient from "../src/WorkerClient.js"
import * as WorkerContext from "../src/WorkerContext.js"

/** `@app.context(...)` and `app.context(Cls, ...)` check their arguments against the class's constructor. */
export const appContextArguments = () => {
  const app = new App("types")
  // @ts-expect-error the constructor takes a string first
  @app.context(42)
  class Model {
    constructor(readonly name: string) {}
  }
  // @ts-expect-error the same check without the decorator
  app.context(Model, 42)
  // @ts-expect-error a missing argument
  app.context(Model)
  app.context(Model, "model")

  @app.context("tokenizer", { vocab: 8 })
  class Tokenizer {
    constructor(
      readonly name: string,
      readonly opts: { vocab?: number } = {}
    ) {}
  }
  return Tokenizer
}

class Model extends Context.Tag("Model")<Model, { readonly run: () => number }>() {}
class Tokenizer extends Context.Tag("Tokenizer")<Tokenizer, { readonly vocab: number }>() {}

const infer = Remote.make(
  "infer",
  { payload: Schema.Struct({}), success: Schema.Number, benchmark: { dataset: [{}] } },
  () => Effect.map(Model, (m) => m.run())
)
const ModelLive = WorkerContext.make(Model, { enter: Effect.succeed({ run: () => 1 }) })

/** `Deployment.make` refuses a remote that needs a context no registered one provides. */
export const deploymentContexts = () => {
  // @ts-expect-error no registered context provides Model
  Deployment.make("x", { contexts: [], remotes: [infer] })
  return Deployment.make("y", { contexts: [ModelLive], remotes: [infer] })
}

/** `WorkerContext.make` refuses an `enter` that uses a tag missing from `dependsOn`. */
export const undeclaredDependency = () => {
  class Engine extends Context.Tag("Engine")<Engine, number>() {}
  // @ts-expect-error enter reads Tokenizer, which dependsOn does not list
  WorkerContext.make(Engine, { enter: Effect.map(Tokenizer, (t) => t.vocab) })
  return WorkerContext.make(Engine, { dependsOn: [Tokenizer], enter: Effect.map(Tokenizer, (t) => t.vocab) })
}

const tokens = Remote.stream(
  "tokens",
  { payload: Schema.Struct({ n: Schema.Number }), element: Schema.String },
  ({ n }) => Stream.unwrap(Effect.map(Model, (m) => Stream.make(String(m.run() + n))))
)

/** A stream remote's Stream requirements are checked like a plain remote's; its calls are typed Streams. */
export const streamRemotes = () => {
  // @ts-expect-error no registered context provides Model (the stream's requirement)
  Deployment.make("x", { contexts: [], remotes: [tokens, infer] })
  const app = Deployment.make("y", { contexts: [ModelLive], remotes: [tokens, infer] })
  return Effect.gen(function* () {
    const worker = yield* Worker.make(app)
    const elements: Stream.Stream<string, unknown> = worker.call(tokens, { n: 1 })
    const value: Effect.Effect<number, unknown> = worker.call(infer, {})
    // @ts-expect-error a stream remote's call is a Stream, not an Effect
    const wrong: Effect.Effect<string, unknown> = worker.call(tokens, { n: 1 })
    const client = yield* WorkerClient.make(app, { url: "http://127.0.0.1:8000" })
    const remoteElements: Stream.Stream<string, unknown> = client.tokens({ n: 1 })
    const promises = WorkerClient.makePromise(app, { url: "http://127.0.0.1:8000" })
    const iterable: AsyncIterable<string> = promises.tokens({ n: 1 })
    const promised: Promise<number> = promises.infer({})
    return [elements, value, wrong, remoteElements, iterable, promised] as const
  })
}

/** `app.remote` with an `async function*` is a stream remote: its call is an AsyncIterable. */
export const appStreams = () => {
  const app = new App("gen")
  const count = app.remote({ name: "count" }, async function* ({ to }: { to: number }) {
    for (let i = 0; i < to; i++) yield i
  })
  const iterable: AsyncIterable<number> = count({ to: 3 })
  const plain = app.remote({ name: "plain" }, async ({ x }: { x: number }) => x * 2)
  const promised: Promise<number> = plain({ x: 1 })
  return [iterable, promised] as const
}
