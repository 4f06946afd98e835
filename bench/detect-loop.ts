/**
 * For bench/vision.ts: what one vision thread does, in a process of its own and without a pool. Start, load the backend
 * and the three models as a thread does (prints `ready-ms <n>`: since the process started), then, from the epoch
 * millisecond given (so that two processes measure together), decode and detect the sample photo `calls` times
 * (prints `ms-per-call <n>`). Two of these at once against one is what the machine allows a 2-way split of the same
 * work, for start-up and for throughput.
 *
 *   node --import tsx bench/detect-loop.ts <startAtEpochMs> <calls>
 */
import { NodeRuntime } from "@effect/platform-node"
import { Clock, Effect, Layer } from "effect"
import { AntispoofLive, Centernet, CenternetLive, MovenetLive, sampleBytes } from "../examples/vision-worker/models.js"
import { Tfjs, Vision } from "../src/tfjs/index.js"

const startAt = Number(process.argv[2])
const calls = Number(process.argv[3] ?? 8)

const detectOnce = Effect.flatMap(Vision.decodeImage(sampleBytes()), (rgb) =>
  Effect.flatMap(Centernet, (model) => Vision.detect(model, rgb))
)

const program = Effect.gen(function* () {
  console.log(`ready-ms ${performance.now().toFixed(1)}`)
  yield* detectOnce
  const wait = startAt - (yield* Clock.currentTimeMillis)
  if (wait > 0) yield* Effect.sleep(wait)
  const t0 = performance.now()
  for (let i = 0; i < calls; i++) yield* detectOnce
  console.log(`ms-per-call ${((performance.now() - t0) / calls).toFixed(1)}`)
}).pipe(Effect.provide(Layer.provideMerge(Layer.mergeAll(CenternetLive, MovenetLive, AntispoofLive), Tfjs.backend)))

NodeRuntime.runMain(program.pipe(Effect.orDie))
