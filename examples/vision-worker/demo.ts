/**
 * `npm run demo`: the vision worker end to end in one process. Serve it on a free loopback port (its threads enter
 * their models, the benchmark runs), call `detect` on human's sample photo through the typed client over HTTP, then
 * `pose` on each of the people it found (cropped; the calls run side by side in the threads), print the detections as
 * a table, draw the boxes (label and score) and the skeletons on the photo (scaled to 800 pixels wide) and write it as
 * a PNG, shut the worker
 * down, and print its lifecycle timeline: when each thread's contexts entered and exited, the benchmark, the ready time.
 *
 *   npm run demo                         # writes examples/vision-worker/demo.png
 *   npm run demo -- /tmp/out.png         # somewhere else
 *   TFJS_BACKEND=cpu npm run demo        # demand a backend
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Console, Effect } from "effect"
import { Worker, WorkerClient } from "effect-deployments"
import { Vision } from "effect-deployments/tfjs"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { app, sampleBytes, samplePath } from "./app.js"
import { crop, drawDetections, drawPose, encodePng, scaleDetections, scaleKeypoints, shrink } from "./draw.js"

/** Where `npm run demo` writes the picture. */
export const defaultOutput = fileURLToPath(new URL("./demo.png", import.meta.url))

/** The picture's width: the photo is scaled down to it (never up). */
export const defaultWidth = 800

/** What {@link demo} saw: where the worker listened, the detections and poses, the round trip, the report after shutdown. */
export interface DemoResult {
  readonly url: string
  readonly detections: ReadonlyArray<Vision.Detection>
  /** One pose per person drawn (up to {@link maxPoses}), keypoints in the photo's pixels. */
  readonly poses: ReadonlyArray<ReadonlyArray<Vision.Keypoint>>
  readonly millis: number
  /** The PNG written: the photo with the boxes and skeletons. */
  readonly png: string
  readonly report: Worker.Report
}

/** The people whose pose is drawn: the best scoring ones. */
export const maxPoses = 6

/**
 * Serve the vision worker on a free loopback port, call `detect` on `image` (default: the sample photo) through
 * `WorkerClient`, `pose` on a crop of each person found, draw them on the image into `output`, and shut the worker
 * down. The report it returns was taken after shutdown, so it shows the exits.
 */
export const demo = (
  options: {
    readonly image?: Uint8Array
    readonly minScore?: number
    readonly maxResults?: number
    readonly output?: string
    readonly width?: number
  } = {}
) =>
  Effect.gen(function* () {
    // Port and host given: WORKER_PORT or WORKER_HOST in the environment cannot move the demo's server
    const served = yield* Worker.serveEffect(app, { port: 0, host: "127.0.0.1", handleSignals: false })
    yield* served.worker.awaitReady
    const client = yield* WorkerClient.make(app, { url: served.url })
    const image = options.image ?? sampleBytes()
    const start = performance.now()
    const detections = yield* client.detect({
      image,
      minScore: options.minScore ?? 0.3,
      maxResults: options.maxResults ?? 20
    })
    const millis = performance.now() - start
    // The caller's bytes are untouched: only the worker's own copy, decoded from the request, moved to a thread
    const rgb = yield* Vision.decodeImage(image)
    const people = detections.filter((d) => d.label === "person").slice(0, maxPoses)
    const poses = yield* Effect.forEach(
      people,
      (person) => {
        const part = crop(rgb, person.box)
        return client
          .pose({ image: encodePng(part) })
          .pipe(Effect.map((keypoints) => keypoints.map((k) => ({ ...k, x: k.x + part.x, y: k.y + part.y }))))
      },
      { concurrency: "unbounded" }
    )
    // Scaled down before drawing, so that lines and labels stay crisp (and the file small)
    const { canvas, scale } = shrink(rgb, options.width ?? defaultWidth)
    drawDetections(canvas, scaleDetections(detections, scale))
    for (const keypoints of poses) drawPose(canvas, scaleKeypoints(keypoints, scale))
    const png = options.output ?? defaultOutput
    fs.writeFileSync(png, encodePng(canvas))
    yield* served.worker.shutdown
    const result: DemoResult = { url: served.url, detections, poses, millis, png, report: yield* served.worker.report }
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

/** Run {@link demo} and print the table, where the picture is, and the timeline. */
export const main = Effect.gen(function* () {
  yield* Console.log(
    "starting the vision worker (threads entering their backend, then their models in parallel; benchmark)..."
  )
  const output = process.argv[2]
  const { detections, millis, png, poses, report, url } = yield* demo(output === undefined ? {} : { output })
  const image = path.relative(process.cwd(), samplePath)
  yield* Console.log(
    `\nPOST ${url}/remote/detect (${image}): ${detections.length} objects in ${millis.toFixed(0)} ms\n`
  )
  yield* Console.log(formatDetections(detections))
  yield* Console.log(
    `\nboxes and ${poses.length} pose skeletons (POST /remote/pose on each person) drawn on the photo: ` +
      path.relative(process.cwd(), png)
  )
  yield* Console.log(`\nlifecycle:\n${Worker.formatReport(report)}`)
})

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  NodeRuntime.runMain(main)
}
