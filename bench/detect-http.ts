/**
 * A real `detect` of the vision worker (its models in a thread pool, as `npm start` serves it) over HTTP against the
 * same call in process, in one run (issue 7's target: over HTTP <= 1.05x in process).
 *
 * One process holds the served worker and its caller. The two paths alternate call by call, one call at a time, on the
 * sample photo (a 356 kB JPEG):
 *
 * - in process: `worker.call(detect, { image })` (payload decode, admission, the pool's round trip, the answer);
 * - over HTTP: the typed `WorkerClient` over `NodeHttpClient` to `Worker.serveEffect` on loopback (the client's encode:
 *   schema, base64, JSON; the server's pipeline; the answer's encode and its decode by the client).
 *
 * Each answer is checked against the first in-process one. Prints the medians and the ratio (the median of the pairs'
 * ratios: the two calls of a pair run back to back) with the load average;
 * writes bench/results/detect-http.json.
 *
 *   npm run bench:detect-http -- [--calls 12] [--threads 1]
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Effect } from "effect"
import * as Os from "node:os"
import * as Path from "node:path"
import { parseArgs } from "node:util"
import { makeVisionWorker, sampleBytes } from "../examples/vision-worker/app.js"
import * as Worker from "../src/Worker.js"
import * as WorkerClient from "../src/WorkerClient.js"
import * as Results from "./results.js"

const { values: args } = parseArgs({
  options: {
    calls: { type: "string", default: "12" },
    threads: { type: "string", default: "1" }
  }
})
const CALLS = Number(args.calls)
const THREADS = Number(args.threads)
if (!Number.isInteger(CALLS) || CALLS < 3 || !Number.isInteger(THREADS) || THREADS < 1) {
  throw new Error(`--calls must be an integer >= 3 and --threads >= 1, got ${args.calls} and ${args.threads}`)
}
const TARGET = 1.05

const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? Number.NaN : (s[(s.length - 1) >> 1]! + s[s.length >> 1]!) / 2
}
const round = (x: number, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits
const load = () => Os.loadavg().map((x) => round(x, 2))

const program = Effect.gen(function* () {
  const loadBefore = load()
  const image = sampleBytes()
  console.log(
    `detect over HTTP vs in process: ${(image.length / 1024).toFixed(0)} kB image, ${CALLS} calls per path, ` +
      `${THREADS} model thread(s); load average ${loadBefore.join(" ")} (${Os.cpus().length} cpus)`
  )
  const { app, detect } = makeVisionWorker({ threads: THREADS })
  const served = yield* Worker.serveEffect(app, { port: 0, host: "127.0.0.1", handleSignals: false, benchmark: false })
  yield* served.worker.awaitReady
  const client = yield* WorkerClient.make([detect], { url: served.url }).pipe(Effect.provide(NodeHttpClient.layer))

  const expected = JSON.stringify(yield* served.worker.call(detect, { image: sampleBytes() }))
  const check = (label: string) => (value: unknown) =>
    Effect.sync(() => {
      if (JSON.stringify(value) !== expected) throw new Error(`${label}: the answer differs from the first one`)
    })
  // Each call gets its own copy of the image: it moves to the model thread.
  const paths = {
    "in process": Effect.suspend(() => served.worker.call(detect, { image: sampleBytes() })).pipe(
      Effect.tap(check("in process"))
    ),
    "over HTTP": Effect.suspend(() => client.detect({ image: sampleBytes() })).pipe(Effect.tap(check("over HTTP")))
  }
  const times: Record<keyof typeof paths, Array<number>> = { "in process": [], "over HTTP": [] }
  // Warm-up (JIT, sockets, the thread's first calls), then alternate call by call: neither path gets a warmer process.
  for (const p of Object.values(paths)) for (let i = 0; i < 2; i++) yield* p
  for (let i = 0; i < CALLS; i++) {
    const order = i % 2 === 0 ? (["in process", "over HTTP"] as const) : (["over HTTP", "in process"] as const)
    for (const name of order) {
      const t0 = performance.now()
      yield* paths[name]
      times[name].push(performance.now() - t0)
    }
  }
  const inProcess = median(times["in process"])
  const overHttp = median(times["over HTTP"])
  // The headline: the median of the pairs' ratios. The two calls of a pair run back to back, under about the same load
  // (the machine may be shared), where the two medians may come from different moments.
  const pairRatios = times["over HTTP"].map((t, i) => t / times["in process"][i]!)
  const ratio = round(median(pairRatios), 3)
  const loadAfter = load()
  console.log(
    `  in process  median ${round(inProcess)} ms   (each: ${times["in process"].map((t) => round(t)).join(", ")})`
  )
  console.log(
    `  over HTTP   median ${round(overHttp)} ms   (each: ${times["over HTTP"].map((t) => round(t)).join(", ")})`
  )
  console.log(
    `over HTTP / in process (median of the ${CALLS} pairs' ratios): ${ratio}x (medians: ` +
      `${round(overHttp / inProcess, 3)}x, +${round(overHttp - inProcess)} ms; target <= ${TARGET}x: ` +
      `${ratio <= TARGET ? "met" : "NOT met"}); load average ${loadBefore.join(" ")} -> ${loadAfter.join(" ")}`
  )
  const file = Results.write("detect-http", {
    loadavg: { before: loadBefore, after: loadAfter },
    settings: {
      calls: CALLS,
      threads: THREADS,
      imageBytes: image.length,
      client: "WorkerClient over NodeHttpClient"
    },
    medianMs: { inProcess: round(inProcess, 2), overHttp: round(overHttp, 2) },
    ratio,
    ratioOfMedians: round(overHttp / inProcess, 3),
    target: TARGET,
    met: ratio <= TARGET,
    times
  })
  console.log(`wrote ${Path.relative(process.cwd(), file)}`)
})

NodeRuntime.runMain(Effect.scoped(program))
