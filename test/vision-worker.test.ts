import { describe, expect, it, layer } from "@effect/vitest"
import * as tf from "@tensorflow/tfjs-core"
import { Context, Effect, Layer } from "effect"
import { antispoof, app, detect, pose, sampleBytes } from "../examples/vision-worker/app.js"
import { Worker } from "../src/index.js"
import { Tfjs, Vision } from "../src/tfjs/index.js"
import { selectBackend } from "../src/tfjs/internal/backend.js"
import { ImageInvalid, RemoteFailure } from "../src/WorkerError.js"
import { expectPeopleInSample, figureJpeg, thumbnailJpeg } from "./fixtures/tfjs.js"

/** One vision worker for the whole file: start-up loads the models and runs the benchmark (about 3 s on wasm). */
class VisionWorker extends Context.Tag("test/VisionWorker")<
  VisionWorker,
  Worker.Worker<any, typeof detect | typeof pose | typeof antispoof>
>() {}

const layerVisionWorker = Layer.scoped(VisionWorker, Worker.make(app)).pipe(Layer.orDie)

// The live clock for the worker: antispoof's batches wait `maxWait` (5 ms) on the worker's Clock, which a TestClock
// would never advance.
layer(layerVisionWorker, { timeout: "60 seconds", excludeTestServices: true })("vision-worker", (it) => {
  it.effect("enters the backend, then both models side by side, and benchmarks detect", () =>
    Effect.gen(function* () {
      const worker = yield* VisionWorker
      // The models depend on the backend only, so they enter in parallel
      expect(app.contexts).toEqual([
        [Tfjs.Backend.key, []],
        ["Centernet", [Tfjs.Backend.key]],
        ["Movenet", [Tfjs.Backend.key]],
        ["Antispoof", [Tfjs.Backend.key]]
      ])
      const report = yield* worker.report
      expect(report.phase).toBe("ready")
      expect(report.contexts.map((c) => c.state)).toEqual(["entered", "entered", "entered", "entered"])
      const notes = Object.fromEntries(report.contexts.map((c) => [c.key, c.notes.join("; ")]))
      expect(notes[Tfjs.Backend.key]).toMatch(/^backend (tensorflow|wasm|cpu) \(best available\)/)
      expect(notes["Centernet"]).toMatch(
        /^graph model centernet\.json, input \[1,512,512,3\] float32, loaded in \d+ ms, warm-up \(1 run\)/
      )
      expect(notes["Movenet"]).toMatch(/^graph model movenet-lightning\.json, input \[1,192,192,3\] int32, .*warm-up/)
      expect(notes["Antispoof"]).toMatch(/^graph model antispoof\.json, input \[\?,128,128,3\] float32, .*warm-up/)
      expect(report.benchmark).toMatchObject({ remote: "detect", calls: 3, runs: 3 })
    })
  )

  it.effect("detect finds the people in the sample photo", () =>
    Effect.gen(function* () {
      const worker = yield* VisionWorker
      // invoke: the untyped path a transport takes, so the result is checked against the success schema
      const detections = (yield* worker.invoke("detect", {
        image: sampleBytes(),
        minScore: 0.2,
        maxResults: 20
      })) as ReadonlyArray<Vision.Detection>
      expectPeopleInSample(detections)
      // minScore and maxResults reach the detector
      const confident = yield* worker.call(detect, { image: sampleBytes(), minScore: 0.4, maxResults: 2 })
      expect(confident.length).toBeGreaterThan(0)
      expect(confident.length).toBeLessThanOrEqual(2)
      expect(confident.every((d) => d.score >= 0.4)).toBe(true)
    })
  )

  it.effect("pose places a standing figure's keypoints head to toe", () =>
    Effect.gen(function* () {
      const worker = yield* VisionWorker
      const keypoints = yield* worker.call(pose, { image: figureJpeg() })
      expect(keypoints.map((k) => k.name)).toEqual([...Vision.movenetKeypoints])
      const at = (name: string) => keypoints.find((k) => k.name === name)!
      expect(at("nose").y).toBeLessThan(at("leftHip").y)
      expect(at("leftHip").y).toBeLessThan(at("leftAnkle").y)
      expect(at("leftAnkle").y).toBeGreaterThan(158 * 0.75)
    })
  )

  it.effect("answers bytes that are not an image with the declared ImageInvalid, and keeps serving", () =>
    Effect.gen(function* () {
      const worker = yield* VisionWorker
      const garbage = new TextEncoder().encode("GIF89a, not a JPEG")
      const failure = yield* Effect.flip(worker.invoke("detect", { image: garbage }))
      expect(failure).toBeInstanceOf(RemoteFailure)
      expect((failure as RemoteFailure).encoded).toEqual({
        _tag: "ImageInvalid",
        reason: "UnknownFormat",
        message: "expected a JPEG or PNG image, got 18 bytes starting with 47 49 46 38 39 61 2c 20"
      })
      const truncated = sampleBytes().subarray(0, 2000)
      const corrupt = yield* Effect.flip(worker.call(pose, { image: truncated }))
      expect(corrupt).toBeInstanceOf(ImageInvalid)
      expect(corrupt).toMatchObject({ reason: "Corrupt" })
      expect(yield* worker.call(pose, { image: figureJpeg() })).toHaveLength(17)
      const payload = yield* Effect.flip(worker.invoke("detect", { image: "not bytes" }))
      expect(payload._tag).toBe("PayloadInvalid")
    })
  )

  it.effect("antispoof: concurrent calls share batches, each caller gets its own image's score or its own error", () =>
    Effect.gen(function* () {
      const worker = yield* VisionWorker
      const faces = [0, 1, 2, 3, 4, 5].map(thumbnailJpeg)
      // One at a time (batches of one): the reference scores.
      const alone: Array<number> = []
      for (const image of faces) alone.push(yield* worker.call(antispoof, { image }))
      expect(alone.every((s) => s >= 0 && s <= 1)).toBe(true)
      expect(new Set(alone.map((s) => s.toFixed(4))).size).toBeGreaterThan(1)
      // Concurrently, with a bad image among them: gathered into batches, every score where its image was.
      const mixed = [...faces.slice(0, 3), new TextEncoder().encode("not an image"), ...faces.slice(3)]
      const results = yield* Effect.all(
        mixed.map((image) => Effect.either(worker.call(antispoof, { image }))),
        { concurrency: "unbounded" }
      )
      const scores = results.map((r) => (r._tag === "Right" ? r.right : r.left))
      expect(scores[3]).toBeInstanceOf(ImageInvalid)
      const good = scores.filter((_, i) => i !== 3) as Array<number>
      good.forEach((score, i) => expect(score).toBeCloseTo(alone[i]!, 4))
    })
  )

  it.effect("leaves no tensor behind after 100 calls", () =>
    Effect.gen(function* () {
      const worker = yield* VisionWorker
      const image = figureJpeg()
      const before = tf.memory().numTensors
      for (let i = 0; i < 100; i++) yield* worker.call(pose, { image })
      yield* Effect.all(
        [image, image, new Uint8Array(3), image].map((image) => Effect.either(worker.call(antispoof, { image }))),
        { concurrency: "unbounded" }
      )
      yield* Effect.flip(worker.call(detect, { image: new Uint8Array(3) }))
      yield* worker.call(detect, { image: sampleBytes(), maxResults: 1 })
      expect(tf.memory().numTensors).toBe(before)
    })
  )
})

describe("vision-worker lifecycle", () => {
  it.scoped("returns tensor memory to its level before start-up once the worker shuts down", () =>
    Effect.gen(function* () {
      // The engine needs a backend before it can count; the worker's backend context selects the same one again
      yield* selectBackend()
      const before = tf.memory().numTensors
      const worker = yield* Worker.make(app, { benchmark: false })
      // centernet's and movenet's weights
      expect(tf.memory().numTensors).toBeGreaterThan(before + 200)
      yield* worker.call(detect, { image: sampleBytes(), maxResults: 1 })
      yield* worker.shutdown
      expect((yield* worker.report).contexts.map((c) => c.state)).toEqual(["exited", "exited", "exited", "exited"])
      expect(tf.memory().numTensors).toBe(before)
    })
  )
})
