/**
 * The vision worker on the backend it picks (wasm on a machine without libtensorflow): time to ready and each
 * context's load and warm-up, read from the worker's own start-up report; the two models entered in parallel (the
 * example's deployment) against one after the other (movenet dependsOn centernet); and detect latency in process
 * (`worker.call`, `worker.invoke`) against over HTTP (the typed `WorkerClient` against `Worker.serveEffect` on
 * loopback, same process, same worker, same image).
 *
 *   npx tsx bench/vision.ts [startups=6] [calls=21]
 *
 * Writes bench/results/vision.json and prints tables. Start-ups alternate between the layouts, and the three detect
 * paths alternate call by call, so that none gets the warmer process; the first of each series is reported apart from
 * the median and p90 because it pays for JIT warm-up.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import { NodeRuntime } from "@effect/platform-node"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import {
  app,
  Centernet,
  CenternetLive,
  centernetPath,
  detect,
  Movenet,
  movenetPath,
  pose,
  sampleBytes
} from "../examples/vision-worker/app.js"
import { Deployment, Worker, WorkerClient } from "../src/index.js"
import { Tfjs, Vision } from "../src/tfjs/index.js"
import { figureJpeg } from "../test/fixtures/tfjs.js"

const startups = Number(process.argv[2] ?? 6)
const calls = Number(process.argv[3] ?? 21)

const round = (ms: number): number => Math.round(ms * 10) / 10

interface Series {
  readonly measure: string
  readonly runs: number
  readonly firstMs: number
  readonly medianMs: number
  readonly p90Ms: number
  readonly minMs: number
  readonly maxMs: number
}

const series = (measure: string, times: ReadonlyArray<number>): Series => {
  const rest = times.length > 1 ? times.slice(1) : times
  const sorted = [...rest].sort((a, b) => a - b)
  return {
    measure,
    runs: times.length,
    firstMs: round(times[0] ?? Number.NaN),
    medianMs: round(sorted[Math.floor(sorted.length / 2)] ?? Number.NaN),
    p90Ms: round(sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.9))] ?? Number.NaN),
    minMs: round(sorted[0] ?? Number.NaN),
    maxMs: round(sorted[sorted.length - 1] ?? Number.NaN)
  }
}

const timed = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<number, E, R> =>
  Effect.suspend(() => {
    const start = performance.now()
    return Effect.as(effect, undefined).pipe(Effect.map(() => performance.now() - start))
  })

// The same models, movenet made to wait for centernet: the two layouts differ only in that edge
const MovenetAfterCenternet = Tfjs.graphModel(Movenet, { path: movenetPath, warmup: 1, dependsOn: [Centernet] })
const sequential = Deployment.make("vision-sequential", {
  contexts: [Tfjs.backend, CenternetLive, MovenetAfterCenternet],
  remotes: [detect, pose]
})
// Without warm-up, entering is reading files and uploading weights: what parallel entering can overlap
const CenternetCold = Tfjs.graphModel(Centernet, { path: centernetPath })
const layouts = {
  "parallel, warm-up 1": app,
  "sequential, warm-up 1": sequential,
  "parallel, no warm-up": Deployment.make("vision-cold", {
    contexts: [Tfjs.backend, CenternetCold, Tfjs.graphModel(Movenet, { path: movenetPath })],
    remotes: [detect, pose]
  }),
  "sequential, no warm-up": Deployment.make("vision-cold-sequential", {
    contexts: [Tfjs.backend, CenternetCold, Tfjs.graphModel(Movenet, { path: movenetPath, dependsOn: [Centernet] })],
    remotes: [detect, pose]
  })
} as const

const noteMillis = (notes: ReadonlyArray<string>, what: RegExp): number | undefined => {
  const match = notes.join("; ").match(what)
  return match?.[1] === undefined ? undefined : Number(match[1])
}

/** One start-up without the benchmark, read from the worker's report, then a shutdown. */
const startOnce = (deployment: Deployment.Deployment<any, any, any>) =>
  Effect.scoped(
    Effect.gen(function* () {
      const worker = yield* Worker.make(deployment, { benchmark: false })
      const report = yield* worker.report
      const contexts = Object.fromEntries(report.contexts.map((c) => [c.key, c]))
      const model = (key: string) => {
        const c = contexts[key]!
        return {
          enterMs: c.enterMillis ?? Number.NaN,
          startedMs: (c.enterStartedAt ?? Number.NaN) - report.startedAt,
          loadMs: noteMillis(c.notes, /loaded in (\d+) ms/) ?? Number.NaN,
          warmupMs: noteMillis(c.notes, /warm-up \([^)]*\) in (\d+) ms/) ?? 0
        }
      }
      return {
        readyMs: (report.readyAt ?? Number.NaN) - report.startedAt,
        backendMs: contexts[Tfjs.Backend.key]?.enterMillis ?? Number.NaN,
        backendNote: contexts[Tfjs.Backend.key]?.notes.join("; ") ?? "",
        centernet: model("Centernet"),
        movenet: model("Movenet")
      }
    })
  )

const program = Effect.gen(function* () {
  const startup: Array<Series> = []
  const runs: Record<string, Array<Effect.Effect.Success<ReturnType<typeof startOnce>>>> = {}
  for (let i = 0; i < startups; i++) {
    for (const [name, deployment] of Object.entries(layouts)) {
      ;(runs[name] ??= []).push(yield* startOnce(deployment))
    }
  }
  let backendNote = ""
  for (const [name, rs] of Object.entries(runs)) {
    backendNote = rs[0]?.backendNote ?? backendNote
    startup.push(
      series(
        `${name}: ready (start-up, no benchmark)`,
        rs.map((r) => r.readyMs)
      )
    )
    startup.push(
      series(
        `${name}: backend enter`,
        rs.map((r) => r.backendMs)
      )
    )
    for (const key of ["centernet", "movenet"] as const) {
      startup.push(
        series(
          `${name}: ${key} enter`,
          rs.map((r) => r[key].enterMs)
        )
      )
      startup.push(
        series(
          `${name}: ${key} starts entering at`,
          rs.map((r) => r[key].startedMs)
        )
      )
      startup.push(
        series(
          `${name}: ${key} load`,
          rs.map((r) => r[key].loadMs)
        )
      )
      if (name.includes("warm-up"))
        startup.push(
          series(
            `${name}: ${key} warm-up`,
            rs.map((r) => r[key].warmupMs)
          )
        )
    }
  }

  // Latency in process and over HTTP, on one worker started as the example starts (with its benchmark) and served on
  // loopback: the three paths reach the same contexts, so their difference is the path
  const latency: Array<Series> = []
  const benchmark = yield* Effect.scoped(
    Effect.gen(function* () {
      const t0 = performance.now()
      const served = yield* Worker.serveEffect(app, { port: 0, host: "127.0.0.1", handleSignals: false })
      const worker = served.worker
      yield* worker.awaitReady
      const readyWithBenchmarkMs = performance.now() - t0
      const client = yield* WorkerClient.make(app, { url: served.url })
      const image = sampleBytes()
      const figure = figureJpeg()
      const repeat = (n: number, effect: Effect.Effect<unknown, unknown>) =>
        Effect.forEach(Array.from({ length: n }), () => timed(effect))
      const decodes = yield* repeat(Math.min(calls, 5), Vision.decodeImage(image))
      latency.push(series("decode samples.jpg 1280x1158 (jpeg-js)", decodes))
      const paths: Record<"call" | "invoke" | "http", Effect.Effect<unknown, unknown>> = {
        call: worker.call(detect, { image }),
        invoke: worker.invoke("detect", { image }),
        http: client.detect({ image })
      }
      const times: Record<keyof typeof paths, Array<number>> = { call: [], invoke: [], http: [] }
      for (let i = 0; i < calls; i++) {
        for (const [name, effect] of Object.entries(paths)) times[name as keyof typeof paths].push(yield* timed(effect))
      }
      const detectCall = series("detect samples.jpg: worker.call (decode + infer)", times.call)
      const detectInvoke = series("detect samples.jpg: worker.invoke (+ payload decode, result encode)", times.invoke)
      const detectHttp = series("detect samples.jpg: WorkerClient over HTTP (+ base64, JSON, loopback)", times.http)
      latency.push(detectCall, detectInvoke, detectHttp)
      const poses = yield* repeat(calls * 2, worker.call(pose, { image: figure }))
      latency.push(series("pose 160x158 JPEG: worker.call", poses))
      const detections = yield* client.detect({ image, minScore: 0.2, maxResults: 20 })
      const people = detections.filter((d) => d.label === "person").length
      const report = yield* worker.report
      return {
        readyWithBenchmarkMs: round(readyWithBenchmarkMs),
        score: report.benchmark?.score,
        people,
        httpVsInProcess: {
          medianRatio: Math.round((detectHttp.medianMs / detectCall.medianMs) * 1000) / 1000,
          p90Ratio: Math.round((detectHttp.p90Ms / detectCall.p90Ms) * 1000) / 1000,
          medianOverheadMs: round(detectHttp.medianMs - detectCall.medianMs)
        }
      }
    })
  ).pipe(Effect.provide(FetchHttpClient.layer))

  const result = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    backend: backendNote,
    startups,
    calls,
    example: benchmark,
    startup,
    latency
  }
  const out = path.join(import.meta.dirname, "results", "vision.json")
  fs.mkdirSync(path.dirname(out), { recursive: true })
  fs.writeFileSync(out, JSON.stringify(result, null, 2) + "\n")
  console.log(`backend: ${backendNote}`)
  console.table(startup)
  console.table(latency)
  console.log(benchmark)
  console.log(`written to ${path.relative(process.cwd(), out)}`)
})

NodeRuntime.runMain(program.pipe(Effect.orDie))
