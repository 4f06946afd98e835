import { FetchHttpClient } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, ParseResult, Schema } from "effect"
import * as Spec from "../examples/square-spec.js"
import { app } from "../examples/square.js"
import * as Deployment from "../src/Deployment.js"
import * as Remote from "../src/Remote.js"
import * as Worker from "../src/Worker.js"
import * as WorkerClient from "../src/WorkerClient.js"

const local = { port: 0, host: "127.0.0.1", handleSignals: false, benchmark: false } as const

describe("Remote specs", () => {
  it("a spec carries the name and Schemas; implement adds the handler and limits", () => {
    expect(Remote.isSpec(Spec.square)).toBe(true)
    expect(Remote.isRemote(Spec.square)).toBe(false)
    expect(Spec.square.fields).toEqual(["x"])
    const live = Remote.implement(Spec.square, { concurrency: 2, benchmark: { dataset: [{ x: 1 }] } }, ({ x }) =>
      Effect.succeed(x + 1)
    )
    expect(Remote.isRemote(live)).toBe(true)
    expect(live).toMatchObject({ name: "square", concurrency: 2, maxQueue: 1000, fields: ["x"] })
    expect(live.payload).toBe(Spec.square.payload)
    expect(() => Remote.define("bad name", { payload: Schema.Struct({}), success: Schema.Number })).toThrow(/URL-safe/)
  })

  it.scopedLive("a client made from the specs alone calls the served deployment", () =>
    Effect.gen(function* () {
      const { url, worker } = yield* Worker.serveEffect(app, local)
      yield* worker.awaitReady
      const client = yield* WorkerClient.make([Spec.square], { url })
      expect(yield* client.square({ x: 7 })).toBe(49)
    }).pipe(Effect.provide(FetchHttpClient.layer))
  )

  it("schemas that need services of their own are rejected by the type checker (checked by tsc in CI)", () => {
    // This test's assertions are the @ts-expect-error lines: `tsc --noEmit` (run by CI) fails if they stop being
    // errors. At run time it only checks that such a remote is not made silently valid by a cast.
    class Tokenizer extends Context.Tag("Tokenizer")<Tokenizer, { readonly split: (s: string) => Array<string> }>() {}
    const Tokens = Schema.transformOrFail(Schema.String, Schema.Array(Schema.String), {
      decode: (s) => Effect.map(Tokenizer, (t) => t.split(s)),
      encode: (words) => ParseResult.succeed(words.join(" "))
    })
    const make = () =>
      Remote.make(
        "tokens",
        // @ts-expect-error the payload schema requires Tokenizer, which no call can provide
        { payload: Schema.Struct({ text: Tokens }), success: Schema.Number },
        () => Effect.succeed(1)
      )
    expect(typeof make).toBe("function")
    const fine = Remote.make("fine", { payload: Schema.Struct({ text: Schema.String }), success: Schema.Number }, () =>
      Effect.succeed(1)
    )
    expect(
      Deployment.make("x", {
        contexts: [],
        remotes: [Remote.implement(fine, { benchmark: { dataset: [{ text: "a" }] } }, () => Effect.succeed(2))]
      }).name
    ).toBe("x")
  })
})
