/**
 * Where the extra time of a `detect` over HTTP goes, without models: a remote with the vision worker's `detect`
 * schemas (a 356 kB JPEG in, a list of detections out) that answers at once, so that what is left is the transport.
 *
 * Two parts, on the real payload (node_modules/@vladmandic/human/assets/samples.jpg):
 *
 * 1. Each step of the path, timed alone (the functions the client and the pipeline call, called directly, median of
 *    many runs): the client's schema encode, base64, JSON.stringify, TextEncoder; the server's body concat, utf8
 *    decode, JSON.parse, depth check, envelope schema, wire decode (base64 check, base64 decode, copy), binding, payload
 *    schema; the answer's encode and its decode by the client.
 * 2. The round trip, the paths alternating call by call in one process (as bench/vision.ts runs its detect): in
 *    process (`worker.call`), the typed `WorkerClient` over `FetchHttpClient` and over `NodeHttpClient` to
 *    `Worker.serveEffect`, the pre-encoded body posted with a bare `node:http` request to the worker (the server side
 *    alone), the `WorkerClient` to a bare `node:http` server that answers without decoding (the client side alone), and
 *    the pre-encoded body to that bare server (the transport floor). For each: wall time, the process's CPU time (it
 *    holds both sides), GC pauses, and the phases of the HTTP exchange from Node's `http.server.*` diagnostics
 *    channels.
 *
 * Prints the load average beside the figures; writes bench/results/detect-overhead.json.
 *
 *   npm run bench:detect-overhead -- [--calls 40] [--runs 50]
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Effect, Either, Layer, Schema } from "effect"
import * as DiagnosticsChannel from "node:diagnostics_channel"
import * as Fs from "node:fs"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { PerformanceObserver } from "node:perf_hooks"
import { parseArgs } from "node:util"
import * as Deployment from "../src/Deployment.js"
import * as wire from "../src/internal/wire.js"
import * as Remote from "../src/Remote.js"
import * as Wire from "../src/Wire.js"
import * as Worker from "../src/Worker.js"
import * as WorkerClient from "../src/WorkerClient.js"
import * as Results from "./results.js"

const { values: args } = parseArgs({
  options: {
    calls: { type: "string", default: "40" },
    runs: { type: "string", default: "50" }
  }
})
const CALLS = Number(args.calls)
const RUNS = Number(args.runs)
if (!Number.isInteger(CALLS) || CALLS < 3 || !Number.isInteger(RUNS) || RUNS < 3) {
  throw new Error(`--calls and --runs must be integers >= 3, got ${args.calls} and ${args.runs}`)
}

const ROOT = Path.resolve(import.meta.dirname, "..")
const SAMPLE = Path.join(ROOT, "node_modules", "@vladmandic", "human", "assets", "samples.jpg")
const image = new Uint8Array(Fs.readFileSync(SAMPLE))

// The vision worker's `detect` schemas (examples/vision-worker/app.ts, src/tfjs/Vision.ts), written out here so that
// the bench loads neither tfjs nor the models.
const Box = Schema.Struct({ x: Schema.Number, y: Schema.Number, width: Schema.Number, height: Schema.Number })
const Detection = Schema.Struct({ label: Schema.String, classId: Schema.Int, score: Schema.Number, box: Box })
const DetectPayload = Schema.Struct({
  image: Schema.Uint8ArrayFromSelf,
  minScore: Schema.optional(Schema.Number.pipe(Schema.between(0, 1))),
  maxResults: Schema.optional(Schema.Int.pipe(Schema.between(1, 100)))
})
const DetectSuccess = Schema.Array(Detection)

/** What the sample's detect answers, roughly: a dozen boxes. */
const detections = Array.from({ length: 12 }, (_, i) => ({
  label: "person",
  classId: 0,
  score: 0.9 - i * 0.05,
  box: { x: 10.5 * i, y: 20.25 * i, width: 100.125, height: 200.5 }
}))

// A deployment needs one benchmarked remote; the bench serves with `benchmark: false`, so it never runs.
const detect = Remote.make(
  "detect",
  {
    payload: DetectPayload,
    success: DetectSuccess,
    benchmark: { generator: () => ({ image }), runs: 1 }
  },
  () => Effect.succeed(detections)
)
const app = Deployment.make("detect-overhead", { contexts: [], remotes: [detect] })

// ---------------------------------------------------------------------------------------------------------------------
// helpers

const round3 = (x: number) => Math.round(x * 1000) / 1000
const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)] ?? NaN
}
const p90 = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(s.length * 0.9))] ?? NaN
}
const load = () => Os.loadavg().map((x) => Math.round(x * 100) / 100)

interface Step {
  readonly side: "client" | "server" | "answer" | "option"
  readonly step: string
  readonly function: string
  readonly medianMs: number
  readonly minMs: number
}

const steps: Array<Step> = []

/** Time `f` alone: a few warm-up calls, then `RUNS` calls; its median and its best. */
const step = <A>(side: Step["side"], name: string, fn: string, f: () => A): A => {
  let out = f()
  for (let i = 0; i < 3; i++) out = f()
  const times: Array<number> = []
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now()
    out = f()
    times.push(performance.now() - t0)
  }
  steps.push({ side, step: name, function: fn, medianMs: round3(median(times)), minMs: round3(Math.min(...times)) })
  return out
}

const right = <A, E>(e: Either.Either<A, E>): A => {
  if (Either.isLeft(e)) throw new Error(`unexpected failure: ${String(e.left)}`)
  return e.right
}

// The base64 alphabet as a table: what a loop over char codes checks instead of wire.ts's regex.
const base64Table = new Uint8Array(256)
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") base64Table[c.charCodeAt(0)] = 1

/** wire.ts's `isPaddedBase64` without a regex: length a multiple of 4, the alphabet, then at most two "=". */
const isPaddedBase64Loop = (s: string): boolean => {
  const n = s.length
  if (n % 4 !== 0) return false
  const padding = n > 0 && s.charCodeAt(n - 1) === 61 ? (s.charCodeAt(n - 2) === 61 ? 2 : 1) : 0
  for (let i = 0; i < n - padding; i++) {
    const c = s.charCodeAt(i)
    if (c > 255 || base64Table[c] === 0) return false
  }
  return true
}

// ---------------------------------------------------------------------------------------------------------------------
// 1. the steps, one by one, on the real payload

const stepsOf = () => {
  const payload = { image }
  // Client (src/internal/client.ts `callRemote`).
  const encoded = step("client", "payload schema encode", "Schema.encodeUnknown(remote.payload)", () =>
    Schema.encodeUnknownSync(DetectPayload)(payload)
  )
  const kwargs = step("client", "wire encode (base64)", "Wire.encodeValue -> wire.encodeValueUnsafe", () => ({
    image: wire.encodeValueUnsafe(encoded.image)
  }))
  const bodyText = step("client", "JSON.stringify the envelope", "JSON.stringify({ payload: { kwargs } })", () =>
    JSON.stringify({ payload: { kwargs } })
  )
  step("client", "utf8 encode the body", "HttpClientRequest.bodyText -> TextEncoder.encode", () =>
    new TextEncoder().encode(bodyText)
  )
  // Server (src/internal/pipeline.ts `readBody`, `afterBody`), on the body as a socket delivers it (64 kB chunks).
  const bytes = Buffer.from(bodyText, "utf8")
  const chunks: Array<Buffer> = []
  for (let i = 0; i < bytes.length; i += 65536) chunks.push(bytes.subarray(i, i + 65536))
  const body = step("server", "concat the body chunks", "readBody: Buffer.concat(chunks, size)", () =>
    Buffer.concat(chunks, bytes.length)
  )
  const text = step("server", "utf8 decode the body", "parseJson: body.toString('utf8')", () => body.toString("utf8"))
  const json = step("server", "JSON.parse", "parseJson: JSON.parse", () => JSON.parse(text) as unknown)
  step("server", "depth and key check", "wire.checkJsonSync", () => {
    const unfit = wire.checkJsonSync(json, wire.defaultMaxJsonDepth)
    if (unfit !== undefined) throw unfit
  })
  const envelope = step("server", "envelope schema", "Wire.decodeEnvelopeEither", () =>
    right(Wire.decodeEnvelopeEither(json))
  )
  const contents = (envelope.payload!.kwargs!["image"] as { contents: string }).contents
  step("server", "  base64 alphabet check", "wire.ts isPaddedBase64 (regex test)", () =>
    /^[A-Za-z0-9+/]*={0,2}$/.test(contents)
  )
  const decodedBuffer = step("server", "  base64 decode", 'wire.ts decodeAt: Buffer.from(contents, "base64")', () =>
    Buffer.from(contents, "base64")
  )
  step(
    "server",
    "  copy out of the pool",
    "wire.ts decodeAt: new Uint8Array(buffer)",
    () => new Uint8Array(decodedBuffer)
  )
  const regexSays = /^[A-Za-z0-9+/]*={0,2}$/.test(contents)
  if (!regexSays || !isPaddedBase64Loop(contents) || Buffer.from(contents, "base64").toString("base64") !== contents) {
    throw new Error("the base64 checks disagree on the sample")
  }
  // Cheaper ways to the same strictness, for comparison (not what the pipeline runs today).
  step(
    "option",
    "base64 check: round trip",
    'Buffer.from(s, "base64").toString("base64") === s',
    () => Buffer.from(contents, "base64").toString("base64") === contents
  )
  step("option", "base64 check: char-code loop", "a 256-entry table over s.charCodeAt(i)", () =>
    isPaddedBase64Loop(contents)
  )
  const args = step(
    "server",
    "wire decode of the arguments (the 3 above)",
    "Wire.decodeArgumentsEither -> wire.decodeValueUnsafe",
    () => right(Wire.decodeArgumentsEither(envelope))
  )
  const bound = step("server", "bind the arguments", "wire.bindArgsEither", () =>
    right(wire.bindArgsEither(["image", "minScore", "maxResults"], args.args, args.kwargs))
  )
  step("server", "payload schema decode", "Schema.decodeUnknownEither(remote.payload)", () =>
    right(Schema.decodeUnknownEither(DetectPayload)(bound))
  )
  // The answer (pipeline.ts `encodeOk`; client.ts reading `result.ok`).
  const answer = step(
    "answer",
    "server: encode the answer",
    "encodeSuccess + wire.encodeValueUnsafe + JSON.stringify",
    () => JSON.stringify({ result: { ok: wire.encodeValueUnsafe(Schema.encodeSync(DetectSuccess)(detections)) } })
  )
  step("answer", "client: decode the answer", "JSON.parse + Wire.decodeValue + Schema.decodeUnknown(success)", () =>
    Schema.decodeUnknownSync(DetectSuccess)(
      wire.decodeValueUnsafe((JSON.parse(answer) as { result: { ok: unknown } }).result.ok)
    )
  )
  return { bodyText, bodyBytes: bytes.length }
}

// ---------------------------------------------------------------------------------------------------------------------
// 2. the round trips

const agent = new Http.Agent({ keepAlive: true, maxSockets: 1 })

/** POST a ready body on a kept-alive `node:http` connection; resolves with the answer's status and text. */
const post = (port: number, path: string, body: Buffer): Promise<{ status: number; text: string }> =>
  new Promise((resolve, reject) => {
    const req = Http.request(
      {
        host: "127.0.0.1",
        port,
        path,
        method: "POST",
        agent,
        headers: { "content-type": "application/json", "content-length": body.length }
      },
      (res) => {
        let text = ""
        res.setEncoding("utf8")
        res.on("data", (c: string) => (text += c))
        res.on("end", () => resolve({ status: res.statusCode ?? 0, text }))
        res.on("error", reject)
      }
    )
    req.on("error", reject)
    req.end(body)
  })

/** The transport floor: reads the body, answers a fixed small JSON. */
const floorServer = (answer: string) =>
  Effect.acquireRelease(
    Effect.async<{ server: Http.Server; port: number }>((resume) => {
      const server = Http.createServer((req, res) => {
        const chunks: Array<Buffer> = []
        req.on("data", (c: Buffer) => chunks.push(c))
        req.on("end", () => {
          Buffer.concat(chunks)
          res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(answer) })
          res.end(answer)
        })
      })
      server.listen(0, "127.0.0.1", () =>
        resume(Effect.succeed({ server, port: (server.address() as AddressInfo).port }))
      )
    }),
    ({ server }) =>
      Effect.sync(() => server.closeAllConnections()).pipe(Effect.zipRight(Effect.sync(() => server.close())))
  )

/**
 * One HTTP call's timeline, from Node's own `http.server.*` diagnostics channels (no change to the server): when the
 * server saw the request's headers, when its body ended, when the response was finished. The calls run one at a time,
 * so the current call's timeline is a single slot.
 */
interface Timeline {
  readonly start: number
  headers?: number
  bodyEnd?: number
  finished?: number
}
let current: Timeline | undefined

/** Garbage collections (start, duration), to charge each call with the pauses that fell inside it. */
const gcs: Array<{ start: number; duration: number }> = []
const gcObserver = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcs.push({ start: e.startTime, duration: e.duration })
})
gcObserver.observe({ entryTypes: ["gc"] })
DiagnosticsChannel.subscribe("http.server.request.start", (message) => {
  const timeline = current
  if (timeline === undefined) return
  timeline.headers = performance.now()
  // A listener of our own on "end" changes nothing in how the server reads the body.
  ;(message as { request: Http.IncomingMessage }).request.once("end", () => (timeline.bodyEnd = performance.now()))
})
DiagnosticsChannel.subscribe("http.server.response.finish", () => {
  if (current !== undefined) current.finished = performance.now()
})

const clientFor = (url: string, layer: Layer.Layer<HttpClient.HttpClient>) =>
  WorkerClient.make([detect], { url }).pipe(Effect.provide(layer))

const program = Effect.gen(function* () {
  const loadBefore = load()
  console.log(
    `detect overhead: ${(image.length / 1024).toFixed(0)} kB image, ${RUNS} runs per step, ${CALLS} calls per path; ` +
      `load average ${loadBefore.join(" ")} (${Os.cpus().length} cpus)`
  )
  const { bodyText, bodyBytes } = stepsOf()
  const body = Buffer.from(bodyText, "utf8")

  const served = yield* Worker.serveEffect(app, { port: 0, host: "127.0.0.1", handleSignals: false, benchmark: false })
  yield* served.worker.awaitReady
  const worker = served.worker
  const floor = yield* floorServer(JSON.stringify({ result: { ok: wire.encodeValueUnsafe(detections) } }))
  const fetchClient = yield* clientFor(served.url, FetchHttpClient.layer)
  const nodeClient = yield* clientFor(served.url, NodeHttpClient.layer)
  // The client alone: the bare server answers the same detections without decoding anything.
  const floorClient = yield* clientFor(`http://127.0.0.1:${floor.port}`, FetchHttpClient.layer)

  const expected = yield* worker.call(detect, { image })
  const check = (label: string, value: unknown) => {
    if (JSON.stringify(value) !== JSON.stringify(expected)) throw new Error(`${label}: unexpected answer`)
  }
  const rawPost = (port: number, path: string, label: string) =>
    Effect.promise(() => post(port, path, body)).pipe(
      Effect.tap(({ status, text }) =>
        Effect.sync(() => {
          if (status !== 200) throw new Error(`${label}: HTTP ${status} ${text.slice(0, 200)}`)
        })
      )
    )
  const paths: Record<string, Effect.Effect<unknown, unknown>> = {
    "in process: worker.call": worker.call(detect, { image }).pipe(Effect.tap((v) => check("call", v))),
    "WorkerClient over FetchHttpClient": fetchClient.detect({ image }).pipe(Effect.tap((v) => check("fetch", v))),
    "WorkerClient over NodeHttpClient": nodeClient.detect({ image }).pipe(Effect.tap((v) => check("node", v))),
    "WorkerClient over FetchHttpClient -> bare server": floorClient
      .detect({ image })
      .pipe(Effect.tap((v) => check("client alone", v))),
    "node:http post of the encoded body -> worker": rawPost(served.address.port, "/remote/detect", "raw"),
    "node:http post of the encoded body -> bare server": rawPost(floor.port, "/", "floor")
  }
  const times: Record<string, Array<number>> = Object.fromEntries(Object.keys(paths).map((k) => [k, []]))
  // CPU time of the process during each call: client and server share it, so this is the whole call's CPU, and it
  // stretches less than wall time when other processes take the cores.
  const cpu: Record<string, Array<number>> = Object.fromEntries(Object.keys(paths).map((k) => [k, []]))
  const timelines: Record<string, Array<Required<Timeline> & { end: number }>> = Object.fromEntries(
    Object.keys(paths).map((k) => [k, []])
  )
  const intervals: Record<string, Array<[number, number]>> = Object.fromEntries(Object.keys(paths).map((k) => [k, []]))
  // Warm-up, then alternate call by call so that no path gets the warmer process.
  for (const p of Object.values(paths)) for (let i = 0; i < 3; i++) yield* p
  for (let i = 0; i < CALLS; i++) {
    for (const [name, p] of Object.entries(paths)) {
      const cpu0 = process.cpuUsage()
      const timeline: Timeline = { start: performance.now() }
      current = timeline
      yield* p
      const end = performance.now()
      current = undefined
      times[name]!.push(end - timeline.start)
      const used = process.cpuUsage(cpu0)
      cpu[name]!.push((used.user + used.system) / 1000)
      intervals[name]!.push([timeline.start, end])
      if (timeline.headers !== undefined && timeline.bodyEnd !== undefined && timeline.finished !== undefined) {
        timelines[name]!.push({ ...(timeline as Required<Timeline>), end })
      }
    }
  }
  const loadAfter = load()
  // The observer reports asynchronously: let it deliver the last entries.
  yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 50)))
  gcObserver.disconnect()
  const gcPerCall = (path: string) => {
    let total = 0
    for (const [a, b] of intervals[path]!) {
      for (const g of gcs) if (g.start >= a && g.start < b) total += g.duration
    }
    return round3(total / intervals[path]!.length)
  }
  const inProcess = median(times["in process: worker.call"]!)
  const roundTrips = Object.entries(times).map(([path, t]) => {
    const tl = timelines[path]!
    const phase = (f: (t: Required<Timeline> & { end: number }) => number) =>
      tl.length === 0 ? undefined : round3(median(tl.map(f)))
    return {
      path,
      medianMs: round3(median(t)),
      cpuMedianMs: round3(median(cpu[path]!)),
      p90Ms: round3(p90(t)),
      overMs: round3(median(t) - inProcess),
      gcMsPerCall: gcPerCall(path),
      // Medians of each phase (they need not add up to the median of the whole).
      phasesMs: {
        toServerHeaders: phase((t) => t.headers - t.start),
        bodyArrival: phase((t) => t.bodyEnd - t.headers),
        serverAfterBody: phase((t) => t.finished - t.bodyEnd),
        responseToClient: phase((t) => t.end - t.finished)
      }
    }
  })

  console.log(`\nsteps (median of ${RUNS}, ms), request body ${(bodyBytes / 1024).toFixed(0)} kB:`)
  for (const s of steps) {
    console.log(
      `  ${s.side.padEnd(6)} ${s.step.padEnd(44)} ${s.medianMs.toFixed(3).padStart(8)}  (best ${s.minMs.toFixed(3)})  ${s.function}`
    )
  }
  const sum = (side: Step["side"]) =>
    round3(steps.filter((s) => s.side === side && !s.step.startsWith("  ")).reduce((a, s) => a + s.medianMs, 0))
  console.log(`  client total ${sum("client")} ms, server total ${sum("server")} ms, answer ${sum("answer")} ms`)
  console.log(
    `\nround trips (median and p90 of ${CALLS}, ms; "over" = median minus in process; cpu = the process's CPU time ` +
      `per call, median; gc = pause time per call, mean):`
  )
  for (const r of roundTrips) {
    console.log(
      `  ${r.path.padEnd(50)} ${r.medianMs.toFixed(3).padStart(8)}  p90 ${r.p90Ms.toFixed(3).padStart(8)}  over ` +
        `${r.overMs.toFixed(3).padStart(7)}  cpu ${r.cpuMedianMs.toFixed(3).padStart(7)}  (gc ${r.gcMsPerCall.toFixed(3)})`
    )
  }
  console.log(
    `\nphases of the HTTP calls (medians, ms): client start -> server sees headers | -> body ended | -> response ` +
      `finished | -> client has it`
  )
  for (const r of roundTrips) {
    const p = r.phasesMs
    if (p.toServerHeaders === undefined) continue
    console.log(
      `  ${r.path.padEnd(50)} ${String(p.toServerHeaders).padStart(7)} | ${String(p.bodyArrival).padStart(7)} | ` +
        `${String(p.serverAfterBody).padStart(7)} | ${String(p.responseToClient).padStart(7)}`
    )
  }
  console.log(`load average ${loadBefore.join(" ")} -> ${loadAfter.join(" ")}`)

  const report = {
    loadavg: { before: loadBefore, after: loadAfter },
    imageBytes: image.length,
    requestBodyBytes: bodyBytes,
    runsPerStep: RUNS,
    callsPerPath: CALLS,
    unit: "ms",
    steps,
    totals: { client: sum("client"), server: sum("server"), answer: sum("answer") },
    roundTrips
  }
  const file = Results.write("detect-overhead", report)
  console.log(`wrote ${Path.relative(process.cwd(), file)}`)
  agent.destroy()
})

NodeRuntime.runMain(Effect.scoped(program))
