import { Effect, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { App, ContextNotFoundError } from "../src/App.js"
import * as Worker from "../src/Worker.js"
import { ContextNotFound, DeploymentInvalid, PayloadInvalid, StartupFailed } from "../src/WorkerError.js"

describe("App (Promise facade)", () => {
  it("registers a decorated class with its constructor arguments, enters it, and serves getContext", async () => {
    const events: Array<string> = []
    const app = new App("llm")

    @app.context("Qwen/Qwen3-0.6B", { maxLen: 512 })
    class LLMEngine {
      loaded = false
      constructor(
        readonly modelName: string,
        readonly opts: { maxLen?: number } = {}
      ) {}
      async enter() {
        events.push(`enter ${this.modelName} ${this.opts.maxLen}`)
        this.loaded = true
        return this
      }
      async exit(error?: unknown) {
        events.push(`exit ${error === undefined ? "clean" : "error"}`)
      }
      complete(prompt: string) {
        return `${this.modelName}: ${prompt}`
      }
    }

    const generate = app.remote(
      { name: "generate", benchmarkDataset: [{ prompt: "Hello" }], benchmarkRuns: 2 },
      async ({ prompt }: { prompt: string; maxTokens?: number }) => app.getContext(LLMEngine).complete(prompt)
    )
    expect(() => app.getContext(LLMEngine)).toThrow(ContextNotFoundError)

    const report = await app.start()
    expect(report.contexts.map((c) => [c.key, c.state])).toEqual([["LLMEngine", "entered"]])
    expect(report.benchmark?.calls).toBe(2)
    expect(app.getContext(LLMEngine).loaded).toBe(true)
    expect(await generate({ prompt: "hi" })).toBe("Qwen/Qwen3-0.6B: hi")
    await app.stop()
    expect(events).toEqual(["enter Qwen/Qwen3-0.6B 512", "exit clean"])
    // After shutdown the context is not entered any more.
    const after = (() => {
      try {
        app.getContext(LLMEngine)
      } catch (e) {
        return e
      }
    })()
    expect(after).toBeInstanceOf(ContextNotFound)
    expect((after as ContextNotFound).reason).toBe("not-entered")
  })

  it("registers without the decorator, uses asyncDispose, and reports an unregistered class as not-registered", async () => {
    const app = new App("plain")
    let disposed = 0
    class Tokenizer {
      constructor(readonly vocab: number) {}
      async [Symbol.asyncDispose]() {
        disposed++
      }
    }
    class Stranger {
      async enter() {
        return 1
      }
    }
    app.context(Tokenizer, 32_000)
    const vocab = app.remote({ name: "vocab", benchmarkDataset: [{}] }, async () => app.getContext(Tokenizer).vocab)
    await app.start()
    expect(await vocab({})).toBe(32_000)
    const e = (() => {
      try {
        app.getContext(Stranger)
      } catch (e) {
        return e as ContextNotFound
      }
    })()
    expect(e).toBeInstanceOf(ContextNotFound)
    expect(e?.reason).toBe("not-registered")
    expect(e?.key).toBe("Stranger")
    await app.stop()
    expect(disposed).toBe(1)
  })

  it("rejects a call with the error the remote threw, and payloads that fail a declared schema", async () => {
    class QuotaExceeded extends Error {
      override readonly name = "QuotaExceeded"
    }
    const app = new App("errors")
    const risky = app.remote(
      {
        name: "risky",
        payload: Schema.Struct({ n: Schema.Number }),
        benchmarkDataset: [{ n: 1 }]
      },
      async ({ n }: { n: number }) => {
        if (n > 10) throw new QuotaExceeded(`n=${n} is over the quota`)
        return n * 2
      }
    )
    await app.start()
    expect(await risky({ n: 2 })).toBe(4)
    await expect(risky({ n: 11 })).rejects.toThrow(QuotaExceeded)
    await expect(risky({ n: "x" } as never)).rejects.toBeInstanceOf(PayloadInvalid)
    await app.stop()
  })

  it("fails start-up with StartupFailed, rolling back the contexts that entered (exit gets the error)", async () => {
    const app = new App("rollback")
    const exits: Array<unknown> = []
    class Good {
      async enter() {
        return "good"
      }
      async exit(error?: unknown) {
        exits.push(error)
      }
    }
    class Bad {
      async enter(): Promise<string> {
        throw new Error("weights missing")
      }
    }
    app.context(Good)
    app.context(Bad)
    app.remote({ name: "noop", benchmarkDataset: [{}] }, async () => null)
    const error = await app.start().catch((e) => e)
    expect(error).toBeInstanceOf(StartupFailed)
    expect(error.context).toBe("Bad")
    expect(error.rolledBack).toEqual(["Good"])
    expect(exits).toHaveLength(1)
    expect(String(exits[0])).toContain("weights missing")
  })

  // That decorator arguments are checked against the constructor is a compile-time check: test/compile-time.ts.

  it("serves over HTTP in the reference's protocol, and stops", async () => {
    const app = new App("served")
    class Greeter {
      async enter() {
        return { greet: (name: string) => `hello ${name}` }
      }
    }
    app.context(Greeter)
    app.remote({ name: "hello", benchmarkDataset: [{ name: "bench" }] }, async ({ name }: { name: string }) =>
      app.getContext(Greeter).greet(name)
    )
    class QuotaExceeded extends Error {
      readonly limit = 3
    }
    app.remote({ name: "fails" }, async ({ kind }: { kind: string }) => {
      throw kind === "type" ? new TypeError("bad input") : new QuotaExceeded("over the quota")
    })
    const { url } = await app.serve({ port: 0, host: "127.0.0.1", handleSignals: false })
    try {
      const response = await fetch(`${url}/remote/hello`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ payload: { kwargs: { name: "ada" } } })
      })
      expect(await response.json()).toEqual({ result: { ok: "hello ada" } })
      // What a remote throws goes as a Python built-in with its message and JS name (the reference loses the message).
      const thrown = async (kind: string) => {
        const r = await fetch(`${url}/remote/fails`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ payload: { kwargs: { kind } } })
        })
        return ((await r.json()) as { result: { err: { class: string; contents: Record<string, unknown> } } }).result
          .err
      }
      expect(await thrown("type")).toMatchObject({
        type: "obj",
        module: { type: "absolute", path: ["builtins"] },
        class: "TypeError",
        contents: { args: { type: "tuple", contents: ["bad input"] }, message: "bad input" }
      })
      expect(await thrown("quota")).toMatchObject({
        class: "Exception",
        contents: { name: "QuotaExceeded", message: "over the quota", limit: 3 }
      })
    } finally {
      await app.stop()
    }
    await expect(fetch(`${url}/health`)).rejects.toThrow()
  })

  it("stop() removes the signal listeners serve() added: a stopped app no longer ends the process", async () => {
    const before = [process.listenerCount("SIGTERM"), process.listenerCount("SIGINT")]
    const app = new App("signals")
    app.remote({ name: "noop", benchmarkDataset: [{}] }, async () => 1)
    await app.serve({ port: 0, host: "127.0.0.1" })
    expect([process.listenerCount("SIGTERM"), process.listenerCount("SIGINT")]).toEqual(before.map((n) => n + 1))
    await app.stop()
    expect([process.listenerCount("SIGTERM"), process.listenerCount("SIGINT")]).toEqual(before)
  })

  it("getContext works when something else runs the app's deployment (the CLI, Worker.make)", async () => {
    const app = new App("elsewhere")
    class Counter {
      async enter() {
        return { n: 41 }
      }
    }
    app.context(Counter)
    app.remote({ name: "next", benchmarkDataset: [{}] }, async () => app.getContext(Counter).n + 1)
    const result = await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const worker = yield* Worker.make(app.deployment)
          return yield* worker.invoke("next", {})
        })
      )
    )
    expect(result).toBe(42)
  })

  it("a context still entering when a sibling fails is exited once its enter finishes: nothing left allocated", async () => {
    const app = new App("abandoned")
    const events: Array<string> = []
    class Fails {
      async enter(): Promise<string> {
        await new Promise((r) => setTimeout(r, 5))
        throw new Error("no weights")
      }
    }
    class Slow {
      async enter() {
        await new Promise((r) => setTimeout(r, 50))
        events.push("slow allocated")
        return this
      }
      async exit(error?: unknown) {
        events.push(`slow freed: ${String(error)}`)
      }
    }
    app.context(Fails)
    app.context(Slow)
    app.remote({ name: "noop", benchmarkDataset: [{}] }, async () => null)
    const error = await app.start().catch((e) => e)
    expect(error).toBeInstanceOf(StartupFailed)
    expect(error.context).toBe("Fails")
    // start() settles only after Slow was released.
    expect(events).toEqual(["slow allocated", "slow freed: Error: Slow entered after start-up was abandoned"])
  })

  it("registers a plain class (no lifecycle methods) directly: getContext returns the instance", async () => {
    const app = new App("plain-class")
    class Settings {
      constructor(readonly threshold: number) {}
    }
    expect(app.context(Settings, 0.5)).toBe(Settings)
    app.remote({ name: "threshold", benchmarkDataset: [{}] }, async () => app.getContext(Settings).threshold)
    await app.start()
    expect(await app.invoke("threshold", {})).toBe(0.5)
    await app.stop()
  })

  it("checks the app like Deployment.make: exactly one benchmark", async () => {
    const app = new App("nobench")
    app.remote({ name: "a" }, async () => 1)
    expect(() => app.deployment).toThrow(DeploymentInvalid)
  })
})
