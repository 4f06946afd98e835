/**
 * Memory per request body: the worker's peak RSS while it handles one body of the largest size it allows (the default
 * `maxBodySize`, 32 MiB, unless given), measured by Linux from outside (`VmHWM`, the high-water mark of the resident set,
 * in /proc/<pid>/status). Each case runs in a fresh worker process (bench/fixtures/image-worker.ts), so each peak is
 * its own; the baseline is the same worker's RSS before the request, measured in the same run.
 *
 * Cases: an image's bytes at the limit (200), the same body with an unknown keyword (400 before the payload is decoded),
 * the same body cut short (400: not JSON), and a body declared one byte over the limit (413 before any of it is read).
 *
 *   npx tsx bench/body-memory.ts [maxBodySize in bytes, default 33554432]
 */
import { startWorker } from "./fixtures/spawn.js"
import * as Fs from "node:fs"
import * as Http from "node:http"
import * as Os from "node:os"
import * as Path from "node:path"
import { DEFAULT_MAX_BODY_SIZE } from "../src/WorkerConfig.js"
import * as Results from "./results.js"

const LIMIT = Number(process.argv[2] ?? DEFAULT_MAX_BODY_SIZE)
const MiB = 1024 * 1024

const memory = (pid: number) => {
  const status = Fs.readFileSync(`/proc/${pid}/status`, "utf8")
  const kib = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(status)?.[1] ?? Number.NaN)
  return { rss: kib("VmRSS") / 1024, peak: kib("VmHWM") / 1024 }
}

const post = (url: URL, body: Buffer, headers: Record<string, string> = {}) =>
  new Promise<{ status: number; text: string }>((resolve, reject) => {
    const req = Http.request(
      {
        host: url.hostname,
        port: url.port,
        path: "/remote/size",
        method: "POST",
        agent: false,
        headers: { "content-type": "application/json", "content-length": String(body.length), ...headers }
      },
      (res) => {
        const chunks: Array<Buffer> = []
        res.on("data", (c: Buffer) => chunks.push(c))
        res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }))
      }
    )
    // A 413 answers before the body is read and closes the connection: the unsent rest is not an error here.
    req.on("error", (e) => (e.message.includes("EPIPE") || e.message.includes("ECONNRESET") ? undefined : reject(e)))
    req.end(body)
  })

/** A body of exactly `size` bytes: the envelope around one base64 `bytes` value, padded with spaces. */
const imageBody = (size: number, keyword = "image") => {
  const shell = `{"payload":{"kwargs":{"${keyword}":{"type":"bytes","contents":""}}}}`
  const base64 = Math.floor((size - shell.length) / 4) * 4
  const text = shell.replace('"contents":""', `"contents":"${"A".repeat(base64)}"`)
  return Buffer.from(text.padEnd(size, " "))
}

const cases: ReadonlyArray<{ readonly name: string; readonly body: () => Buffer; readonly expect: number }> = [
  { name: "bytes at the limit (200)", body: () => imageBody(LIMIT), expect: 200 },
  { name: "unknown keyword (400)", body: () => imageBody(LIMIT, "picture"), expect: 400 },
  { name: "not JSON (400)", body: () => imageBody(LIMIT).subarray(0, LIMIT - 10), expect: 400 },
  { name: "declared over the limit (413)", body: () => imageBody(LIMIT + 1), expect: 413 }
]

const results: Array<Record<string, unknown>> = []
const loadBefore = Os.loadavg()
for (const c of cases) {
  const worker = await startWorker("image-worker.ts", { WORKER_MAX_BODY_SIZE: String(LIMIT) })
  try {
    const body = c.body()
    const before = memory(worker.child.pid!)
    const t0 = performance.now()
    const reply = await post(worker.url, body)
    const millis = performance.now() - t0
    const after = memory(worker.child.pid!)
    if (reply.status !== c.expect) throw new Error(`${c.name}: ${reply.status} ${reply.text.slice(0, 200)}`)
    const growth = after.peak - before.rss
    results.push({
      case: c.name,
      status: reply.status,
      bodyMiB: +(body.length / MiB).toFixed(1),
      rssBeforeMiB: +before.rss.toFixed(0),
      peakMiB: +after.peak.toFixed(0),
      growthMiB: +growth.toFixed(0),
      growthPerBodyByte: +(growth / (body.length / MiB)).toFixed(2),
      millis: +millis.toFixed(0)
    })
    console.log(
      `${c.name.padEnd(32)} body ${(body.length / MiB).toFixed(1)} MiB: RSS ${before.rss.toFixed(0)} MiB -> peak ` +
        `${after.peak.toFixed(0)} MiB (+${growth.toFixed(0)} MiB, ${(growth / (body.length / MiB)).toFixed(1)}x the body), ` +
        `${millis.toFixed(0)} ms`
    )
  } finally {
    worker.child.kill("SIGTERM")
    await worker.exited
  }
}
const loadAfter = Os.loadavg()
console.log(
  `maxBodySize ${LIMIT} bytes (${(LIMIT / MiB).toFixed(1)} MiB); load average ` +
    `${loadBefore.map((l) => l.toFixed(2)).join(" ")} (before), ${loadAfter.map((l) => l.toFixed(2)).join(" ")} (after)`
)
const file = Results.write("body-memory", {
  loadavgBefore: loadBefore,
  loadavgAfter: loadAfter,
  maxBodySize: LIMIT,
  unit: "MiB",
  cases: results
})
console.log(`wrote ${Path.relative(process.cwd(), file)}`)
