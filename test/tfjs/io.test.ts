import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll } from "vitest"
import { selectBackend, type Tf } from "../../src/tfjs/internal/backend.js"
import { fileSystem, loadGraphModel, loadGraphModelScoped } from "../../src/tfjs/internal/io.js"
import { centernetPath, movenetPath } from "../fixtures/tfjs.js"

let tf: Tf
let scratch: string

beforeAll(async () => {
  tf = (await Effect.runPromise(selectBackend("wasm"))).tf
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), "tfjs-io-"))
})

afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }))

/** A copy of movenet's model.json in a fresh directory, its shards listed as `paths`. */
const modelDir = (name: string, paths: ReadonlyArray<string>): string => {
  const dir = path.join(scratch, name)
  fs.mkdirSync(dir)
  const json = JSON.parse(fs.readFileSync(movenetPath, "utf8"))
  json.weightsManifest[0].paths = paths
  fs.writeFileSync(path.join(dir, "model.json"), JSON.stringify(json))
  return path.join(dir, "model.json")
}

describe("fileSystem", () => {
  it.effect("loads centernet's model.json and shard into a graph model", () =>
    Effect.gen(function* () {
      const artifacts = yield* Effect.promise(() => fileSystem(centernetPath).load())
      expect(artifacts.format).toBe("graph-model")
      expect(artifacts.weightSpecs).toHaveLength(267)
      const model = yield* loadGraphModel(centernetPath)
      expect(model.inputs.map((i) => [i.name, i.shape, i.dtype])).toEqual([
        ["tower_0/images", [1, 512, 512, 3], "float32"]
      ])
      expect(model.outputNodes).toContain("tower_0/detections")
      model.dispose()
    })
  )

  it.scoped("returns numTensors to its level before load once the model is disposed", () =>
    Effect.gen(function* () {
      const before = tf.memory().numTensors
      yield* Effect.scoped(
        Effect.gen(function* () {
          yield* loadGraphModelScoped(movenetPath)
          expect(tf.memory().numTensors).toBeGreaterThan(before + 100)
        })
      )
      expect(tf.memory().numTensors).toBe(before)
    })
  )

  it.effect("names a missing model.json", () =>
    Effect.gen(function* () {
      const missing = path.join(scratch, "nowhere", "model.json")
      const error = yield* Effect.flip(loadGraphModel(missing))
      expect(error).toMatchObject({ _tag: "ModelFileError", reason: "NotFound", path: missing })
      expect(error.message).toContain(missing)
    })
  )

  it.effect("names a model.json that is not JSON", () =>
    Effect.gen(function* () {
      const file = path.join(scratch, "broken.json")
      fs.writeFileSync(file, '{ "modelTopology": ')
      const error = yield* Effect.flip(loadGraphModel(file))
      expect(error).toMatchObject({ reason: "InvalidJson", path: file })
      const notAModel = path.join(scratch, "other.json")
      fs.writeFileSync(notAModel, '{"hello": 1}')
      expect(yield* Effect.flip(loadGraphModel(notAModel))).toMatchObject({ reason: "InvalidManifest" })
    })
  )

  it.effect("names a missing weight shard", () =>
    Effect.gen(function* () {
      const file = modelDir("no-shard", ["weights.bin"])
      const error = yield* Effect.flip(loadGraphModel(file))
      expect(error).toMatchObject({ reason: "NotFound", path: path.join(path.dirname(file), "weights.bin") })
    })
  )

  it.effect("refuses a truncated shard with the sizes", () =>
    Effect.gen(function* () {
      const file = modelDir("truncated", ["weights.bin"])
      const shard = fs.readFileSync(movenetPath.replace(/\.json$/, ".bin"))
      fs.writeFileSync(path.join(path.dirname(file), "weights.bin"), shard.subarray(0, 1000))
      const error = yield* Effect.flip(loadGraphModel(file))
      expect(error).toMatchObject({ _tag: "ModelFileError", reason: "WeightSizeMismatch" })
      expect(error.message).toContain(`${shard.length} bytes of weights but its shards hold 1000`)
    })
  )

  it.effect("refuses shard paths outside the model's directory", () =>
    Effect.gen(function* () {
      const file = modelDir("escape", ["../../etc/passwd"])
      expect(yield* Effect.flip(loadGraphModel(file))).toMatchObject({ reason: "InvalidManifest" })
    })
  )
})
