/**
 * Loading TensorFlow.js models from local files without `@tensorflow/tfjs-node`, whose `file://` handler is the only
 * one tfjs ships for Node.
 *
 * @internal
 */
import type { GraphModel } from "@tensorflow/tfjs-converter"
import type * as TfCore from "@tensorflow/tfjs-core"
import type { LayersModel } from "@tensorflow/tfjs-layers"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import type { PackageMissing } from "../TfjsError.js"
import { ModelFileError } from "./errors.js"
import { cachedPeer } from "./peer.js"

// Optional peers, imported when a model is first loaded (see peer.ts)
const converter = cachedPeer("Tfjs.graphModel", () => import("@tensorflow/tfjs-converter"))
const layers = cachedPeer("Tfjs.layersModel", () => import("@tensorflow/tfjs-layers"))

type ModelJSON = TfCore.io.ModelJSON
type WeightsManifestEntry = TfCore.io.WeightsManifestEntry

const bytesPerElement: Record<string, number> = {
  float32: 4,
  int32: 4,
  bool: 1,
  complex64: 8,
  uint8: 1,
  uint16: 2,
  float16: 2
}

const readFile = async (file: string): Promise<Buffer> => {
  try {
    return await fs.readFile(file)
  } catch (u) {
    const code = (u as NodeJS.ErrnoException).code
    throw new ModelFileError({
      reason: code === "ENOENT" ? "NotFound" : "Unreadable",
      path: file,
      message: code === "ENOENT" ? `model file not found: ${file}` : `cannot read model file ${file}: ${String(u)}`
    })
  }
}

/** An ArrayBuffer holding exactly the file's bytes: Node may hand back a view into a larger pooled buffer. */
const ownBuffer = (buffer: Buffer): ArrayBuffer =>
  buffer.byteOffset === 0 && buffer.byteLength === buffer.buffer.byteLength
    ? (buffer.buffer as ArrayBuffer)
    : (buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.byteLength) as ArrayBuffer)

const parseModelJson = (file: string, text: string): ModelJSON => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (u) {
    throw new ModelFileError({ reason: "InvalidJson", path: file, message: `${file} is not valid JSON: ${String(u)}` })
  }
  if (typeof json !== "object" || json === null || !("modelTopology" in json)) {
    throw new ModelFileError({
      reason: "InvalidManifest",
      path: file,
      message: `${file} is not a TensorFlow.js model.json: it has no "modelTopology"`
    })
  }
  const manifest = (json as { weightsManifest?: unknown }).weightsManifest
  if (manifest !== undefined && !Array.isArray(manifest)) {
    throw new ModelFileError({
      reason: "InvalidManifest",
      path: file,
      message: `${file} has a "weightsManifest" that is not an array`
    })
  }
  return json as ModelJSON
}

/** The byte size the specs describe, or undefined when a string weight makes it unknowable before decoding. */
const expectedBytes = (specs: ReadonlyArray<WeightsManifestEntry>): number | undefined => {
  let total = 0
  for (const spec of specs) {
    const dtype = spec.quantization?.dtype ?? spec.dtype
    const size = bytesPerElement[dtype]
    if (size === undefined) return undefined
    total += spec.shape.reduce((a, b) => a * b, 1) * size
  }
  return total
}

/**
 * An `IOHandler` that can load (and only load).
 */
export interface FileSystemHandler extends TfCore.io.IOHandler {
  readonly load: NonNullable<TfCore.io.IOHandler["load"]>
}

/**
 * An `IOHandler` reading a `model.json` and the weight shards it lists from the file system, for
 * `tf.loadGraphModel(handler)` or `tf.loadLayersModel(handler)`. Its `load()` rejects with a {@link ModelFileError}
 * naming the file at fault; shard paths must stay inside the model's directory.
 *
 * @example
 * const model = await loadGraphModel(fileSystem("node_modules/@vladmandic/human/models/centernet.json"))
 */
export const fileSystem = (modelJsonPath: string): FileSystemHandler => {
  const file = path.resolve(modelJsonPath)
  const directory = path.dirname(file)
  return {
    load: async () => {
      // tfjs-core is there: the loaders that call this handler import it
      const { io } = await import("@tensorflow/tfjs-core")
      const modelJson = parseModelJson(file, (await readFile(file)).toString("utf8"))
      return io.getModelArtifactsForJSON(modelJson, async (manifest) => {
        const specs: Array<WeightsManifestEntry> = []
        const shards: Array<string> = []
        for (const group of manifest) {
          specs.push(...group.weights)
          for (const shard of group.paths) {
            const resolved = path.resolve(directory, shard)
            const relative = path.relative(directory, resolved)
            if (path.isAbsolute(shard) || relative === ".." || relative.startsWith(`..${path.sep}`)) {
              throw new ModelFileError({
                reason: "InvalidManifest",
                path: file,
                message: `${file} lists weight shard "${shard}" outside its directory`
              })
            }
            shards.push(resolved)
          }
        }
        const buffers = await Promise.all(shards.map(readFile))
        const expected = expectedBytes(specs)
        const actual = buffers.reduce((n, b) => n + b.byteLength, 0)
        if (expected !== undefined && expected !== actual) {
          throw new ModelFileError({
            reason: "WeightSizeMismatch",
            path: shards.join(", "),
            message: `${file} describes ${expected} bytes of weights but its shards hold ${actual} (${shards.join(
              ", "
            )}): truncated or mismatched files?`
          })
        }
        return [specs, buffers.map(ownBuffer)]
      })
    }
  }
}

/** Runs a tfjs loader on the fs handler, keeping the handler's own errors and naming the file in tfjs's. */
const loadWith = <M>(
  modelJsonPath: string,
  load: (handler: FileSystemHandler) => Promise<M>
): Effect.Effect<M, ModelFileError> =>
  Effect.tryPromise({
    try: () => load(fileSystem(modelJsonPath)),
    catch: (u) =>
      u instanceof ModelFileError
        ? u
        : new ModelFileError({
            reason: "InvalidModel",
            path: path.resolve(modelJsonPath),
            message: `TensorFlow.js could not load ${path.resolve(modelJsonPath)}: ${
              u instanceof Error ? u.message : String(u)
            }`
          })
  })

/**
 * Loads a graph model from a local `model.json` on the active backend.
 */
export const loadGraphModel = (modelJsonPath: string): Effect.Effect<GraphModel, ModelFileError | PackageMissing> =>
  Effect.flatMap(converter, (tfc) => loadWith(modelJsonPath, tfc.loadGraphModel))

/**
 * Loads a layers model (a Keras-style `model.json` with `"format": "layers-model"`) from local files on the active
 * backend.
 */
export const loadLayersModel = (modelJsonPath: string): Effect.Effect<LayersModel, ModelFileError | PackageMissing> =>
  Effect.flatMap(layers, (tfl) => loadWith(modelJsonPath, (handler) => tfl.loadLayersModel(handler)))

/**
 * {@link loadGraphModel} whose weights are disposed when the scope closes.
 */
export const loadGraphModelScoped = (
  modelJsonPath: string
): Effect.Effect<GraphModel, ModelFileError | PackageMissing, Scope.Scope> =>
  Effect.acquireRelease(loadGraphModel(modelJsonPath), (model) => Effect.sync(() => model.dispose()))
