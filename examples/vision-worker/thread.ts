/**
 * What each thread of the vision worker runs: its own TensorFlow.js backend and its own CenterNet, MoveNet
 * and anti-spoofing model, entered when the pool starts (all threads in parallel); then `Detect`, `Pose` and
 * `Antispoof` entirely in the thread: decoding the image, inference and post-processing. The main thread (app.ts) only moves bytes in and results out.
 */
import { Effect, Either } from "effect"
// The thread subpath, not the root: every thread imports this module's whole graph, and needs no server or client
import { ThreadedContext } from "effect-deployments/thread"
import { Tfjs, Vision } from "effect-deployments/tfjs"
import { Antispoof, AntispoofLive, Centernet, CenternetLive, Movenet, MovenetLive } from "./models.js"
import { VisionRequest } from "./protocol.js"

/** The contexts each thread enters. */
export const contexts = [Tfjs.backend, CenternetLive, MovenetLive, AntispoofLive] as const

/** One handler per request: decode, infer, post-process. */
export const handlers: ThreadedContext.Handlers<VisionRequest, Tfjs.Backend | Centernet | Movenet | Antispoof> = {
  Detect: ({ image, maxResults, minScore }) =>
    Effect.gen(function* () {
      const rgb = yield* Vision.decodeImage(image)
      return yield* Vision.detect(yield* Centernet, rgb, {
        ...(minScore === undefined ? {} : { minScore }),
        ...(maxResults === undefined ? {} : { maxResults })
      })
    }),
  Pose: ({ image }) =>
    Effect.gen(function* () {
      const rgb = yield* Vision.decodeImage(image)
      return yield* Vision.pose(yield* Movenet, rgb)
    }),
  // A bad image becomes its own caller's ImageInvalid; the good ones go through the model as one batch
  Antispoof: ({ images }) =>
    Effect.gen(function* () {
      const decoded = yield* Effect.forEach(images, (image) => Effect.either(Vision.decodeImage(image)))
      const good = decoded.flatMap((d) => (Either.isRight(d) ? [d.right] : []))
      const scores = yield* Vision.antispoof(yield* Antispoof, good)
      let next = 0
      return decoded.map((d) => (Either.isRight(d) ? Either.right(scores[next++]!) : Either.left(d.left)))
    })
}

export default ThreadedContext.runner(VisionRequest, { contexts, handlers })
