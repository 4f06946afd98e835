import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Fiber, Stream, TestClock } from "effect"
import * as ChatSession from "../examples/chat-session.js"
import * as ConstructorArgs from "../examples/constructor-args.js"
import * as Square from "../examples/square.js"
import * as Streaming from "../examples/streaming.js"
import * as TokenizerModel from "../examples/tokenizer-model.js"
import * as Worker from "../src/Worker.js"

describe("examples", () => {
  it.scoped("square serves x * x", () =>
    Effect.gen(function* () {
      const worker = yield* Worker.make(Square.app)
      expect(yield* worker.invoke("square", { x: 12 })).toBe(144)
      expect((yield* worker.report).benchmark?.calls).toBe(3)
    })
  )

  it.scoped("tokenizer-model enters tokenizer and model in parallel, then the engine", () =>
    Effect.gen(function* () {
      const started = yield* Effect.fork(Worker.make(TokenizerModel.app, { benchmark: false }))
      yield* TestClock.adjust("400 millis")
      const worker = yield* Fiber.join(started)
      const report = yield* worker.report
      const at = Object.fromEntries(
        report.contexts.map((c) => [c.key, [c.enterStartedAt! - report.startedAt, c.enterMillis]])
      )
      // Sequential loading would take 700 ms; in parallel the engine starts once the slower (400 ms) is in.
      expect(at).toEqual({ Tokenizer: [0, 300], Model: [0, 400], Engine: [400, 0] })
      expect(yield* worker.invoke("generate", { prompt: "the cat", maxTokens: 3 })).toBe("the cat sat on the")
      expect(yield* worker.invoke("vocabSize", {})).toBe(8)
      const invalid = yield* Effect.flip(worker.invoke("generate", { prompt: "the", maxTokens: 100 }))
      expect(invalid._tag).toBe("PayloadInvalid")
    })
  )

  it.scoped("streaming: tokens one by one; the benchmark chooses embed's batch size from its cost curve", () =>
    Effect.gen(function* () {
      const started = yield* Effect.fork(Worker.make(Streaming.app))
      yield* TestClock.adjust("1 minute")
      const worker = yield* Fiber.join(started)
      // 40 ms + 5 ms a text: 16 texts take 120 ms (+ 10 ms wait, within 150 ms); 32 take 200 ms (over).
      const report = yield* worker.report
      expect(report.benchmark?.batch?.size).toBe(16)
      expect(report.benchmark?.batch?.points.map((p) => [p.size, p.p90Millis])).toEqual([
        [1, 45],
        [2, 50],
        [4, 60],
        [8, 80],
        [16, 120],
        [32, 200]
      ])
      const tokens = yield* Effect.fork(
        Stream.runCollect(worker.call(Streaming.generate, { prompt: "a cat", maxTokens: 4 }))
      )
      yield* TestClock.adjust("80 millis")
      expect(Chunk.toReadonlyArray(yield* Fiber.join(tokens))).toEqual(["a", "cat", "sat", "on"])
      const embedded = yield* Effect.fork(worker.call(Streaming.embed, { text: "the cat" }))
      yield* TestClock.adjust("60 millis")
      expect(yield* Fiber.join(embedded)).toEqual([7, 2, 2 / 7])
    })
  )

  it("constructor-args passes decorator arguments to the constructor", async () => {
    await ConstructorArgs.app.start()
    try {
      expect(ConstructorArgs.app.getContext(ConstructorArgs.LLMEngine).opts).toEqual({ maxLen: 512 })
      expect(await ConstructorArgs.generate({ prompt: "Hi", maxTokens: 1000 })).toBe(
        "[Qwen/Qwen3-0.6B, 512 tokens] Hi ..."
      )
    } finally {
      await ConstructorArgs.app.stop()
    }
  })

  it.scopedLive("chat-session keeps one history per session, until the session ends", () =>
    Effect.gen(function* () {
      const { url, httpUrl, worker } = yield* Worker.serveEffect(ChatSession.app, {
        port: 0,
        host: "127.0.0.1",
        handleSignals: false
      })
      yield* worker.awaitReady
      const post = (at: string, body: unknown) =>
        Effect.promise(() =>
          fetch(at, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify(body)
          }).then(async (r) => ({
            status: r.status,
            json: (await r.json()) as any
          }))
        )
      const auth = { request_idx: 1 }
      const open = (yield* post(`${url}/session/create`, { auth_data: auth })).json.session_id
      const chat = (id: string) => post(`${url}/remote/chat`, { session_id: id, payload: { kwargs: { text: "hi" } } })
      yield* chat(open)
      expect((yield* chat(open)).json.result.ok.contents).toEqual([
        ["session", open],
        ["messages", 2]
      ])
      expect((yield* post(`${httpUrl}/session/end`, { session_id: open, session_auth: auth })).status).toBe(200)
      expect((yield* chat(open)).status).toBe(410)
    })
  )
})
