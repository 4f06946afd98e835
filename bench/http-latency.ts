/**
 * `POST /remote/square` over loopback: `Worker.serve` of the `square` deployment from the compiled package (dist/, built
 * by `npm run bench:http` first: what users run) against a plain `node:http` server doing the same JSON work
 * (bench/servers/plain.mjs), each in a child process of its own run by node itself (no TypeScript loader: under tsx
 * the worker's per-call CPU was several times higher), the load generated here. Two figures per server, and the ratio
 * worker/plain (issue 7's targets):
 *
 * - throughput at 64 keep-alive connections, with autocannon (target: worker >= 0.7x plain);
 * - latency at 1 connection, sequential, in microseconds, with a keep-alive `http.request` loop (autocannon's
 *   histogram is too coarse near 100 us) (target: p50 worker <= 1.3x plain).
 *
 * The `square` handler is `Effect.succeed(x * x)`: complete when it returns, so it is answered without a fiber. A
 * second worker serves the same remote with `Effect.sync(() => x * x)`, which needs one (as most real handlers do): its
 * ratios are printed beside the targets' ("with a fiber").
 *
 * The servers alternate over a few short rounds, so neither gets all of a quiet or a busy machine; each figure is the
 * median over the rounds, each ratio the median of the rounds' ratios (the two servers of a round run back to back).
 * Every response is checked (status 200 and the exact body); any error, mismatch or non-2xx answer is reported and
 * makes the run exit 1. Prints the load average beside the figures (the machine is shared: the ratios are what to
 * read) and writes bench/results/http-latency.json.
 *
 *   npm run bench:http -- [--rounds 5] [--duration 2] [--sequential 1500] [--connections 64] [--platform]
 *                         [--profile <dir>]
 *
 * `--platform` adds a fourth server: a bare @effect/platform HttpRouter route doing the same work. `--profile <dir>`
 * runs the worker's child with `--cpu-prof` (open the .cpuprofile in Chrome DevTools or speedscope).
 */
import autocannon from "autocannon"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Http from "node:http"
import * as Os from "node:os"
import * as Path from "node:path"
import { parseArgs } from "node:util"
import * as Results from "./results.js"

const { values: args } = parseArgs({
  options: {
    rounds: { type: "string", default: "5" },
    duration: { type: "string", default: "2" },
    sequential: { type: "string", default: "1500" },
    profile: { type: "string" },
    connections: { type: "string", default: "64" },
    platform: { type: "boolean", default: false }
  }
})
const positive = (name: string, value: string) => {
  const n = Number(value)
  if (!Number.isInteger(n) || n <= 0)
    throw new Error(`--${name} must be a positive integer, got ${JSON.stringify(value)}`)
  return n
}
const ROUNDS = positive("rounds", args.rounds)
const DURATION_SECONDS = positive("duration", args.duration)
const SEQUENTIAL = positive("sequential", args.sequential)
const CONNECTIONS = positive("connections", args.connections)
const WARMUP_SECONDS = 1
const WARMUP_SEQUENTIAL = 300
/** The whole run is killed past this, children included. */
const WATCHDOG_MILLIS = 180_000
const START_TIMEOUT_MILLIS = 30_000

const PATH = "/remote/square"
const BODY = JSON.stringify({ payload: { kwargs: { x: 5 } } })
const EXPECTED = '{"result":{"ok":25}}'
const ROOT = Path.resolve(import.meta.dirname, "..")

// ---------------------------------------------------------------------------------------------------------------------
// Children

interface Server {
  readonly name: string
  readonly port: number
  readonly child: ChildProcess.ChildProcess
}

const children = new Set<ChildProcess.ChildProcess>()

/** The environment of a server child, without the worker's own variables (a shell's WORKER_AUTH or REPORT_ADDR). */
const childEnv = (): NodeJS.ProcessEnv =>
  Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("WORKER_") && k !== "REPORT_ADDR" && k !== "UNSECURED")
  )

/** Start `bench/servers/<file>` and wait for its `listening <port>` line. */
const start = (
  name: string,
  file: string,
  nodeArgs: ReadonlyArray<string> = [],
  scriptArgs: ReadonlyArray<string> = []
): Promise<Server> =>
  new Promise((resolve, reject) => {
    const script = Path.join(ROOT, "bench", "servers", file)
    const child = ChildProcess.spawn(process.execPath, [...nodeArgs, script, ...scriptArgs], {
      cwd: ROOT,
      env: childEnv(),
      stdio: ["pipe", "pipe", "inherit"]
    })
    children.add(child)
    let out = ""
    const timer = setTimeout(
      () => fail(new Error(`${name} did not listen within ${START_TIMEOUT_MILLIS} ms`)),
      START_TIMEOUT_MILLIS
    )
    const fail = (error: Error) => {
      clearTimeout(timer)
      reject(error)
    }
    child.once("error", fail)
    child.once("exit", (code, signal) => {
      children.delete(child)
      fail(new Error(`${name} exited (${signal ?? code}) before listening; output: ${out.trim()}`))
    })
    child.stdout!.setEncoding("utf8")
    child.stdout!.on("data", (chunk: string) => {
      out += chunk
      const match = /^listening (\d+)$/m.exec(out)
      if (match !== null) {
        clearTimeout(timer)
        child.stdout!.removeAllListeners("data")
        child.stdout!.resume()
        resolve({ name, port: Number(match[1]), child })
      }
    })
  })

/** Close the child's stdin (it stops itself), then SIGTERM, then SIGKILL, a second apart. */
const stop = (child: ChildProcess.ChildProcess): Promise<void> =>
  new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      children.delete(child)
      return resolve()
    }
    const term = setTimeout(() => child.kill("SIGTERM"), 1000)
    const kill = setTimeout(() => child.kill("SIGKILL"), 2000)
    child.once("exit", () => {
      clearTimeout(term)
      clearTimeout(kill)
      children.delete(child)
      resolve()
    })
    child.stdin!.end()
  })

/** Last resort (an exception, the watchdog, Ctrl-C): no child outlives this process. */
const killAll = () => {
  for (const child of children) child.kill("SIGKILL")
}
process.on("exit", killAll)
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    killAll()
    process.exit(130)
  })
}

// ---------------------------------------------------------------------------------------------------------------------
// Load

interface Checks {
  /** Transport errors (refused, reset) and timeouts. */
  errors: number
  /** Answers other than 2xx. */
  non2xx: number
  /** 2xx answers whose body is not the expected one (autocannon counts non-2xx bodies here too). */
  mismatches: number
}

interface Throughput extends Checks {
  readonly requestsPerSec: number
  readonly requests: number
  readonly seconds: number
  /** autocannon's latency at 64 connections, in milliseconds (coarse). */
  readonly p50Millis: number
  readonly p99Millis: number
}

/** `CONNECTIONS` keep-alive connections for `seconds`, every answer compared with the expected body. */
const throughput = async (port: number, seconds: number): Promise<Throughput> => {
  const result = await autocannon({
    url: `http://127.0.0.1:${port}${PATH}`,
    method: "POST",
    headers: { "content-type": "application/json" },
    body: BODY,
    connections: CONNECTIONS,
    pipelining: 1,
    duration: seconds,
    expectBody: EXPECTED
  })
  const ok = result["2xx"]
  return {
    requestsPerSec: Math.round(ok / result.duration),
    requests: ok,
    seconds: result.duration,
    p50Millis: result.latency.p50,
    p99Millis: result.latency.p99,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
    mismatches: result.mismatches
  }
}

interface Latency extends Checks {
  readonly n: number
  readonly p50Micros: number
  readonly p90Micros: number
  readonly p99Micros: number
  readonly meanMicros: number
}

const agent = new Http.Agent({ keepAlive: true, maxSockets: 1 })

/** One call on the kept-alive socket: its round trip in microseconds, or what went wrong. */
const once = (port: number): Promise<{ micros: number; problem?: "error" | "non2xx" | "mismatch"; detail?: string }> =>
  new Promise((resolve) => {
    const t0 = performance.now()
    const req = Http.request(
      {
        host: "127.0.0.1",
        port,
        path: PATH,
        method: "POST",
        agent,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(BODY) }
      },
      (res) => {
        let text = ""
        res.setEncoding("utf8")
        res.on("data", (c: string) => (text += c))
        res.on("end", () => {
          const micros = (performance.now() - t0) * 1000
          const status = res.statusCode ?? 0
          if (status < 200 || status > 299) resolve({ micros, problem: "non2xx", detail: `${status} ${text}` })
          else if (status !== 200 || text !== EXPECTED)
            resolve({ micros, problem: "mismatch", detail: `${status} ${text}` })
          else resolve({ micros })
        })
        res.on("error", (e) => resolve({ micros: 0, problem: "error", detail: e.message }))
      }
    )
    req.on("error", (e) => resolve({ micros: 0, problem: "error", detail: e.message }))
    req.end(BODY)
  })

const quantile = (sorted: ReadonlyArray<number>, q: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN

const round1 = (x: number) => Math.round(x * 10) / 10

/** `n` calls one after the other on one kept-alive connection. */
const sequential = async (port: number, n: number): Promise<Latency> => {
  const samples: Array<number> = []
  const checks: Checks = { errors: 0, non2xx: 0, mismatches: 0 }
  for (let i = 0; i < n; i++) {
    const r = await once(port)
    if (r.problem === undefined) samples.push(r.micros)
    else {
      if (r.problem === "error") checks.errors++
      else if (r.problem === "non2xx") checks.non2xx++
      else checks.mismatches++
      if (checks.errors + checks.non2xx + checks.mismatches <= 3)
        console.error(`port ${port}: ${r.problem} ${r.detail}`)
    }
  }
  const sorted = samples.sort((a, b) => a - b)
  return {
    n: samples.length,
    p50Micros: round1(quantile(sorted, 0.5)),
    p90Micros: round1(quantile(sorted, 0.9)),
    p99Micros: round1(quantile(sorted, 0.99)),
    meanMicros: round1(samples.reduce((a, b) => a + b, 0) / Math.max(1, samples.length)),
    ...checks
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// The run

const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}
const ratio = (a: number, b: number) => Math.round((a / b) * 100) / 100
const load = () => Os.loadavg().map((x) => Math.round(x * 100) / 100)

interface Rounds {
  readonly throughput: Array<Throughput>
  readonly latency: Array<Latency>
  /** The warm-up's answers: not timed, but checked like the others. */
  readonly warmup: Array<Checks>
}

const main = async () => {
  const loadBefore = load()
  console.log(
    `http bench: ${ROUNDS} rounds x (${DURATION_SECONDS} s at ${CONNECTIONS} connections + ${SEQUENTIAL} sequential ` +
      `calls) per server; load average ${loadBefore.join(" ")} (${Os.cpus().length} cpus)`
  )
  const profile = args.profile === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${Path.resolve(args.profile)}`]
  const specs: Array<[string, string, ReadonlyArray<string>, ReadonlyArray<string>]> = [
    ["plain", "plain.mjs", [], []],
    ["worker", "worker.mjs", profile, []],
    // The same remote with a handler that has work to run (`Effect.sync`): it gets a fiber, where `square`'s
    // `Effect.succeed` is answered without one. Most real handlers are of this kind.
    ["fiber", "worker.mjs", [], ["--fiber"]]
  ]
  if (args.platform) specs.push(["platform", "platform.mjs", [], []])
  let stopping = false
  const servers = await Promise.all(
    specs.map(([name, file, nodeArgs, scriptArgs]) => start(name, file, nodeArgs, scriptArgs))
  )
  // A server that dies mid-run would only yield refused connections from then on: stop at the next step instead.
  let died: string | undefined
  for (const s of servers) {
    s.child.once("exit", (code, signal) => {
      if (!stopping) died ??= `${s.name} server exited during the run (${signal ?? code})`
    })
  }
  const alive = () => {
    if (died !== undefined) throw new Error(died)
  }
  try {
    const rounds = new Map<string, Rounds>(servers.map((s) => [s.name, { throughput: [], latency: [], warmup: [] }]))
    // Warm-up: JIT, sockets, the worker's first calls; not timed.
    for (const s of servers) {
      alive()
      rounds.get(s.name)!.warmup.push(await throughput(s.port, WARMUP_SECONDS))
      rounds.get(s.name)!.warmup.push(await sequential(s.port, WARMUP_SEQUENTIAL))
    }
    for (let r = 0; r < ROUNDS; r++) {
      // Alternate the order so that neither server always runs first in a round.
      const order = r % 2 === 0 ? servers : [...servers].reverse()
      for (const s of order) {
        alive()
        const t = await throughput(s.port, DURATION_SECONDS)
        // After 64 connections, let the sockets and the heap settle.
        rounds.get(s.name)!.warmup.push(await sequential(s.port, 100))
        const l = await sequential(s.port, SEQUENTIAL)
        rounds.get(s.name)!.throughput.push(t)
        rounds.get(s.name)!.latency.push(l)
        console.log(
          `  round ${r + 1} ${s.name.padEnd(8)} ${String(t.requestsPerSec).padStart(6)} req/s at ${CONNECTIONS}` +
            `   1 connection: p50 ${l.p50Micros} us  p99 ${l.p99Micros} us   load ${load()[0]}`
        )
      }
    }

    alive()
    const summary = Object.fromEntries(
      [...rounds].map(([name, r]) => {
        const checks = [...r.warmup, ...r.throughput, ...r.latency].reduce(
          (acc, c) => ({
            errors: acc.errors + c.errors,
            non2xx: acc.non2xx + c.non2xx,
            mismatches: acc.mismatches + c.mismatches
          }),
          { errors: 0, non2xx: 0, mismatches: 0 }
        )
        return [
          name,
          {
            throughputRequestsPerSec: Math.round(median(r.throughput.map((t) => t.requestsPerSec))),
            p50Micros: round1(median(r.latency.map((l) => l.p50Micros))),
            p99Micros: round1(median(r.latency.map((l) => l.p99Micros))),
            ...checks,
            rounds: { throughput: r.throughput, latency: r.latency }
          }
        ]
      })
    )
    const plain = summary["plain"]!
    const worker = summary["worker"]!
    const fiber = summary["fiber"]!
    const platform = summary["platform"]
    const plainRounds = rounds.get("plain")!
    const byRound = (f: (r: Rounds, i: number) => number, of = "worker") =>
      Array.from({ length: ROUNDS }, (_, i) => ratio(f(rounds.get(of)!, i), f(plainRounds, i)))
    const throughputByRound = byRound((r, i) => r.throughput[i]!.requestsPerSec)
    const p50ByRound = byRound((r, i) => r.latency[i]!.p50Micros)
    const p99ByRound = byRound((r, i) => r.latency[i]!.p99Micros)
    // The headline is the median of the rounds' ratios: within a round the two servers run back to back, so a ratio
    // compares them under about the same load, where the medians of each side may come from different moments.
    const ratios = {
      throughput: median(throughputByRound),
      p50: median(p50ByRound),
      p99: median(p99ByRound),
      throughputByRound,
      p50ByRound,
      p99ByRound,
      ofMedians: {
        throughput: ratio(worker.throughputRequestsPerSec, plain.throughputRequestsPerSec),
        p50: ratio(worker.p50Micros, plain.p50Micros),
        p99: ratio(worker.p99Micros, plain.p99Micros)
      },
      fiber: {
        throughput: median(byRound((r, i) => r.throughput[i]!.requestsPerSec, "fiber")),
        p50: median(byRound((r, i) => r.latency[i]!.p50Micros, "fiber")),
        p99: median(byRound((r, i) => r.latency[i]!.p99Micros, "fiber"))
      }
    }
    const targets = { throughputAtLeast: 0.7, p50AtMost: 1.3 }
    const met = { throughput: ratios.throughput >= targets.throughputAtLeast, p50: ratios.p50 <= targets.p50AtMost }
    const loadAfter = load()
    const failed = Object.entries(summary)
      .filter(([, s]) => s.errors + s.non2xx + s.mismatches > 0)
      .map(([name]) => name)

    const line = (name: string, s: typeof plain) =>
      `${name.padEnd(16)} ${String(s.throughputRequestsPerSec).padStart(6)} req/s at ${CONNECTIONS} connections` +
      `   1 connection: p50 ${String(s.p50Micros).padStart(6)} us  p99 ${String(s.p99Micros).padStart(7)} us` +
      `   (errors ${s.errors}, non-2xx ${s.non2xx}, wrong body ${s.mismatches})`
    console.log(`\nmedians of ${ROUNDS} rounds; load average ${loadBefore.join(" ")} -> ${loadAfter.join(" ")}`)
    console.log(line("plain node:http", plain))
    console.log(line("Worker.serve", worker))
    console.log(line("  with a fiber", fiber))
    if (platform) console.log(line("platform route", platform))
    console.log(
      `worker/plain (median of the rounds' ratios): throughput ${ratios.throughput}x (target >= ` +
        `${targets.throughputAtLeast}x: ${met.throughput ? "met" : "NOT met"}; by round ` +
        `${throughputByRound.join(", ")}), p50 ${ratios.p50}x (target <= ${targets.p50AtMost}x: ` +
        `${met.p50 ? "met" : "NOT met"}; by round ${p50ByRound.join(", ")}), p99 ${ratios.p99}x`
    )
    console.log(
      `a handler with work to run (Effect.sync, in a fiber)/plain: throughput ${ratios.fiber.throughput}x, ` +
        `p50 ${ratios.fiber.p50}x, p99 ${ratios.fiber.p99}x`
    )
    if (platform) {
      console.log(
        `platform/plain: throughput ${ratio(platform.throughputRequestsPerSec, plain.throughputRequestsPerSec)}x, ` +
          `p50 ${ratio(platform.p50Micros, plain.p50Micros)}x`
      )
    }

    const report = {
      loadavg: { before: loadBefore, after: loadAfter },
      settings: {
        rounds: ROUNDS,
        secondsPerRound: DURATION_SECONDS,
        connections: CONNECTIONS,
        sequentialPerRound: SEQUENTIAL,
        loadGenerator: `autocannon ${autocannonVersion()} (throughput), keep-alive node:http loop (latency)`,
        aggregate: "figures: median over rounds; ratios: median of the rounds' worker/plain ratios",
        handlers: "worker: Effect.succeed(x * x) (complete: no fiber); fiber handler: Effect.sync(() => x * x)"
      },
      ratio: ratios,
      targets,
      met,
      plainNodeHttp: plain,
      workerServe: worker,
      workerServeFiberHandler: fiber,
      ...(platform ? { platformHttpRouter: platform } : {})
    }
    const file = Results.write("http-latency", report)
    console.log(`wrote ${Path.relative(process.cwd(), file)}`)
    if (args.profile !== undefined) console.log(`the worker's CPU profile goes to ${args.profile} when it exits`)
    if (failed.length > 0) {
      console.error(`FAILED: wrong or missing answers from ${failed.join(", ")}`)
      process.exitCode = 1
    }
  } finally {
    stopping = true
    agent.destroy()
    await Promise.all(servers.map((s) => stop(s.child)))
  }
}

const autocannonVersion = (): string => {
  try {
    const pkg = JSON.parse(Fs.readFileSync(Path.join(ROOT, "node_modules", "autocannon", "package.json"), "utf8"))
    return String(pkg.version)
  } catch {
    return "?"
  }
}

const watchdog = setTimeout(() => {
  console.error(`http bench: still running after ${WATCHDOG_MILLIS / 1000} s, stopping`)
  killAll()
  process.exit(1)
}, WATCHDOG_MILLIS)
watchdog.unref()

main().catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : e)
  killAll()
  process.exitCode = 1
})
