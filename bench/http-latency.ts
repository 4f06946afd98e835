/**
 * Latency of a trivial remote over loopback: Worker.serve vs a plain node:http handler doing the same work (read the
 * body, parse the envelope, square `x`, answer the reference's `{"result": {"ok": ...}}`), and vs a bare
 * @effect/platform HttpRouter route doing it (the floor of the HTTP stack the worker is built on), in the same process,
 * with the same keep-alive client. Prints p50/p99 and the ratio; writes bench/results/http-latency.json.
 *
 *   npx tsx bench/http-latency.ts [sequential requests, default 3000] [concurrent requests, default 6000]
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { HttpRouter, HttpServer, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { Context, Effect, Layer } from "effect"
import * as Fs from "node:fs"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { app } from "../examples/square.js"
import * as Worker from "../src/Worker.js"

const SEQUENTIAL = Number(process.argv[2] ?? 3000)
const CONCURRENT = Number(process.argv[3] ?? 6000)
const IN_FLIGHT = 32
const WARMUP = 500
const body = JSON.stringify({ payload: { kwargs: { x: 5 } } })

const agent = new Http.Agent({ keepAlive: true, maxSockets: IN_FLIGHT })

const once = (port: number, path: string): Promise<number> =>
  new Promise((resolve, reject) => {
    const t0 = performance.now()
    const req = Http.request(
      {
        host: "127.0.0.1",
        port,
        path,
        method: "POST",
        agent,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) }
      },
      (res) => {
        const chunks: Array<Buffer> = []
        res.on("data", (c: Buffer) => chunks.push(c))
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8")
          if (res.statusCode !== 200 || text !== '{"result":{"ok":25}}') reject(new Error(`${res.statusCode} ${text}`))
          else resolve(performance.now() - t0)
        })
      }
    )
    req.on("error", reject)
    req.end(body)
  })

const quantile = (sorted: ReadonlyArray<number>, q: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!

const summarize = (samples: Array<number>, wallMillis: number) => {
  const sorted = [...samples].sort((a, b) => a - b)
  return {
    n: samples.length,
    p50: +quantile(sorted, 0.5).toFixed(3),
    p99: +quantile(sorted, 0.99).toFixed(3),
    mean: +(samples.reduce((a, b) => a + b, 0) / samples.length).toFixed(3),
    throughputPerSec: +(samples.length / (wallMillis / 1000)).toFixed(0)
  }
}

const sequential = async (port: number, path: string, n: number) => {
  const samples: Array<number> = []
  const t0 = performance.now()
  for (let i = 0; i < n; i++) samples.push(await once(port, path))
  return summarize(samples, performance.now() - t0)
}

const concurrent = async (port: number, path: string, n: number) => {
  const samples: Array<number> = []
  let next = 0
  const t0 = performance.now()
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next++ < n) samples.push(await once(port, path))
    })
  )
  return summarize(samples, performance.now() - t0)
}

/** The baseline: what the worker does for this call, by hand. */
const plainServer = (): Promise<Http.Server> =>
  new Promise((resolve) => {
    const server = Http.createServer((req, res) => {
      const chunks: Array<Buffer> = []
      req.on("data", (c: Buffer) => chunks.push(c))
      req.on("end", () => {
        const envelope = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { payload: { kwargs: { x: number } } }
        const x = envelope.payload.kwargs.x
        const out = JSON.stringify({ result: { ok: x * x } })
        res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(out) }).end(out)
      })
    })
    server.listen(0, "127.0.0.1", () => resolve(server))
  })

/** The platform's floor: an @effect/platform HttpRouter route doing the same work, on the same Node server. */
const platformRoute = HttpRouter.empty.pipe(
  HttpRouter.post(
    "/remote/square",
    Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      const envelope = (yield* request.json) as { payload: { kwargs: { x: number } } }
      const x = envelope.payload.kwargs.x
      return yield* HttpServerResponse.json({ result: { ok: x * x } })
    }).pipe(Effect.orDie)
  )
)

const program = Effect.gen(function* () {
  const platformServer = yield* Layer.build(
    HttpServer.serve(platformRoute).pipe(
      Layer.provideMerge(NodeHttpServer.layer(Http.createServer, { port: 0, host: "127.0.0.1" }))
    )
  )
  const platformAddress = Context.get(platformServer, HttpServer.HttpServer).address
  const platformPort = platformAddress._tag === "TcpAddress" ? platformAddress.port : 0
  const served = yield* Worker.serveEffect(app, { port: 0, host: "127.0.0.1", handleSignals: false, benchmark: false })
  yield* served.worker.awaitReady
  const workerPort = served.address.port
  const plain = yield* Effect.promise(plainServer)
  const plainPort = (plain.address() as AddressInfo).port

  const results = yield* Effect.promise(async () => {
    const run = async (port: number, path: string) => {
      await sequential(port, path, WARMUP)
      return {
        sequential: await sequential(port, path, SEQUENTIAL),
        concurrent: await concurrent(port, path, CONCURRENT)
      }
    }
    // Alternate, so neither side gets all of a warm or a cold machine.
    const plainFirst = await run(plainPort, "/remote/square")
    const worker = await run(workerPort, "/remote/square")
    const platform = await run(platformPort, "/remote/square")
    const plainSecond = await run(plainPort, "/remote/square")
    const best = (a: typeof plainFirst, b: typeof plainFirst) => ({
      sequential: a.sequential.p50 <= b.sequential.p50 ? a.sequential : b.sequential,
      concurrent: a.concurrent.p50 <= b.concurrent.p50 ? a.concurrent : b.concurrent
    })
    return { worker, platform, plain: best(plainFirst, plainSecond) }
  })
  yield* Effect.sync(() => plain.close())
  agent.destroy()

  const ratio = (k: "sequential" | "concurrent", q: "p50" | "p99") =>
    +(results.worker[k][q] / results.plain[k][q]).toFixed(2)
  const report = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: Os.cpus().length,
    cpuModel: Os.cpus()[0]?.model,
    loadavg: Os.loadavg(),
    sequentialRequests: SEQUENTIAL,
    concurrentRequests: CONCURRENT,
    inFlight: IN_FLIGHT,
    unit: "ms",
    workerServe: results.worker,
    platformHttpRouter: results.platform,
    plainNodeHttp: results.plain,
    ratioToPlatform: {
      sequentialP50: +(results.worker.sequential.p50 / results.platform.sequential.p50).toFixed(2),
      concurrentThroughput: +(
        results.platform.concurrent.throughputPerSec / results.worker.concurrent.throughputPerSec
      ).toFixed(2)
    },
    ratio: {
      sequentialP50: ratio("sequential", "p50"),
      sequentialP99: ratio("sequential", "p99"),
      concurrentP50: ratio("concurrent", "p50"),
      concurrentP99: ratio("concurrent", "p99")
    }
  }
  const table = (name: string, r: typeof results.worker) =>
    `${name.padEnd(16)} sequential p50 ${r.sequential.p50} ms  p99 ${r.sequential.p99} ms  (${r.sequential.throughputPerSec}/s)` +
    `   concurrent(${IN_FLIGHT}) p50 ${r.concurrent.p50} ms  p99 ${r.concurrent.p99} ms  (${r.concurrent.throughputPerSec}/s)`
  console.log(table("Worker.serve", results.worker))
  console.log(table("platform router", results.platform))
  console.log(table("plain node:http", results.plain))
  console.log(
    `ratio worker/plain: sequential p50 ${report.ratio.sequentialP50}x p99 ${report.ratio.sequentialP99}x; ` +
      `concurrent p50 ${report.ratio.concurrentP50}x p99 ${report.ratio.concurrentP99}x`
  )
  console.log(
    `ratio worker/platform router: sequential p50 ${report.ratioToPlatform.sequentialP50}x; ` +
      `concurrent throughput ${report.ratioToPlatform.concurrentThroughput}x lower`
  )
  const file = Path.join(import.meta.dirname, "results", "http-latency.json")
  Fs.mkdirSync(Path.dirname(file), { recursive: true })
  Fs.writeFileSync(file, JSON.stringify(report, null, 2) + "\n")
  console.log(`wrote ${Path.relative(process.cwd(), file)}`)
})

NodeRuntime.runMain(Effect.scoped(program))
