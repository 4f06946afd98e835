/**
 * Runs the vision worker in process: start it (backend, then both models in parallel, then the benchmark), detect the
 * objects in human's sample photo, print them as a table and the start-up report, and shut down.
 *
 *   npx tsx examples/vision-worker/main.ts
 *   TFJS_BACKEND=cpu npx tsx examples/vision-worker/main.ts     # demand a backend
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect } from "effect"
import { pathToFileURL } from "node:url"
import { Worker } from "../../src/index.js"
import { app, detect, sampleBytes, samplePath } from "./app.js"

const fixed = (n: number): string => n.toFixed(0).padStart(5)

/** Start the worker, detect the objects in the sample photo, print them and the report, shut down. */
export const main = Effect.scoped(Effect.gen(function*() {
  const worker = yield* Worker.make(app)
  const detections = yield* worker.call(detect, { image: sampleBytes(), minScore: 0.3, maxResults: 20 })
  yield* Console.log(`detect(${samplePath}): ${detections.length} objects\n`)
  yield* Console.log(`  ${"label".padEnd(14)} score      x     y  width height`)
  for (const d of detections) {
    yield* Console.log(
      `  ${d.label.padEnd(14)} ${d.score.toFixed(3)} ${fixed(d.box.x)} ${fixed(d.box.y)} ${fixed(d.box.width)} ${
        fixed(d.box.height)
      }`
    )
  }
  yield* worker.shutdown
  yield* Console.log(`\n${Worker.formatReport(yield* worker.report)}`)
}))

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  NodeRuntime.runMain(main)
}
