import { expect, layer } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { makeVisionWorker, sampleBytes, VisionThreads } from "../examples/vision-worker/app.js"
import { Worker, WorkerContext } from "../src/index.js"
import { Tfjs, Vision } from "../src/tfjs/index.js"
import { ImageInvalid, RemoteFailure } from "../src/WorkerError.js"
import { expectPeopleInSample, figureJpeg, thumbnailJpeg } from "./fixtures/tfjs.js"

/** The vision worker with 2 threads, whatever the cores of the machine running the tests. */
const vision = makeVisionWorker({ threads: 2 })
const { antispoof, detect, pose } = vision

/** One vision worker for the whole file: start-up loads both models in each thread and runs the benchmark. */
class VisionWorker extends Context.Tag("test/VisionWorker")<
  VisionWorker,
  Worker.Worker<any, typeof detect | typeof pose | typeof antispoof>
>() {}

const layerVisionWorker = Layer.scoped(VisionWorker, Worker.make(vision.app)).pipe(Layer.orDie)

const backend = Tfjs.Backend.key

// The live clock for the worker: antispoof's batches wait `maxWait` (5 ms) on the worker's Clock, which a TestClock
// would never advance.
layer(layerVisionWorker, { timeout: "120 seconds", excludeTestServices: true })(
  "vision-worker with 2 threads",
  (it) => {
    it.effect("enters each thread's backend, then its three models side by side, and benchmarks detect", () =>
      Effect.gen(function* () {
        const worker = yield* VisionWorker
        const report = yield* worker.report
        expect(report.phase).toBe("ready")
        expect(report.contexts.map((c) => [c.key, c.state, c.dependsOn])).toEqual([
          ["VisionThreads", "entered", []],
          [`VisionThreads/1/${backend}`, "entered", []],
          ["VisionThreads/1/Centernet", "entered", [`VisionThreads/1/${backend}`]],
          ["VisionThreads/1/Movenet", "entered", [`VisionThreads/1/${backend}`]],
          ["VisionThreads/1/Antispoof", "entered", [`VisionThreads/1/${backend}`]],
          [`VisionThreads/2/${backend}`, "entered", []],
          ["VisionThreads/2/Centernet", "entered", [`VisionThreads/2/${backend}`]],
          ["VisionThreads/2/Movenet", "entered", [`VisionThreads/2/${backend}`]],
          ["VisionThreads/2/Antispoof", "entered", [`VisionThreads/2/${backend}`]]
        ])
        const notes = Object.fromEntries(report.contexts.map((c) => [c.key, c.notes.join("; ")]))
        expect(notes["VisionThreads"]).toBe("2 threads running examples/vision-worker/thread.ts")
        for (const thread of [1, 2]) {
          expect(notes[`VisionThreads/${thread}/${backend}`]).toMatch(
            /^backend (tensorflow|wasm|cpu) \(best available\)/
          )
          expect(notes[`VisionThreads/${thread}/Centernet`]).toMatch(
            /^graph model centernet\.json, input \[1,512,512,3\] float32, loaded in \d+ ms, warm-up \(1 run\)/
          )
          expect(notes[`VisionThreads/${thread}/Movenet`]).toMatch(/^graph model movenet-lightning\.json, .*warm-up/)
          expect(notes[`VisionThreads/${thread}/Antispoof`]).toMatch(
            /^graph model antispoof\.json, input \[\?,128,128,3\] float32, .*warm-up/
          )
        }
        // One call per thread at once, in the benchmark as in serving
        expect(report.benchmark).toMatchObject({ remote: "detect", calls: 6, runs: 3, concurrency: 2 })
        expect((yield* worker.stats).map((s) => [s.name, s.concurrency])).toEqual([
          ["detect", 2],
          ["pose", 2],
          ["antispoof", 2]
        ])
      })
    )

    it.effect("detect finds the people in the sample photo, two calls at once with the same answer", () =>
      Effect.gen(function* () {
        const worker = yield* VisionWorker
        const threads = yield* WorkerContext.get(VisionThreads)
        const before = yield* threads.stats
        // invoke: the untyped path a transport takes, so the result is checked against the success schema
        const [first, second] = (yield* Effect.all(
          [1, 2].map(() => worker.invoke("detect", { image: sampleBytes(), minScore: 0.2, maxResults: 20 })),
          { concurrency: 2 }
        )) as [ReadonlyArray<Vision.Detection>, ReadonlyArray<Vision.Detection>]
        expectPeopleInSample(first)
        // Two replicas of the same model on the same image: the same answer
        expect(second).toEqual(first)
        expect((yield* threads.stats).calls - before.calls).toBe(2)
        // minScore and maxResults reach the detector in its thread
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

    it.effect(
      "answers bytes that are not an image with the declared ImageInvalid from the thread, and keeps serving",
      () =>
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

    it.effect("antispoof: concurrent calls share batches in the threads, each caller gets its own score or error", () =>
      Effect.gen(function* () {
        const worker = yield* VisionWorker
        const faces = [0, 1, 2, 3, 4, 5].map(thumbnailJpeg)
        // One at a time (batches of one): the reference scores. Each call its own copy: the bytes move to a thread.
        const alone: Array<number> = []
        for (const image of faces) alone.push(yield* worker.call(antispoof, { image: image.slice() }))
        expect(alone.every((s) => s >= 0 && s <= 1)).toBe(true)
        expect(new Set(alone.map((s) => s.toFixed(4))).size).toBeGreaterThan(1)
        // Concurrently, with a bad image among them: gathered into batches, every score where its image was.
        const mixed = [...faces.slice(0, 3), new TextEncoder().encode("not an image"), ...faces.slice(3)]
        const results = yield* Effect.all(
          mixed.map((image) => Effect.either(worker.call(antispoof, { image: image.slice() }))),
          { concurrency: "unbounded" }
        )
        const scores = results.map((r) => (r._tag === "Right" ? r.right : r.left))
        expect(scores[3]).toBeInstanceOf(ImageInvalid)
        const good = scores.filter((_, i) => i !== 3) as Array<number>
        good.forEach((score, i) => expect(score).toBeCloseTo(alone[i]!, 4))
      })
    )

    // Last: it shuts the shared worker down (the layer's own shutdown then finds it done)
    it.effect(
      "leaves no tensor behind in any thread: each backend exits with 0 tensors",
      () =>
        Effect.gen(function* () {
          const worker = yield* VisionWorker
          const image = figureJpeg()
          yield* Effect.all(
            // Each call its own copy: the bytes move to the thread
            Array.from({ length: 20 }, () => worker.call(pose, { image: image.slice() })),
            { concurrency: 2, discard: true }
          )
          yield* Effect.all(
            [image, image, new Uint8Array(3), image].map((i) =>
              Effect.either(worker.call(antispoof, { image: i.slice() }))
            ),
            { concurrency: "unbounded" }
          )
          yield* Effect.flip(worker.call(detect, { image: new Uint8Array(3) }))
          yield* worker.call(detect, { image: sampleBytes(), maxResults: 1 })
          yield* worker.shutdown
          const report = yield* worker.report
          expect(report.contexts.every((c) => c.state === "exited")).toBe(true)
          for (const thread of [1, 2]) {
            const line = report.contexts.find((c) => c.key === `VisionThreads/${thread}/${backend}`)!
            expect(line.notes.at(-1)).toBe("0 tensors (0 bytes) left at exit")
          }
        }),
      { timeout: 60_000 }
    )
  }
)
