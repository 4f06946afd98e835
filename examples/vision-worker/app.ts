/**
 * The flagship worker: three real vision models from the weights `@vladmandic/human` ships (they load offline),
 * entered in parallel once the TensorFlow.js backend is chosen.
 *
 * - `detect({ image, minScore?, maxResults? })`: COCO objects in a JPEG or PNG, as labelled boxes (CenterNet).
 * - `pose({ image })`: one person's 17 keypoints (MoveNet Lightning).
 * - `antispoof({ image })`: how likely a face crop shows a real face (0..1), a **batched** remote: concurrent calls
 *   are gathered (up to 4, within 5 ms) and their images run through the model as one batch; a bad image fails only
 *   its own caller. CenterNet and MoveNet take a batch of 1 only; this model's batch dimension is free.
 *
 * Bytes that are not a JPEG or PNG fail with the declared `ImageInvalid`, and the worker goes on serving. This module
 * is the deployment only: serve.ts serves it over HTTP (`npm start`), demo.ts calls it through the typed client
 * (`npm run demo`), and `npx effect-deployments serve examples/vision-worker/app.ts` serves it as it is.
 */
import { Context, Effect, Either, Schema } from "effect"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as path from "node:path"
import { Deployment, Remote, WorkerError } from "effect-deployments"
import { Tfjs, Vision } from "effect-deployments/tfjs"

/** The installed `@vladmandic/human`: its exports map hides package.json, so go up from its entry point. */
const humanRoot = path.resolve(path.dirname(createRequire(import.meta.url).resolve("@vladmandic/human")), "..")

/** CenterNet, the COCO object detector: input [1, 512, 512, 3] float32, output [1, 100, 6]. */
export const centernetPath = path.join(humanRoot, "models", "centernet.json")

/** MoveNet Lightning, single-person pose: input [1, 192, 192, 3] int32, output 17 x [y, x, score]. */
export const movenetPath = path.join(humanRoot, "models", "movenet-lightning.json")

/** The sample photo human ships (1280x1158 JPEG: eight thumbnails of people above a group photo). */
export const samplePath = path.join(humanRoot, "assets", "samples.jpg")

let sample: Uint8Array | undefined
/** The bytes of {@link samplePath}, read once, when first needed. */
export const sampleBytes = (): Uint8Array => (sample ??= new Uint8Array(fs.readFileSync(samplePath)))

/** The anti-spoofing model: input [N, 128, 128, 3] float32 (0..1), output [N, 1] (human reports it as `real`). */
export const antispoofPath = path.join(humanRoot, "models", "antispoof.json")

/** The object detector. */
export class Centernet extends Context.Tag("Centernet")<Centernet, Tfjs.GraphModel>() {}

/** The pose estimator. */
export class Movenet extends Context.Tag("Movenet")<Movenet, Tfjs.GraphModel>() {}

/** The anti-spoofing model. */
export class Antispoof extends Context.Tag("Antispoof")<Antispoof, Tfjs.GraphModel>() {}

/** Loads CenterNet and runs it once on zeros, so that the first request does not pay for the first inference. */
export const CenternetLive = Tfjs.graphModel(Centernet, { path: centernetPath, warmup: 1 })

/** Loads MoveNet Lightning and warms it up. Depends only on the backend: it loads alongside CenterNet. */
export const MovenetLive = Tfjs.graphModel(Movenet, { path: movenetPath, warmup: 1 })

/** Loads the anti-spoofing model (small: a few hundred KB) and warms it up. */
export const AntispoofLive = Tfjs.graphModel(Antispoof, { path: antispoofPath, warmup: 1 })

/** Image bytes: JPEG or PNG. */
const ImageBytes = Schema.Uint8ArrayFromSelf.annotations({ description: "JPEG or PNG bytes" })

/** `detect({ image, minScore?, maxResults? })`: labelled boxes in source pixels, best first. */
export const detect = Remote.make(
  "detect",
  {
    payload: Schema.Struct({
      image: ImageBytes,
      minScore: Schema.optional(Schema.Number.pipe(Schema.between(0, 1))),
      maxResults: Schema.optional(Schema.Int.pipe(Schema.between(1, 100)))
    }),
    success: Schema.Array(Vision.Detection),
    error: WorkerError.ImageInvalid,
    // One detect is about half a second on wasm with the decode of the sample: a few rounds keep start-up short
    benchmark: { generator: () => ({ image: sampleBytes() }), runs: 3, warmup: 1 }
  },
  ({ image, maxResults, minScore }) =>
    Effect.gen(function* () {
      const rgb = yield* Vision.decodeImage(image)
      return yield* Vision.detect(yield* Centernet, rgb, {
        ...(minScore === undefined ? {} : { minScore }),
        ...(maxResults === undefined ? {} : { maxResults })
      })
    })
)

/** `pose({ image })`: the 17 keypoints of the main person, in source pixels. */
export const pose = Remote.make(
  "pose",
  {
    payload: Schema.Struct({ image: ImageBytes }),
    success: Schema.Array(Vision.Keypoint),
    error: WorkerError.ImageInvalid
  },
  ({ image }) =>
    Effect.gen(function* () {
      const rgb = yield* Vision.decodeImage(image)
      return yield* Vision.pose(yield* Movenet, rgb)
    })
)

/**
 * `antispoof({ image })`: the anti-spoofing score of a face crop, batched. The batch handler decodes each image on
 * its own (a bad one becomes that caller's `ImageInvalid`, an `Either.left`), then runs the good ones through the
 * model at once. The size: on wasm, 2 cores, the model alone gives 40 images/s one at a time and about 105 at 4, 8
 * or 16 (bench/batching.ts), so 4 buys the throughput at the lowest latency; on a GPU a larger size pays.
 */
export const antispoof = Remote.make(
  "antispoof",
  {
    payload: Schema.Struct({ image: ImageBytes }),
    success: Schema.Number,
    error: WorkerError.ImageInvalid,
    batch: { maxSize: 4, maxWait: "5 millis" }
  },
  (payloads) =>
    Effect.gen(function* () {
      const decoded = yield* Effect.forEach(payloads, ({ image }) => Effect.either(Vision.decodeImage(image)))
      const images = decoded.flatMap((d) => (Either.isRight(d) ? [d.right] : []))
      const scores = yield* Vision.antispoof(yield* Antispoof, images)
      let next = 0
      return decoded.map((d) => (Either.isRight(d) ? Either.right(scores[next++]!) : Either.left(d.left)))
    })
)

/** The deployment: the backend, then the three models in parallel; `detect` is benchmarked. */
export const app = Deployment.make("vision-worker", {
  contexts: [Tfjs.backend, CenternetLive, MovenetLive, AntispoofLive],
  remotes: [detect, pose, antispoof]
})

export default app
