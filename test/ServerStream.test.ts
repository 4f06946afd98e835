import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Deferred, Effect, Fiber, Queue, Schema, Stream } from "effect"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { App } from "../src/App.js"
import * as Deployment from "../src/Deployment.js"
import * as Remote from "../src/Remote.js"
import * as Worker from "../src/Worker.js"
import * as WorkerClient from "../src/WorkerClient.js"
import { CallFailed } from "../src/WorkerError.js"
import { ping } from "./fixtures/probe.js"
import { eventually, request } from "./fixtures/serving.js"

const local = { port: 0, host: "127.0.0.1", handleSignals: false, benchmark: false } as const

class OutOfTokens extends Schema.TaggedError<OutOfTokens>()("OutOfTokens", { after: Schema.Number }) {}

/**
 * Remotes whose elements the test feeds one by one (`feed`), so that what arrives when is decided by the test, not by
 * a clock: `"!declared"` fails with the declared error, `"!defect"` dies, `"!end"` ends the stream.
 */
const fed = () => {
  const feed = Effect.runSync(Queue.unbounded<string>())
  const state = { finalized: 0, taken: 0 }
  const words = Remote.stream(
    "words",
    {
      payload: Schema.Struct({ timeoutTest: Schema.optional(Schema.Boolean) }),
      element: Schema.String,
      error: OutOfTokens
    },
    () =>
      Stream.suspend(() => {
        let sent = 0
        return Stream.repeatEffect(Queue.take(feed)).pipe(
          Stream.tap(() => Effect.sync(() => state.taken++)),
          Stream.takeWhile((w) => w !== "!end"),
          Stream.mapEffect((w) =>
            w === "!declared"
              ? Effect.fail(new OutOfTokens({ after: sent }))
              : w === "!defect"
                ? Effect.die(new Error("the model fell over"))
                : Effect.sync(() => {
                    sent++
                    return w
                  })
          ),
          Stream.ensuring(Effect.sync(() => state.finalized++))
        )
      })
  )
  const offer = (...ws: Array<string>) => Queue.offerAll(feed, ws)
  return { words, state, offer }
}

/** An NDJSON answer read line by line, as it arrives. */
const open = (url: string, body: unknown, signal?: AbortSignal) =>
  Effect.promise(async () => {
    const response = await fetch(url, {
      method: "POST",
      body: JSON.stringify(body),
      headers: { "content-type": "application/json" },
      ...(signal === undefined ? {} : { signal })
    })
    const reader = response.body!.getReader()
    const decoder = new TextDecoder()
    let buffered = ""
    const line = async (): Promise<string | undefined> => {
      for (;;) {
        const nl = buffered.indexOf("\n")
        if (nl >= 0) {
          const out = buffered.slice(0, nl)
          buffered = buffered.slice(nl + 1)
          return out
        }
        const { done, value } = await reader.read()
        if (done) return buffered.length > 0 ? buffered : undefined
        buffered += decoder.decode(value, { stream: true })
      }
    }
    return { status: response.status, headers: response.headers, line, reader }
  })

const next = (reply: { line: () => Promise<string | undefined> }) =>
  Effect.promise(async () => {
    const l = await reply.line()
    return l === undefined ? undefined : JSON.parse(l)
  })

/** Every remaining line. */
const rest = (reply: { line: () => Promise<string | undefined> }) =>
  Effect.promise(async () => {
    const out: Array<unknown> = []
    for (let l = await reply.line(); l !== undefined; l = await reply.line()) out.push(JSON.parse(l))
    return out
  })

const metricsOf = (url: string) => Effect.map(request(`${url}/metrics`), (r) => r.text)

describe("stream remotes over HTTP", () => {
  it.scopedLive("an element is sent before the next is produced; the status waits for the first", () =>
    Effect.gen(function* () {
      const { words, offer, state } = fed()
      const { url } = yield* Worker.serveEffect(Deployment.make("s", { contexts: [], remotes: [words, ping] }), local)
      const opening = yield* Effect.fork(open(`${url}/remote/words`, { payload: {} }))
      yield* offer("the")
      const reply = yield* Fiber.join(opening)
      expect(reply.status).toBe(200)
      expect(reply.headers.get("content-type")).toBe("application/x-ndjson")
      expect(yield* next(reply)).toEqual({ item: "the" })
      // The stream is waiting for the test's next word: "the" came without it.
      expect(state.taken).toBe(1)
      yield* offer("cat")
      expect(yield* next(reply)).toEqual({ item: "cat" })
      yield* offer("!end")
      expect(yield* rest(reply)).toEqual([{ end: { count: 2 } }])
      const metrics = yield* metricsOf(url)
      expect(metrics).toContain(`worker_calls_total{deployment="s",remote="words",outcome="ok"} 1`)
      expect(metrics).toContain(`worker_stream_items_total{deployment="s",remote="words"} 2`)
    })
  )

  it.scopedLive("a client that disconnects interrupts the stream and runs its finalizer", () =>
    Effect.gen(function* () {
      const { words, offer, state } = fed()
      const served = yield* Worker.serveEffect(Deployment.make("s", { contexts: [], remotes: [words, ping] }), local)
      const abort = new AbortController()
      yield* offer("the")
      const reply = yield* open(`${served.url}/remote/words`, { payload: {} }, abort.signal)
      expect(yield* next(reply)).toEqual({ item: "the" })
      abort.abort()
      yield* eventually(
        Effect.sync(() => state.finalized),
        (n) => n === 1
      )
      const stats = yield* eventually(served.worker.stats, (s) => s[0]!.running === 0)
      expect(stats[0]).toMatchObject({ running: 0, queued: 0 })
      const metrics = yield* eventually(metricsOf(served.url), (m) => m.includes(`outcome="cancelled"} 1`))
      expect(metrics).toContain(`worker_calls_total{deployment="s",remote="words",outcome="cancelled"} 1`)
    })
  )

  it.scopedLive("a failure midway closes the body with an err line: declared error, defect (with an id), timeout", () =>
    Effect.gen(function* () {
      const { words, offer } = fed()
      const slow = Remote.stream(
        "slow",
        { payload: Schema.Struct({}), element: Schema.Number, timeout: "300 millis" },
        () => Stream.concat(Stream.make(1), Stream.never)
      )
      const { url } = yield* Worker.serveEffect(
        Deployment.make("s", { contexts: [], remotes: [words, slow, ping] }),
        local
      )
      yield* offer("a", "b", "!declared")
      const declared = yield* open(`${url}/remote/words`, { payload: {} })
      expect(declared.status).toBe(200)
      const lines = yield* rest(declared)
      expect(lines.slice(0, 2)).toEqual([{ item: "a" }, { item: "b" }])
      expect(lines[2]).toMatchObject({
        err: { type: "obj", contents: { _tag: "OutOfTokens", after: 2 } }
      })
      expect(lines).toHaveLength(3)

      yield* offer("a", "!defect")
      const defect = yield* rest(yield* open(`${url}/remote/words`, { payload: {} }))
      expect(defect[0]).toEqual({ item: "a" })
      const err = (defect[1] as { err: { class: string; contents: Record<string, unknown> } }).err
      expect(err.contents).toMatchObject({ _tag: "CallFailed", reason: "defect", remote: "words" })
      expect(err.contents["id"]).toMatch(/\S/)
      expect(JSON.stringify(err)).not.toContain("fell over")

      const timedOut = yield* rest(yield* open(`${url}/remote/slow`, { payload: {} }))
      expect(timedOut[0]).toEqual({ item: 1 })
      expect(timedOut[1]).toMatchObject({ err: { contents: { _tag: "CallTimeout", timeoutMillis: 300 } } })
      const metrics = yield* metricsOf(url)
      expect(metrics).toContain(`remote="words",outcome="error"} 1`)
      expect(metrics).toContain(`remote="words",outcome="defect"} 1`)
      expect(metrics).toContain(`remote="slow",outcome="timeout"} 1`)
    })
  )

  it.scopedLive("before the first element, errors keep their statuses; the declared error is the stream's result", () =>
    Effect.gen(function* () {
      const { words, offer } = fed()
      const silent = Remote.stream(
        "silent",
        {
          payload: Schema.Struct({ how: Schema.Literal("empty", "hang", "defect") }),
          element: Schema.Number,
          timeout: "200 millis",
          concurrency: 1,
          maxQueue: 0
        },
        ({ how }) => (how === "empty" ? Stream.empty : how === "hang" ? Stream.never : Stream.die("broken"))
      )
      const { url } = yield* Worker.serveEffect(
        Deployment.make("s", { contexts: [], remotes: [words, silent, ping] }),
        local
      )
      const invalid = yield* request(`${url}/remote/silent`, { body: { payload: { kwargs: { how: "loud" } } } })
      expect(invalid.status).toBe(400)
      expect(invalid.json._tag).toBe("PayloadInvalid")
      const empty = yield* request(`${url}/remote/silent`, { body: { payload: { kwargs: { how: "empty" } } } })
      expect([empty.status, empty.headers.get("content-type"), empty.text]).toEqual([
        200,
        "application/x-ndjson",
        `{"end":{"count":0}}\n`
      ])
      // A stream that holds its only slot: the next call is refused (429), the hanging one times out (504).
      const hanging = yield* Effect.fork(
        request(`${url}/remote/silent`, { body: { payload: { kwargs: { how: "hang" } } } })
      )
      yield* eventually(metricsOf(url), (m) => m.includes(`worker_calls_in_flight{deployment="s",remote="silent"} 1`))
      const full = yield* request(`${url}/remote/silent`, { body: { payload: { kwargs: { how: "empty" } } } })
      expect(full.status).toBe(429)
      const timeout = yield* Fiber.join(hanging)
      expect(timeout.status).toBe(504)
      expect(timeout.json).toMatchObject({ _tag: "CallTimeout", remote: "silent" })
      const defect = yield* request(`${url}/remote/silent`, { body: { payload: { kwargs: { how: "defect" } } } })
      expect(defect.status).toBe(500)
      expect(defect.json).toMatchObject({ _tag: "CallFailed", reason: "defect" })

      yield* offer("!declared")
      const declared = yield* request(`${url}/remote/words`, { body: { payload: {} } })
      expect(declared.status).toBe(200)
      expect(declared.headers.get("content-type")).toBe("application/x-ndjson")
      expect(declared.text.trim().split("\n")).toHaveLength(1)
      expect(JSON.parse(declared.text)).toMatchObject({ err: { contents: { _tag: "OutOfTokens", after: 0 } } })
    })
  )

  it.scopedLive("a client that does not read slows the stream (socket backpressure); reading resumes it", () =>
    Effect.gen(function* () {
      // 2000 elements of 32 KiB (64 MiB): unread, loopback's socket buffers (a few MiB) hold a few hundred at most.
      let produced = 0
      const big = "x".repeat(32 * 1024)
      const firehose = Remote.stream("firehose", { payload: Schema.Struct({}), element: Schema.String }, () =>
        Stream.repeatEffect(
          Effect.sync(() => {
            produced++
            return big
          })
        ).pipe(Stream.take(2000))
      )
      const { url } = yield* Worker.serveEffect(
        Deployment.make("s", { contexts: [], remotes: [firehose, ping] }),
        local
      )
      const target = new URL(`${url}/remote/firehose`)
      const { req, res } = yield* Effect.async<{ req: Http.ClientRequest; res: Http.IncomingMessage }>((resume) => {
        const req = Http.request(
          { host: target.hostname, port: target.port, path: target.pathname, method: "POST" },
          (res) => {
            res.pause()
            resume(Effect.succeed({ req, res }))
          }
        )
        req.end(JSON.stringify({ payload: {} }))
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => req.destroy()))
      expect(res.statusCode).toBe(200)
      // Unread, the socket's buffers fill and the producer stops: wait until the count stays put. Without
      // backpressure it stops only at its end, 2000.
      let last = -1
      let steady = 0
      for (let i = 0; i < 200 && steady < 5; i++) {
        yield* Effect.sleep("20 millis")
        steady = produced === last ? steady + 1 : 0
        last = produced
      }
      expect(steady).toBe(5)
      const stalledAt = produced
      expect(stalledAt).toBeLessThan(1000)
      // Reading again resumes the producer.
      res.resume()
      yield* eventually(
        Effect.sync(() => produced),
        (n) => n > stalledAt + 50
      )
    })
  )
})

describe("stream remotes through the clients", () => {
  it.scopedLive(
    "WorkerClient: a typed Stream; the declared error after the elements before it; retried only before 200",
    () =>
      Effect.gen(function* () {
        const { words, offer, state } = fed()
        const app = Deployment.make("s", { contexts: [], remotes: [words, ping] })
        const { url } = yield* Worker.serveEffect(app, local)
        const client = yield* WorkerClient.make(app, { url })
        yield* offer("the", "cat", "!end")
        expect(Chunk.toReadonlyArray(yield* Stream.runCollect(client.words({})))).toEqual(["the", "cat"])

        yield* offer("a", "!declared")
        const seen: Array<string> = []
        const error = yield* Effect.flip(Stream.runForEach(client.words({}), (w) => Effect.sync(() => seen.push(w))))
        expect(seen).toEqual(["a"])
        expect(error).toBeInstanceOf(OutOfTokens)
        expect(error).toMatchObject({ after: 1 })

        // Taking fewer elements than the stream has closes it: the request is aborted, the worker's stream finalized.
        const before = state.finalized
        yield* offer("x", "y")
        expect(Chunk.toReadonlyArray(yield* Stream.runCollect(Stream.take(client.words({}), 1)))).toEqual(["x"])
        yield* eventually(
          Effect.sync(() => state.finalized),
          (n) => n === before + 1
        )
      }).pipe(Effect.provide(FetchHttpClient.layer))
  )

  it.scopedLive("WorkerClient: a 429 before the stream starts is retried until the slot frees", () =>
    Effect.gen(function* () {
      const gate = yield* Deferred.make<void>()
      const one = Remote.stream(
        "one",
        { payload: Schema.Struct({ hold: Schema.Boolean }), element: Schema.Number, maxQueue: 0 },
        ({ hold }) => (hold ? Stream.fromEffect(Effect.as(Deferred.await(gate), 1)) : Stream.make(2))
      )
      const app = Deployment.make("s", { contexts: [], remotes: [one, ping] })
      const { url } = yield* Worker.serveEffect(app, local)
      const client = yield* WorkerClient.make(app, { url, baseDelay: "10 millis", maxDelay: "20 millis" })
      const holder = yield* Effect.fork(Stream.runCollect(client.one({ hold: true })))
      yield* eventually(metricsOf(url), (m) => m.includes(`worker_calls_in_flight{deployment="s",remote="one"} 1`))
      const waiting = yield* Effect.fork(Stream.runCollect(client.one({ hold: false })))
      yield* eventually(metricsOf(url), (m) => m.includes(`remote="one",outcome="rejected"} 2`))
      yield* Deferred.succeed(gate, undefined)
      expect(Chunk.toReadonlyArray(yield* Fiber.join(holder))).toEqual([1])
      expect(Chunk.toReadonlyArray(yield* Fiber.join(waiting))).toEqual([2])
    }).pipe(Effect.provide(FetchHttpClient.layer))
  )

  it.scopedLive("WorkerClient: a body cut before its end or err line fails the stream, after what arrived", () =>
    Effect.gen(function* () {
      const spec = Remote.defineStream("cut", { payload: Schema.Struct({}), element: Schema.Number })
      const url = yield* Effect.acquireRelease(
        Effect.async<{ server: Http.Server; url: string }>((resume) => {
          const server = Http.createServer((_req, res) => {
            res.writeHead(200, { "content-type": "application/x-ndjson" })
            res.write(`{"item":1}\n`)
            setTimeout(() => res.destroy(), 10)
          })
          server.listen(0, "127.0.0.1", () =>
            resume(Effect.succeed({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }))
          )
        }),
        ({ server }) => Effect.sync(() => server.close())
      ).pipe(Effect.map((s) => s.url))
      const client = yield* WorkerClient.make([spec], { url })
      const seen: Array<number> = []
      const error = yield* Effect.flip(Stream.runForEach(client.cut({}), (n) => Effect.sync(() => seen.push(n))))
      expect(seen).toEqual([1])
      expect(error).toBeInstanceOf(CallFailed)
      expect((error as CallFailed).reason === "transport" || (error as CallFailed).reason === "protocol").toBe(true)
    }).pipe(Effect.provide(FetchHttpClient.layer))
  )

  it.scopedLive("Promise client: an AsyncIterable; leaving the loop early stops the stream on the worker", () =>
    Effect.gen(function* () {
      const { words, offer, state } = fed()
      const app = Deployment.make("s", { contexts: [], remotes: [words, ping] })
      const { url } = yield* Worker.serveEffect(app, local)
      const client = WorkerClient.makePromise(app, { url })
      yield* offer("the", "cat", "!end")
      const all = yield* Effect.promise(async () => {
        const out: Array<string> = []
        for await (const w of client.words({})) out.push(w)
        return out
      })
      expect(all).toEqual(["the", "cat"])
      yield* offer("one", "two")
      const first = yield* Effect.promise(async () => {
        for await (const w of client.words({})) return w
        return undefined
      })
      expect(first).toBe("one")
      yield* eventually(
        Effect.sync(() => state.finalized),
        (n) => n === 2
      )
      yield* offer("!declared")
      const error = yield* Effect.promise(async () => {
        try {
          for await (const _ of client.words({})) {
            // no element comes before the error
          }
        } catch (e) {
          return e
        }
      })
      expect(error).toBeInstanceOf(OutOfTokens)
    })
  )

  it.scopedLive("App: an async generator function is a stream remote, in process and over HTTP", () =>
    Effect.gen(function* () {
      const app = new App("gen")
      const closed: Array<string> = []
      const count = app.remote(
        { name: "count", benchmarkDataset: [{ to: 2 }], benchmarkRuns: 1 },
        async function* ({ to }: { to: number }) {
          try {
            for (let i = 1; i <= to; i++) {
              if (i === 13) throw new RangeError("unlucky")
              yield i
            }
          } finally {
            closed.push(`count ${to}`)
          }
        }
      )
      const { url } = yield* Effect.acquireRelease(
        Effect.promise(() => app.serve({ port: 0, host: "127.0.0.1", handleSignals: false })),
        () => Effect.promise(() => app.stop())
      )
      const inProcess = yield* Effect.promise(async () => {
        const out: Array<number> = []
        for await (const n of count({ to: 3 })) out.push(n)
        return out
      })
      expect(inProcess).toEqual([1, 2, 3])
      const thrown = yield* Effect.promise(async () => {
        try {
          for await (const _ of count({ to: 20 })) {
            // until the throw
          }
        } catch (e) {
          return e
        }
      })
      expect(thrown).toBeInstanceOf(RangeError)
      const body = yield* request(`${url}/remote/count`, { body: { payload: { kwargs: { to: 3 } } } })
      expect(body.text).toBe(`{"item":1}\n{"item":2}\n{"item":3}\n{"end":{"count":3}}\n`)
      expect(closed).toContain("count 3")
    })
  )
})
