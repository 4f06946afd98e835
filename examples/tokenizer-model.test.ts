/**
 * Testing a deployment's remotes with @effect/vitest, as a user of effect-deployments would: copy this file beside
 * your deployment and change the names. It runs with the rest of the suite (`npx vitest run`), and takes no real
 * time although the contexts take 300 and 400 ms to load: the worker runs on Effect's clock, which is the `TestClock`
 * inside `it.effect` and `it.scoped`.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Layer, TestClock } from "effect"
import { Deployment, type Remote, WorkerTest } from "effect-deployments"
import { app, Model } from "./tokenizer-model.js"

/**
 * A client over the deployment running in process, in the test's scope (shut down when the test ends). The contexts
 * load while the TestClock stands still, so move it past the slowest one before waiting for the client.
 */
const startClient = <Provides, E, Remotes extends Remote.Definition>(
  deployment: Deployment.Deployment<Provides, E, Remotes>
) =>
  Effect.gen(function* () {
    const started = yield* Effect.fork(WorkerTest.client(deployment))
    yield* TestClock.adjust("1 minute")
    return yield* Fiber.join(started)
  })

describe("tokenizer-model", () => {
  it.scoped("generate continues the prompt with the real contexts", () =>
    Effect.gen(function* () {
      const client = yield* startClient(app)
      expect(yield* client.generate({ prompt: "the cat", maxTokens: 3 })).toBe("the cat sat on the")
      expect(yield* client.vocabSize({})).toBe(8)
    })
  )

  it.scoped("generate uses whatever the model predicts (the model replaced by a test double)", () =>
    Effect.gen(function* () {
      // The double must provide the Model service: `Layer.succeed(Model, { next: "x" })` does not compile.
      const alwaysThe = Layer.succeed(Model, { next: () => 0 }) // token 0 is "the"
      const client = yield* startClient(Deployment.override(app, Model, alwaysThe))
      expect(yield* client.generate({ prompt: "the cat", maxTokens: 2 })).toBe("the cat the the")
    })
  )

  it.scoped("a payload outside the schema fails with PayloadInvalid, naming the field", () =>
    Effect.gen(function* () {
      const client = yield* startClient(app)
      const error = yield* Effect.flip(client.generate({ prompt: "the", maxTokens: 100 }))
      expect(error._tag).toBe("PayloadInvalid")
      expect(error).toMatchObject({ issues: [{ path: ["maxTokens"] }] })
    })
  )
})
