/**
 * `npm start`: the vision worker served over HTTP. Its threads start together; in each, the backend is chosen, then
 * CenterNet and MoveNet load in parallel; the benchmark runs (one call per thread at once), and a ready line gives the
 * URL and a curl command that detects the people in human's sample photo. It serves until SIGINT (Ctrl-C) or SIGTERM,
 * then drains, exits every thread's contexts, ends the threads and prints the final report.
 *
 *   npm start                            # port 8000 (WORKER_PORT), every interface (WORKER_HOST)
 *   WORKER_PORT=0 npm start              # a free port
 *   WORKER_THREADS=4 npm start           # threads (default: the cores on wasm and cpu, 1 on native TensorFlow)
 *   TFJS_BACKEND=cpu npm start           # demand a backend (tensorflow, wasm or cpu)
 *
 * The other `Worker.serve` settings (auth, timeouts, body size) are read from the environment as well.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Console, Effect } from "effect"
import { Worker } from "effect-deployments"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { app, samplePath, VisionThreadsLive } from "./app.js"

/** `s` as one shell word: as it is when that is safe, else single-quoted. */
const shellWord = (s: string): string => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`)

/** The URL to call from this machine: a worker listening on every interface is reached through `localhost`. */
export const localUrl = (served: Worker.Served): string =>
  ["::", "0.0.0.0"].includes(served.address.hostname) ? `http://localhost:${served.address.port}` : served.url

/**
 * A POSIX shell command that calls `detect` at `url` on the image file `image` with curl: the reference envelope, the
 * image as `{"type":"bytes","contents":"<base64>"}`.
 *
 * The body goes through a pipe, not an argument: the sample photo's base64 is 356 kB, and Linux refuses a single
 * argument over 128 kB. `base64 | tr -d '\n'` rather than `base64 -w0`, which macOS's base64 does not have.
 */
export const curlDetect = (url: string, image: string, minScore = 0.3): string =>
  `(printf '{"payload":{"kwargs":{"minScore":${minScore},"image":{"type":"bytes","contents":"'; ` +
  `base64 < ${shellWord(image)} | tr -d '\\n'; printf '"}}}}') | ` +
  `curl -s ${url}/remote/detect -H 'content-type: application/json' -d @-`

/**
 * Serve the vision worker until interrupted: print where it listens, the start-up report, then the ready line and the
 * curl command. Closing the scope (the signal) drains, exits the contexts, and prints the final report with the exits.
 */
export const main = Effect.gen(function* () {
  let served: Worker.Served | undefined
  // Added before serving, so it runs after the worker's shutdown: the final report shows every exit.
  yield* Effect.addFinalizer(() =>
    served === undefined
      ? Effect.void
      : Effect.flatMap(served.worker.report, (report) => Console.log(Worker.formatReport(report)))
  )
  served = yield* Worker.serveEffect(app)
  const { worker } = served
  const url = localUrl(served)
  yield* Console.log(
    `vision-worker: listening on ${served.url}; starting ${VisionThreadsLive.threads()} threads, each entering its ` +
      `backend, then its models in parallel; then the benchmark`
  )
  // A failed start-up ends the process (non-zero, through runMain) after printing what entered and what failed
  yield* worker.awaitReady.pipe(
    Effect.tapError(() => Effect.flatMap(worker.report, (report) => Console.error(Worker.formatReport(report))))
  )
  yield* Console.log(Worker.formatReport(yield* worker.report))
  const remotes = [...app.remotes.keys()].map((name) => `/remote/${name}`).join(", ")
  yield* Console.log(`ready: ${url} (POST ${remotes}; GET /health, /ready, /metrics; Ctrl-C stops)`)
  const image = path.relative(process.cwd(), samplePath)
  yield* Console.log(`detect the people in the sample photo:\n  ${curlDetect(url, image)}`)
  return yield* Effect.never
})

// Run as a main (`npm start`), not when imported by a test or the CLI
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  NodeRuntime.runMain(Effect.scoped(main), { teardown: Worker.teardown })
}
