/**
 * Two contexts entered in parallel, and a third that depends on both (the reference's tokenizer + model example, in
 * Effect). The tokenizer and the model each take a while to load; they load at the same time, the engine waits for
 * both, and shutdown exits the engine first, then the two in parallel.
 *
 *   npx tsx examples/tokenizer-model.ts
 */
import { Console, Context, Effect, Schema } from "effect"
import { pathToFileURL } from "node:url"
import { Deployment, Remote, Worker, WorkerContext } from "effect-deployments"

const CORPUS = "the cat sat on the mat the dog sat on the log the cat saw the dog"

/** A word-level tokenizer: the vocabulary of the corpus. */
export class Tokenizer extends Context.Tag("Tokenizer")<
  Tokenizer,
  {
    readonly vocab: ReadonlyArray<string>
    readonly encode: (text: string) => ReadonlyArray<number>
    readonly decode: (ids: ReadonlyArray<number>) => string
  }
>() {}

/** A bigram model: for each token, the most frequent next token. */
export class Model extends Context.Tag("Model")<Model, { readonly next: (id: number) => number }>() {}

/** Greedy generation over the tokenizer and the model. */
export class Engine extends Context.Tag("Engine")<
  Engine,
  {
    readonly generate: (prompt: string, maxTokens: number) => string
  }
>() {}

export const TokenizerLive = WorkerContext.make(Tokenizer, {
  enter: Effect.gen(function* () {
    yield* Effect.sleep("300 millis") // stands in for reading a tokenizer file
    const vocab = [...new Set(CORPUS.split(" "))]
    const index = new Map(vocab.map((w, i) => [w, i]))
    return {
      vocab,
      encode: (text: string) =>
        text
          .toLowerCase()
          .split(/\s+/)
          .filter((w) => index.has(w))
          .map((w) => index.get(w)!),
      decode: (ids: ReadonlyArray<number>) => ids.map((i) => vocab[i]).join(" ")
    }
  }),
  exit: () => Console.log("tokenizer released")
})

export const ModelLive = WorkerContext.make(Model, {
  enter: Effect.gen(function* () {
    yield* Effect.sleep("400 millis") // stands in for loading weights
    const words = CORPUS.split(" ")
    const vocab = [...new Set(words)]
    const counts = vocab.map(() => new Map<number, number>())
    for (let i = 0; i + 1 < words.length; i++) {
      const a = vocab.indexOf(words[i]!)
      const b = vocab.indexOf(words[i + 1]!)
      counts[a]!.set(b, (counts[a]!.get(b) ?? 0) + 1)
    }
    const best = counts.map((m) => [...m.entries()].sort((x, y) => y[1] - x[1])[0]?.[0] ?? 0)
    return { next: (id: number) => best[id] ?? 0 }
  }),
  exit: () => Console.log("model weights freed")
})

export const EngineLive = WorkerContext.make(Engine, {
  dependsOn: [Tokenizer, Model],
  enter: Effect.gen(function* () {
    const tokenizer = yield* Tokenizer
    const model = yield* Model
    return {
      generate: (prompt: string, maxTokens: number) => {
        const ids = [...tokenizer.encode(prompt)]
        if (ids.length === 0) return ""
        for (let i = 0; i < maxTokens; i++) ids.push(model.next(ids[ids.length - 1]!))
        return tokenizer.decode(ids)
      }
    }
  }),
  exit: () => Console.log("engine stopped")
})

/** `generate({ prompt, maxTokens? })`: greedy continuation of the prompt. */
export const generate = Remote.make(
  "generate",
  {
    payload: Schema.Struct({
      prompt: Schema.String,
      maxTokens: Schema.optionalWith(Schema.Int.pipe(Schema.between(1, 64)), { default: () => 8 })
    }),
    success: Schema.String,
    benchmark: { dataset: [{ prompt: "the cat" }, { prompt: "the dog", maxTokens: 4 }] }
  },
  ({ maxTokens, prompt }) => Effect.map(Engine, (engine) => engine.generate(prompt, maxTokens))
)

/** `vocabSize({})`: looks the tokenizer up dynamically, the reference's `get_context` way. */
export const vocabSize = Remote.make(
  "vocabSize",
  {
    payload: Schema.Struct({}),
    success: Schema.Number
  },
  () =>
    WorkerContext.get(Tokenizer).pipe(
      Effect.map((t) => t.vocab.length),
      Effect.orDie
    )
)

export const app = Deployment.make("tokenizer-model", {
  contexts: [TokenizerLive, ModelLive, EngineLive],
  remotes: [generate, vocabSize]
})

export const main = Effect.scoped(
  Effect.gen(function* () {
    const worker = yield* Worker.make(app)
    yield* Console.log(`generate: ${yield* worker.invoke("generate", { prompt: "the cat", maxTokens: 5 })}`)
    yield* Console.log(`vocabSize: ${yield* worker.invoke("vocabSize", {})}`)
    yield* worker.shutdown
    yield* Console.log(`\n${Worker.formatReport(yield* worker.report)}`)
  })
)

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  Effect.runPromise(main).catch((error) => {
    console.error(error)
    process.exitCode = 1
  })
}
