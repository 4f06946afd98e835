/**
 * The reference's constructor-arguments example with the Promise facade: `@app.context(...args)` passes its
 * arguments to the class's constructor, `getContext(Cls)` returns what `enter()` returned.
 *
 *   npx tsx examples/constructor-args.ts
 */
import { pathToFileURL } from "node:url"
import { App } from "effect-deployments"

export const app = new App("llm")

/** A stand-in LLM engine: its constructor takes the model name and options, as in the reference. */
@app.context("Qwen/Qwen3-0.6B", { maxLen: 512 })
export class LLMEngine {
  private loaded = false
  constructor(
    readonly modelName: string,
    readonly opts: { maxLen?: number } = {}
  ) {}

  async enter() {
    await new Promise((resolve) => setTimeout(resolve, 50)) // stands in for loading weights
    this.loaded = true
    return this
  }

  async exit(error?: unknown) {
    this.loaded = false
    console.log(`LLMEngine(${this.modelName}) exited${error === undefined ? "" : ` after an error: ${String(error)}`}`)
  }

  complete(prompt: string, maxTokens: number): string {
    if (!this.loaded) throw new Error("engine is not loaded")
    const budget = Math.min(maxTokens, this.opts.maxLen ?? 128)
    return `[${this.modelName}, ${budget} tokens] ${prompt} ...`
  }
}

/** `generate({ prompt, maxTokens? })` */
export const generate = app.remote(
  { name: "generate", benchmarkDataset: [{ prompt: "Hello" }] },
  async ({ prompt, maxTokens = 128 }: { prompt: string; maxTokens?: number }) => {
    const engine = app.getContext(LLMEngine) // throws ContextNotFoundError when not registered / not entered
    return engine.complete(prompt, maxTokens)
  }
)

export async function main(): Promise<void> {
  const report = await app.start()
  console.log(await generate({ prompt: "Why is the sky blue?", maxTokens: 64 }))
  await app.stop()
  console.log(`contexts: ${report.contexts.map((c) => `${c.key} entered in ${c.enterMillis} ms`).join(", ")}`)
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  main().catch((error) => {
    console.error(error)
    process.exitCode = 1
  })
}
