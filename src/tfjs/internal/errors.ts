/**
 * The image decoding failure of the building blocks. The public API turns it into `WorkerError.ImageInvalid`, which
 * crosses the wire; the other tfjs errors are public, in `TfjsError`.
 *
 * @internal
 */
import * as Data from "effect/Data"

export { BackendUnavailable, ModelFileError } from "../TfjsError.js"

/**
 * Bytes that are not a decodable JPEG or PNG, or an image over the resolution limit.
 */
export class ImageDecodeError extends Data.TaggedError("ImageDecodeError")<{
  readonly reason: "UnknownFormat" | "TooLarge" | "Corrupt"
  readonly message: string
}> {}
