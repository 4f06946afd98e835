import { describe, expect, it } from "@effect/vitest"
import * as tf from "@tensorflow/tfjs-core"
import * as tfl from "@tensorflow/tfjs-layers"
import { Cause, ConfigProvider, Context, Deferred, Effect, FiberRef, Schema } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll } from "vitest"
import * as Published from "effect-deployments/tfjs"
import { Deployment, Remote, Worker, WorkerContext } from "../../src/index.js"
import { Tfjs } from "../../src/tfjs/index.js"
import { selectBackend } from "../../src/tfjs/internal/backend.js"
import { enterModel, layersKind } from "../../src/tfjs/internal/contexts.js"

/** A tiny classifier: 4 inputs, a hidden layer of 8, 3 softmax outputs. */
class Classifier extends Context.Tag("Classifier")<Classifier, Tfjs.LayersModel>() {}

const input = [0.5, -1, 2, 0.25]
let scratch: string
let modelJson: string
/** The saved model's output for `input`, computed before saving: the loaded model must give it back. */
let expected: Array<number>

/** Saves a layers model as model.json + weights.bin, the layout `tfjs.converters.save_keras_model` writes. */
const saveTo = (dir: string) =>
  tf.io.withSaveHandler(async (artifacts) => {
    const weights = tf.io.CompositeArrayBuffer.join(artifacts.weightData)
    fs.writeFileSync(path.join(dir, "weights.bin"), Buffer.from(weights))
    fs.writeFileSync(
      path.join(dir, "model.json"),
      JSON.stringify({
        format: artifacts.format,
        generatedBy: artifacts.generatedBy,
        convertedBy: artifacts.convertedBy,
        modelTopology: artifacts.modelTopology,
        weightsManifest: [{ paths: ["weights.bin"], weights: artifacts.weightSpecs }]
      })
    )
    return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: "JSON" } }
  })

beforeAll(async () => {
  await Effect.runPromise(selectBackend("wasm"))
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), "tfjs-layers-"))
  const model = tfl.sequential({
    layers: [
      tfl.layers.dense({ inputShape: [4], units: 8, activation: "relu", kernelInitializer: "glorotNormal" }),
      tfl.layers.dense({ units: 3, activation: "softmax" })
    ]
  })
  expected = tf.tidy(() => Array.from((model.predict(tf.tensor2d([input])) as tf.Tensor).dataSync()))
  await model.save(saveTo(scratch))
  model.dispose()
  modelJson = path.join(scratch, "model.json")
})

afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }))

const classify = Remote.make(
  "classify",
  {
    payload: Schema.Struct({ x: Schema.Array(Schema.Number).pipe(Schema.itemsCount(4)) }),
    success: Schema.Array(Schema.Number),
    benchmark: { dataset: [{ x: input }], runs: 2 }
  },
  ({ x }) =>
    Effect.flatMap(Classifier, (model) =>
      Tfjs.tidy((tf) => Array.from((model.predict(tf.tensor2d([[...x]])) as tf.Tensor).dataSync()))
    )
)

const deployment = (options: Omit<Tfjs.ModelOptions<Tfjs.LayersModel, []>, "path"> & { readonly path?: string }) =>
  Deployment.make("classifier", {
    contexts: [Tfjs.backend, Tfjs.layersModel(Classifier, { path: modelJson, ...options })],
    remotes: [classify]
  })

describe("Tfjs.layersModel", () => {
  it.scoped("loads a layers model from files, serves it, and frees every tensor at shutdown", () =>
    Effect.gen(function* () {
      const before = tf.memory().numTensors
      const worker = yield* Worker.make(deployment({ warmup: 2 }))
      // 2 kernels + 2 biases
      expect(tf.memory().numTensors).toBe(before + 4)
      const output = (yield* worker.invoke("classify", { x: input })) as Array<number>
      expect(output).toHaveLength(3)
      output.forEach((p, i) => expect(p).toBeCloseTo(expected[i]!, 5))
      for (let i = 0; i < 100; i++) yield* worker.invoke("classify", { x: [i, 1, -i, 0] })
      expect(tf.memory().numTensors).toBe(before + 4)
      const report = yield* worker.report
      const line = report.contexts.find((c) => c.key === "Classifier")
      expect(line?.dependsOn).toEqual([Tfjs.Backend.key])
      expect(line?.notes[0]).toMatch(
        /^layers model model\.json, input \[\?,4\] float32, loaded in \d+ ms, warm-up \(2 runs\) in \d+ ms$/
      )
      yield* worker.shutdown
      expect(tf.memory().numTensors).toBe(before)
    })
  )

  it.scoped("warms up with a function inside tf.tidy", () =>
    Effect.gen(function* () {
      const before = tf.memory().numTensors
      const seen: Array<number> = []
      const worker = yield* Worker.make(
        deployment({
          warmup: (model, tf) => {
            seen.push(tf.memory().numTensors)
            // Neither the input nor the output is disposed here: tidy does it
            model.predict(tf.ones([3, 4]))
          }
        }),
        { benchmark: false }
      )
      expect(seen).toEqual([before + 4])
      expect(tf.memory().numTensors).toBe(before + 4)
      expect((yield* worker.report).contexts.find((c) => c.key === "Classifier")?.notes[0]).toContain(
        "warm-up (function)"
      )
    })
  )

  it.scoped("fails start-up naming a missing model file, leaving nothing allocated", () =>
    Effect.gen(function* () {
      const before = tf.memory().numTensors
      const missing = path.join(scratch, "missing", "model.json")
      const error = yield* Effect.flip(Worker.make(deployment({ path: missing })))
      expect(error).toMatchObject({ _tag: "StartupFailed", context: "Classifier", reason: "failed" })
      expect(error.detail).toBe(`model file not found: ${missing}`)
      expect(error.rolledBack).toEqual([Tfjs.Backend.key])
      expect(tf.memory().numTensors).toBe(before)
    })
  )

  it.scoped("disposes the model when its warm-up fails", () =>
    Effect.gen(function* () {
      const before = tf.memory().numTensors
      const error = yield* Effect.flip(
        Worker.make(
          deployment({
            warmup: () => {
              throw new Error("bad input")
            }
          })
        )
      )
      expect(error).toMatchObject({ context: "Classifier", reason: "failed" })
      expect(error.detail).toBe(`warming up ${modelJson} failed: bad input`)
      expect(tf.memory().numTensors).toBe(before)
    })
  )
})

describe("a model context whose sibling fails during the load", () => {
  it.scoped("disposes the model it loaded: no tensor is left allocated", () =>
    Effect.gen(function* () {
      const before = tf.memory().numTensors
      const loading = yield* Deferred.make<void>()
      let disposed = 0
      // The real layers load, held until the sibling's failure has asked this fiber to stop: the interruption then
      // waits for the (uninterruptible) load and lands the moment it returns, with the weights allocated.
      const held: typeof layersKind = {
        ...layersKind,
        load: (file) =>
          Effect.gen(function* () {
            yield* Deferred.succeed(loading, undefined)
            for (let i = 0; i < 10_000; i++) {
              if ((yield* FiberRef.get(FiberRef.interruptedCause)) !== Cause.empty) break
              yield* Effect.yieldNow()
            }
            expect(yield* FiberRef.get(FiberRef.interruptedCause)).not.toBe(Cause.empty)
            return yield* layersKind.load(file)
          }),
        dispose: (model) => {
          disposed++
          layersKind.dispose(model)
        }
      }
      const model = WorkerContext.make(Classifier, {
        dependsOn: [Tfjs.Backend],
        enter: Effect.flatMap(Tfjs.Backend, ({ tf }) => enterModel(held, tf, modelJson, 1)),
        exit: (m) => Effect.sync(() => held.dispose(m))
      })
      class Sibling extends Context.Tag("Sibling")<Sibling, string>() {}
      const sibling = WorkerContext.make(Sibling, {
        dependsOn: [Tfjs.Backend],
        enter: Effect.zipRight(Deferred.await(loading), Effect.fail(new Error("sibling could not load")))
      })
      const error = yield* Effect.flip(
        Worker.make(Deployment.make("leak", { contexts: [Tfjs.backend, model, sibling], remotes: [classify] }))
      )
      expect(error).toMatchObject({ _tag: "StartupFailed", context: "Sibling", reason: "failed" })
      expect(error.rolledBack).toEqual([Tfjs.Backend.key])
      expect(disposed).toBe(1)
      expect(tf.memory().numTensors).toBe(before)
    })
  )
})

describe("Tfjs.backend", () => {
  it.scoped("notes the chosen backend, and why better ones were skipped, in the start-up report", () =>
    Effect.gen(function* () {
      const worker = yield* Worker.make(deployment({}), { benchmark: false })
      const line = (yield* worker.report).contexts.find((c) => c.key === Tfjs.Backend.key)
      const selected = yield* selectBackend()
      expect(line?.notes).toHaveLength(1)
      expect(line?.notes[0]).toContain(`backend ${selected.name} (best available)`)
      for (const s of selected.skipped) expect(line?.notes[0]).toContain(`; ${s.backend} skipped: `)
      if (selected.name === "wasm") {
        expect(line?.notes[0]).toContain(
          "tensorflow skipped: @tensorflow/tfjs-node-gpu: not installed; @tensorflow/tfjs-node: not installed"
        )
      }
    })
  )

  it.scoped("fails start-up clearly when TFJS_BACKEND names an unknown backend", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(Worker.make(deployment({}))).pipe(
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["TFJS_BACKEND", "webgpu"]])))
      )
      expect(error).toMatchObject({ _tag: "StartupFailed", context: Tfjs.Backend.key, reason: "failed" })
      expect(error.detail).toBe('unknown TensorFlow.js backend "webgpu": expected one of tensorflow, wasm, cpu')
    })
  )

  it.scoped("uses the backend TFJS_BACKEND demands", () =>
    Effect.gen(function* () {
      const worker = yield* Worker.make(deployment({ warmup: 1 })).pipe(
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["TFJS_BACKEND", "cpu"]])))
      )
      expect(tf.getBackend()).toBe("cpu")
      const line = (yield* worker.report).contexts.find((c) => c.key === Tfjs.Backend.key)
      expect(line?.notes).toEqual(["backend cpu (demanded by TFJS_BACKEND)"])
      const output = (yield* worker.invoke("classify", { x: input })) as Array<number>
      output.forEach((p, i) => expect(p).toBeCloseTo(expected[i]!, 5))
    }).pipe(Effect.ensuring(Effect.promise(() => tf.setBackend("wasm"))))
  )
})

describe("effect-deployments/tfjs", () => {
  it("resolves to this module through the package's subpath export", () => {
    expect(Published.Tfjs.graphModel).toBe(Tfjs.graphModel)
    expect(Published.Tfjs.Backend).toBe(Tfjs.Backend)
  })
})
