/**
 * The flagship worker: three real vision models served from a pool of threads, each with its own TensorFlow.js
 * backend and its own replica of every model, so that inference uses every core and never blocks the event loop that
 * answers HTTP.
 *
 * - `detect({ image, minScore?, maxResults? })`: COCO objects in a JPEG or PNG, as labelled boxes (CenterNet).
 * - `pose({ image })`: one person's 17 keypoints (MoveNet Lightning).
 * - `antispoof({ image })`: how likely a face crop shows a real face (0..1), a **batched** remote: concurrent calls
 *   are gathered (up to 4, within 5 ms) and their images run through the model in one thread as one batch; a bad
 *   image fails only its own caller.
 *
 * `WORKER_THREADS` sets the number of threads (default: the number of cores on wasm and cpu, 1 on native
 * TensorFlow); each remote admits one call per thread. Bytes that are not a JPEG or PNG fail with the declared
 * `ImageInvalid`, a thread that dies with `ThreadFailed` (it is replaced), and the worker goes on serving.
 *
 * This module is the deployment only: thread.ts is what each thread runs, protocol.ts what they are asked, serve.ts
 * serves it over HTTP (`npm start`), demo.ts calls it through the typed client (`npm run demo`), and
 * `npx effect-deployments serve examples/vision-worker/app.ts` serves it as it is.
 */
import { Context, Effect, Schema } from "effect"
import { Deployment, Remote, ThreadedContext, WorkerError } from "effect-deployments"
import { Tfjs, Vision } from "effect-deployments/tfjs"
import { sampleBytes } from "./models.js"
import { Antispoof, Detect, Pose, type VisionRequest } from "./protocol.js"

export { antispoofPath, centernetPath, movenetPath, sampleBytes, samplePath } from "./models.js"

/** The pool of vision threads, as the main thread sees it. */
export class VisionThreads extends Context.Tag("VisionThreads")<VisionThreads, ThreadedContext.Pool<VisionRequest>>() {}

/** Image bytes: JPEG or PNG. */
const ImageBytes = Schema.Uint8ArrayFromSelf.annotations({ description: "JPEG or PNG bytes" })

/** What a vision remote can fail with: bytes that are not an image, or a thread that died with the call. */
const VisionError = Schema.Union(WorkerError.ImageInvalid, WorkerError.ThreadFailed)

/** Options of {@link makeVisionWorker}; the defaults make the deployment `npm start` serves. */
export interface VisionWorkerOptions {
  /** Default `Tfjs.defaultThreads` (`WORKER_THREADS`, else the cores on wasm and cpu, 1 on native TensorFlow). */
  readonly threads?: number | (() => number)
  /** The thread module. Default thread.ts. */
  readonly module?: URL
  /** Given to each thread (see `ThreadedContext.thread`). */
  readonly data?: unknown
}

/** The vision worker's pool, remotes and deployment (the benchmark builds several, with different thread counts). */
export const makeVisionWorker = (options: VisionWorkerOptions = {}) => {
  const VisionThreadsLive = ThreadedContext.make(VisionThreads, {
    module: options.module ?? new URL("./thread.js", import.meta.url),
    threads: options.threads ?? Tfjs.defaultThreads,
    data: options.data
  })

  /** `detect({ image, minScore?, maxResults? })`: labelled boxes in source pixels, best first. */
  const detect = Remote.make(
    "detect",
    {
      payload: Schema.Struct({
        image: ImageBytes,
        minScore: Schema.optional(Schema.Number.pipe(Schema.between(0, 1))),
        maxResults: Schema.optional(Schema.Int.pipe(Schema.between(1, 100)))
      }),
      success: Schema.Array(Vision.Detection),
      error: VisionError,
      concurrency: VisionThreadsLive,
      // One detect is about 250 ms on wasm with the decode of the sample: a few rounds (of one call per thread) keep
      // start-up short. Each call gets its own copy of the sample: the image moves to the thread.
      benchmark: { generator: () => ({ image: sampleBytes() }), runs: 3, warmup: 1 }
    },
    ({ image, maxResults, minScore }) =>
      Effect.flatMap(VisionThreads, (threads) =>
        threads.execute(
          new Detect({
            image,
            ...(minScore === undefined ? {} : { minScore }),
            ...(maxResults === undefined ? {} : { maxResults })
          })
        )
      )
  )

  /** `pose({ image })`: the 17 keypoints of the main person, in source pixels. */
  const pose = Remote.make(
    "pose",
    {
      payload: Schema.Struct({ image: ImageBytes }),
      success: Schema.Array(Vision.Keypoint),
      error: VisionError,
      concurrency: VisionThreadsLive
    },
    ({ image }) => Effect.flatMap(VisionThreads, (threads) => threads.execute(new Pose({ image })))
  )

  /**
   * `antispoof({ image })`: the anti-spoofing score of a face crop, batched: concurrent calls are gathered (up to 4,
   * within 5 ms) and sent to a thread as one request, which decodes each image (a bad one becomes that caller's
   * `ImageInvalid`) and runs the good ones through the model at once. `concurrency` counts batches: one per thread.
   * On wasm, 2 cores, the model alone gives 40 images/s one at a time and about 105 at 4, 8 or 16 (bench/batching.ts).
   */
  const antispoof = Remote.make(
    "antispoof",
    {
      payload: Schema.Struct({ image: ImageBytes }),
      success: Schema.Number,
      error: VisionError,
      concurrency: VisionThreadsLive,
      batch: { maxSize: 4, maxWait: "5 millis" }
    },
    (payloads) =>
      Effect.flatMap(VisionThreads, (threads) =>
        threads.execute(new Antispoof({ images: payloads.map((p) => p.image) }))
      )
  )

  /** The deployment: the pool of vision threads; `detect` is benchmarked. */
  const app = Deployment.make("vision-worker", {
    contexts: [VisionThreadsLive],
    remotes: [detect, pose, antispoof]
  })
  return { VisionThreadsLive, detect, pose, antispoof, app }
}

/** The deployment `npm start` serves, its pool (`WORKER_THREADS` threads, each running thread.ts) and remotes. */
export const { VisionThreadsLive, antispoof, app, detect, pose } = makeVisionWorker()

export default app
