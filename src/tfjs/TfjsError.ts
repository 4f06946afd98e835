/**
 * The failures of the TensorFlow.js contexts. They happen while a worker starts (choosing a backend, loading a model)
 * and stay in the process, where start-up reports them, so they are `Data.TaggedError`s: tell them apart by `_tag`
 * and `reason`, never by `message`. The image error that remote functions declare, `ImageInvalid`, crosses the wire
 * and lives with the other wire errors in `WorkerError`.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"

/**
 * No usable backend: the demanded one is unknown or failed to load, or every candidate failed.
 * `skipped` lists each backend tried and why it was passed over.
 */
export class BackendUnavailable extends Data.TaggedError("BackendUnavailable")<{
  readonly reason: "UnknownBackend" | "Unavailable"
  readonly backend: string
  readonly skipped: ReadonlyArray<{ readonly backend: string; readonly reason: string }>
  readonly message: string
}> {}

/**
 * A model's files could not be read or made sense of. `path` names the file at fault (model.json or a shard);
 * `InvalidModel` is TensorFlow.js refusing artifacts that were read fine (an unsupported op, a bad topology).
 */
export class ModelFileError extends Data.TaggedError("ModelFileError")<{
  readonly reason: "NotFound" | "Unreadable" | "InvalidJson" | "InvalidManifest" | "WeightSizeMismatch" | "InvalidModel"
  readonly path: string
  readonly message: string
}> {}

/**
 * A model loaded but its warm-up failed: `NoInputShape` when the model does not say the shape of an input (warm up
 * with a function instead of a count), `Failed` when running it threw.
 */
export class ModelWarmupFailed extends Data.TaggedError("ModelWarmupFailed")<{
  readonly reason: "NoInputShape" | "Failed"
  readonly path: string
  readonly message: string
}> {}

/**
 * A package the tfjs subpath needs is not installed. `effect-deployments/tfjs` imports TensorFlow.js, `jpeg-js` and
 * `pngjs` only when a context or helper first needs them (they are optional peer dependencies, so that the core
 * installs none of them): `package` names the one missing, `neededBy` what needed it, and `message` says what to
 * install.
 */
export class PackageMissing extends Data.TaggedError("PackageMissing")<{
  readonly package: string
  readonly neededBy: string
  readonly message: string
}> {}
