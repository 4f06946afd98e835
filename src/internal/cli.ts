/**
 * `effect-deployments serve <module>`: load a module that exports a deployment and serve it.
 *
 * Run compiled, through bin/effect-deployments.mjs (no TypeScript compiler at start-up: a `.js`/`.mjs` module is
 * served by plain node), or from source in this repository (`node --import tsx src/internal/cli.ts serve ...`). A
 * TypeScript module is loaded through tsx, an optional peer dependency, registered only then.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Console, Effect, Exit } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { pathToFileURL } from "node:url"
import { App } from "../App.js"
import * as Deployment from "../Deployment.js"
import * as Worker from "../Worker.js"

const usage = `Usage: effect-deployments serve <module> [--port <n>] [--host <address>] [--no-benchmark]

Loads <module> (JavaScript; TypeScript when tsx is installed), takes the deployment it exports (the default
export, or the one named export that is a deployment) and serves it over HTTP until SIGTERM or SIGINT.

Environment: WORKER_PORT (default 8000), WORKER_HOST, WORKER_MAX_BODY_SIZE, WORKER_CALL_TIMEOUT, WORKER_DRAIN_TIMEOUT,
WORKER_MAX_QUEUE_TIME, WORKER_HEADERS_TIMEOUT, WORKER_BODY_TIMEOUT, WORKER_KEEP_ALIVE_TIMEOUT, WORKER_MAX_CONNECTIONS,
WORKER_ON_STARTUP_FAILURE (exit | stay), WORKER_AUTH (none | token | signed), WORKER_TOKEN, WORKER_PUBLIC_KEY,
REPORT_ADDR, UNSECURED.

Exit codes: 0 after SIGTERM or SIGINT; 1 when start-up failed, a context failed to exit, or an uncaught exception or
unhandled rejection stopped the worker; 2 for a bad command line or configuration.`

interface Args {
  readonly module: string
  readonly port: number | undefined
  readonly host: string | undefined
  readonly benchmark: boolean | undefined
}

const fail = (message: string): never => {
  process.stderr.write(`${message}\n\n${usage}\n`)
  process.exit(2)
}

/** A problem with the module to serve or its surroundings (not with the command line): exit 1 without the usage. */
const die = (message: string): never => {
  process.stderr.write(`effect-deployments: ${message}\n`)
  process.exit(1)
}

const parseArgs = (argv: ReadonlyArray<string>): Args => {
  const [command, ...rest] = argv
  if (command === "--help" || command === "-h" || command === undefined) {
    process.stdout.write(`${usage}\n`)
    process.exit(command === undefined ? 2 : 0)
  }
  if (command !== "serve") return fail(`Unknown command "${command}"`)
  let module: string | undefined
  let port: number | undefined
  let host: string | undefined
  let benchmark: boolean | undefined
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]!
    if (arg === "--port") {
      const n = Number(rest[++i])
      if (!Number.isInteger(n) || n < 0 || n > 65535) fail(`--port needs a port number, got "${rest[i]}"`)
      port = n
    } else if (arg === "--host") {
      host = rest[++i] ?? fail("--host needs an address")
    } else if (arg === "--no-benchmark") {
      benchmark = false
    } else if (arg.startsWith("-")) {
      fail(`Unknown option "${arg}"`)
    } else if (module === undefined) {
      module = arg
    } else {
      fail(`Unexpected argument "${arg}"`)
    }
  }
  return { module: module ?? fail("serve needs a module"), port, host, benchmark }
}

/** A deployment, or the deployment of a Promise-facade `App`. */
const asDeployment = (value: unknown): Deployment.Deployment | undefined =>
  Deployment.isDeployment(value) ? value : value instanceof App ? value.deployment : undefined

/** The deployment a module exports: its default export, else its only named export that is a deployment or an App. */
const findDeployment = (mod: Record<string, unknown>, file: string): Deployment.Deployment => {
  const byDefault = asDeployment(mod["default"])
  if (byDefault !== undefined) return byDefault
  const named = Object.entries(mod).filter(([, value]) => asDeployment(value) !== undefined)
  if (named.length === 1) return asDeployment(named[0]![1])!
  if (named.length === 0) {
    return fail(`${file} exports no deployment (export one made by Deployment.make, or an App)`)
  }
  return fail(
    `${file} exports several deployments (${named.map(([name]) => name).join(", ")}); make one the default export`
  )
}

const isTypeScript = (file: string): boolean => /\.[cm]?tsx?$/.test(file)

/**
 * Make `import()` load TypeScript: register tsx (an optional peer dependency), unless this CLI already runs under it
 * (from source) or node strips types itself (newer versions). Without tsx, say what to do instead.
 */
const loadTypeScript = async (module: string): Promise<void> => {
  if (import.meta.url.endsWith(".ts")) return
  let api: typeof import("tsx/esm/api")
  try {
    api = await import("tsx/esm/api")
  } catch (u) {
    if ((u as { code?: unknown } | null)?.code !== "ERR_MODULE_NOT_FOUND") throw u
    if ((process.features as { typescript?: unknown }).typescript) return
    return die(
      `${module} is TypeScript, and serving TypeScript needs tsx, which is not installed.\n` +
        `Install it (npm install --save-dev tsx), or compile ${module} and serve the JavaScript.`
    )
  }
  api.register()
}

const args = parseArgs(process.argv.slice(2))
const file = Path.resolve(args.module)
if (!Fs.existsSync(file)) die(`${args.module}: no such file`)
if (isTypeScript(file)) await loadTypeScript(args.module)
const mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>
const deployment = findDeployment(mod, args.module)

const program = Effect.gen(function* () {
  let served: Worker.Served | undefined
  // Added before serving, so it runs after the worker's shutdown: the final report shows every exit.
  yield* Effect.addFinalizer(() =>
    served === undefined
      ? Effect.void
      : Effect.flatMap(served.worker.report, (report) => Console.log(`${Worker.formatReport(report)}\nstopped`))
  )
  served = yield* Worker.serveEffect(deployment, {
    ...(args.port === undefined ? {} : { port: args.port }),
    ...(args.host === undefined ? {} : { host: args.host }),
    ...(args.benchmark === undefined ? {} : { benchmark: args.benchmark })
  })
  const { url, worker } = served
  yield* Console.log(`effect-deployments: serving deployment "${deployment.name}" on ${url}`)
  const startup = yield* Effect.exit(worker.awaitReady)
  const report = yield* worker.report
  yield* Console.log(Worker.formatReport(report))
  if (Exit.isSuccess(startup)) {
    yield* Console.log(`ready: ${url} (POST ${url}/remote/<name>; GET /health, /ready, /metrics)`)
  } else if (served.config.onStartupFailure === "stay") {
    yield* Console.error(`start-up failed: ${report.error ?? "unknown"} (still answering /health and /ready)`)
  } else {
    yield* Console.error(`start-up failed: ${report.error ?? "unknown"} (exiting with code 1)`)
  }
  return yield* Effect.never
})

// A bad option or variable fails the program with a ConfigError naming it, its value and what is allowed; runMain
// prints it and Worker.teardown makes the exit code 2.
NodeRuntime.runMain(Effect.scoped(program), { teardown: Worker.teardown })
