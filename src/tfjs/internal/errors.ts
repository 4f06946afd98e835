/**
 * Failures of the TensorFlow.js building blocks. They stay in the process (a worker maps them to its wire errors),
 * so they are `Data.TaggedError`s: tell them apart by `_tag` and `reason`, never by `message`.
 *
 * @internal
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
 * Bytes that are not a decodable JPEG or PNG, or an image over the resolution limit.
 */
export class ImageDecodeError extends Data.TaggedError("ImageDecodeError")<{
  readonly reason: "UnknownFormat" | "TooLarge" | "Corrupt"
  readonly message: string
}> {}
