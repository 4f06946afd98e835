/**
 * Dynamic batching on a real model: the anti-spoofing model `@vladmandic/human` ships (input [N, 128, 128, 3]), on
 * the backend the worker picks (wasm on a machine without libtensorflow). In one run, with the load average beside
 * every figure:
 *
 * 1. the model alone (`Vision.antispoof` on N images at once) at batch sizes 1..32: what batching can gain at best;
 * 2. the auto batch size: the start-up benchmark's curve and choice for `batch: { maxSize: "auto" }`;
 * 3. the worker under load: `callers` concurrent callers of the vision worker's `antispoof` (batched, `maxSize` 4)
 *    against the same handler unbatched (one image a call), in process (`worker.call`) and over HTTP (the typed
 *    client on loopback, in the same process): calls per second and call latency. The callers send the eight
 *    thumbnails of the sample photo (160x158 JPEG) in turn; each call decodes its JPEG, then the model runs.
 *
 *   npx tsx bench/batching.ts [callers=16] [windows=6]
 *
 * Writes bench/results/batching.json and prints tables. The machine this runs on may be shared: both layouts are
 * served at once and measured in alternating one-second windows, so that a change of load falls on both, and besides
 * wall-clock throughput each figure has the process's CPU time per call (every thread), which the rest of the
 * machine does not inflate.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import { NodeRuntime } from "@effect/platform-node"
import { Context, Effect, Either, Layer, Schema } from "effect"
import * as os from "node:os"
import * as path from "node:path"
import { Antispoof, AntispoofLive, antispoofPath, sampleBytes } from "../examples/vision-worker/models.js"
import { Deployment, Remote, Worker, WorkerClient, WorkerError } from "../src/index.js"
import { Tfjs, Vision } from "../src/tfjs/index.js"
import jpeg from "jpeg-js"
import * as Results from "./results.js"

const callers = Number(process.argv[2] ?? 16)
const seconds = Number(process.argv[3] ?? 6)

const load = (): number => Math.round(os.loadavg()[0]! * 100) / 100
const round = (n: number, digits = 1): number => Math.round(n * 10 ** digits) / 10 ** digits

/** The eight thumbnails of the sample photo's top row (a person each, 160x158), as JPEG bytes. */
const faces = await (async () => {
  // Vision.decodeImage imports its decoder (an optional peer) at the first image: run it, not runSync
  const sample = await Effect.runPromise(Vision.decodeImage(sampleBytes()))
  return Array.from({ length: 8 }, (_, i) => {
    const [width, height] = [160, 158]
    const rgba = Buffer.alloc(width * height * 4, 255)
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const from = (y * sample.width + i * width + x) * 3
        rgba.set(sample.data.subarray(from, from + 3), (y * width + x) * 4)
      }
    }
    return new Uint8Array(jpeg.encode({ width, height, data: rgba }, 90).data)
  })
})()

const Payload = Schema.Struct({ image: Schema.Uint8ArrayFromSelf })

/**
 * The vision worker's batched `antispoof`, with the model on the worker's own thread (the example runs it in its
 * threads; here the batching alone is measured): each image decoded on its own (a bad one fails only its caller),
 * the good ones through the model at once.
 */
const antispoof = Remote.make(
  "antispoof",
  {
    payload: Payload,
    success: Schema.Number,
    error: WorkerError.ImageInvalid,
    batch: { maxSize: 4, maxWait: "5 millis" }
  },
  (payloads) =>
    Effect.gen(function* () {
      const decoded = yield* Effect.forEach(payloads, ({ image }) => Effect.either(Vision.decodeImage(image)))
      const images = decoded.flatMap((d) => (Either.isRight(d) ? [d.right] : []))
      const scores = yield* Vision.antispoof(yield* Antispoof, images)
      let next = 0
      return decoded.map((d) => (Either.isRight(d) ? Either.right(scores[next++]!) : Either.left(d.left)))
    })
)

/** The same work unbatched: one image a call, one call at a time (the remote's default concurrency). */
const single = Remote.make(
  "antispoof",
  { payload: Payload, success: Schema.Number, error: WorkerError.ImageInvalid },
  ({ image }) =>
    Effect.gen(function* () {
      const rgb = yield* Vision.decodeImage(image)
      const [score] = yield* Vision.antispoof(yield* Antispoof, [rgb])
      return score!
    })
)

/** The vision worker's handler with the size left to the benchmark. */
const auto = Remote.make(
  "antispoof",
  {
    payload: Payload,
    success: Schema.Number,
    error: WorkerError.ImageInvalid,
    batch: { maxSize: "auto", maxWait: "5 millis", latencyBudget: "400 millis", maxAutoSize: 32 },
    benchmark: { generator: () => ({ image: faces[Math.floor(Math.random() * faces.length)]! }), runs: 3, warmup: 1 }
  },
  (payloads) => antispoof.batch!.handler(payloads)
)

/** A remote for the benchmark a deployment must declare (the workers under load run without one). */
const ping = Remote.make(
  "ping",
  { payload: Schema.Struct({}), success: Schema.Literal("pong"), benchmark: { dataset: [{}], runs: 1 } },
  () => Effect.succeed("pong" as const)
)

const batchedApp = Deployment.make("antispoof-batched", {
  contexts: [Tfjs.backend, AntispoofLive],
  remotes: [antispoof, ping]
})
const singleApp = Deployment.make("antispoof-single", {
  contexts: [Tfjs.backend, AntispoofLive],
  remotes: [single, ping]
})
const autoApp = Deployment.make("antispoof-auto", { contexts: [Tfjs.backend, AntispoofLive], remotes: [auto] })

/** What one layout did under load, summed over its windows. */
interface Load {
  readonly layout: "unbatched" | "batched"
  readonly path: "in process" | "HTTP"
  readonly callers: number
  readonly windows: number
  readonly seconds: number
  readonly calls: number
  readonly callsPerSecond: number
  readonly p50Ms: number
  readonly p90Ms: number
  /** Process CPU time (every thread) per call: what a call costs, whatever else the machine runs. */
  readonly cpuMsPerCall: number
}

const quantile = (values: ReadonlyArray<number>, q: number): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? Number.NaN
}

/** CPU milliseconds this process used (user + system, every thread) since `from`. */
const cpuMillis = (from: NodeJS.CpuUsage): number => {
  const d = process.cpuUsage(from)
  return (d.user + d.system) / 1000
}

interface Window {
  readonly latencies: Array<number>
  readonly wallMs: number
  readonly cpuMs: number
}

/** One window: `callers` fibers calling in a loop for `millis`, then waiting for the calls in flight. */
const window = (call: (image: Uint8Array) => Effect.Effect<number, unknown>, millis: number): Effect.Effect<Window> =>
  Effect.gen(function* () {
    const latencies: Array<number> = []
    const cpu = process.cpuUsage()
    const start = performance.now()
    const until = start + millis
    yield* Effect.all(
      Array.from({ length: callers }, (_, c) =>
        Effect.gen(function* () {
          for (let i = c; performance.now() < until; i++) {
            const t0 = performance.now()
            yield* Effect.orDie(call(faces[i % faces.length]!))
            latencies.push(performance.now() - t0)
          }
        })
      ),
      { concurrency: "unbounded" }
    )
    return { latencies, wallMs: performance.now() - start, cpuMs: cpuMillis(cpu) }
  })

const summary = (layout: Load["layout"], via: Load["path"], windows: ReadonlyArray<Window>): Load => {
  const latencies = windows.flatMap((w) => w.latencies)
  const wall = windows.reduce((a, w) => a + w.wallMs, 0)
  const cpu = windows.reduce((a, w) => a + w.cpuMs, 0)
  return {
    layout,
    path: via,
    callers,
    windows: windows.length,
    seconds: round(wall / 1000, 2),
    calls: latencies.length,
    callsPerSecond: round((latencies.length * 1000) / wall),
    p50Ms: round(quantile(latencies, 0.5)),
    p90Ms: round(quantile(latencies, 0.9)),
    cpuMsPerCall: round(cpu / latencies.length, 2)
  }
}

/**
 * Both layouts served at once, measured in alternating one-second windows (in process, then over HTTP), so that a
 * change in the machine's load falls on both.
 */
const underLoad = Effect.scoped(
  Effect.gen(function* () {
    const serve = <R extends Remote.Definition>(deployment: Deployment.Deployment<any, any, R>) =>
      Effect.tap(
        Worker.serveEffect(deployment, { port: 0, host: "127.0.0.1", handleSignals: false, benchmark: false }),
        (served) => served.worker.awaitReady
      )
    const unbatched = yield* serve(singleApp)
    const batched = yield* serve(batchedApp)
    const inProcess = {
      unbatched: (image: Uint8Array) => unbatched.worker.call(single, { image }),
      batched: (image: Uint8Array) => batched.worker.call(antispoof, { image })
    }
    const unbatchedClient = yield* WorkerClient.make([single], { url: unbatched.url })
    const batchedClient = yield* WorkerClient.make([antispoof], { url: batched.url })
    const overHttp = {
      unbatched: (image: Uint8Array) => unbatchedClient.antispoof({ image }),
      batched: (image: Uint8Array) => batchedClient.antispoof({ image })
    }
    const out: Array<Load> = []
    for (const [via, calls] of [
      ["in process", inProcess],
      ["HTTP", overHttp]
    ] as const) {
      // Untimed: the first calls pay for JIT, the first batch shapes and the connections.
      yield* window(calls.unbatched, 300)
      yield* window(calls.batched, 300)
      const windows = { unbatched: [] as Array<Window>, batched: [] as Array<Window> }
      for (let w = 0; w < seconds; w++) {
        windows.unbatched.push(yield* window(calls.unbatched, 1000))
        windows.batched.push(yield* window(calls.batched, 1000))
      }
      out.push(summary("unbatched", via, windows.unbatched), summary("batched", via, windows.batched))
    }
    return out
  })
).pipe(Effect.provide(FetchHttpClient.layer))

/** The model alone: the sizes in turn, round after round, each for a quarter second a round. */
const modelCurve = Effect.gen(function* () {
  class Model extends Context.Tag("bench/Antispoof")<Model, Tfjs.GraphModel>() {}
  const ModelLive = Tfjs.graphModel(Model, { path: antispoofPath, warmup: 1 })
  const rgbs = yield* Effect.forEach(faces, (f) => Vision.decodeImage(f))
  return yield* Effect.gen(function* () {
    const model = yield* Model
    const sizes = [1, 2, 4, 8, 16, 32]
    const totals = sizes.map(() => ({ batches: 0, wallMs: 0, cpuMs: 0 }))
    const batchOf = (size: number) => Array.from({ length: size }, (_, i) => rgbs[i % rgbs.length]!)
    for (const size of sizes) yield* Vision.antispoof(model, batchOf(size))
    for (let round = 0; round < Math.max(3, seconds); round++) {
      for (const [i, size] of sizes.entries()) {
        const images = batchOf(size)
        const cpu = process.cpuUsage()
        const start = performance.now()
        do {
          yield* Vision.antispoof(model, images)
          totals[i]!.batches++
        } while (performance.now() - start < 250)
        totals[i]!.wallMs += performance.now() - start
        totals[i]!.cpuMs += cpuMillis(cpu)
      }
    }
    return sizes.map((size, i) => {
      const t = totals[i]!
      return {
        size,
        itemsPerSecond: round((t.batches * size * 1000) / t.wallMs),
        msPerBatch: round(t.wallMs / t.batches),
        cpuMsPerItem: round(t.cpuMs / (t.batches * size), 2)
      }
    })
  }).pipe(Effect.provide(Layer.provideMerge(ModelLive, Tfjs.backend)))
})

const main = Effect.gen(function* () {
  const loadBefore = load()
  console.log(`load average ${loadBefore} (${os.cpus().length} cores); ${callers} callers, ${seconds} windows of 1 s`)

  const curve = yield* modelCurve
  console.log(`\nthe model alone (Vision.antispoof on N images at once; load ${load()}):`)
  console.log("  size  items/s  ms/batch  CPU ms/item")
  for (const p of curve) {
    console.log(
      `  ${String(p.size).padStart(4)}  ${p.itemsPerSecond.toFixed(1).padStart(7)}  ${p.msPerBatch
        .toFixed(1)
        .padStart(8)}  ${p.cpuMsPerItem.toFixed(2).padStart(11)}`
    )
  }

  const autoReport = yield* Effect.scoped(Effect.flatMap(Worker.make(autoApp), (worker) => worker.report))
  console.log(`\nthe auto batch size (load ${load()}):`)
  console.log(Worker.formatReport(autoReport))

  const loads = yield* underLoad
  console.log(`\nthe worker under load (${callers} callers; load ${load()}):`)
  console.log("  layout     path        calls/s  p50 ms  p90 ms  CPU ms/call")
  for (const l of loads) {
    console.log(
      `  ${l.layout.padEnd(10)} ${l.path.padEnd(10)} ${l.callsPerSecond.toFixed(1).padStart(8)}  ${l.p50Ms
        .toFixed(1)
        .padStart(6)}  ${l.p90Ms.toFixed(1).padStart(6)}  ${l.cpuMsPerCall.toFixed(2).padStart(11)}`
    )
  }
  const of = (layout: Load["layout"], via: Load["path"]) => loads.find((l) => l.layout === layout && l.path === via)!
  const ratios = Object.fromEntries(
    (["in process", "HTTP"] as const).map((via) => [
      via,
      {
        throughput: round(of("batched", via).callsPerSecond / of("unbatched", via).callsPerSecond, 2),
        cpuPerCall: round(of("unbatched", via).cpuMsPerCall / of("batched", via).cpuMsPerCall, 2)
      }
    ])
  )
  for (const [via, r] of Object.entries(ratios)) {
    console.log(`batched vs unbatched, ${via}: throughput x${r.throughput}, CPU per call / ${r.cpuPerCall}`)
  }

  const backend = autoReport.contexts.find((c) => c.key === Tfjs.Backend.key)?.notes[0] ?? "?"
  const out = {
    backend,
    loadavgBefore: loadBefore,
    loadavgAfter: load(),
    callers,
    windows: seconds,
    model: curve,
    auto: autoReport.benchmark?.batch,
    autoScore: autoReport.benchmark?.score,
    underLoad: loads,
    ratios
  }
  const file = Results.write("batching", out)
  console.log(`written: ${path.relative(process.cwd(), file)}`)
})

NodeRuntime.runMain(main)
