/**
 * Streaming results and dynamic batching, on a model stand-in whose costs are known (so the figures mean something).
 *
 * - `generate({ prompt, maxTokens })`: a stream remote. Tokens come one by one, 20 ms apart, as NDJSON lines.
 * - `embed({ text })`: a batched remote. A batch of `n` texts costs 40 ms + 5 ms per text (a GPU's fixed launch cost
 *   and a small per-item cost), so batching multiplies throughput. Its batch size is `"auto"`: the benchmark measures
 *   batches of 1, 2, 4, ... 32 and keeps the best throughput whose p90 latency (plus the wait) is within 150 ms.
 *
 * Serve it with `npx tsx examples/streaming.ts` (or `npx effect-deployments serve examples/streaming.ts`), then:
 *
 * ```sh
 * curl -sN localhost:8000/remote/generate -H 'content-type: application/json' -d '{"payload": {"kwargs": {"prompt": "the cat", "maxTokens": 5}}}'
 * # {"item":"the"}   (one line every 20 ms)
 * # ...
 * # {"end":{"count":5}}
 * curl -s localhost:8000/remote/embed -H 'content-type: application/json' -d '{"payload": {"kwargs": {"text": "the cat"}}}'
 * # {"result":{"ok":{"type":"list","contents":[7,2,0.2857142857142857]}}}
 * ```
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Context, Effect, Layer, Schema, Stream } from "effect"
import { pathToFileURL } from "node:url"
import { Deployment, Remote, Worker, WorkerContext } from "effect-deployments"

/** The model stand-in: a vocabulary to generate from, and batch costs of a GPU-like shape. */
export class Model extends Context.Tag("Model")<
  Model,
  {
    readonly vocabulary: ReadonlyArray<string>
    /** How long a batch of `n` inputs takes, in milliseconds. */
    readonly batchMillis: (n: number) => number
  }
>() {}

/** Loads the stand-in (instantly). */
export const ModelLive = WorkerContext.make(Model, {
  enter: Effect.succeed({
    vocabulary: ["sat", "on", "the", "mat", "and", "purred", "softly"],
    batchMillis: (n: number) => 40 + 5 * n
  })
})

/** `generate({ prompt, maxTokens })`: the prompt's words, then words of the vocabulary, one every 20 ms. */
export const generate = Remote.stream(
  "generate",
  {
    payload: Schema.Struct({ prompt: Schema.String, maxTokens: Schema.Int.pipe(Schema.between(1, 1000)) }),
    element: Schema.String,
    timeout: "1 minute"
  },
  ({ maxTokens, prompt }) =>
    Stream.unwrap(
      Effect.map(Model, (model) => {
        const words = [...prompt.split(/\s+/).filter((w) => w.length > 0), ...model.vocabulary]
        return Stream.range(0, maxTokens - 1).pipe(
          Stream.mapEffect((i) => Effect.as(Effect.sleep("20 millis"), words[i % words.length]!))
        )
      })
    )
)

/** `embed({ text })`: a made-up 3-number embedding of the text; batched, its batch size chosen by the benchmark. */
export const embed = Remote.make(
  "embed",
  {
    payload: Schema.Struct({ text: Schema.String }),
    success: Schema.Tuple(Schema.Number, Schema.Number, Schema.Number),
    batch: { maxSize: "auto", maxWait: "10 millis", latencyBudget: "150 millis" },
    benchmark: { dataset: [{ text: "the cat" }, { text: "sat on the mat" }], runs: 3 }
  },
  (texts) =>
    Effect.flatMap(Model, (model) =>
      Effect.as(
        Effect.sleep(model.batchMillis(texts.length)),
        texts.map(({ text }): readonly [number, number, number] => {
          const words = text.split(/\s+/).filter((w) => w.length > 0).length
          return [text.length, words, words / Math.max(text.length, 1)]
        })
      )
    )
)

/** The deployment: the stand-in model, a stream remote and a batched one (the benchmark measures `embed`). */
export const app = Deployment.make("streaming", { contexts: [ModelLive], remotes: [generate, embed] })

export default app

// Run as a main (`tsx examples/streaming.ts`), not when imported by the CLI or a test.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  NodeRuntime.runMain(Layer.launch(Worker.serve(app)), { teardown: Worker.teardown })
}
