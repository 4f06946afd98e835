/**
 * Start-up of a worker as users run it: `npm pack`, installed into a fresh project outside the repository, and a
 * deployment of 8 contexts that each take 200 ms to enter (in parallel) served by the installed bin with plain node.
 * Timed from spawn to the "ready:" line (the server listens, every context entered, the benchmark ran), against a
 * floor measured in the same run: plain node importing `effect`, running eight 200 ms sleeps at once, and listening
 * with a bare node:http server. Median of N runs (default 3), the programs interleaved so that load hits both alike.
 *
 * Where the time goes, each a median of spawn -> exit of a fresh node: node itself; node importing `effect`; node
 * importing `effect-deployments`; the bin's own imports (`serve --help` exits after them). And the worker's own
 * "ready after" (contexts and benchmark) from its report.
 *
 *   npx tsx bench/startup.ts [runs, default 3]
 *   STARTUP_TARBALL=path/to/effect-deployments-x.tgz npx tsx bench/startup.ts   # a tarball packed earlier
 *
 * Writes bench/results/startup.json. The machine is shared: the load average is printed and recorded with the figures.
 */
import { spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { root } from "../test/fixtures/child.js"
import { diskUsage, makeProject, pack } from "../test/fixtures/package.js"
import * as Results from "./results.js"

const RUNS = Number(process.argv[2] ?? 3)
const CONTEXTS = 8
const ENTER_MS = 200

const deployment = `import { Context, Effect, Schema } from "effect"
import { Deployment, Remote, WorkerContext } from "effect-deployments"

const contexts = Array.from({ length: ${CONTEXTS} }, (_, i) => {
  class Tag extends Context.Tag("Context" + i)() {}
  return WorkerContext.make(Tag, { enter: Effect.as(Effect.sleep("${ENTER_MS} millis"), i) })
})
const ping = Remote.make(
  "ping",
  { payload: Schema.Struct({}), success: Schema.String, benchmark: { dataset: [{}], runs: 1, warmup: 0 } },
  () => Effect.succeed("pong")
)
export default Deployment.make("startup", { contexts, remotes: [ping] })
`

const floor = `import { Effect } from "effect"
import * as Http from "node:http"

await Effect.runPromise(
  Effect.all(Array.from({ length: ${CONTEXTS} }, () => Effect.sleep("${ENTER_MS} millis")), { concurrency: "unbounded" })
)
const server = Http.createServer((_req, res) => res.end("ok"))
server.listen(0, "127.0.0.1", () => console.log("ready: http://127.0.0.1:" + server.address().port))
process.on("SIGTERM", () => server.close())
`

/** CPU time (user + system, all threads) a live process has used so far, from /proc (Linux; undefined elsewhere). */
const cpuOf = (pid: number): number | undefined => {
  try {
    const stat = Fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    // utime and stime, fields 14 and 15 of stat(5), in clock ticks (100 a second on Linux)
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100
  } catch {
    return undefined
  }
}

/** Preloaded into the programs timed to their exit: prints the CPU time they used, as `cpu: <ms>`, when they exit. */
const cpuOnExit = `process.on("exit", () => {
  const { user, system } = process.cpuUsage()
  process.stderr.write("cpu: " + (user + system) / 1000 + "\\n")
})
`

interface Timed {
  readonly millis: number
  /** CPU time to ready (or to the exit), which the load of a shared machine inflates far less than the wall time. */
  readonly cpuMillis: number | undefined
  readonly output: string
}

/**
 * Spawn `node args` in `cwd`. With `until`: the milliseconds until it matches the output (then SIGTERM), and the CPU
 * time used by then. Without: the milliseconds to the exit, and the CPU time (args must preload cpu.mjs).
 */
const time = (cwd: string, args: ReadonlyArray<string>, until?: RegExp) =>
  new Promise<Timed>((resolve, reject) => {
    const t0 = performance.now()
    const child = spawn(process.execPath, [...args], {
      cwd,
      env: { ...process.env, WORKER_PORT: "0", WORKER_HOST: "127.0.0.1" },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let output = ""
    let millis: number | undefined
    let cpuMillis: number | undefined
    const onData = (chunk: Buffer) => {
      output += chunk.toString("utf8")
      if (until !== undefined && millis === undefined && until.test(output)) {
        millis = performance.now() - t0
        cpuMillis = cpuOf(child.pid!)
        child.kill("SIGTERM")
      }
    }
    child.stdout.on("data", onData)
    child.stderr.on("data", onData)
    child.on("exit", (code) => {
      if (until === undefined) {
        millis = performance.now() - t0
        const cpu = /^cpu: ([\d.]+)$/m.exec(output)
        cpuMillis = cpu === null ? undefined : Number(cpu[1])
      }
      if (millis === undefined || (until === undefined && code !== 0)) {
        reject(new Error(`node ${args.join(" ")} exited ${code} before ${until ?? "the end"}:\n${output}`))
      } else resolve({ millis, cpuMillis, output })
    })
  })

const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const round = (x: number) => Math.round(x)
const load = () => Os.loadavg().map((x) => Number(x.toFixed(2)))

const main = async () => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-deployments-startup-"))
  try {
    const given = process.env["STARTUP_TARBALL"]
    const packed =
      given === undefined
        ? await pack(dir)
        : { tarball: Path.resolve(given), bytes: Fs.statSync(Path.resolve(given)).size }
    const project = await makeProject(dir, packed.tarball)
    const installBytes = diskUsage(Path.join(project, "node_modules"))
    Fs.writeFileSync(Path.join(project, "deployment.mjs"), deployment)
    Fs.writeFileSync(Path.join(project, "floor.mjs"), floor)
    Fs.writeFileSync(Path.join(project, "cpu.mjs"), cpuOnExit)
    const bin = "node_modules/effect-deployments/bin/effect-deployments.mjs"
    const programs = {
      floor: ["floor.mjs"],
      worker: [bin, "serve", "deployment.mjs"],
      nodeAlone: ["--import", "./cpu.mjs", "-e", "0"],
      importEffect: ["--import", "./cpu.mjs", "--input-type=module", "-e", 'await import("effect")'],
      importPackage: ["--import", "./cpu.mjs", "--input-type=module", "-e", 'await import("effect-deployments")'],
      binImports: ["--import", "./cpu.mjs", bin, "--help"]
    } as const
    const ready = /^ready: /m
    const loadBefore = load()
    const names = Object.keys(programs) as Array<keyof typeof programs>
    const samples = Object.fromEntries(names.map((k) => [k, [] as Array<number>])) as Record<
      keyof typeof programs,
      Array<number>
    >
    const cpu = Object.fromEntries(names.map((k) => [k, [] as Array<number>])) as Record<
      keyof typeof programs,
      Array<number>
    >
    const record = (name: keyof typeof programs, timed: Timed) => {
      samples[name].push(timed.millis)
      if (timed.cpuMillis !== undefined) cpu[name].push(timed.cpuMillis)
      return timed
    }
    const workerReadyAfter: Array<number> = []
    // One untimed round first: the file system cache, not the code, would otherwise decide the first run
    await time(project, programs.floor, ready)
    await time(project, programs.worker, ready)
    for (let i = 0; i < RUNS; i++) {
      record("floor", await time(project, programs.floor, ready))
      const served = record("worker", await time(project, programs.worker, ready))
      workerReadyAfter.push(Number(/ready after (\d+) ms/.exec(served.output)?.[1] ?? NaN))
      for (const name of ["nodeAlone", "importEffect", "importPackage", "binImports"] as const) {
        record(name, await time(project, programs[name]))
      }
    }
    const loadAfter = load()
    const medians = (of: Record<keyof typeof programs, Array<number>>) =>
      Object.fromEntries(names.map((k) => [k, of[k].length === 0 ? NaN : round(median(of[k]))])) as Record<
        keyof typeof programs,
        number
      >
    const m = medians(samples)
    const c = medians(cpu)
    const readyAfter = round(median(workerReadyAfter))
    const result = {
      loadavg: { before: loadBefore, after: loadAfter },
      runs: RUNS,
      deployment: `${CONTEXTS} contexts x ${ENTER_MS} ms (parallel), 1 benchmark call`,
      unit: "ms",
      tarballBytes: packed.bytes,
      coreInstallBytes: installBytes,
      spawnToReady: { worker: m.worker, floor: m.floor, overFloor: m.worker - m.floor, samples },
      cpuToReady: { worker: c.worker, floor: c.floor, overFloor: c.worker - c.floor, samples: cpu },
      breakdown: {
        wall: {
          nodeAlone: m.nodeAlone,
          importEffect: m.importEffect,
          importPackage: m.importPackage,
          binImports: m.binImports
        },
        cpu: {
          nodeAlone: c.nodeAlone,
          importEffect: c.importEffect,
          importPackage: c.importPackage,
          binImports: c.binImports
        },
        workerReadyAfter: readyAfter
      },
      tarball: given === undefined ? `packed from ${await gitHead()}` : Path.basename(given)
    }
    const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`
    console.log(
      `tarball ${(packed.bytes / 1024).toFixed(1)} KiB; core install (node_modules, file sizes) ${mb(installBytes)}`
    )
    const row = (label: string, name: keyof typeof programs, base?: keyof typeof programs) =>
      `  ${label.padEnd(44)} ${String(m[name]).padStart(5)} ms` +
      (base === undefined ? "" : ` (+${m[name] - m[base]})`.padEnd(9)) +
      `   cpu ${String(c[name]).padStart(5)} ms` +
      (base === undefined ? "" : ` (+${c[name] - c[base]})`)
    console.log(
      `load average ${loadBefore.join(" ")} -> ${loadAfter.join(" ")} (2 cores shared: wall times are inflated)`
    )
    console.log(`spawn -> ready, median of ${RUNS}, wall and CPU:`)
    console.log(row(`worker (installed bin, ${CONTEXTS} x ${ENTER_MS} ms)`, "worker"))
    console.log(row("floor (node + effect + sleeps + node:http)", "floor"))
    console.log(`  worker - floor: ${m.worker - m.floor} ms wall, ${c.worker - c.floor} ms cpu`)
    console.log(`  runs: worker ${samples.worker.map(round).join(", ")}; floor ${samples.floor.map(round).join(", ")}`)
    console.log(`where the time goes (spawn -> exit of a fresh node, medians):`)
    console.log(row("node alone", "nodeAlone"))
    console.log(row("import effect", "importEffect", "nodeAlone"))
    console.log(row("import effect-deployments", "importPackage", "nodeAlone"))
    console.log(row("the bin's imports (serve --help)", "binImports", "nodeAlone"))
    console.log(`  worker start -> ready (its report)           ${readyAfter} ms (contexts ${ENTER_MS} ms + benchmark)`)
    const out = Results.write("startup", result)
    console.log(`written ${Path.relative(root, out)}`)
  } finally {
    Fs.rmSync(dir, { recursive: true, force: true })
  }
}

const gitHead = () =>
  new Promise<string>((resolve) => {
    const git = spawn("git", ["rev-parse", "--short", "HEAD"], { cwd: root })
    let out = ""
    git.stdout.on("data", (c: Buffer) => (out += c.toString()))
    git.on("exit", () => resolve(out.trim()))
    git.on("error", () => resolve("unknown"))
  })

await main()
