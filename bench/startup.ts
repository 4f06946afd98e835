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

/** Spawn `node args` in `cwd`; milliseconds until `until` matches the output (then SIGTERM) or, without it, the exit. */
const time = (cwd: string, args: ReadonlyArray<string>, until?: RegExp) =>
  new Promise<{ readonly millis: number; readonly output: string }>((resolve, reject) => {
    const t0 = performance.now()
    const child = spawn(process.execPath, [...args], {
      cwd,
      env: { ...process.env, WORKER_PORT: "0", WORKER_HOST: "127.0.0.1" },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let output = ""
    let millis: number | undefined
    const onData = (chunk: Buffer) => {
      output += chunk.toString("utf8")
      if (until !== undefined && millis === undefined && until.test(output)) {
        millis = performance.now() - t0
        child.kill("SIGTERM")
      }
    }
    child.stdout.on("data", onData)
    child.stderr.on("data", onData)
    child.on("exit", (code) => {
      if (until === undefined) millis = performance.now() - t0
      if (millis === undefined || (until === undefined && code !== 0)) {
        reject(new Error(`node ${args.join(" ")} exited ${code} before ${until ?? "the end"}:\n${output}`))
      } else resolve({ millis, output })
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
    const bin = "node_modules/effect-deployments/bin/effect-deployments.mjs"
    const programs = {
      floor: ["floor.mjs"],
      worker: [bin, "serve", "deployment.mjs"],
      nodeAlone: ["-e", "0"],
      importEffect: ["--input-type=module", "-e", 'await import("effect")'],
      importPackage: ["--input-type=module", "-e", 'await import("effect-deployments")'],
      binImports: [bin, "--help"]
    } as const
    const ready = /^ready: /m
    const loadBefore = load()
    const samples: Record<keyof typeof programs, Array<number>> = {
      floor: [],
      worker: [],
      nodeAlone: [],
      importEffect: [],
      importPackage: [],
      binImports: []
    }
    const workerReadyAfter: Array<number> = []
    // One untimed round first: the file system cache, not the code, would otherwise decide the first run
    await time(project, programs.floor, ready)
    await time(project, programs.worker, ready)
    for (let i = 0; i < RUNS; i++) {
      samples.floor.push((await time(project, programs.floor, ready)).millis)
      const served = await time(project, programs.worker, ready)
      samples.worker.push(served.millis)
      workerReadyAfter.push(Number(/ready after (\d+) ms/.exec(served.output)?.[1] ?? NaN))
      for (const name of ["nodeAlone", "importEffect", "importPackage", "binImports"] as const) {
        samples[name].push((await time(project, programs[name])).millis)
      }
    }
    const loadAfter = load()
    const m = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, round(median(v))])) as Record<
      keyof typeof programs,
      number
    >
    const readyAfter = round(median(workerReadyAfter))
    const result = {
      date: new Date().toISOString(),
      node: process.version,
      cpus: Os.cpus().length,
      loadavg: { before: loadBefore, after: loadAfter },
      runs: RUNS,
      deployment: `${CONTEXTS} contexts x ${ENTER_MS} ms (parallel), 1 benchmark call`,
      unit: "ms",
      tarballBytes: packed.bytes,
      coreInstallBytes: installBytes,
      spawnToReady: { worker: m.worker, floor: m.floor, overFloor: m.worker - m.floor, samples },
      breakdown: {
        nodeAlone: m.nodeAlone,
        importEffect: m.importEffect,
        importPackage: m.importPackage,
        binImports: m.binImports,
        workerReadyAfter: readyAfter
      },
      tarball: given === undefined ? `packed from ${await gitHead()}` : Path.basename(given)
    }
    const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`
    console.log(`tarball ${(packed.bytes / 1024).toFixed(1)} kB; core install (node_modules) ${mb(installBytes)}`)
    console.log(`spawn -> ready, median of ${RUNS} (load average ${loadBefore.join(" ")} -> ${loadAfter.join(" ")}):`)
    console.log(`  worker (installed bin, ${CONTEXTS} x ${ENTER_MS} ms)  ${m.worker} ms   ${samples.worker.map(round)}`)
    console.log(`  floor (node + effect + sleeps + node:http)   ${m.floor} ms   ${samples.floor.map(round)}`)
    console.log(`  worker - floor                               ${m.worker - m.floor} ms`)
    console.log(`where the time goes (spawn -> exit of a fresh node, medians):`)
    console.log(`  node alone                          ${m.nodeAlone} ms`)
    console.log(`  import effect                       ${m.importEffect} ms (+${m.importEffect - m.nodeAlone})`)
    console.log(`  import effect-deployments           ${m.importPackage} ms (+${m.importPackage - m.nodeAlone})`)
    console.log(`  the bin's imports (serve --help)    ${m.binImports} ms (+${m.binImports - m.nodeAlone})`)
    console.log(`  worker start -> ready (its report)  ${readyAfter} ms (contexts ${ENTER_MS} ms + benchmark)`)
    console.log(
      `  rest (deployment import, listen)    ${m.worker - m.binImports - readyAfter} ms (worker - bin imports - ready after)`
    )
    const out = Path.join(root, "bench", "results", "startup.json")
    Fs.writeFileSync(out, JSON.stringify(result, null, 2) + "\n")
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
