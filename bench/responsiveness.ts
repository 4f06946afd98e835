/**
 * Responsiveness under load: how long `GET /health` takes while twenty 200 ms synchronous calls are queued on a
 * concurrency-1 remote. The worker runs in a child process of its own (bench/fixtures/blocking-worker.ts), so the
 * client measuring it is never blocked by the calls it measures.
 *
 * Target (issue 8): /health p99 <= one call's duration + 50 ms. A synchronous call holds the event loop for its whole
 * duration, so a probe that lands during a call waits for the rest of it; between calls the worker answers (starts are
 * time-sliced, src/internal/admission.ts). Without that, a probe would wait for the whole queue (20 x 200 ms = 4 s).
 *
 * The baseline, measured in the same run: /health on the same worker, idle. Prints the load average beside the
 * figures (a shared machine makes them noisy); writes bench/results/responsiveness.json.
 *
 *   npx tsx bench/responsiveness.ts [rounds, default 3] [calls per round, default 20] [call ms, default 200]
 */
import { startWorker } from "./fixtures/spawn.js"
import * as Http from "node:http"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Results from "./results.js"

const ROUNDS = Number(process.argv[2] ?? 3)
const CALLS = Number(process.argv[3] ?? 20)
const CALL_MS = Number(process.argv[4] ?? 200)
const IDLE_SAMPLES = 200

// /health on one keep-alive connection of its own; each call on a connection of its own (as separate clients).
const healthAgent = new Http.Agent({ keepAlive: true, maxSockets: 1 })
const callAgent = new Http.Agent({ keepAlive: true, maxSockets: CALLS })

const request = (
  url: URL,
  path: string,
  agent: Http.Agent,
  body?: string
): Promise<{ status: number; text: string; millis: number }> =>
  new Promise((resolve, reject) => {
    const t0 = performance.now()
    const req = Http.request(
      {
        host: url.hostname,
        port: url.port,
        path,
        method: body === undefined ? "GET" : "POST",
        agent,
        headers: body === undefined ? {} : { "content-type": "application/json" }
      },
      (res) => {
        const chunks: Array<Buffer> = []
        res.on("data", (c: Buffer) => chunks.push(c))
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            text: Buffer.concat(chunks).toString("utf8"),
            millis: performance.now() - t0
          })
        )
      }
    )
    req.on("error", reject)
    req.end(body)
  })

const quantile = (sorted: ReadonlyArray<number>, q: number) =>
  sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!

const summarize = (samples: ReadonlyArray<number>) => {
  const sorted = [...samples].sort((a, b) => a - b)
  return {
    n: samples.length,
    p50: +quantile(sorted, 0.5).toFixed(1),
    p99: +quantile(sorted, 0.99).toFixed(1),
    max: +sorted[sorted.length - 1]!.toFixed(1)
  }
}

/** One round: `CALLS` calls at once, /health back to back until the last call has answered. */
const round = async (url: URL) => {
  let remaining = CALLS
  const calls = Array.from({ length: CALLS }, () =>
    request(url, "/remote/block", callAgent, JSON.stringify({ payload: { kwargs: { ms: CALL_MS } } })).then((r) => {
      remaining--
      if (r.status !== 200) throw new Error(`call: ${r.status} ${r.text}`)
      return (JSON.parse(r.text) as { result: { ok: number } }).result.ok
    })
  )
  const health: Array<number> = []
  const queuedAtAnswer: Array<number> = []
  const callsDuring: Array<number> = []
  while (remaining > 0) {
    const before = remaining
    const r = await request(url, "/health", healthAgent)
    if (r.status !== 200) throw new Error(`/health: ${r.status} ${r.text}`)
    // Only probes answered while calls were still waiting count: they are what the target is about.
    if (remaining > 0) {
      health.push(r.millis)
      queuedAtAnswer.push(remaining)
      // Calls answered while this probe waited: 2 or more means the worker ran calls back to back past it (a busy
      // machine delays a probe too, but behind one call at most).
      callsDuring.push(before - remaining)
    }
  }
  const durations = await Promise.all(calls)
  return { health, queuedAtAnswer, callsDuring, durations }
}

const main = async () => {
  const loadBefore = Os.loadavg()
  const worker = await startWorker("blocking-worker.ts")
  try {
    // Warm-up: connections open, code paths compiled.
    for (let i = 0; i < 20; i++) await request(worker.url, "/health", healthAgent)
    await Promise.all(
      Array.from({ length: CALLS }, () =>
        request(worker.url, "/remote/block", callAgent, JSON.stringify({ payload: { kwargs: { ms: 1 } } }))
      )
    )
    const idle: Array<number> = []
    for (let i = 0; i < IDLE_SAMPLES; i++) idle.push((await request(worker.url, "/health", healthAgent)).millis)

    const health: Array<number> = []
    const durations: Array<number> = []
    const callsDuring: Array<number> = []
    for (let r = 0; r < ROUNDS; r++) {
      const result = await round(worker.url)
      health.push(...result.health)
      durations.push(...result.durations)
      callsDuring.push(...result.callsDuring)
    }
    const loadAfter = Os.loadavg()

    const callMillis = durations.reduce((a, b) => a + b, 0) / durations.length
    const underLoad = summarize(health)
    const target = callMillis + 50
    const report = {
      loadavgBefore: loadBefore,
      loadavgAfter: loadAfter,
      rounds: ROUNDS,
      callsPerRound: CALLS,
      concurrency: 1,
      unit: "ms",
      callMillis: +callMillis.toFixed(1),
      healthIdle: summarize(idle),
      healthUnderLoad: underLoad,
      queueWithoutYielding: +(CALLS * callMillis).toFixed(0),
      probesBehindTwoOrMoreCalls: callsDuring.filter((n) => n >= 2).length,
      target: +target.toFixed(1),
      p99OverCall: +(underLoad.p99 / callMillis).toFixed(2),
      met: underLoad.p99 <= target
    }
    const fmt = (s: { n: number; p50: number; p99: number; max: number }) =>
      `p50 ${s.p50} ms  p99 ${s.p99} ms  max ${s.max} ms  (n ${s.n})`
    console.log(
      `load average ${loadBefore.map((l) => l.toFixed(2)).join(" ")} (before), ` +
        `${loadAfter.map((l) => l.toFixed(2)).join(" ")} (after); ${Os.cpus().length} cpus`
    )
    console.log(
      `one call (synchronous, concurrency 1): ${report.callMillis} ms; ${CALLS} queued per round, ${ROUNDS} rounds`
    )
    console.log(`/health idle        ${fmt(report.healthIdle)}`)
    console.log(`/health under load  ${fmt(underLoad)}  (p99 = ${report.p99OverCall} x one call)`)
    console.log(
      `probes that waited behind two or more calls: ${report.probesBehindTwoOrMoreCalls} of ${underLoad.n} ` +
        `(a probe waits for the call running when it arrives, never for the next)`
    )
    console.log(
      `target p99 <= one call + 50 ms = ${report.target} ms: ${report.met ? "met" : "NOT met"} ` +
        `(a worker that did not yield would answer after the queue, ~${report.queueWithoutYielding} ms)`
    )
    const file = Results.write("responsiveness", report)
    console.log(`wrote ${Path.relative(process.cwd(), file)}`)
  } finally {
    healthAgent.destroy()
    callAgent.destroy()
    worker.child.kill("SIGTERM")
    await worker.exited
  }
}

await main()
