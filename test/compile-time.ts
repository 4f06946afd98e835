/**
 * Compile-time checks. Nothing here runs, and vitest does not load this file: `tsc` checks it (`npm run typecheck`,
 * the first step of CI after the install). Each `@ts-expect-error` must meet a type error on the line below it, or
 * `tsc` fails with "Unused '@ts-expect-error' directive": a check that stops rejecting fails CI. The lines without the
 * directive must compile, so a check that starts rejecting good code fails CI too.
 */
import { Context, Effect, Schema } from "effect"
import { App } from "../src/App.js"
import * as Deployment from "../src/Deployment.js"
import * as Remote from "../src/Remote.js"
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
