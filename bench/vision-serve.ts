/**
 * A vision worker for `bench/vision.ts` to call over HTTP from another process: `threads` serves the example as
 * `npm start` does (its models in `WORKER_THREADS` threads); `main-thread` serves the same models and `detect` in the
 * worker's own thread, as the example did before it had threads (the baseline of the responsiveness target).
 *
 *   node --import tsx bench/vision-serve.ts threads|main-thread
 *
 * Prints `listening <url>` once ready (benchmark skipped), and serves until SIGTERM.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Console, Effect, Schema } from "effect"
import { Deployment, Remote, Worker, WorkerError } from "../src/index.js"
import { Tfjs, Vision } from "../src/tfjs/index.js"
import { app } from "../examples/vision-worker/app.js"
import { Centernet, CenternetLive, MovenetLive, sampleBytes } from "../examples/vision-worker/models.js"

/** `detect` run by the worker's own thread: decode, inference and post-processing block its event loop. */
const detectInProcess = Remote.make(
  "detect",
  {
    payload: Schema.Struct({ image: Schema.Uint8ArrayFromSelf, minScore: Schema.optional(Schema.Number) }),
    success: Schema.Array(Vision.Detection),
    error: WorkerError.ImageInvalid,
    benchmark: { generator: () => ({ image: sampleBytes() }), runs: 1 }
  },
  ({ image, minScore }) =>
    Effect.gen(function* () {
      const rgb = yield* Vision.decodeImage(image)
      return yield* Vision.detect(yield* Centernet, rgb, minScore === undefined ? {} : { minScore })
    })
)

const mainThread = Deployment.make("vision-main-thread", {
  contexts: [Tfjs.backend, CenternetLive, MovenetLive],
  remotes: [detectInProcess]
})

const layout = process.argv[2]
const deployment: Deployment.Deployment | undefined =
  layout === "main-thread" ? mainThread : layout === "threads" ? app : undefined
if (deployment === undefined) {
  console.error(`usage: vision-serve.ts threads|main-thread (got ${layout})`)
  process.exit(2)
}

NodeRuntime.runMain(
  Effect.scoped(
    Effect.gen(function* () {
      const served = yield* Worker.serveEffect(deployment, {
        port: 0,
        host: "127.0.0.1",
        handleSignals: false,
        benchmark: false
      })
      yield* served.worker.awaitReady
      yield* Console.log(`listening ${served.url}`)
      return yield* Effect.never
    })
  )
)
