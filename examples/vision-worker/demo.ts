/**
 * `npm run demo`: the vision worker end to end in one process. Serve it on a free loopback port (contexts, benchmark),
 * call `detect` on human's sample photo through the typed client over HTTP, print the detections as a table, shut the
 * worker down, and print its lifecycle timeline: when each context entered and exited, the benchmark, the ready time.
 *
 *   npm run demo
 *   TFJS_BACKEND=cpu npm run demo        # demand a backend
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Console, Effect } from "effect"
import { Worker, WorkerClient } from "effect-deployments"
import type { Vision } from "effect-deployments/tfjs"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { app, sampleBytes, samplePath } from "./app.js"

/** What {@link demo} saw: where the worker listened, the detections, the round trip, the report after shutdown. */
export interface DemoResult {
  readonly url: string
  readonly detections: ReadonlyArray<Vision.Detection>
  readonly millis: number
  readonly report: Worker.Report
}

/**
 * Serve the vision worker on a free loopback port, call `detect` on `image` (default: the sample photo) through
 * `WorkerClient`, and shut the worker down. The report it returns was taken after shutdown, so it shows the exits.
 */
export const demo = (
  options: { readonly image?: Uint8Array; readonly minScore?: number; readonly maxResults?: number } = {}
) =>
  Effect.gen(function* () {
    // Port and host given: WORKER_PORT or WORKER_HOST in the environment cannot move the demo's server
    const served = yield* Worker.serveEffect(app, { port: 0, host: "127.0.0.1", handleSignals: false })
    yield* served.worker.awaitReady
    const client = yield* WorkerClient.make(app, { url: served.url })
    const start = performance.now()
    const detections = yield* client.detect({
      image: options.image ?? sampleBytes(),
      minScore: options.minScore ?? 0.3,
      maxResults: options.maxResults ?? 20
    })
    const millis = performance.now() - start
    yield* served.worker.shutdown
    const result: DemoResult = { url: served.url, detections, millis, report: yield* served.worker.report }
    return result
  }).pipe(Effect.scoped, Effect.provide(FetchHttpClient.layer))

const cell = (n: number): string => n.toFixed(0).padStart(6)

/** Detections as a plain-text table: label, score, then the box in source pixels. */
export const formatDetections = (detections: ReadonlyArray<Vision.Detection>): string =>
  [
    `  ${"label".padEnd(14)} score       x      y  width height`,
    ...detections.map(
      (d) =>
        `  ${d.label.padEnd(14)} ${d.score.toFixed(3)} ${cell(d.box.x)} ${cell(d.box.y)} ${cell(d.box.width)} ${cell(
          d.box.height
        )}`
    )
  ].join("\n")

/** Run {@link demo} and print the table and the timeline. */
export const main = Effect.gen(function* () {
  yield* Console.log("starting the vision worker (backend, centernet and movenet in parallel, benchmark)...")
  const { detections, millis, report, url } = yield* demo()
  const image = path.relative(process.cwd(), samplePath)
  yield* Console.log(
    `\nPOST ${url}/remote/detect (${image}): ${detections.length} objects in ${millis.toFixed(0)} ms\n`
  )
  yield* Console.log(formatDetections(detections))
  yield* Console.log(`\nlifecycle:\n${Worker.formatReport(report)}`)
})

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  NodeRuntime.runMain(main)
}
